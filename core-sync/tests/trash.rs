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
