//! Store-backed properties: a document saved after every write, compacted
//! and reloaded at random points, keeps its heads and views, and the asset
//! list's projection row stays in step with it.

use core_sync::model::AssetDoc;
use core_sync::store::{CompactionPolicy, Store, StoreOptions};
use core_sync::{DocId, LocalAsset};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::oracle::{OrFail, apply, sorted, views};
use crate::strategies::{Op, T0, config, op, text};

/// One step of the store-backed property: an operation, then a save, then
/// maybe a compaction, then maybe dropping the asset and loading it again.
#[derive(Debug, Clone)]
struct StoreStep {
    op: Op,
    dt: i64,
    compact: bool,
    reload: bool,
}

fn store_steps(max: usize) -> impl Strategy<Value = Vec<StoreStep>> {
    prop::collection::vec(
        (
            op(),
            -3i64..60,
            prop::bool::weighted(0.15),
            prop::bool::weighted(0.15),
        )
            .prop_map(|(op, dt, compact, reload)| StoreStep {
                op,
                dt,
                compact,
                reload,
            }),
        0..=max,
    )
}

fn policy() -> impl Strategy<Value = CompactionPolicy> {
    prop_oneof![
        Just(CompactionPolicy::default()),
        Just(CompactionPolicy::NEVER),
        // Compacts on nearly every save.
        Just(CompactionPolicy {
            min_incremental_bytes: 0,
            ratio_percent: 0,
            max_chunks: u64::MAX,
        }),
    ]
}

/// Runs `body` against a fresh store in a temporary directory.
fn with_store<F>(policy: CompactionPolicy, body: F) -> Result<(), TestCaseError>
where
    F: AsyncFnOnce(&Store) -> Result<(), TestCaseError>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .or_fail()?;
    let dir = tempfile::tempdir().or_fail()?;
    rt.block_on(async {
        let options = StoreOptions {
            compaction: policy,
            ..Default::default()
        };
        let store = Store::open(dir.path(), options).await.or_fail()?;
        let result = body(&store).await;
        store.close().await;
        result
    })
}

/// The store's listing row for `id` agrees with the document's summary.
async fn check_listing(store: &Store, id: &DocId, doc: &AssetDoc) -> Result<(), TestCaseError> {
    let s = doc.reader().summary().or_fail()?;
    let listing = store.list().await.or_fail()?;
    let rows: Vec<_> = listing.iter().filter(|l| &l.id == id).collect();
    prop_assert_eq!(rows.len(), 1, "one listing row per asset");
    let row = rows[0];
    prop_assert_eq!(&row.title, &s.title, "listing title");
    prop_assert_eq!(row.message_count, s.message_count, "listing message count");
    prop_assert_eq!(row.updated_at, s.updated_at, "listing updated_at");
    prop_assert_eq!(row.created_at, s.created_at, "listing created_at");
    prop_assert_eq!(
        row.cover_sha256.as_deref(),
        s.cover.as_ref().map(|c| c.sha256.as_str()),
        "listing cover"
    );
    Ok(())
}

/// Drops `asset` and loads it again, checking nothing was lost.
async fn reload(store: &Store, asset: LocalAsset) -> Result<LocalAsset, TestCaseError> {
    let mut asset = asset;
    let heads = sorted(asset.doc.heads());
    let expected = views(&asset.doc)?;
    let id = asset.id.clone();
    drop(asset);
    let mut asset = store.load(&id).await.or_fail()?;
    prop_assert_eq!(sorted(asset.doc.heads()), heads, "heads after reload");
    prop_assert_eq!(views(&asset.doc)?, expected, "views after reload");
    prop_assert!(
        !asset.doc.has_unsaved_changes(),
        "a reload has nothing to save"
    );
    let stored = store.stored_size(&id).await.or_fail()?;
    prop_assert_eq!(
        stored.chunks,
        asset.chunk_count() as u64,
        "a load reads every chunk"
    );
    Ok(asset)
}

/// Property 1: the document and its stored copy agree whatever happens
/// between writes.
async fn store_round_trip(
    store: &Store,
    title: &str,
    steps: &[StoreStep],
) -> Result<(), TestCaseError> {
    let mut now = T0;
    let mut asset = store.create(title, now).await.or_fail()?;
    let id = asset.id.clone();
    check_listing(store, &id, &asset.doc).await?;
    for step in steps {
        now += step.dt;
        apply(&mut asset.doc, &step.op, now)?;
        store.save(&mut asset).await.or_fail()?;
        prop_assert!(!asset.doc.has_unsaved_changes(), "saved");
        check_listing(store, &id, &asset.doc).await?;
        if step.compact {
            let heads = asset.doc.heads();
            store.compact(&mut asset).await.or_fail()?;
            prop_assert_eq!(asset.doc.heads(), heads, "compaction changes no document");
            prop_assert_eq!(asset.chunk_count(), 1);
            prop_assert_eq!(store.stored_size(&id).await.or_fail()?.chunks, 1);
            check_listing(store, &id, &asset.doc).await?;
        }
        if step.reload {
            asset = reload(store, asset).await?;
            check_listing(store, &id, &asset.doc).await?;
        }
    }

    let heads = sorted(asset.doc.heads());
    let expected = views(&asset.doc)?;
    prop_assert_eq!(&asset.doc.summary().or_fail()?, &expected.summary);

    let mut loaded = store.load(&id).await.or_fail()?;
    prop_assert_eq!(
        sorted(loaded.doc.heads()),
        heads.clone(),
        "heads from the store"
    );
    prop_assert_eq!(&views(&loaded.doc)?, &expected, "views from the store");
    prop_assert_eq!(&loaded.doc.summary().or_fail()?, &expected.summary);

    let mut saved = AssetDoc::load(&asset.doc.save()).or_fail()?;
    prop_assert_eq!(sorted(saved.heads()), heads, "heads from save()");
    prop_assert_eq!(&views(&saved)?, &expected, "views from save()");

    check_listing(store, &id, &loaded.doc).await?;
    let listing = store.list().await.or_fail()?;
    prop_assert_eq!(listing.len(), 1);
    Ok(())
}

/// The bug this property finds: like [`store_round_trip`], but compaction
/// may also come *before* the save of a write. `Store::compact` stores
/// unsaved changes as a chunk without updating the listing row, and the save
/// that follows then has nothing to write, so the listing stays stale.
async fn store_compact_before_save(
    store: &Store,
    steps: &[StoreStep],
) -> Result<(), TestCaseError> {
    let mut now = T0;
    let mut asset = store.create("untitled", now).await.or_fail()?;
    let id = asset.id.clone();
    for step in steps {
        now += step.dt;
        apply(&mut asset.doc, &step.op, now)?;
        if step.compact {
            store.compact(&mut asset).await.or_fail()?;
        }
        store.save(&mut asset).await.or_fail()?;
        check_listing(store, &id, &asset.doc).await?;
        if step.reload {
            asset = reload(store, asset).await?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(24))]

    /// Property 1: saved and reloaded, with compaction in between, a
    /// document keeps its heads and views, and the listing follows it.
    #[test]
    fn store_round_trips_heads_views_and_listing(
        title in text(),
        steps in store_steps(30),
        policy in policy(),
    ) {
        with_store(policy, async |store| store_round_trip(store, &title, &steps).await)?;
    }

    /// Compaction of changes not yet saved must leave the listing current.
    #[test]
    fn compacting_unsaved_changes_keeps_the_listing_current(
        steps in store_steps(12),
    ) {
        with_store(CompactionPolicy::NEVER, async |store| {
            store_compact_before_save(store, &steps).await
        })?;
    }
}
