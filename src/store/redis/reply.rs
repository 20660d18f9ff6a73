//! What the scripts answer: one JSON object tagged by `outcome`.

use serde::{Deserialize, Deserializer};

use crate::domain::{
    ContentId, DeviceId, EndReason, Lease, Limit, LimitSource, PlanName, PlanSource, SecretHash,
    StreamId, Tags, Timestamp, Tombstone,
};

#[derive(Debug, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(super) enum Reply {
    Granted {
        stream: Lease,
        evicted: LuaList<StreamId>,
        replaced: LuaList<StreamId>,
        active: usize,
        limit: Limit,
        expired: usize,
    },
    AlreadyLive {
        stream: Lease,
        active: usize,
        limit: Limit,
        expired: usize,
    },
    LimitReached {
        conflicts: Vec<ConflictReply>,
        expired: usize,
    },
    MissingAttribute {
        rule: String,
        attribute: String,
        expired: usize,
    },
    /// The renewed lease as the hash stores it: see [`unpack_lease`].
    Renewed {
        lease: String,
        expired: usize,
    },
    Ended {
        reason: EndReason,
        expired: usize,
    },
    Unknown {
        expired: usize,
    },
    EndedStream {
        ended: bool,
        expired: usize,
    },
    StreamIdConflict {
        expired: usize,
    },
    View {
        limit: Limit,
        source: LimitSource,
        /// The plan in force, with `--plans`.
        plan: Option<PlanName>,
        plan_source: PlanSource,
        live: LuaList<Lease>,
        ended: LuaList<Tombstone>,
    },
    LimitSet {
        revoked: LuaList<StreamId>,
        expired: usize,
    },
}

impl Reply {
    /// Leases the script found expired before deciding.
    pub fn expired(&self) -> usize {
        match self {
            Reply::Granted { expired, .. }
            | Reply::AlreadyLive { expired, .. }
            | Reply::LimitReached { expired, .. }
            | Reply::MissingAttribute { expired, .. }
            | Reply::StreamIdConflict { expired }
            | Reply::Renewed { expired, .. }
            | Reply::Ended { expired, .. }
            | Reply::Unknown { expired }
            | Reply::EndedStream { expired, .. }
            | Reply::LimitSet { expired, .. } => *expired,
            Reply::View { .. } => 0,
        }
    }
}

/// The lease `id` from its field in the account's hash (`l:<id>`):
/// `expires_at|started_at|seq|device|content[|tags[|secret]]`, empty
/// fields for what the stream lacks, tags as `name=value,…`. A renewal
/// answers with it as stored, so the script does not write it as JSON.
pub(super) fn unpack_lease(id: &StreamId, packed: &str) -> Option<Lease> {
    let mut fields = packed.split('|');
    let mut millis = || fields.next()?.parse().ok().map(Timestamp::from_millis);
    let (expires_at, started_at) = (millis()?, millis()?);
    let seq = fields.next()?.parse().ok()?;
    let device_id = optional(fields.next()?, |d| DeviceId::parse(d).ok())?;
    let content_id = optional(fields.next()?, |c| ContentId::parse(c).ok())?;
    let tags = match fields.next() {
        None | Some("") => Tags::default(),
        Some(tags) => Tags::from_pairs(
            tags.split(',')
                .map(|pair| pair.split_once('='))
                .collect::<Option<Vec<_>>>()?,
        )
        .ok()?,
    };
    let secret = optional(fields.next().unwrap_or(""), SecretHash::from_hex)?;
    if fields.next().is_some() {
        return None;
    }
    Some(Lease {
        id: id.clone(),
        device_id,
        content_id,
        tags,
        secret: secret.map(Box::new),
        started_at,
        expires_at,
        seq,
        pace: Default::default(),
    })
}

/// An empty field as `Some(None)`, else what `parse` makes of it; `None`
/// when it fails.
fn optional<T>(field: &str, parse: impl FnOnce(&str) -> Option<T>) -> Option<Option<T>> {
    if field.is_empty() {
        return Some(None);
    }
    parse(field).map(Some)
}

/// One limit a refused start would break.
#[derive(Debug, Deserialize)]
pub(super) struct ConflictReply {
    pub rule: String,
    pub limit: Limit,
    pub live: LuaList<Lease>,
}

/// A list from Lua's cjson, which writes an empty table as `{}`.
#[derive(Debug)]
pub(super) struct LuaList<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LuaList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape<T> {
            List(Vec<T>),
            Empty {},
        }
        Ok(match Shape::deserialize(d)? {
            Shape::List(items) => LuaList(items),
            Shape::Empty {} => LuaList(Vec::new()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cjson_empty_tables_as_empty_lists() {
        let reply: Reply =
            serde_json::from_str(r#"{"outcome":"limit_set","revoked":{},"expired":0}"#).unwrap();
        assert!(matches!(reply, Reply::LimitSet { revoked, .. } if revoked.0.is_empty()));
    }

    #[test]
    fn unpacks_a_lease_as_the_script_stores_it() {
        let id = StreamId::parse("s").unwrap();
        let bare = unpack_lease(&id, "1800000090000|1800000000000|4|tv|").unwrap();
        assert_eq!(bare.expires_at, Timestamp::from_millis(1_800_000_090_000));
        assert_eq!(bare.started_at, Timestamp::from_millis(1_800_000_000_000));
        assert_eq!((bare.seq, bare.id.as_str()), (4, "s"));
        assert_eq!(bare.device_id.unwrap().as_str(), "tv");
        assert!(bare.content_id.is_none() && bare.tags.is_empty() && bare.secret.is_none());

        let hash = SecretHash::of("0123456789abcdefghijklmnop").unwrap();
        let full = format!("-5|-9|0||movie|channel=ard,quality=hd|{}", hash.to_hex());
        let full = unpack_lease(&id, &full).unwrap();
        assert_eq!(full.expires_at, Timestamp::from_millis(-5));
        assert_eq!(full.content_id.unwrap().as_str(), "movie");
        assert_eq!(full.tags.get("quality"), Some("hd"));
        assert_eq!(full.secret.as_deref(), Some(&hash));
        let secret_only = format!("1|1|0||||{}", hash.to_hex());
        let secret_only = unpack_lease(&id, &secret_only).unwrap();
        assert!(secret_only.tags.is_empty() && secret_only.secret.is_some());

        for bad in [
            "",
            "1|1|0|tv",
            "x|1|0||",
            "1|1|0|||a=1|zz",
            "1|1|0|||a|",
            "1|1|0||||x|y",
        ] {
            assert!(unpack_lease(&id, bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn reads_a_grant() {
        let raw = r#"{"outcome":"granted","stream":{"id":"s","device_id":"tv","started_at":1800000000000,
            "expires_at":1800000090000,"seq":4},"evicted":["a"],"replaced":{},"active":2,"limit":3,"expired":1}"#;
        let reply: Reply = serde_json::from_str(raw).unwrap();
        assert_eq!(reply.expired(), 1);
        let Reply::Granted {
            stream, evicted, ..
        } = reply
        else {
            panic!()
        };
        assert_eq!(stream.seq, 4);
        assert_eq!(stream.device_id.unwrap().as_str(), "tv");
        assert_eq!(evicted.0[0].as_str(), "a");
    }
}
