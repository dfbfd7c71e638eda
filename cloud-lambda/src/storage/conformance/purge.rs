//! Conformance cases for purging (`storage::purge`, reached through
//! `DocStore::purges`, and `BlobStore::delete`): every backend that can
//! purge keeps the same rules. A backend whose `purges()` is `None` skips
//! them. Queries that span users (due documents, stale facts, the blob
//! queue) are filtered to the case's own user, so a shared store passes.

use core_sync::DocId;
use core_sync::blob::sha256_hex;

use super::{Backend, new_user};
use crate::storage::StorageError;
use crate::storage::purge::{PurgeStore, QueuedBlob};

fn sha(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

async fn due(b: &Backend, user: &str, since: i64) -> Vec<DocId> {
    let p = b.docs.purges().unwrap();
    p.due_for_purge(since, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.user == user)
        .map(|e| e.doc_id)
        .collect()
}

/// Every stale document, through every page (small pages, so paging is
/// exercised).
async fn all_stale(p: &dyn PurgeStore) -> Vec<(String, DocId)> {
    let mut all = Vec::new();
    let mut start: Option<String> = None;
    for _ in 0..10_000 {
        let page = p.stale_purge_facts(start.as_deref(), 2).await.unwrap();
        all.extend(page.docs);
        match page.next {
            Some(next) => start = Some(next),
            None => return all,
        }
    }
    panic!("stale_purge_facts never ended");
}

pub(super) async fn purge_facts_keep_the_newest_and_say_what_is_due(b: Backend) {
    let Some(p) = b.docs.purges() else { return };
    let u = new_user();
    let d = DocId::random();
    let u1 = b.docs.append(&u, &d, 0, b"one", &[]).await.unwrap();
    let stale =
        |all: Vec<(String, DocId)>| all.into_iter().any(|(user, doc)| user == u && doc == d);
    assert!(stale(all_stale(p).await), "no facts yet");
    p.put_purge_facts(&u, &d, u1, &[sha(1)], Some(1_000))
        .await
        .unwrap();
    assert!(!stale(all_stale(p).await));
    assert_eq!(due(&b, &u, 1_000).await, vec![d.clone()]);
    assert!(due(&b, &u, 999).await.is_empty(), "not due before its time");
    // An older derivation changes nothing.
    p.put_purge_facts(&u, &d, u1 - 1, &[], None).await.unwrap();
    assert_eq!(due(&b, &u, 1_000).await, vec![d.clone()]);
    // Restored at a later append: no longer due.
    let u2 = b.docs.append(&u, &d, u1, b"two", &[]).await.unwrap();
    assert!(stale(all_stale(p).await), "behind its log");
    p.put_purge_facts(&u, &d, u2, &[sha(1)], None)
        .await
        .unwrap();
    assert!(due(&b, &u, i64::MAX).await.is_empty());
    // Another user's facts for this document change nothing.
    let other = new_user();
    p.put_purge_facts(&other, &d, u2 + 5, &[], Some(1))
        .await
        .unwrap();
    assert!(due(&b, &other, i64::MAX).await.is_empty());
    assert!(due(&b, &u, i64::MAX).await.is_empty());
}

pub(super) async fn a_purge_is_conditional_and_whole(b: Backend) {
    let Some(p) = b.docs.purges() else { return };
    let u = new_user();
    let d = DocId::random();
    let u1 = b.docs.append(&u, &d, 0, b"one", &[]).await.unwrap();
    let u2 = b.docs.append(&u, &d, u1, b"two", &[]).await.unwrap();
    b.docs.compact(&u, &d, u1, b"snap").await.unwrap();
    let u3 = b.docs.append(&u, &d, u2, b"three", &[]).await.unwrap();
    p.put_purge_facts(&u, &d, u3, &[sha(1)], Some(5))
        .await
        .unwrap();
    // Moved since: refused, nothing changes.
    assert_eq!(p.purge_doc(&u, &d, u2).await, Err(StorageError::Conflict));
    assert_eq!(b.docs.read_all(&u, &d).await.unwrap().len(), 3);
    // Another user cannot purge it.
    assert_eq!(
        p.purge_doc(&new_user(), &d, u3).await,
        Err(StorageError::NotFound)
    );
    assert!(!p.is_purged(&u, &d).await.unwrap());
    let head_before = b.docs.user_head(&u).await.unwrap();
    p.purge_doc(&u, &d, u3).await.unwrap();
    assert!(p.is_purged(&u, &d).await.unwrap());
    assert_eq!(b.docs.head(&u, &d).await.unwrap(), None);
    assert_eq!(b.docs.read_all(&u, &d).await, Err(StorageError::NotFound));
    assert!(due(&b, &u, i64::MAX).await.is_empty(), "its facts are gone");
    // Devices learn of it: the feed row moved past every earlier position.
    assert!(b.docs.user_head(&u).await.unwrap() > head_before);
    let feed = b.docs.feed_since(&u, head_before, 10).await.unwrap();
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0].doc_id, d);
    // Nothing can be appended to it, nor purged twice.
    for expected in [0, u3, feed[0].useq] {
        assert_eq!(
            b.docs.append(&u, &d, expected, b"again", &[]).await,
            Err(StorageError::NotFound),
            "append expecting {expected}"
        );
    }
    assert_eq!(
        p.purge_doc(&u, &d, feed[0].useq).await,
        Err(StorageError::NotFound)
    );
    assert!(
        !p.is_purged(&new_user(), &d).await.unwrap(),
        "scoped by owner"
    );
}

pub(super) async fn only_blobs_no_document_names_are_queued(b: Backend) {
    let Some(p) = b.docs.purges() else { return };
    let (u, other) = (new_user(), new_user());
    let (a, keep, theirs) = (DocId::random(), DocId::random(), DocId::random());
    let ua = b.docs.append(&u, &a, 0, b"a", &[]).await.unwrap();
    let uk = b.docs.append(&u, &keep, 0, b"k", &[]).await.unwrap();
    let ut = b.docs.append(&other, &theirs, 0, b"t", &[]).await.unwrap();
    p.put_purge_facts(&u, &a, ua, &[sha(1), sha(2)], Some(1))
        .await
        .unwrap();
    p.put_purge_facts(&u, &keep, uk, &[sha(2)], None)
        .await
        .unwrap();
    // Another user naming a blob does not keep this user's copy.
    p.put_purge_facts(&other, &theirs, ut, &[sha(1)], None)
        .await
        .unwrap();
    let mut queued = p.purge_doc(&u, &a, ua).await.unwrap();
    queued.sort();
    assert_eq!(queued, vec![sha(1)]);
    let mine: Vec<QueuedBlob> = p
        .queued_blobs(100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|q| q.user == u)
        .collect();
    assert_eq!(
        mine,
        vec![QueuedBlob {
            user: u.clone(),
            sha256: sha(1)
        }]
    );
    assert!(p.blob_unreferenced(&u, &sha(1)).await.unwrap());
    assert!(
        !p.blob_unreferenced(&u, &sha(2)).await.unwrap(),
        "keep names it"
    );
    assert!(!p.blob_unreferenced(&other, &sha(1)).await.unwrap());
    p.unqueue_blob(&u, &sha(1)).await.unwrap();
    assert!(
        p.queued_blobs(100_000)
            .await
            .unwrap()
            .iter()
            .all(|q| q.user != u)
    );
}

pub(super) async fn blobs_can_be_deleted(b: Backend) {
    if b.docs.purges().is_none() {
        return;
    }
    let u = new_user();
    let bytes = b"\x89PNG\r\n\x1a\nto be deleted".to_vec();
    let s = sha256_hex(&bytes);
    b.blobs.put(&u, &s, &bytes).await.unwrap();
    b.blobs.put(&new_user(), &s, &bytes).await.unwrap();
    assert_eq!(b.blobs.delete(&u, &s).await.unwrap(), bytes.len() as u64);
    assert!(!b.blobs.exists(&u, &s).await.unwrap());
    assert_eq!(
        b.blobs.delete(&u, &s).await.unwrap(),
        0,
        "twice is harmless"
    );
}

pub(super) async fn a_purge_needs_facts_at_the_documents_position(b: Backend) {
    let Some(p) = b.docs.purges() else { return };
    let u = new_user();
    let d = DocId::random();
    let u1 = b.docs.append(&u, &d, 0, b"one", &[]).await.unwrap();
    p.put_purge_facts(&u, &d, u1, &[sha(3)], Some(10))
        .await
        .unwrap();
    // Restored by an append whose facts are still on their way: the old
    // facts decide nothing.
    let u2 = b.docs.append(&u, &d, u1, b"restore", &[]).await.unwrap();
    assert_eq!(p.purge_doc(&u, &d, u2).await, Err(StorageError::Conflict));
    p.put_purge_facts(&u, &d, u2, &[sha(3)], None)
        .await
        .unwrap();
    assert_eq!(
        p.purge_doc(&u, &d, u2).await,
        Err(StorageError::Conflict),
        "not in the trash"
    );
    assert_eq!(b.docs.read_all(&u, &d).await.unwrap().len(), 2);
    // Deleted again, with its facts: now it goes.
    let u3 = b.docs.append(&u, &d, u2, b"delete", &[]).await.unwrap();
    p.put_purge_facts(&u, &d, u3, &[sha(3)], Some(20))
        .await
        .unwrap();
    assert_eq!(p.purge_doc(&u, &d, u3).await.unwrap(), vec![sha(3)]);
    // A late put of older facts changes nothing: the purge stays whole.
    p.put_purge_facts(&u, &d, u2, &[sha(3), sha(4)], Some(5))
        .await
        .unwrap();
    assert!(due(&b, &u, i64::MAX).await.is_empty());
    assert!(p.blob_unreferenced(&u, &sha(4)).await.unwrap());
    assert!(all_stale(p).await.iter().all(|(_, doc)| doc != &d));
    assert_eq!(p.finish_purges().await.unwrap(), 0, "nothing half done");
}

pub(super) async fn a_long_log_and_many_blobs_are_purged_whole(b: Backend) {
    let Some(p) = b.docs.purges() else { return };
    let u = new_user();
    let (d, keep) = (DocId::random(), DocId::random());
    // More log entries and blobs than one DynamoDB transaction holds.
    let mut last = 0;
    for i in 0..130u32 {
        last = b
            .docs
            .append(&u, &d, last, format!("entry {i}").as_bytes(), &[])
            .await
            .unwrap();
        if i == 60 {
            b.docs.compact(&u, &d, last, b"snapshot").await.unwrap();
        }
    }
    let blobs: Vec<String> = (0..120u8).map(sha).collect();
    p.put_purge_facts(&u, &d, last, &blobs, Some(1))
        .await
        .unwrap();
    // Another document names the first ten: they stay.
    let k = b.docs.append(&u, &keep, 0, b"keep", &[]).await.unwrap();
    p.put_purge_facts(&u, &keep, k, &blobs[..10], None)
        .await
        .unwrap();
    let last = b.docs.head(&u, &d).await.unwrap().unwrap().last_useq;
    let mut queued = p.purge_doc(&u, &d, last).await.unwrap();
    queued.sort();
    assert_eq!(queued, blobs[10..].to_vec());
    assert!(p.is_purged(&u, &d).await.unwrap());
    assert_eq!(b.docs.read_all(&u, &d).await, Err(StorageError::NotFound));
    for sha in &blobs[..10] {
        assert!(!p.blob_unreferenced(&u, sha).await.unwrap());
    }
    for sha in &blobs[10..] {
        assert!(p.blob_unreferenced(&u, sha).await.unwrap());
    }
    let mine = p
        .queued_blobs(100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|q| q.user == u)
        .count();
    assert_eq!(mine, 110);
    assert_eq!(p.finish_purges().await.unwrap(), 0);
    assert_eq!(b.docs.read_all(&u, &keep).await.unwrap().len(), 1);
}
