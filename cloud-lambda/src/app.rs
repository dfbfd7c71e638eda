//! The Router: one for every deployment (embedded `serve`, Lambda), built
//! over whichever storage backend the binary chose.

use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::{Json, Router};
use core_sync::sync::protocol::{MAX_REQUEST_BYTES, SyncRequest, SyncResponse};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Verifier;
use crate::error::ApiError;
use crate::jobs::{JobConfig, Jobs};
use crate::limits::ApiLimits;
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
    /// Request rate and input bounds.
    pub limits: Arc<ApiLimits>,
    /// The embedded backend's blobs, which serve their own transfer URLs
    /// (`None` on AWS: S3 does).
    pub local_blobs: Option<Arc<EmbeddedBlobs>>,
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
            limits: Arc::default(),
            local_blobs: None,
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
        // Documents stored before the REST projections existed get listed.
        let unlisted = store.clone();
        tokio::spawn(async move {
            match crate::projection::backfill(unlisted).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(documents = n, "listed documents stored before listings"),
                Err(e) => tracing::error!(error = %e, "cannot list older documents"),
            }
        });
        Ok(
            AppState::new(store.clone(), blobs.clone(), store, verifier, jwks)
                .with_local_blobs(blobs),
        )
    }

    /// The AWS backend (DynamoDB + S3 through `aws`), without jobs.
    pub fn aws(aws: &Aws, verifier: Verifier, jwks: Option<serde_json::Value>) -> AppState {
        let store = Arc::new(aws.store());
        AppState::new(store.clone(), Arc::new(aws.blobs()), store, verifier, jwks)
    }

    /// The authenticated user (the token's `sub`) of a request, recorded
    /// on the request's log span, after the per-user rate limit.
    pub async fn user(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let user = self.verifier.verify(bearer).await?.sub;
        tracing::Span::current().record("user", user.as_str());
        self.limits
            .check(&user)
            .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
        Ok(user)
    }

    /// The embedded backend's blobs shared, file for file, with a device's
    /// blob directory (see `EmbeddedBlobs::sharing_with`). Before
    /// [`AppState::with_jobs`], which takes the blob store it finds.
    pub fn sharing_blobs_with(mut self, dir: std::path::PathBuf) -> AppState {
        if let Some(local) = &self.local_blobs {
            let shared = Arc::new((**local).clone().sharing_with(dir));
            self.blobs = shared.clone();
            self.local_blobs = Some(shared);
        }
        self
    }

    /// Serves `blobs`' transfer URLs (`/v1/blob-transfer`).
    pub fn with_local_blobs(mut self, blobs: Arc<EmbeddedBlobs>) -> AppState {
        self.local_blobs = Some(blobs);
        self
    }

    /// Sets the request rate and input bounds.
    pub fn with_limits(mut self, limits: ApiLimits) -> AppState {
        self.limits = Arc::new(limits);
        self
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
    let (api, _) = api_routes().split_for_parts();
    let api = crate::api::observe::api_layers(api.layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES)));
    // Image bytes stream at the pace of the network, with the size the URL
    // allows: outside the API's body limit, compression and timeout.
    let (transfer, _) = transfer_routes().split_for_parts();
    crate::api::observe::layers(api.merge(transfer)).with_state(state)
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
    responses((status = 200, description = "What the client lacks, and the outcome of each push", body = crate::api::openapi::SyncResponseDoc)),
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
    let resp = crate::sync::sync(&state.writer, &user, req).await?;
    Ok(Json(resp))
}
