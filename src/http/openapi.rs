//! The OpenAPI 3.1 document, generated from the handlers' annotations.
//! Every status a route can answer is listed, with the problem body's type.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use super::dto;
use super::{admin, edge, ops, streams};

/// An RFC 9457 problem.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Problem {
    /// `urn:streamguard:problem:<slug>`, e.g. `…:invalid-request`.
    r#type: String,
    title: String,
    status: u16,
    detail: String,
}

/// 409: `stream-limit-reached` (with `limit`, `active` and the live
/// `streams`, so the player can offer to stop one) or `stream-id-conflict`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ConflictProblem {
    r#type: String,
    title: String,
    status: u16,
    detail: String,
    limit: Option<u32>,
    active: Option<usize>,
    streams: Option<Vec<dto::StreamDto>>,
}

/// Why a stream ended.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum EndReasonSchema {
    Stopped,
    Expired,
    Evicted,
    Replaced,
    Revoked,
}

/// 410 `stream-ended`, with the `reason`: the player must stop.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EndedProblem {
    r#type: String,
    title: String,
    status: u16,
    detail: String,
    reason: EndReasonSchema,
}

/// Why `/edge/verify` refused a grant.
#[derive(ToSchema)]
#[schema(rename_all = "kebab-case")]
#[allow(dead_code)]
pub enum EdgeReasonSchema {
    Expired,
    Invalid,
    ContentMismatch,
    Replaced,
    Revoked,
    Stopped,
    Evicted,
}

/// 403 `grant-refused`, with the `reason` (also in `Streamguard-Reason`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EdgeProblem {
    r#type: String,
    title: String,
    status: u16,
    detail: String,
    reason: EdgeReasonSchema,
}

/// The calling account (header mode: the gateway sets it).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct AccountHeader {
    /// Account id.
    #[param(
        rename = "X-ID",
        pattern = "^[A-Za-z0-9._:@-]{1,128}$",
        min_length = 1,
        max_length = 128
    )]
    x_id: String,
}

/// `{id}`: one of the calling account's streams.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct StreamParam {
    /// Stream id.
    #[param(
        pattern = "^[A-Za-z0-9._:@-]{1,128}$",
        min_length = 1,
        max_length = 128
    )]
    id: String,
}

/// `{user}`: the account an admin route acts on.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct UserParam {
    /// Account id.
    #[param(
        pattern = "^[A-Za-z0-9._:@-]{1,128}$",
        min_length = 1,
        max_length = 128
    )]
    user: String,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "streamguard", description = "Concurrent-stream limiter"),
    paths(
        ops::legacy_health, ops::healthz, ops::readyz, ops::metrics, ops::admin_metrics, ops::openapi, ops::jwks,
        streams::list, streams::start, streams::heartbeat, streams::stop,
        admin::list, admin::revoke, admin::get_limit, admin::set_limit, admin::clear_limit,
        edge::verify,
    ),
    components(schemas(
        dto::StreamDto, dto::StartBody, dto::StartResponse, dto::HeartbeatResponse,
        dto::StreamsResponse, dto::LimitBody, dto::LimitResponse, dto::LimitSource, Problem,
        ConflictProblem, EndedProblem, EndReasonSchema, EdgeProblem, EdgeReasonSchema,
    )),
    modifiers(&SecuritySchemes, &OptionalStartBody),
)]
pub struct ApiDoc;

/// The body of `POST /streams` may be left out (utoipa marks a body
/// required unless its type is nullable, and `null` is not a body we take).
struct OptionalStartBody;

impl Modify for OptionalStartBody {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let start = openapi
            .paths
            .paths
            .get_mut("/streams")
            .and_then(|item| item.post.as_mut())
            .and_then(|op| op.request_body.as_mut());
        if let Some(body) = start {
            body.required = Some(utoipa::openapi::Required::False);
        }
    }
}

/// The document as this instance serves it: with `--auth jwt`, the
/// player routes take a bearer token instead of `X-ID`.
pub fn document(jwt: bool) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::security::SecurityRequirement;
    let mut doc = ApiDoc::openapi();
    if !jwt {
        return doc;
    }
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
        ];
        for op in operations.into_iter().flatten() {
            let by_x_id = serde_json::to_value(&op.security)
                .is_ok_and(|v| v.to_string().contains("\"x_id\""));
            if !by_x_id {
                continue;
            }
            op.security = Some(vec![SecurityRequirement::new(
                "bearer_jwt",
                Vec::<String>::new(),
            )]);
            if let Some(params) = &mut op.parameters {
                params.retain(|p| p.name != "X-ID");
            }
        }
    }
    doc
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "x_id",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-ID",
                "The account, set by a trusted gateway (--auth header)",
            ))),
        );
        components.add_security_scheme(
            "bearer_jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("The account is the token's `sub` (--auth jwt)"))
                    .build(),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn in_jwt_mode_player_routes_take_a_bearer_token() {
        let doc = serde_json::to_value(document(true)).unwrap();
        let start = &doc["paths"]["/streams"]["post"];
        assert_eq!(start["security"], serde_json::json!([{"bearer_jwt": []}]));
        assert!(!start["parameters"].to_string().contains("X-ID"), "{start}");
        let admin = &doc["paths"]["/admin/users/{user}/limit"]["put"];
        assert_eq!(admin["security"], serde_json::json!([{"admin_token": []}]));
        let header = serde_json::to_value(document(false)).unwrap();
        assert_eq!(
            header["paths"]["/streams"]["post"]["security"],
            serde_json::json!([{"x_id": []}])
        );
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut seen = HashSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path}"));
                assert!(seen.insert(id.to_owned()), "{id} twice");
            }
        }
    }
}
