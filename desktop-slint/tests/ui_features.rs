//! The window headless (Slint's testing backend, software renderer): files
//! dropped on it and an image pasted with Ctrl+V, Save as… and Copy from
//! the inspector, Compare, the command palette and the shortcuts sheet
//! from the keyboard, and the cost dashboard's filters and CSV export (the
//! file read back by Python). Snapshots go to `target/tmp/ui-headless/`.
//!
//! One test per file: the testing backend is set once per process.

mod common;

use std::sync::Arc;

use common::ports::{MemoryClipboard, SaveTo, test_config};
use common::ui::{
    element, fixture, init_backend, press, shows, snapshot, start_app, type_text, until,
};
use core_sync::ids::DocId;
use core_sync::model::{AssetDoc, NewCostEvent, NewMessage};
use core_sync::store::{Store, StoreOptions};
use desktop_slint::backend::BackendOptions;
use desktop_slint::config::{Config, Mode};
use desktop_slint::controller::{ClipboardContent, ControllerConfig};
use desktop_slint::images::Pixels;
use desktop_slint::ui::{self, Bridge};
use slint::platform::{Key, PointerEventButton};
use slint::{ComponentHandle, Model};

const DAY: i64 = 86_400_000;

/// Two assets with provider calls over the last days, two models.
async fn seed(dir: &std::path::Path) -> i64 {
    let store = Store::open(dir, StoreOptions::default()).await.unwrap();
    let now = core_sync::now_millis();
    let mut total = 0;
    for (a, title) in ["Harbour, at dusk", "Lighthouse"].iter().enumerate() {
        let mut doc = AssetDoc::create(title, now - 10 * DAY);
        for i in 0..6i64 {
            let m = doc
                .append_message(NewMessage::tool_request("edit", "google", "g", "x"), now)
                .unwrap();
            let (provider, model, nano) = if i % 2 == 0 {
                ("google", "gemini-3.1-flash-image", 38_700_000 + a as i64)
            } else {
                ("replicate", "nightmareai/real-esrgan", 2_300_000 + i)
            };
            total += nano;
            doc.record_cost(
                NewCostEvent {
                    provider: provider.into(),
                    model: model.into(),
                    units: 1.0,
                    unit: "images".into(),
                    cost_nano_usd: nano,
                    message_id: Some(m),
                },
                now - i * DAY,
            )
            .unwrap();
        }
        store.insert(DocId::random(), doc).await.unwrap();
    }
    store.close().await;
    total
}

#[test]
fn drop_paste_save_copy_compare_palette_and_dashboard() {
    init_backend();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let total = rt.block_on(seed(&data));
    let saver = SaveTo::new(dir.path().join("out/harbour"));
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    let clipboard = Arc::new(MemoryClipboard::default());

    let (window, worker) = start_app(
        Config::plain(data, Mode::Offline),
        BackendOptions::default(),
        ControllerConfig {
            saver: saver.clone(),
            clipboard: clipboard.clone(),
            ..test_config()
        },
    );

    let weak = window.as_weak();
    let out = dir.path().join("out");
    slint::spawn_local(async move {
        let w = weak.upgrade().unwrap();
        let bridge = || w.global::<Bridge>();
        until(&w, "the seeded assets", || {
            bridge().get_assets().row_count() == 2
        })
        .await;

        // A file dropped on the window: a new asset.
        ui::files_dropped(&w, vec![fixture("harbour.jpg")]);
        until(&w, "the dropped image, open", || {
            bridge().get_has_asset() && bridge().get_asset_title() == "harbour"
        })
        .await;
        // Another, on the open asset: asked, then a new version of it.
        ui::files_dropped(&w, vec![fixture("meadow.png")]);
        until(&w, "the question", || bridge().get_incoming_open()).await;
        snapshot(&w, "10-incoming");
        element(&w, "IncomingSheet::as-version")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "the second version", || {
            bridge().get_versions().row_count() == 2 && bridge().get_has_preview()
        })
        .await;

        // Save as… writes the original file; Copy puts its pixels on the
        // clipboard.
        element(&w, "Inspector::save")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "saved", || bridge().get_info().starts_with("Saved")).await;
        assert_eq!(
            std::fs::read(out.join("harbour.png")).unwrap(),
            std::fs::read(fixture("meadow.png")).unwrap()
        );
        element(&w, "Inspector::copy")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "copied", || bridge().get_info().starts_with("Copied")).await;
        assert!(matches!(
            clipboard.0.lock().unwrap().as_ref(),
            Some(ClipboardContent::Image(_))
        ));

        // Compare: side by side, then the slider.
        element(&w, "Inspector::compare")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "both versions drawn", || {
            bridge().get_compare_open()
                && bridge().get_compare_left_ready()
                && bridge().get_compare_right_ready()
        })
        .await;
        assert!(bridge().get_compare_left_label().starts_with("v1"));
        snapshot(&w, "11-compare");
        element(&w, "Compare::mode")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "the slider", || {
            shows(&w, "Divider between the two versions")
        })
        .await;
        snapshot(&w, "12-compare-slider");
        press(&w, &slint::SharedString::from(Key::Escape), false, false);
        until(&w, "compare closed", || !bridge().get_compare_open()).await;

        // Ctrl+V with an image on the clipboard: asked, then a new asset.
        *clipboard.0.lock().unwrap() = Some(ClipboardContent::Image(Pixels {
            width: 40,
            height: 30,
            rgba: vec![120; 40 * 30 * 4],
        }));
        press(&w, "v", true, false);
        until(&w, "the paste question", || bridge().get_incoming_open()).await;
        element(&w, "IncomingSheet::as-asset")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "the pasted asset", || {
            bridge().get_assets().row_count() == 4 && bridge().get_asset_title() == "Pasted image"
        })
        .await;

        // The shortcuts sheet (F1) lists every shortcut.
        press(&w, &slint::SharedString::from(Key::F1), false, false);
        until(&w, "the shortcuts", || shows(&w, "Command palette: Ctrl+K")).await;
        snapshot(&w, "13-shortcuts");
        press(&w, &slint::SharedString::from(Key::Escape), false, false);
        until(&w, "shortcuts closed", || {
            !shows(&w, "Command palette: Ctrl+K")
        })
        .await;

        // The palette (Ctrl+K): fuzzy search, Enter runs the first match.
        press(&w, "k", true, false);
        until(&w, "the palette", || {
            bridge().get_palette_rows().row_count() > 5
        })
        .await;
        type_text(&w, "lghths");
        until(&w, "the asset found", || {
            bridge()
                .get_palette_rows()
                .row_data(0)
                .is_some_and(|r| r.title == "Lighthouse")
        })
        .await;
        snapshot(&w, "14-palette");
        press(&w, &slint::SharedString::from(Key::Return), false, false);
        until(&w, "the asset opened", || {
            bridge().get_asset_title() == "Lighthouse"
        })
        .await;

        // The dashboard (Ctrl+D): every event, then filters.
        press(&w, "d", true, false);
        until(&w, "the dashboard", || {
            bridge().get_screen() == "dashboard" && bridge().get_dash_events().row_count() == 12
        })
        .await;
        assert_eq!(
            bridge().get_dash_total(),
            format!("${}", core_sync::costs::usd(total))
        );
        snapshot(&w, "15-dashboard");
        element(&w, "Dashboard::d7")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "the last 7 days", || {
            bridge().get_dash_events().row_count() == 12
        })
        .await;
        // From two days ago: three days, two assets.
        let from = core_sync::costs::utc_day(core_sync::now_millis() - 2 * DAY);
        let from = format!(
            "{:04}-{:02}-{:02}",
            from.year(),
            from.month() as u8,
            from.day()
        );
        element(&w, "Dashboard::from").set_accessible_value(&from);
        element(&w, "Dashboard::apply-button")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "three days", || {
            bridge().get_dash_events().row_count() == 6
        })
        .await;
        bridge().invoke_dashboard_filter(from.clone().into(), "".into(), 1, "".into());
        // Gemini only: every other day.
        until(&w, "one model", || {
            bridge().get_dash_events().row_count() == 4
        })
        .await;
        snapshot(&w, "16-dashboard-filtered");
        element(&w, "Dashboard::from").set_accessible_value("last week");
        element(&w, "Dashboard::apply-button")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "the date error", || {
            bridge().get_dash_error().contains("last week")
        })
        .await;
        element(&w, "Dashboard::all")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "all time", || {
            bridge().get_dash_events().row_count() == 12 && bridge().get_dash_error().is_empty()
        })
        .await;

        // Export CSV: the same rows, read back by Python's csv module.
        saver.answer(out.join("costs"));
        element(&w, "Dashboard::export")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "exported", || {
            bridge().get_info().starts_with("Exported 12")
        })
        .await;
        let py = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import csv,sys\nfrom decimal import Decimal\n\
                 r=list(csv.DictReader(open(sys.argv[1],newline='',encoding='utf-8')))\n\
                 print(len(r)); print(sum(Decimal(x['cost_usd']) for x in r))\n\
                 print(sorted(set(x['asset_title'] for x in r)))",
            )
            .arg(out.join("costs.csv"))
            .output()
            .expect("python3 runs");
        assert!(
            py.status.success(),
            "{}",
            String::from_utf8_lossy(&py.stderr)
        );
        let text = String::from_utf8(py.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "12");
        assert_eq!(
            format!("${}", lines[1]).trim_end_matches('0'),
            bridge().get_dash_total().trim_end_matches('0')
        );
        assert_eq!(lines[2], "['Harbour, at dusk', 'Lighthouse']");
        slint::quit_event_loop().unwrap();
    })
    .unwrap();
    slint::run_event_loop().unwrap();
    worker.stop();
}
