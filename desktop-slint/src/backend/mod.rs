//! Starting the app's non-UI parts on the tokio runtime: the local store,
//! the embedded server (unless a remote one or `--offline` is chosen) and
//! the sync [`link::Link`]. All IO starts here. This module implements the
//! controller's ports; the controller does not know it.

pub mod link;

use std::sync::Arc;
use std::time::Duration;

use cloud_lambda::embedded::{EmbeddedError, EmbeddedOptions, EmbeddedServer};
use cloud_lambda::jobs::JobConfig;
use cloud_lambda::providers::ProviderConfig;
use cloud_lambda::registry::{Registry, RegistryError};
use core_sync::store::{Store, StoreError, StoreOptions};
use core_sync::sync::engine::EngineConfig;
use tokio::sync::{Mutex, mpsc};

use crate::config::{Config, Mode};
use crate::ports::{Browser, LinkEvent};
use crate::signin::oauth::OAuthClient;
use crate::signin::session::{Clock, system_clock};
use crate::signin::vault::Vault;
use crate::tools::{Keys, Tools};
pub use link::{LOCAL_USER, Link, Target};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the local store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot start the embedded server: {0}")]
    Embedded(#[from] EmbeddedError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// How the backend runs, beyond the user's [`Config`].
#[derive(Clone)]
pub struct BackendOptions {
    pub engine: EngineConfig,
    /// Provider endpoints and keys for the embedded server's jobs.
    pub providers: ProviderConfig,
    pub jobs: JobConfig,
    /// Opens sign-in pages (the system browser; tests follow redirects).
    pub browser: Arc<dyn Browser>,
    /// The clock tokens expire on.
    pub clock: Clock,
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
            browser: Arc::new(crate::platform::SystemBrowser),
            clock: system_clock(),
        }
    }
}

/// The running non-UI parts.
pub struct Backend {
    pub store: Store,
    pub tools: Tools,
    pub link: Arc<Link>,
    /// Handed to the controller (once).
    pub link_events: Option<mpsc::UnboundedReceiver<LinkEvent>>,
}

impl Backend {
    pub async fn start(config: &Config, options: BackendOptions) -> Result<Backend, StartError> {
        let mut engine = options.engine;
        if let Some(d) = config.settings.idle_poll() {
            engine.idle_poll_max = d;
        }
        let store = Store::open(&config.data, StoreOptions::default()).await?;
        let registry = Registry::load()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (keys, target, token) = match &config.mode {
            Mode::Offline => (
                Keys::Offline,
                Target::Off("offline mode: changes stay on this computer".to_owned()),
                None,
            ),
            Mode::Embedded => {
                let (providers, keys) =
                    Link::embedded_providers(&options.providers, &config.settings);
                let embedded = EmbeddedOptions {
                    providers,
                    job_config: options.jobs,
                    // Replicate cannot reach a laptop's loopback: poll.
                    webhooks: false,
                    // One copy of each image: the server's files are links
                    // to the device's.
                    shared_blobs: Some(config.data.join("blobs")),
                    purge: Some(cloud_lambda::purge::PurgeSchedule {
                        retention: Duration::from_secs(
                            u64::from(config.trash_retention_days) * 86_400,
                        ),
                        ..Default::default()
                    }),
                    ..EmbeddedOptions::new(config.data.join("cloud"))
                };
                let server = EmbeddedServer::start(embedded.clone()).await?;
                let target = Target::Embedded {
                    server: Box::new(Mutex::new(Some(server))),
                    options: Box::new(std::sync::Mutex::new(embedded)),
                    env_providers: Box::new(options.providers.clone()),
                };
                (keys, target, None)
            }
            Mode::Remote { url, token, auth } => (
                Keys::Remote,
                Target::Remote {
                    url: url.clone(),
                    oauth: auth.clone().map(OAuthClient::new),
                    vault: Vault::open(&config.data, config.keyring),
                },
                token.clone(),
            ),
        };
        let link = Link::new(
            store.clone(),
            target,
            engine,
            tx,
            options.browser,
            options.clock,
        );
        link.start(token).await;
        Ok(Backend {
            store,
            tools: Tools::new(registry, keys),
            link,
            link_events: Some(rx),
        })
    }

    /// Stops syncing and the embedded server; the store stays consistent
    /// whenever this is cut short (every edit is already durable).
    pub async fn stop(self) {
        self.link.shutdown().await;
        self.store.close().await;
    }
}
