//! The Router: one for every deployment (embedded `serve`, Lambda), built
//! over whichever storage backend the binary chose ([`AppState`], in
//! `crate::state`), with the sync handler and the service routes.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::{Json, Router};
use core_sync::sync::protocol::{MAX_REQUEST_BYTES, SyncRequest, SyncResponse};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::registry::Registry;
use crate::{blob_routes, webhook_route};

pub use crate::state::AppState;

/// The whole HTTP surface.
pub fn router(mut state: AppState) -> Router {
    state.openapi = Arc::new(openapi_router().split_for_parts().1);
    let (api, _) = api_routes().split_for_parts();
    let api = crate::api::observe::api_layers(api.layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES)));
    // Image bytes stream at the pace of the network, with the size the URL
    // allows: outside the API's body limit, compression and timeout.
    let (transfer, _) = transfer_routes().split_for_parts();
    crate::api::observe::layers(api.merge(transfer)).with_state(state)
}

/// The OpenAPI document of the whole surface with `registry`'s models
/// (served at `/openapi.json`).
pub fn openapi_document(registry: &Registry) -> serde_json::Value {
    crate::api::openapi::document(openapi_router().split_for_parts().1, registry)
}

/// Every route with its OpenAPI description (see `api::openapi`).
pub fn openapi_router() -> OpenApiRouter<AppState> {
    api_routes().merge(transfer_routes())
}

/// The embedded backend's blob transfers (`/v1/blob-transfer`).
fn transfer_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(
        blob_routes::transfer_put,
        blob_routes::transfer_get
    ))
}

/// The API: every route but the blob transfers.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(sync))
        .routes(routes!(jwks))
        .routes(routes!(blob_routes::upload_url))
        .routes(routes!(blob_routes::download_url))
        .routes(routes!(webhook_route::replicate_webhook))
        .merge(crate::api::router())
}

/// Liveness: answers `ok` without touching storage.
#[utoipa::path(get, path = "/healthz", tag = "meta",
    responses((status = 200, description = "The server is up", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

/// The embedded server's token signing keys (its own issuer only).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "meta",
    responses((status = 200, description = "A JSON Web Key Set", body = Object),
        (status = 404, description = "This server issues no tokens", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn jwks(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    match &state.jwks {
        Some(j) => Ok(Json((**j).clone())),
        None => Err(ApiError::Missing(
            "This server issues no tokens; its identity provider publishes the keys.".into(),
        )),
    }
}

/// The sync endpoint (see `core_sync::sync::protocol`): pushes each
/// document's changes the server lacks and pulls the user's feed after the
/// cursor. JSON, zstd or gzip `Content-Encoding` both ways.
#[utoipa::path(post, path = "/v1/sync", tag = "sync",
    request_body(content = crate::api::openapi::SyncRequestDoc, content_type = "application/json"),
    responses((status = 200, description = "What the client lacks, and the outcome of each push", body = crate::api::openapi::SyncResponseDoc),
        (status = 413, description = "Over what one request may carry: the body's bytes, or (`too_many_documents`) more than 500 documents pushed and resynced together, or (`too_much_work`) changes declaring more rows or inflating to more bytes than allowed (see `core_sync::sync::bounds`); nothing was stored", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the per-user request rate, or (`too_many_long_polls`) a long poll while the user already holds the most the server holds at once; retry after `Retry-After` seconds", body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
async fn sync(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SyncResponse>, ApiError> {
    let user = state.user(&headers).await?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    // The limit applies to the decompressed stream as it is read, so a
    // decompression bomb is cut off at the limit, never inflated whole.
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(MAX_REQUEST_BYTES)
        } else {
            ApiError::BadRequest(format!(
                "the request body could not be read (check its Content-Encoding): {}",
                rejection.body_text()
            ))
        }
    })?;
    let mut req: SyncRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("malformed sync request: {e}")))?;
    // A valid wait is held at most as long as this deployment allows.
    if req.wait_ms <= core_sync::sync::protocol::MAX_WAIT_MS {
        req.wait_ms = req.wait_ms.min(state.limits.config.long_poll_max_ms);
    }
    if req.push.is_empty() {
        // Reads only (and maybe a long poll): dropped with the request.
        let resp = crate::sync::sync(&state.writer, &state.limits.long_polls, &user, req).await?;
        return Ok(Json(resp));
    }
    // A push runs to its end even when the request is given up
    // (`to_the_end`); it never holds a long poll, so nothing waits on after
    // its client left.
    let resp = crate::write::to_the_end(async move {
        crate::sync::sync(&state.writer, &state.limits.long_polls, &user, req).await
    })
    .await??;
    Ok(Json(resp))
}
