//! Credentials: a [`Secret`] that is never printed, the one way secret
//! files are read, and URLs shown with their password hidden.

use std::fmt;
use std::path::PathBuf;

/// A credential; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A secret given by its flag, or else read from its `--…-file` flag: the
/// one way secret files are read.
pub fn given_or_file(
    given: &Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<Option<Secret>, String> {
    match (given, file) {
        (Some(secret), _) => Ok(Some(secret.clone())),
        (None, Some(path)) => read_file(path).map(Some),
        (None, None) => Ok(None),
    }
}

/// A secret kept in a file, for `--…-file` flags: one trailing newline
/// (`\n` or `\r\n`) is not part of it.
pub fn read_file(path: &std::path::Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let secret = text.strip_suffix('\n').unwrap_or(&text);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    parse(secret).map_err(|e| format!("{}: the secret {e}", path.display()))
}

pub fn parse(s: &str) -> Result<Secret, String> {
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(Secret(s.to_owned()))
}

/// `scheme://user:password@host…` with the password replaced by `***`.
pub fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
            None => url.to_owned(), // a user name alone: nothing secret
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_userinfo("redis://:s3cret@h:6379/0"),
            "redis://:***@h:6379/0"
        );
        assert_eq!(
            redact_userinfo("rediss://app:s3cret@h/?x=@y"),
            "rediss://app:***@h/?x=@y"
        );
        assert_eq!(redact_userinfo("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact_userinfo("redis://app@h:6379"), "redis://app@h:6379");
    }
}
