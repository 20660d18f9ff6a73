//! What the scripts answer: one JSON object tagged by `outcome`.

use serde::{Deserialize, Deserializer};

use crate::domain::{
    EndReason, Lease, Limit, LimitSource, PlanName, PlanSource, StreamId, Tombstone,
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
    Renewed {
        stream: Lease,
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
