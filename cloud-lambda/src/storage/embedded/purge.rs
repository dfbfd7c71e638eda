//! `PurgeStore` on the embedded SQLite database (migration
//! `20261130000001_purge`). A purge is one write transaction: the
//! document's rows, its facts and references go, its `docs` row is marked
//! purged and its feed row moves, and the blobs only it named are queued,
//! all together, so a crash leaves the document whole or purged, never in
//! between.

use async_trait::async_trait;
use core_sync::DocId;
use core_sync::model::Millis;
use sqlx::{Connection, Row, SqliteConnection};

use super::{EmbeddedStore, from_sql, to_sql};
use crate::storage::purge::{PurgeStore, QueuedBlob, StalePage, TrashEntry};
use crate::storage::{StorageError, validate_sha256, validate_user};

fn parse_doc(s: String) -> Result<DocId, StorageError> {
    s.parse()
        .map_err(|e| StorageError::Backend(format!("database holds a bad document id: {e}")))
}

fn limit_sql(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait]
impl PurgeStore for EmbeddedStore {
    async fn put_purge_facts(
        &self,
        user: &str,
        doc: &DocId,
        useq: u64,
        blobs: &[String],
        trashed_since: Option<Millis>,
    ) -> Result<(), StorageError> {
        validate_user(user)?;
        for sha in blobs {
            validate_sha256(sha)?;
        }
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let result = put_facts_in(&mut tx, user, doc, useq, blobs, trashed_since).await;
        Self::finish(tx, result).await
    }

    async fn stale_purge_facts(
        &self,
        start: Option<&str>,
        limit: usize,
    ) -> Result<StalePage, StorageError> {
        let limit = limit.max(1);
        let rows = sqlx::query(
            "SELECT d.owner, d.doc_id FROM docs d LEFT JOIN purge_facts f ON f.doc_id = d.doc_id
             WHERE d.purged = 0 AND (f.useq IS NULL OR f.useq < d.last_useq) AND d.doc_id > ?
             ORDER BY d.doc_id LIMIT ?",
        )
        .bind(start.unwrap_or(""))
        .bind(limit_sql(limit))
        .fetch_all(&self.pool)
        .await?;
        let docs = rows
            .into_iter()
            .map(|r| Ok((r.try_get("owner")?, parse_doc(r.try_get("doc_id")?)?)))
            .collect::<Result<Vec<(String, DocId)>, StorageError>>()?;
        let next = (docs.len() == limit)
            .then(|| docs.last().map(|(_, d)| d.to_string()))
            .flatten();
        Ok(StalePage { docs, next })
    }

    async fn due_for_purge(
        &self,
        since: Millis,
        limit: usize,
    ) -> Result<Vec<TrashEntry>, StorageError> {
        let rows = sqlx::query(
            "SELECT user_id, doc_id, trashed_since FROM purge_facts
             WHERE trashed_since IS NOT NULL AND trashed_since <= ?
             ORDER BY trashed_since, doc_id LIMIT ?",
        )
        .bind(since)
        .bind(limit_sql(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(TrashEntry {
                    user: r.try_get("user_id")?,
                    doc_id: parse_doc(r.try_get("doc_id")?)?,
                    retained_since: r.try_get("trashed_since")?,
                })
            })
            .collect()
    }

    async fn purge_doc(
        &self,
        user: &str,
        doc: &DocId,
        expected_last_useq: u64,
    ) -> Result<Vec<String>, StorageError> {
        validate_user(user)?;
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let result = purge_in(&mut tx, user, doc.as_str(), expected_last_useq).await;
        let purged = Self::finish(tx, result).await;
        if purged.is_ok() {
            // The feed moved: long polls answer with the purge at once.
            self.feed_moved.notify_waiters();
        }
        purged
    }

    async fn is_purged(&self, user: &str, doc: &DocId) -> Result<bool, StorageError> {
        validate_user(user)?;
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT purged FROM docs WHERE doc_id = ? AND owner = ?")
                .bind(doc.as_str())
                .bind(user)
                .fetch_optional(&self.pool)
                .await?
                .is_some_and(|p| p != 0),
        )
    }

    async fn queued_blobs(&self, limit: usize) -> Result<Vec<QueuedBlob>, StorageError> {
        let rows = sqlx::query(
            "SELECT user_id, sha256 FROM blob_deletions ORDER BY user_id, sha256 LIMIT ?",
        )
        .bind(limit_sql(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(QueuedBlob {
                    user: r.try_get("user_id")?,
                    sha256: r.try_get("sha256")?,
                })
            })
            .collect()
    }

    async fn blob_unreferenced(&self, user: &str, sha256: &str) -> Result<bool, StorageError> {
        validate_user(user)?;
        let named: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM blob_refs WHERE user_id = ? AND sha256 = ?)",
        )
        .bind(user)
        .bind(sha256)
        .fetch_one(&self.pool)
        .await?;
        Ok(!named)
    }

    async fn unqueue_blob(&self, user: &str, sha256: &str) -> Result<(), StorageError> {
        validate_user(user)?;
        sqlx::query("DELETE FROM blob_deletions WHERE user_id = ? AND sha256 = ?")
            .bind(user)
            .bind(sha256)
            .execute(&mut *self.writer.lock().await)
            .await?;
        Ok(())
    }
}

async fn put_facts_in(
    tx: &mut SqliteConnection,
    user: &str,
    doc: &DocId,
    useq: u64,
    blobs: &[String],
    trashed_since: Option<Millis>,
) -> Result<(), StorageError> {
    // A write first, so the transaction holds the write lock from here on.
    let moved = sqlx::query(
        "INSERT INTO purge_facts (doc_id, user_id, useq, trashed_since)
         SELECT ?1, ?2, ?3, ?4 FROM docs WHERE doc_id = ?1 AND owner = ?2 AND purged = 0
         ON CONFLICT (doc_id) DO UPDATE SET useq = excluded.useq,
             trashed_since = excluded.trashed_since
         WHERE excluded.useq > purge_facts.useq AND purge_facts.user_id = excluded.user_id",
    )
    .bind(doc.as_str())
    .bind(user)
    .bind(to_sql(useq))
    .bind(trashed_since)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved == 0 {
        return Ok(());
    }
    for sha in blobs {
        sqlx::query("INSERT OR IGNORE INTO blob_refs (user_id, sha256, doc_id) VALUES (?, ?, ?)")
            .bind(user)
            .bind(sha)
            .bind(doc.as_str())
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// The body of [`PurgeStore::purge_doc`], inside a write transaction.
async fn purge_in(
    tx: &mut SqliteConnection,
    user: &str,
    doc_id: &str,
    expected_last_useq: u64,
) -> Result<Vec<String>, StorageError> {
    // The feed position of the purge, allocated first (it takes the write
    // lock); a refused purge rolls it back.
    let useq: i64 = sqlx::query_scalar(
        "UPDATE users SET last_useq = last_useq + 1 WHERE user_id = ? RETURNING last_useq",
    )
    .bind(user)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(StorageError::NotFound)?;
    let row = sqlx::query("SELECT owner, last_useq, purged FROM docs WHERE doc_id = ?")
        .bind(doc_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StorageError::NotFound)?;
    if row.try_get::<String, _>("owner")? != user || row.try_get::<i64, _>("purged")? != 0 {
        return Err(StorageError::NotFound);
    }
    if from_sql(row.try_get("last_useq")?)? != expected_last_useq {
        return Err(StorageError::Conflict);
    }
    // Only a document whose facts were derived at that position and say it
    // is in the trash: facts behind the log (a restore whose projection is
    // still on its way) decide nothing.
    let current: Option<i64> = sqlx::query_scalar(
        "SELECT useq FROM purge_facts WHERE doc_id = ? AND trashed_since IS NOT NULL",
    )
    .bind(doc_id)
    .fetch_optional(&mut *tx)
    .await?;
    if current.map(from_sql).transpose()? != Some(expected_last_useq) {
        return Err(StorageError::Conflict);
    }
    let named: Vec<String> =
        sqlx::query_scalar("SELECT sha256 FROM blob_refs WHERE user_id = ? AND doc_id = ?")
            .bind(user)
            .bind(doc_id)
            .fetch_all(&mut *tx)
            .await?;
    for sql in [
        "DELETE FROM log WHERE doc_id = ?",
        "DELETE FROM snapshots WHERE doc_id = ?",
        "DELETE FROM listings WHERE doc_id = ?",
        "DELETE FROM purge_facts WHERE doc_id = ?",
        "DELETE FROM blob_refs WHERE doc_id = ?",
    ] {
        sqlx::query(sql).bind(doc_id).execute(&mut *tx).await?;
    }
    sqlx::query(
        "UPDATE docs SET purged = 1, last_useq = ?, snapshot_upto = 0, heads = x'' WHERE doc_id = ?",
    )
    .bind(useq)
    .bind(doc_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE feed SET useq = ? WHERE user_id = ? AND doc_id = ?")
        .bind(useq)
        .bind(user)
        .bind(doc_id)
        .execute(&mut *tx)
        .await?;
    let mut queued = Vec::new();
    for sha in named {
        let still_named: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM blob_refs WHERE user_id = ? AND sha256 = ?)",
        )
        .bind(user)
        .bind(&sha)
        .fetch_one(&mut *tx)
        .await?;
        if !still_named {
            sqlx::query("INSERT OR IGNORE INTO blob_deletions (user_id, sha256) VALUES (?, ?)")
                .bind(user)
                .bind(&sha)
                .execute(&mut *tx)
                .await?;
            queued.push(sha);
        }
    }
    Ok(queued)
}

impl EmbeddedStore {
    /// What a purge left half-done: rows of purged documents that should be
    /// gone, and blob references or facts without their document. Empty on
    /// a healthy store; a check for tests and operators.
    pub async fn purge_leftovers(&self) -> Result<Vec<String>, StorageError> {
        let mut out = Vec::new();
        for (what, sql) in [
            (
                "log entries of a purged document",
                "SELECT DISTINCT l.doc_id FROM log l JOIN docs d USING (doc_id) WHERE d.purged = 1",
            ),
            (
                "a snapshot of a purged document",
                "SELECT s.doc_id FROM snapshots s JOIN docs d USING (doc_id) WHERE d.purged = 1",
            ),
            (
                "a listing of a purged document",
                "SELECT l.doc_id FROM listings l JOIN docs d USING (doc_id) WHERE d.purged = 1",
            ),
            (
                "blob references of a purged or absent document",
                "SELECT DISTINCT r.doc_id FROM blob_refs r LEFT JOIN docs d USING (doc_id)
                 WHERE d.doc_id IS NULL OR d.purged = 1",
            ),
            (
                "purge facts of a purged document",
                "SELECT f.doc_id FROM purge_facts f JOIN docs d USING (doc_id) WHERE d.purged = 1",
            ),
        ] {
            let ids: Vec<String> = sqlx::query_scalar(sql).fetch_all(&self.pool).await?;
            out.extend(ids.into_iter().map(|id| format!("{what}: {id}")));
        }
        Ok(out)
    }
}
