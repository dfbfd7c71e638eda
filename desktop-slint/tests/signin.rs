//! Browser sign-in end to end, against the fake Cognito hosted UI
//! (`atelier_fixtures::fakes::oauth`) and a sync server that verifies its
//! tokens with `cloud_lambda::auth` (issuer, client id, `token_use`,
//! expiry, the JWKS fetched over HTTP). The "browser" is an HTTP client
//! that follows the authorize redirect to the app's loopback listener.

mod common;

use std::sync::Arc;
use std::time::Duration;

use atelier_fixtures::fakes::oauth::{self, OAuthConfig as FakeConfig};
use common::auth::{FollowingBrowser, oauth_config, server_for};
use common::{device, fast_engine, write_png};
use desktop_slint::backend::BackendOptions;
use desktop_slint::config::{Config, Mode};
use desktop_slint::controller::UiEvent;
use desktop_slint::signin::oauth::{OAuthClient, Pkce, SignInError};

#[tokio::test]
async fn browser_sign_in_refresh_expiry_and_sign_out() {
    let o = oauth::spawn(FakeConfig {
        loopback_any_port: true,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let server = server_for(&o).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = Config::plain(
        data.clone(),
        Mode::Remote {
            url: server.url.clone(),
            token: None,
            auth: Some(oauth_config(&o)),
        },
    );
    let options = BackendOptions {
        engine: fast_engine(),
        browser: Arc::new(FollowingBrowser),
        ..BackendOptions::default()
    };
    let d = device(config.clone(), options.clone()).await;
    let s = d
        .view
        .wait("the browser sign-in offer", |s| s.session.offer_sign_in)
        .await;
    assert!(s.session.browser);

    // Sign in: the browser comes back to the loopback listener, the code
    // is traded with the PKCE verifier, and sync starts.
    d.send(UiEvent::SignInBrowser);
    let s = d
        .view
        .wait("signed in and synced", |s| {
            s.session.can_sign_out && s.sync.as_ref().is_some_and(|v| v.state == "synced")
        })
        .await;
    assert_eq!(s.session.user, "alice@example.com");
    assert!(!s.session.offer_sign_in);
    let kept = std::fs::read_to_string(data.join("sign-in.json")).unwrap();
    assert!(kept.contains("refreshToken"), "{kept}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data.join("sign-in.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(o.counts().code_grants, 1);

    // Work made now reaches the server.
    d.send(UiEvent::ImportFile(write_png(
        dir.path(),
        "one.png",
        40,
        30,
        1,
    )));
    d.view
        .wait("uploaded", |s| {
            s.has_asset
                && s.sync
                    .as_ref()
                    .is_some_and(|v| v.state == "synced" && !v.detail.contains("waiting"))
        })
        .await;
    d.stop().await;

    // Next start: signed in already, from the kept tokens.
    let d = device(config.clone(), options.clone()).await;
    d.view
        .wait("synced from the kept sign-in", |s| {
            s.session.can_sign_out && s.sync.as_ref().is_some_and(|v| v.state == "synced")
        })
        .await;

    // Sign out: the refresh token is revoked and forgotten; sync stops.
    d.send(UiEvent::SignOut);
    let s = d
        .view
        .wait("signed out", |s| {
            s.session.offer_sign_in
                && !s.session.can_sign_out
                && s.sync.as_ref().is_some_and(|v| v.state == "off")
        })
        .await;
    assert!(s.sync.unwrap().detail.contains("signed out"));
    assert_eq!(o.live_refresh_tokens(), 0);
    assert!(!data.join("sign-in.json").exists());

    // Expired tokens: the pool's clock is two hours behind, so what it
    // issues has already expired for the server. The app signs in, the
    // server refuses, the app refreshes silently (still expired), and once
    // the clock is right again a refresh brings a token that works; the
    // edit made meanwhile is pushed.
    o.clock().advance_secs(-7200);
    d.send(UiEvent::SignInBrowser);
    d.view
        .wait("the server refuses the expired token", |s| {
            s.sync
                .as_ref()
                .is_some_and(|v| v.state == "offline" && v.detail.contains("401"))
        })
        .await;
    d.send(UiEvent::ImportFile(write_png(
        dir.path(),
        "two.png",
        40,
        30,
        2,
    )));
    let refreshes = o.counts().refresh_grants;
    assert!(refreshes >= 1, "a refresh was tried on the 401");
    o.clock().advance_secs(7200);
    d.view
        .wait("synced again after a silent refresh", |s| {
            s.sync
                .as_ref()
                .is_some_and(|v| v.state == "synced" && !v.detail.contains("waiting"))
        })
        .await;
    assert!(o.counts().refresh_grants > refreshes);
    assert_eq!(o.counts().code_grants, 2, "no second browser trip");
    d.stop().await;
    let _ = server.stop.send(());
}

/// The app's OAuth client against the fake: a wrong PKCE verifier is
/// refused with Cognito's `invalid_grant`; a refresh token that expired
/// ends the session.
#[tokio::test]
async fn a_wrong_verifier_and_an_expired_refresh_token_are_refused() {
    let o = oauth::spawn(FakeConfig {
        loopback_any_port: true,
        refresh_ttl: Duration::from_secs(600),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let client = OAuthClient::new(oauth_config(&o));
    let redirect = "http://localhost:53682/callback";
    let pkce = Pkce::new();
    let code_for = |pkce: &Pkce| {
        let url = client.authorize_url(redirect, "st", pkce);
        async move {
            let r = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .get(url)
                .send()
                .await
                .unwrap();
            let to = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
            to.query_pairs()
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.into_owned())
                .unwrap()
        }
    };
    let code = code_for(&pkce).await;
    let wrong = Pkce::new();
    assert_eq!(
        client.exchange(&code, redirect, &wrong.verifier).await,
        Err(SignInError::Refused("invalid_grant".into()))
    );
    let code = code_for(&pkce).await;
    let tokens = client
        .exchange(&code, redirect, &pkce.verifier)
        .await
        .unwrap();
    let refresh = tokens.refresh_token.clone().unwrap();
    assert!(client.refresh(&refresh).await.is_ok());
    o.clock().advance(Duration::from_secs(601));
    let e = client.refresh(&refresh).await.unwrap_err();
    assert!(e.is_invalid_grant(), "{e}");
}
