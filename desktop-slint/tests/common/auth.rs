//! Sign-in helpers: a sync server that accepts the fake Cognito pool's
//! tokens (verified by `cloud_lambda::auth`, keys fetched over HTTP), and a
//! "browser" that follows the authorize redirect.

use std::time::Duration;

use atelier_fixtures::fakes::oauth::RunningOAuth;
use cloud_lambda::app::{AppState, router};
use cloud_lambda::auth::{AuthConfig, AuthError, JwksJson, KeySource, Verifier};
use desktop_slint::controller::Browser;
use desktop_slint::signin::oauth::OAuthConfig;

/// The sync server's keys: the fake's JWKS, fetched over HTTP as a Cognito
/// pool's would be.
pub struct HttpJwks(String);

#[async_trait::async_trait]
impl KeySource for HttpJwks {
    async fn fetch(&self) -> Result<JwksJson, AuthError> {
        let r = reqwest::get(&self.0)
            .await
            .map_err(|e| AuthError::KeysUnavailable(e.to_string()))?;
        r.json()
            .await
            .map_err(|e| AuthError::KeysUnavailable(e.to_string()))
    }
}

/// A browser that signs in at once: follows the redirects of the URL it
/// is given (the hosted UI, then the app's loopback callback).
pub struct FollowingBrowser;

impl Browser for FollowingBrowser {
    fn open(&self, url: &str) -> Result<(), String> {
        let url = url.to_owned();
        tokio::spawn(async move {
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            match client.get(&url).send().await {
                Ok(r) => assert!(r.status().is_success(), "the callback page: {}", r.status()),
                Err(e) => panic!("the browser could not follow {url}: {e}"),
            }
        });
        Ok(())
    }
}

pub struct Server {
    pub url: String,
    pub stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

/// A sync server (embedded storage) that accepts the fake pool's tokens.
pub async fn server_for(o: &RunningOAuth) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let verifier = Verifier::with_source(
        AuthConfig::access(o.config().issuer.clone(), o.config().client_id.clone()),
        HttpJwks(o.jwks_url()),
    );
    let state = AppState::embedded(dir.path(), verifier, None)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Server {
        url,
        stop,
        _dir: dir,
    }
}

pub fn oauth_config(o: &RunningOAuth) -> OAuthConfig {
    OAuthConfig {
        redirect_port: 0,
        timeout: Duration::from_secs(20),
        ..OAuthConfig::new(&o.base_url(), &o.config().client_id)
    }
}
