//! Rename, delete and restore in the document model, across devices: what
//! syncs, what wins, and what the trash says.

use core_sync::model::*;

/// Two devices holding the same asset, merged both ways (a full sync).
fn sync(a: &mut AssetDoc, b: &mut AssetDoc) {
    a.merge(b).unwrap();
    b.merge(a).unwrap();
}

#[test]
fn a_delete_is_a_change_with_time_and_device_that_syncs() {
    let mut a = AssetDoc::create("Shoe", 1_000);
    let mut b = a.fork();
    a.delete("laptop", 2_000).unwrap();
    let d = a.summary().unwrap().deleted.expect("deleted on a");
    assert_eq!(
        (d.at, d.by.as_str(), d.edited_after),
        (2_000, "laptop", false)
    );
    assert!(b.summary().unwrap().deleted.is_none());
    sync(&mut a, &mut b);
    let d = b.summary().unwrap().deleted.expect("the delete reached b");
    assert_eq!((d.at, d.by.as_str()), (2_000, "laptop"));
    assert!(!d.edited_after, "b saw the delete before editing anything");
    assert_eq!(d.retained_since(), 2_000);
}

#[test]
fn restore_undoes_a_delete_and_both_refuse_the_wrong_state() {
    let mut doc = AssetDoc::create("Shoe", 1_000);
    let heads = doc.heads();
    let err = doc.restore(1_500).unwrap_err();
    assert!(err.to_string().contains("not in the trash"), "{err}");
    assert_eq!(doc.heads(), heads, "a refused restore changes nothing");
    doc.delete("laptop", 2_000).unwrap();
    let heads = doc.heads();
    let err = doc.delete("laptop", 2_100).unwrap_err();
    assert!(err.to_string().contains("already in the trash"), "{err}");
    assert_eq!(doc.heads(), heads);
    doc.restore(3_000).unwrap();
    let s = doc.summary().unwrap();
    assert!(s.deleted.is_none());
    assert_eq!(s.updated_at, 3_000);
    assert_eq!(s.title, "Shoe");
    // Reloaded, it reads the same.
    let mut again = AssetDoc::load(&doc.save()).unwrap();
    assert!(again.summary().unwrap().deleted.is_none());
}

#[test]
fn an_offline_edit_does_not_resurrect_a_deleted_asset_and_is_kept() {
    let mut a = AssetDoc::create("Shoe", 1_000);
    let mut b = a.fork();
    a.delete("laptop", 2_000).unwrap();
    // b is offline, edits at 5_000 (after the deletion) and renames.
    b.append_message(NewMessage::user("a better angle"), 5_000)
        .unwrap();
    b.set_title("Shoe (final)", 5_001).unwrap();
    sync(&mut a, &mut b);
    for doc in [&mut a, &mut b] {
        let s = doc.summary().unwrap();
        let d = s.deleted.expect("the deletion wins on both devices");
        assert!(d.edited_after, "the trash says it was edited after");
        assert_eq!(d.retained_since(), 5_001, "retention runs from the edit");
        assert_eq!(s.title, "Shoe (final)", "the edit is kept");
        assert_eq!(s.message_count, 1);
    }
    // Restoring brings it back with the edit.
    b.restore(6_000).unwrap();
    sync(&mut a, &mut b);
    let s = a.summary().unwrap();
    assert!(s.deleted.is_none());
    assert_eq!(s.message_count, 1);
}

#[test]
fn an_edit_made_before_the_delete_in_wall_time_but_unseen_still_counts() {
    let mut a = AssetDoc::create("Shoe", 1_000);
    let mut b = a.fork();
    b.append_message(NewMessage::user("note"), 1_500).unwrap();
    a.delete("laptop", 2_000).unwrap();
    sync(&mut a, &mut b);
    let d = a.summary().unwrap().deleted.unwrap();
    assert!(
        d.edited_after,
        "a concurrent edit is one the deleter never saw"
    );
    assert_eq!(d.retained_since(), 2_000);
}

#[test]
fn concurrent_renames_resolve_the_same_everywhere() {
    let mut a = AssetDoc::create("Shoe", 1_000);
    let mut b = a.fork();
    a.set_title("Red shoe", 2_000).unwrap();
    b.set_title("Blue shoe", 2_000).unwrap();
    let mut c = a.fork();
    sync(&mut a, &mut b);
    // A third device merging in the other order agrees.
    c.merge(&mut b).unwrap();
    let titles: Vec<String> = [&mut a, &mut b, &mut c]
        .into_iter()
        .map(|d| d.summary().unwrap().title)
        .collect();
    assert_eq!(titles[0], titles[1]);
    assert_eq!(titles[1], titles[2]);
    assert!(["Red shoe", "Blue shoe"].contains(&titles[0].as_str()));
}

#[test]
fn a_restore_concurrent_with_a_second_delete_leaves_it_deleted() {
    let mut a = AssetDoc::create("Shoe", 1_000);
    a.delete("laptop", 2_000).unwrap();
    let mut b = a.fork();
    a.restore(3_000).unwrap();
    a.delete("laptop", 3_500).unwrap();
    b.restore(3_100).unwrap();
    sync(&mut a, &mut b);
    assert!(a.summary().unwrap().deleted.is_some());
    assert!(b.summary().unwrap().deleted.is_some());
    // Trash changes alone are not edits after the deletion.
    assert!(!a.summary().unwrap().deleted.unwrap().edited_after);
}

#[test]
fn concurrent_deletes_on_two_devices_are_one_deletion() {
    let mut a = AssetDoc::create("Shoe", 1_000);
    let mut b = a.fork();
    a.delete("laptop", 2_000).unwrap();
    b.delete("desktop", 2_100).unwrap();
    sync(&mut a, &mut b);
    let (da, db) = (a.summary().unwrap().deleted, b.summary().unwrap().deleted);
    assert_eq!(da, db);
    assert!(!da.unwrap().edited_after);
    // One restore takes it out of the trash everywhere.
    a.restore(3_000).unwrap();
    sync(&mut a, &mut b);
    assert!(b.summary().unwrap().deleted.is_none());
}

#[test]
fn a_tombstone_that_does_not_read_leaves_the_asset_live_and_is_named() {
    use automerge::transaction::Transactable;
    let doc = AssetDoc::create("Shoe", 1_000);
    let mut raw = AssetDoc::load_raw(&doc.automerge().clone().save()).unwrap();
    raw.put(automerge::ROOT, "deleted", "yes").unwrap();
    let mut doc = AssetDoc::load(&raw.save()).unwrap();
    assert!(doc.summary().unwrap().deleted.is_none());
    let reasons: Vec<String> = doc
        .unreadable()
        .unwrap()
        .iter()
        .map(|u| u.reason.clone())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("deleted is") && r.contains("expected a map")),
        "{reasons:?}"
    );
}

#[test]
fn a_delete_shows_in_what_a_view_is_told_changed() {
    let mut doc = AssetDoc::create("Shoe", 1_000);
    doc.watch_changes();
    doc.delete("laptop", 2_000).unwrap();
    assert!(doc.take_touched().deleted);
    doc.restore(3_000).unwrap();
    assert!(doc.take_touched().deleted);
}

// ------------------------------------------------------------ local store

mod store {
    use core_sync::backup;
    use core_sync::model::*;
    use core_sync::store::{Dropped, Store};

    /// Distinct bytes per `n` stored as a version of `asset`.
    async fn add_png(store: &Store, asset: &mut core_sync::LocalAsset, n: u8) -> String {
        let png = png(n);
        let len = png.len() as u64;
        let sha = store.put_blob(png, "image/png", 1).await.unwrap();
        asset
            .doc
            .add_version(
                NewVersion {
                    blob: BlobRef {
                        sha256: sha.clone(),
                        mime: "image/png".into(),
                        width: 1,
                        height: 1,
                        bytes: len,
                    },
                    thumbnail: None,
                    parent_version_id: None,
                    created_by_message_id: None,
                },
                2,
            )
            .unwrap();
        store.save(asset).await.unwrap();
        sha
    }

    /// Bytes standing in for an image (the store hashes, never decodes).
    fn png(n: u8) -> Vec<u8> {
        format!("image bytes {n}").into_bytes()
    }

    #[tokio::test]
    async fn the_list_leaves_the_trash_out_and_the_trash_view_shows_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Default::default()).await.unwrap();
        let keep = store.create("Keep", 1_000).await.unwrap();
        let mut gone = store.create("Gone", 1_001).await.unwrap();
        gone.doc.delete("laptop", 2_000).unwrap();
        store.save(&mut gone).await.unwrap();
        let listed: Vec<_> = store
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(listed, vec![keep.id.clone()]);
        let trash = store.list_trash().await.unwrap();
        assert_eq!(trash.len(), 1);
        assert_eq!(
            (
                &trash[0].id,
                trash[0].title.as_str(),
                trash[0].deleted_at,
                trash[0].deleted_by.as_str()
            ),
            (&gone.id, "Gone", 2_000, "laptop")
        );
        assert_eq!(
            store.ids().await.unwrap().len(),
            2,
            "ids() keeps the trash (backups)"
        );
        // Restore puts it back in the list.
        let mut again = store.load(&gone.id).await.unwrap();
        again.doc.restore(3_000).unwrap();
        store.save(&mut again).await.unwrap();
        assert_eq!(store.list().await.unwrap().len(), 2);
        assert!(store.list_trash().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn dropping_a_purged_asset_keeps_blobs_another_asset_uses() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Default::default()).await.unwrap();
        let mut a = store.create("A", 1).await.unwrap();
        let mut b = store.create("B", 1).await.unwrap();
        let shared = add_png(&store, &mut a, 1).await;
        let only_a = add_png(&store, &mut a, 2).await;
        assert_eq!(add_png(&store, &mut b, 1).await, shared);
        a.doc.delete("laptop", 5).unwrap();
        store.save(&mut a).await.unwrap();
        // Marked as synced so the drop is a plain drop.
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join("atelier.db")),
        )
        .await
        .unwrap();
        sqlx::query("UPDATE chunks SET pushed = 1")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(
            store.drop_purged(&a.id, 10).await.unwrap(),
            Dropped::Dropped
        );
        let freed = store.collect_blobs().await.unwrap();
        assert_eq!(freed.blobs, 1);
        assert!(freed.bytes > 0);
        assert!(store.blobs().contains(&shared), "B still uses it");
        assert!(!store.blobs().contains(&only_a));
        assert!(!store.contains(&a.id).await.unwrap());
        assert_eq!(store.drop_purged(&a.id, 11).await.unwrap(), Dropped::Absent);
        let v = backup::verify_store(&store, true).await.unwrap();
        assert!(v.mismatches.is_empty(), "{:?}", v.mismatches);
        // B still loads whole.
        assert_eq!(
            store
                .load(&b.id)
                .await
                .unwrap()
                .doc
                .versions()
                .unwrap()
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn offline_edits_to_an_asset_purged_elsewhere_are_kept_as_a_new_asset() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Default::default()).await.unwrap();
        let mut a = store.create("Shoe", 1).await.unwrap();
        a.doc
            .append_message(NewMessage::user("offline note"), 2)
            .unwrap();
        store.save(&mut a).await.unwrap();
        let Dropped::Recovered(new) = store.drop_purged(&a.id, 10).await.unwrap() else {
            panic!("unsynced edits must not be thrown away");
        };
        assert!(!store.contains(&a.id).await.unwrap());
        let mut copy = store.load(&new).await.unwrap();
        let texts: Vec<_> = copy
            .doc
            .messages()
            .unwrap()
            .into_iter()
            .filter_map(|m| m.text)
            .collect();
        assert_eq!(texts[0], "offline note");
        assert!(texts[1].starts_with("Recovered"), "{texts:?}");
        assert_eq!(copy.summary().unwrap().title, "Shoe");
        assert!(store.pending_sync().await.unwrap().contains(&new));
    }

    #[tokio::test]
    async fn an_export_says_which_assets_are_in_the_trash() {
        let dir = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Default::default()).await.unwrap();
        store.create("Live", 1).await.unwrap();
        let mut t = store.create("Trashed", 1).await.unwrap();
        t.doc.delete("laptop", 7).unwrap();
        store.save(&mut t).await.unwrap();
        let m = backup::export(&store, out.path(), true).await.unwrap();
        assert_eq!(m.docs.len(), 2, "the trash is backed up until purged");
        let trashed: Vec<_> = m.docs.iter().filter(|d| d.trashed.is_some()).collect();
        assert_eq!(trashed.len(), 1);
        assert_eq!(trashed[0].id, t.id);
        assert_eq!(trashed[0].trashed.as_ref().unwrap().by, "laptop");
        let json = std::fs::read_to_string(out.path().join(backup::MANIFEST)).unwrap();
        assert!(json.contains("\"trashed\""), "{json}");
    }

    #[tokio::test]
    async fn renames_are_trimmed_and_bad_titles_refused() {
        let mut doc = AssetDoc::create("Shoe", 1);
        for (title, bad) in [
            ("", "empty"),
            ("   ", "empty"),
            ("a\nb", "control"),
            (&"x".repeat(MAX_TITLE_CHARS + 1), "limit"),
        ] {
            let heads = doc.heads();
            let err = doc.rename(title, 2).unwrap_err().to_string();
            assert!(err.contains(bad), "{title:?}: {err}");
            assert_eq!(doc.heads(), heads, "a refused rename changes nothing");
        }
        assert!(doc.rename("  Red shoe ", 3).unwrap());
        assert_eq!(doc.summary().unwrap().title, "Red shoe");
        let heads = doc.heads();
        assert!(
            !doc.rename("Red shoe", 4).unwrap(),
            "the same title writes nothing"
        );
        assert_eq!(doc.heads(), heads);
    }
}

#[test]
fn a_request_stopped_by_the_trash_is_not_an_edit_after_the_deletion() {
    let mut doc = AssetDoc::create("Shoe", 1_000);
    let id = doc
        .append_message(
            NewMessage::tool_request("generate", "google", "gemini-3.1-flash-image", "a shoe"),
            1_500,
        )
        .unwrap();
    doc.delete("laptop", 2_000).unwrap();
    let reason = ErrorInfo {
        code: "asset_deleted".into(),
        message: "The asset went to the trash.".into(),
    };
    assert!(doc.stop_request_in_trash(&id, &reason, 9_000).unwrap());
    let m = doc.message(&id).unwrap();
    assert_eq!(m.status, Some(MessageStatus::Canceled));
    assert_eq!(m.error, Some(reason.clone()));
    let d = doc.deletion().unwrap().expect("still in the trash");
    assert!(!d.edited_after, "the server's stop is not an edit");
    assert_eq!(d.retained_since(), 2_000, "retention is not extended");
    // A finished request is left alone.
    let heads = doc.heads();
    assert!(!doc.stop_request_in_trash(&id, &reason, 9_500).unwrap());
    assert_eq!(doc.heads(), heads);
}
