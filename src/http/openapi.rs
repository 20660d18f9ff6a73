//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::dto;
use super::{admin, ops, streams};

/// An RFC 9457 problem; some types add fields (`limit`, `active`,
/// `streams` on `stream-limit-reached`; `reason` on `stream-ended`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Problem {
    /// `urn:streamguard:problem:<slug>`, e.g. `…:stream-limit-reached`.
    r#type: String,
    title: String,
    status: u16,
    detail: String,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "streamguard", description = "Concurrent-stream limiter"),
    paths(
        ops::legacy_health, ops::healthz, ops::readyz, ops::metrics, ops::admin_metrics, ops::openapi, ops::jwks,
        streams::list, streams::start, streams::heartbeat, streams::stop,
        admin::list, admin::revoke, admin::get_limit, admin::set_limit, admin::clear_limit,
    ),
    components(schemas(
        dto::StreamDto, dto::StartBody, dto::StartResponse, dto::HeartbeatResponse,
        dto::StreamsResponse, dto::LimitBody, dto::LimitResponse, dto::LimitSource, Problem,
    )),
    modifiers(&AdminToken),
)]
pub struct ApiDoc;

struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
