//! The embedded cloud as a running thing: the Router over the embedded
//! backend (SQLite + files in one directory), its own token issuer, and
//! provider jobs, served on a TCP listener. `atelier-cloud serve` runs one;
//! the desktop app runs one in-process on loopback, so jobs and sync take
//! the same code path on a laptop as in the cloud. The same server can keep
//! its documents, blobs and jobs on the AWS backend instead
//! ([`Storage::Aws`], `atelier-cloud serve --backend aws`); the data
//! directory then holds only the token signing key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::{AppState, router};
use crate::auth::{AuthError, LocalIssuer};
use crate::jobs::JobConfig;
use crate::limits::{ApiConfig, ApiLimits};
use crate::providers::ProviderConfig;
use crate::registry::{Registry, RegistryError};
use crate::storage::StorageError;
#[cfg(feature = "aws")]
use crate::storage::aws::{Aws, AwsOptions};

/// Where a server keeps documents, blobs and jobs.
#[derive(Clone, Debug, Default)]
pub enum Storage {
    /// SQLite and files in the data directory.
    #[default]
    Embedded,
    /// DynamoDB and S3 (or an emulator of them).
    #[cfg(feature = "aws")]
    Aws(AwsOptions),
}

/// The issuer and audience of the embedded server's own tokens.
pub const LOCAL_ISSUER: &str = "atelier-local";
pub const LOCAL_AUDIENCE: &str = "atelier-desktop";

/// How to run an embedded server.
#[derive(Clone)]
pub struct EmbeddedOptions {
    /// Database, blobs and the token signing key.
    pub data: PathBuf,
    pub storage: Storage,
    /// Where to listen (`127.0.0.1:0` picks a free port).
    pub addr: SocketAddr,
    /// Run provider jobs (otherwise queued requests stay queued).
    pub jobs: bool,
    pub providers: ProviderConfig,
    /// Jobs' tunables, spend limits included.
    pub job_config: JobConfig,
    /// Request rate (off by default: the desktop's own server) and input
    /// bounds.
    pub api: ApiConfig,
    /// Public base URL for Replicate's webhook; defaults to the listener's
    /// own address.
    pub public_url: Option<String>,
    /// Ask Replicate for webhooks at all. Off for a laptop, which Replicate
    /// cannot reach: running predictions are polled instead.
    pub webhooks: bool,
    /// A device's blob directory to share files with (the desktop's own
    /// server: one copy of each image on a laptop).
    pub shared_blobs: Option<PathBuf>,
    /// Purge the trash past its retention period (`None`: keep it).
    pub purge: Option<crate::purge::PurgeSchedule>,
}

impl EmbeddedOptions {
    /// Jobs on, providers from the environment, a free loopback port.
    pub fn new(data: impl Into<PathBuf>) -> Self {
        EmbeddedOptions {
            data: data.into(),
            storage: Storage::Embedded,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            jobs: true,
            providers: ProviderConfig::from_env(),
            job_config: JobConfig::default(),
            api: ApiConfig::default(),
            public_url: None,
            webhooks: true,
            shared_blobs: None,
            purge: Some(crate::purge::PurgeSchedule::default()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("cannot use the data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// A server serving until [`EmbeddedServer::stop`] (or drop).
pub struct EmbeddedServer {
    addr: SocketAddr,
    issuer: LocalIssuer,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    purge: Option<JoinHandle<()>>,
}

impl EmbeddedServer {
    /// Opens the backend in `options.data`, resumes unfinished jobs and
    /// starts serving. Must run inside a tokio runtime.
    pub async fn start(options: EmbeddedOptions) -> Result<EmbeddedServer, EmbeddedError> {
        let data = &options.data;
        core_sync::private_fs::create_dir(data).map_err(|source| EmbeddedError::Dir {
            path: data.clone(),
            source,
        })?;
        let issuer = LocalIssuer::load_or_create(data, LOCAL_ISSUER, LOCAL_AUDIENCE)?;
        let mut state = match &options.storage {
            Storage::Embedded => {
                AppState::embedded(data, issuer.verifier(), Some(issuer.jwks_json())).await?
            }
            #[cfg(feature = "aws")]
            Storage::Aws(aws) => {
                let aws = Aws::connect(aws.clone()).await?;
                AppState::aws(&aws, issuer.verifier(), Some(issuer.jwks_json()))
            }
        }
        .with_limits(ApiLimits::new(options.api.clone()));
        if let Some(dir) = &options.shared_blobs {
            state = state.sharing_blobs_with(dir.clone());
        }
        if let Some(schedule) = &options.purge {
            state = state.with_trash_retention(schedule.retention);
        }
        let listener = tokio::net::TcpListener::bind(options.addr)
            .await
            .map_err(|source| EmbeddedError::Listen {
                addr: options.addr,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmbeddedError::Listen {
                addr: options.addr,
                source,
            })?;
        if options.jobs {
            let config = JobConfig {
                public_url: options.webhooks.then(|| {
                    options
                        .public_url
                        .clone()
                        .unwrap_or_else(|| format!("http://{addr}"))
                }),
                ..options.job_config.clone()
            };
            state = state.with_jobs(Registry::load()?, options.providers.clone(), config);
            if let Some(jobs) = &state.jobs {
                jobs.resume_all().await;
                // Jobs whose runner (another server on this store) went away.
                drop(jobs.keep_resuming());
            }
        }
        let purge = options.purge.clone().map(|schedule| {
            crate::purge::spawn_periodic(state.store.clone(), state.blobs.clone(), schedule)
        });
        let backend = match &options.storage {
            Storage::Embedded => "embedded".to_owned(),
            #[cfg(feature = "aws")]
            Storage::Aws(aws) => format!("aws (prefix {:?})", aws.prefix),
        };
        tracing::info!(%addr, data = %data.display(), %backend, jobs = options.jobs, "serving");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router(state))
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the embedded server stopped");
            }
        });
        Ok(EmbeddedServer {
            addr,
            issuer,
            stop: Some(stop),
            task: Some(task),
            purge,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL clients sync with.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A token for `user` signed by this server's key.
    pub fn token(&self, user: &str, ttl: Duration) -> String {
        self.issuer.mint(user, ttl)
    }

    /// Stops accepting requests and waits (bounded) for open ones to end.
    /// Long polls are held up to 25 s, so the wait is capped.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(purge) = self.purge.take() {
            purge.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    /// Serves until Ctrl-C.
    pub async fn serve_until_ctrl_c(mut self) {
        let _ = tokio::signal::ctrl_c().await;
        self.shutdown().await;
    }
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        if let Some(purge) = self.purge.take() {
            purge.abort();
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Mints a token for `user` with the key stored in `data` (creating one if
/// there is none): what `atelier-cloud dev-token` prints.
pub fn dev_token(data: &Path, user: &str, ttl: Duration) -> Result<String, EmbeddedError> {
    core_sync::private_fs::create_dir(data).map_err(|source| EmbeddedError::Dir {
        path: data.to_owned(),
        source,
    })?;
    let issuer = LocalIssuer::load_or_create(data, LOCAL_ISSUER, LOCAL_AUDIENCE)?;
    Ok(issuer.mint(user, ttl))
}
