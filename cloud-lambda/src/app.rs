//! The Router: one for every deployment (embedded `serve`, Lambda), built
//! over whichever storage backend the binary chose.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use core_sync::sync::protocol::{MAX_REQUEST_BYTES, SYNC_PATH, SyncRequest, SyncResponse};
use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::Verifier;
use crate::error::ApiError;
use crate::jobs::{JobConfig, Jobs};
use crate::providers::ProviderConfig;
use crate::registry::Registry;
use crate::storage::aws::Aws;
use crate::storage::embedded::{EmbeddedBlobs, EmbeddedStore};
use crate::storage::jobs::JobStore;
use crate::storage::{BlobStore, DocStore, StorageError};
use crate::write::{DEFAULT_CACHE_BYTES, DocWriter};
use crate::{blob_routes, webhook_route};

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn DocStore>,
    /// Every document write goes through here (pushes, jobs, REST).
    pub writer: Arc<DocWriter>,
    pub blobs: Arc<dyn BlobStore>,
    pub ops: Arc<dyn JobStore>,
    pub verifier: Arc<Verifier>,
    /// Served at `/.well-known/jwks.json` when this server is its own issuer.
    pub jwks: Option<Arc<serde_json::Value>>,
    /// Provider jobs; `None` serves sync only (queued requests stay queued).
    pub jobs: Option<Arc<Jobs>>,
    /// Replicate's webhook signing secret (`whsec_…`).
    pub webhook_secret: Option<String>,
}

impl AppState {
    /// A state over any storage backend, without jobs.
    pub fn new(
        store: Arc<dyn DocStore>,
        blobs: Arc<dyn BlobStore>,
        ops: Arc<dyn JobStore>,
        verifier: Verifier,
        jwks: Option<serde_json::Value>,
    ) -> AppState {
        AppState {
            writer: Arc::new(DocWriter::new(store.clone(), DEFAULT_CACHE_BYTES)),
            store,
            blobs,
            ops,
            verifier: Arc::new(verifier),
            jwks: jwks.map(Arc::new),
            jobs: None,
            webhook_secret: None,
        }
    }

    /// The embedded backend in `dir` (database and blobs), without jobs.
    pub async fn embedded(
        dir: &Path,
        verifier: Verifier,
        jwks: Option<serde_json::Value>,
    ) -> Result<AppState, StorageError> {
        let store = Arc::new(EmbeddedStore::open(dir).await?);
        let blobs = Arc::new(EmbeddedBlobs::open(dir)?);
        Ok(AppState::new(store.clone(), blobs, store, verifier, jwks))
    }

    /// The AWS backend (DynamoDB + S3 through `aws`), without jobs.
    pub fn aws(aws: &Aws, verifier: Verifier, jwks: Option<serde_json::Value>) -> AppState {
        let store = Arc::new(aws.store());
        AppState::new(store.clone(), Arc::new(aws.blobs()), store, verifier, jwks)
    }

    /// The authenticated user (the token's `sub`) of a request.
    pub async fn user(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        Ok(self.verifier.verify(bearer).await?.sub)
    }

    /// The same state with a document cache of `bytes` (0: no cache).
    pub fn with_cache_bytes(mut self, bytes: u64) -> AppState {
        self.writer = Arc::new(DocWriter::new(self.store.clone(), bytes));
        self
    }

    /// Turns on provider jobs over this state's storage.
    pub fn with_jobs(
        mut self,
        registry: Registry,
        providers: ProviderConfig,
        config: JobConfig,
    ) -> AppState {
        self.webhook_secret = providers.replicate_webhook_secret.clone();
        self.jobs = Some(Jobs::new(
            self.writer.clone(),
            self.blobs.clone(),
            self.ops.clone(),
            Arc::new(registry),
            providers,
            config,
        ));
        self
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route(SYNC_PATH, post(sync))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/v1/blobs/{sha256}", put(blob_routes::put_blob).get(blob_routes::get_blob))
        .route("/replicate/webhook", post(webhook_route::replicate_webhook))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(RequestDecompressionLayer::new())
        .layer(CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30)))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn jwks(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    match &state.jwks {
        Some(j) => Ok(Json((**j).clone())),
        None => Err(ApiError::NotFound("jwks".into())),
    }
}

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
    let req: SyncRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("malformed sync request: {e}")))?;
    let resp = crate::sync::sync(&state.writer, &user, req).await?;
    Ok(Json(resp))
}
