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
        Self::check(s)?;
        Ok(Self(CompactString::new(s)))
    }

    fn check(s: &str) -> Result<(), InvalidTags> {
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
        Ok(())
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

/// A stream's tags, sorted by name. Most streams carry none, so the empty
/// set is one null pointer in the lease.
///
/// The pairs are packed into one string, each as a character holding the
/// name's length less one, the name, one holding the value's length less
/// one, the value (names are at most 32 characters and values 128, all
/// ASCII, so every length is one ASCII character). Beside it, a 64-bit
/// signature sets two bits per pair, drawn from a hash of the pair: a rule
/// that counts the streams with one pair ([`TagProbe`]) reads that word
/// and passes over nearly every stream without the pair (a start counts
/// over every live stream; BENCHMARKS.md, plans).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tags(Option<Box<Packed>>);

#[derive(Clone, PartialEq, Eq)]
struct Packed {
    signature: u64,
    text: Box<str>,
}

/// One name/value pair looked for on many streams, with its signature
/// bits worked out once.
#[derive(Clone, Copy, Debug)]
pub struct TagProbe<'a> {
    name: &'a str,
    value: &'a str,
    bits: u64,
}

impl<'a> TagProbe<'a> {
    pub fn new(name: &'a str, value: &'a str) -> Self {
        Self {
            name,
            value,
            bits: pair_bits(name, value),
        }
    }

    pub fn name(&self) -> &'a str {
        self.name
    }

    pub fn value(&self) -> &'a str {
        self.value
    }
}

/// The two signature bits of a pair.
fn pair_bits(name: &str, value: &str) -> u64 {
    let h = mix(
        mix(0x9e37_79b9_7f4a_7c15, name.as_bytes()),
        value.as_bytes(),
    );
    (1u64 << (h & 63)) | (1u64 << ((h >> 6) & 63))
}

/// A small multiplicative hash, eight bytes at a time.
fn mix(mut h: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0xff51_afd7_ed55_8ccd;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let word = u64::from_le_bytes(c.try_into().expect("eight bytes"));
        h = (h ^ word).wrapping_mul(K);
        h ^= h >> 29;
    }
    let rest = chunks.remainder();
    // Four to seven bytes as two overlapping words, fewer one by one.
    let tail = if rest.len() >= 4 {
        let word = |at: usize| {
            u64::from(u32::from_le_bytes(
                rest[at..at + 4].try_into().expect("four bytes"),
            ))
        };
        word(0) | (word(rest.len() - 4) << 32)
    } else {
        rest.iter().fold(0u64, |t, &b| (t << 8) | u64::from(b))
    };
    h = (h ^ tail ^ ((bytes.len() as u64) << 56)).wrapping_mul(K);
    h ^ (h >> 32)
}

/// Whether two short strings are equal. Names and values are mostly 4 to
/// 16 bytes, compared here as two overlapping words each rather than by a
/// call to `bcmp` (which costs more than the whole of such a comparison).
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let u32_at = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4"));
    let u64_at = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8"));
    match n {
        4..=8 => u32_at(a, 0) == u32_at(b, 0) && u32_at(a, n - 4) == u32_at(b, n - 4),
        9..=16 => u64_at(a, 0) == u64_at(b, 0) && u64_at(a, n - 8) == u64_at(b, n - 8),
        _ => a.first() == b.first() && a == b,
    }
}

impl Tags {
    /// Tags from name/value pairs, each checked; a name given twice keeps
    /// the last value (as a JSON object would).
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, InvalidTags> {
        let mut list: Vec<(&'a str, &'a str)> = Vec::new();
        for (name, value) in pairs {
            TagName::check(name)?;
            super::ids::check(TagValue::WHAT, value).map_err(|source| InvalidTags::BadValue {
                name: name.to_owned(),
                source,
            })?;
            list.retain(|(n, _)| *n != name);
            list.push((name, value));
            if list.len() > MAX_TAGS {
                return Err(InvalidTags::TooMany);
            }
        }
        if list.is_empty() {
            return Ok(Self(None));
        }
        list.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut text = String::with_capacity(list.iter().map(|(n, v)| n.len() + v.len() + 2).sum());
        let mut signature = 0;
        for (name, value) in list {
            // Lengths 1..=128, stored less one: an ASCII character.
            text.push(char::from((name.len() - 1) as u8));
            text.push_str(name);
            text.push(char::from((value.len() - 1) as u8));
            text.push_str(value);
            signature |= pair_bits(name, value);
        }
        Ok(Self(Some(Box::new(Packed {
            signature,
            text: text.into_boxed_str(),
        }))))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let text = self.0.as_deref().map_or("", |p| &p.text);
        let mut at = 0;
        std::iter::from_fn(move || {
            if at >= text.len() {
                return None;
            }
            let name = field(text.as_bytes(), at);
            let value = field(text.as_bytes(), name.end);
            at = value.end;
            Some((&text[name], &text[value]))
        })
    }

    /// Whether the stream carries the tag `name` with `value`.
    pub fn has(&self, name: &str, value: &str) -> bool {
        self.get(name)
            .is_some_and(|v| same(v.as_bytes(), value.as_bytes()))
    }

    /// Whether the stream carries the probe's pair: the signature first,
    /// which settles it for nearly every stream without the pair.
    #[inline]
    pub fn has_probe(&self, probe: &TagProbe<'_>) -> bool {
        match &self.0 {
            Some(p) => p.signature & probe.bits == probe.bits && self.has(probe.name, probe.value),
            None => false,
        }
    }

    /// The value of the tag `name`, if the stream carries it.
    pub fn get(&self, name: &str) -> Option<&str> {
        let text = &self.0.as_deref()?.text;
        let bytes = text.as_bytes();
        let mut at = 0;
        while at < bytes.len() {
            let key = field(bytes, at);
            let value = field(bytes, key.end);
            if same(&bytes[key], name.as_bytes()) {
                return Some(&text[value]);
            }
            at = value.end;
        }
        None
    }
}

/// Where the characters of the length-prefixed field at `at` of a packed
/// text lie; the next field begins at its end.
fn field(bytes: &[u8], at: usize) -> std::ops::Range<usize> {
    at + 1..at + 2 + usize::from(bytes[at])
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
        assert_eq!(tags.get("quality"), Some("uhd"));
        assert_eq!(tags.len(), 2);
        assert!(tags.has_probe(&TagProbe::new("quality", "uhd")));
        assert!(!tags.has_probe(&TagProbe::new("quality", "hd")));
        assert!(!tags.has_probe(&TagProbe::new("channel", "uhd")));
        assert!(!Tags::default().has_probe(&TagProbe::new("quality", "uhd")));
        let long = "v".repeat(128);
        let tags_long = Tags::from_pairs([(&*"n".repeat(32), long.as_str()), ("a", "b")]).unwrap();
        assert_eq!(tags_long.get(&"n".repeat(32)), Some(long.as_str()));
        assert_eq!(tags_long.iter().next(), Some(("a", "b")));
        assert!(tags_long.has_probe(&TagProbe::new(&"n".repeat(32), &long)));
        let twice = Tags::from_pairs([("a", "1"), ("b", "2"), ("a", "3")]).unwrap();
        assert_eq!(twice.iter().collect::<Vec<_>>(), [("a", "3"), ("b", "2")]);
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
        for n in 0..40 {
            let a: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(same(&a, &a.clone()));
            for i in 0..n {
                let mut b = a.clone();
                b[i] = b'_';
                assert!(!same(&a, &b), "{n} {i}");
            }
            assert!(!same(&a, &a[..n.saturating_sub(1)]) || n == 0);
        }
        assert_eq!(std::mem::size_of::<Tags>(), 8);
    }
}
