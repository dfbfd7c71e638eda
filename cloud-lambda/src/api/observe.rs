//! What wraps every route: request ids (`x-request-id`, made when absent
//! and echoed back), one structured log line per request, metrics, body
//! compression both ways, a timeout, and problem details for errors that
//! arise outside handlers.
//!
//! The log line (target `atelier::access`; JSON with `serve --json-logs`)
//! carries `request_id`, `method`, `route` (the matched route, such as
//! `/assets/{id}`, so ids do not explode the cardinality), `user` (the
//! token's `sub`, recorded once the token verified), `status` and
//! `latency_ms`. Tokens, keys and bodies are never logged.

use std::time::Duration;

use axum::Router;
use axum::extract::MatchedPath;
use axum::http::{Request, StatusCode};
use axum::middleware;
use axum::response::Response;
use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::error::{Problem, problem_layer};

/// Longest a request may take (long polls hold at most 25 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The API's own layers: request decompression, the timeout, problem
/// details for errors from outside handlers, response compression. (Blob
/// transfers stream outside them: no timeout, no compression.)
pub fn api_layers<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(RequestDecompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(middleware::map_response(problem_layer))
        .layer(CompressionLayer::new())
}

/// What wraps every route, the API and blob transfers alike: the
/// fallback, problem details, request ids and the access log.
pub fn layers<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .fallback(no_route)
        .layer(middleware::map_response(problem_layer))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(make_span)
                .on_response(on_response),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

fn make_span<B>(req: &Request<B>) -> Span {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        method = %req.method(),
        route = %route,
        request_id = %id,
        user = tracing::field::Empty,
    )
}

fn on_response<B>(res: &Response<B>, latency: Duration, span: &Span) {
    let status = res.status().as_u16();
    crate::metrics::global().response(status);
    tracing::info!(
        target: "atelier::access",
        parent: span,
        status,
        latency_ms = latency.as_secs_f64() * 1e3,
        "request"
    );
}

/// Answers a path no route serves.
async fn no_route() -> Response {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "No route serves this path; GET /openapi.json lists the routes.",
    )
    .into_response()
}
