//! Identifiers that cross the API: accounts, streams, devices and content.
//!
//! Every id is 1–128 characters of `A-Z a-z 0-9 . _ : @ -`; anything else is
//! rejected when the id is parsed, so the rest of the code never sees a bad one.
//!
//! Account, stream, tag and plan ids up to 24 bytes long are stored inline
//! (`CompactString`): they cost no allocation of their own. Device and
//! content ids are boxed strings instead, because a lease holds them as
//! options that are often absent: 16 bytes each while absent rather than 24
//! keep a one-stream account's lease in mimalloc's 96-byte class (at ten
//! million live streams, 239 rather than 255 bytes per stream; streams that
//! carry both ids pay two 16-byte blocks, 220 rather than 205).

use std::fmt;

use compact_str::CompactString;

use serde::{Deserialize, Serialize};

/// Longest id accepted, in characters (all accepted characters are ASCII).
pub const MAX_ID_LEN: usize = 128;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} is longer than {MAX_ID_LEN} characters")]
    TooLong { what: &'static str },
    #[error("{what} may only contain A-Z a-z 0-9 . _ : @ -")]
    BadCharacter { what: &'static str },
}

fn is_id_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-')
}

pub(crate) fn check(what: &'static str, s: &str) -> Result<(), InvalidId> {
    if s.is_empty() {
        return Err(InvalidId::Empty { what });
    }
    if s.len() > MAX_ID_LEN {
        return Err(InvalidId::TooLong { what });
    }
    if !s.bytes().all(is_id_char) {
        return Err(InvalidId::BadCharacter { what });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        id_type!($(#[$doc])* $name, $what, CompactString);
    };
    ($(#[$doc:meta])* $name:ident, $what:literal, $repr:ty) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name($repr);

        impl $name {
            /// What this id is called in error messages.
            pub const WHAT: &'static str = $what;

            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                check($what, s)?;
                Ok(Self(<$repr>::from(s)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                check($what, &s)?;
                // Copies a short id inline (or into a block of its own
                // length) rather than keeping the `String`'s heap block.
                Ok(Self(<$repr>::from(s.as_str())))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                String::from(&*id.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }
    };
}

id_type!(
    /// The account that holds streams (`X-ID`, or a JWT's `sub`).
    UserId,
    "user id"
);
id_type!(
    /// A stream (lease) of one account; unique within that account only.
    StreamId,
    "stream id"
);
id_type!(
    /// The device a stream plays on; one device holds at most one slot.
    /// A boxed string, not inline: in a lease it is an `Option`, and absent
    /// it costs 16 bytes instead of an inline id's 24 (BENCHMARKS.md, memory
    /// per live stream).
    DeviceId,
    "device id",
    Box<str>
);
id_type!(
    /// What is being watched; plan rules may count streams per content.
    /// Boxed, as a device id is.
    ContentId,
    "content id",
    Box<str>
);
id_type!(
    /// The value of a stream's tag (`{"channel": "eurosport"}`).
    TagValue,
    "tag value"
);
id_type!(
    /// The name of a plan in the `--plans` file.
    PlanName,
    "plan name"
);

impl StreamId {
    /// A fresh random id for a start that did not name one: 128 random bits
    /// as 22 characters of the URL-safe base64 alphabet, which fits inline
    /// where the 36 characters of a hyphenated UUID would not.
    pub fn random() -> Self {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bits = uuid::Uuid::new_v4().as_u128();
        let mut id = CompactString::with_capacity(22);
        for _ in 0..22 {
            id.push(char::from(ALPHABET[(bits & 63) as usize]));
            bits >>= 6;
        }
        Self(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_allowed_character() {
        let id = "AZaz09._:@-";
        assert_eq!(UserId::parse(id).unwrap().as_str(), id);
        assert!(StreamId::parse(&"x".repeat(MAX_ID_LEN)).is_ok());
    }

    #[test]
    fn rejects_empty_long_and_foreign_characters() {
        assert_eq!(UserId::parse(""), Err(InvalidId::Empty { what: "user id" }));
        assert_eq!(
            StreamId::parse(&"x".repeat(MAX_ID_LEN + 1)),
            Err(InvalidId::TooLong { what: "stream id" })
        );
        for bad in ["a b", "a/b", "ü", "a\n", "a%20", "{x}"] {
            assert!(DeviceId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<ContentId>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<ContentId>("\"not ok\"").is_err());
    }

    #[test]
    fn random_stream_ids_are_valid_and_distinct() {
        let (a, b) = (StreamId::random(), StreamId::random());
        assert_ne!(a, b);
        assert!(StreamId::parse(a.as_str()).is_ok());
        assert_eq!(a.as_str().len(), 22);
    }

    #[test]
    fn typical_ids_take_no_heap_block() {
        let id = StreamId::random();
        assert!(!id.0.is_heap_allocated());
        let parsed = UserId::try_from(String::from("acct-0001234567")).unwrap();
        assert!(!parsed.0.is_heap_allocated());
        assert_eq!(String::from(parsed), "acct-0001234567");
    }
}
