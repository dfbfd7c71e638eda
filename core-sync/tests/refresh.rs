//! Following a document another writer changes: `Store::refresh` applies
//! only the chunks a loaded copy has not seen, and `AssetDoc::take_touched`
//! says which parts changed (for views that re-read only those).

use core_sync::ids::DocId;
use core_sync::model::{
    AssetDoc, BlobRef, MessageStatus, MessageUpdate, NewCostEvent, NewMessage, NewVersion,
};
use core_sync::store::{Store, StoreOptions};

const NOW: i64 = 1_795_608_000_000;

fn blob() -> BlobRef {
    BlobRef {
        sha256: "ab".repeat(32),
        mime: "image/png".into(),
        width: 4,
        height: 4,
        bytes: 10,
    }
}

#[tokio::test]
async fn refresh_applies_what_others_stored_and_says_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default())
        .await
        .unwrap();
    let mut doc = AssetDoc::create("t", NOW);
    for i in 0..20 {
        doc.append_message(NewMessage::user(format!("note {i}")), NOW)
            .unwrap();
    }
    let req = doc
        .append_message(
            NewMessage::tool_request("edit", "google", "g", "warmer"),
            NOW,
        )
        .unwrap();
    let id = store.insert(DocId::random(), doc).await.unwrap().id;

    let mut view = store.load(&id).await.unwrap();
    view.doc.watch_changes();
    assert!(!store.refresh(&mut view).await.unwrap(), "nothing new");
    assert!(view.doc.take_touched().is_empty());

    // Another writer (the sync client) finishes the request.
    let mut other = store.load(&id).await.unwrap();
    let v = other
        .doc
        .add_version(
            NewVersion {
                blob: blob(),
                thumbnail: None,
                parent_version_id: None,
                created_by_message_id: Some(req.clone()),
            },
            NOW,
        )
        .unwrap();
    other
        .doc
        .update_message(
            &req,
            MessageUpdate {
                status: Some(MessageStatus::Succeeded),
                add_output_version_ids: vec![v],
                ..Default::default()
            },
            NOW,
        )
        .unwrap();
    other
        .doc
        .record_cost(
            NewCostEvent {
                provider: "google".into(),
                model: "g".into(),
                units: 1.0,
                unit: "images".into(),
                cost_nano_usd: 39_000_000,
                message_id: Some(req.clone()),
            },
            NOW,
        )
        .unwrap();
    other
        .doc
        .append_message(NewMessage::user("after"), NOW)
        .unwrap();
    store.save(&mut other).await.unwrap();

    assert!(store.refresh(&mut view).await.unwrap());
    let t = view.doc.take_touched();
    assert_eq!(t.messages.iter().copied().collect::<Vec<_>>(), vec![20, 21]);
    assert!(t.versions && t.costs && !t.title && !t.reordered, "{t:?}");
    assert_eq!(
        view.doc.message(&req).unwrap().status,
        Some(MessageStatus::Succeeded)
    );
    assert!(
        !view.doc.has_unsaved_changes(),
        "what was applied came from the store"
    );

    // Its own edits are seen too, and saved without repeating the others'.
    view.doc.set_title("renamed", NOW).unwrap();
    let t = view.doc.take_touched();
    assert!(t.title && t.messages.is_empty());
    let (bytes, _) = view.doc.unsaved_changes();
    assert!(
        bytes.len() < 400,
        "only the title change: {} bytes",
        bytes.len()
    );
    store.save(&mut view).await.unwrap();
    let again = store.load(&id).await.unwrap();
    assert_eq!(again.doc.messages().unwrap().len(), 22);
}
