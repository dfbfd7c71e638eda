//! Where each document stands with the sync server (the cursor and the
//! server heads last recorded for it, and which documents have changes to
//! push), and small named numbers kept with the store, such as the feed
//! cursor.

use automerge::ChangeHash;
use sqlx::Row;

use super::chunks::{decode_heads, encode_heads};
use super::{Store, StoreError, StoreResult};
use crate::ids::DocId;
use crate::model::Millis;

/// Where a document stands with the sync server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncState {
    pub cursor: i64,
    pub server_heads: Vec<ChangeHash>,
}

impl Store {
    pub async fn sync_state(&self, id: &DocId) -> StoreResult<SyncState> {
        let row = sqlx::query("SELECT cursor, server_heads FROM sync_state WHERE doc_id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(SyncState::default());
        };
        let heads: &[u8] = row.try_get("server_heads")?;
        Ok(SyncState {
            cursor: row.try_get("cursor")?,
            server_heads: decode_heads(heads).map_err(|e| sqlx::Error::Decode(e.into()))?,
        })
    }

    pub async fn set_sync_state(
        &self,
        id: &DocId,
        state: &SyncState,
        now: Millis,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sync_state (doc_id, cursor, server_heads, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (doc_id) DO UPDATE SET cursor = excluded.cursor,
                 server_heads = excluded.server_heads, updated_at = excluded.updated_at",
        )
        .bind(id.as_str())
        .bind(state.cursor)
        .bind(encode_heads(&state.server_heads))
        .bind(now)
        .execute(&mut *self.writer.lock().await)
        .await?;
        Ok(())
    }

    /// Documents whose local heads differ from the server heads last
    /// recorded for them: the ones with changes to push. One query.
    pub async fn pending_sync(&self) -> StoreResult<Vec<DocId>> {
        let rows = sqlx::query(
            "SELECT d.doc_id FROM documents d LEFT JOIN sync_state s ON s.doc_id = d.doc_id
             WHERE s.server_heads IS NULL OR s.server_heads != d.heads ORDER BY d.doc_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| -> StoreResult<DocId> {
                let id: &str = r.try_get("doc_id")?;
                id.parse()
                    .map_err(|e| StoreError::Db(sqlx::Error::Decode(Box::new(e))))
            })
            .collect()
    }

    /// A small named number kept with the store (e.g. a feed cursor).
    pub async fn meta(&self, key: &str) -> StoreResult<Option<i64>> {
        Ok(sqlx::query("SELECT value FROM sync_meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.get::<i64, _>("value")))
    }

    pub async fn set_meta(&self, key: &str, value: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sync_meta (key, value) VALUES (?, ?)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *self.writer.lock().await)
        .await?;
        Ok(())
    }
}
