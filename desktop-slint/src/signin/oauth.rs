//! OAuth 2.0 for a native app (RFC 8252) against the Cognito hosted UI:
//! the authorization code grant with PKCE (RFC 7636, S256) in the system
//! browser, the answer caught by a one-shot HTTP listener on loopback
//! (`http://localhost:PORT/callback`), then the token, refresh and
//! revocation endpoints.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Query;
use axum::response::Html;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::ports::Browser;

/// Where and as whom to sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    /// The hosted UI's domain: `/oauth2/authorize`, `/oauth2/token`,
    /// `/oauth2/revoke` are under it.
    pub auth_url: String,
    pub client_id: String,
    /// The loopback port registered as the callback (`localhost:PORT`);
    /// 0 picks a free one (for servers that allow any port, RFC 8252 §7.3).
    pub redirect_port: u16,
    pub scopes: String,
    /// How long to wait for the browser.
    pub timeout: Duration,
}

/// The callback port Atelier registers with Cognito by default.
pub const DEFAULT_REDIRECT_PORT: u16 = 47615;

impl OAuthConfig {
    pub fn new(auth_url: &str, client_id: &str) -> OAuthConfig {
        OAuthConfig {
            auth_url: auth_url.trim_end_matches('/').to_owned(),
            client_id: client_id.to_owned(),
            redirect_port: DEFAULT_REDIRECT_PORT,
            scopes: "openid email profile".into(),
            timeout: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    /// The authorization server said no (`invalid_grant`, …).
    #[error("the sign-in server refused: {0}")]
    Refused(String),
    #[error("cannot reach the sign-in server: {0}")]
    Network(String),
    #[error("cannot open the browser: {0}")]
    Browser(String),
    #[error("cannot listen for the browser's answer on {addr}: {message}")]
    Listen { addr: String, message: String },
    #[error("the browser did not come back within {0} s; try again")]
    TimedOut(u64),
    #[error("the sign-in was canceled")]
    Canceled,
    #[error("the browser's answer does not belong to this sign-in (state mismatch)")]
    StateMismatch,
}

impl SignInError {
    /// The refresh token no longer works: sign in again.
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, SignInError::Refused(e) if e.starts_with("invalid_grant"))
    }
}

/// A PKCE pair: the secret verifier and its S256 challenge.
#[derive(Debug, Clone)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Pkce {
        Pkce::from_verifier(random_url_safe(32))
    }

    pub fn from_verifier(verifier: String) -> Pkce {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
        }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Pkce::new()
    }
}

fn random_url_safe(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill(&mut b[..]);
    URL_SAFE_NO_PAD.encode(b)
}

/// The token endpoint's answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<i64>,
}

impl Tokens {
    /// The user name the ID token (or else the access token) carries. The
    /// token came straight from the token endpoint, so it is only read for
    /// display here; the sync server verifies what it is sent.
    pub fn user(&self) -> Option<String> {
        let jwt = self.id_token.as_deref().unwrap_or(&self.access_token);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1)?).ok()?).ok()?;
        ["email", "cognito:username", "username", "sub"]
            .iter()
            .find_map(|k| claims.get(*k).and_then(|v| v.as_str()).map(str::to_owned))
    }
}

#[derive(Deserialize)]
struct OAuthErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// A client of the authorization server's endpoints.
#[derive(Clone)]
pub struct OAuthClient {
    http: reqwest::Client,
    cfg: OAuthConfig,
}

impl OAuthClient {
    pub fn new(cfg: OAuthConfig) -> OAuthClient {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain reqwest client builds");
        OAuthClient { http, cfg }
    }

    pub fn config(&self) -> &OAuthConfig {
        &self.cfg
    }

    /// The URL the browser opens.
    pub fn authorize_url(&self, redirect_uri: &str, state: &str, pkce: &Pkce) -> String {
        let mut url = reqwest::Url::parse(&format!("{}/oauth2/authorize", self.cfg.auth_url))
            .expect("the sign-in URL was checked");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.cfg.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("scope", &self.cfg.scopes)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256");
        url.into()
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<Tokens, SignInError> {
        let resp = self
            .http
            .post(format!("{}/oauth2/token", self.cfg.auth_url))
            .form(form)
            .send()
            .await
            .map_err(|e| SignInError::Network(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| SignInError::Network(e.to_string()))?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| SignInError::Network(format!("unreadable token answer: {e}")));
        }
        Err(match serde_json::from_slice::<OAuthErrorBody>(&body) {
            Ok(b) => SignInError::Refused(match b.error_description {
                Some(d) => format!("{} ({d})", b.error),
                None => b.error,
            }),
            Err(_) => SignInError::Network(format!("the token endpoint answered {status}")),
        })
    }

    /// Trades an authorization code for tokens.
    pub async fn exchange(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<Tokens, SignInError> {
        self.token_request(&[
            ("grant_type", "authorization_code"),
            ("client_id", &self.cfg.client_id),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ])
        .await
    }

    /// New access (and ID) tokens for a refresh token.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, SignInError> {
        self.token_request(&[
            ("grant_type", "refresh_token"),
            ("client_id", &self.cfg.client_id),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    /// Ends a refresh token at the server (sign-out).
    pub async fn revoke(&self, refresh_token: &str) -> Result<(), SignInError> {
        let resp = self
            .http
            .post(format!("{}/oauth2/revoke", self.cfg.auth_url))
            .form(&[("token", refresh_token), ("client_id", &self.cfg.client_id)])
            .send()
            .await
            .map_err(|e| SignInError::Network(e.to_string()))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(SignInError::Refused(format!(
                "revocation answered {}",
                resp.status()
            )))
        }
    }

    /// The whole sign-in: listen on loopback, open the browser at the
    /// authorize URL, wait for its redirect (or `cancel`, or the timeout),
    /// check the state, trade the code.
    pub async fn sign_in(
        &self,
        browser: &dyn Browser,
        cancel: impl Future<Output = ()>,
    ) -> Result<Tokens, SignInError> {
        let pkce = Pkce::new();
        let state = random_url_safe(16);
        let (port, mut answers, _stop) = listen(self.cfg.redirect_port).await?;
        let redirect_uri = format!("http://localhost:{port}/callback");
        browser
            .open(&self.authorize_url(&redirect_uri, &state, &pkce))
            .map_err(SignInError::Browser)?;
        tracing::info!(port, "waiting for the browser's sign-in");
        let answer = tokio::select! {
            a = answers.recv() => a.ok_or(SignInError::Canceled)?,
            _ = tokio::time::sleep(self.cfg.timeout) => {
                return Err(SignInError::TimedOut(self.cfg.timeout.as_secs()))
            }
            _ = cancel => return Err(SignInError::Canceled),
        };
        if answer.state.as_deref() != Some(state.as_str()) {
            return Err(SignInError::StateMismatch);
        }
        if let Some(e) = answer.error {
            return Err(SignInError::Refused(e));
        }
        let code = answer
            .code
            .ok_or_else(|| SignInError::Refused("no code in the answer".into()))?;
        self.exchange(&code, &redirect_uri, &pkce.verifier).await
    }
}

#[derive(Debug, Deserialize)]
struct Answer {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

const DONE_PAGE: &str = "<!doctype html><meta charset=utf-8><title>Atelier</title>\
<body style=\"font-family:sans-serif;background:#0e1014;color:#e7eaf0;text-align:center;padding-top:15vh\">\
<h1>Signed in to Atelier</h1><p>You can close this tab and go back to the app.</p>";

/// Listens on `localhost:port` (IPv4, and IPv6 where it can) for
/// `GET /callback`; returns the port, the answers, and a guard that stops
/// the listener when dropped.
async fn listen(
    port: u16,
) -> Result<(u16, mpsc::Receiver<Answer>, oneshot::Sender<()>), SignInError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| SignInError::Listen {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
    let v6 = tokio::net::TcpListener::bind(SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], port)))
        .await
        .ok();
    let (tx, rx) = mpsc::channel::<Answer>(4);
    let (stop, stopped) = oneshot::channel::<()>();
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::get(move |Query(a): Query<Answer>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(a).await;
                Html(DONE_PAGE)
            }
        }),
    );
    let app6 = app.clone();
    let (stop6, stopped6) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
                let _ = stop6.send(());
            })
            .await;
    });
    if let Some(v6) = v6 {
        tokio::spawn(async move {
            let _ = axum::serve(v6, app6)
                .with_graceful_shutdown(async {
                    let _ = stopped6.await;
                })
                .await;
        });
    }
    Ok((port, rx, stop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_is_rfc_7636_s256() {
        // RFC 7636, appendix B.
        let p = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        assert_eq!(p.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let fresh = Pkce::new();
        assert_eq!(fresh.verifier.len(), 43);
        assert_ne!(fresh.verifier, Pkce::new().verifier);
    }

    #[test]
    fn the_authorize_url_carries_the_challenge_not_the_verifier() {
        let c = OAuthClient::new(OAuthConfig::new("https://auth.example.com/", "cid"));
        let p = Pkce::new();
        let url = c.authorize_url("http://localhost:1/callback", "st", &p);
        assert!(url.starts_with(
            "https://auth.example.com/oauth2/authorize?response_type=code&client_id=cid"
        ));
        assert!(url.contains(&p.challenge) && url.contains("code_challenge_method=S256"));
        assert!(!url.contains(&p.verifier));
        assert!(url.contains("redirect_uri=http%3A%2F%2Flocalhost%3A1%2Fcallback"));
    }
}
