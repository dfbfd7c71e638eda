//! The local store: asset documents as Automerge chunks in SQLite, the
//! listing projection, per-document sync state, and the blob index.
//!
//! Durability: SQLite in WAL mode. By default ([`Durability::Full`]) the
//! WAL is fsynced before a local edit's commit returns, so an acknowledged
//! edit survives a crash of the process, of the operating system and a
//! power cut (as far as the disk honours fsync); changes pulled from the
//! server commit without the fsync (the server has them).
//! [`Durability::Normal`] skips every fsync: a crash or kill of the process
//! still loses nothing, a power cut may lose the last commits.
//! ARCHITECTURE.md gives the numbers behind the default. A write the disk
//! has no room for (or a read-only store) is [`StoreError::DiskFull`] /
//! [`StoreError::ReadOnly`], naming the store.
//!
//! An edit is one INSERT of a chunk on a dedicated writer connection; a
//! trigger updates the listing projection in the same statement, so the two
//! always change together and an edit costs one round trip. Compaction writes the snapshot and deletes exactly the
//! chunks it folded in, in one transaction; chunks written meanwhile (by
//! another process sharing the store) are never touched.

mod blob_index;
mod chunks;
mod compaction;
mod durability;
mod error;
mod outbox;
mod sync_state;
mod trash;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use automerge::ChangeHash;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Row};
use tokio::sync::Mutex;

pub use compaction::CompactionPolicy;
pub use durability::Durability;
pub use error::{StoreError, StoreResult};
pub use outbox::{Outbox, RefusedBlob, RefusedDoc, RoundRecord};
pub use sync_state::SyncState;
pub use trash::{Collected, Dropped, TrashedAsset};

use crate::blob::BlobStore;
use crate::ids::DocId;
use crate::model::{AssetDoc, AssetSummary, Millis, ModelError};
use chunks::{Origin, Projection, decode_heads, encode_heads, insert_chunk};

const SNAPSHOT: i64 = 0;
const INCREMENTAL: i64 = 1;

#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    pub durability: Durability,
    pub compaction: CompactionPolicy,
}

/// One row of the asset list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetListing {
    pub id: DocId,
    pub title: String,
    pub cover_sha256: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub message_count: u64,
}

/// A loaded asset together with the store's bookkeeping for it.
pub struct LocalAsset {
    pub id: DocId,
    pub doc: AssetDoc,
    /// The chunk rows this copy is made of (loaded or written by it): the
    /// only rows its compaction may delete.
    chunk_ids: Vec<i64>,
    snapshot_bytes: u64,
    incremental_bytes: u64,
}

/// Sizes of one stored document, for benchmarks and `status` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSize {
    pub chunks: u64,
    pub bytes: u64,
}

#[derive(Clone)]
pub struct Store {
    /// Readers (WAL lets them run beside the writer).
    pool: SqlitePool,
    /// The one connection that writes. A dedicated connection instead of a
    /// pool checkout saves round trips to sqlx's worker thread, which cost
    /// more than SQLite's own commit.
    writer: Arc<Mutex<SqliteConnection>>,
    /// The writer commits without fsync at the moment (`synchronous=NORMAL`
    /// for changes pulled from the server, under [`Durability::Full`]).
    /// Read and changed only while holding `writer`.
    relaxed: Arc<AtomicBool>,
    blobs: BlobStore,
    dir: PathBuf,
    options: StoreOptions,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`: `dir/atelier.db` and
    /// the blob directory `dir/blobs`, owner-only (loose ones tightened; see
    /// [`crate::private_fs`]).
    ///
    /// A directory that cannot be written (a read-only file system) is
    /// [`StoreError::ReadOnly`] naming it; a full disk that keeps the
    /// database from opening, [`StoreError::DiskFull`].
    pub async fn open(dir: impl AsRef<Path>, options: StoreOptions) -> StoreResult<Store> {
        let dir = dir.as_ref();
        Self::open_in(dir, options).await.map_err(|e| {
            let e = e.at(dir);
            let unwritable = tempfile::tempfile_in(dir).is_err_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
                )
            });
            match e {
                StoreError::Db(_) | StoreError::Migrate(_) | StoreError::Io { .. }
                    if unwritable =>
                {
                    StoreError::ReadOnly {
                        path: Some(dir.to_owned()),
                    }
                }
                e => e,
            }
        })
    }

    async fn open_in(dir: &Path, options: StoreOptions) -> StoreResult<Store> {
        let dir = dir.to_owned();
        let db = dir.join("atelier.db");
        crate::private_fs::create_dir(&dir)
            .and_then(|()| crate::private_fs::database(&db))
            .map_err(|source| StoreError::Io {
                path: dir.clone(),
                source,
            })?;
        let connect = SqliteConnectOptions::from_str("sqlite://")?
            .filename(&db)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match options.durability {
                Durability::Normal => SqliteSynchronous::Normal,
                Durability::Full => SqliteSynchronous::Full,
            })
            .busy_timeout(Duration::from_secs(10))
            // Pages freed by compaction go back to the file system (takes
            // effect on a new database; see `compact`).
            .auto_vacuum(SqliteAutoVacuum::Incremental)
            .foreign_keys(true);
        // Connecting (WAL on a new file) and migrating, one opener at a time.
        let turn = crate::open_lock::take(&db)
            .await
            .map_err(|source| StoreError::Io {
                path: db.clone(),
                source,
            })?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(connect.clone())
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let writer = SqliteConnection::connect_with(&connect).await?;
        drop(turn);
        let blobs = BlobStore::open(dir.join("blobs"))?;
        Ok(Store {
            pool,
            writer: Arc::new(Mutex::new(writer)),
            relaxed: Arc::new(AtomicBool::new(false)),
            blobs,
            dir,
            options,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Closes the connections, checkpointing the WAL.
    pub async fn close(self) {
        if let Ok(writer) = Arc::try_unwrap(self.writer) {
            let _ = writer.into_inner().close().await;
        }
        self.pool.close().await;
    }

    /// Creates a new asset and stores it.
    pub async fn create(&self, title: &str, now: Millis) -> StoreResult<LocalAsset> {
        let doc = AssetDoc::create(title, now);
        self.insert(DocId::random(), doc).await
    }

    /// Stores a document under `id` as a fresh snapshot (new assets, imports).
    /// An id already in the store is refused: merge into it instead.
    pub async fn insert(&self, id: DocId, doc: AssetDoc) -> StoreResult<LocalAsset> {
        self.insert_as(id, doc, Origin::Local)
            .await
            .map_err(|e| e.at(&self.dir))
    }

    /// [`Store::insert`] of a document pulled from the sync server (which
    /// therefore has all of it: nothing to push).
    pub async fn insert_pulled(&self, id: DocId, doc: AssetDoc) -> StoreResult<LocalAsset> {
        self.insert_as(id, doc, Origin::Server)
            .await
            .map_err(|e| e.at(&self.dir))
    }

    async fn insert_as(
        &self,
        id: DocId,
        mut doc: AssetDoc,
        origin: Origin,
    ) -> StoreResult<LocalAsset> {
        let summary = doc.summary().map_err(|source| StoreError::Model {
            doc_id: id.clone(),
            source,
        })?;
        let bytes = doc.save();
        let heads = doc.heads();
        let mut writer = self.writer.lock().await;
        self.commit_level(&mut writer, origin).await?;
        // IMMEDIATE: the transaction reads before it writes, and a deferred
        // one would fail at once (SQLITE_BUSY, no busy wait) if another
        // process wrote in between.
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        let exists = sqlx::query("SELECT 1 FROM documents WHERE doc_id = ?")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(StoreError::Model {
                doc_id: id,
                source: ModelError::Invalid("an asset with this id already exists".into()),
            });
        }
        sqlx::query(
            "INSERT INTO documents (doc_id, title, cover_sha256, cover_mime, created_at, updated_at,
                 message_count, schema_version, snapshot_bytes, heads,
                 deleted_at, deleted_by, edited_after, retained_since)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id.as_str())
        .bind(&summary.title)
        .bind(summary.cover.as_ref().map(|c| c.sha256.as_str()))
        .bind(summary.cover.as_ref().map(|c| c.mime.as_str()))
        .bind(summary.created_at)
        .bind(summary.updated_at)
        .bind(summary.message_count as i64)
        .bind(summary.schema_version as i64)
        .bind(bytes.len() as i64)
        .bind(encode_heads(&heads))
        .bind(summary.deleted.as_ref().map(|d| d.at))
        .bind(summary.deleted.as_ref().map(|d| d.by.as_str()))
        .bind(summary.deleted.as_ref().is_some_and(|d| d.edited_after))
        .bind(summary.deleted.as_ref().map(|d| d.retained_since()))
        .execute(&mut *tx)
        .await?;
        let chunk_id = insert_chunk(&mut tx, &id, SNAPSHOT, &bytes, None, origin).await?;
        tx.commit().await?;
        doc.mark_saved(heads);
        Ok(LocalAsset {
            id,
            doc,
            chunk_ids: vec![chunk_id],
            snapshot_bytes: bytes.len() as u64,
            incremental_bytes: 0,
        })
    }

    /// Makes every change of `asset` durable: one chunk plus the projection
    /// row, in one transaction. When this returns, the edit is acknowledged.
    /// Compacts afterwards if the policy says so. A full disk or a
    /// read-only store is [`StoreError::DiskFull`] / [`StoreError::ReadOnly`]:
    /// the changes stay unsaved in `asset`, and saving again once there is
    /// room stores them.
    pub async fn save(&self, asset: &mut LocalAsset) -> StoreResult<()> {
        self.save_as(asset, Origin::Local)
            .await
            .map_err(|e| e.at(&self.dir))
    }

    /// [`Store::save`] of changes pulled from the sync server (nothing of
    /// them to push back). The asset must hold no unsaved local edits.
    pub async fn save_pulled(&self, asset: &mut LocalAsset) -> StoreResult<()> {
        self.save_as(asset, Origin::Server)
            .await
            .map_err(|e| e.at(&self.dir))
    }

    async fn save_as(&self, asset: &mut LocalAsset, origin: Origin) -> StoreResult<()> {
        if !self.write_unsaved(asset, origin).await? {
            return Ok(());
        }
        if self.options.compaction.should_compact(
            asset.snapshot_bytes,
            asset.incremental_bytes,
            asset.chunk_ids.len() as u64,
        ) {
            // The edit is already durable: a failed compaction only means the
            // chunks stay as they are until the next attempt.
            if let Err(e) = self.compact(asset).await {
                tracing::warn!(doc = %asset.id, error = %e, "compaction failed; will retry later");
            }
        }
        Ok(())
    }

    /// Writes the asset's unsaved changes as one incremental chunk together
    /// with its projection row. Returns whether there was anything to write.
    async fn write_unsaved(&self, asset: &mut LocalAsset, origin: Origin) -> StoreResult<bool> {
        let (bytes, heads) = asset.doc.unsaved_changes();
        if bytes.is_empty() {
            return Ok(false);
        }
        let summary = asset.doc.summary().map_err(|source| StoreError::Model {
            doc_id: asset.id.clone(),
            source,
        })?;
        let projection = Projection::of(&summary, &heads);
        let mut writer = self.writer.lock().await;
        self.commit_level(&mut writer, origin).await?;
        let chunk_id = insert_chunk(
            &mut writer,
            &asset.id,
            INCREMENTAL,
            &bytes,
            Some(&projection),
            origin,
        )
        .await
        .map_err(|e| match e {
            StoreError::Db(sqlx::Error::Database(d))
                if d.message().contains("unknown document") =>
            {
                StoreError::NotFound(asset.id.clone())
            }
            e => e,
        })?;
        drop(writer);
        asset.doc.mark_saved(heads);
        asset.chunk_ids.push(chunk_id);
        asset.incremental_bytes += bytes.len() as u64;
        Ok(true)
    }

    /// Loads an asset from its chunks. A damaged asset is an error naming it;
    /// nothing is written. A document of an older schema is migrated and the
    /// migration saved.
    pub async fn load(&self, id: &DocId) -> StoreResult<LocalAsset> {
        let rows = sqlx::query(
            "SELECT chunk_id, kind, bytes FROM chunks WHERE doc_id = ? ORDER BY kind, chunk_id",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound(id.clone()));
        }
        let mut chunk_ids = Vec::with_capacity(rows.len());
        let mut chunks = Vec::with_capacity(rows.len());
        let (mut snapshot_bytes, mut incremental_bytes) = (0u64, 0u64);
        for row in &rows {
            let bytes: &[u8] = row.try_get("bytes")?;
            if row.try_get::<i64, _>("kind")? == SNAPSHOT {
                snapshot_bytes += bytes.len() as u64;
            } else {
                incremental_bytes += bytes.len() as u64;
            }
            chunk_ids.push(row.try_get::<i64, _>("chunk_id")?);
            chunks.push(bytes);
        }
        let doc = AssetDoc::load_chunks(chunks).map_err(|source| StoreError::Corrupt {
            doc_id: id.clone(),
            source,
        })?;
        let mut asset = LocalAsset {
            id: id.clone(),
            doc,
            chunk_ids,
            snapshot_bytes,
            incremental_bytes,
        };
        if asset.doc.has_unsaved_changes() {
            // The load migrated an old schema: make that durable now.
            self.save(&mut asset).await?;
        }
        Ok(asset)
    }

    /// Brings a loaded asset up to date with what other writers (the sync
    /// client) stored since it was loaded: applies only the chunks it has
    /// not seen, instead of loading the whole document again. Returns
    /// whether anything was applied. Bytes are parsed strictly; a damaged
    /// chunk is an error naming the asset and changes nothing.
    pub async fn refresh(&self, asset: &mut LocalAsset) -> StoreResult<bool> {
        let seen = asset.chunk_ids.iter().copied().max().unwrap_or(0);
        let rows = sqlx::query(
            "SELECT chunk_id, kind, bytes FROM chunks WHERE doc_id = ? AND chunk_id > ? ORDER BY chunk_id",
        )
        .bind(asset.id.as_str())
        .bind(seen)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(false);
        }
        let corrupt = |source| StoreError::Corrupt {
            doc_id: asset.id.clone(),
            source,
        };
        // Every chunk is checked before any is applied.
        for row in &rows {
            crate::model::check_chunks(row.try_get("bytes")?).map_err(corrupt)?;
        }
        let up_to_date = !asset.doc.has_unsaved_changes();
        for row in &rows {
            let bytes: &[u8] = row.try_get("bytes")?;
            asset
                .doc
                .apply_incremental(bytes)
                .map_err(|source| StoreError::Corrupt {
                    doc_id: asset.id.clone(),
                    source,
                })?;
            if row.try_get::<i64, _>("kind")? == SNAPSHOT {
                asset.snapshot_bytes += bytes.len() as u64;
            } else {
                asset.incremental_bytes += bytes.len() as u64;
            }
            asset.chunk_ids.push(row.try_get::<i64, _>("chunk_id")?);
        }
        if up_to_date {
            // Everything applied came from the store: it is durable.
            let heads = asset.doc.heads();
            asset.doc.mark_saved(heads);
        }
        Ok(true)
    }

    /// Folds all of this asset's chunks into one snapshot. Crash-safe: the
    /// snapshot and the deletion of exactly the folded chunks commit together.
    pub async fn compact(&self, asset: &mut LocalAsset) -> StoreResult<()> {
        // Changes not yet stored would be folded into the snapshot without
        // their own chunk or projection update; store them first.
        self.write_unsaved(asset, Origin::Local).await?;
        let snapshot = asset.doc.save();
        let mut writer = self.writer.lock().await;
        // IMMEDIATE: the transaction reads before it writes, and a deferred
        // one would fail at once (SQLITE_BUSY, no busy wait) if another
        // process wrote in between.
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        // Delete exactly the folded rows: never a range, which could take a
        // chunk another process wrote meanwhile.
        let folded = serde_json::to_string(&asset.chunk_ids).expect("ids serialize");
        // The snapshot is on the server only if everything folded into it is.
        let all_pushed: bool = sqlx::query_scalar(
            "SELECT COALESCE(MIN(pushed), 0) FROM chunks
             WHERE doc_id = ? AND chunk_id IN (SELECT value FROM json_each(?))",
        )
        .bind(asset.id.as_str())
        .bind(&folded)
        .fetch_one(&mut *tx)
        .await?;
        let origin = if all_pushed {
            Origin::Server
        } else {
            Origin::Local
        };
        let new_id = insert_chunk(&mut tx, &asset.id, SNAPSHOT, &snapshot, None, origin).await?;
        sqlx::query(
            "DELETE FROM chunks WHERE doc_id = ? AND chunk_id IN (SELECT value FROM json_each(?))",
        )
        .bind(asset.id.as_str())
        .bind(folded)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE documents SET snapshot_bytes = ?,
                 incremental_bytes = (SELECT COALESCE(SUM(length(bytes)), 0) FROM chunks WHERE doc_id = ?1 AND kind = 1),
                 incremental_count = (SELECT COUNT(*) FROM chunks WHERE doc_id = ?1 AND kind = 1)
             WHERE doc_id = ?1",
        )
        .bind(snapshot.len() as i64)
        .bind(asset.id.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        // Return the folded chunks' pages to the file system.
        sqlx::query("PRAGMA incremental_vacuum")
            .execute(&mut *writer)
            .await?;
        asset.chunk_ids = vec![new_id];
        asset.snapshot_bytes = snapshot.len() as u64;
        asset.incremental_bytes = 0;
        Ok(())
    }

    /// The asset list (assets in the trash left out), most recently updated
    /// first, from the projection only.
    pub async fn list(&self) -> StoreResult<Vec<AssetListing>> {
        let rows = sqlx::query(
            "SELECT doc_id, title, cover_sha256, created_at, updated_at, message_count
             FROM documents WHERE deleted_at IS NULL ORDER BY updated_at DESC, doc_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| -> StoreResult<AssetListing> {
                let id: &str = r.try_get("doc_id")?;
                Ok(AssetListing {
                    id: id
                        .parse()
                        .map_err(|e| StoreError::Db(sqlx::Error::Decode(Box::new(e))))?,
                    title: r.try_get("title")?,
                    cover_sha256: r.try_get("cover_sha256")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                    message_count: r.try_get::<i64, _>("message_count")?.max(0) as u64,
                })
            })
            .collect()
    }

    /// Every stored asset id, those in the trash included.
    pub async fn ids(&self) -> StoreResult<Vec<DocId>> {
        let rows = sqlx::query("SELECT doc_id FROM documents ORDER BY doc_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| parse_id(r.try_get("doc_id")?))
            .collect()
    }

    /// How many chunks and bytes an asset occupies.
    pub async fn stored_size(&self, id: &DocId) -> StoreResult<StoredSize> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(length(bytes)), 0) AS b FROM chunks WHERE doc_id = ?",
        )
        .bind(id.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(StoredSize {
            chunks: row.try_get::<i64, _>("n")? as u64,
            bytes: row.try_get::<i64, _>("b")? as u64,
        })
    }

    /// The heads the listing row recorded for an asset at its last write
    /// (what `verify` checks a reload against).
    pub async fn recorded_heads(&self, id: &DocId) -> StoreResult<Vec<ChangeHash>> {
        let row = sqlx::query("SELECT heads FROM documents WHERE doc_id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.clone()))?;
        let heads: &[u8] = row.try_get("heads")?;
        Ok(decode_heads(heads).map_err(|e| sqlx::Error::Decode(e.into()))?)
    }

    /// Whether an asset is in the store.
    pub async fn contains(&self, id: &DocId) -> StoreResult<bool> {
        Ok(sqlx::query("SELECT 1 FROM documents WHERE doc_id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }
}

impl LocalAsset {
    pub fn summary(&mut self) -> Result<AssetSummary, ModelError> {
        self.doc.summary()
    }

    /// How many stored chunks this copy knows of.
    pub fn chunk_count(&self) -> usize {
        self.chunk_ids.len()
    }

    /// The bytes of the chunks this copy is made of.
    pub fn stored_bytes(&self) -> u64 {
        self.snapshot_bytes + self.incremental_bytes
    }
}

/// A document id read back from the database.
fn parse_id(id: &str) -> StoreResult<DocId> {
    id.parse()
        .map_err(|e| StoreError::Db(sqlx::Error::Decode(Box::new(e))))
}
