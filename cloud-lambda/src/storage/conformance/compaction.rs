//! Conformance cases for compaction: it folds exactly the entries up to
//! its `upto`, and reads running beside it never miss an entry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use core_sync::DocId;

use super::{Backend, append, entry, head, new_user, snapshot};
use crate::storage::{Chunk, StorageError};

pub(super) async fn compaction_folds_exactly_the_entries_up_to_upto(b: Backend) {
    let docs = &*b.docs;
    let a = new_user();
    let (d, other) = (DocId::random(), DocId::random());
    append(docs, &a, &d, 0, b"a1").await;
    append(docs, &a, &other, 0, b"o2").await;
    append(docs, &a, &d, 1, b"a3").await;
    append(docs, &a, &d, 3, b"a4").await;
    append(docs, &a, &other, 2, b"o5").await;
    append(docs, &a, &d, 4, b"a6").await;

    docs.compact(&a, &d, 4, b"S4").await.unwrap();
    assert_eq!(docs.head(&a, &d).await, Ok(head(&a, 6, 4)));
    let after = vec![snapshot(4, b"S4"), entry(6, b"a6")];
    assert_eq!(docs.read_all(&a, &d).await, Ok(after.clone()));
    assert_eq!(docs.read_since(&a, &d, 0).await, Ok(after.clone()));
    // An old cursor gets the snapshot and the entries after it.
    assert_eq!(docs.read_since(&a, &d, 3).await, Ok(after.clone()));
    assert_eq!(docs.read_since(&a, &d, 4).await, Ok(vec![entry(6, b"a6")]));
    assert_eq!(docs.read_since(&a, &d, 5).await, Ok(vec![entry(6, b"a6")]));
    assert_eq!(docs.read_since(&a, &d, 6).await, Ok(vec![]));
    // The other document lost nothing.
    assert_eq!(
        docs.read_all(&a, &other).await,
        Ok(vec![entry(2, b"o2"), entry(5, b"o5")])
    );

    // Not beyond the snapshot, not beyond the last entry.
    for upto in [0, 3, 4, 7, u64::MAX] {
        assert_eq!(
            docs.compact(&a, &d, upto, b"bad").await,
            Err(StorageError::Conflict),
            "upto {upto}"
        );
    }
    assert_eq!(docs.head(&a, &d).await, Ok(head(&a, 6, 4)));
    assert_eq!(docs.read_all(&a, &d).await, Ok(after));

    // `upto` may fall between a document's entries (another doc's useq).
    docs.compact(&a, &d, 5, b"S5").await.unwrap();
    assert_eq!(
        docs.read_all(&a, &d).await,
        Ok(vec![snapshot(5, b"S5"), entry(6, b"a6")])
    );
    docs.compact(&a, &other, 5, b"O5").await.unwrap();
    assert_eq!(
        docs.read_all(&a, &other).await,
        Ok(vec![snapshot(5, b"O5")])
    );
    assert_eq!(docs.read_since(&a, &other, 5).await, Ok(vec![]));

    // Appends carry on after compaction; compacting everything leaves the
    // snapshot alone.
    assert_eq!(append(docs, &a, &d, 6, b"a7").await, 7);
    assert_eq!(
        docs.read_since(&a, &d, 4).await,
        Ok(vec![snapshot(5, b"S5"), entry(6, b"a6"), entry(7, b"a7")])
    );
    docs.compact(&a, &d, 7, b"S7").await.unwrap();
    assert_eq!(docs.head(&a, &d).await, Ok(head(&a, 7, 7)));
    assert_eq!(docs.read_all(&a, &d).await, Ok(vec![snapshot(7, b"S7")]));
    assert_eq!(
        docs.read_since(&a, &d, 6).await,
        Ok(vec![snapshot(7, b"S7")])
    );
    assert_eq!(docs.read_since(&a, &d, 7).await, Ok(vec![]));
    assert_eq!(append(docs, &a, &d, 7, b"a8").await, 8);
    assert_eq!(
        docs.read_all(&a, &d).await,
        Ok(vec![snapshot(7, b"S7"), entry(8, b"a8")])
    );
}

/// Readers racing compactions always see the whole document: a snapshot
/// and every entry after it, or every entry. This is the trait-level view
/// of "a crash between the snapshot write and the deletion loses nothing".
pub(super) async fn reads_during_compaction_never_miss_an_entry(b: Backend) {
    const ENTRIES: u64 = 30;
    let a = new_user();
    let d = DocId::random();
    let payload = |useq: u64| format!("entry-{useq}").into_bytes();
    for useq in 1..=ENTRIES {
        assert_eq!(
            append(&*b.docs, &a, &d, useq - 1, &payload(useq)).await,
            useq
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for reader in 0..3u64 {
        let (docs, a, d) = (b.docs.clone(), a.clone(), d.clone());
        let (stop, reads) = (stop.clone(), reads.clone());
        readers.push(tokio::spawn(async move {
            let mut after = reader;
            // At least a few reads, then until compaction is done.
            for round in 0.. {
                if round >= 3 && stop.load(Ordering::Relaxed) {
                    break;
                }
                let chunks = docs.read_since(&a, &d, after).await.unwrap();
                let mut covered = after;
                let mut rest = chunks.as_slice();
                if let Some((first, tail)) = rest.split_first()
                    && first.is_snapshot
                {
                    assert!(first.useq > after, "snapshot not newer than cursor");
                    assert_eq!(first.bytes, format!("snap-{}", first.useq).into_bytes());
                    covered = first.useq;
                    rest = tail;
                }
                let expected: Vec<Chunk> = (covered + 1..=ENTRIES)
                    .map(|useq| entry(useq, &payload(useq)))
                    .collect();
                assert_eq!(rest, expected, "cursor {after}, covered to {covered}");
                reads.fetch_add(1, Ordering::Relaxed);
                after = (after + 7) % ENTRIES;
                tokio::task::yield_now().await;
            }
        }));
    }
    for upto in (3..=ENTRIES).step_by(3) {
        b.docs
            .compact(&a, &d, upto, format!("snap-{upto}").as_bytes())
            .await
            .unwrap();
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    assert!(reads.load(Ordering::Relaxed) >= 9);
    assert_eq!(
        b.docs.read_all(&a, &d).await,
        Ok(vec![snapshot(
            ENTRIES,
            format!("snap-{ENTRIES}").as_bytes()
        )])
    );
}
