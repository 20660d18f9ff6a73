//! The OpenAPI 3.1 document: its frame (title, schemas, security schemes),
//! the response sets and parameters the handlers' `#[utoipa::path]`
//! annotations share, and the adjustments made once the served routes are
//! known. Which paths it lists comes from `super::routes`, with the router.

use std::collections::BTreeMap;

use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, Response};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, PartialSchema};

use super::error::{PROBLEM_JSON, Problem};
use super::{admin_plan, dto};

/// The document's frame; `super::routes::document` adds the paths.
#[derive(OpenApi)]
#[openapi(
    info(title = "streamguard", description = "Concurrent-stream limiter"),
    components(schemas(
        dto::StreamDto, dto::StartBody, dto::StartResponse, dto::HeartbeatResponse,
        dto::StreamsResponse, dto::LimitBody, dto::LimitResponse, dto::LimitSource,
        dto::EndReasonDto, Problem, dto::ConflictDto,
        admin_plan::PlanBody, admin_plan::PlanResponse, admin_plan::RuleUsage,
    )),
    modifiers(&SecuritySchemes),
)]
pub struct ApiDoc;

/// Problem answers, by status, with what each means on the routes that
/// list the set.
fn problems(list: &[(u16, &str)]) -> BTreeMap<String, RefOr<Response>> {
    list.iter()
        .map(|(status, description)| {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build();
            let response = ResponseBuilder::new()
                .description(*description)
                .content(PROBLEM_JSON, content)
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}

const STORE_DOWN: (u16, &str) = (
    503,
    "store-unavailable: the store failed or did not answer; see Retry-After",
);

/// What every player route may answer besides its own outcomes. A route
/// lists its own answer after the set to say more of one status.
pub struct PlayerFailures;

impl IntoResponses for PlayerFailures {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        problems(&[
            (
                400,
                "invalid-request: a malformed X-ID or path id, or two X-ID headers",
            ),
            (
                401,
                "missing-identity: no X-ID; with --auth jwt, missing-token or invalid-token (WWW-Authenticate: Bearer)",
            ),
            (
                429,
                "rate-limited: too many requests for this stream or account; see Retry-After",
            ),
            STORE_DOWN,
        ])
    }
}

/// The admin token's answers: what every admin route may answer.
pub struct AdminAuthFailures;

impl IntoResponses for AdminAuthFailures {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        problems(&[
            (401, "missing-admin-token"),
            (403, "wrong-admin-token"),
            (404, "not-found: no --admin-token is configured"),
        ])
    }
}

/// What every admin route on an account may answer.
pub struct AdminFailures;

impl IntoResponses for AdminFailures {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut set = AdminAuthFailures::responses();
        set.extend(problems(&[
            (400, "invalid-request: a malformed path id"),
            STORE_DOWN,
        ]));
        set
    }
}

/// What a route that reads a JSON body may also answer.
pub struct BodyFailures;

impl IntoResponses for BodyFailures {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        problems(&[
            (413, "payload-too-large: body over 16 KiB"),
            (415, "unsupported-media-type: a body that is not JSON"),
        ])
    }
}

/// The store's readiness failures.
pub struct NotReady;

impl IntoResponses for NotReady {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        problems(&[(503, "store-unavailable, or draining: shutdown has started")])
    }
}

/// A required id parameter, with the id schema of `dto::IdSchema`.
fn id_param(name: &str, place: ParameterIn, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(place)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(dto::IdSchema::schema()))
        .build()
}

/// The calling account (header mode: the gateway sets it).
pub struct AccountHeader;

impl IntoParams for AccountHeader {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![id_param("X-ID", ParameterIn::Header, "Account id")]
    }
}

/// `{id}`: one of the calling account's streams.
pub struct StreamParam;

impl IntoParams for StreamParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![id_param("id", ParameterIn::Path, "Stream id")]
    }
}

/// `{user}`: the account an admin route acts on.
pub struct UserParam;

impl IntoParams for UserParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![id_param("user", ParameterIn::Path, "Account id")]
    }
}

/// Adjusts the document of the served routes: the body of `POST /streams`
/// may be left out (utoipa marks a body required unless its type is
/// nullable, and `null` is not a body we take); with `--auth jwt`, the
/// player routes take a bearer token instead of `X-ID`.
pub fn finish(doc: &mut utoipa::openapi::OpenApi, jwt: bool) {
    let start = doc
        .paths
        .paths
        .get_mut("/streams")
        .and_then(|item| item.post.as_mut())
        .and_then(|op| op.request_body.as_mut());
    if let Some(body) = start {
        body.required = Some(Required::False);
    }
    if !jwt {
        return;
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
