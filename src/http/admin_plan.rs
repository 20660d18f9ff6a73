//! Operator routes for plans: which plan an account has, and each rule's
//! usage; assign or clear a plan (`--plans`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::admin::Admin;
use super::extract::{JsonBody, UserPath};
use super::{ApiError, AppState};
use crate::domain::{AccountView, PlanName, PlanSource, UserId};
use crate::telemetry;

/// The plans an admin may assign now: the `--plans` file's, or the one
/// implicit plan, `default`, without it.
pub fn plan_names(state: &AppState) -> Vec<String> {
    match &state.policy.plans {
        Some(book) => book
            .current()
            .all()
            .iter()
            .map(|p| p.name.to_string())
            .collect(),
        None => vec![IMPLICIT.to_owned()],
    }
}

/// The name of the plan of a service without `--plans`.
const IMPLICIT: &str = "default";

/// The document's `PlanBody.plan` lists the plans defined now, so a body
/// the document allows is one the route accepts.
pub fn document_plan_names(doc: &mut utoipa::openapi::OpenApi, names: &[String]) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    if let Some(RefOr::T(Schema::Object(body))) = components.schemas.get_mut("PlanBody") {
        let plan = ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A plan the `--plans` file defines (`default` without one)",
            ))
            .enum_values(Some(names.iter().cloned()))
            .build();
        body.properties.insert("plan".to_owned(), plan.into());
    }
}

/// Body of `PUT /admin/users/{user}/plan`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PlanBody {
    /// A plan the `--plans` file defines.
    pub plan: String,
}

/// One rule of the account's plan and how much of it is in use.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleUsage {
    pub name: String,
    pub max: u32,
    /// Live streams in the rule's fullest group.
    pub in_use: usize,
}

/// An account's plan as every decision sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanResponse {
    pub user_id: String,
    /// The plan in force (`default` without `--plans`).
    pub plan: String,
    /// `override` (admin), `claim` (token or gateway header), or `default`.
    #[schema(value_type = String)]
    pub source: PlanSource,
    /// The account-wide limit in force (an admin or token limit wins over
    /// the plan's).
    pub limit: u32,
    pub rules: Vec<RuleUsage>,
    /// Streams ended because the new plan does not allow them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<String>,
}

fn answer(user: &UserId, view: &AccountView, revoked: Vec<String>) -> PlanResponse {
    let (plan, rules) = match &view.plan {
        Some(plan) => (
            plan.name.to_string(),
            plan.rules
                .iter()
                .map(|r| RuleUsage {
                    name: r.name.to_string(),
                    max: r.max.get(),
                    in_use: r.in_use(&view.live),
                })
                .collect(),
        ),
        None => ("default".to_owned(), Vec::new()),
    };
    PlanResponse {
        user_id: user.to_string(),
        plan,
        source: view.plan_source,
        limit: view.limit.get(),
        rules,
        revoked,
    }
}

/// An account's plan, its source and each rule's usage.
#[utoipa::path(get, path = "/admin/users/{user}/plan", tag = "admin", operation_id = "admin_get_plan",
    security(("admin_token" = [])),
    params(super::openapi::UserParam),
    responses(
        (status = 200, description = "The plan in force", body = PlanResponse),
        super::openapi::AdminFailures,
    ))]
#[tracing::instrument(level = "debug", skip_all, name = "admin_get_plan")]
pub async fn get_plan(
    _: Admin,
    State(state): State<AppState>,
    UserPath(user): UserPath,
) -> Result<Json<PlanResponse>, ApiError> {
    let view = state.call("view", state.store.view(&user)).await?;
    Ok(Json(answer(&user, &view, Vec::new())))
}

/// Assign a plan to an account; streams the new plan does not allow are
/// revoked at once.
#[utoipa::path(put, path = "/admin/users/{user}/plan", tag = "admin", operation_id = "admin_set_plan",
    security(("admin_token" = [])),
    request_body = PlanBody,
    params(super::openapi::UserParam),
    responses(
        (status = 200, description = "Assigned; streams above the new plan's limit or rules are revoked", body = PlanResponse),
        super::openapi::AdminFailures,
        super::openapi::BodyFailures,
        (status = 400, description = "invalid-request (no such plan, no body) or malformed-json", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(level = "debug", skip_all, name = "admin_set_plan")]
pub async fn set_plan(
    _: Admin,
    State(state): State<AppState>,
    UserPath(user): UserPath,
    JsonBody(body): JsonBody<PlanBody>,
) -> Result<Json<PlanResponse>, ApiError> {
    let body = body.ok_or_else(|| ApiError::InvalidRequest("send {\"plan\": NAME}".into()))?;
    let unknown = || ApiError::InvalidRequest(format!("plan: no plan is named {:?}", body.plan));
    let name = PlanName::parse(&body.plan).map_err(|_| unknown())?;
    let Some(book) = &state.policy.plans else {
        // Without `--plans` every account has the one implicit plan: naming
        // it changes nothing.
        if body.plan != IMPLICIT {
            return Err(unknown());
        }
        let view = state.call("view", state.store.view(&user)).await?;
        return Ok(Json(answer(&user, &view, Vec::new())));
    };
    if book.current().get(&name).is_none() {
        return Err(unknown());
    }
    let revoked = state
        .call("set_plan", state.store.set_plan(&user, Some(name)))
        .await?;
    telemetry::record_decision("revoked", revoked.len());
    let view = state.call("view", state.store.view(&user)).await?;
    let revoked = revoked.into_iter().map(String::from).collect();
    Ok(Json(answer(&user, &view, revoked)))
}

/// Return an account to the plan its token, gateway or the default gives.
#[utoipa::path(delete, path = "/admin/users/{user}/plan", tag = "admin", operation_id = "admin_clear_plan",
    security(("admin_token" = [])),
    params(super::openapi::UserParam),
    responses(
        (status = 204, description = "The claimed or default plan applies again"),
        super::openapi::AdminFailures,
    ))]
#[tracing::instrument(level = "debug", skip_all, name = "admin_clear_plan")]
pub async fn clear_plan(
    _: Admin,
    State(state): State<AppState>,
    UserPath(user): UserPath,
) -> Result<StatusCode, ApiError> {
    let revoked = state
        .call("set_plan", state.store.set_plan(&user, None))
        .await?;
    telemetry::record_decision("revoked", revoked.len());
    Ok(StatusCode::NO_CONTENT)
}
