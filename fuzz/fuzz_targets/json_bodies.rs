//! The JSON bodies (`POST /streams`, `PUT /admin/users/{user}/limit`):
//! any bytes either fail to parse, are refused as invalid, or become a
//! request whose ids and limit are valid. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamguard::domain::UserId;
use streamguard::http::dto::{LimitBody, StartBody};

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = serde_json::from_slice::<StartBody>(data)
        && let Ok(req) = body.into_request()
    {
        for id in std::iter::once(&req.stream_id).chain(&req.terminate) {
            assert!(UserId::parse(id.as_str()).is_ok(), "{id}");
        }
    }
    if let Ok(body) = serde_json::from_slice::<LimitBody>(data)
        && let Ok(limit) = body.limit()
    {
        assert!(limit.get() <= 1000);
    }
});
