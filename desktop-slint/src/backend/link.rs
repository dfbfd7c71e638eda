//! The sync link: runs the sync client for the chosen server (and restarts
//! it on a sign-in, a new setting, going online), signs in (a pasted token,
//! or OAuth with PKCE in the browser with silent refresh), signs out, and
//! reports everything as [`LinkEvent`]s. Implements the controller's
//! [`SyncLink`] port.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use cloud_lambda::embedded::{EmbeddedOptions, EmbeddedServer};
use cloud_lambda::providers::ProviderConfig;
use core_sync::store::Store;
use core_sync::sync::client::{HttpTransport, SyncClient, Transport};
use core_sync::sync::engine::EngineConfig;
use tokio::sync::{Mutex, Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::ports::{Browser, LinkEvent, SessionState, SyncLink};
use crate::settings::Settings;
use crate::signin::oauth::OAuthClient;
use crate::signin::session::{Clock, RefreshingTransport, Session};
use crate::signin::vault::{StoredTokens, Vault};
use crate::tools::Keys;

/// The user the embedded server knows this computer's owner as.
pub const LOCAL_USER: &str = "local";

/// How the link reaches its server.
pub enum Target {
    /// Not syncing, and why.
    Off(String),
    /// The embedded server, restarted when provider keys change.
    Embedded {
        server: Box<Mutex<Option<EmbeddedServer>>>,
        options: Box<StdMutex<EmbeddedOptions>>,
        /// Keys from the environment (they win over settings).
        env_providers: Box<ProviderConfig>,
    },
    /// A remote server; browser sign-in when `oauth` is set, else tokens.
    Remote {
        url: String,
        oauth: Option<OAuthClient>,
        vault: Vault,
    },
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

pub struct Link {
    store: Store,
    target: Target,
    engine: StdMutex<EngineConfig>,
    events: mpsc::UnboundedSender<LinkEvent>,
    running: Mutex<Option<Running>>,
    nudge: StdMutex<Option<Arc<Notify>>>,
    state: StdMutex<SessionState>,
    session: Mutex<Option<Arc<Session>>>,
    sign_in: StdMutex<Option<oneshot::Sender<()>>>,
    browser: Arc<dyn Browser>,
    clock: Clock,
    /// This link, for tasks that outlive a call (a browser sign-in).
    me: std::sync::Weak<Link>,
}

impl Link {
    pub fn new(
        store: Store,
        target: Target,
        engine: EngineConfig,
        events: mpsc::UnboundedSender<LinkEvent>,
        browser: Arc<dyn Browser>,
        clock: Clock,
    ) -> Arc<Link> {
        let state = match &target {
            Target::Off(_) => SessionState {
                server: "local only".into(),
                ..Default::default()
            },
            Target::Embedded { .. } => SessionState {
                server: "embedded server".into(),
                syncs: true,
                ..Default::default()
            },
            Target::Remote { url, oauth, .. } => SessionState {
                server: url.clone(),
                browser: oauth.is_some(),
                syncs: true,
                ..Default::default()
            },
        };
        Arc::new_cyclic(|me| Link {
            me: me.clone(),
            store,
            target,
            engine: StdMutex::new(engine),
            events,
            running: Mutex::new(None),
            nudge: StdMutex::new(None),
            state: StdMutex::new(state),
            session: Mutex::new(None),
            sign_in: StdMutex::new(None),
            browser,
            clock,
        })
    }

    fn send(&self, ev: LinkEvent) {
        let _ = self.events.send(ev);
    }

    fn set_state(&self, f: impl FnOnce(&mut SessionState)) {
        let s = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut s);
            s.clone()
        };
        self.send(LinkEvent::Session(s));
    }

    /// Starts syncing at start-up: the embedded server's own token, the
    /// token given, or what the vault kept; else asks for a sign-in.
    pub async fn start(self: &Arc<Self>, token: Option<String>) {
        match &self.target {
            Target::Off(reason) => {
                self.send(LinkEvent::Session(self.state()));
                self.send(LinkEvent::NotSyncing(reason.clone()));
            }
            Target::Embedded { .. } => {
                self.send(LinkEvent::Session(self.state()));
                self.connect_embedded().await;
            }
            Target::Remote { url, oauth, vault } => {
                if let Some(t) = token {
                    self.connect_token(t, false).await;
                    return;
                }
                match (vault.load(url), oauth) {
                    (Some(t), Some(client)) => self.start_session(client.clone(), t).await,
                    (Some(t), None) => self.connect_token(t.access_token, false).await,
                    (None, _) => {
                        self.send(LinkEvent::NotSyncing(format!("sign in to sync with {url}")));
                        self.set_state(|s| s.needs_sign_in = true);
                    }
                }
            }
        }
    }

    fn state(&self) -> SessionState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops the running client (if any); a request in flight is abandoned
    /// (everything it would have changed is durable or will be redone).
    pub async fn stop(&self) {
        if let Some(r) = self.running.lock().await.take() {
            let _ = r.stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(2), r.task).await;
        }
        *self.nudge.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Stops everything: the client, a sign-in under way, the embedded server.
    pub async fn shutdown(&self) {
        if let Some(c) = self
            .sign_in
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = c.send(());
        }
        self.stop().await;
        if let Target::Embedded { server, .. } = &self.target
            && let Some(s) = server.lock().await.take()
        {
            s.stop().await;
        }
    }

    async fn run_client(&self, transport: Box<dyn Transport>, token: String) {
        self.stop().await;
        let engine = *self.engine.lock().unwrap_or_else(|e| e.into_inner());
        let mut client =
            match SyncClient::with_transport(self.store.clone(), transport, token, engine).await {
                Ok(c) => c,
                Err(e) => {
                    self.send(LinkEvent::Failed(format!("Cannot start syncing: {e}")));
                    return;
                }
            };
        let mut rx = client.subscribe();
        *self.nudge.lock().unwrap_or_else(|e| e.into_inner()) = Some(client.nudge_handle());
        let events = self.events.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let forward = async {
                while let Some(ev) = rx.recv().await {
                    let _ = events.send(LinkEvent::Sync(ev));
                }
            };
            tokio::select! {
                _ = client.run(async { let _ = stopped.await; }) => {}
                _ = forward => {}
            }
        });
        *self.running.lock().await = Some(Running { stop, task });
    }

    async fn connect_embedded(&self) {
        let Target::Embedded { server, .. } = &self.target else {
            return;
        };
        let (url, token) = {
            let guard = server.lock().await;
            let Some(s) = guard.as_ref() else { return };
            (
                s.url(),
                s.token(LOCAL_USER, Duration::from_secs(365 * 24 * 3600)),
            )
        };
        match HttpTransport::new(&url) {
            Ok(t) => self.run_client(Box::new(t), token).await,
            Err(e) => self.send(LinkEvent::Failed(e.to_string())),
        }
    }

    /// Syncs with a fixed token (pasted, `--token`), keeping it when asked.
    async fn connect_token(&self, token: String, keep: bool) {
        let Target::Remote { url, vault, .. } = &self.target else {
            self.send(LinkEvent::Failed("this server needs no sign-in".into()));
            return;
        };
        let token = token.trim().to_owned();
        if token.is_empty() {
            self.send(LinkEvent::Failed(
                "Cannot sign in: the token is empty".into(),
            ));
            return;
        }
        if keep {
            let t = StoredTokens {
                server: url.clone(),
                access_token: token.clone(),
                refresh_token: None,
                expires_at: None,
                user: None,
            };
            if let Err(e) = vault.save(&t) {
                self.send(LinkEvent::Failed(e.to_string()));
            }
        }
        match HttpTransport::new(url) {
            Ok(t) => self.run_client(Box::new(t), token).await,
            Err(e) => return self.send(LinkEvent::Failed(e.to_string())),
        }
        self.set_state(|s| {
            s.needs_sign_in = false;
            s.can_sign_out = true;
            s.paused = false;
        });
    }

    /// Syncs as a signed-in OAuth session (tokens refreshed as needed).
    async fn start_session(self: &Arc<Self>, client: OAuthClient, tokens: StoredTokens) {
        let Target::Remote { url, vault, .. } = &self.target else {
            return;
        };
        let weak = Arc::downgrade(self);
        let user = tokens.user.clone();
        let session = Arc::new(Session::new(
            client,
            vault.clone(),
            tokens,
            self.clock.clone(),
            move || {
                if let Some(link) = weak.upgrade() {
                    link.set_state(|s| {
                        s.needs_sign_in = true;
                        s.can_sign_out = false;
                        s.user = None;
                    });
                }
            },
        ));
        *self.session.lock().await = Some(session.clone());
        match RefreshingTransport::new(url, session) {
            Ok(t) => self.run_client(Box::new(t), String::new()).await,
            Err(e) => return self.send(LinkEvent::Failed(e.to_string())),
        }
        self.set_state(|s| {
            s.needs_sign_in = false;
            s.can_sign_out = true;
            s.waiting = false;
            s.paused = false;
            s.user = user;
        });
    }

    fn providers(env: &ProviderConfig, settings: &Settings) -> ProviderConfig {
        ProviderConfig {
            gemini_key: env.gemini_key.clone().or(settings.gemini_api_key.clone()),
            replicate_token: env
                .replicate_token
                .clone()
                .or(settings.replicate_api_token.clone()),
            ..env.clone()
        }
    }

    /// The keys the embedded server runs jobs with, from the environment
    /// and the settings.
    pub fn embedded_providers(env: &ProviderConfig, settings: &Settings) -> (ProviderConfig, Keys) {
        let p = Self::providers(env, settings);
        let keys = Keys::Local {
            gemini: p.gemini_key.is_some(),
            replicate: p.replicate_token.is_some(),
        };
        (p, keys)
    }
}

#[async_trait]
impl SyncLink for Link {
    fn nudge(&self) {
        if let Some(n) = self
            .nudge
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            n.notify_one();
        }
    }

    async fn sign_in_token(&self, token: String) {
        self.connect_token(token, true).await;
    }

    async fn sign_in_browser(&self) {
        let Target::Remote {
            url,
            oauth: Some(client),
            vault,
        } = &self.target
        else {
            self.send(LinkEvent::Failed(
                "This server has no browser sign-in: paste a token instead.".into(),
            ));
            return;
        };
        let (cancel, canceled) = oneshot::channel::<()>();
        if let Some(old) = self
            .sign_in
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(cancel)
        {
            let _ = old.send(());
        }
        self.set_state(|s| s.waiting = true);
        let (client, url, vault, browser, events, clock) = (
            client.clone(),
            url.clone(),
            vault.clone(),
            self.browser.clone(),
            self.events.clone(),
            self.clock.clone(),
        );
        // The flow waits for the user: run it beside the controller, and
        // let the controller hear of the result as a sign-in of tokens.
        let me = self.me.upgrade();
        tokio::spawn(async move {
            let result = client
                .sign_in(browser.as_ref(), async {
                    let _ = canceled.await;
                })
                .await;
            let Some(link) = me else { return };
            match result {
                Ok(tokens) => {
                    let kept = Session::stored(&url, &tokens, clock(), None);
                    if let Err(e) = vault.save(&kept) {
                        let _ = events.send(LinkEvent::Failed(e.to_string()));
                    }
                    link.start_session(client, kept).await;
                }
                Err(e) => {
                    link.set_state(|s| s.waiting = false);
                    let _ = events.send(LinkEvent::Failed(format!("Sign-in failed: {e}")));
                }
            }
        });
    }

    async fn sign_out(&self) {
        self.stop().await;
        if let Some(s) = self.session.lock().await.take() {
            s.sign_out().await;
        }
        if let Target::Remote { vault, .. } = &self.target {
            vault.clear();
        }
        self.set_state(|s| {
            s.needs_sign_in = true;
            s.can_sign_out = false;
            s.user = None;
        });
        self.send(LinkEvent::NotSyncing("signed out: sign in to sync".into()));
    }

    async fn pause(&self) {
        self.stop().await;
        self.set_state(|s| s.paused = true);
        self.send(LinkEvent::NotSyncing(
            "offline by choice: changes stay on this computer".into(),
        ));
    }

    async fn resume(&self) {
        self.set_state(|s| s.paused = false);
        self.reconnect().await;
    }

    async fn apply_settings(&self, settings: &Settings) {
        if let Some(d) = settings.idle_poll() {
            self.engine
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .idle_poll_max = d;
        }
        if let Target::Embedded {
            server,
            options,
            env_providers,
        } = &self.target
        {
            let (providers, keys) = Link::embedded_providers(env_providers, settings);
            let opts = {
                let mut o = options.lock().unwrap_or_else(|e| e.into_inner());
                o.providers = providers;
                o.clone()
            };
            self.stop().await;
            let mut guard = server.lock().await;
            if let Some(old) = guard.take() {
                let addr = old.addr();
                old.stop().await;
                match EmbeddedServer::start(EmbeddedOptions { addr, ..opts }).await {
                    Ok(s) => *guard = Some(s),
                    Err(e) => {
                        self.send(LinkEvent::Failed(format!(
                            "Cannot restart the embedded server: {e}"
                        )));
                        return;
                    }
                }
            }
            drop(guard);
            self.send(LinkEvent::Keys(keys));
        }
        if !self.state().paused {
            self.reconnect().await;
        }
    }
}

impl Link {
    /// Starts the client again with what the link has.
    async fn reconnect(&self) {
        match &self.target {
            Target::Off(_) => {}
            Target::Embedded { .. } => self.connect_embedded().await,
            Target::Remote { url, vault, oauth } => {
                let session = self.session.lock().await.clone();
                match (session, vault.load(url), oauth) {
                    (Some(s), _, _) => match RefreshingTransport::new(url, s) {
                        Ok(t) => self.run_client(Box::new(t), String::new()).await,
                        Err(e) => self.send(LinkEvent::Failed(e.to_string())),
                    },
                    (None, Some(t), None) => {
                        if let Ok(tr) = HttpTransport::new(url) {
                            self.run_client(Box::new(tr), t.access_token).await;
                        }
                    }
                    _ => self.set_state(|s| s.needs_sign_in = true),
                }
            }
        }
    }
}
