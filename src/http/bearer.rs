//! `Authorization: Bearer <token>` (RFC 6750), shared by the admin check and
//! JWT identity. The scheme name is case-insensitive (RFC 9110 §11.1).

use axum::http::{HeaderMap, header};

/// What the `Authorization` header holds, as far as bearer tokens go.
#[derive(Debug, PartialEq, Eq)]
pub enum Bearer<'a> {
    /// No `Authorization` header.
    Absent,
    /// A header that is not one well-formed bearer credential: another
    /// scheme, no token, non-ASCII bytes, or the header sent twice.
    Malformed,
    Token(&'a str),
}

/// Reads the bearer token of a request.
pub fn bearer(headers: &HeaderMap) -> Bearer<'_> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Bearer::Absent;
    };
    if values.next().is_some() {
        return Bearer::Malformed;
    }
    let Ok(text) = value.to_str() else {
        return Bearer::Malformed;
    };
    match text.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer")
                && !token.trim().is_empty()
                && !token.trim().contains(' ') =>
        {
            Bearer::Token(token.trim())
        }
        _ => Bearer::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn parse(values: &[&str]) -> Option<String> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        match bearer(&headers) {
            Bearer::Token(t) => Some(t.to_owned()),
            Bearer::Absent => Some("<absent>".into()),
            Bearer::Malformed => None,
        }
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER abc", "Bearer  abc "] {
            assert_eq!(parse(&[v]).as_deref(), Some("abc"), "{v}");
        }
    }

    #[test]
    fn anything_else_is_malformed_or_absent() {
        assert_eq!(parse(&[]).as_deref(), Some("<absent>"));
        for v in [
            "Basic abc",
            "Bearer",
            "Bearer ",
            "Bearerabc",
            "Bearer a b",
            "abc",
        ] {
            assert_eq!(parse(&[v]), None, "{v}");
        }
        assert_eq!(parse(&["Bearer a", "Bearer b"]), None, "two headers");
    }
}
