//! Images beside documents: before a push, every image the server does not
//! hold yet is uploaded (one it refuses is set aside with the reason and
//! offered again later); after a pull, the images a document names that are
//! missing here are downloaded into the blob store.

use super::{REFUSED_RETRY_MS, SyncClient};
use crate::model::AssetDoc;
use crate::now_millis;
use crate::sync::transport::{OutgoingBlob, SyncError};

impl SyncClient {
    /// Uploads every image the server does not hold yet. One the server
    /// refuses (too large, not an image) is set aside with the reason — the
    /// documents and the other images still go — and offered again later.
    pub(super) async fn upload_blobs(&self) -> Result<(), SyncError> {
        if !self.transport.moves_blobs() {
            return Ok(());
        }
        let now = now_millis();
        for (sha, mime, bytes) in self.store.blobs_to_upload(now, REFUSED_RETRY_MS).await? {
            if !self.store.blobs().contains(&sha) {
                continue;
            }
            let path = self
                .store
                .blobs()
                .path_of(&sha)
                .map_err(|e| SyncError::Protocol(format!("image {sha}: {e}")))?;
            let blob = OutgoingBlob {
                sha256: &sha,
                mime: &mime,
                path: &path,
                bytes,
            };
            match self.transport.put_blob(&blob, &self.token).await {
                Ok(()) => {
                    self.store
                        .mark_blob_uploaded(&sha, &mime, bytes, now_millis())
                        .await?;
                }
                Err(e) if e.is_refusal() => {
                    tracing::warn!(blob = %sha, error = %e, "the server refused an image");
                    self.store
                        .mark_blob_refused(&sha, &e.to_string(), now_millis())
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Downloads the blobs of `doc` missing locally (a result made by the
    /// cloud, an image added on another device), streamed into the blob
    /// store. A blob the server does not have yet is skipped and fetched on
    /// a later round.
    pub(super) async fn download_blobs(&self, doc: &AssetDoc) -> Result<(), SyncError> {
        if !self.transport.moves_blobs() {
            return Ok(());
        }
        for (sha, mime) in referenced_blobs(doc) {
            if self.store.blobs().contains(&sha) {
                if !self.store.has_blob_indexed(&sha).await? {
                    // Placed by a server sharing this blob directory (the
                    // desktop's own): it holds the image.
                    self.store
                        .index_downloaded(&sha, &mime, now_millis())
                        .await?;
                }
                continue;
            }
            if self
                .transport
                .get_blob(&sha, self.store.blobs(), &self.token)
                .await?
            {
                self.store
                    .index_downloaded(&sha, &mime, now_millis())
                    .await?;
            }
        }
        Ok(())
    }
}

/// The blobs a document's versions refer to (images and thumbnails).
fn referenced_blobs(doc: &AssetDoc) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in doc.versions().unwrap_or_default() {
        out.push((v.blob.sha256, v.blob.mime));
        if let Some(t) = v.thumbnail {
            out.push((t.sha256, t.mime));
        }
    }
    out
}
