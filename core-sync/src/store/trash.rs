//! The trash on a device, and dropping what the server purged.
//!
//! An asset in the trash is an ordinary document whose tombstone the
//! listing row mirrors (`deleted_at`, kept by the same trigger as the rest
//! of the projection): [`Store::list`] leaves it out, [`Store::list_trash`]
//! shows it, and it syncs, exports and verifies like any other. It leaves
//! the device only when the server says it purged it
//! ([`Store::drop_purged`]): the document's rows go in one transaction, and
//! the blobs it named are queued in the same transaction for
//! [`Store::collect_blobs`], which deletes each one no remaining document
//! names. Which blobs a document names is recorded lazily (`blob_refs`,
//! recomputed only for documents whose heads moved since), so the edit path
//! pays nothing for it. A crash anywhere leaves either the whole document
//! or none of it, and queued blobs are collected by the next run.

use std::collections::BTreeSet;

use sqlx::Row;

use super::chunks::encode_heads;
use super::{LocalAsset, Store, StoreError, StoreResult, parse_id};
use crate::ids::DocId;
use crate::model::{Millis, NewMessage};

/// One row of the trash view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrashedAsset {
    pub id: DocId,
    pub title: String,
    pub cover_sha256: Option<String>,
    pub deleted_at: Millis,
    /// The deleting device's name.
    pub deleted_by: String,
    /// Changed after (or without seeing) the deletion: see
    /// `model::Deletion::edited_after`.
    pub edited_after: bool,
    /// Retention runs from here (`model::Deletion::retained_since`).
    pub retained_since: Millis,
}

/// What [`Store::drop_purged`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    /// The document was not on this device.
    Absent,
    /// The document and its rows are gone.
    Dropped,
    /// This device held edits the server never saw, made without seeing the
    /// deletion: they live on in a new asset (its id), and the purged one
    /// is gone.
    Recovered(DocId),
}

/// What [`Store::collect_blobs`] freed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    pub blobs: u64,
    pub bytes: u64,
}

impl Store {
    /// The assets in the trash, most recently deleted first.
    pub async fn list_trash(&self) -> StoreResult<Vec<TrashedAsset>> {
        let rows = sqlx::query(
            "SELECT doc_id, title, cover_sha256, deleted_at, deleted_by, edited_after, retained_since
             FROM documents WHERE deleted_at IS NOT NULL ORDER BY deleted_at DESC, doc_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| -> StoreResult<TrashedAsset> {
                let deleted_at: Millis = r.try_get("deleted_at")?;
                Ok(TrashedAsset {
                    id: parse_id(r.try_get("doc_id")?)?,
                    title: r.try_get("title")?,
                    cover_sha256: r.try_get("cover_sha256")?,
                    deleted_at,
                    deleted_by: r
                        .try_get::<Option<String>, _>("deleted_by")?
                        .unwrap_or_default(),
                    edited_after: r.try_get::<i64, _>("edited_after")? != 0,
                    retained_since: r
                        .try_get::<Option<Millis>, _>("retained_since")?
                        .unwrap_or(deleted_at),
                })
            })
            .collect()
    }

    /// The server purged `id` (it stayed in the trash past the retention
    /// period): the document leaves this device, and its blobs are queued
    /// for [`Self::collect_blobs`]. If this device holds changes the server
    /// never saw and it never saw the deletion (it was offline all that
    /// time), those edits are not thrown away: the document is kept as a
    /// new asset with a note saying why, and that one syncs as new.
    pub async fn drop_purged(&self, id: &DocId, now: Millis) -> StoreResult<Dropped> {
        let mut asset = match self.load(id).await {
            Ok(asset) => asset,
            Err(StoreError::NotFound(_)) => return Ok(Dropped::Absent),
            // A document that does not load is dropped all the same: the
            // server holds nothing of it any more either.
            Err(StoreError::Corrupt { .. }) => {
                self.drop_rows(id, &BTreeSet::new()).await?;
                return Ok(Dropped::Dropped);
            }
            Err(e) => return Err(e),
        };
        let refs = asset.doc.blob_refs().map_err(|source| StoreError::Model {
            doc_id: id.clone(),
            source,
        })?;
        let deleted_here = asset
            .summary()
            .map_err(|source| StoreError::Model {
                doc_id: id.clone(),
                source,
            })?
            .deleted
            .is_some();
        let unpushed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM chunks WHERE doc_id = ? AND pushed = 0)",
        )
        .bind(id.as_str())
        .fetch_one(&self.pool)
        .await?;
        let mut outcome = Dropped::Dropped;
        if unpushed && !deleted_here {
            outcome = Dropped::Recovered(self.recover(&mut asset, now).await?);
        }
        self.drop_rows(id, &refs).await?;
        Ok(outcome)
    }

    /// Keeps a purged document's unsynced edits as a new asset.
    async fn recover(&self, asset: &mut LocalAsset, now: Millis) -> StoreResult<DocId> {
        let mut doc = asset.doc.fork();
        doc.append_message(
            NewMessage::system(
                "Recovered: this asset was deleted on another device and purged from the \
                 server while this device edited it offline; the edits are kept here.",
            ),
            now,
        )
        .map_err(|source| StoreError::Model {
            doc_id: asset.id.clone(),
            source,
        })?;
        let id = DocId::random();
        self.insert(id.clone(), doc).await?;
        tracing::warn!(purged = %asset.id, recovered = %id, "kept offline edits of a purged asset as a new asset");
        Ok(id)
    }

    /// Deletes every row of `id` and queues `refs` for collection, in one
    /// transaction.
    async fn drop_rows(&self, id: &DocId, refs: &BTreeSet<String>) -> StoreResult<()> {
        let mut writer = self.writer.lock().await;
        let mut tx = sqlx::Connection::begin(&mut *writer).await?;
        for sql in [
            "DELETE FROM chunks WHERE doc_id = ?",
            "DELETE FROM sync_state WHERE doc_id = ?",
            "DELETE FROM blob_refs WHERE doc_id = ?",
            "DELETE FROM blob_refs_at WHERE doc_id = ?",
            "DELETE FROM documents WHERE doc_id = ?",
        ] {
            sqlx::query(sql).bind(id.as_str()).execute(&mut *tx).await?;
        }
        for sha in refs {
            sqlx::query("INSERT OR IGNORE INTO blob_gc (sha256) VALUES (?)")
                .bind(sha)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        // Return the dropped document's pages to the file system.
        sqlx::query("PRAGMA incremental_vacuum")
            .execute(&mut *writer)
            .await?;
        Ok(())
    }

    /// Deletes the queued blobs that no document on this device names any
    /// more (a blob shared with a live asset stays), and returns what that
    /// freed. Safe to run at any time and after a crash.
    pub async fn collect_blobs(&self) -> StoreResult<Collected> {
        let queued: Vec<String> = sqlx::query_scalar("SELECT sha256 FROM blob_gc ORDER BY sha256")
            .fetch_all(&self.pool)
            .await?;
        if queued.is_empty() {
            return Ok(Collected::default());
        }
        self.refresh_blob_refs().await?;
        let mut freed = Collected::default();
        for sha in queued {
            let used: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM blob_refs WHERE sha256 = ?)")
                    .bind(&sha)
                    .fetch_one(&self.pool)
                    .await?;
            if !used {
                let blobs = self.blobs.clone();
                let name = sha.clone();
                let bytes = tokio::task::spawn_blocking(move || blobs.remove(&name))
                    .await
                    .expect("blob remover panicked")?;
                sqlx::query("DELETE FROM blobs WHERE sha256 = ?")
                    .bind(&sha)
                    .execute(&mut *self.writer.lock().await)
                    .await?;
                freed.blobs += u64::from(bytes > 0);
                freed.bytes += bytes;
            }
            sqlx::query("DELETE FROM blob_gc WHERE sha256 = ?")
                .bind(&sha)
                .execute(&mut *self.writer.lock().await)
                .await?;
        }
        Ok(freed)
    }

    /// Records the blobs of every document whose heads moved since its
    /// blobs were last recorded (all of them, the first time).
    async fn refresh_blob_refs(&self) -> StoreResult<()> {
        let stale = sqlx::query(
            "SELECT d.doc_id FROM documents d LEFT JOIN blob_refs_at r ON r.doc_id = d.doc_id
             WHERE r.heads IS NULL OR r.heads != d.heads",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in stale {
            let id = parse_id(row.try_get("doc_id")?)?;
            let mut asset = match self.load(&id).await {
                Ok(a) => a,
                // Gone meanwhile: nothing to record.
                Err(StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            let refs = asset.doc.blob_refs().map_err(|source| StoreError::Model {
                doc_id: id.clone(),
                source,
            })?;
            let heads = encode_heads(&asset.doc.heads());
            let mut writer = self.writer.lock().await;
            let mut tx = sqlx::Connection::begin(&mut *writer).await?;
            // Versions are never removed, so references only grow.
            for sha in &refs {
                sqlx::query("INSERT OR IGNORE INTO blob_refs (doc_id, sha256) VALUES (?, ?)")
                    .bind(id.as_str())
                    .bind(sha)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO blob_refs_at (doc_id, heads) VALUES (?, ?)
                 ON CONFLICT (doc_id) DO UPDATE SET heads = excluded.heads",
            )
            .bind(id.as_str())
            .bind(heads)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Rows left without their document (a half-done drop would leave
    /// some; a whole one never does), for `verify`.
    pub async fn orphan_rows(&self) -> StoreResult<Vec<String>> {
        let mut out = Vec::new();
        let orphans = |table: &str| {
            format!(
                "SELECT DISTINCT t.doc_id FROM {table} t
                 WHERE NOT EXISTS (SELECT 1 FROM documents d WHERE d.doc_id = t.doc_id)"
            )
        };
        for table in ["chunks", "sync_state", "blob_refs", "blob_refs_at"] {
            let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(orphans(table)))
                .fetch_all(&self.pool)
                .await?;
            out.extend(
                ids.into_iter()
                    .map(|id| format!("{table} row of document {id}")),
            );
        }
        Ok(out)
    }
}
