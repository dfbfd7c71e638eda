//! The controller without a UI: real store, real embedded server and fake
//! providers on loopback, a recording view.

mod common;

use std::sync::Arc;
use std::time::Duration;

use atelier_fixtures::fakes::{self, FakeConfig};
use cloud_lambda::embedded::{EmbeddedOptions, EmbeddedServer};
use cloud_lambda::jobs::JobConfig;
use cloud_lambda::providers::ProviderConfig;
use common::{device, fast_engine, local, write_png};
use core_sync::ids::DocId;
use core_sync::model::{BlobRef, ErrorInfo, MessageStatus, MessageUpdate, NewVersion};
use core_sync::now_millis;
use core_sync::sync::client::SyncEvent;
use desktop_slint::backend::BackendOptions;
use desktop_slint::config::{Config, Mode};
use desktop_slint::controller::{ControllerConfig, LinkEvent, UiEvent};
use desktop_slint::tools::Keys;

#[tokio::test]
async fn upload_request_rollback_and_retry_show_up_as_the_user_expects() {
    let l = local(Keys::Offline, common::ports::test_config()).await;
    l.view
        .wait("the empty list", |s| s.composer.is_some())
        .await;
    let file = write_png(l._dir.path(), "harbour.png", 640, 480, 7);
    l.events.send(UiEvent::ImportFile(file)).unwrap();
    let s = l
        .view
        .wait("the uploaded asset, open", |s| {
            s.has_asset && s.assets.len() == 1 && s.versions().len() == 1
        })
        .await;
    assert_eq!(s.title, "harbour");
    assert_eq!(s.assets[0].title, "harbour");
    assert_eq!(s.selected, s.assets[0].id);
    assert_eq!(s.messages[0].text, "Uploaded harbour.png");
    assert_eq!(s.inspector.dimensions, "640 × 480");
    assert!(s.versions()[0].active);
    assert!(s.composer.as_ref().unwrap().can_send, "an image to work on");
    let id: DocId = s.selected.parse().unwrap();

    // The list's thumbnail decodes off the UI thread when a row asks.
    let thumb = s.assets[0].thumb_key.clone();
    l.events.send(UiEvent::NeedImage(thumb.clone())).unwrap();
    let s = l
        .view
        .wait("the thumbnail", |s| s.images.contains_key(&thumb))
        .await;
    let px = &s.images[&thumb];
    assert_eq!((px.width, px.height), (96, 72));

    // Upscale: queued (offline: it waits for sync).
    l.events.send(UiEvent::ToolChanged(3)).unwrap();
    l.events
        .send(UiEvent::Send {
            prompt: String::new(),
            aspect: "1:1".into(),
            scale: "4".into(),
        })
        .unwrap();
    let s = l
        .view
        .wait("a queued request", |s| s.messages.len() == 2)
        .await;
    let request = s.messages[1].clone();
    assert_eq!(request.status, "queued");
    assert_eq!(request.status_label, "Queued");
    assert_eq!(request.meta, "Upscale · Real-ESRGAN 4x upscale · 4×");
    let stored = l.store.load(&id).await.unwrap();
    assert_eq!(
        stored.doc.messages().unwrap().len(),
        2,
        "saved before shown"
    );

    // A result arrives through sync: a second version; then the request fails
    // on a second try. Only the changed rows are sent to the view.
    let before = l.view.now();
    let mut asset = l.store.load(&id).await.unwrap();
    let v1 = asset.summary().unwrap().active_version_id.unwrap();
    let sha = l
        .store
        .put_blob(common::png(64, 64, 9), "image/png", now_millis())
        .await
        .unwrap();
    let v2 = asset
        .doc
        .add_version(
            NewVersion {
                blob: BlobRef {
                    sha256: sha,
                    mime: "image/png".into(),
                    width: 64,
                    height: 64,
                    bytes: 100,
                },
                thumbnail: None,
                parent_version_id: Some(v1.clone()),
                created_by_message_id: Some(request.id.clone()),
            },
            now_millis(),
        )
        .unwrap();
    asset
        .doc
        .update_message(
            &request.id,
            MessageUpdate {
                status: Some(MessageStatus::Failed),
                error: Some(ErrorInfo {
                    code: "unavailable".into(),
                    message: "The provider stayed unavailable after 4 tries.".into(),
                }),
                add_output_version_ids: vec![v2.clone()],
                ..Default::default()
            },
            now_millis(),
        )
        .unwrap();
    l.store.save(&mut asset).await.unwrap();
    l.pulled
        .send(LinkEvent::Sync(SyncEvent::Pulled(vec![id.clone()])))
        .unwrap();
    let s = l
        .view
        .wait("the failure with its reason", |s| {
            s.messages[1].status == "failed" && s.versions().len() == 2
        })
        .await;
    assert_eq!(
        s.messages[1].error,
        "The provider stayed unavailable after 4 tries."
    );
    assert!(s.messages[1].can_retry);
    assert_eq!(
        s.full_timelines, before.full_timelines,
        "no whole-list reload"
    );
    assert!(s.row_updates > before.row_updates);

    // Roll back to v1: a new change, shown in the timeline.
    l.events.send(UiEvent::Rollback(v1.clone())).unwrap();
    let s = l
        .view
        .wait("the rollback", |s| {
            s.messages.len() == 3 && s.versions().iter().any(|v| v.id == v1 && v.active)
        })
        .await;
    assert_eq!(s.messages[2].kind, "system");
    assert!(s.messages[2].text.starts_with("Switched to version"));

    // Retry the failed request: a new queued request with the same inputs.
    l.events.send(UiEvent::Retry(request.id.clone())).unwrap();
    let s = l.view.wait("the retry", |s| s.messages.len() == 4).await;
    assert_eq!(s.messages[3].status, "queued");
    assert_eq!(s.messages[3].meta, request.meta);

    // Search narrows the list; clearing it brings everything back.
    l.events.send(UiEvent::Search("zzz".into())).unwrap();
    l.view
        .wait("an empty search", |s| s.assets.is_empty())
        .await;
    l.events.send(UiEvent::Search("HARB".into())).unwrap();
    l.view.wait("a match", |s| s.assets.len() == 1).await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let l = local(
        Keys::Local {
            gemini: false,
            replicate: true,
        },
        ControllerConfig {
            max_import_bytes: 200_000,
            ..common::ports::test_config()
        },
    )
    .await;
    l.view.wait("start", |s| s.composer.is_some()).await;
    let dir = l._dir.path();
    let cases: Vec<(std::path::PathBuf, &str)> = vec![
        (
            {
                let p = dir.join("notes.txt");
                std::fs::write(&p, "hello").unwrap();
                p
            },
            "is not a PNG, JPEG or WebP image",
        ),
        (
            {
                let p = dir.join("cut.png");
                let mut b = common::png(300, 300, 1);
                b.truncate(b.len() / 2);
                std::fs::write(&p, b).unwrap();
                p
            },
            "cut.png: the image does not decode",
        ),
        (
            {
                let p = dir.join("huge.png");
                std::fs::write(&p, vec![0u8; 300_000]).unwrap();
                p
            },
            "more than the 200 KB an upload may be",
        ),
        (dir.join("missing.png"), "cannot read"),
    ];
    for (path, expected) in cases {
        l.events.send(UiEvent::ImportFile(path.clone())).unwrap();
        let s = l.view.wait(expected, |s| s.notice.contains(expected)).await;
        assert!(s.assets.is_empty(), "{path:?} created nothing");
        l.events.send(UiEvent::DismissNotice).unwrap();
        l.view.wait("cleared", |s| s.notice.is_empty()).await;
    }
    assert!(l.store.list().await.unwrap().is_empty());

    // Acting without an asset, on unknown ids.
    l.events
        .send(UiEvent::Send {
            prompt: "x".into(),
            aspect: String::new(),
            scale: String::new(),
        })
        .unwrap();
    l.view
        .wait("no asset", |s| s.notice == "open an asset first")
        .await;
    l.events
        .send(UiEvent::SelectAsset("../../etc".into()))
        .unwrap();
    l.view
        .wait("bad id", |s| s.notice.contains("is not an asset id"))
        .await;
    l.events
        .send(UiEvent::SelectAsset(DocId::random().to_string()))
        .unwrap();
    l.view
        .wait("unknown asset", |s| {
            s.notice.contains("is not in the local store")
        })
        .await;

    // Without a Gemini key, editing is refused plainly, before any request.
    let file = write_png(dir, "ok.png", 32, 32, 3);
    l.events.send(UiEvent::ImportFile(file)).unwrap();
    let s = l.view.wait("an asset", |s| s.has_asset).await;
    let composer = s.composer.unwrap();
    assert!(!composer.can_send);
    assert!(composer.notice.contains("GEMINI_API_KEY"));
    l.events
        .send(UiEvent::Send {
            prompt: "warmer".into(),
            aspect: "1:1".into(),
            scale: String::new(),
        })
        .unwrap();
    l.view
        .wait("refused", |s| s.notice.contains("needs GEMINI_API_KEY"))
        .await;
    l.events
        .send(UiEvent::Rollback("no-such-version".into()))
        .unwrap();
    let s = l
        .view
        .wait("unknown version", |s| s.notice.contains("no-such-version"))
        .await;
    assert_eq!(s.messages.len(), 1, "nothing was added");
    let id: DocId = s.selected.parse().unwrap();
    assert_eq!(
        l.store
            .load(&id)
            .await
            .unwrap()
            .doc
            .messages()
            .unwrap()
            .len(),
        1
    );
}

/// Two devices of one user against a server running jobs with the fake
/// providers: what one does, the other sees without doing anything.
#[tokio::test]
async fn a_second_device_sees_uploads_and_job_results_by_itself() {
    let fakes = fakes::spawn(FakeConfig {
        step: Duration::from_millis(100),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let providers = ProviderConfig {
        gemini_base: fakes.base_url().into(),
        gemini_key: Some(fakes::DEFAULT_API_KEY.into()),
        replicate_base: fakes.base_url().into(),
        replicate_token: Some(fakes::DEFAULT_REPLICATE_TOKEN.into()),
        ..ProviderConfig::default()
    };
    let server_dir = tempfile::tempdir().unwrap();
    let server = EmbeddedServer::start(EmbeddedOptions {
        providers: providers.clone(),
        job_config: JobConfig {
            poll_interval: Duration::from_millis(200),
            retry_base: Duration::from_millis(50),
            ..JobConfig::default()
        },
        webhooks: false,
        ..EmbeddedOptions::new(server_dir.path())
    })
    .await
    .unwrap();
    let token = server.token("alice", Duration::from_secs(3600));
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let options = BackendOptions {
        engine: fast_engine(),
        providers,
        ..BackendOptions::default()
    };
    let remote = |dir: &tempfile::TempDir| {
        Config::plain(
            dir.path().join("data"),
            Mode::Remote {
                url: server.url(),
                token: Some(token.clone()),
                auth: None,
            },
        )
    };
    let a = device(remote(&dirs[0]), options.clone()).await;
    let b = device(remote(&dirs[1]), options.clone()).await;
    a.view
        .wait("A synced", |s| {
            s.sync.as_ref().is_some_and(|v| v.state == "synced")
        })
        .await;

    let file = write_png(dirs[0].path(), "portrait.png", 120, 160, 5);
    a.send(UiEvent::ImportFile(file));
    let s = a.view.wait("A's asset", |s| s.has_asset).await;
    let asset_id = s.selected.clone();
    b.view
        .wait("the asset on B", |s| {
            s.assets.iter().any(|r| r.id == asset_id)
        })
        .await;

    // Remove the background on A; B opens the asset and watches the job.
    a.send(UiEvent::ToolChanged(2));
    a.send(UiEvent::Send {
        prompt: String::new(),
        aspect: String::new(),
        scale: String::new(),
    });
    b.send(UiEvent::SelectAsset(asset_id.clone()));
    let s = b
        .view
        .wait("the result on B", |s| {
            s.messages.len() == 2 && s.messages[1].status == "succeeded"
        })
        .await;
    assert_eq!(s.messages[1].status_label, "Done");
    assert!(s.messages[1].cost.starts_with('$'), "{:?}", s.messages[1]);
    assert!(!s.messages[1].image_key.is_empty());
    assert_eq!(s.versions().len(), 2);
    assert!(s.versions()[0].active, "the result is the active version");
    // The result's image was downloaded with the document and decodes.
    let key = s.messages[1].image_key.clone();
    b.send(UiEvent::NeedImage(key.clone()));
    b.view
        .wait("the result image on B", |s| s.images.contains_key(&key))
        .await;
    a.view
        .wait("the result on A", |s| {
            s.messages.len() == 2 && s.messages[1].status == "succeeded"
        })
        .await;

    a.stop().await;
    b.stop().await;
    server.stop().await;
}

/// The status bar follows the server going away and coming back, and an
/// edit made meanwhile is pushed once it is back.
#[tokio::test]
async fn sync_status_follows_the_server_away_and_back() {
    let server_dir = tempfile::tempdir().unwrap();
    let start = |addr| {
        let dir = server_dir.path().to_owned();
        async move {
            EmbeddedServer::start(EmbeddedOptions {
                addr,
                jobs: false,
                ..EmbeddedOptions::new(dir)
            })
            .await
            .unwrap()
        }
    };
    let server = start("127.0.0.1:0".parse().unwrap()).await;
    let addr = server.addr();
    let token = server.token("bob", Duration::from_secs(3600));
    let dir = tempfile::tempdir().unwrap();
    let config = Config::plain(
        dir.path().join("data"),
        Mode::Remote {
            url: server.url(),
            token: Some(token),
            auth: None,
        },
    );
    let d = device(
        config,
        BackendOptions {
            engine: fast_engine(),
            ..BackendOptions::default()
        },
    )
    .await;
    d.view
        .wait("synced", |s| {
            s.sync.as_ref().is_some_and(|v| v.state == "synced")
        })
        .await;

    server.stop().await;
    let s = d
        .view
        .wait("offline", |s| {
            s.sync.as_ref().is_some_and(|v| v.state == "offline")
        })
        .await;
    assert!(s.sync.unwrap().detail.contains("retrying"));

    // Work goes on offline.
    d.send(UiEvent::ImportFile(write_png(
        dir.path(),
        "offline.png",
        50,
        40,
        2,
    )));
    d.view
        .wait("pending upload", |s| {
            s.sync
                .as_ref()
                .is_some_and(|v| v.detail.contains("1 asset waiting"))
        })
        .await;

    let server = start(addr).await;
    d.view
        .wait("synced again, nothing pending", |s| {
            s.sync
                .as_ref()
                .is_some_and(|v| v.state == "synced" && !v.detail.contains("waiting"))
        })
        .await;
    d.stop().await;
    server.stop().await;
}

/// `--server URL` without a token: the app offers a sign-in; a refused
/// token says so and keeps the offer; a good one syncs and is kept (for
/// this server, readable by the user only) for the next start.
#[tokio::test]
async fn signing_in_to_a_remote_server() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = EmbeddedServer::start(EmbeddedOptions {
        jobs: false,
        ..EmbeddedOptions::new(server_dir.path())
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config::plain(
        dir.path().join("data"),
        Mode::Remote {
            url: server.url(),
            token: None,
            auth: None,
        },
    );
    let options = BackendOptions {
        engine: fast_engine(),
        ..BackendOptions::default()
    };
    let d = device(config.clone(), options.clone()).await;
    let s = d
        .view
        .wait("the sign-in offer", |s| s.session.offer_sign_in)
        .await;
    assert_eq!(s.server_label, server.url());
    assert!(
        !s.session.browser,
        "a token sheet: this server has no browser sign-in"
    );
    let s = d
        .view
        .wait("not syncing, and why", |s| s.sync.is_some())
        .await;
    let sync = s.sync.unwrap();
    assert_eq!(sync.state, "off");
    assert!(sync.detail.contains("sign in"), "{sync:?}");

    // Work goes on before signing in.
    d.send(UiEvent::ImportFile(write_png(
        dir.path(),
        "before.png",
        40,
        30,
        4,
    )));
    d.view.wait("an asset", |s| s.has_asset).await;

    // A token from another issuer is refused by the server.
    d.send(UiEvent::SignIn("not-a-token".into()));
    let s = d
        .view
        .wait("the refusal", |s| {
            s.sync
                .as_ref()
                .is_some_and(|v| v.state == "offline" && v.detail.contains("401"))
        })
        .await;
    assert!(s.session.offer_sign_in, "still offered");

    // A good token: synced, the asset made before is on the server.
    let token = server.token("erin", Duration::from_secs(3600));
    d.send(UiEvent::SignIn(token.clone()));
    d.view
        .wait("synced, nothing pending", |s| {
            !s.session.offer_sign_in
                && s.sync
                    .as_ref()
                    .is_some_and(|v| v.state == "synced" && !v.detail.contains("waiting"))
        })
        .await;
    let kept = dir.path().join("data/sign-in.json");
    let text = std::fs::read_to_string(&kept).unwrap();
    assert!(text.contains(&token) && text.contains(&server.url()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    d.stop().await;

    // Next start: signed in already.
    let d = device(config, options).await;
    d.view
        .wait("synced at start", |s| {
            s.sync.as_ref().is_some_and(|v| v.state == "synced")
        })
        .await;
    assert!(!d.view.now().session.offer_sign_in);
    d.stop().await;
    server.stop().await;
}

/// The file dialog: a picked file becomes an asset; a dialog that cannot
/// open (no portal, no zenity) is said plainly instead of doing nothing.
#[tokio::test]
async fn the_file_dialog_picks_or_says_why_it_cannot() {
    use common::ports::Answer as Picker;
    use desktop_slint::controller::Picked;

    let dir = tempfile::tempdir().unwrap();
    let file = write_png(dir.path(), "picked.png", 30, 20, 6);
    for (picker, expect_asset, expect_notice) in [
        (Picker(Picked::File(file)), true, false),
        (Picker(Picked::Unavailable), false, true),
        // A user who looked and canceled: nothing to say.
        (Picker(Picked::Canceled), false, false),
    ] {
        let l = local(
            Keys::Offline,
            ControllerConfig {
                picker: Arc::new(picker),
                ..common::ports::test_config()
            },
        )
        .await;
        l.view.wait("start", |s| s.composer.is_some()).await;
        l.events.send(UiEvent::PickFile).unwrap();
        // The dialog answered and the controller acted on the answer (an
        // import or a notice happens before the dialog shows closed).
        l.view
            .wait("the dialog's answer", |s| s.picks_answered == 1)
            .await;
        let s = if expect_asset {
            l.view
                .wait("the picked file's asset", |s| s.has_asset)
                .await
        } else {
            l.view.now()
        };
        assert_eq!(s.has_asset, expect_asset, "{s:?}");
        assert_eq!(
            s.notice.contains("No file dialog could open"),
            expect_notice,
            "{:?}",
            s.notice
        );
    }
}
