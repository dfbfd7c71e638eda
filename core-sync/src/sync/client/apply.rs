//! Applying a sync response durably: push outcomes (the server's heads, the
//! chunks it now holds, documents it lacks a dependency of), documents the
//! server purged, and every pulled document's chunks, saved (and their
//! missing images downloaded) before the round's cursor is recorded. A pulled
//! document whose changes wait for dependencies is a gap: nothing of it is
//! saved, and the engine asks for all of it.

use super::{SyncClient, SyncEvent};
use crate::ids::DocId;
use crate::model::{AssetDoc, MessageStatus};
use crate::now_millis;
use crate::store::{LocalAsset, RoundRecord, StoreError};
use crate::sync::engine::Applied;
use crate::sync::protocol::{DocUpdate, PushStatus, SyncResponse, change_hashes};
use crate::sync::transport::SyncError;

impl SyncClient {
    /// Applies a response durably: push outcomes (server heads, and which
    /// chunks the server now holds), then every pulled document (saved
    /// before returning).
    pub(super) async fn apply(
        &mut self,
        resp: &SyncResponse,
        sent: &[(DocId, Vec<i64>)],
    ) -> Result<(Applied, RoundRecord), SyncError> {
        let mut applied = Applied::default();
        let mut record = RoundRecord::default();
        let mut pulled = Vec::new();
        let mut purged: Vec<DocId> = resp.purged.clone();
        for outcome in &resp.pushed {
            if outcome.status == PushStatus::Purged {
                purged.push(outcome.doc_id.clone());
                continue;
            }
            record
                .server_heads
                .push((outcome.doc_id.clone(), change_hashes(&outcome.server_heads)));
            let chunks = sent
                .iter()
                .find(|(id, _)| *id == outcome.doc_id)
                .map(|(_, c)| c.clone())
                .unwrap_or_default();
            match outcome.status {
                PushStatus::Accepted => record.pushed.push((outcome.doc_id.clone(), chunks)),
                // The server lacks something it was thought to have: the
                // next push sends the whole document.
                PushStatus::MissingDeps => record.unpushed.push(outcome.doc_id.clone()),
                PushStatus::Purged => {}
            }
        }
        if !purged.is_empty() {
            self.drop_purged(&purged).await?;
            pulled.extend(purged);
        }
        for update in &resp.docs {
            let Some(asset) = self.apply_update(update).await? else {
                applied.gaps.push(update.doc_id.clone());
                continue;
            };
            applied.jobs_active |= has_active_job(&asset.doc);
            self.download_blobs(&asset.doc).await?;
            self.warm.put(asset);
            record
                .server_heads
                .push((update.doc_id.clone(), change_hashes(&update.server_heads)));
            pulled.push(update.doc_id.clone());
        }
        if let (Some(tx), false) = (&self.events, pulled.is_empty()) {
            let _ = tx.send(SyncEvent::Pulled(pulled));
        }
        Ok((applied, record))
    }

    /// Drops the documents the server purged (their blobs too, where no
    /// other document names them). Edits this device made offline to a
    /// purged asset it never saw deleted are kept as a new asset, which is
    /// pushed as new.
    async fn drop_purged(&mut self, ids: &[DocId]) -> Result<(), SyncError> {
        for id in ids {
            self.warm.take(id);
            self.engine.forget(id);
            match self.store.drop_purged(id, now_millis()).await? {
                crate::store::Dropped::Recovered(new) => self.engine.local_change(new),
                crate::store::Dropped::Dropped | crate::store::Dropped::Absent => {}
            }
            tracing::info!(doc = %id, "the server purged this asset; dropped it here");
        }
        let freed = self.store.collect_blobs().await?;
        if freed.blobs > 0 {
            tracing::info!(
                blobs = freed.blobs,
                bytes = freed.bytes,
                "images no asset uses were removed"
            );
        }
        Ok(())
    }

    /// Applies one pulled document's chunks and saves them; `None` for a
    /// gap (changes whose dependencies did not come), where nothing is saved.
    async fn apply_update(&mut self, update: &DocUpdate) -> Result<Option<LocalAsset>, SyncError> {
        let id = &update.doc_id;
        let chunks: Vec<&[u8]> = update.chunks.iter().map(|c| c.0.as_slice()).collect();
        let Some(mut asset) = self.current(id).await? else {
            // A document new to this device.
            return match AssetDoc::load_chunks(chunks.iter().copied()) {
                Ok(doc) => Ok(Some(self.store.insert_pulled(id.clone(), doc).await?)),
                // Only part of a document we never had: ask for all of it.
                Err(_) => Ok(None),
            };
        };
        for chunk in &chunks {
            asset.doc.apply_incremental(chunk).map_err(|e| {
                SyncError::Protocol(format!("server sent unreadable changes for {id}: {e}"))
            })?;
        }
        if !asset.doc.missing_deps().is_empty() {
            // A gap. Save nothing: changes waiting for their dependencies
            // stay in the document, and a compaction would write them into
            // the snapshot (Automerge's `save()` keeps them), after which the
            // document no longer loads. The resync brings the whole document.
            return Ok(None);
        }
        self.store.save_pulled(&mut asset).await?;
        Ok(Some(asset))
    }

    /// The stored document `id`: the copy kept from an earlier round if the
    /// store has nothing newer, else loaded. `None` if not stored.
    async fn current(&mut self, id: &DocId) -> Result<Option<LocalAsset>, SyncError> {
        if let Some(mut asset) = self.warm.take(id) {
            let mut heads = asset.doc.heads();
            heads.sort();
            if self.store.recorded_heads(id).await? == heads {
                return Ok(Some(asset));
            }
        }
        match self.store.load(id).await {
            Ok(asset) => Ok(Some(asset)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether one of the document's recent messages is a queued or running tool
/// request (the engine then polls fast until it finishes).
fn has_active_job(doc: &AssetDoc) -> bool {
    let n = doc.reader().message_count().unwrap_or(0) as usize;
    doc.messages_range(n.saturating_sub(16)..n)
        .unwrap_or_default()
        .iter()
        .any(|m| {
            matches!(
                m.status,
                Some(MessageStatus::Queued | MessageStatus::Running)
            )
        })
}
