//! What every handler is given: [`AppState`] — the stores, the one
//! document writer, the token verifier, jobs, limits — and how a request's
//! user is authenticated. Handlers import this module; the Router
//! (`crate::app`) imports the handlers, never the reverse.

use std::path::Path;
use std::sync::Arc;

use axum::http::{HeaderMap, header};

use crate::auth::Verifier;
use crate::error::ApiError;
use crate::jobs::{JobConfig, Jobs};
use crate::limits::ApiLimits;
use crate::providers::ProviderConfig;
use crate::registry::Registry;
#[cfg(feature = "aws")]
use crate::storage::aws::Aws;
use crate::storage::embedded::{EmbeddedBlobs, EmbeddedStore};
use crate::storage::jobs::JobStore;
use crate::storage::{BlobStore, DocStore, StorageError};
use crate::write::{DEFAULT_CACHE_BYTES, DocWriter};

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
    /// The routes' own OpenAPI description (set by `crate::app::router`).
    pub openapi: Arc<utoipa::openapi::OpenApi>,
    /// The embedded backend's blobs, which serve their own transfer URLs
    /// (`None` on AWS: S3 does).
    pub local_blobs: Option<Arc<EmbeddedBlobs>>,
    /// How long an asset stays in the trash before it is purged (what
    /// `GET /assets?trashed=true` reports as each asset's purge time, and
    /// what the Lambda's scheduled purge uses).
    pub trash_retention: std::time::Duration,
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
            openapi: Arc::new(utoipa::openapi::OpenApi::default()),
            local_blobs: None,
            trash_retention: crate::purge::DEFAULT_RETENTION,
        }
    }

    /// With a trash retention period other than the default.
    pub fn with_trash_retention(mut self, retention: std::time::Duration) -> AppState {
        self.trash_retention = retention;
        self
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
    #[cfg(feature = "aws")]
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
