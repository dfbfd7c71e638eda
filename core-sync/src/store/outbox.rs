//! What this device still owes the sync server, read straight from storage:
//! the chunks of a document the server does not hold yet (so a push sends
//! stored bytes and never loads the document), and the images it has not
//! taken (uploaded before the documents that need them, unless it refused
//! them: then they wait, with the reason, until the refusal may change),
//! and the documents it refused, likewise set aside.

use automerge::ChangeHash;
use sqlx::Row;

use super::chunks::encode_heads;
use super::{Store, StoreResult};
use crate::ids::DocId;
use crate::model::Millis;

/// The chunks of one document to push, in load order (a snapshot first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbox {
    pub chunk_ids: Vec<i64>,
    /// The chunks, concatenated: what the push carries.
    pub bytes: Vec<u8>,
}

impl Outbox {
    pub fn is_empty(&self) -> bool {
        self.chunk_ids.is_empty()
    }
}

/// What a sync round learned, written in one commit once the documents it
/// pulled are saved: the server heads of each document pushed or pulled,
/// which pushed chunks the server now holds (or that it lacks something),
/// and the feed cursor.
#[derive(Debug, Clone, Default)]
pub struct RoundRecord {
    pub server_heads: Vec<(DocId, Vec<ChangeHash>)>,
    /// Documents and the chunk ids the server acknowledged.
    pub pushed: Vec<(DocId, Vec<i64>)>,
    /// Documents whose every chunk must be sent again.
    pub unpushed: Vec<DocId>,
    /// Meta keys and their new values (the feed cursor, its epoch).
    pub meta: Vec<(&'static str, i64)>,
}

/// An image the sync server would not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedBlob {
    pub sha256: String,
    pub reason: String,
    pub at: Millis,
}

/// A document the sync server would not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedDoc {
    pub doc_id: DocId,
    pub reason: String,
    pub at: Millis,
}

impl Store {
    /// The chunks of `id` the server does not hold yet.
    pub async fn outbox(&self, id: &DocId) -> StoreResult<Outbox> {
        let rows = sqlx::query(
            "SELECT chunk_id, bytes FROM chunks WHERE doc_id = ? AND pushed = 0
             ORDER BY kind, chunk_id",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Outbox::default();
        for row in &rows {
            out.chunk_ids.push(row.try_get("chunk_id")?);
            out.bytes
                .extend_from_slice(row.try_get::<&[u8], _>("bytes")?);
        }
        Ok(out)
    }

    /// Writes what a round learned, in one transaction.
    pub async fn record_round(&self, r: &RoundRecord, now: Millis) -> StoreResult<()> {
        let mut writer = self.writer.lock().await;
        let mut tx = sqlx::Connection::begin(&mut *writer).await?;
        for (id, heads) in &r.server_heads {
            sqlx::query(
                "INSERT INTO sync_state (doc_id, cursor, server_heads, updated_at)
                 VALUES (?, 0, ?, ?)
                 ON CONFLICT (doc_id) DO UPDATE SET server_heads = excluded.server_heads,
                     updated_at = excluded.updated_at",
            )
            .bind(id.as_str())
            .bind(encode_heads(heads))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        for (id, chunk_ids) in &r.pushed {
            sqlx::query("DELETE FROM refused_docs WHERE doc_id = ?")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            if chunk_ids.is_empty() {
                continue;
            }
            sqlx::query(
                "UPDATE chunks SET pushed = 1
                 WHERE doc_id = ? AND chunk_id IN (SELECT value FROM json_each(?))",
            )
            .bind(id.as_str())
            .bind(serde_json::to_string(chunk_ids).expect("ids serialize"))
            .execute(&mut *tx)
            .await?;
        }
        for id in &r.unpushed {
            sqlx::query("UPDATE chunks SET pushed = 0 WHERE doc_id = ?")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        for (key, value) in &r.meta {
            set_meta_in(&mut tx, key, *value).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Forgets everything known of the sync server, in one commit, and
    /// sets `meta` (a cursor back at 0, a new epoch): every chunk and every
    /// image counts as not pushed, no server heads are known. What a
    /// device does when the server's data turns out to be another lineage
    /// (restored from an older copy). Returns every document, all of which
    /// are to be pushed again.
    pub async fn forget_server(&self, meta: &[(&'static str, i64)]) -> StoreResult<Vec<DocId>> {
        let mut writer = self.writer.lock().await;
        let mut tx = sqlx::Connection::begin(&mut *writer).await?;
        sqlx::query("UPDATE chunks SET pushed = 0 WHERE pushed != 0")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sync_state")
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE blobs SET uploaded = 0 WHERE uploaded != 0")
            .execute(&mut *tx)
            .await?;
        for (key, value) in meta {
            set_meta_in(&mut tx, key, *value).await?;
        }
        let rows = sqlx::query("SELECT doc_id FROM documents ORDER BY doc_id")
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                let id: &str = r.try_get("doc_id")?;
                id.parse()
                    .map_err(|e| super::StoreError::Db(sqlx::Error::Decode(Box::new(e))))
            })
            .collect()
    }

    /// Images the server does not hold yet (name, type, size): every one
    /// not uploaded, except those refused less than `retry_after` ago.
    pub async fn blobs_to_upload(
        &self,
        now: Millis,
        retry_after: Millis,
    ) -> StoreResult<Vec<(String, String, u64)>> {
        let rows = sqlx::query(
            "SELECT sha256, mime, bytes FROM blobs
             WHERE uploaded = 0 AND (refused IS NULL OR refused_at <= ?)
             ORDER BY created_at, sha256",
        )
        .bind(now.saturating_sub(retry_after))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("sha256")?,
                    r.try_get("mime")?,
                    r.try_get::<i64, _>("bytes")?.max(0) as u64,
                ))
            })
            .collect()
    }

    /// The server refused an image, saying why.
    pub async fn mark_blob_refused(
        &self,
        sha256: &str,
        reason: &str,
        now: Millis,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE blobs SET refused = ?, refused_at = ? WHERE sha256 = ?")
            .bind(reason)
            .bind(now)
            .bind(sha256)
            .execute(&mut *self.writer.lock().await)
            .await?;
        Ok(())
    }

    /// Images the server refused and does not hold.
    pub async fn refused_blobs(&self) -> StoreResult<Vec<RefusedBlob>> {
        let rows = sqlx::query(
            "SELECT sha256, refused, refused_at FROM blobs
             WHERE uploaded = 0 AND refused IS NOT NULL ORDER BY sha256",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RefusedBlob {
                    sha256: r.try_get("sha256")?,
                    reason: r.try_get("refused")?,
                    at: r.try_get("refused_at")?,
                })
            })
            .collect()
    }

    /// The server refused `id`'s push, saying why.
    pub async fn mark_doc_refused(&self, id: &DocId, reason: &str, now: Millis) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO refused_docs (doc_id, reason, refused_at) VALUES (?, ?, ?)
             ON CONFLICT (doc_id) DO UPDATE SET reason = excluded.reason,
                 refused_at = excluded.refused_at",
        )
        .bind(id.as_str())
        .bind(reason)
        .bind(now)
        .execute(&mut *self.writer.lock().await)
        .await?;
        Ok(())
    }

    /// Documents whose last push the server refused (cleared when one is
    /// accepted).
    pub async fn refused_docs(&self) -> StoreResult<Vec<RefusedDoc>> {
        let rows =
            sqlx::query("SELECT doc_id, reason, refused_at FROM refused_docs ORDER BY doc_id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("doc_id")?;
                Ok(RefusedDoc {
                    doc_id: id
                        .parse()
                        .map_err(|e: crate::ids::InvalidId| sqlx::Error::Decode(e.into()))?,
                    reason: r.try_get("reason")?,
                    at: r.try_get("refused_at")?,
                })
            })
            .collect()
    }
}

async fn set_meta_in(tx: &mut sqlx::SqliteConnection, key: &str, value: i64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO sync_meta (key, value) VALUES (?, ?)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(tx)
    .await?;
    Ok(())
}
