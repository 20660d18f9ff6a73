//! Parsing of `--store` URLs.

use std::fmt;
#[cfg(feature = "embedded")]
use std::path::PathBuf;
use std::str::FromStr;

/// A store named by `--store`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// `memory`: in-process and volatile.
    Memory,
    /// `file:PATH`: the embedded durable store in directory PATH.
    #[cfg(feature = "embedded")]
    File(PathBuf),
}

impl FromStr for StoreUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "memory" {
            return Ok(StoreUrl::Memory);
        }
        if let Some(path) = s.strip_prefix("file:") {
            return file_store(path);
        }
        let scheme = s.split_once(':').map_or(s, |(scheme, _)| scheme);
        match scheme {
            "redis" | "rediss" | "redis+cluster" | "dynamodb" => Err(format!(
                "the {scheme} store is not part of this build of streamguard"
            )),
            _ => Err(format!(
                "unknown store {s:?}: expected `memory` or `file:PATH`"
            )),
        }
    }
}

#[cfg(feature = "embedded")]
fn file_store(path: &str) -> Result<StoreUrl, String> {
    let path = path.strip_prefix("//").unwrap_or(path);
    if path.is_empty() {
        return Err("file: needs a directory, e.g. file:./streamguard-data".into());
    }
    Ok(StoreUrl::File(PathBuf::from(path)))
}

#[cfg(not(feature = "embedded"))]
fn file_store(_: &str) -> Result<StoreUrl, String> {
    Err("the file store is not part of this build (enable the `embedded` feature)".into())
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Memory => f.write_str("memory"),
            #[cfg(feature = "embedded")]
            StoreUrl::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_memory() {
        assert_eq!("memory".parse(), Ok(StoreUrl::Memory));
    }

    #[cfg(feature = "embedded")]
    #[test]
    fn parses_file() {
        assert_eq!(
            "file:./data".parse(),
            Ok(StoreUrl::File(PathBuf::from("./data")))
        );
        assert_eq!(
            "file:///var/lib/sg".parse(),
            Ok(StoreUrl::File(PathBuf::from("/var/lib/sg")))
        );
    }

    #[test]
    fn rejects_unknown_and_empty() {
        assert!("file:".parse::<StoreUrl>().is_err());
        assert!(
            "postgres://x"
                .parse::<StoreUrl>()
                .unwrap_err()
                .contains("unknown store")
        );
        assert!(
            "redis://localhost"
                .parse::<StoreUrl>()
                .unwrap_err()
                .contains("not part of this build")
        );
    }
}
