//! One place for the live access token: [`Session`] hands out a token good
//! for at least another minute (refreshing first when it is not) and
//! refreshes at once when the server still answers 401; refreshed tokens
//! are kept in the [`TokenVault`]. [`RefreshingTransport`] is the sync
//! transport that sends the session's token with every request.
//!
//! How a refresh is done is a [`Refresher`]: [`CognitoRefresher`]
//! (`REFRESH_TOKEN_AUTH`, what `atelier-sync login` set up), or any other
//! token endpoint.

use std::sync::Arc;

use tokio::sync::Mutex;

use super::cognito::{CognitoClient, CognitoError};
use super::tokens::{StoredTokens, TokenVault};
use crate::blob::BlobStore;
use crate::sync::client::{HttpTransport, OutgoingBlob, SyncError, Transport};
use crate::sync::protocol::{SyncRequest, SyncResponse};

/// Refresh this long before the access token expires.
pub const MARGIN_SECS: i64 = 60;

/// Seconds since the epoch (the local clock; tests pass their own).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    })
}

/// A refresh's new tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fresh {
    pub access_token: String,
    /// A new refresh token, if the server rotates them.
    pub refresh_token: Option<String>,
    pub expires_in: Option<i64>,
}

/// Why a refresh did not work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// The refresh token was refused: sign in again.
    #[error("the refresh token was refused: {0}")]
    Refused(String),
    /// The sign-in server could not be asked (try later).
    #[error("{0}")]
    Unavailable(String),
}

/// Gets new tokens for a refresh token.
#[async_trait::async_trait]
pub trait Refresher: Send + Sync {
    async fn refresh(&self, refresh_token: &str) -> Result<Fresh, RefreshError>;
}

/// `REFRESH_TOKEN_AUTH` against a Cognito app client.
pub struct CognitoRefresher(pub CognitoClient);

#[async_trait::async_trait]
impl Refresher for CognitoRefresher {
    async fn refresh(&self, refresh_token: &str) -> Result<Fresh, RefreshError> {
        match self.0.refresh(refresh_token).await {
            Ok(r) => Ok(Fresh {
                access_token: r.access_token,
                refresh_token: r.refresh_token,
                expires_in: Some(r.expires_in),
            }),
            Err(e @ CognitoError::NotAuthorized(_)) | Err(e @ CognitoError::UserNotFound(_)) => {
                Err(RefreshError::Refused(e.to_string()))
            }
            Err(e) => Err(RefreshError::Unavailable(e.to_string())),
        }
    }
}

/// What ends a session's use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("signed out: sign in again")]
    Ended,
    #[error("cannot refresh the sign-in: {0}")]
    Unavailable(String),
}

pub struct Session {
    refresher: Box<dyn Refresher>,
    vault: Box<dyn TokenVault>,
    clock: Clock,
    tokens: Mutex<StoredTokens>,
}

impl Session {
    pub fn new(
        refresher: impl Refresher + 'static,
        vault: impl TokenVault + 'static,
        tokens: StoredTokens,
        clock: Clock,
    ) -> Session {
        Session {
            refresher: Box::new(refresher),
            vault: Box::new(vault),
            clock,
            tokens: Mutex::new(tokens),
        }
    }

    pub async fn tokens(&self) -> StoredTokens {
        self.tokens.lock().await.clone()
    }

    /// An access token good for at least another [`MARGIN_SECS`].
    pub async fn access_token(&self) -> Result<String, SessionError> {
        let t = self.tokens.lock().await.clone();
        match t.expires_at {
            Some(exp) if exp - (self.clock)() < MARGIN_SECS => self.refresh_now().await,
            _ => Ok(t.access_token),
        }
    }

    /// Refreshes now (about to expire, or the server refused the token).
    pub async fn refresh_now(&self) -> Result<String, SessionError> {
        let mut guard = self.tokens.lock().await;
        let Some(refresh) = guard.refresh_token.clone() else {
            return Err(SessionError::Ended);
        };
        match self.refresher.refresh(&refresh).await {
            Ok(fresh) => {
                let kept = StoredTokens {
                    access_token: fresh.access_token,
                    refresh_token: fresh.refresh_token.or(Some(refresh)),
                    expires_at: fresh.expires_in.map(|s| (self.clock)() + s),
                    ..guard.clone()
                };
                if let Err(e) = self.vault.save(&kept) {
                    tracing::warn!(error = %e, "cannot keep the refreshed token");
                }
                *guard = kept;
                tracing::info!("access token refreshed");
                Ok(guard.access_token.clone())
            }
            Err(RefreshError::Refused(why)) => {
                tracing::warn!(%why, "the refresh token was refused: the session ended");
                self.vault.clear();
                Err(SessionError::Ended)
            }
            Err(RefreshError::Unavailable(why)) => Err(SessionError::Unavailable(why)),
        }
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
        SessionError::Unavailable(message) => SyncError::Server {
            status: 503,
            message,
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
