//! The sync endpoint, `POST /v1/sync`: applies each pushed document's
//! changes the server lacks, then answers with everything in the user's feed
//! after the client's cursor. See `core_sync::sync::protocol` for the wire
//! format and its guarantees.
//!
//! Pushes are validated whole before anything is written: every document id
//! is well-formed and unique, every change batch parses strictly. Each push
//! then goes through the one write path ([`crate::write`]): only changes the
//! server did not already have are appended (so retries store nothing
//! twice), and a batch whose dependencies the server lacks is refused for
//! that document with `missingDeps`, storing nothing. This module knows
//! nothing of jobs: the write path launches what a push queued.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use automerge::Change;
use core_sync::DocId;
use core_sync::model::chunks;
use core_sync::sync::protocol::{
    DocUpdate, MAX_WAIT_MS, PushOutcome, PushStatus, RESPONSE_SOFT_LIMIT_BYTES, SyncRequest,
    SyncResponse, hashes,
};

use crate::error::ApiError;
use crate::storage::DocStore;
use crate::write::{DocWriter, Pushed, WriteError};

/// Most documents sent back in one response.
const FEED_PAGE: usize = 500;

/// Handles one sync request for `user`.
pub async fn sync(
    writer: &DocWriter,
    user: &str,
    req: SyncRequest,
) -> Result<SyncResponse, ApiError> {
    let parsed = validate(&req)?;
    let store = writer.docs();
    let mut pushed = Vec::with_capacity(req.push.len());
    // The entry each push appended: the pusher has those changes already,
    // so they are not echoed back.
    let mut own = HashMap::new();
    for (push, changes) in req.push.iter().zip(parsed) {
        let outcome = match writer.push(user, &push.doc_id, changes).await {
            Ok(Pushed::Accepted { heads, appended }) => {
                if let Some(useq) = appended {
                    own.insert(push.doc_id.clone(), useq);
                }
                PushOutcome {
                    doc_id: push.doc_id.clone(),
                    status: PushStatus::Accepted,
                    server_heads: hashes(&heads),
                }
            }
            Ok(Pushed::MissingDeps { heads }) => PushOutcome {
                doc_id: push.doc_id.clone(),
                status: PushStatus::MissingDeps,
                server_heads: hashes(&heads),
            },
            Err(WriteError::NotFound(id)) => return Err(ApiError::NotFound(id.to_string())),
            Err(WriteError::Busy(id)) => {
                return Err(ApiError::Unavailable(format!(
                    "document {id} is busy; retry"
                )));
            }
            Err(WriteError::Model { doc, source }) => {
                return Err(ApiError::BadRequest(format!(
                    "changes for document {doc}: {source}"
                )));
            }
            Err(WriteError::Storage(e)) => return Err(e.into()),
        };
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

/// Checks the whole request before anything is written: a sane wait,
/// each document pushed once, every push parsing strictly. Returns each
/// push's changes. (Public for the fuzz targets in `tests/fuzz`.)
pub fn validate(req: &SyncRequest) -> Result<Vec<Vec<Change>>, ApiError> {
    if req.wait_ms > MAX_WAIT_MS {
        return Err(ApiError::BadRequest(format!(
            "waitMs {} is longer than the {MAX_WAIT_MS} ms a long poll may last",
            req.wait_ms
        )));
    }
    let mut seen = HashSet::new();
    let mut parsed = Vec::with_capacity(req.push.len());
    for push in &req.push {
        if !seen.insert(&push.doc_id) {
            return Err(ApiError::BadRequest(format!(
                "document {} is pushed twice in one request",
                push.doc_id
            )));
        }
        parsed.push(chunks::changes(&push.changes.0).map_err(|e| {
            ApiError::BadRequest(format!(
                "changes for document {} do not parse: {e}",
                push.doc_id
            ))
        })?);
    }
    Ok(parsed)
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
