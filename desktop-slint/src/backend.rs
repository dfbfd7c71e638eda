//! Starting the app's non-UI parts on the tokio runtime: the local store,
//! the embedded server (unless a remote one or `--offline` is chosen) and
//! the sync client running in the background. All IO starts here.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use core_sync::sync::client::SyncEvent;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Notify, mpsc};

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
    #[error("cannot sign in: {0}")]
    SignIn(String),
}

enum Target {
    Off(String),
    Server {
        url: String,
        token: Option<String>,
        label: String,
        keep_tokens: bool,
    },
}

/// The running non-UI parts.
pub struct Backend {
    pub store: Store,
    pub tools: Tools,
    /// Handed to the controller (once).
    pub sync: Option<SyncLink>,
    server: Option<EmbeddedServer>,
    connector: Option<Arc<Connector>>,
}

/// Starts (and restarts, after a new sign-in) the sync client for one
/// server. Shared by the backend, which stops it at the end, and the
/// controller, which signs in.
pub struct Connector {
    store: Store,
    url: String,
    label: String,
    engine: EngineConfig,
    /// Where a signed-in token is kept (`None`: not kept, e.g. the
    /// embedded server's own token, minted at each start).
    token_file: Option<PathBuf>,
    running: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

/// A started sync client, as the controller uses it.
pub struct SyncParts {
    pub nudge: Arc<Notify>,
    pub events: mpsc::UnboundedReceiver<SyncEvent>,
    pub label: String,
}

/// A remembered sign-in: `DATA/sign-in.json`, readable by the user only.
#[derive(Debug, Serialize, Deserialize)]
struct SavedSignIn {
    server: String,
    token: String,
}

impl Connector {
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops the running client (if any) and starts one with `token`,
    /// keeping the token for the next start when this server's tokens are
    /// kept.
    pub async fn connect(&self, token: String) -> Result<SyncParts, StartError> {
        let token = token.trim().to_owned();
        if token.is_empty() {
            return Err(StartError::SignIn("the token is empty".into()));
        }
        self.stop().await;
        let mut client =
            SyncClient::new(self.store.clone(), &self.url, token.clone(), self.engine).await?;
        if let Some(path) = &self.token_file {
            save_sign_in(path, &self.url, &token)?;
        }
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
        *self.running.lock().await = Some((stop, task));
        Ok(SyncParts {
            nudge,
            events,
            label: self.label.clone(),
        })
    }

    /// Stops the client; a request in flight is abandoned (everything it
    /// would have changed is durable or will be redone).
    pub async fn stop(&self) {
        if let Some((stop, task)) = self.running.lock().await.take() {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }
}

fn sign_in_path(data: &Path) -> PathBuf {
    data.join("sign-in.json")
}

/// The token saved for `server`, if one was.
fn saved_token(data: &Path, server: &str) -> Option<String> {
    let text = std::fs::read_to_string(sign_in_path(data)).ok()?;
    let saved: SavedSignIn = serde_json::from_str(&text).ok()?;
    (saved.server == server).then_some(saved.token)
}

fn save_sign_in(path: &Path, server: &str, token: &str) -> Result<(), StartError> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let json = serde_json::to_vec_pretty(&SavedSignIn {
        server: server.to_owned(),
        token: token.to_owned(),
    })
    .expect("plain strings serialize");
    let tmp = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let io = |e: std::io::Error| {
        StartError::SignIn(format!("cannot keep the token in {}: {e}", path.display()))
    };
    let mut f = options.open(&tmp).map_err(io)?;
    f.write_all(&json).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
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
                Target::Off("offline mode: changes stay on this computer".to_owned()),
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
                let target = Target::Server {
                    url: server.url(),
                    token: Some(server.token(LOCAL_USER, Duration::from_secs(365 * 24 * 3600))),
                    label: format!("embedded server {}", server.addr()),
                    keep_tokens: false,
                };
                (keys, Some(server), target)
            }
            Mode::Remote { url, token } => (
                Keys::Remote,
                None,
                Target::Server {
                    url: url.clone(),
                    token: token.clone(),
                    label: url.clone(),
                    keep_tokens: true,
                },
            ),
        };
        let (sync, connector) = match target {
            Target::Off(reason) => (SyncLink::Off(reason), None),
            Target::Server {
                url,
                token,
                label,
                keep_tokens,
            } => {
                let saved = if keep_tokens {
                    saved_token(&config.data, &url)
                } else {
                    None
                };
                let connector = Arc::new(Connector {
                    store: store.clone(),
                    url: url.clone(),
                    label,
                    engine,
                    token_file: keep_tokens.then(|| sign_in_path(&config.data)),
                    running: Mutex::new(None),
                });
                let link = match token.or(saved) {
                    Some(token) => {
                        let parts = connector.connect(token).await?;
                        SyncLink::On {
                            nudge: parts.nudge,
                            events: parts.events,
                            label: parts.label,
                            connector: Some(connector.clone()),
                        }
                    }
                    None => SyncLink::SignIn(connector.clone()),
                };
                (link, Some(connector))
            }
        };
        Ok(Backend {
            store,
            tools: Tools::new(registry, keys),
            sync: Some(sync),
            server,
            connector,
        })
    }

    /// Stops syncing and the embedded server; the store stays consistent
    /// whenever this is cut short (every edit is already durable).
    pub async fn stop(mut self) {
        if let Some(connector) = self.connector.take() {
            connector.stop().await;
        }
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        self.store.close().await;
    }
}
