//! The black-box conformance suite for storage backends, written only
//! against the [`DocStore`], [`BlobStore`] and [`JobStore`] traits so that
//! every backend (embedded, AWS) runs the same checks. The document log's
//! cases are here; the others one file per concern under `conformance/`:
//! `compaction`, `volume` (long logs, large entries), `blobs`,
//! `operations` (jobs and webhook deliveries), `leases`, `epochs`,
//! `projection` (listings and costs) and `purge`.
//!
//! A backend's test calls [`run_all`] with a function that opens a fresh
//! [`Backend`]; each case gets its own. Cases use fresh random user ids, so
//! a backend may also hand out one shared store (a real DynamoDB table).
//! [`run_all`] runs every case, even after a failure, and then panics naming
//! the cases that failed. [`CASES`] lists them for a backend that prefers
//! one test per case.
//!
//! What the trait cannot show (which rows a compaction deleted, a crash
//! between its two steps) belongs in the backend's own tests.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use automerge::ChangeHash;
use core_sync::DocId;
use core_sync::blob::sha256_hex;

use super::jobs::JobStore;

use super::{BlobStore, Chunk, DocHead, DocStore, FeedEntry, MAX_USER_LEN, StorageError};

mod blobs;
mod compaction;
mod epochs;
mod leases;
mod operations;
mod projection;
mod purge;
mod volume;

/// A backend under test.
pub struct Backend {
    pub docs: Arc<dyn DocStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub ops: Arc<dyn JobStore>,
    /// Whatever must live as long as the stores (a temporary directory).
    pub guard: Box<dyn Any + Send + Sync>,
}

/// One conformance case.
pub type Case = fn(Backend) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("append_then_read_in_order", |b| {
        Box::pin(append_then_read_in_order(b))
    }),
    ("malformed_input_is_invalid", |b| {
        Box::pin(malformed_input_is_invalid(b))
    }),
    ("stale_append_conflicts_and_writes_nothing", |b| {
        Box::pin(stale_append_conflicts_and_writes_nothing(b))
    }),
    ("other_users_documents_do_not_exist", |b| {
        Box::pin(other_users_documents_do_not_exist(b))
    }),
    ("useq_increases_across_a_users_documents", |b| {
        Box::pin(useq_increases_across_a_users_documents(b))
    }),
    ("feed_holds_each_document_once_at_its_latest_useq", |b| {
        Box::pin(feed_holds_each_document_once_at_its_latest_useq(b))
    }),
    ("compaction_folds_exactly_the_entries_up_to_upto", |b| {
        Box::pin(compaction::compaction_folds_exactly_the_entries_up_to_upto(
            b,
        ))
    }),
    ("reads_during_compaction_never_miss_an_entry", |b| {
        Box::pin(compaction::reads_during_compaction_never_miss_an_entry(b))
    }),
    ("concurrent_appends_get_distinct_useqs_or_conflict", |b| {
        Box::pin(concurrent_appends_get_distinct_useqs_or_conflict(b))
    }),
    ("blobs_are_verified_and_per_user", |b| {
        Box::pin(blobs::blobs_are_verified_and_per_user(b))
    }),
    ("heads_of_the_latest_append_are_kept", |b| {
        Box::pin(heads_of_the_latest_append_are_kept(b))
    }),
    ("operations_are_created_once_and_keep_their_input", |b| {
        Box::pin(operations::operations_are_created_once_and_keep_their_input(b))
    }),
    ("listings_page_newest_first", |b| {
        Box::pin(projection::listings_page_newest_first(b))
    }),
    ("an_older_listing_never_replaces_a_newer_one", |b| {
        Box::pin(projection::an_older_listing_never_replaces_a_newer_one(b))
    }),
    ("projections_are_per_user", |b| {
        Box::pin(projection::projections_are_per_user(b))
    }),
    ("cost_groups_add_up_exactly", |b| {
        Box::pin(projection::cost_groups_add_up_exactly(b))
    }),
    ("cost_event_pages_are_ordered_and_complete", |b| {
        Box::pin(projection::cost_event_pages_are_ordered_and_complete(b))
    }),
    ("jobs_started_in_a_window_are_counted", |b| {
        Box::pin(projection::jobs_started_in_a_window_are_counted(b))
    }),
    ("an_epoch_holds_until_renewed_once", |b| {
        Box::pin(epochs::an_epoch_holds_until_renewed_once(b))
    }),
    ("a_lease_is_held_by_one_owner_until_it_expires", |b| {
        Box::pin(leases::a_lease_is_held_by_one_owner_until_it_expires(b))
    }),
    ("finished_operations_have_no_lease_to_take", |b| {
        Box::pin(leases::finished_operations_have_no_lease_to_take(b))
    }),
    ("racing_owners_get_one_lease", |b| {
        Box::pin(leases::racing_owners_get_one_lease(b))
    }),
    ("webhook_deliveries_count_once", |b| {
        Box::pin(operations::webhook_deliveries_count_once(b))
    }),
    ("long_feeds_and_logs_come_whole_and_in_order", |b| {
        Box::pin(volume::long_feeds_and_logs_come_whole_and_in_order(b))
    }),
    (
        "entries_and_snapshots_of_megabytes_read_back_exactly",
        |b| Box::pin(volume::entries_and_snapshots_of_megabytes_read_back_exactly(b)),
    ),
    ("purge_facts_keep_the_newest_and_say_what_is_due", |b| {
        Box::pin(purge::purge_facts_keep_the_newest_and_say_what_is_due(b))
    }),
    ("a_purge_is_conditional_and_whole", |b| {
        Box::pin(purge::a_purge_is_conditional_and_whole(b))
    }),
    ("only_blobs_no_document_names_are_queued", |b| {
        Box::pin(purge::only_blobs_no_document_names_are_queued(b))
    }),
    ("a_purge_needs_facts_at_the_documents_position", |b| {
        Box::pin(purge::a_purge_needs_facts_at_the_documents_position(b))
    }),
    ("a_long_log_and_many_blobs_are_purged_whole", |b| {
        Box::pin(purge::a_long_log_and_many_blobs_are_purged_whole(b))
    }),
    ("blobs_can_be_deleted", |b| {
        Box::pin(purge::blobs_can_be_deleted(b))
    }),
];

/// Runs every case, each on a fresh backend from `make`, and panics at the
/// end naming those that failed. Needs a tokio runtime (multi-threaded for
/// real concurrency in the concurrent cases).
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Backend>,
{
    let mut failed = Vec::new();
    for (name, case) in CASES {
        let backend = make().await;
        eprintln!("storage conformance: {name}");
        if let Err(e) = tokio::spawn(case(backend)).await {
            eprintln!("storage conformance: {name} FAILED: {e}");
            failed.push(*name);
        }
    }
    assert!(failed.is_empty(), "storage conformance failed: {failed:?}");
}

/// A fresh user id, so cases never see each other's data.
fn new_user() -> String {
    format!("conformance-{}", uuid::Uuid::new_v4())
}

/// A log entry as reads return it.
pub fn entry(useq: u64, bytes: &[u8]) -> Chunk {
    Chunk {
        useq,
        bytes: bytes.to_vec(),
        is_snapshot: false,
    }
}

/// A snapshot as reads return it.
pub fn snapshot(upto: u64, bytes: &[u8]) -> Chunk {
    Chunk {
        useq: upto,
        bytes: bytes.to_vec(),
        is_snapshot: true,
    }
}

fn feed(rows: &[(&DocId, u64)]) -> Vec<FeedEntry> {
    rows.iter()
        .map(|(doc_id, useq)| FeedEntry {
            doc_id: (*doc_id).clone(),
            useq: *useq,
        })
        .collect()
}

fn head(owner: &str, last_useq: u64, snapshot_upto: u64) -> Option<DocHead> {
    Some(DocHead {
        owner: owner.to_owned(),
        last_useq,
        snapshot_upto,
        heads: vec![],
    })
}

/// `len` bytes that do not compress, from `seed`.
pub fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// Appends and returns the new useq, panicking with context on error.
async fn append(docs: &dyn DocStore, user: &str, doc: &DocId, expected: u64, bytes: &[u8]) -> u64 {
    match docs.append(user, doc, expected, bytes, &[]).await {
        Ok(useq) => useq,
        Err(e) => panic!("append to {doc} expecting {expected} failed: {e}"),
    }
}

async fn heads_of_the_latest_append_are_kept(b: Backend) {
    let docs = &*b.docs;
    let (a, d) = (new_user(), DocId::random());
    let h = |n: u8| ChangeHash([n; 32]);
    docs.append(&a, &d, 0, b"one", &[h(1)]).await.unwrap();
    assert_eq!(docs.head(&a, &d).await.unwrap().unwrap().heads, vec![h(1)]);
    docs.append(&a, &d, 1, b"two", &[h(2), h(3)]).await.unwrap();
    assert_eq!(
        docs.head(&a, &d).await.unwrap().unwrap().heads,
        vec![h(2), h(3)]
    );
    // A refused append leaves them alone.
    assert_eq!(
        docs.append(&a, &d, 1, b"stale", &[h(9)]).await,
        Err(StorageError::Conflict)
    );
    assert_eq!(
        docs.head(&a, &d).await.unwrap().unwrap().heads,
        vec![h(2), h(3)]
    );
    docs.compact(&a, &d, 2, b"snapshot").await.unwrap();
    assert_eq!(
        docs.head(&a, &d).await.unwrap().unwrap().heads,
        vec![h(2), h(3)]
    );
}

async fn append_then_read_in_order(b: Backend) {
    let docs = &*b.docs;
    let (a, d) = (new_user(), DocId::random());
    assert_eq!(docs.head(&a, &d).await, Ok(None));
    assert_eq!(
        docs.read_since(&a, &d, 0).await,
        Err(StorageError::NotFound)
    );
    assert_eq!(docs.read_all(&a, &d).await, Err(StorageError::NotFound));
    assert_eq!(docs.user_head(&a).await, Ok(0));
    assert_eq!(docs.feed_since(&a, 0, 10).await, Ok(vec![]));

    assert_eq!(append(docs, &a, &d, 0, b"one").await, 1);
    assert_eq!(append(docs, &a, &d, 1, b"two").await, 2);
    assert_eq!(append(docs, &a, &d, 2, b"three").await, 3);

    assert_eq!(docs.head(&a, &d).await, Ok(head(&a, 3, 0)));
    let all = vec![entry(1, b"one"), entry(2, b"two"), entry(3, b"three")];
    assert_eq!(docs.read_all(&a, &d).await, Ok(all.clone()));
    assert_eq!(docs.read_since(&a, &d, 0).await, Ok(all.clone()));
    assert_eq!(docs.read_since(&a, &d, 1).await, Ok(all[1..].to_vec()));
    assert_eq!(docs.read_since(&a, &d, 2).await, Ok(all[2..].to_vec()));
    assert_eq!(docs.read_since(&a, &d, 3).await, Ok(vec![]));
    assert_eq!(docs.read_since(&a, &d, u64::MAX).await, Ok(vec![]));
    assert_eq!(docs.user_head(&a).await, Ok(3));
}

async fn malformed_input_is_invalid(b: Backend) {
    let docs = &*b.docs;
    let d = DocId::random();
    let too_long = "u".repeat(MAX_USER_LEN + 1);
    for bad in ["", too_long.as_str(), "line\nbreak"] {
        let invalid = |r: Result<(), StorageError>| {
            assert!(
                matches!(r, Err(StorageError::Invalid(_))),
                "user {bad:?}: {r:?}"
            );
        };
        invalid(docs.head(bad, &d).await.map(drop));
        invalid(docs.append(bad, &d, 0, b"x", &[]).await.map(drop));
        invalid(docs.read_since(bad, &d, 0).await.map(drop));
        invalid(docs.read_all(bad, &d).await.map(drop));
        invalid(docs.feed_since(bad, 0, 10).await.map(drop));
        invalid(docs.compact(bad, &d, 1, b"s").await);
        invalid(docs.user_head(bad).await.map(drop));
        invalid(b.blobs.put(bad, &sha256_hex(b"x"), b"x").await);
        invalid(b.blobs.get(bad, &sha256_hex(b"x")).await.map(drop));
        invalid(b.blobs.exists(bad, &sha256_hex(b"x")).await.map(drop));
    }
    // The longest allowed id works.
    let longest = format!("{}{}", new_user(), "u".repeat(MAX_USER_LEN))[..MAX_USER_LEN].to_owned();
    assert_eq!(append(docs, &longest, &d, 0, b"x").await, 1);

    // Empty chunks are refused and write nothing.
    let (a, e) = (new_user(), DocId::random());
    assert!(matches!(
        docs.append(&a, &e, 0, b"", &[]).await,
        Err(StorageError::Invalid(_))
    ));
    assert_eq!(docs.head(&a, &e).await, Ok(None));
    assert_eq!(docs.user_head(&a).await, Ok(0));
    append(docs, &a, &e, 0, b"x").await;
    assert!(matches!(
        docs.compact(&a, &e, 1, b"").await,
        Err(StorageError::Invalid(_))
    ));
    assert_eq!(docs.head(&a, &e).await, Ok(head(&a, 1, 0)));
}

async fn stale_append_conflicts_and_writes_nothing(b: Backend) {
    let docs = &*b.docs;
    let (a, d, other) = (new_user(), DocId::random(), DocId::random());
    append(docs, &a, &d, 0, b"d1").await;
    append(docs, &a, &d, 1, b"d2").await;
    append(docs, &a, &other, 0, b"o3").await;

    // Stale, "new doc" on an existing one, the user's head (not the doc's),
    // and a future value: all conflicts.
    for expected in [1, 0, 3, 99, u64::MAX] {
        assert_eq!(
            docs.append(&a, &d, expected, b"lost", &[]).await,
            Err(StorageError::Conflict),
            "expected {expected}"
        );
    }
    assert_eq!(docs.head(&a, &d).await, Ok(head(&a, 2, 0)));
    assert_eq!(
        docs.read_all(&a, &d).await,
        Ok(vec![entry(1, b"d1"), entry(2, b"d2")])
    );
    assert_eq!(docs.user_head(&a).await, Ok(3));
    assert_eq!(
        docs.feed_since(&a, 0, 10).await,
        Ok(feed(&[(&d, 2), (&other, 3)]))
    );

    // The refused appends used up no useq.
    assert_eq!(append(docs, &a, &d, 2, b"d4").await, 4);

    // An absent document is not found unless it is being created.
    let absent = DocId::random();
    assert_eq!(
        docs.append(&a, &absent, 5, b"x", &[]).await,
        Err(StorageError::NotFound)
    );
    assert_eq!(docs.head(&a, &absent).await, Ok(None));
    assert_eq!(docs.user_head(&a).await, Ok(4));
}

async fn other_users_documents_do_not_exist(b: Backend) {
    let docs = &*b.docs;
    let (a, bob, d) = (new_user(), new_user(), DocId::random());
    append(docs, &a, &d, 0, b"a1").await;
    append(docs, &a, &d, 1, b"a2").await;

    assert_eq!(docs.head(&bob, &d).await, Ok(None));
    assert_eq!(
        docs.read_since(&bob, &d, 0).await,
        Err(StorageError::NotFound)
    );
    assert_eq!(
        docs.read_since(&bob, &d, 1).await,
        Err(StorageError::NotFound)
    );
    assert_eq!(docs.read_all(&bob, &d).await, Err(StorageError::NotFound));
    // Neither an append at A's head nor a takeover as a "new" document.
    assert_eq!(
        docs.append(&bob, &d, 2, b"b", &[]).await,
        Err(StorageError::NotFound)
    );
    assert_eq!(
        docs.append(&bob, &d, 0, b"b", &[]).await,
        Err(StorageError::NotFound)
    );
    assert_eq!(
        docs.compact(&bob, &d, 2, b"b-snap").await,
        Err(StorageError::NotFound)
    );
    assert_eq!(docs.feed_since(&bob, 0, 10).await, Ok(vec![]));
    assert_eq!(docs.user_head(&bob).await, Ok(0));

    // A's document is untouched.
    assert_eq!(docs.head(&a, &d).await, Ok(head(&a, 2, 0)));
    assert_eq!(
        docs.read_all(&a, &d).await,
        Ok(vec![entry(1, b"a1"), entry(2, b"a2")])
    );
    assert_eq!(docs.feed_since(&a, 0, 10).await, Ok(feed(&[(&d, 2)])));
    assert_eq!(docs.user_head(&a).await, Ok(2));

    // B's own documents have B's own sequence, invisible to A.
    let e = DocId::random();
    assert_eq!(append(docs, &bob, &e, 0, b"b1").await, 1);
    assert_eq!(docs.feed_since(&bob, 0, 10).await, Ok(feed(&[(&e, 1)])));
    assert_eq!(docs.feed_since(&a, 0, 10).await, Ok(feed(&[(&d, 2)])));
    assert_eq!(docs.head(&a, &e).await, Ok(None));
    assert_eq!(docs.read_all(&a, &e).await, Err(StorageError::NotFound));

    // Still hidden after A compacts.
    docs.compact(&a, &d, 2, b"a-snap").await.unwrap();
    assert_eq!(docs.head(&bob, &d).await, Ok(None));
    assert_eq!(docs.read_all(&bob, &d).await, Err(StorageError::NotFound));
}

async fn useq_increases_across_a_users_documents(b: Backend) {
    let docs = &*b.docs;
    let a = new_user();
    let ids = [DocId::random(), DocId::random(), DocId::random()];
    let mut last = [0u64; 3];
    let mut seen = Vec::new();
    for (step, which) in [0, 1, 0, 2, 1, 0].into_iter().enumerate() {
        let useq = append(
            docs,
            &a,
            &ids[which],
            last[which],
            format!("s{step}").as_bytes(),
        )
        .await;
        last[which] = useq;
        seen.push(useq);
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(docs.user_head(&a).await, Ok(6));
    for (id, last) in ids.iter().zip(last) {
        assert_eq!(docs.head(&a, id).await, Ok(head(&a, last, 0)));
    }
    assert_eq!(
        docs.read_all(&a, &ids[0]).await,
        Ok(vec![entry(1, b"s0"), entry(3, b"s2"), entry(6, b"s5")])
    );
    // A cursor between one document's entries (it is a user-wide position).
    assert_eq!(
        docs.read_since(&a, &ids[0], 4).await,
        Ok(vec![entry(6, b"s5")])
    );
    assert_eq!(
        docs.read_since(&a, &ids[1], 2).await,
        Ok(vec![entry(5, b"s4")])
    );
    assert_eq!(docs.read_since(&a, &ids[1], 5).await, Ok(vec![]));

    // Another user starts at 1.
    let bob = new_user();
    assert_eq!(append(docs, &bob, &DocId::random(), 0, b"b").await, 1);
    assert_eq!(docs.user_head(&a).await, Ok(6));
}

async fn feed_holds_each_document_once_at_its_latest_useq(b: Backend) {
    let docs = &*b.docs;
    let a = new_user();
    let (d1, d2, d3) = (DocId::random(), DocId::random(), DocId::random());
    append(docs, &a, &d1, 0, b"1").await;
    append(docs, &a, &d2, 0, b"2").await;
    append(docs, &a, &d1, 1, b"3").await;
    append(docs, &a, &d3, 0, b"4").await;
    append(docs, &a, &d2, 2, b"5").await;

    let all = feed(&[(&d1, 3), (&d3, 4), (&d2, 5)]);
    assert_eq!(docs.feed_since(&a, 0, 100).await, Ok(all.clone()));
    assert_eq!(docs.feed_since(&a, 2, 100).await, Ok(all.clone()));
    assert_eq!(docs.feed_since(&a, 3, 100).await, Ok(all[1..].to_vec()));
    assert_eq!(docs.feed_since(&a, 4, 100).await, Ok(all[2..].to_vec()));
    assert_eq!(docs.feed_since(&a, 5, 100).await, Ok(vec![]));
    assert_eq!(docs.feed_since(&a, u64::MAX, 100).await, Ok(vec![]));
    assert_eq!(docs.feed_since(&a, 0, 0).await, Ok(vec![]));
    assert_eq!(docs.feed_since(&a, 0, 2).await, Ok(all[..2].to_vec()));
    assert_eq!(docs.feed_since(&a, 3, 1).await, Ok(all[1..2].to_vec()));

    // Paging one row at a time visits every document once, in order.
    let (mut cursor, mut paged) = (0, Vec::new());
    loop {
        let page = docs.feed_since(&a, cursor, 1).await.unwrap();
        let Some(row) = page.into_iter().next() else {
            break;
        };
        cursor = row.useq;
        paged.push(row);
    }
    assert_eq!(paged, all);
    assert_eq!(cursor, docs.user_head(&a).await.unwrap());

    // Compaction is not a change: the feed stays as it was.
    docs.compact(&a, &d1, 3, b"snap").await.unwrap();
    assert_eq!(docs.feed_since(&a, 0, 100).await, Ok(all));
}

/// 50 tasks race to append to one document. Each first tries to create it
/// with the same stale view (exactly one wins), then retries from fresh
/// heads until it succeeds. Every success has its own useq, the log has no
/// gaps, and no payload is lost or doubled.
async fn concurrent_appends_get_distinct_useqs_or_conflict(b: Backend) {
    const TASKS: usize = 50;
    let a = new_user();
    let d = DocId::random();
    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let conflicts = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (docs, a, d) = (b.docs.clone(), a.clone(), d.clone());
        let (start, conflicts) = (start.clone(), conflicts.clone());
        tasks.push(tokio::spawn(async move {
            let bytes = format!("task-{task}").into_bytes();
            let mut expected = docs.head(&a, &d).await.unwrap().map_or(0, |h| h.last_useq);
            start.wait().await;
            for _attempt in 0..10_000 {
                match docs.append(&a, &d, expected, &bytes, &[]).await {
                    Ok(useq) => return (useq, bytes),
                    Err(StorageError::Conflict) => {
                        conflicts.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                        let head = docs.head(&a, &d).await.unwrap();
                        expected = head.expect("the document exists by now").last_useq;
                    }
                    Err(e) => panic!("task {task}: {e}"),
                }
            }
            panic!("task {task} never got through");
        }));
    }
    let mut won = Vec::new();
    for task in tasks {
        won.push(task.await.unwrap());
    }
    won.sort();
    let useqs: Vec<u64> = won.iter().map(|(useq, _)| *useq).collect();
    assert_eq!(
        useqs,
        (1..=TASKS as u64).collect::<Vec<_>>(),
        "distinct, no gaps"
    );
    assert!(
        conflicts.load(Ordering::Relaxed) >= TASKS - 1,
        "all but one first attempt must conflict"
    );
    let log: Vec<Chunk> = won
        .iter()
        .map(|(useq, bytes)| entry(*useq, bytes))
        .collect();
    assert_eq!(b.docs.read_all(&a, &d).await, Ok(log));
    assert_eq!(b.docs.head(&a, &d).await, Ok(head(&a, TASKS as u64, 0)));
    assert_eq!(b.docs.user_head(&a).await, Ok(TASKS as u64));
    assert_eq!(
        b.docs.feed_since(&a, 0, 100).await,
        Ok(feed(&[(&d, TASKS as u64)]))
    );
}
