//! The controller's newer features without a UI: images in (drop, paste,
//! validated by content) and out (save the original file, copy), compare,
//! cancel, long timelines (paged, refreshed row by row), and the cost
//! dashboard with its CSV, checked against the server's own documents.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use atelier_fixtures::fakes::{self, FakeConfig};
use cloud_lambda::auth::LocalIssuer;
use cloud_lambda::jobs::JobConfig;
use cloud_lambda::providers::ProviderConfig;
use cloud_lambda::storage::DocStore;
use cloud_lambda::storage::embedded::EmbeddedStore;
use common::ports::{MemoryClipboard, SaveTo, test_config};
use common::{device_with, fast_engine, local, write_png};
use core_sync::costs::{self, Rollup};
use core_sync::ids::DocId;
use core_sync::model::{AssetDoc, MessageStatus, MessageUpdate, NewMessage};
use core_sync::now_millis;
use core_sync::sync::client::SyncEvent;
use desktop_slint::backend::{BackendOptions, LOCAL_USER};
use desktop_slint::config::{Config, Mode};
use desktop_slint::controller::{ClipboardContent, ControllerConfig, LinkEvent, UiEvent};
use desktop_slint::dashboard::DashboardFilterForm;
use desktop_slint::images::Pixels;
use desktop_slint::tools::Keys;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/images")
        .join(name)
}

/// The embedded server's jobs run against `fakes`, sync polls fast.
fn with_fakes(fakes: &fakes::RunningFakes) -> BackendOptions {
    BackendOptions {
        engine: fast_engine(),
        providers: ProviderConfig {
            gemini_base: fakes.base_url().into(),
            gemini_key: Some(fakes::DEFAULT_API_KEY.into()),
            replicate_base: fakes.base_url().into(),
            replicate_token: Some(fakes::DEFAULT_REPLICATE_TOKEN.into()),
            ..ProviderConfig::default()
        },
        jobs: JobConfig {
            poll_interval: Duration::from_millis(100),
            ..JobConfig::default()
        },
        ..BackendOptions::default()
    }
}

#[tokio::test]
async fn images_come_in_by_drop_and_paste_and_go_out_by_save_and_copy() {
    let dir = tempfile::tempdir().unwrap();
    let saver = SaveTo::new(dir.path().join("saved/harbour"));
    std::fs::create_dir_all(dir.path().join("saved")).unwrap();
    let clipboard = Arc::new(MemoryClipboard::default());
    let l = local(
        Keys::Offline,
        ControllerConfig {
            saver: saver.clone(),
            clipboard: clipboard.clone(),
            max_import_bytes: 2_000_000,
            ..test_config()
        },
    )
    .await;
    l.view.wait("start", |s| s.composer.is_some()).await;

    // Dropped with nothing open: each good file a new asset; a bad one is
    // named in a notice.
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "not an image").unwrap();
    l.send(UiEvent::Dropped(vec![fixture("harbour.jpg"), notes]));
    let s = l
        .view
        .wait("the dropped image's asset", |s| {
            s.has_asset && s.versions().len() == 1 && !s.notice.is_empty()
        })
        .await;
    assert_eq!(s.title, "harbour");
    assert!(
        s.notice
            .contains("notes.txt is not a PNG, JPEG or WebP image"),
        "{}",
        s.notice
    );
    assert_eq!(s.assets.len(), 1);

    // Dropped on an open asset: asked, then a new version of it.
    l.send(UiEvent::Dropped(vec![write_png(
        dir.path(),
        "warm.png",
        64,
        48,
        3,
    )]));
    let s = l.view.wait("the question", |s| s.incoming.is_some()).await;
    let q = s.incoming.unwrap();
    assert_eq!(
        (q.what.as_str(), q.asset.as_str()),
        ("warm.png (64 × 48)", "harbour")
    );
    l.send(UiEvent::IncomingAs(true));
    let s = l
        .view
        .wait("a second version", |s| {
            s.incoming.is_none() && s.versions().len() == 2
        })
        .await;
    assert!(s.versions()[0].active, "the new version is active");
    assert!(s.messages.iter().any(|m| m.text == "Uploaded warm.png"));
    assert_eq!(s.assets.len(), 1, "no new asset");

    // Too large: refused by size, nothing changes.
    let big = dir.path().join("big.png");
    std::fs::write(&big, vec![0u8; 3_000_000]).unwrap();
    l.send(UiEvent::Dropped(vec![big]));
    l.view
        .wait("the size refusal", |s| {
            s.notice.contains("more than the 2.0 MB")
        })
        .await;

    // Save the active version's original file: the bytes, the extension.
    l.send(UiEvent::SaveImage(None));
    let s = l.view.wait("saved", |s| s.info.starts_with("Saved")).await;
    let saved = dir.path().join("saved/harbour.png");
    assert!(s.info.contains(&saved.display().to_string()), "{}", s.info);
    assert_eq!(
        std::fs::read(&saved).unwrap(),
        std::fs::read(dir.path().join("warm.png")).unwrap()
    );
    assert_eq!(saver.asked.lock().unwrap()[0].1, "harbour-v2.png");
    // And v1, a JPEG: its own bytes and extension.
    let v1 = s.versions()[1].id.clone();
    saver.answer(dir.path().join("saved/first.jpeg"));
    l.send(UiEvent::SaveImage(Some(v1.clone())));
    l.view
        .wait("v1 saved", |s| s.info.contains("first.jpeg"))
        .await;
    assert_eq!(
        std::fs::read(dir.path().join("saved/first.jpeg")).unwrap(),
        std::fs::read(fixture("harbour.jpg")).unwrap()
    );

    // Copy: the full-size pixels go to the clipboard.
    l.send(UiEvent::CopyImage(Some(v1.clone())));
    l.view
        .wait("copied", |s| s.info.starts_with("Copied v1"))
        .await;
    match clipboard.0.lock().unwrap().clone() {
        Some(ClipboardContent::Image(px)) => assert_eq!((px.width, px.height), (800, 600)),
        other => panic!("{other:?}"),
    }

    // Compare the active version with the one before; both images decode.
    l.send(UiEvent::Compare(None));
    let s = l.view.wait("the comparison", |s| s.compare.is_some()).await;
    let c = s.compare.unwrap();
    assert!(
        c.left.label.starts_with("v1 · Upload · 800 × 600"),
        "{}",
        c.left.label
    );
    assert!(c.right.label.starts_with("v2"), "{}", c.right.label);
    l.view
        .wait("both images", |s| {
            s.images.contains_key(&c.left.key) && s.images.contains_key(&c.right.key)
        })
        .await;
    l.send(UiEvent::CloseCompare);
    l.view.wait("closed", |s| s.compare.is_none()).await;

    // Paste an image: a new asset when asked for one.
    *clipboard.0.lock().unwrap() = Some(ClipboardContent::Image(Pixels {
        width: 3,
        height: 2,
        rgba: vec![200; 3 * 2 * 4],
    }));
    l.send(UiEvent::Paste { explicit: false });
    l.view.wait("the question", |s| s.incoming.is_some()).await;
    l.send(UiEvent::IncomingAs(false));
    let s = l
        .view
        .wait("the pasted asset", |s| {
            s.assets.len() == 2 && s.title == "Pasted image"
        })
        .await;
    assert_eq!(s.inspector.dimensions, "3 × 2");
    // Nothing on the clipboard: said when asked by name, quiet for Ctrl+V.
    *clipboard.0.lock().unwrap() = Some(ClipboardContent::Other);
    l.send(UiEvent::Paste { explicit: true });
    l.view
        .wait("nothing to paste", |s| s.notice.contains("holds no image"))
        .await;

    // Cancel a queued request (offline here: it waits); then it can be
    // retried, not canceled again.
    l.send(UiEvent::ToolChanged(3));
    l.send(UiEvent::Send {
        prompt: String::new(),
        aspect: String::new(),
        scale: "2".into(),
    });
    let s = l
        .view
        .wait("queued", |s| {
            s.messages.last().is_some_and(|m| m.status == "queued")
        })
        .await;
    let req = s.messages.last().unwrap().clone();
    assert!(req.can_cancel && !req.can_retry);
    l.send(UiEvent::Cancel(req.id.clone()));
    let s = l
        .view
        .wait("canceled", |s| {
            s.messages.last().is_some_and(|m| m.status == "canceled")
        })
        .await;
    let m = s.messages.last().unwrap();
    assert!(m.can_retry && !m.can_cancel);
    assert!(*l.link.nudges.lock().unwrap() > 0, "sync nudged");
    l.send(UiEvent::Cancel(req.id.clone()));
    l.view
        .wait("refused", |s| s.notice.contains("only queued or running"))
        .await;
}

#[tokio::test]
async fn long_timelines_open_on_the_newest_page_and_refresh_only_what_changed() {
    let l = local(Keys::Offline, test_config()).await;
    l.view.wait("start", |s| s.composer.is_some()).await;
    let now = now_millis();
    let mut doc = AssetDoc::create("Long", now);
    let mut last_request = String::new();
    for i in 0..500 {
        if i % 10 == 9 {
            last_request = doc
                .append_message(
                    NewMessage::tool_request("edit", "google", "g", format!("edit {i}")),
                    now,
                )
                .unwrap();
        } else {
            doc.append_message(NewMessage::user(format!("note {i}")), now)
                .unwrap();
        }
    }
    let id = l.store.insert(DocId::random(), doc).await.unwrap().id;
    l.pulled
        .send(LinkEvent::Sync(SyncEvent::Pulled(vec![id.clone()])))
        .unwrap();
    l.view.wait("listed", |s| s.assets.len() == 1).await;

    l.send(UiEvent::SelectAsset(id.to_string()));
    let s = l.view.wait("the newest page", |s| s.has_asset).await;
    assert_eq!(s.messages.len(), 40);
    assert_eq!(s.earlier, 460);
    assert_eq!(s.messages[0].text, "note 460");
    assert_eq!(s.messages.last().unwrap().text, "edit 499");

    l.send(UiEvent::LoadEarlier);
    let s = l
        .view
        .wait("an earlier page", |s| s.messages.len() == 160)
        .await;
    assert_eq!(s.earlier, 340);
    assert_eq!(s.messages[0].text, "note 340");
    let before = s.clone();

    // Another writer (the sync client) finishes the last request and adds
    // a note: one row updated, one appended, no reload.
    let mut other = l.store.load(&id).await.unwrap();
    other
        .doc
        .update_message(
            &last_request,
            MessageUpdate {
                status: Some(MessageStatus::Failed),
                ..Default::default()
            },
            now,
        )
        .unwrap();
    other
        .doc
        .append_message(NewMessage::user("after"), now)
        .unwrap();
    l.store.save(&mut other).await.unwrap();
    l.pulled
        .send(LinkEvent::Sync(SyncEvent::Pulled(vec![id.clone()])))
        .unwrap();
    let s = l.view.wait("the change", |s| s.messages.len() == 161).await;
    assert_eq!(s.messages[159].status, "failed");
    assert_eq!(s.messages[160].text, "after");
    assert_eq!(s.full_timelines, before.full_timelines, "no whole reload");
    // The request's row, and the asset's line in the list (its count).
    assert_eq!(s.row_updates, before.row_updates + 2, "single rows re-read");
}

/// Provider calls through the embedded server (fake providers): the
/// dashboard adds up what the documents say, filters by model and date,
/// exports the same rows as CSV (read back by Python's csv module), and
/// agrees with a rollup of the server's own copy of the documents.
#[tokio::test]
async fn the_dashboard_filters_exports_and_agrees_with_the_server() {
    let fakes = fakes::spawn(FakeConfig {
        step: Duration::from_millis(50),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let saver = SaveTo::new(dir.path().join("costs"));
    let options = with_fakes(&fakes);
    let data = dir.path().join("data");
    let d = device_with(
        Config::plain(data.clone(), Mode::Embedded),
        options,
        ControllerConfig {
            saver: saver.clone(),
            ..test_config()
        },
    )
    .await;
    d.view.wait("start", |s| s.composer.is_some()).await;
    // Generate an image, then upscale it: a Google and a Replicate call.
    d.send(UiEvent::NewFromPrompt {
        prompt: "a harbour, with \"quotes\", and commas".into(),
        model_index: 0,
        aspect: "1:1".into(),
    });
    d.view
        .wait("the generated image", |s| {
            s.versions().len() == 1 && s.messages.last().is_some_and(|m| m.status == "succeeded")
        })
        .await;
    d.send(UiEvent::ToolChanged(3));
    d.send(UiEvent::Send {
        prompt: String::new(),
        aspect: String::new(),
        scale: "2".into(),
    });
    d.view
        .wait("the upscale", |s| {
            s.versions().len() == 2
                && s.messages
                    .last()
                    .is_some_and(|m| m.status == "succeeded" && !m.cost.is_empty())
        })
        .await;

    d.send(UiEvent::ShowDashboard(true));
    let s = d
        .view
        .wait("the dashboard", |s| {
            s.dashboard.as_ref().is_some_and(|v| v.table.len() == 2)
        })
        .await;
    let vm = s.dashboard.unwrap();
    assert_eq!(vm.by_provider.len(), 2);
    assert_eq!(vm.events, "2 provider calls");
    assert_eq!(vm.model_choices.len(), 3);

    // The server's own copy of the documents adds up to the same.
    let server = EmbeddedStore::open(&data.join("cloud")).await.unwrap();
    let user = LocalIssuer::user_id(LOCAL_USER);
    let mut rows = Vec::new();
    for entry in server.feed_since(&user, 0, 1000).await.unwrap() {
        let chunks = server.read_all(&user, &entry.doc_id).await.unwrap();
        let mut doc = AssetDoc::load_chunks(chunks.iter().map(|c| c.bytes.as_slice())).unwrap();
        let title = doc.summary().unwrap().title;
        rows.extend(costs::CostRow::of_asset(
            entry.doc_id.as_str(),
            &title,
            doc.cost_events().unwrap(),
        ));
    }
    let on_server = Rollup::of_rows(&rows, &costs::CostFilter::all());
    assert_eq!(vm.total, format!("${}", costs::usd(on_server.nano_usd)));
    assert_eq!(on_server.events, 2);

    // One model only.
    d.send(UiEvent::DashboardFilter(DashboardFilterForm {
        model: 1,
        ..vm.form.clone()
    }));
    let s = d
        .view
        .wait("one model", |s| {
            s.dashboard.as_ref().is_some_and(|v| v.table.len() == 1)
        })
        .await;
    let one = s.dashboard.unwrap();
    assert_eq!(one.by_model.len(), 1);
    // A bad date says so.
    d.send(UiEvent::DashboardFilter(DashboardFilterForm {
        from: "yesterday".into(),
        ..vm.form.clone()
    }));
    d.view
        .wait("the date error", |s| {
            s.dashboard
                .as_ref()
                .is_some_and(|v| v.error.contains("from=\"yesterday\""))
        })
        .await;
    // Every model, every day: export.
    d.send(UiEvent::DashboardFilter(DashboardFilterForm {
        preset: "all".into(),
        ..DashboardFilterForm::default()
    }));
    d.view
        .wait("all again", |s| {
            s.dashboard
                .as_ref()
                .is_some_and(|v| v.table.len() == 2 && v.error.is_empty())
        })
        .await;
    d.send(UiEvent::ExportCsv);
    let s = d
        .view
        .wait("exported", |s| s.info.starts_with("Exported"))
        .await;
    let csv = dir.path().join("costs.csv");
    assert!(s.info.contains("Exported 2 cost events"), "{}", s.info);
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import csv,sys\nfrom decimal import Decimal\n\
             r=list(csv.DictReader(open(sys.argv[1],newline='',encoding='utf-8')))\n\
             print(len(r), sum(Decimal(x['cost_usd']) for x in r), r[0]['asset_title'])",
        )
        .arg(&csv)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut parts = text.trim().splitn(3, ' ');
    assert_eq!(parts.next(), Some("2"));
    let sum = parts.next().unwrap();
    assert_eq!(
        format!("${sum}").trim_end_matches('0'),
        vm.total.trim_end_matches('0')
    );
    assert_eq!(parts.next(), Some("a harbour, with \"quotes\", and commas"));
    d.stop().await;
    drop(fakes);
}

/// Settings are checked, kept in the data directory (readable by the user
/// only) and handed to the sync link; a bad one is said and not kept.
#[tokio::test]
async fn settings_are_kept_and_applied() {
    use desktop_slint::settings::{Settings, SettingsForm};
    let data = tempfile::tempdir().unwrap();
    let l = local(
        Keys::Offline,
        ControllerConfig {
            data: Some(data.path().to_owned()),
            ..test_config()
        },
    )
    .await;
    let s = l.view.wait("the settings", |s| s.settings.is_some()).await;
    assert_eq!(s.settings.unwrap().cadence, 1, "25 s by default");
    l.send(UiEvent::SaveSettings(SettingsForm {
        server_url: "not a url".into(),
        ..SettingsForm::default()
    }));
    l.view
        .wait("refused", |s| s.notice.contains("is not an http(s) URL"))
        .await;
    assert!(!Settings::path(data.path()).exists());
    l.send(UiEvent::SaveSettings(SettingsForm {
        gemini_api_key: "AIza-test".into(),
        cadence: 0,
        ..SettingsForm::default()
    }));
    let s = l.view.wait("saved", |s| s.info == "Settings saved.").await;
    assert_eq!(s.settings.unwrap().note, "Saved.");
    let kept = Settings::load(data.path()).unwrap();
    assert_eq!(kept.gemini_api_key.as_deref(), Some("AIza-test"));
    assert_eq!(kept.idle_poll_secs, Some(5));
    assert_eq!(
        l.link.calls.lock().unwrap().as_slice(),
        ["apply_settings".to_owned()]
    );
}

/// Cancel on a running Replicate job: the server's job sees the status,
/// cancels the prediction at Replicate, and the card stays canceled with
/// what was spent, if anything, shown.
#[tokio::test]
async fn canceling_a_running_job_cancels_the_prediction() {
    let fakes = fakes::spawn(FakeConfig {
        step: Duration::from_millis(1500),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = with_fakes(&fakes);
    let d = device_with(
        Config::plain(dir.path().join("data"), Mode::Embedded),
        options,
        test_config(),
    )
    .await;
    d.view.wait("start", |s| s.composer.is_some()).await;
    d.send(UiEvent::ImportFile(write_png(
        dir.path(),
        "a.png",
        64,
        64,
        4,
    )));
    d.view.wait("the asset", |s| s.versions().len() == 1).await;
    d.send(UiEvent::ToolChanged(3));
    d.send(UiEvent::Send {
        prompt: String::new(),
        aspect: String::new(),
        scale: "2".into(),
    });
    let s = d
        .view
        .wait("running", |s| {
            s.messages.last().is_some_and(|m| m.status == "running")
        })
        .await;
    let id = s.messages.last().unwrap().id.clone();
    d.send(UiEvent::Cancel(id));
    d.view
        .wait("canceled", |s| {
            s.messages
                .last()
                .is_some_and(|m| m.status == "canceled" && m.can_retry)
        })
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !fakes
        .requests()
        .iter()
        .any(|r| r.method == "POST" && r.path.ends_with("/cancel"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the prediction was never canceled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = d.view.now();
    assert_eq!(s.versions().len(), 1, "no result after a cancel");
    d.stop().await;
}
