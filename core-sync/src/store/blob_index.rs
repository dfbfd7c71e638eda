//! The store's side of blobs: image bytes go to the content-addressed
//! [`BlobStore`](crate::blob::BlobStore) and are indexed in SQLite with their
//! type, size and whether the server holds them yet.

use sqlx::Row;

use super::{Store, StoreError, StoreResult};
use crate::model::Millis;

impl Store {
    /// Stores image bytes in the blob store and indexes them.
    pub async fn put_blob(&self, bytes: Vec<u8>, mime: &str, now: Millis) -> StoreResult<String> {
        let blobs = self.blobs.clone();
        let len = bytes.len();
        let stored = async {
            let sha = tokio::task::spawn_blocking(move || blobs.put(&bytes))
                .await
                .expect("blob writer panicked")?;
            self.index(&sha, mime, len as u64, now, false).await?;
            Ok(sha)
        };
        stored.await.map_err(|e: StoreError| e.at(&self.dir))
    }

    /// Stores bytes that must hash to `sha256` (downloaded from elsewhere)
    /// and indexes them as already on the server.
    pub async fn put_blob_verified(
        &self,
        sha256: &str,
        bytes: Vec<u8>,
        mime: &str,
        now: Millis,
    ) -> StoreResult<()> {
        let blobs = self.blobs.clone();
        let sha = sha256.to_owned();
        let len = bytes.len();
        let stored = async {
            tokio::task::spawn_blocking(move || blobs.put_verified(&sha, &bytes))
                .await
                .expect("blob writer panicked")?;
            self.mark_blob_uploaded(sha256, mime, len as u64, now).await
        };
        stored.await.map_err(|e| e.at(&self.dir))
    }

    /// Indexes a blob just downloaded into the blob directory, as held by
    /// the server.
    pub async fn index_downloaded(&self, sha256: &str, mime: &str, now: Millis) -> StoreResult<()> {
        let path = self.blobs.path_of(sha256)?;
        let bytes = tokio::fs::metadata(&path)
            .await
            .map_err(|source| StoreError::Io { path, source })?
            .len();
        self.index(sha256, mime, bytes, now, true).await
    }

    /// Indexes a blob already in the blob directory (restored from a backup),
    /// as not yet on the server; its type comes from its magic bytes.
    pub async fn index_blob(&self, sha256: &str, bytes: u64, now: Millis) -> StoreResult<()> {
        let head = self.get_blob(sha256).await?;
        let mime = crate::blob::sniff_mime(&head).unwrap_or("application/octet-stream");
        self.index(sha256, mime, bytes, now, false).await
    }

    /// Adds a blob to the index; `uploaded` marks it as held by the server
    /// (and upgrades an existing row), otherwise an existing row is kept.
    async fn index(
        &self,
        sha256: &str,
        mime: &str,
        bytes: u64,
        now: Millis,
        uploaded: bool,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO blobs (sha256, mime, bytes, created_at, uploaded) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (sha256) DO UPDATE SET uploaded = max(uploaded, excluded.uploaded)",
        )
        .bind(sha256)
        .bind(mime)
        .bind(bytes as i64)
        .bind(now)
        .bind(uploaded as i64)
        .execute(&mut *self.writer.lock().await)
        .await?;
        Ok(())
    }

    /// Whether the blob index has this blob at all.
    pub async fn has_blob_indexed(&self, sha256: &str) -> StoreResult<bool> {
        Ok(sqlx::query("SELECT 1 FROM blobs WHERE sha256 = ?")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Whether the server is known to hold this blob.
    pub async fn blob_uploaded(&self, sha256: &str) -> StoreResult<bool> {
        Ok(sqlx::query("SELECT uploaded FROM blobs WHERE sha256 = ?")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?
            .is_some_and(|r| r.get::<i64, _>("uploaded") != 0))
    }

    /// Records that the server holds this blob.
    pub async fn mark_blob_uploaded(
        &self,
        sha256: &str,
        mime: &str,
        bytes: u64,
        now: Millis,
    ) -> StoreResult<()> {
        self.index(sha256, mime, bytes, now, true).await
    }

    /// Reads and verifies a blob.
    pub async fn get_blob(&self, sha256: &str) -> StoreResult<Vec<u8>> {
        let blobs = self.blobs.clone();
        let sha = sha256.to_owned();
        Ok(tokio::task::spawn_blocking(move || blobs.get(&sha))
            .await
            .expect("blob reader panicked")?)
    }
}
