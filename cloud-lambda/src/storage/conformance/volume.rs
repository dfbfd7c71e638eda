//! Conformance cases about volume: more documents and entries than a
//! query page holds, and entries and snapshots of megabytes.

use core_sync::DocId;

use super::{Backend, append, entry, new_user, noise, snapshot};
use crate::storage::FeedEntry;

/// More documents and entries than a small query page holds: the feed
/// pages through every document once, in order, and a long log comes whole.
pub(super) async fn long_feeds_and_logs_come_whole_and_in_order(b: Backend) {
    let docs = &*b.docs;
    let a = new_user();
    let ids: Vec<DocId> = (0..12).map(|_| DocId::random()).collect();
    let mut last = vec![0u64; ids.len()];
    for round in 0..3 {
        for (i, id) in ids.iter().enumerate() {
            last[i] = append(docs, &a, id, last[i], format!("{i}-{round}").as_bytes()).await;
        }
    }
    let mut expected: Vec<FeedEntry> = ids
        .iter()
        .zip(&last)
        .map(|(doc_id, useq)| FeedEntry {
            doc_id: doc_id.clone(),
            useq: *useq,
        })
        .collect();
    expected.sort_by_key(|e| e.useq);
    assert_eq!(docs.feed_since(&a, 0, 1_000).await, Ok(expected.clone()));
    for limit in [1, 5, 12, 13] {
        let (mut cursor, mut paged) = (0, Vec::new());
        loop {
            let page = docs.feed_since(&a, cursor, limit).await.unwrap();
            assert!(page.len() <= limit);
            let Some(last) = page.last() else { break };
            cursor = last.useq;
            paged.extend(page);
        }
        assert_eq!(paged, expected, "pages of {limit}");
    }
    let d = DocId::random();
    let mut useq = 0;
    for n in 0..40u64 {
        useq = append(docs, &a, &d, useq, format!("long-{n}").as_bytes()).await;
    }
    let log = docs.read_all(&a, &d).await.unwrap();
    let bytes: Vec<Vec<u8>> = log.iter().map(|c| c.bytes.clone()).collect();
    let want: Vec<Vec<u8>> = (0..40).map(|n| format!("long-{n}").into_bytes()).collect();
    assert_eq!(bytes, want);
    assert!(log.windows(2).all(|w| w[0].useq < w[1].useq));
}

/// Entries and snapshots past DynamoDB's 400 KB item limit (the AWS
/// backend keeps them in S3) read back byte for byte.
pub(super) async fn entries_and_snapshots_of_megabytes_read_back_exactly(b: Backend) {
    let docs = &*b.docs;
    let (a, d) = (new_user(), DocId::random());
    let (big, small, bigger) = (noise(420_000, 1), noise(10, 2), noise(2_500_000, 3));
    append(docs, &a, &d, 0, &big).await;
    append(docs, &a, &d, 1, &small).await;
    append(docs, &a, &d, 2, &bigger).await;
    let all = vec![entry(1, &big), entry(2, &small), entry(3, &bigger)];
    assert_eq!(docs.read_all(&a, &d).await, Ok(all.clone()));
    assert_eq!(docs.read_since(&a, &d, 2).await, Ok(all[2..].to_vec()));
    let snap = noise(1_200_000, 4);
    docs.compact(&a, &d, 2, &snap).await.unwrap();
    assert_eq!(
        docs.read_all(&a, &d).await,
        Ok(vec![snapshot(2, &snap), entry(3, &bigger)])
    );
}
