//! The storage conformance suite on both backends: the embedded one
//! (SQLite + files) and the AWS one (DynamoDB + S3 on moto). Plus what only
//! the embedded backend can show: which rows compaction deletes, a crash
//! between its two steps, the feed query plan, and the blob layout (the
//! AWS backend's own checks are in `storage_aws.rs`).

mod support;

use std::path::Path;
use std::sync::Arc;

use cloud_lambda::storage::conformance::{self, Backend};
use cloud_lambda::storage::embedded::{DB_FILE, EmbeddedBlobs, EmbeddedStore};
use cloud_lambda::storage::{BlobStore, Chunk, DocStore};
use core_sync::DocId;
use core_sync::blob::sha256_hex;
use sqlx::{Connection, SqliteConnection};

async fn embedded() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let docs = EmbeddedStore::open(dir.path()).await.unwrap();
    let blobs = EmbeddedBlobs::open(dir.path()).unwrap();
    let docs = Arc::new(docs);
    Backend {
        docs: docs.clone(),
        blobs: Arc::new(blobs),
        ops: docs,
        guard: Box::new(dir),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_backend_passes_the_conformance_suite() {
    conformance::run_all(embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_backend_passes_the_conformance_suite() {
    let moto = atelier_fixtures::moto::Moto::start();
    let url = moto.url();
    conformance::run_all(|| {
        let url = url.clone();
        async move { support::aws::backend(&support::aws::deployment(&url).await) }
    })
    .await;
}

/// A side connection to the store's database, as another process would have.
async fn raw(dir: &Path) -> SqliteConnection {
    let url = format!("sqlite://{}", dir.join(DB_FILE).display());
    SqliteConnection::connect(&url).await.unwrap()
}

async fn log_useqs(conn: &mut SqliteConnection, doc: &DocId) -> Vec<i64> {
    sqlx::query_scalar("SELECT useq FROM log WHERE doc_id = ? ORDER BY useq")
        .bind(doc.as_str())
        .fetch_all(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn compaction_deletes_exactly_the_folded_entries_and_survives_a_crash_between_steps() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    let (user, d, other) = ("alice", DocId::random(), DocId::random());
    let mut last = 0;
    for i in 1..=6u64 {
        last = store
            .append(user, &d, last, format!("d{i}").as_bytes(), &[])
            .await
            .unwrap();
    }
    let o = store.append(user, &other, 0, b"o7", &[]).await.unwrap();
    let mut conn = raw(dir.path()).await;

    store.compact(user, &d, 4, b"S4").await.unwrap();
    assert_eq!(log_useqs(&mut conn, &d).await, vec![5, 6]);
    assert_eq!(log_useqs(&mut conn, &other).await, vec![o as i64]);

    // A crash after the snapshot write but before the deletion (as on a
    // backend without transactions) leaves folded entries behind. Readers
    // ignore them; nothing is lost.
    for useq in [2i64, 3, 4] {
        sqlx::query("INSERT INTO log (doc_id, useq, bytes) VALUES (?, ?, ?)")
            .bind(d.as_str())
            .bind(useq)
            .bind(format!("d{useq}").into_bytes())
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let expected = vec![
        Chunk {
            useq: 4,
            bytes: b"S4".to_vec(),
            is_snapshot: true,
        },
        Chunk {
            useq: 5,
            bytes: b"d5".to_vec(),
            is_snapshot: false,
        },
        Chunk {
            useq: 6,
            bytes: b"d6".to_vec(),
            is_snapshot: false,
        },
    ];
    assert_eq!(store.read_all(user, &d).await.unwrap(), expected);
    assert_eq!(store.read_since(user, &d, 1).await.unwrap(), expected);
    assert_eq!(store.read_since(user, &d, 4).await.unwrap(), expected[1..]);
    // The next compaction removes the leftovers with the entries it folds.
    store.compact(user, &d, 5, b"S5").await.unwrap();
    assert_eq!(log_useqs(&mut conn, &d).await, vec![6]);
    conn.close().await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn the_idle_feed_query_is_one_primary_key_range_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    store
        .append("alice", &DocId::random(), 0, b"x", &[])
        .await
        .unwrap();
    let mut conn = raw(dir.path()).await;
    // EXPLAIN QUERY PLAN rows are (id, parent, notused, detail).
    let rows = sqlx::query(
        "EXPLAIN QUERY PLAN
         SELECT useq, doc_id FROM feed WHERE user_id = ? AND useq > ? ORDER BY useq LIMIT ?",
    )
    .bind("alice")
    .bind(0i64)
    .bind(100i64)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let details: Vec<String> = rows
        .iter()
        .map(|row| sqlx::Row::get::<String, _>(row, "detail"))
        .collect();
    assert_eq!(details.len(), 1, "{details:?}");
    assert!(
        details[0].contains("SEARCH feed USING PRIMARY KEY (user_id=? AND useq>?)"),
        "{details:?}"
    );
    conn.close().await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn blobs_live_under_a_hash_of_the_user_id() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = EmbeddedBlobs::open(dir.path()).unwrap();
    let user = "../../evil user";
    let sha = sha256_hex(b"pixels");
    blobs.put(user, &sha, b"pixels").await.unwrap();
    let path = dir
        .path()
        .join("blobs/users")
        .join(sha256_hex(user.as_bytes()))
        .join(&sha);
    assert_eq!(std::fs::read(&path).unwrap(), b"pixels");
    // No temporary files are left behind.
    assert_eq!(
        std::fs::read_dir(dir.path().join("blobs/tmp"))
            .unwrap()
            .count(),
        0
    );

    // Bytes changed on disk are an error, never returned.
    std::fs::write(&path, b"pixelz").unwrap();
    assert!(blobs.get(user, &sha).await.is_err());
    // Putting the right bytes again repairs it.
    blobs.put(user, &sha, b"pixels").await.unwrap();
    assert_eq!(
        blobs.get(user, &sha).await.unwrap(),
        Some(b"pixels".to_vec())
    );
}

#[tokio::test]
async fn the_backfill_lists_documents_without_a_current_listing() {
    use cloud_lambda::storage::projection::{CostRange, Listing};
    use core_sync::model::{AssetDoc, NewCostEvent};

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
    let user = "alice";
    // Two documents appended straight to the log (as before the
    // projections existed): one never listed, one listed at an older
    // position (a crash between its append and its listing).
    let mut ids = Vec::new();
    for title in ["Never listed", "Listed behind"] {
        let mut doc = AssetDoc::create(title, 1_000);
        doc.record_cost(
            NewCostEvent {
                provider: "google".into(),
                model: "gemini-3.1-flash-image".into(),
                units: 1.0,
                unit: "images".into(),
                cost_nano_usd: 39_000_000,
                message_id: None,
            },
            2_000,
        )
        .unwrap();
        let (bytes, heads) = doc.unsaved_changes();
        let id = DocId::random();
        store.append(user, &id, 0, &bytes, &heads).await.unwrap();
        ids.push(id);
    }
    let stale = Listing {
        doc_id: ids[1].clone(),
        title: "old title".into(),
        cover: None,
        active_version_id: None,
        message_count: 0,
        cost_event_count: 0,
        created_at: 0,
        updated_at: 0,
        useq: 0,
        trash: None,
    };
    store.projections().put_listing(user, &stale).await.unwrap();

    let listed = cloud_lambda::projection::backfill(store.clone())
        .await
        .unwrap();
    assert_eq!(listed, 2);
    let p = store.projections();
    for (id, title) in ids.iter().zip(["Never listed", "Listed behind"]) {
        assert_eq!(p.get_listing(user, id).await.unwrap().unwrap().title, title);
    }
    let groups = p.cost_groups(user, &CostRange::default()).await.unwrap();
    assert_eq!(groups.iter().map(|g| g.events).sum::<u64>(), 2);
    // Nothing left to do the second time.
    assert_eq!(
        cloud_lambda::projection::backfill(store.clone())
            .await
            .unwrap(),
        0
    );
}
