//! Sign-in from the window headless: "Sign in…" in the status bar opens
//! the (fake Cognito) hosted UI in a "browser" that follows its redirect
//! back to the app; the status bar then shows who is signed in and syncs;
//! "Sign out" revokes the session and offers the sign-in again.
//!
//! One test per file: the testing backend is set once per process.

mod common;

use std::sync::Arc;

use atelier_fixtures::fakes::oauth::{self, OAuthConfig as FakeConfig};
use common::auth::{FollowingBrowser, oauth_config, server_for};
use common::ports::test_config;
use common::ui::{element, init_backend, shows, snapshot, start_app, until};
use desktop_slint::backend::BackendOptions;
use desktop_slint::config::{Config, Mode};
use desktop_slint::ui::Bridge;
use slint::ComponentHandle;
use slint::platform::PointerEventButton;

#[test]
fn sign_in_and_out_from_the_status_bar() {
    init_backend();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt
        .block_on(oauth::spawn(FakeConfig {
            loopback_any_port: true,
            ..FakeConfig::default()
        }))
        .unwrap();
    let server = rt.block_on(server_for(&fake));
    let dir = tempfile::tempdir().unwrap();
    let (window, worker) = {
        let _guard = rt.enter();
        start_app(
            Config::plain(
                dir.path().join("data"),
                Mode::Remote {
                    url: server.url.clone(),
                    token: None,
                    auth: Some(oauth_config(&fake)),
                },
            ),
            BackendOptions {
                engine: common::fast_engine(),
                browser: Arc::new(FollowingBrowser),
                ..BackendOptions::default()
            },
            test_config(),
        )
    };
    let weak = window.as_weak();
    slint::spawn_local(async move {
        let w = weak.upgrade().unwrap();
        let bridge = || w.global::<Bridge>();
        until(&w, "the sign-in offer", || shows(&w, "Sign in…")).await;
        assert_eq!(bridge().get_sync_state(), "off");
        snapshot(&w, "20-signed-out");
        element(&w, "StatusBar::sign-in")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "signed in and synced", || {
            bridge().get_signed_in_user() == "alice@example.com"
                && bridge().get_sync_state() == "synced"
        })
        .await;
        assert!(shows(&w, "Sign out") && !shows(&w, "Sign in…"));
        snapshot(&w, "21-signed-in");
        element(&w, "StatusBar::sign-out")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "signed out", || {
            shows(&w, "Sign in…") && bridge().get_sync_state() == "off"
        })
        .await;
        slint::quit_event_loop().unwrap();
    })
    .unwrap();
    slint::run_event_loop().unwrap();
    worker.stop();
    assert_eq!(fake.counts().code_grants, 1);
    assert_eq!(fake.live_refresh_tokens(), 0, "revoked at sign-out");
    let _ = server.stop.send(());
}
