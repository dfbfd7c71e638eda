//! The local store: durability bookkeeping, compaction, the listing
//! projection, damaged data and sync state.

use core_sync::DocId;
use core_sync::blob::BlobError;
use core_sync::model::{ModelError, NewMessage};
use core_sync::store::{CompactionPolicy, Store, StoreError, StoreOptions, SyncState};
use sqlx::Row;

async fn raw_pool(store: &Store) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new().filename(store.dir().join("atelier.db")),
    )
    .await
    .unwrap()
}

async fn chunk_bytes(pool: &sqlx::SqlitePool, id: &DocId) -> Vec<Vec<u8>> {
    sqlx::query("SELECT bytes FROM chunks WHERE doc_id = ? ORDER BY chunk_id")
        .bind(id.as_str())
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<Vec<u8>, _>("bytes"))
        .collect()
}

fn never_compact() -> StoreOptions {
    StoreOptions {
        compaction: CompactionPolicy::NEVER,
        ..Default::default()
    }
}

#[tokio::test]
async fn edits_reload_and_compaction_folds_exactly_what_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), never_compact()).await.unwrap();
    let mut a = store.create("first", 1).await.unwrap();
    for i in 0..10 {
        a.doc
            .append_message(NewMessage::user(format!("m{i}")), 10 + i)
            .unwrap();
        store.save(&mut a).await.unwrap();
    }
    assert_eq!(store.stored_size(&a.id).await.unwrap().chunks, 11);

    // A second copy (another process) appends a chunk the first never saw.
    let mut b = store.load(&a.id).await.unwrap();
    b.doc
        .append_message(NewMessage::user("from b"), 100)
        .unwrap();
    store.save(&mut b).await.unwrap();

    store.compact(&mut a).await.unwrap();
    // b's chunk survived a's compaction.
    assert_eq!(store.stored_size(&a.id).await.unwrap().chunks, 2);
    let mut reloaded = store.load(&a.id).await.unwrap();
    let texts: Vec<_> = reloaded
        .doc
        .messages()
        .unwrap()
        .into_iter()
        .filter_map(|m| m.text)
        .collect();
    assert_eq!(texts.len(), 11);
    assert!(texts.contains(&"from b".to_string()));
    assert_eq!(reloaded.summary().unwrap().message_count, 11);
    // Compacting the reloaded copy leaves one snapshot equal to save().
    store.compact(&mut reloaded).await.unwrap();
    let size = store.stored_size(&a.id).await.unwrap();
    assert_eq!(size.chunks, 1);
    assert_eq!(size.bytes, reloaded.doc.save().len() as u64);
}

#[tokio::test]
async fn the_default_policy_compacts_as_edits_accumulate() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default())
        .await
        .unwrap();
    let mut a = store.create("busy", 0).await.unwrap();
    for i in 0..800 {
        a.doc
            .append_message(NewMessage::user(format!("message {i}")), i)
            .unwrap();
        store.save(&mut a).await.unwrap();
    }
    let size = store.stored_size(&a.id).await.unwrap();
    assert!(size.chunks < 500, "compaction ran: {} chunks", size.chunks);
    assert!(size.bytes < 3 * a.doc.save().len() as u64);
    assert_eq!(
        store
            .load(&a.id)
            .await
            .unwrap()
            .doc
            .messages()
            .unwrap()
            .len(),
        800
    );
}

#[tokio::test]
async fn listing_projection_follows_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default())
        .await
        .unwrap();
    let mut a = store.create("alpha", 1).await.unwrap();
    let b = store.create("beta", 2).await.unwrap();
    a.doc.append_message(NewMessage::user("hi"), 5).unwrap();
    a.doc.set_title("alpha prime", 6).unwrap();
    store.save(&mut a).await.unwrap();
    let list = store.list().await.unwrap();
    assert_eq!(
        list.iter().map(|l| l.title.as_str()).collect::<Vec<_>>(),
        ["alpha prime", "beta"]
    );
    assert_eq!(list[0].message_count, 1);
    assert_eq!(list[0].updated_at, 6);
    assert_eq!(list[1].id, b.id);
}

#[tokio::test]
async fn corrupt_chunks_fail_by_name_and_nothing_is_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), never_compact()).await.unwrap();
    let mut good = store.create("good", 0).await.unwrap();
    let mut bad = store.create("bad", 0).await.unwrap();
    for asset in [&mut good, &mut bad] {
        asset
            .doc
            .append_message(NewMessage::user("hello"), 1)
            .unwrap();
        store.save(asset).await.unwrap();
    }
    let pool = raw_pool(&store).await;
    sqlx::query("UPDATE chunks SET bytes = substr(bytes, 1, length(bytes) / 2) WHERE doc_id = ? AND kind = 1")
        .bind(bad.id.as_str())
        .execute(&pool)
        .await
        .unwrap();
    let before = chunk_bytes(&pool, &bad.id).await;
    match store.load(&bad.id).await {
        Err(StoreError::Corrupt {
            doc_id,
            source: ModelError::Automerge(_) | ModelError::Malformed(_),
        }) => {
            assert_eq!(doc_id, bad.id);
        }
        other => panic!("expected Corrupt, got {:?}", other.err()),
    }
    assert_eq!(
        chunk_bytes(&pool, &bad.id).await,
        before,
        "a failed load writes nothing"
    );
    assert_eq!(
        store
            .load(&good.id)
            .await
            .unwrap()
            .doc
            .messages()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.list().await.unwrap().len(),
        2,
        "listing never loads documents"
    );

    // Garbage instead of a snapshot, too.
    sqlx::query("UPDATE chunks SET bytes = x'00112233' WHERE doc_id = ? AND kind = 0")
        .bind(bad.id.as_str())
        .execute(&pool)
        .await
        .unwrap();
    assert!(matches!(
        store.load(&bad.id).await,
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.load(&DocId::random()).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn blobs_are_verified_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default())
        .await
        .unwrap();
    let sha = store
        .put_blob(b"\x89PNG fake".to_vec(), "image/png", 0)
        .await
        .unwrap();
    assert_eq!(store.get_blob(&sha).await.unwrap(), b"\x89PNG fake");
    let path = dir.path().join("blobs").join(&sha[..2]).join(&sha[2..]);
    std::fs::write(&path, b"tampered").unwrap();
    match store.get_blob(&sha).await {
        Err(StoreError::Blob(BlobError::Corrupt { sha256, .. })) => assert_eq!(sha256, sha),
        other => panic!("expected a corrupt blob, got {other:?}"),
    }
}

#[tokio::test]
async fn sync_state_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default())
        .await
        .unwrap();
    let mut a = store.create("x", 0).await.unwrap();
    assert_eq!(store.sync_state(&a.id).await.unwrap(), SyncState::default());
    let state = SyncState {
        cursor: 42,
        server_heads: a.doc.heads(),
    };
    store.set_sync_state(&a.id, &state, 5).await.unwrap();
    assert_eq!(store.sync_state(&a.id).await.unwrap(), state);
    store
        .set_sync_state(
            &a.id,
            &SyncState {
                cursor: 43,
                server_heads: vec![],
            },
            6,
        )
        .await
        .unwrap();
    assert_eq!(store.sync_state(&a.id).await.unwrap().cursor, 43);
}

#[tokio::test]
async fn pending_sync_follows_local_edits_and_server_heads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default())
        .await
        .unwrap();
    let mut a = store.create("a", 0).await.unwrap();
    let b = store.create("b", 0).await.unwrap();
    let mut pending = store.pending_sync().await.unwrap();
    pending.sort();
    let mut both = vec![a.id.clone(), b.id.clone()];
    both.sort();
    assert_eq!(pending, both, "never synced: both pending");

    let heads = a.doc.heads();
    store
        .set_sync_state(
            &a.id,
            &SyncState {
                cursor: 1,
                server_heads: heads,
            },
            1,
        )
        .await
        .unwrap();
    assert_eq!(store.pending_sync().await.unwrap(), vec![b.id.clone()]);

    a.doc.append_message(NewMessage::user("edit"), 2).unwrap();
    store.save(&mut a).await.unwrap();
    assert_eq!(
        store.pending_sync().await.unwrap().len(),
        2,
        "a local edit makes it pending again"
    );

    assert_eq!(store.meta("feed").await.unwrap(), None);
    store.set_meta("feed", 42).await.unwrap();
    assert_eq!(store.meta("feed").await.unwrap(), Some(42));
    assert!(store.contains(&a.id).await.unwrap());
    assert!(!store.contains(&DocId::random()).await.unwrap());
}
