//! Identifiers that cross the API: accounts, streams, devices and content.
//!
//! Every id is 1–128 characters of `A-Z a-z 0-9 . _ : @ -`; anything else is
//! rejected when the id is parsed, so the rest of the code never sees a bad one.

use std::fmt;

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

fn check(what: &'static str, s: &str) -> Result<(), InvalidId> {
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
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Box<str>);

        impl $name {
            /// What this id is called in error messages.
            pub const WHAT: &'static str = $what;

            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                check($what, s)?;
                Ok(Self(s.into()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                check($what, &s)?;
                Ok(Self(s.into_boxed_str()))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.into()
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
    DeviceId,
    "device id"
);
id_type!(
    /// What is being watched; informational.
    ContentId,
    "content id"
);

impl StreamId {
    /// A fresh random id for a start that did not name one.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string().into_boxed_str())
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
    }
}
