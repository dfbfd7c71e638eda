//! `JobStore` on the embedded SQLite database. Leases are two columns of
//! `operations`, taken, renewed and released by conditional `UPDATE`s (one
//! statement each, so two processes on one database cannot both win).

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::EmbeddedStore;
use crate::storage::jobs::{InputRecord, JobStore, Lease, OpStatus, Operation, validate_owner};
use crate::storage::{StorageError, validate_user};

/// The input record as stored: JSON text (NULL when none yet).
fn input_json(input: &Option<InputRecord>) -> Result<Option<String>, StorageError> {
    input
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StorageError::Backend(format!("input record: {e}")))
}

fn row_to_op(r: &SqliteRow) -> Result<Operation, StorageError> {
    let status: String = r.try_get("status")?;
    let input: Option<String> = r.try_get("input")?;
    let doc: String = r.try_get("doc_id")?;
    Ok(Operation {
        id: r.try_get("id")?,
        user: r.try_get("user_id")?,
        doc_id: doc
            .parse()
            .map_err(|e| StorageError::Backend(format!("stored doc id: {e}")))?,
        status: OpStatus::parse(&status)
            .ok_or_else(|| StorageError::Backend(format!("stored status {status:?}")))?,
        provider_ref: r.try_get("provider_ref")?,
        attempts: r.try_get::<i64, _>("attempts")?.clamp(0, u32::MAX as i64) as u32,
        error: r.try_get("error")?,
        input: input
            .map(|j| serde_json::from_str(&j))
            .transpose()
            .map_err(|e| StorageError::Backend(format!("stored input record: {e}")))?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

#[async_trait]
impl JobStore for EmbeddedStore {
    async fn create_operation(&self, op: &Operation) -> Result<bool, StorageError> {
        validate_user(&op.user)?;
        let done = sqlx::query(
            "INSERT INTO operations (id, user_id, doc_id, status, provider_ref, attempts, error, input, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&op.id)
        .bind(&op.user)
        .bind(op.doc_id.as_str())
        .bind(op.status.as_str())
        .bind(&op.provider_ref)
        .bind(op.attempts as i64)
        .bind(&op.error)
        .bind(input_json(&op.input)?)
        .bind(op.created_at)
        .bind(op.updated_at)
        .execute(&mut *self.writer.lock().await)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_operation(&self, user: &str, id: &str) -> Result<Option<Operation>, StorageError> {
        let row = sqlx::query("SELECT * FROM operations WHERE id = ? AND user_id = ?")
            .bind(id)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_to_op).transpose()
    }

    async fn update_operation(&self, op: &Operation) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE operations SET status = ?, provider_ref = ?, attempts = ?, error = ?, input = ?, updated_at = ?
             WHERE id = ? AND user_id = ?",
        )
        .bind(op.status.as_str())
        .bind(&op.provider_ref)
        .bind(op.attempts as i64)
        .bind(&op.error)
        .bind(input_json(&op.input)?)
        .bind(op.updated_at)
        .bind(&op.id)
        .bind(&op.user)
        .execute(&mut *self.writer.lock().await)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StorageError::NotFound)
        }
    }

    async fn find_by_provider_ref(
        &self,
        provider_ref: &str,
    ) -> Result<Option<Operation>, StorageError> {
        let row = sqlx::query("SELECT * FROM operations WHERE provider_ref = ?")
            .bind(provider_ref)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_to_op).transpose()
    }

    async fn first_delivery(&self, webhook_id: &str, now: i64) -> Result<bool, StorageError> {
        if webhook_id.is_empty() || webhook_id.len() > 256 {
            return Err(StorageError::Invalid("bad webhook id".into()));
        }
        let done = sqlx::query(
            "INSERT INTO webhook_deliveries (webhook_id, seen_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(webhook_id)
        .bind(now)
        .execute(&mut *self.writer.lock().await)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_started_since(&self, user: &str, since: i64) -> Result<u64, StorageError> {
        validate_user(user)?;
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM operations WHERE user_id = ? AND created_at >= ?
               AND NOT (status = 'failed' AND attempts = 0)",
        )
        .bind(user)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(n.max(0) as u64)
    }

    async fn unfinished(&self) -> Result<Vec<Operation>, StorageError> {
        let rows = sqlx::query(
            "SELECT * FROM operations WHERE status IN ('queued', 'running') ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_op).collect()
    }

    async fn take_lease(
        &self,
        user: &str,
        id: &str,
        owner: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<Option<Operation>, StorageError> {
        validate_user(user)?;
        validate_owner(owner)?;
        let row = sqlx::query(
            "UPDATE operations SET lease_owner = ?1, lease_expires_at = ?2
             WHERE id = ?3 AND user_id = ?4 AND status IN ('queued', 'running')
               AND (lease_owner IS NULL OR lease_expires_at <= ?5 OR lease_owner = ?1)
             RETURNING *",
        )
        .bind(owner)
        .bind(expires_at)
        .bind(id)
        .bind(user)
        .bind(now)
        .fetch_optional(&mut *self.writer.lock().await)
        .await?;
        row.as_ref().map(row_to_op).transpose()
    }

    async fn renew_lease(
        &self,
        user: &str,
        id: &str,
        owner: &str,
        expires_at: i64,
    ) -> Result<bool, StorageError> {
        validate_user(user)?;
        let done = sqlx::query(
            "UPDATE operations SET lease_expires_at = ?
             WHERE id = ? AND user_id = ? AND lease_owner = ?",
        )
        .bind(expires_at)
        .bind(id)
        .bind(user)
        .bind(owner)
        .execute(&mut *self.writer.lock().await)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_lease(&self, user: &str, id: &str, owner: &str) -> Result<(), StorageError> {
        validate_user(user)?;
        sqlx::query(
            "UPDATE operations SET lease_owner = NULL, lease_expires_at = NULL
             WHERE id = ? AND user_id = ? AND lease_owner = ?",
        )
        .bind(id)
        .bind(user)
        .bind(owner)
        .execute(&mut *self.writer.lock().await)
        .await?;
        Ok(())
    }

    async fn lease(&self, user: &str, id: &str) -> Result<Option<Lease>, StorageError> {
        validate_user(user)?;
        let row = sqlx::query(
            "SELECT lease_owner, lease_expires_at FROM operations
             WHERE id = ? AND user_id = ? AND lease_owner IS NOT NULL",
        )
        .bind(id)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Lease {
                owner: r.try_get("lease_owner")?,
                expires_at: r
                    .try_get::<Option<i64>, _>("lease_expires_at")?
                    .unwrap_or(0),
            })
        })
        .transpose()
    }
}
