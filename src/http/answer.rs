//! JSON answers of the player's routes, serialized into a buffer sized
//! for them: axum's `Json` starts at 128 bytes and grows (a copy each
//! time), while a stream's answer is 150 to 400 bytes, on every heartbeat.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Room for a stream with ids, tags and a grant without growing.
const INITIAL_CAPACITY: usize = 512;

/// A JSON answer; its `IntoResponse` is axum's `Json`'s, minus the growth.
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(INITIAL_CAPACITY);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                Body::from(body),
            )
                .into_response(),
            // Our answer types always serialize; axum answers the same.
            Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn answers_json_with_its_content_type() {
        let response = Json(serde_json::json!({"id": "a\"b", "n": 1})).into_response();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"id":"a\"b","n":1}"#);
    }
}
