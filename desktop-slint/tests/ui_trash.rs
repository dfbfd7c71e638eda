//! The window headless (Slint's testing backend, software renderer):
//! renaming in the list (double-click, type, Enter) and in the timeline's
//! header, deleting with the Undo bar, and restoring from the Trash sheet.
//! Snapshots go to `target/tmp/ui-headless/`.
//!
//! One test per file: the testing backend is set once per process.

mod common;

use common::ports::test_config;
use common::ui::{init_backend, press, shows, snapshot, start_app, type_text, until};
use core_sync::ids::DocId;
use core_sync::model::AssetDoc;
use core_sync::store::{Store, StoreOptions};
use desktop_slint::backend::BackendOptions;
use desktop_slint::config::{Config, Mode};
use desktop_slint::ui::Bridge;
use i_slint_backend_testing::ElementHandle;
use slint::platform::{Key, PointerEventButton};
use slint::{ComponentHandle, Model};

async fn seed(dir: &std::path::Path) {
    let store = Store::open(dir, StoreOptions::default()).await.unwrap();
    let now = core_sync::now_millis();
    for (i, title) in ["Harbour", "Lighthouse"].iter().enumerate() {
        store
            .insert(DocId::random(), AssetDoc::create(title, now + i as i64))
            .await
            .unwrap();
    }
    store.close().await;
}

fn labelled(w: &desktop_slint::ui::AppWindow, label: &str) -> ElementHandle {
    ElementHandle::find_by_accessible_label(w, label)
        .find(|e| e.is_valid() && e.size().width > 0.0)
        .unwrap_or_else(|| panic!("nothing labelled {label:?} on screen"))
}

fn titles(w: &desktop_slint::ui::AppWindow) -> Vec<String> {
    let assets = w.global::<Bridge>().get_assets();
    (0..assets.row_count())
        .map(|i| assets.row_data(i).unwrap().title.to_string())
        .collect()
}

#[test]
fn rename_delete_undo_and_restore_in_the_window() {
    init_backend();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    rt.block_on(seed(&data));
    let (window, worker) = start_app(
        Config::plain(data, Mode::Offline),
        BackendOptions::default(),
        test_config(),
    );
    let weak = window.as_weak();
    slint::spawn_local(async move {
        let w = weak.upgrade().unwrap();
        let bridge = || w.global::<Bridge>();
        let enter = slint::SharedString::from(Key::Return);
        until(&w, "the seeded assets", || {
            titles(&w) == ["Lighthouse", "Harbour"]
        })
        .await;

        // In the list: double-click a title, type, Enter.
        labelled(&w, "Harbour, just now · 0 messages")
            .double_click(PointerEventButton::Left)
            .await;
        until(&w, "the title field", || shows(&w, "New title of Harbour")).await;
        type_text(&w, "Old harbour");
        press(&w, &enter, false, false);
        until(&w, "the renamed row", || {
            titles(&w).contains(&"Old harbour".into())
        })
        .await;
        snapshot(&w, "30-renamed-in-list");

        // Open Lighthouse and rename it in the header.
        labelled(&w, "Lighthouse, just now · 0 messages")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "Lighthouse open", || {
            bridge().get_has_asset() && bridge().get_asset_title() == "Lighthouse"
        })
        .await;
        labelled(&w, "Rename the asset")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "the header's field", || {
            shows(&w, "New title of the asset")
        })
        .await;
        type_text(&w, "Lighthouse at night");
        press(&w, &enter, false, false);
        until(&w, "the new header", || {
            bridge().get_asset_title() == "Lighthouse at night"
        })
        .await;

        // Delete it from the header: the Undo bar, then Undo.
        labelled(&w, "Move the asset to the Trash")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "the Undo bar", || {
            bridge().get_undo_text() == "Moved “Lighthouse at night” to the Trash."
                && !bridge().get_has_asset()
        })
        .await;
        assert_eq!(titles(&w), ["Old harbour"]);
        snapshot(&w, "31-undo-bar");
        labelled(&w, "Undo the deletion")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "undone", || {
            titles(&w).len() == 2 && bridge().get_undo_text().is_empty() && bridge().get_has_asset()
        })
        .await;

        // Delete the other from its row (its button shows on the selected
        // or hovered row), then restore it from the Trash.
        let assets = bridge().get_assets();
        let subtitle = (0..assets.row_count())
            .map(|i| assets.row_data(i).unwrap())
            .find(|r| r.title == "Old harbour")
            .expect("the Old harbour row")
            .subtitle;
        let row = labelled(&w, &format!("Old harbour, {subtitle}"));
        row.single_click(PointerEventButton::Left).await;
        until(&w, "Old harbour open", || {
            bridge().get_asset_title() == "Old harbour"
        })
        .await;
        labelled(&w, "Delete Old harbour")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "one left", || titles(&w) == ["Lighthouse at night"]).await;
        press(&w, "t", true, true);
        until(&w, "the trash", || {
            bridge().get_trash_open() && bridge().get_trash_rows().row_count() == 1
        })
        .await;
        let row = bridge().get_trash_rows().row_data(0).unwrap();
        assert_eq!(row.title, "Old harbour");
        assert_eq!(row.purge, "Deleted for good in 30 days");
        snapshot(&w, "32-trash");
        labelled(&w, "Restore Old harbour")
            .single_click(PointerEventButton::Left)
            .await;
        until(&w, "restored", || {
            titles(&w).len() == 2 && bridge().get_trash_rows().row_count() == 0
        })
        .await;
        press(&w, &slint::SharedString::from(Key::Escape), false, false);
        until(&w, "the trash closed", || !bridge().get_trash_open()).await;
        slint::quit_event_loop().unwrap();
    })
    .unwrap();
    slint::run_event_loop().unwrap();
    worker.stop();
}
