//! API Gateway stages and the router's paths.
//!
//! lambda_http puts a named stage in front of the path (`/prod/streams` for
//! a REST API stage `prod`, and HTTP API events carry it in `rawPath`
//! already), unless `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is set. The
//! router knows `/streams`, so the stage is taken off before routing, and
//! put back in front of the `Location` the answer points to, so that
//! `…/prod/streams` works as it did in the original service whatever the
//! environment says. `$default` stages are never in the path.

use axum::http::uri::PathAndQuery;
use axum::http::{HeaderValue, Request, Response, Uri, header};
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;

/// Takes the stage off the request's path; returns it if it was there.
pub fn strip<B>(req: &mut Request<B>) -> Option<String> {
    let stage = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.stage.clone(),
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.stage.clone(),
        _ => None,
    }
    .filter(|stage| stage != "$default")?;
    let path = without_stage(req.uri().path(), &stage)?;
    let path_and_query = match req.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    *req.uri_mut() = Uri::from_parts(parts).ok()?;
    Some(stage)
}

/// Puts the stage back in front of a `Location` the router answered.
pub fn restore<B>(response: &mut Response<B>, stage: &str) {
    let Some(location) = response.headers().get(header::LOCATION) else {
        return;
    };
    let Some(path) = location.to_str().ok().filter(|l| l.starts_with('/')) else {
        return;
    };
    if let Ok(staged) = HeaderValue::try_from(format!("/{stage}{path}")) {
        response.headers_mut().insert(header::LOCATION, staged);
    }
}

fn without_stage<'a>(path: &'a str, stage: &str) -> Option<&'a str> {
    let rest = path.strip_prefix('/')?.strip_prefix(stage)?;
    match rest {
        "" => Some("/"),
        rest if rest.starts_with('/') => Some(rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_whole_leading_stage_segment_is_taken_off() {
        assert_eq!(without_stage("/prod/streams", "prod"), Some("/streams"));
        assert_eq!(without_stage("/prod", "prod"), Some("/"));
        assert_eq!(without_stage("/streams", "prod"), None);
        assert_eq!(without_stage("/production/streams", "prod"), None);
    }

    #[test]
    fn location_gets_the_stage_back() {
        let mut response = Response::builder()
            .header(header::LOCATION, "/streams/tv-1")
            .body(())
            .unwrap();
        restore(&mut response, "prod");
        assert_eq!(response.headers()[header::LOCATION], "/prod/streams/tv-1");
    }
}
