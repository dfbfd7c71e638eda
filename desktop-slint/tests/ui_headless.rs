//! The UI clicked through headless, with Slint's testing backend (software
//! renderer, real event loop): upload a fixture image, send a tool request
//! and see it queued, watch it finish, roll back, and watch the sync status
//! follow the server going away and coming back. Snapshots of each step go
//! to `target/tmp/ui-headless/`.
//!
//! One test per file: the testing backend is set once per process.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use atelier_fixtures::fakes::{self, FakeConfig};
use cloud_lambda::embedded::{EmbeddedOptions, EmbeddedServer};
use cloud_lambda::jobs::JobConfig;
use cloud_lambda::providers::ProviderConfig;
use common::ui::{element, fixture, init_backend, shows, snapshot, start_app, until};
use desktop_slint::backend::BackendOptions;
use desktop_slint::config::{Config, Mode};
use desktop_slint::controller::{ControllerConfig, FilePicker, Picked};
use desktop_slint::ui::Bridge;
use slint::platform::PointerEventButton;
use slint::{ComponentHandle, Model};

/// The file dialog, answered with a fixture.
struct FixturePicker(PathBuf);

impl FilePicker for FixturePicker {
    fn pick(&self) -> desktop_slint::controller::ports::BoxFuture<Picked> {
        let p = self.0.clone();
        Box::pin(async move { Picked::File(p) })
    }
}

#[test]
fn click_through_upload_request_rollback_and_sync_status() {
    init_backend();

    // The cloud: an embedded server running jobs against the fake providers.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fakes = rt
        .block_on(fakes::spawn(FakeConfig {
            ..FakeConfig::default()
        }))
        .unwrap();
    let server_dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        providers: ProviderConfig {
            gemini_base: fakes.base_url().into(),
            gemini_key: Some(fakes::DEFAULT_API_KEY.into()),
            replicate_base: fakes.base_url().into(),
            replicate_token: Some(fakes::DEFAULT_REPLICATE_TOKEN.into()),
            ..ProviderConfig::default()
        },
        job_config: JobConfig {
            poll_interval: Duration::from_millis(200),
            ..JobConfig::default()
        },
        webhooks: false,
        ..EmbeddedOptions::new(server_dir.path())
    };
    let server = rt.block_on(EmbeddedServer::start(options.clone())).unwrap();
    let addr = server.addr();
    let token = server.token("carol", Duration::from_secs(3600));

    let data = tempfile::tempdir().unwrap();
    let (window, worker) = start_app(
        Config::plain(
            data.path().join("data"),
            Mode::Remote {
                url: server.url(),
                token: Some(token),
                auth: None,
            },
        ),
        BackendOptions {
            engine: common::fast_engine(),
            ..BackendOptions::default()
        },
        ControllerConfig {
            picker: Arc::new(FixturePicker(fixture("harbour.jpg"))),
            ..common::ports::test_config()
        },
    );

    let handle = rt.handle().clone();
    let weak = window.as_weak();
    slint::spawn_local(async move {
        let w = weak.upgrade().unwrap();
        let bridge = || w.global::<Bridge>();
        until(&w, "synced at start", || shows(&w, "Synced")).await;
        snapshot(&w, "01-empty");

        // + New, then "Upload an image…" (the dialog answers the fixture).
        element(&w, "AssetList::new-button")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "the new-asset sheet", || shows(&w, "Upload an image…")).await;
        snapshot(&w, "02-new-sheet");
        element(&w, "NewAssetSheet::upload")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "the uploaded asset, open", || {
            bridge().get_assets().row_count() == 1 && bridge().get_has_asset()
        })
        .await;
        assert_eq!(bridge().get_asset_title(), "harbour");
        until(&w, "its thumbnail and preview", || {
            bridge().get_has_preview()
                && bridge()
                    .get_assets()
                    .row_data(0)
                    .is_some_and(|r| r.has_thumb)
        })
        .await;
        assert!(shows(&w, "800 × 600"));
        snapshot(&w, "03-uploaded");

        // The server goes away: the status bar says so.
        handle.spawn(server.stop()).await.unwrap();
        until(&w, "offline", || bridge().get_sync_state() == "offline").await;
        assert!(shows(&w, "Offline"));

        // Work goes on: type a prompt and send an edit. It is queued until
        // the server is back.
        let prompt = element(&w, "Composer::prompt");
        prompt.set_accessible_value("warmer evening light");
        element(&w, "Composer::send-button")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "the request, queued", || {
            bridge()
                .get_messages()
                .row_data(1)
                .is_some_and(|m| m.status == "queued")
        })
        .await;
        until(&w, "one asset waiting to upload", || {
            bridge().get_sync_detail().contains("1 asset waiting")
        })
        .await;
        assert!(shows(&w, "Queued"));
        assert!(shows(&w, "Offline"));
        snapshot(&w, "04-offline-queued");

        // Back: synced, and the job runs on the server; its result arrives.
        let server = handle
            .spawn(EmbeddedServer::start(EmbeddedOptions { addr, ..options }))
            .await
            .unwrap()
            .unwrap();
        until(&w, "synced again", || bridge().get_sync_state() == "synced").await;
        until(&w, "the result", || {
            bridge()
                .get_messages()
                .row_data(1)
                .is_some_and(|m| m.status == "succeeded" && m.has_image)
        })
        .await;
        until(&w, "two versions", || {
            bridge().get_versions().row_count() == 2
        })
        .await;
        assert!(shows(&w, "Done"));
        snapshot(&w, "05-result");

        // Roll back to v1 with one click: a new timeline entry, v1 active.
        element(&w, "VersionItem::rollback")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "the rollback", || {
            let v = bridge().get_versions();
            (0..v.row_count()).any(|i| v.row_data(i).is_some_and(|r| r.label == "v1" && r.active))
        })
        .await;
        until(&w, "the rollback note", || {
            bridge()
                .get_messages()
                .row_data(2)
                .is_some_and(|m| m.kind == "system" && m.text.starts_with("Switched to version"))
        })
        .await;
        snapshot(&w, "06-rolled-back");

        handle.spawn(server.stop()).await.unwrap();
        slint::quit_event_loop().unwrap();
    })
    .unwrap();
    slint::run_event_loop().unwrap();
    worker.stop();
    drop(fakes);
}
