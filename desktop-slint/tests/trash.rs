//! Rename, delete with Undo, the Trash and a deletion from another device,
//! through the controller (no window): a real store, the sync link played
//! by the test.

mod common;

use common::local;
use common::ports::test_config;
use core_sync::ids::DocId;
use core_sync::model::NewMessage;
use core_sync::now_millis;
use core_sync::sync::client::SyncEvent;
use desktop_slint::controller::{LinkEvent, UiEvent};
use desktop_slint::tools::Keys;

/// Two assets created from files; returns their ids (newest first, as
/// listed).
async fn two_assets(l: &common::Local) -> (String, String) {
    for (i, name) in ["harbour.png", "meadow.png"].iter().enumerate() {
        let file = common::write_png(l._dir.path(), name, 64, 48, i as u8);
        l.send(UiEvent::ImportFile(file));
        l.view
            .wait("the new asset", |s| s.assets.len() == i + 1 && s.has_asset)
            .await;
    }
    let s = l.view.now();
    (s.assets[0].id.clone(), s.assets[1].id.clone())
}

#[tokio::test]
async fn rename_in_the_list_and_the_header_and_refuse_an_empty_title() {
    let l = local(Keys::Offline, test_config()).await;
    let (open, other) = two_assets(&l).await;
    assert_eq!(l.view.now().selected, open);

    // In the list: an asset that is not open.
    l.send(UiEvent::Rename {
        id: other.clone(),
        title: "  Green meadow ".into(),
    });
    l.view
        .wait("the renamed row", |s| {
            s.assets
                .iter()
                .any(|a| a.id == other && a.title == "Green meadow")
        })
        .await;
    // In the header: the open asset, title shown at once.
    l.send(UiEvent::Rename {
        id: open.clone(),
        title: "Harbour at dusk".into(),
    });
    let s = l
        .view
        .wait("the header's title", |s| s.title == "Harbour at dusk")
        .await;
    assert!(s.assets.iter().any(|a| a.title == "Harbour at dusk"));
    // Saved before shown.
    let id: DocId = open.parse().unwrap();
    assert_eq!(
        l.store.load(&id).await.unwrap().summary().unwrap().title,
        "Harbour at dusk"
    );
    // An empty title is refused with the reason; nothing changes.
    l.send(UiEvent::Rename {
        id: open.clone(),
        title: "   ".into(),
    });
    let s = l
        .view
        .wait("the refusal", |s| s.notice.contains("cannot be empty"))
        .await;
    assert_eq!(s.title, "Harbour at dusk");
}

#[tokio::test]
async fn delete_offers_undo_at_once_and_the_trash_restores() {
    let l = local(Keys::Offline, test_config()).await;
    let (open, other) = two_assets(&l).await;

    // Delete the open asset: it closes, leaves the list, Undo is offered.
    l.send(UiEvent::Delete(None));
    let s = l
        .view
        .wait("the Undo bar", |s| !s.undo.is_empty() && !s.has_asset)
        .await;
    assert_eq!(s.undo, "Moved “meadow” to the Trash.");
    assert_eq!(s.assets.len(), 1);
    assert_eq!(s.assets[0].id, other);
    let id: DocId = open.parse().unwrap();
    let d = l
        .store
        .load(&id)
        .await
        .unwrap()
        .summary()
        .unwrap()
        .deleted
        .expect("the tombstone is saved");
    assert_eq!(d.by, core_sync::device_name());

    // Undo: back in the list, open again, the bar gone.
    l.send(UiEvent::Undo);
    let s = l
        .view
        .wait("the asset back and open", |s| {
            s.assets.len() == 2 && s.has_asset && s.undo.is_empty()
        })
        .await;
    assert_eq!(s.selected, open);

    // Delete the other one from the list, then restore it from the Trash.
    l.send(UiEvent::Delete(Some(other.clone())));
    l.view
        .wait("one left", |s| s.assets.len() == 1 && !s.undo.is_empty())
        .await;
    assert!(l.view.now().has_asset, "the open asset stays open");
    l.send(UiEvent::DismissUndo);
    l.send(UiEvent::ShowTrash(true));
    let s = l
        .view
        .wait("the trash", |s| s.trash.open && s.trash.rows.len() == 1)
        .await;
    let row = &s.trash.rows[0];
    assert_eq!(row.id, other);
    assert_eq!(row.title, "harbour");
    assert!(
        row.deleted.starts_with("Deleted just now on "),
        "{}",
        row.deleted
    );
    assert_eq!(row.purge, "Deleted for good in 30 days");
    assert_eq!(row.conflict, "");
    assert!(s.undo.is_empty());
    l.send(UiEvent::Restore(other.clone()));
    let s = l
        .view
        .wait("restored", |s| {
            s.assets.len() == 2 && s.trash.rows.is_empty()
        })
        .await;
    assert!(s.info.starts_with("Restored “harbour”"), "{}", s.info);
    l.send(UiEvent::ShowTrash(false));
    l.view.wait("the trash closed", |s| !s.trash.open).await;
}

#[tokio::test]
async fn a_deletion_from_another_device_closes_the_asset_and_says_so() {
    let l = local(Keys::Offline, test_config()).await;
    let (open, _) = two_assets(&l).await;
    let id: DocId = open.parse().unwrap();
    // This device edits the asset; another deletes it concurrently (its
    // change arrives by sync: here written to the store as the sync client
    // would).
    l.send(UiEvent::Send {
        prompt: "brighter".into(),
        aspect: "1:1".into(),
        scale: String::new(),
    });
    l.view.wait("the request", |s| s.messages.len() == 2).await;
    let mut elsewhere = l.store.load(&id).await.unwrap();
    // The other device's copy deletes; this one's gets a note meanwhile.
    let mut theirs = elsewhere.doc.fork();
    theirs.delete("laptop", now_millis()).unwrap();
    elsewhere
        .doc
        .append_message(NewMessage::user("a late note"), now_millis())
        .unwrap();
    elsewhere.doc.merge(&mut theirs).unwrap();
    l.store.save(&mut elsewhere).await.unwrap();
    l.pulled
        .send(LinkEvent::Sync(SyncEvent::Pulled(vec![id.clone()])))
        .unwrap();
    let s = l
        .view
        .wait("the deletion shown", |s| {
            !s.has_asset && s.info.contains("was deleted on laptop")
        })
        .await;
    assert_eq!(s.assets.len(), 1);
    assert!(
        s.info.contains("Edits made after that are kept"),
        "{}",
        s.info
    );
    l.send(UiEvent::ShowTrash(true));
    let s = l.view.wait("the trash", |s| s.trash.rows.len() == 1).await;
    assert!(
        s.trash.rows[0].conflict.contains("deletion wins"),
        "{:?}",
        s.trash.rows[0]
    );
}
