//! Rename, delete, restore and purge across devices, end to end: devices
//! syncing over HTTP with the embedded server, the purge driven by an
//! injected clock.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cloud_lambda::purge::{self, PurgeSchedule};
use cloud_lambda::storage::embedded::EmbeddedStore;
use core_sync::backup;
use core_sync::model::NewMessage;
use core_sync::{DocId, now_millis};
use support::*;

const DAY_MS: i64 = 86_400_000;
const RETENTION: Duration = Duration::from_secs(30 * 86_400);

fn no_jobs() -> Options {
    Options {
        jobs: false,
        ..Options::default()
    }
}

async fn sync(d: &mut Device) {
    d.sync.sync_until_idle().await.unwrap();
}

async fn listed(d: &Device) -> Vec<DocId> {
    d.store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect()
}

async fn edit(d: &mut Device, id: &DocId, f: impl FnOnce(&mut core_sync::AssetDoc)) {
    let mut a = d.store.load(id).await.unwrap();
    f(&mut a.doc);
    d.store.save(&mut a).await.unwrap();
    d.sync.local_change(id.clone());
}

/// A server and two devices holding one asset (with an image), synced.
async fn two_devices_with_an_asset() -> (World, Device, Device, DocId) {
    let w = world_with(no_jobs()).await;
    let mut a = device(&w).await;
    let mut b = device(&w).await;
    let (id, _) = asset_with_image(&mut a).await;
    sync(&mut a).await;
    sync(&mut b).await;
    (w, a, b, id)
}

/// A second handle on the world's embedded database, for checks.
async fn embedded(w: &World) -> EmbeddedStore {
    EmbeddedStore::open(w.dir.path()).await.unwrap()
}

#[tokio::test]
async fn rename_and_delete_across_two_devices_with_one_offline() {
    let (_w, mut a, mut b, id) = two_devices_with_an_asset().await;
    assert_eq!(listed(&b).await, vec![id.clone()]);

    // A renames and deletes; B is offline and edits and renames.
    edit(&mut a, &id, |d| {
        d.rename("Studio shot", now_millis()).unwrap();
    })
    .await;
    sync(&mut a).await;
    edit(&mut a, &id, |d| d.delete("laptop", now_millis()).unwrap()).await;
    sync(&mut a).await;
    assert!(listed(&a).await.is_empty(), "gone from A's list at once");
    edit(&mut b, &id, |d| {
        d.append_message(NewMessage::user("offline note"), now_millis())
            .unwrap();
        d.rename("Offline title", now_millis()).unwrap();
    })
    .await;

    // B comes online: the deletion wins there too, and B's edit is kept.
    sync(&mut b).await;
    sync(&mut a).await;
    for d in [&a, &b] {
        assert!(listed(d).await.is_empty());
        let trash = d.store.list_trash().await.unwrap();
        assert_eq!(trash.len(), 1);
        assert_eq!(trash[0].deleted_by, "laptop");
        assert!(
            trash[0].edited_after,
            "the trash shows the edit after deletion"
        );
    }
    let titles = [
        a.store.list_trash().await.unwrap()[0].title.clone(),
        b.store.list_trash().await.unwrap()[0].title.clone(),
    ];
    assert_eq!(titles[0], titles[1], "concurrent renames resolve the same");

    // Restore on A: back on both lists, with B's note.
    edit(&mut a, &id, |d| d.restore(now_millis()).unwrap()).await;
    sync(&mut a).await;
    sync(&mut b).await;
    assert_eq!(listed(&b).await, vec![id.clone()]);
    let texts: Vec<_> = b
        .store
        .load(&id)
        .await
        .unwrap()
        .doc
        .messages()
        .unwrap()
        .into_iter()
        .filter_map(|m| m.text)
        .collect();
    assert_eq!(texts, vec!["offline note".to_string()]);
}

#[tokio::test]
async fn the_purge_waits_for_the_retention_period_and_keeps_shared_blobs() {
    let w = world_with(no_jobs()).await;
    let mut a = device(&w).await;
    let mut b = device(&w).await;
    // Two assets share one image; the doomed one also has its own.
    let shared = noisy_png(40, 30);
    let (doomed, _) = asset_with(&mut a, shared.clone(), 40, 30, true).await;
    let (kept, _) = asset_with(&mut a, shared.clone(), 40, 30, true).await;
    let own = png(33, 22);
    let own_sha = core_sync::blob::sha256_hex(&own);
    let shared_sha = core_sync::blob::sha256_hex(&shared);
    {
        let mut asset = a.store.load(&doomed).await.unwrap();
        let sha = a.store.put_blob(own.clone(), "image/png", 1).await.unwrap();
        asset
            .doc
            .add_version(
                core_sync::model::NewVersion {
                    blob: core_sync::model::BlobRef {
                        sha256: sha,
                        mime: "image/png".into(),
                        width: 33,
                        height: 22,
                        bytes: own.len() as u64,
                    },
                    thumbnail: None,
                    parent_version_id: None,
                    created_by_message_id: None,
                },
                now_millis(),
            )
            .unwrap();
        a.store.save(&mut asset).await.unwrap();
        a.sync.local_change(doomed.clone());
    }
    sync(&mut a).await;
    sync(&mut b).await;
    assert!(b.store.blobs().contains(&own_sha));
    let deleted_at = now_millis();
    edit(&mut a, &doomed, |d| d.delete("laptop", deleted_at).unwrap()).await;
    sync(&mut a).await;
    sync(&mut b).await;

    let docs = w.state.store.as_ref();
    let blobs = w.state.blobs.as_ref();
    // A day before the period ends: nothing goes.
    let early = purge::run(docs, blobs, deleted_at + 29 * DAY_MS, RETENTION)
        .await
        .unwrap();
    assert_eq!((early.assets, early.blobs), (0, 0));
    assert!(docs.head(&user(), &doomed).await.unwrap().is_some());

    // Past it, by a clock the test moves: the periodic purge takes it.
    let clock = Arc::new(TestClock(AtomicU64::new(
        ((deleted_at + 30 * DAY_MS + 1_000) / 1000) as u64,
    )));
    let task = purge::spawn_periodic(
        w.state.store.clone(),
        w.state.blobs.clone(),
        PurgeSchedule {
            retention: RETENTION,
            interval: Duration::from_secs(3600),
            clock: clock.clone(),
        },
    );
    until("the purge", Duration::from_secs(10), || async {
        docs.head(&user(), &doomed).await.unwrap().is_none()
    })
    .await;
    task.abort();
    let listing = docs
        .projections()
        .get_listing(&user(), &doomed)
        .await
        .unwrap();
    assert!(listing.is_none(), "the listing row is purged");
    assert_eq!(
        docs.read_all(&user(), &doomed).await.unwrap_err(),
        cloud_lambda::storage::StorageError::NotFound
    );
    assert!(
        embedded(&w)
            .await
            .purge_leftovers()
            .await
            .unwrap()
            .is_empty()
    );
    // Blob deletions happen right after the document's purge.
    until(
        "the purged asset's own image to go",
        Duration::from_secs(10),
        || async { !blobs.exists(&user(), &own_sha).await.unwrap() },
    )
    .await;
    assert!(
        blobs.exists(&user(), &shared_sha).await.unwrap(),
        "a blob another asset uses is never deleted"
    );

    // Devices drop their copies; verify stays clean; the live asset is whole.
    for d in [&mut a, &mut b] {
        sync(d).await;
        assert!(!d.store.contains(&doomed).await.unwrap());
        assert!(d.store.list_trash().await.unwrap().is_empty());
        assert!(!d.store.blobs().contains(&own_sha));
        assert!(d.store.blobs().contains(&shared_sha));
        let v = backup::verify_store(&d.store, true).await.unwrap();
        assert!(v.mismatches.is_empty(), "{:?}", v.mismatches);
        assert_eq!(listed(d).await, vec![kept.clone()]);
        assert_eq!(
            d.store
                .load(&kept)
                .await
                .unwrap()
                .doc
                .versions()
                .unwrap()
                .len(),
            1
        );
    }
    // A second run finds nothing to do.
    let again = purge::run(docs, blobs, deleted_at + 31 * DAY_MS, RETENTION)
        .await
        .unwrap();
    assert_eq!((again.assets, again.blobs), (0, 0));
}

#[tokio::test]
async fn an_edit_after_the_deletion_restarts_the_retention_period() {
    let (w, mut a, mut b, id) = two_devices_with_an_asset().await;
    let t0 = now_millis();
    edit(&mut a, &id, |d| d.delete("laptop", t0).unwrap()).await;
    sync(&mut a).await;
    // B, offline, edits ten days later by its clock.
    edit(&mut b, &id, |d| {
        d.append_message(NewMessage::user("late edit"), t0 + 10 * DAY_MS)
            .unwrap();
    })
    .await;
    sync(&mut b).await;
    let docs = w.state.store.as_ref();
    let blobs = w.state.blobs.as_ref();
    let r = purge::run(docs, blobs, t0 + 31 * DAY_MS, RETENTION)
        .await
        .unwrap();
    assert_eq!(r.assets, 0, "the edit gets the whole period");
    let r = purge::run(docs, blobs, t0 + 41 * DAY_MS, RETENTION)
        .await
        .unwrap();
    assert_eq!(r.assets, 1);
}

#[tokio::test]
async fn offline_edits_to_an_asset_purged_meanwhile_come_back_as_a_new_asset() {
    let (w, mut a, mut b, id) = two_devices_with_an_asset().await;
    let t0 = now_millis();
    edit(&mut a, &id, |d| d.delete("laptop", t0).unwrap()).await;
    sync(&mut a).await;
    let r = purge::run(
        w.state.store.as_ref(),
        w.state.blobs.as_ref(),
        t0 + 31 * DAY_MS,
        RETENTION,
    )
    .await
    .unwrap();
    assert_eq!(r.assets, 1);
    // B was offline the whole time and wrote a note.
    edit(&mut b, &id, |d| {
        d.append_message(NewMessage::user("kept"), now_millis())
            .unwrap();
    })
    .await;
    sync(&mut b).await;
    assert!(!b.store.contains(&id).await.unwrap());
    let now_listed = listed(&b).await;
    assert_eq!(now_listed.len(), 1, "the edits live on in a new asset");
    let copy = now_listed[0].clone();
    assert_ne!(copy, id);
    // ...which syncs to A like any new asset.
    sync(&mut b).await;
    sync(&mut a).await;
    assert_eq!(listed(&a).await, vec![copy]);
    let v = backup::verify_store(&b.store, true).await.unwrap();
    assert!(v.mismatches.is_empty(), "{:?}", v.mismatches);
}

/// Seconds the test sets.
#[derive(Debug)]
struct TestClock(AtomicU64);

impl cloud_lambda::auth::Clock for TestClock {
    fn now_secs(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
