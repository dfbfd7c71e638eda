//! Schema migration, tested against a committed schema-0 document.
//!
//! `fixtures/docs/asset-v0.automerge` holds an asset in the shape of the
//! original web plan (no `schema` key, `latestVersionId`, messages typed by
//! `type` with `inputRefs`/`outputRefs`, no cost events). It is bytes on disk
//! on purpose: the test proves today's code reads documents written by old
//! code, not by itself. `ATELIER_REGENERATE_FIXTURES=1` rewrites it.

use std::collections::HashMap;
use std::path::PathBuf;

use automerge::hydrate::Value as H;
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT};
use core_sync::DocId;
use core_sync::model::*;
use core_sync::store::{Store, StoreError, StoreOptions};

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/docs/asset-v0.automerge")
}

/// How the original plan's code would have written an asset.
fn build_v0() -> Vec<u8> {
    let mut doc = AutoCommit::new();
    let sha = |n: u8| format!("{n:02x}").repeat(32);
    let blob = |n: u8| -> H {
        HashMap::from([
            ("sha256", H::scalar(sha(n))),
            ("mime", H::scalar("image/png")),
            ("width", H::scalar(512_i64)),
            ("height", H::scalar(512_i64)),
            ("bytes", H::scalar(4096_i64)),
        ])
        .into()
    };
    let version = |id: &str, parent: Option<&str>, n: u8| -> H {
        let mut m = HashMap::from([
            ("id", H::scalar(id)),
            ("blob", blob(n)),
            ("createdAt", H::scalar(1_700_000_000_000_i64 + n as i64)),
        ]);
        if let Some(p) = parent {
            m.insert("parentVersionId", H::scalar(p));
        }
        m.into()
    };
    let v1 = "11111111111111111111111111111111";
    let v2 = "22222222222222222222222222222222";
    let message = |id: &str, ty: &str, text: &str, inputs: &[&str], outputs: &[&str]| -> H {
        HashMap::from([
            ("id", H::scalar(id)),
            ("type", H::scalar(ty)),
            ("text", H::scalar(text)),
            (
                "inputRefs",
                inputs
                    .iter()
                    .map(|s| H::scalar(*s))
                    .collect::<Vec<_>>()
                    .into(),
            ),
            (
                "outputRefs",
                outputs
                    .iter()
                    .map(|s| H::scalar(*s))
                    .collect::<Vec<_>>()
                    .into(),
            ),
            ("createdAt", H::scalar(1_700_000_000_000_i64)),
        ])
        .into()
    };
    let root: HashMap<&str, H> = HashMap::from([
        ("title", H::scalar("Legacy asset")),
        ("createdAt", H::scalar(1_700_000_000_000_i64)),
        ("latestVersionId", H::scalar(v2)),
        (
            "versions",
            HashMap::from([(v1, version(v1, None, 1)), (v2, version(v2, Some(v1), 2))]).into(),
        ),
        (
            "messages",
            vec![
                message(
                    "a0000000000000000000000000000000",
                    "prompt",
                    "a lighthouse at dusk",
                    &[],
                    &[v1],
                ),
                message(
                    "b0000000000000000000000000000000",
                    "tool",
                    "remove the background",
                    &[v1],
                    &[],
                ),
                message(
                    "c0000000000000000000000000000000",
                    "result",
                    "done",
                    &[v1],
                    &[v2],
                ),
            ]
            .into(),
        ),
    ]);
    doc.init_root_from_hydrate(&root.into()).unwrap();
    doc.commit();
    doc.save()
}

fn v0_bytes() -> Vec<u8> {
    let path = fixture_path();
    if std::env::var_os("ATELIER_REGENERATE_FIXTURES").is_some() {
        std::fs::write(&path, build_v0()).unwrap();
    }
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_v0_document_migrates_to_the_current_schema() {
    let bytes = v0_bytes();
    let raw = AssetDoc::load_raw(&bytes).unwrap();
    assert_eq!(core_sync::model::schema::declared_version(&raw).unwrap(), 0);

    let mut doc = AssetDoc::load(&bytes).unwrap();
    assert!(
        doc.has_unsaved_changes(),
        "the migration is a new change to store"
    );
    let s = doc.summary().unwrap();
    assert_eq!(s.schema_version, SCHEMA_VERSION);
    assert_eq!(s.title, "Legacy asset");
    assert_eq!(
        s.active_version_id.as_deref(),
        Some("22222222222222222222222222222222")
    );
    assert_eq!(s.cover.unwrap().sha256, "02".repeat(32));
    assert_eq!(s.updated_at, 1_700_000_000_000);

    let msgs = doc.messages().unwrap();
    assert_eq!(
        msgs.iter().map(|m| m.kind).collect::<Vec<_>>(),
        [
            MessageKind::User,
            MessageKind::ToolRequest,
            MessageKind::Result
        ]
    );
    assert_eq!(
        msgs[2].input_version_ids,
        vec!["11111111111111111111111111111111"]
    );
    assert_eq!(
        msgs[2].output_version_ids,
        vec!["22222222222222222222222222222222"]
    );
    assert_eq!(doc.versions().unwrap().len(), 2);

    // The migrated document takes every kind of write.
    doc.record_cost(
        NewCostEvent {
            provider: "google".into(),
            model: "imagen-4.0-generate-001".into(),
            units: 1.0,
            unit: "images".into(),
            cost_nano_usd: 40_000_000,
            message_id: None,
        },
        1,
    )
    .unwrap();
    doc.set_active_version("11111111111111111111111111111111", 2)
        .unwrap();
    assert_eq!(doc.cost_events().unwrap().len(), 1);

    // The past is still readable as it was.
    let v0_heads = AssetDoc::load_raw(&bytes).unwrap().get_heads();
    assert_eq!(doc.reader_at(&v0_heads).schema_version().unwrap(), 0);
}

#[test]
fn two_devices_migrating_concurrently_converge_and_keep_all_costs() {
    let bytes = v0_bytes();
    let mut a = AssetDoc::load(&bytes).unwrap();
    let mut b = AssetDoc::load(&bytes).unwrap();
    let cost = |model: &str| NewCostEvent {
        provider: "google".into(),
        model: model.into(),
        units: 1.0,
        unit: "images".into(),
        cost_nano_usd: 39_000_000,
        message_id: None,
    };
    a.record_cost(cost("a"), 10).unwrap();
    b.record_cost(cost("b"), 11).unwrap();
    let mut a2 = a.fork();
    let mut b2 = b.fork();
    a.merge(&mut b2).unwrap();
    b.merge(&mut a2).unwrap();
    let mut ha = a.heads();
    let mut hb = b.heads();
    ha.sort();
    hb.sort();
    assert_eq!(ha, hb);
    let models = |d: &AssetDoc| {
        d.cost_events()
            .unwrap()
            .into_iter()
            .map(|c| c.model)
            .collect::<Vec<_>>()
    };
    assert_eq!(models(&a), ["a", "b"]);
    assert_eq!(models(&b), ["a", "b"]);
    assert_eq!(a.messages().unwrap(), b.messages().unwrap());
    assert_eq!(a.reader().summary().unwrap(), b.reader().summary().unwrap());
}

#[tokio::test]
async fn the_store_saves_the_migration_and_refuses_damaged_documents() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default())
        .await
        .unwrap();
    let id = DocId::random();
    let migrated = AssetDoc::load(&v0_bytes()).unwrap();
    store.insert(id.clone(), migrated).await.unwrap();
    let mut asset = store.load(&id).await.unwrap();
    assert!(!asset.doc.has_unsaved_changes());
    assert_eq!(asset.summary().unwrap().schema_version, SCHEMA_VERSION);
    let listed = store.list().await.unwrap();
    assert_eq!(listed[0].title, "Legacy asset");

    // A document from a newer Atelier: a typed error naming it, nothing written.
    let mut newer = AssetDoc::create("from the future", 0);
    let mut raw = AssetDoc::load_raw(&newer.save()).unwrap();
    raw.put(ROOT, "schema", 7_i64).unwrap();
    raw.commit();
    let future_id = DocId::random();
    let good = store.create("fine", 0).await.unwrap();
    sqlx_insert_chunk(&store, &future_id, &raw.save()).await;
    match store.load(&future_id).await {
        Err(StoreError::Corrupt {
            doc_id,
            source: ModelError::UnsupportedSchema { found: 7, .. },
        }) => {
            assert_eq!(doc_id, future_id)
        }
        other => panic!("expected a schema refusal, got {:?}", other.err()),
    }
    assert!(
        store.load(&good.id).await.is_ok(),
        "other documents still load"
    );
}

/// Writes a raw chunk the way an older or newer build would have.
async fn sqlx_insert_chunk(store: &Store, id: &DocId, bytes: &[u8]) {
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new().filename(store.dir().join("atelier.db")),
    )
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO documents (doc_id, title, created_at, updated_at, message_count, schema_version)
         VALUES (?, 'raw', 0, 0, 0, 0)",
    )
    .bind(id.as_str())
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO chunks (doc_id, kind, bytes) VALUES (?, 0, ?)")
        .bind(id.as_str())
        .bind(bytes)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}
