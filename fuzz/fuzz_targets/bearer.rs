//! `Authorization` header parsing: any header values (one or several)
//! give Absent, Malformed or a token without spaces, never a panic.
#![no_main]

use axum::http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use streamguard::http::bearer::{Bearer, bearer};

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    // A 0xFF byte splits the input into several header values.
    for part in data.split(|b| *b == 0xff) {
        if let Ok(value) = HeaderValue::from_bytes(part) {
            headers.append(header::AUTHORIZATION, value);
        }
    }
    match bearer(&headers) {
        Bearer::Token(token) => {
            assert!(!token.is_empty() && !token.contains(' '), "{token:?}");
            assert_eq!(headers.get_all(header::AUTHORIZATION).iter().count(), 1);
        }
        Bearer::Absent => assert!(headers.is_empty()),
        Bearer::Malformed => {}
    }
});
