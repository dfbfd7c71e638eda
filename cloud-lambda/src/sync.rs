//! The sync endpoint, `POST /v1/sync`: applies each pushed document's
//! changes the server lacks, then answers with everything in the user's feed
//! after the client's cursor. See `core_sync::sync::protocol` for the wire
//! format and its guarantees.
//!
//! Pushes are validated whole before anything is written: the request is
//! within the protocol's bounds (`core_sync::sync::bounds`: documents
//! named, and the rows and inflated bytes its changes declare, weighed
//! before Automerge parses them; over them, 413 at once), every document
//! id is well-formed and unique, every change batch parses strictly. A
//! long poll is held only while the user holds fewer than their share
//! (`LongPolls`; over it, 429 at once). Each push then goes through the
//! one write path ([`crate::write`]): only changes the server did not
//! already have are appended (so retries store nothing twice), and a batch whose dependencies the server lacks is refused for
//! that document with `missingDeps`, storing nothing. This module knows
//! nothing of jobs: the write path launches what a push queued.
//!
//! Epochs. Every answer names the user's epoch (`DocStore::epoch`). A
//! request from another epoch gets only the current one back, and nothing
//! is pushed or pulled: the client starts over. A request whose cursor the
//! user's feed has not reached (the data went back: a restored copy) makes
//! a new epoch, answered the same way. That check costs nothing extra on a
//! poll: the feed is read from the cursor's own row on (`useq >= cursor`),
//! and the cursor is always a `useq` the server handed out, so it finds
//! that row or a later one unless the data is behind. A request that
//! pushes checks first, with a one-row read, since its own appends would
//! move the feed past the cursor.
//!
//! A pusher's own appends are not echoed back: a document whose only entry
//! after the cursor is the pusher's append is not even read (on AWS a warm
//! push's round is then its writes and two queries).
//!
//! Purges. A push to a purged document is answered `purged` (nothing
//! stored), and a purge in the feed after the cursor is named in the
//! response, so devices drop their copies.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use automerge::Change;
use core_sync::DocId;
use core_sync::model::chunks;
use core_sync::model::weight::{WeighError, weigh};
use core_sync::sync::bounds::{Load, MAX_REQUEST_DOCS, Overload};
use core_sync::sync::protocol::{
    DocUpdate, MAX_EPOCH, MAX_WAIT_MS, PushOutcome, PushStatus, RESPONSE_SOFT_LIMIT_BYTES,
    SyncRequest, SyncResponse, hashes,
};

use crate::error::ApiError;
use crate::limits::LongPolls;
use crate::storage::DocStore;
use crate::write::{DocWriter, LogEntry, Pushed, WriteError};

/// Most documents sent back in one response.
const FEED_PAGE: usize = 500;

/// How long a client refused a long poll waits before asking again.
const LONG_POLL_RETRY: Duration = Duration::from_secs(5);

/// Handles one sync request for `user`; a long poll counts against
/// `polls` while it is held.
pub async fn sync(
    writer: &DocWriter,
    polls: &LongPolls,
    user: &str,
    req: SyncRequest,
) -> Result<SyncResponse, ApiError> {
    let parsed = validate(&req)?;
    let store = writer.docs();
    // Whatever made the device start over, the server's warm copies of the
    // user's documents may hold positions of other data: forget them.
    let start_over = |epoch| {
        writer.cache().forget_user(user);
        start_over(epoch)
    };
    let epoch = store.epoch(user, req.epoch).await?;
    if req.epoch != 0 && req.epoch != epoch {
        return Ok(start_over(epoch));
    }
    if !req.push.is_empty() && behind(store, user, req.feed_cursor).await? {
        return Ok(start_over(store.renew_epoch(user, epoch).await?));
    }
    let mut pushed = Vec::with_capacity(req.push.len());
    // The entry each push appended: the pusher has those changes already,
    // so they are not echoed back.
    let mut own = HashMap::new();
    for (push, changes) in req.push.iter().zip(parsed) {
        // A purged document reads as absent and refuses appends, so only a
        // push that found no document asks whether it was purged (a warm
        // push costs no extra read).
        let purged = || async {
            let outcome = PushOutcome {
                doc_id: push.doc_id.clone(),
                status: PushStatus::Purged,
                server_heads: Vec::new(),
            };
            match store.purges() {
                Some(p) => {
                    Ok::<_, ApiError>(p.is_purged(user, &push.doc_id).await?.then_some(outcome))
                }
                None => Ok(None),
            }
        };
        let outcome = match writer.push(user, &push.doc_id, changes).await {
            Ok(Pushed::Accepted { heads, appended }) => {
                if let Some(entry) = appended {
                    own.insert(push.doc_id.clone(), entry);
                }
                PushOutcome {
                    doc_id: push.doc_id.clone(),
                    status: PushStatus::Accepted,
                    server_heads: hashes(&heads),
                }
            }
            // Stayed in the trash past the retention period: nothing is
            // stored, and the device drops its copy.
            Ok(Pushed::MissingDeps { heads }) if heads.is_empty() => match purged().await? {
                Some(outcome) => outcome,
                None => PushOutcome {
                    doc_id: push.doc_id.clone(),
                    status: PushStatus::MissingDeps,
                    server_heads: Vec::new(),
                },
            },
            Ok(Pushed::MissingDeps { heads }) => PushOutcome {
                doc_id: push.doc_id.clone(),
                status: PushStatus::MissingDeps,
                server_heads: hashes(&heads),
            },
            Err(WriteError::NotFound(id)) => match purged().await? {
                Some(outcome) => outcome,
                None => return Err(ApiError::NotFound(id.to_string())),
            },
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
    let Some(mut resp) = pull(store, user, &req, pushed, &own).await? else {
        return Ok(start_over(store.renew_epoch(user, epoch).await?));
    };
    if idle && req.wait_ms > 0 && resp.docs.is_empty() && !resp.more {
        // Long poll: hold until the feed moves past the cursor, then answer.
        let Some(_held) = polls.hold(user) else {
            return Err(ApiError::TooMany {
                code: "too_many_long_polls",
                detail: format!(
                    "This account already has {} long polls held (waitMs above 0), the most \
                     this server holds at once. Poll without waiting, or retry in {} s.",
                    polls.max(),
                    LONG_POLL_RETRY.as_secs()
                ),
                retry_after: LONG_POLL_RETRY,
            });
        };
        let wait = Duration::from_millis(req.wait_ms.min(MAX_WAIT_MS));
        store.wait_for_change(user, req.feed_cursor, wait).await?;
        if let Some(later) = pull(store, user, &req, Vec::new(), &own).await? {
            resp = later;
        }
    }
    resp.epoch = epoch;
    Ok(resp)
}

/// The answer to a client from another epoch: the current one, nothing
/// else.
fn start_over(epoch: u64) -> SyncResponse {
    SyncResponse {
        epoch,
        start_over: true,
        ..SyncResponse::default()
    }
}

/// Whether the user's feed is behind `cursor`: no row at or after it,
/// though the cursor is a position the server handed out.
async fn behind(store: &Arc<dyn DocStore>, user: &str, cursor: u64) -> Result<bool, ApiError> {
    Ok(cursor > 0 && store.feed_since(user, cursor - 1, 1).await?.is_empty())
}

/// The pull half of a sync: resyncs, then the feed after the cursor.
/// `None` when the feed is behind the cursor (see [`behind`]).
async fn pull(
    store: &Arc<dyn DocStore>,
    user: &str,
    req: &SyncRequest,
    pushed: Vec<PushOutcome>,
    own: &HashMap<DocId, LogEntry>,
) -> Result<Option<SyncResponse>, ApiError> {
    let mut docs = Vec::new();
    let mut bytes = 0usize;
    let mut cursor = req.feed_cursor;
    let mut sent: HashSet<DocId> = HashSet::new();
    let size = |u: &DocUpdate| u.chunks.iter().map(|c| c.0.len()).sum::<usize>();
    // Whether `update` still fits: the first document always does (a
    // document bigger than the budget goes alone), others only within it.
    let fits = |bytes: usize, n: usize, update: &DocUpdate| {
        n == 0 || bytes + size(update) <= RESPONSE_SOFT_LIMIT_BYTES
    };
    let mut purged = Vec::new();
    let mut more = false;
    // Documents asked for in full (rare: a gap was found), within the
    // budget too: the client asks again for those left out.
    for id in &req.resync {
        if let Some(update) = doc_update(store, user, id, 0, None).await? {
            if !fits(bytes, docs.len(), &update) {
                more = true;
                break;
            }
            bytes += size(&update);
            sent.insert(id.clone());
            docs.push(update);
        }
    }
    // From the cursor's own row on: finding none at all means the data is
    // behind the cursor.
    let cursor_row = req.feed_cursor.saturating_sub(1);
    let mut feed = store.feed_since(user, cursor_row, FEED_PAGE + 1).await?;
    if req.feed_cursor > 0 && feed.is_empty() {
        return Ok(None);
    }
    feed.retain(|e| e.useq > req.feed_cursor);
    more |= feed.len() > FEED_PAGE;
    feed.truncate(FEED_PAGE);
    for entry in feed {
        let mine = own.get(&entry.doc_id);
        // The device's own push is the document's only entry after its
        // cursor: nothing to send, nothing to read.
        let only_mine = mine.is_some_and(|m| m.useq == entry.useq && m.after <= req.feed_cursor);
        if !sent.contains(&entry.doc_id) && !only_mine {
            match doc_update(
                store,
                user,
                &entry.doc_id,
                req.feed_cursor,
                mine.map(|m| m.useq),
            )
            .await?
            {
                Some(update) => {
                    if !fits(bytes, docs.len(), &update) {
                        // Not sent: the cursor stays before this row.
                        more = true;
                        break;
                    }
                    bytes += size(&update);
                    docs.push(update);
                }
                // A device starting from scratch never had it; one that
                // just appended to it finds it there.
                None if req.feed_cursor > 0 && mine.is_none() => {
                    if let Some(purges) = store.purges()
                        && purges.is_purged(user, &entry.doc_id).await?
                    {
                        purged.push(entry.doc_id.clone());
                    }
                }
                None => {}
            }
        }
        // Feed rows come in useq order and each doc's row is its latest
        // entry, so everything up to this row is now covered.
        cursor = entry.useq;
    }
    Ok(Some(SyncResponse {
        feed_cursor: cursor,
        docs,
        pushed,
        more,
        epoch: 0,
        start_over: false,
        purged,
    }))
}

/// Checks the whole request before anything is written: a sane wait,
/// within the bounds (documents first, at once; then the weight of every
/// push, before anything parses it), each document pushed once, every
/// push parsing strictly. Returns each push's changes. (Public for the
/// fuzz targets in `tests/fuzz`.)
pub fn validate(req: &SyncRequest) -> Result<Vec<Vec<Change>>, ApiError> {
    if req.epoch > MAX_EPOCH {
        return Err(ApiError::BadRequest(format!(
            "epoch {} is larger than any epoch a server hands out ({MAX_EPOCH})",
            req.epoch
        )));
    }
    if req.wait_ms > MAX_WAIT_MS {
        return Err(ApiError::BadRequest(format!(
            "waitMs {} is longer than the {MAX_WAIT_MS} ms a long poll may last",
            req.wait_ms
        )));
    }
    let docs = req.push.len() + req.resync.len();
    if docs > MAX_REQUEST_DOCS {
        return Err(too_large(Overload::Docs { docs }));
    }
    let mut seen = HashSet::new();
    for push in &req.push {
        if !seen.insert(&push.doc_id) {
            return Err(ApiError::BadRequest(format!(
                "document {} is pushed twice in one request",
                push.doc_id
            )));
        }
    }
    let bytes: u64 = req.push.iter().map(|p| p.changes.0.len() as u64).sum();
    let mut load = Load {
        docs,
        bytes,
        ..Load::default()
    };
    let inflate_allowed = Load::inflate_allowed(bytes);
    for push in &req.push {
        let budget = inflate_allowed.saturating_sub(load.weight.inflated_bytes);
        let weight = weigh(&push.changes.0, budget).map_err(|e| match e {
            WeighError::InflatesPast(_) => too_large(Overload::Inflated {
                bytes,
                allowed: inflate_allowed,
            }),
            WeighError::Malformed(m) => ApiError::BadRequest(format!(
                "changes for document {} do not parse: {m}",
                push.doc_id
            )),
        })?;
        load.weight = load.weight + weight;
    }
    load.check().map_err(too_large)?;
    let mut parsed = Vec::with_capacity(req.push.len());
    for push in &req.push {
        parsed.push(chunks::changes(&push.changes.0).map_err(|e| {
            ApiError::BadRequest(format!(
                "changes for document {} do not parse: {e}",
                push.doc_id
            ))
        })?);
    }
    Ok(parsed)
}

/// A request over the protocol's bounds: 413, saying which and by how much.
fn too_large(over: Overload) -> ApiError {
    let code = match over {
        Overload::Docs { .. } => "too_many_documents",
        Overload::Bytes { .. } | Overload::Rows { .. } | Overload::Inflated { .. } => {
            "too_much_work"
        }
    };
    ApiError::TooLarge {
        code,
        detail: format!("Refused: {over}. Nothing was stored."),
    }
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
