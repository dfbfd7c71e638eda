//! A signed-in session: the tokens of one server, refreshed silently, and
//! the sync transport that always sends a live access token (refreshing a
//! minute before expiry, and once more when the server still answers 401).

use std::sync::Arc;

use core_sync::blob::BlobStore;
use core_sync::sync::client::{HttpTransport, OutgoingBlob, SyncError, Transport};
use core_sync::sync::protocol::{SyncRequest, SyncResponse};
use tokio::sync::Mutex;

use super::oauth::{OAuthClient, SignInError, Tokens};
use super::vault::{StoredTokens, Vault};

/// Refresh this long before the access token expires.
const MARGIN_SECS: i64 = 60;

/// Seconds since the epoch (the local clock; tests pass their own).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    })
}

/// What ends a session's use: the refresh token was refused (sign in
/// again) or the sign-in server could not be reached (try later).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("signed out: sign in again")]
    Ended,
    #[error(transparent)]
    SignIn(#[from] SignInError),
}

pub struct Session {
    client: OAuthClient,
    vault: Vault,
    clock: Clock,
    tokens: Mutex<StoredTokens>,
    /// Called once when the session ends (the refresh token refused).
    on_end: Box<dyn Fn() + Send + Sync>,
}

impl Session {
    pub fn new(
        client: OAuthClient,
        vault: Vault,
        tokens: StoredTokens,
        clock: Clock,
        on_end: impl Fn() + Send + Sync + 'static,
    ) -> Session {
        Session {
            client,
            vault,
            clock,
            tokens: Mutex::new(tokens),
            on_end: Box::new(on_end),
        }
    }

    /// Kept tokens from a fresh token answer.
    pub fn stored(
        server: &str,
        t: &Tokens,
        now: i64,
        previous_refresh: Option<String>,
    ) -> StoredTokens {
        StoredTokens {
            server: server.to_owned(),
            access_token: t.access_token.clone(),
            refresh_token: t.refresh_token.clone().or(previous_refresh),
            expires_at: t.expires_in.map(|s| now + s),
            user: t.user(),
        }
    }

    pub async fn tokens(&self) -> StoredTokens {
        self.tokens.lock().await.clone()
    }

    /// An access token good for at least another minute.
    pub async fn access_token(&self) -> Result<String, SessionError> {
        let t = self.tokens.lock().await.clone();
        match t.expires_at {
            Some(exp) if exp - (self.clock)() < MARGIN_SECS => self.refresh_now().await,
            _ => Ok(t.access_token),
        }
    }

    /// Refreshes now (the server refused the access token).
    pub async fn refresh_now(&self) -> Result<String, SessionError> {
        let mut guard = self.tokens.lock().await;
        let Some(refresh) = guard.refresh_token.clone() else {
            (self.on_end)();
            return Err(SessionError::Ended);
        };
        match self.client.refresh(&refresh).await {
            Ok(fresh) => {
                let kept = Session::stored(&guard.server, &fresh, (self.clock)(), Some(refresh));
                let kept = StoredTokens {
                    user: kept.user.or(guard.user.clone()),
                    ..kept
                };
                if let Err(e) = self.vault.save(&kept) {
                    tracing::warn!(error = %e, "cannot keep the refreshed token");
                }
                *guard = kept;
                tracing::info!("access token refreshed");
                Ok(guard.access_token.clone())
            }
            Err(e) if e.is_invalid_grant() => {
                tracing::info!("the refresh token was refused: the session ended");
                self.vault.clear();
                (self.on_end)();
                Err(SessionError::Ended)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Revokes the refresh token (best effort) and forgets the tokens.
    pub async fn sign_out(&self) {
        let refresh = self.tokens.lock().await.refresh_token.clone();
        if let Some(r) = refresh
            && let Err(e) = self.client.revoke(&r).await
        {
            tracing::warn!(error = %e, "cannot revoke the refresh token; forgetting it anyway");
        }
        self.vault.clear();
    }
}

/// HTTP sync with the session's token instead of a fixed one.
pub struct RefreshingTransport {
    inner: HttpTransport,
    session: Arc<Session>,
}

impl RefreshingTransport {
    pub fn new(server: &str, session: Arc<Session>) -> Result<Self, SyncError> {
        Ok(RefreshingTransport {
            inner: HttpTransport::new(server)?,
            session,
        })
    }

    async fn token(&self) -> Result<String, SyncError> {
        self.session.access_token().await.map_err(session_error)
    }

    async fn fresh_token(&self) -> Result<String, SyncError> {
        self.session.refresh_now().await.map_err(session_error)
    }
}

fn session_error(e: SessionError) -> SyncError {
    match e {
        SessionError::Ended => SyncError::Server {
            status: 401,
            message: "signed out: sign in again".into(),
        },
        SessionError::SignIn(e) => SyncError::Server {
            status: 503,
            message: e.to_string(),
        },
    }
}

fn unauthorized<T>(r: &Result<T, SyncError>) -> bool {
    matches!(r, Err(SyncError::Server { status: 401, .. }))
}

#[async_trait::async_trait]
impl Transport for RefreshingTransport {
    async fn sync(&self, req: &SyncRequest, _: &str) -> Result<(SyncResponse, usize), SyncError> {
        let r = self.inner.sync(req, &self.token().await?).await;
        if unauthorized(&r) {
            return self.inner.sync(req, &self.fresh_token().await?).await;
        }
        r
    }

    async fn put_blob(&self, blob: &OutgoingBlob<'_>, _: &str) -> Result<(), SyncError> {
        let r = self.inner.put_blob(blob, &self.token().await?).await;
        if unauthorized(&r) {
            return self.inner.put_blob(blob, &self.fresh_token().await?).await;
        }
        r
    }

    async fn get_blob(&self, sha256: &str, into: &BlobStore, _: &str) -> Result<bool, SyncError> {
        let r = self
            .inner
            .get_blob(sha256, into, &self.token().await?)
            .await;
        if unauthorized(&r) {
            return self
                .inner
                .get_blob(sha256, into, &self.fresh_token().await?)
                .await;
        }
        r
    }

    fn moves_blobs(&self) -> bool {
        true
    }
}
