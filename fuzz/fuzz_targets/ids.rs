//! Every id parser: never panics, and accepts exactly 1–128 characters of
//! `A-Z a-z 0-9 . _ : @ -`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamguard::domain::{ContentId, DeviceId, StreamId, UserId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let valid = (1..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".:_@-".contains(&b));
    assert_eq!(UserId::parse(text).is_ok(), valid, "{text:?}");
    assert_eq!(StreamId::try_from(text.to_owned()).is_ok(), valid);
    assert_eq!(DeviceId::parse(text).is_ok(), valid);
    assert_eq!(ContentId::parse(text).is_ok(), valid);
    if let Ok(id) = UserId::parse(text) {
        assert_eq!(id.as_str(), text);
    }
});
