//! A client's `X-Request-Id` is kept only when it is 1–128 safe characters.
#![no_main]

use axum::http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use streamguard::http::acceptable_request_id;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    if acceptable_request_id(&value) {
        assert!((1..=128).contains(&data.len()));
        assert!(data.iter().all(|b| b.is_ascii_graphic()));
        assert!(!data.iter().any(|b| b"\"\\{}<>".contains(b)));
    }
});
