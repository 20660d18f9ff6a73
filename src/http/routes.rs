//! Every route of the API in one list: the router, the OpenAPI document
//! and the metrics' route labels are all made from [`surface`], so they
//! cannot disagree.
//!
//! **Adding a route** is one line in [`surface`]: write the handler with a
//! `#[utoipa::path(method, path = "…", …)]` annotation (listing its answers;
//! the shared sets of `super::openapi` cover the common failures), then add
//! `(When::…, api(routes!(module::handler))),`, with every handler of the
//! same path in the same `routes!`. The route is then served, documented
//! and counted on the metrics' fast path. A route that is not part of the
//! API (a page) is added with `page(path, method_router)` instead: served
//! and counted, not documented.

use axum::Router;
use axum::routing::{MethodRouter, get};
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use super::openapi::{self, ApiDoc};
use super::{AppState, admin, admin_plan, console, edge, ops, streams};

/// When a route is served: routes switched off are not there at all (404
/// for every method, and absent from the document).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    /// `--grant-key` is set.
    GrantKey,
    /// `--admin-token` is set.
    AdminToken,
    /// `/metrics` is served on the API's address (no `--metrics-listen`).
    MetricsOnApi,
}

impl When {
    fn holds(self, state: &AppState) -> bool {
        match self {
            When::Always => true,
            When::GrantKey => state.grants.is_some(),
            When::AdminToken => state.admin_token.is_some(),
            When::MetricsOnApi => state.ops.metrics_on_api,
        }
    }
}

/// Routes of one path.
pub enum Routes {
    /// Documented in the OpenAPI document.
    Api(UtoipaMethodRouter<AppState>),
    /// Served but not part of the API (the console's pages).
    Page(&'static str, MethodRouter<AppState>),
}

fn api(routes: UtoipaMethodRouter<AppState>) -> Routes {
    Routes::Api(routes)
}

fn page(path: &'static str, routes: MethodRouter<AppState>) -> Routes {
    Routes::Page(path, routes)
}

/// The whole HTTP surface, and when each route is served.
pub fn surface() -> Vec<(When, Routes)> {
    use When::*;
    vec![
        (Always, api(routes!(ops::legacy_health))),
        (Always, api(routes!(ops::healthz))),
        (Always, api(routes!(ops::readyz))),
        (Always, api(routes!(ops::openapi))),
        (Always, api(routes!(streams::list, streams::start))),
        (Always, api(routes!(streams::stop))),
        (Always, api(routes!(streams::heartbeat))),
        (MetricsOnApi, api(routes!(ops::metrics))),
        (GrantKey, api(routes!(ops::jwks))),
        (GrantKey, api(routes!(edge::verify))),
        (AdminToken, api(routes!(ops::admin_metrics))),
        (AdminToken, api(routes!(admin::list))),
        (AdminToken, api(routes!(admin::revoke))),
        (
            AdminToken,
            api(routes!(
                admin::get_limit,
                admin::set_limit,
                admin::clear_limit
            )),
        ),
        (
            AdminToken,
            api(routes!(
                admin_plan::get_plan,
                admin_plan::set_plan,
                admin_plan::clear_plan
            )),
        ),
        (AdminToken, page("/console", get(console::root))),
        (AdminToken, page("/console/", get(console::index))),
        (AdminToken, page("/console/{file}", get(console::asset))),
    ]
}

/// The routes for which `serves` holds, with their document.
fn served(serves: impl Fn(When) -> bool) -> OpenApiRouter<AppState> {
    surface()
        .into_iter()
        .filter(|(when, _)| serves(*when))
        .fold(
            OpenApiRouter::with_openapi(ApiDoc::openapi()),
            |router, (_, routes)| match routes {
                Routes::Api(routes) => router.routes(routes),
                Routes::Page(path, routes) => router.route(path, routes),
            },
        )
}

/// The routes this configuration serves, without layers or fallbacks.
pub fn routes(state: &AppState) -> Router<AppState> {
    served(|when| when.holds(state)).split_for_parts().0
}

/// The document of exactly the routes this configuration serves.
pub fn document(state: &AppState) -> utoipa::openapi::OpenApi {
    let jwt = matches!(state.auth, crate::auth::Authenticator::Jwt(_));
    let mut doc = document_of(|when| when.holds(state), jwt);
    admin_plan::document_plan_names(&mut doc, &admin_plan::plan_names(state));
    doc
}

fn document_of(serves: impl Fn(When) -> bool, jwt: bool) -> utoipa::openapi::OpenApi {
    let mut doc = served(serves).into_openapi();
    openapi::finish(&mut doc, jwt);
    doc
}

/// Every path any configuration serves, as the router matches it.
pub fn every_path() -> Vec<String> {
    surface()
        .into_iter()
        .flat_map(|(_, routes)| match routes {
            Routes::Api((_, paths, _)) => paths.paths.into_keys().collect(),
            Routes::Page(path, _) => vec![path.to_owned()],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn everything(_: When) -> bool {
        true
    }

    #[test]
    fn in_jwt_mode_player_routes_take_a_bearer_token() {
        let doc = serde_json::to_value(document_of(everything, true)).unwrap();
        let start = &doc["paths"]["/streams"]["post"];
        assert_eq!(start["security"], serde_json::json!([{"bearer_jwt": []}]));
        assert!(!start["parameters"].to_string().contains("X-ID"), "{start}");
        let admin = &doc["paths"]["/admin/users/{user}/limit"]["put"];
        assert_eq!(admin["security"], serde_json::json!([{"admin_token": []}]));
        let header = serde_json::to_value(document_of(everything, false)).unwrap();
        assert_eq!(
            header["paths"]["/streams"]["post"]["security"],
            serde_json::json!([{"x_id": []}])
        );
        assert_eq!(
            header["paths"]["/streams"]["post"]["requestBody"]["required"],
            serde_json::json!(false)
        );
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = serde_json::to_value(document_of(everything, false)).unwrap();
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

    #[test]
    fn every_documented_path_is_a_path_of_the_surface_and_only_pages_are_not_documented() {
        let doc = document_of(everything, false);
        let documented: HashSet<String> = doc.paths.paths.keys().cloned().collect();
        let every: HashSet<String> = every_path().into_iter().collect();
        assert!(documented.is_subset(&every));
        let undocumented: HashSet<&str> =
            every.difference(&documented).map(String::as_str).collect();
        assert_eq!(
            undocumented,
            HashSet::from(["/console", "/console/", "/console/{file}"])
        );
    }

    #[test]
    fn ids_are_described_once_from_the_domain_rule() {
        let doc = serde_json::to_value(document_of(everything, false)).unwrap();
        let text = doc.to_string();
        let rule = format!("^[A-Za-z0-9._:@-]{{1,{}}}$", crate::domain::MAX_ID_LEN);
        let param = &doc["paths"]["/streams/{id}"]["delete"]["parameters"];
        assert!(param.to_string().contains(&rule), "{param}");
        assert!(!text.contains("{1,129}"));
    }
}
