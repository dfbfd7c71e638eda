//! The AWS backend's own checks on moto, beyond what the conformance suite
//! sees through the traits: the conformance suite again with one-item query
//! pages and every entry spilled to S3; a chunk over DynamoDB's item limit;
//! compaction stopped at each crash point; request counts (an idle feed
//! read is one query, a warm append one transaction); throttling,
//! exceeded throughput and S3 faults (retried, then `Unavailable` with
//! nothing written); an emulator reset or gone; webhook deliveries'
//! expiry; a purge stopped after each of its steps.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use atelier_fixtures::moto::Moto;
use aws_sdk_dynamodb::types::AttributeValue;
use cloud_lambda::storage::aws::{Aws, AwsOptions, CompactStop, DEFAULT_SPILL_BYTES, PurgeStop};
use cloud_lambda::storage::conformance::{self, entry, noise, snapshot};
use cloud_lambda::storage::jobs::{JobStore, OpStatus, Operation};
use cloud_lambda::storage::{BlobStore, DocStore, StorageError};
use core_sync::DocId;
use core_sync::blob::sha256_hex;
use support::aws::{Fault, ThrottlingProxy, backend, deployment, deployment_with, options};

/// The document's raw log items: (useq, holds bytes, spilled chunk key).
async fn log_items(aws: &Aws, doc: &DocId) -> Vec<(u64, bool, Option<String>)> {
    let out = aws
        .dynamodb()
        .query()
        .table_name(&aws.names.log)
        .consistent_read(true)
        .key_condition_expression("doc_id = :d")
        .expression_attribute_values(":d", AttributeValue::S(doc.to_string()))
        .send()
        .await
        .unwrap();
    out.items()
        .iter()
        .map(|item| {
            let useq = item["useq"].as_n().unwrap().parse().unwrap();
            let spill = item.get("spill_key").map(|v| v.as_s().unwrap().clone());
            (useq, item.contains_key("bytes"), spill)
        })
        .collect()
}

/// The raw item of `table` whose key `key_name` is `key`.
async fn raw_item(
    aws: &Aws,
    table: &str,
    key_name: &str,
    key: &str,
) -> HashMap<String, AttributeValue> {
    aws.dynamodb()
        .get_item()
        .table_name(table)
        .key(key_name, AttributeValue::S(key.into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap()
}

/// Object keys under `prefix` in the documents bucket.
async fn doc_objects(aws: &Aws, prefix: &str) -> Vec<String> {
    let out = aws
        .s3()
        .list_objects_v2()
        .bucket(&aws.names.doc_bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    out.contents()
        .iter()
        .map(|o| o.key().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_one_item_pages_and_every_entry_spilled() {
    let moto = Moto::start();
    let url = moto.url();
    conformance::run_all(|| {
        let url = url.clone();
        async move {
            backend(
                &deployment_with(AwsOptions {
                    page_size: Some(1),
                    spill_bytes: 4,
                    ..options(&url)
                })
                .await,
            )
        }
    })
    .await;
}

#[tokio::test]
async fn a_chunk_over_the_item_limit_lives_in_s3_until_compaction_folds_it() {
    let moto = Moto::start();
    let aws = deployment(&moto.url()).await;
    let store = aws.store();
    let (user, doc) = ("alice", DocId::random());

    // Just under the threshold stays in the item; just over spills.
    let inline = noise(DEFAULT_SPILL_BYTES, 1);
    let big = noise(DEFAULT_SPILL_BYTES + 1, 2);
    let huge = noise(1_500_000, 3);
    assert_eq!(store.append(user, &doc, 0, &inline, &[]).await, Ok(1));
    assert_eq!(store.append(user, &doc, 1, &big, &[]).await, Ok(2));
    assert_eq!(store.append(user, &doc, 2, &huge, &[]).await, Ok(3));
    let chunks = |sha: &str| format!("docs/{doc}/chunks/{sha}");
    assert_eq!(
        log_items(&aws, &doc).await,
        vec![
            (1, true, None),
            (2, false, Some(chunks(&sha256_hex(&big)))),
            (3, false, Some(chunks(&sha256_hex(&huge)))),
        ]
    );
    let all = vec![entry(1, &inline), entry(2, &big), entry(3, &huge)];
    assert_eq!(store.read_all(user, &doc).await, Ok(all.clone()));
    assert_eq!(store.read_since(user, &doc, 1).await, Ok(all[1..].to_vec()));

    // Refused appends of large chunks write no object.
    let refused = noise(DEFAULT_SPILL_BYTES + 10, 4);
    assert_eq!(
        store.append(user, &doc, 2, &refused, &[]).await,
        Err(StorageError::Conflict)
    );
    assert_eq!(
        store.append("bob", &doc, 3, &refused, &[]).await,
        Err(StorageError::NotFound)
    );
    assert_eq!(
        store.append(user, &DocId::random(), 7, &refused, &[]).await,
        Err(StorageError::NotFound)
    );
    assert!(
        !doc_objects(&aws, "docs/")
            .await
            .contains(&chunks(&sha256_hex(&refused)))
    );
    assert_eq!(
        doc_objects(&aws, &format!("docs/{doc}/chunks/"))
            .await
            .len(),
        2
    );

    // Compaction folds entries 1 and 2: the spilled chunk of 2 goes, 3 stays.
    store.compact(user, &doc, 2, b"S2").await.unwrap();
    assert_eq!(
        doc_objects(&aws, &format!("docs/{doc}/chunks/")).await,
        vec![chunks(&sha256_hex(&huge))]
    );
    assert_eq!(log_items(&aws, &doc).await.len(), 1);
    assert_eq!(
        store.read_all(user, &doc).await,
        Ok(vec![snapshot(2, b"S2"), entry(3, &huge)])
    );
    // A snapshot over the item limit is no different.
    let big_snapshot = noise(2_000_000, 5);
    store.compact(user, &doc, 3, &big_snapshot).await.unwrap();
    assert_eq!(
        store.read_all(user, &doc).await,
        Ok(vec![snapshot(3, &big_snapshot)])
    );
    assert!(
        doc_objects(&aws, &format!("docs/{doc}/chunks/"))
            .await
            .is_empty()
    );
    assert_eq!(
        doc_objects(&aws, &format!("docs/{doc}/snapshots/"))
            .await
            .len(),
        1
    );
}

/// Five entries, useq 1..=5, payloads `e1`..`e5`.
async fn five_entries(store: &dyn DocStore, user: &str, doc: &DocId) {
    for useq in 1..=5u64 {
        let got = store
            .append(user, doc, useq - 1, format!("e{useq}").as_bytes(), &[])
            .await;
        assert_eq!(got, Ok(useq));
    }
}

#[tokio::test]
async fn a_compaction_stopped_after_its_snapshot_write_changes_nothing_readers_see() {
    let moto = Moto::start();
    let aws = deployment(&moto.url()).await;
    let store = aws.store();
    let (user, doc) = ("alice", DocId::random());
    five_entries(&store, user, &doc).await;
    let before = store.read_all(user, &doc).await.unwrap();

    store
        .compact_stopping(user, &doc, 3, b"S3", CompactStop::AfterSnapshotWritten)
        .await
        .unwrap();
    // The object exists; nothing points at it.
    let snapshots = format!("docs/{doc}/snapshots/");
    assert_eq!(doc_objects(&aws, &snapshots).await.len(), 1);
    assert_eq!(
        store.head(user, &doc).await.unwrap().unwrap().snapshot_upto,
        0
    );
    assert_eq!(store.read_all(user, &doc).await.unwrap(), before);
    assert_eq!(log_items(&aws, &doc).await.len(), 5);

    // The next compaction completes, and removes what the stopped one left.
    store.compact(user, &doc, 4, b"S4").await.unwrap();
    let left = doc_objects(&aws, &snapshots).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].ends_with(&sha256_hex(b"S4")));
    assert_eq!(
        store.read_all(user, &doc).await,
        Ok(vec![snapshot(4, b"S4"), entry(5, b"e5")])
    );
    assert_eq!(log_items(&aws, &doc).await.len(), 1);
}

#[tokio::test]
async fn a_compaction_stopped_after_moving_the_pointer_leaves_entries_readers_skip() {
    let moto = Moto::start();
    let aws = deployment(&moto.url()).await;
    let store = aws.store();
    let (user, doc) = ("alice", DocId::random());
    five_entries(&store, user, &doc).await;
    store.compact(user, &doc, 2, b"S2").await.unwrap();

    store
        .compact_stopping(user, &doc, 4, b"S4", CompactStop::AfterPointerMoved)
        .await
        .unwrap();
    // Folded entries 3 and 4 and the old snapshot object are still there.
    let useqs: Vec<u64> = log_items(&aws, &doc).await.iter().map(|i| i.0).collect();
    assert_eq!(useqs, vec![3, 4, 5]);
    assert_eq!(
        doc_objects(&aws, &format!("docs/{doc}/snapshots/"))
            .await
            .len(),
        2
    );
    // Readers see the new snapshot and only what follows it, at any cursor.
    let expected = vec![snapshot(4, b"S4"), entry(5, b"e5")];
    for cursor in [0, 1, 2, 3] {
        assert_eq!(
            store.read_since(user, &doc, cursor).await,
            Ok(expected.clone())
        );
    }
    assert_eq!(
        store.read_since(user, &doc, 4).await,
        Ok(expected[1..].to_vec())
    );

    // The next compaction deletes the leftovers with what it folds.
    assert_eq!(store.append(user, &doc, 5, b"e6", &[]).await, Ok(6));
    store.compact(user, &doc, 5, b"S5").await.unwrap();
    let useqs: Vec<u64> = log_items(&aws, &doc).await.iter().map(|i| i.0).collect();
    assert_eq!(useqs, vec![6]);
    assert_eq!(
        doc_objects(&aws, &format!("docs/{doc}/snapshots/"))
            .await
            .len(),
        1
    );
    assert_eq!(
        store.read_all(user, &doc).await,
        Ok(vec![snapshot(5, b"S5"), entry(6, b"e6")])
    );
}

#[tokio::test]
async fn an_idle_feed_read_is_one_query_and_a_warm_append_one_transaction() {
    let moto = Moto::start();
    let aws = deployment(&moto.url()).await;
    let store = aws.store();
    let (user, doc) = ("alice", DocId::random());
    store.append(user, &doc, 0, b"first", &[]).await.unwrap();
    let counts = || aws.requests().snapshot();

    let before = counts();
    assert_eq!(store.feed_since(user, 1, 500).await.unwrap(), vec![]);
    let idle = counts().since(&before);
    assert_eq!((idle.of("Query"), idle.total()), (1, 1), "{idle}");

    let before = counts();
    assert_eq!(store.append(user, &doc, 1, b"second", &[]).await, Ok(2));
    let append = counts().since(&before);
    assert_eq!(
        (append.of("TransactWriteItems"), append.total()),
        (1, 1),
        "{append}"
    );

    // Another process moved the user's counter: the stale guess costs one
    // more transaction (its answer carries the counter), no read.
    let other = deployment_with(AwsOptions {
        prefix: aws.names.prefix.clone(),
        ..options(&moto.url())
    })
    .await
    .store();
    other
        .append(user, &DocId::random(), 0, b"elsewhere", &[])
        .await
        .unwrap();
    let before = counts();
    assert_eq!(store.append(user, &doc, 2, b"third", &[]).await, Ok(4));
    let stale = counts().since(&before);
    assert_eq!(
        (stale.of("TransactWriteItems"), stale.total()),
        (2, 2),
        "{stale}"
    );
}

#[tokio::test]
async fn throttled_requests_are_retried_then_reported_unavailable_with_nothing_written() {
    let moto = Moto::start();
    let proxy = ThrottlingProxy::start(&moto.url()).await;
    let aws = deployment(&proxy.url).await;
    let store = aws.store();
    let (user, doc) = ("alice", DocId::random());
    store.append(user, &doc, 0, b"one", &[]).await.unwrap();

    // Twice throttled, then through: the SDK retried.
    proxy.throttle("TransactWriteItems", 2);
    let before = aws.requests().snapshot();
    assert_eq!(store.append(user, &doc, 1, b"two", &[]).await, Ok(2));
    assert_eq!(
        aws.requests()
            .snapshot()
            .since(&before)
            .of("TransactWriteItems"),
        3
    );
    assert_eq!(proxy.throttled(), 2);

    // Throttled for good: a clear "unavailable", and nothing written.
    proxy.throttle("TransactWriteItems", usize::MAX);
    match store.append(user, &doc, 2, b"three", &[]).await {
        Err(StorageError::Unavailable(m)) => assert!(m.contains("ThrottlingException"), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    proxy.throttle("TransactWriteItems", 0);
    assert_eq!(store.user_head(user).await, Ok(2));
    assert_eq!(
        store.read_all(user, &doc).await,
        Ok(vec![entry(1, b"one"), entry(2, b"two")])
    );
    proxy.throttle("Query", usize::MAX);
    assert!(matches!(
        store.feed_since(user, 0, 10).await,
        Err(StorageError::Unavailable(_))
    ));
}

/// One storage call a fault can hit.
#[derive(Clone, Copy, Debug)]
enum Call {
    /// An append whose chunk spills to S3 (a PUT, then a transaction).
    SpilledAppend,
    BlobGet,
    /// Looks under every kind of blob at once (three HEADs).
    BlobExists,
    FeedRead,
}

#[tokio::test]
async fn dynamodb_and_s3_faults_are_retried_then_reported_unavailable_with_nothing_written() {
    let moto = Moto::start();
    let proxy = ThrottlingProxy::start(&moto.url()).await;
    let aws = deployment_with(AwsOptions {
        spill_bytes: 64,
        ..options(&proxy.url)
    })
    .await;
    let (store, blobs) = (aws.store(), aws.blobs());
    let user = "alice";
    let image = noise(300, 9);
    let sha = sha256_hex(&image);
    blobs.put(user, &sha, &image).await.unwrap();
    let call = async |call: Call, seed: u64| -> Result<(), StorageError> {
        match call {
            Call::SpilledAppend => {
                let doc = DocId::random();
                let r = store.append(user, &doc, 0, &noise(500, seed), &[]).await;
                if r.is_err() {
                    // Nothing half-written a reader could see. (A chunk
                    // object written before a failed transaction is named
                    // by nothing.)
                    assert_eq!(
                        store.read_all(user, &doc).await,
                        Err(StorageError::NotFound)
                    );
                }
                r.map(drop)
            }
            Call::BlobGet => {
                let got = blobs.get(user, &sha).await?;
                assert_eq!(got.as_deref(), Some(&image[..]));
                Ok(())
            }
            Call::BlobExists => blobs.exists(user, &sha).await.map(|there| assert!(there)),
            Call::FeedRead => store.feed_since(user, 0, 10).await.map(drop),
        }
    };
    for (what, fault, call_with, code) in [
        (
            "TransactWriteItems",
            Fault::ThroughputExceeded,
            Call::SpilledAppend,
            "ProvisionedThroughputExceededException",
        ),
        (
            "Query",
            Fault::ThroughputExceeded,
            Call::FeedRead,
            "ProvisionedThroughputExceededException",
        ),
        ("S3 PUT", Fault::SlowDown, Call::SpilledAppend, "SlowDown"),
        (
            "S3 PUT",
            Fault::InternalError,
            Call::SpilledAppend,
            "InternalError",
        ),
        ("S3 GET", Fault::SlowDown, Call::BlobGet, "SlowDown"),
        (
            "S3 GET",
            Fault::InternalError,
            Call::BlobGet,
            "InternalError",
        ),
        ("S3 HEAD", Fault::SlowDown, Call::BlobExists, "503"),
    ] {
        let case = format!("{what} answering {fault:?}");
        // A passing fault: retried by the SDK, and the call succeeds.
        let before = proxy.throttled();
        proxy.fail(what, fault, 2);
        assert_eq!(call(call_with, 1).await, Ok(()), "{case}");
        assert_eq!(proxy.throttled() - before, 2, "{case}");
        // A lasting one: a clear `Unavailable` (a 503 to clients).
        let head = store.user_head(user).await.unwrap();
        proxy.fail(what, fault, usize::MAX);
        match call(call_with, 2).await {
            Err(StorageError::Unavailable(m)) => assert!(m.contains(code), "{case}: {m}"),
            other => panic!("{case}: expected Unavailable, got {other:?}"),
        }
        proxy.fail(what, fault, 0);
        assert_eq!(
            store.user_head(user).await,
            Ok(head),
            "{case}: nothing appended"
        );
        assert_eq!(call(call_with, 3).await, Ok(()), "{case}: over");
    }
}

#[tokio::test]
async fn a_reset_emulator_gives_errors_naming_the_fix_and_an_absent_one_unavailable() {
    let moto = Moto::start();
    let aws = deployment(&moto.url()).await;
    let (store, blobs) = (aws.store(), aws.blobs());
    let (user, doc) = ("alice", DocId::random());
    store.append(user, &doc, 0, b"one", &[]).await.unwrap();

    moto.reset();
    let missing = |r: Result<(), StorageError>| match r {
        Err(StorageError::Backend(m)) => {
            assert!(m.contains("missing") && m.contains("init-aws"), "{m}")
        }
        other => panic!("expected a missing-table error, got {other:?}"),
    };
    missing(store.append(user, &doc, 1, b"two", &[]).await.map(drop));
    missing(store.feed_since(user, 0, 10).await.map(drop));
    missing(store.read_all(user, &doc).await.map(drop));
    missing(blobs.put(user, &sha256_hex(b"x"), b"x").await);

    // Created again, the store starts over: its remembered counter is
    // corrected by the first append's answer.
    aws.init().await.unwrap();
    assert_eq!(store.user_head(user).await, Ok(0));
    store.append(user, &doc, 0, b"again", &[]).await.unwrap();
    assert_eq!(
        store.read_all(user, &doc).await,
        Ok(vec![entry(1, b"again")])
    );

    drop(moto);
    let started = Instant::now();
    for result in [
        store.append(user, &doc, 1, b"x", &[]).await.map(drop),
        store.user_head(user).await.map(drop),
    ] {
        assert!(
            matches!(result, Err(StorageError::Unavailable(_))),
            "{result:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn webhook_deliveries_expire_and_finished_operations_leave_the_unfinished_index() {
    let moto = Moto::start();
    let aws = deployment(&moto.url()).await;
    let store = aws.store();
    let now = 1_800_000_000;
    assert_eq!(store.first_delivery("msg_1", now).await, Ok(true));
    assert_eq!(store.first_delivery("msg_1", now + 60).await, Ok(false));
    let item = raw_item(&aws, &aws.names.deliveries, "webhook_id", "msg_1").await;
    assert_eq!(
        item["expires_at"],
        AttributeValue::N((now + 86_400).to_string())
    );
    // Past its expiry (TTL deletion may lag) it counts as unseen.
    assert_eq!(store.first_delivery("msg_1", now + 86_401).await, Ok(true));

    let op = |id: &str, created_at| Operation {
        id: id.into(),
        user: "alice".into(),
        doc_id: DocId::random(),
        status: OpStatus::Queued,
        provider_ref: None,
        attempts: 0,
        error: None,
        input: None,
        created_at,
        updated_at: created_at,
    };
    let (mut a, b) = (op("op-a", 2), op("op-b", 1));
    assert_eq!(store.create_operation(&a).await, Ok(true));
    assert_eq!(store.create_operation(&b).await, Ok(true));
    let ids = |ops: Vec<Operation>| ops.into_iter().map(|o| o.id).collect::<Vec<_>>();
    assert_eq!(ids(store.unfinished().await.unwrap()), vec!["op-b", "op-a"]);
    a.status = OpStatus::Failed;
    a.error = Some("gone".into());
    store.update_operation(&a).await.unwrap();
    assert_eq!(ids(store.unfinished().await.unwrap()), vec!["op-b"]);
    let raw = raw_item(&aws, &aws.names.operations, "id", "op-a").await;
    assert!(!raw.contains_key("unfinished"), "{raw:?}");
}

#[tokio::test]
async fn a_purge_stopped_after_each_step_reads_as_purged_and_the_next_run_finishes_it() {
    use cloud_lambda::storage::projection::{Listing, ListingTrash};
    let moto = Moto::start();
    for stop in [
        PurgeStop::AfterMark,
        PurgeStop::AfterReferences,
        PurgeStop::AfterLog,
    ] {
        let aws = deployment_with(AwsOptions {
            spill_bytes: 16,
            ..options(&moto.url())
        })
        .await;
        let (store, blobs) = (aws.store(), aws.blobs());
        let p = store.purges().unwrap();
        let u = "alice";
        let (d, keep) = (DocId::random(), DocId::random());
        // A log longer than a transaction, some entries spilled, a snapshot.
        let mut last = 0;
        for i in 0..110u8 {
            let bytes = if i % 10 == 0 { vec![i; 64] } else { vec![i; 8] };
            last = store.append(u, &d, last, &bytes, &[]).await.unwrap();
            if i == 50 {
                store.compact(u, &d, last, b"snapshot").await.unwrap();
            }
        }
        let (own, shared) = (b"own image".to_vec(), b"shared image".to_vec());
        let (own_sha, shared_sha) = (sha256_hex(&own), sha256_hex(&shared));
        blobs.put(u, &own_sha, &own).await.unwrap();
        blobs.put(u, &shared_sha, &shared).await.unwrap();
        p.put_purge_facts(u, &d, last, &[own_sha.clone(), shared_sha.clone()], Some(5))
            .await
            .unwrap();
        let k = store.append(u, &keep, 0, b"keep", &[]).await.unwrap();
        p.put_purge_facts(u, &keep, k, std::slice::from_ref(&shared_sha), None)
            .await
            .unwrap();
        let listing = Listing {
            doc_id: d.clone(),
            title: "Doomed".into(),
            cover: None,
            active_version_id: None,
            message_count: 0,
            cost_event_count: 0,
            created_at: 1,
            updated_at: 5,
            useq: last,
            trash: Some(ListingTrash {
                deleted_at: 5,
                retained_since: 5,
            }),
        };
        store.projections().put_listing(u, &listing).await.unwrap();

        store.purge_doc_stopping(u, &d, last, stop).await.unwrap();
        // From the first step on it reads as purged, and stays so.
        assert_eq!(store.head(u, &d).await.unwrap(), None, "{stop:?}");
        assert_eq!(store.read_all(u, &d).await, Err(StorageError::NotFound));
        assert!(p.is_purged(u, &d).await.unwrap());
        for expected in [0, last, last + 1] {
            assert_eq!(
                store.append(u, &d, expected, b"late", &[]).await,
                Err(StorageError::NotFound),
                "{stop:?}: append expecting {expected}"
            );
        }
        let left = store.purge_leftovers().await.unwrap();
        assert!(!left.is_empty(), "{stop:?}: the purge is half done");

        // The next run finishes it and deletes what only it named.
        let run = cloud_lambda::purge::run(&store, &blobs, 1_000, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!((run.resumed, run.assets), (1, 0), "{stop:?}");
        assert!(
            store.purge_leftovers().await.unwrap().is_empty(),
            "{stop:?}: {:?}",
            store.purge_leftovers().await.unwrap()
        );
        assert!(log_items(&aws, &d).await.is_empty());
        assert!(doc_objects(&aws, &format!("docs/{d}/")).await.is_empty());
        assert_eq!(store.projections().get_listing(u, &d).await.unwrap(), None);
        assert!(!blobs.exists(u, &own_sha).await.unwrap(), "{stop:?}");
        assert!(blobs.exists(u, &shared_sha).await.unwrap(), "{stop:?}");
        assert!(p.queued_blobs(10).await.unwrap().is_empty());
        assert_eq!(store.read_all(u, &keep).await.unwrap().len(), 1);
        // Nothing is left for a third run.
        let again = cloud_lambda::purge::run(&store, &blobs, 1_000, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!((again.resumed, again.assets, again.blobs), (0, 0, 0));
    }
}
