//! The sync endpoint, `POST /v1/sync`: applies each pushed document's
//! changes the server lacks, then answers with everything in the user's feed
//! after the client's cursor. See `core_sync::sync::protocol` for the wire
//! format and its guarantees.
//!
//! Pushes are validated whole before anything is written: every document id
//! is well-formed and unique, every change batch parses strictly. A push is
//! applied to the server's copy of the document; only changes the server did
//! not already have are appended (so retries store nothing twice), and a
//! batch whose dependencies the server lacks is refused for that document
//! with `missingDeps`, storing nothing. Concurrent pushes to one document
//! (two devices) meet at the storage layer's conditional append and retry.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use automerge::AutoCommit;
use core_sync::DocId;
use core_sync::model::{Reader, check_chunks};
use core_sync::sync::protocol::{
    DocPush, DocUpdate, MAX_WAIT_MS, PushOutcome, PushStatus, RESPONSE_SOFT_LIMIT_BYTES,
    SyncRequest, SyncResponse, hashes,
};

use crate::error::ApiError;
use crate::jobs::{Jobs, queued_requests};
use crate::storage::{DocStore, StorageError};

/// How many times a push retries after losing a conditional append race.
const APPEND_RETRIES: usize = 8;
/// Compact a document once this many log entries sit beside its snapshot.
const COMPACT_AFTER_ENTRIES: usize = 32;

/// What a document's stored chunks weigh, for the compaction policy.
#[derive(Default)]
struct LogSizes {
    snapshot_bytes: usize,
    entry_bytes: usize,
    entries: usize,
}

impl LogSizes {
    fn of(chunks: &[crate::storage::Chunk]) -> Self {
        let mut s = LogSizes::default();
        for c in chunks {
            if c.is_snapshot {
                s.snapshot_bytes += c.bytes.len();
            } else {
                s.entry_bytes += c.bytes.len();
                s.entries += 1;
            }
        }
        s
    }

    /// After appending `new` bytes: compact when the raw changes outweigh
    /// the snapshot (so a device syncing from scratch downloads compressed
    /// snapshots, not raw change logs; amortised, a constant cost per byte)
    /// or when entries pile up.
    fn should_compact(&self, new: usize) -> bool {
        self.entries + 1 >= COMPACT_AFTER_ENTRIES || self.entry_bytes + new > self.snapshot_bytes
    }
}
/// Most documents sent back in one response.
const FEED_PAGE: usize = 500;

/// Handles one sync request for `user`.
pub async fn sync(
    store: &Arc<dyn DocStore>,
    jobs: Option<&Arc<Jobs>>,
    user: &str,
    req: SyncRequest,
) -> Result<SyncResponse, ApiError> {
    validate(&req)?;
    let mut pushed = Vec::with_capacity(req.push.len());
    // The entry each push appended: the pusher has those changes already,
    // so they are not echoed back.
    let mut own = HashMap::new();
    for push in &req.push {
        let (outcome, appended) = apply_push(store, jobs, user, push).await?;
        if let Some(useq) = appended {
            own.insert(push.doc_id.clone(), useq);
        }
        pushed.push(outcome);
    }

    let idle = req.push.is_empty() && req.resync.is_empty();
    let mut resp = pull(store, user, &req, pushed, &own).await?;
    if idle && req.wait_ms > 0 && resp.docs.is_empty() && !resp.more {
        // Long poll: hold until the feed moves past the cursor, then answer.
        let wait = Duration::from_millis(req.wait_ms.min(MAX_WAIT_MS));
        store.wait_for_change(user, req.feed_cursor, wait).await?;
        resp = pull(store, user, &req, Vec::new(), &own).await?;
    }
    Ok(resp)
}

/// The pull half of a sync: resyncs, then the feed after the cursor.
async fn pull(
    store: &Arc<dyn DocStore>,
    user: &str,
    req: &SyncRequest,
    pushed: Vec<PushOutcome>,
    own: &HashMap<DocId, u64>,
) -> Result<SyncResponse, ApiError> {
    let mut docs = Vec::new();
    let mut bytes = 0usize;
    let mut cursor = req.feed_cursor;
    let mut sent: HashSet<DocId> = HashSet::new();
    for id in &req.resync {
        if let Some(update) = doc_update(store, user, id, 0, None).await? {
            bytes += update.chunks.iter().map(|c| c.0.len()).sum::<usize>();
            sent.insert(id.clone());
            docs.push(update);
        }
    }
    let feed = store.feed_since(user, req.feed_cursor, FEED_PAGE).await?;
    let mut more = feed.len() == FEED_PAGE;
    for entry in feed {
        if bytes >= RESPONSE_SOFT_LIMIT_BYTES {
            more = true;
            break;
        }
        if !sent.contains(&entry.doc_id)
            && let Some(update) = doc_update(
                store,
                user,
                &entry.doc_id,
                req.feed_cursor,
                own.get(&entry.doc_id).copied(),
            )
            .await?
        {
            bytes += update.chunks.iter().map(|c| c.0.len()).sum::<usize>();
            docs.push(update);
        }
        // Feed rows come in useq order and each doc's row is its latest
        // entry, so everything up to this row is now covered.
        cursor = entry.useq;
    }
    Ok(SyncResponse {
        feed_cursor: cursor,
        docs,
        pushed,
        more,
    })
}

fn validate(req: &SyncRequest) -> Result<(), ApiError> {
    if req.wait_ms > MAX_WAIT_MS {
        return Err(ApiError::BadRequest(format!(
            "waitMs {} is longer than the {MAX_WAIT_MS} ms a long poll may last",
            req.wait_ms
        )));
    }
    let mut seen = HashSet::new();
    for push in &req.push {
        if !seen.insert(&push.doc_id) {
            return Err(ApiError::BadRequest(format!(
                "document {} is pushed twice in one request",
                push.doc_id
            )));
        }
        check_chunks(&push.changes.0).map_err(|e| {
            ApiError::BadRequest(format!(
                "changes for document {} do not parse: {e}",
                push.doc_id
            ))
        })?;
    }
    Ok(())
}

/// Loads the server's copy of a document from its chunks.
fn load(chunks: &[crate::storage::Chunk]) -> Result<AutoCommit, ApiError> {
    let mut all = Vec::with_capacity(chunks.iter().map(|c| c.bytes.len()).sum());
    for c in chunks {
        all.extend_from_slice(&c.bytes);
    }
    AutoCommit::load(&all)
        .map_err(|e| ApiError::Internal(format!("stored document does not load: {e}")))
}

async fn apply_push(
    store: &Arc<dyn DocStore>,
    jobs: Option<&Arc<Jobs>>,
    user: &str,
    push: &DocPush,
) -> Result<(PushOutcome, Option<u64>), ApiError> {
    for _ in 0..APPEND_RETRIES {
        let head = store.head(user, &push.doc_id).await?;
        let (mut doc, last_useq, sizes) = match &head {
            Some(h) => {
                let chunks = store.read_all(user, &push.doc_id).await?;
                (load(&chunks)?, h.last_useq, LogSizes::of(&chunks))
            }
            None => (AutoCommit::new(), 0, LogSizes::default()),
        };
        let before = doc.get_heads();
        if !push.changes.0.is_empty() {
            doc.load_incremental(&push.changes.0).map_err(|e| {
                ApiError::BadRequest(format!("changes for document {}: {e}", push.doc_id))
            })?;
        }
        if !doc.get_missing_deps(&[]).is_empty() {
            let outcome = PushOutcome {
                doc_id: push.doc_id.clone(),
                status: PushStatus::MissingDeps,
                server_heads: hashes(&before),
            };
            return Ok((outcome, None));
        }
        let after = doc.get_heads();
        if after == before {
            let outcome = PushOutcome {
                doc_id: push.doc_id.clone(),
                status: PushStatus::Accepted,
                server_heads: hashes(&after),
            };
            return Ok((outcome, None));
        }
        // `before` are heads of this very document, so get_changes cannot
        // fall back to "everything".
        let new: Vec<u8> = doc
            .get_changes(&before)
            .iter()
            .flat_map(|c| c.raw_bytes().to_vec())
            .collect();
        match store
            .append(user, &push.doc_id, last_useq, &new, &after)
            .await
        {
            Ok(useq) => {
                if let Some(jobs) = jobs {
                    // New tool requests get their operation now.
                    let added = Reader::new(&doc, None)
                        .message_count()
                        .unwrap_or(0)
                        .saturating_sub(
                            Reader::new(&doc, Some(&before))
                                .message_count()
                                .unwrap_or(0),
                        );
                    let queued = queued_requests(&Reader::new(&doc, None), added as usize);
                    jobs.start(user, &push.doc_id, queued).await;
                }
                if sizes.should_compact(new.len()) {
                    let snapshot = doc.save();
                    if let Err(e) = store.compact(user, &push.doc_id, useq, &snapshot).await {
                        tracing::warn!(doc = %push.doc_id, error = %e, "compaction skipped");
                    }
                }
                let outcome = PushOutcome {
                    doc_id: push.doc_id.clone(),
                    status: PushStatus::Accepted,
                    server_heads: hashes(&after),
                };
                return Ok((outcome, Some(useq)));
            }
            Err(StorageError::Conflict) => continue,
            Err(StorageError::NotFound) => return Err(ApiError::NotFound(push.doc_id.to_string())),
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Unavailable(format!(
        "document {} is busy; retry",
        push.doc_id
    )))
}

/// What a client with `cursor` lacks of one document.
/// `skip`: a log entry the client itself just pushed.
async fn doc_update(
    store: &Arc<dyn DocStore>,
    user: &str,
    doc_id: &DocId,
    cursor: u64,
    skip: Option<u64>,
) -> Result<Option<DocUpdate>, ApiError> {
    let Some(head) = store.head(user, doc_id).await? else {
        return Ok(None);
    };
    let mut chunks = if cursor == 0 {
        store.read_all(user, doc_id).await?
    } else {
        store.read_since(user, doc_id, cursor).await?
    };
    chunks.retain(|c| c.is_snapshot || Some(c.useq) != skip);
    if chunks.is_empty() {
        return Ok(None);
    }
    Ok(Some(DocUpdate {
        doc_id: doc_id.clone(),
        chunks: chunks
            .into_iter()
            .map(|c| core_sync::sync::protocol::Bytes(c.bytes))
            .collect(),
        server_heads: hashes(&head.heads),
    }))
}
