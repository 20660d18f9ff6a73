//! A stream's attributes (`{"channel": "eurosport", "quality": "uhd"}`),
//! fixed for the life of the stream; plan rules count streams by them.

use std::fmt;

use compact_str::CompactString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ids::{InvalidId, TagValue};

/// Most tags one stream may carry.
pub const MAX_TAGS: usize = 8;
/// Longest tag name, in characters.
pub const MAX_TAG_NAME_LEN: usize = 32;
/// The attribute name that means the stream's `content_id` in a rule; no
/// tag may take it.
pub const CONTENT_ID: &str = "content_id";

/// A tag's name: 1–32 characters of `a-z 0-9 _`, never `content_id`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagName(CompactString);

/// Why tags are refused; the message names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTags {
    #[error("tags: at most {MAX_TAGS} tags")]
    TooMany,
    #[error("tags: {0:?} is not a tag name (1-{MAX_TAG_NAME_LEN} characters of a-z 0-9 _)")]
    BadName(String),
    #[error("tags: `{CONTENT_ID}` is the stream's content id, not a tag")]
    Reserved,
    #[error("tags.{name}: {source}")]
    BadValue { name: String, source: InvalidId },
}

impl TagName {
    pub fn parse(s: &str) -> Result<Self, InvalidTags> {
        let well_formed = !s.is_empty()
            && s.len() <= MAX_TAG_NAME_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !well_formed {
            return Err(InvalidTags::BadName(s.to_owned()));
        }
        if s == CONTENT_ID {
            return Err(InvalidTags::Reserved);
        }
        Ok(Self(CompactString::new(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TagName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TagName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TagName({:?})", &*self.0)
    }
}

/// Name/value pairs, sorted by name.
type TagList = Box<[(TagName, TagValue)]>;

/// A stream's tags, sorted by name. Most streams carry none, so the empty
/// set is one null pointer in the lease.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tags(Option<Box<TagList>>);

impl Tags {
    /// Tags from name/value pairs, each checked; a name given twice keeps
    /// the last value (as a JSON object would).
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, InvalidTags> {
        let mut list: Vec<(TagName, TagValue)> = Vec::new();
        for (name, value) in pairs {
            let name = TagName::parse(name)?;
            let value = TagValue::parse(value).map_err(|source| InvalidTags::BadValue {
                name: name.to_string(),
                source,
            })?;
            list.retain(|(n, _)| n != &name);
            list.push((name, value));
            if list.len() > MAX_TAGS {
                return Err(InvalidTags::TooMany);
            }
        }
        list.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self::from_sorted(list))
    }

    fn from_sorted(list: Vec<(TagName, TagValue)>) -> Self {
        if list.is_empty() {
            Self(None)
        } else {
            Self(Some(Box::new(list.into_boxed_slice())))
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn as_slice(&self) -> &[(TagName, TagValue)] {
        self.0.as_deref().map(|b| &b[..]).unwrap_or(&[])
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.as_slice()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Whether the stream carries the tag `name` with `value`. The value is
    /// compared first: among an account's streams values differ far more
    /// often than names, and mostly in length, which settles it without
    /// comparing bytes (a rule's group is counted over every live stream).
    pub fn has(&self, name: &str, value: &str) -> bool {
        self.as_slice()
            .iter()
            .any(|(n, v)| v.as_str() == value && n.as_str() == name)
    }

    /// The value of the tag `name`, if the stream carries it.
    pub fn get(&self, name: &str) -> Option<&TagValue> {
        self.as_slice()
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, v)| v)
    }
}

impl fmt::Debug for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Tags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, String>::deserialize(d)?;
        Tags::from_pairs(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_sorted_checked_and_bounded() {
        let tags = Tags::from_pairs([("quality", "uhd"), ("channel", "eurosport")]).unwrap();
        assert_eq!(
            tags.iter().collect::<Vec<_>>(),
            [("channel", "eurosport"), ("quality", "uhd")]
        );
        assert_eq!(tags.get("quality").unwrap().as_str(), "uhd");
        assert!(tags.get("kind").is_none());
        assert!(tags.has("quality", "uhd"));
        assert!(!tags.has("quality", "eurosport") && !tags.has("kind", "uhd"));
        assert_eq!(
            serde_json::to_string(&tags).unwrap(),
            r#"{"channel":"eurosport","quality":"uhd"}"#
        );
        let nine: Vec<(String, String)> =
            (0..9).map(|i| (format!("t{i}"), "v".to_owned())).collect();
        assert_eq!(
            Tags::from_pairs(nine.iter().map(|(a, b)| (a.as_str(), b.as_str()))),
            Err(InvalidTags::TooMany)
        );
        for bad in ["", "Channel", "a-b", &"x".repeat(33)] {
            assert!(matches!(
                Tags::from_pairs([(bad, "v")]),
                Err(InvalidTags::BadName(_))
            ));
        }
        assert_eq!(
            Tags::from_pairs([("content_id", "m")]),
            Err(InvalidTags::Reserved)
        );
        assert!(matches!(
            Tags::from_pairs([("channel", "a b")]),
            Err(InvalidTags::BadValue { .. })
        ));
        assert!(Tags::from_pairs([]).unwrap().is_empty());
        assert_eq!(std::mem::size_of::<Tags>(), 8);
    }
}
