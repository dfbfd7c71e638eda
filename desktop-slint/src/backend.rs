//! Starting the app's non-UI parts on the tokio runtime: the local store,
//! the embedded server (unless a remote one or `--offline` is chosen) and
//! the sync client running in the background. All IO starts here.

use std::time::Duration;

use cloud_lambda::embedded::{EmbeddedError, EmbeddedOptions, EmbeddedServer};
use cloud_lambda::jobs::JobConfig;
use cloud_lambda::providers::ProviderConfig;
use cloud_lambda::registry::{Registry, RegistryError};
use core_sync::store::{Store, StoreError, StoreOptions};
use core_sync::sync::client::{SyncClient, SyncError};
use core_sync::sync::engine::EngineConfig;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{Config, Mode};
use crate::controller::SyncLink;
use crate::tools::{Keys, Tools};

/// The user the embedded server knows this computer's owner as.
pub const LOCAL_USER: &str = "local";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the local store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot start the embedded server: {0}")]
    Embedded(#[from] EmbeddedError),
    #[error("cannot start syncing: {0}")]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// The running non-UI parts.
pub struct Backend {
    pub store: Store,
    pub tools: Tools,
    /// Handed to the controller (once).
    pub sync: Option<SyncLink>,
    server: Option<EmbeddedServer>,
    sync_task: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

/// How the backend runs, beyond the user's [`Config`].
#[derive(Clone)]
pub struct BackendOptions {
    pub engine: EngineConfig,
    /// Provider endpoints and keys for the embedded server's jobs.
    pub providers: ProviderConfig,
    pub jobs: JobConfig,
}

impl Default for BackendOptions {
    /// Sync tuned for a desktop (a dropped network is retried within
    /// seconds of its return, not a minute later); providers from the
    /// environment.
    fn default() -> Self {
        BackendOptions {
            engine: EngineConfig {
                backoff_max: Duration::from_secs(10),
                idle_poll_max: Duration::from_secs(25),
                ..EngineConfig::default()
            },
            providers: ProviderConfig::from_env(),
            jobs: JobConfig::default(),
        }
    }
}

impl Backend {
    pub async fn start(config: &Config, options: BackendOptions) -> Result<Backend, StartError> {
        let engine = options.engine;
        let store = Store::open(&config.data, StoreOptions::default()).await?;
        let registry = Registry::load()?;
        let (keys, server, target) = match &config.mode {
            Mode::Offline => (
                Keys::Offline,
                None,
                Err("offline mode: changes stay on this computer".to_owned()),
            ),
            Mode::Embedded => {
                let keys = Keys::Local {
                    gemini: options.providers.gemini_key.is_some(),
                    replicate: options.providers.replicate_token.is_some(),
                };
                let server = EmbeddedServer::start(EmbeddedOptions {
                    providers: options.providers,
                    job_config: options.jobs,
                    // Replicate cannot reach a laptop's loopback: poll.
                    webhooks: false,
                    ..EmbeddedOptions::new(config.data.join("cloud"))
                })
                .await?;
                let token = server.token(LOCAL_USER, Duration::from_secs(365 * 24 * 3600));
                let url = server.url();
                let label = format!("embedded server {}", server.addr());
                (keys, Some(server), Ok((url, token, label)))
            }
            Mode::Remote { url, token } => match token {
                Some(t) => (
                    Keys::Remote,
                    None,
                    Ok((url.clone(), t.clone(), url.clone())),
                ),
                None => (
                    Keys::Remote,
                    None,
                    Err(format!(
                        "sign in to {url}: pass --token or set ATELIER_TOKEN"
                    )),
                ),
            },
        };
        let (sync, sync_task) = match target {
            Err(reason) => (SyncLink::Off(reason), None),
            Ok((url, token, label)) => {
                let mut client = SyncClient::new(store.clone(), &url, token, engine).await?;
                let events = client.subscribe();
                let nudge = client.nudge_handle();
                let (stop, stopped) = oneshot::channel::<()>();
                let task = tokio::spawn(async move {
                    client
                        .run(async {
                            let _ = stopped.await;
                        })
                        .await;
                });
                (
                    SyncLink::On {
                        nudge,
                        events,
                        label,
                    },
                    Some((stop, task)),
                )
            }
        };
        Ok(Backend {
            store,
            tools: Tools::new(registry, keys),
            sync: Some(sync),
            server,
            sync_task,
        })
    }

    /// The embedded server's address, when it runs.
    pub fn server_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().map(|s| s.addr())
    }

    /// Stops syncing and the embedded server; the store stays consistent
    /// whenever this is cut short (every edit is already durable).
    pub async fn stop(mut self) {
        if let Some((stop, task)) = self.sync_task.take() {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        self.store.close().await;
    }
}
