//! Collection: assets that stayed in the trash past the retention period
//! are purged — their log, snapshot, listing and purge facts, and every
//! blob no other asset of the user names — on any backend that implements
//! `storage::purge::PurgeStore` and `BlobStore::delete`.
//!
//! One run ([`run`]):
//!
//! 1. **Facts first.** Documents whose facts are behind their log (a crash
//!    between an append and its projection, or stored before purging
//!    existed) are derived again, so the reference counts the run relies on
//!    name every blob of every live document.
//! 2. **Finish what a crash left.** Purges an earlier run left after their
//!    first step (on a backend that purges in steps) are completed, and
//!    blob deletions it queued are done.
//! 3. **Purge what is due.** Every document in the trash whose retention
//!    began at least `retention` before `now` is purged by one conditional,
//!    all-or-nothing storage call: a document edited or restored since its
//!    facts were read is left alone (its new facts decide next time).
//! 4. **Delete the queued blobs**, each only while no document names it;
//!    a blob shared with a live asset is never deleted.
//!
//! A crash (SIGKILL) at any point leaves every document whole or purged,
//! and queued blobs are deleted by the next run. The time comes from an
//! injected [`Clock`]; `atelier-cloud serve` runs this every
//! `--purge-interval-minutes` and `atelier-cloud purge` once.
//!
//! Known window: a blob that only a purged asset named, re-used by a new
//! version pushed in the instant between the reference check and the
//! deletion (the device checked that the server had it just before), is
//! deleted; the device that pushed still holds it.

use std::sync::Arc;
use std::time::Duration;

use core_sync::model::{AssetDoc, Millis};

use crate::auth::Clock;
use crate::storage::purge::PurgeStore;
use crate::storage::{BlobStore, DocStore, StorageError};

/// The retention period unless configured otherwise.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// Documents handled per storage query.
const BATCH: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("this storage backend cannot purge")]
    Unsupported,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What one run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Documents purged.
    pub assets: u64,
    /// Blobs deleted, and the bytes they held.
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Queued blobs kept because a document names them again.
    pub blobs_kept: u64,
    /// Documents whose facts were derived again first.
    pub refreshed: u64,
    /// Purges an interrupted run had begun, completed.
    pub resumed: u64,
}

/// Milliseconds since the epoch by `clock`.
pub fn now_millis(clock: &dyn Clock) -> Millis {
    (clock.now_secs() as i64).saturating_mul(1000)
}

/// One purge run at `now` (see the module docs).
pub async fn run(
    docs: &dyn DocStore,
    blobs: &dyn BlobStore,
    now: Millis,
    retention: Duration,
) -> Result<PurgeReport, PurgeError> {
    let purges = docs.purges().ok_or(PurgeError::Unsupported)?;
    let (refreshed, unreadable) = refresh_facts(docs, purges).await?;
    let resumed = purges.finish_purges().await?;
    let mut report = PurgeReport {
        refreshed,
        resumed,
        ..PurgeReport::default()
    };
    // A document whose facts cannot be derived may name any blob: then no
    // blob is deleted this run (documents are still purged; their blobs
    // stay queued).
    let blobs_safe = unreadable == 0;
    if !blobs_safe {
        tracing::warn!(
            documents = unreadable,
            "documents do not load, so which blobs they name is unknown; no blob is deleted"
        );
    }
    if blobs_safe {
        delete_queued(purges, blobs, &mut report).await?;
    }
    let since = now.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    let mut skipped = std::collections::HashSet::new();
    loop {
        let due = purges.due_for_purge(since, BATCH + skipped.len()).await?;
        let todo: Vec<_> = due
            .into_iter()
            .filter(|e| !skipped.contains(&e.doc_id))
            .collect();
        if todo.is_empty() {
            break;
        }
        for entry in todo {
            let Some(head) = docs.head(&entry.user, &entry.doc_id).await? else {
                skipped.insert(entry.doc_id);
                continue;
            };
            match purges
                .purge_doc(&entry.user, &entry.doc_id, head.last_useq)
                .await
            {
                Ok(queued) => {
                    report.assets += 1;
                    tracing::info!(
                        doc = %entry.doc_id,
                        retained_since = entry.retained_since,
                        blobs_queued = queued.len(),
                        "purged an asset from the trash"
                    );
                }
                // Edited or restored meanwhile, or gone: its new facts
                // decide on a later run.
                Err(StorageError::Conflict | StorageError::NotFound) => {
                    skipped.insert(entry.doc_id);
                }
                Err(e) => return Err(e.into()),
            }
        }
        if blobs_safe {
            delete_queued(purges, blobs, &mut report).await?;
        }
    }
    Ok(report)
}

/// Derives the facts of every document whose facts are behind its log.
/// Returns how many it derived and how many do not load.
async fn refresh_facts(
    docs: &dyn DocStore,
    purges: &dyn PurgeStore,
) -> Result<(u64, usize), PurgeError> {
    let mut refreshed = 0;
    let mut failed = 0;
    let mut start: Option<String> = None;
    loop {
        let page = purges.stale_purge_facts(start.as_deref(), BATCH).await?;
        for (user, doc_id) in page.docs {
            match refresh_one(docs, purges, &user, &doc_id).await? {
                Refreshed::Derived => refreshed += 1,
                Refreshed::Gone => {}
                Refreshed::Unreadable => failed += 1,
            }
        }
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok((refreshed, failed)),
        }
    }
}

/// What deriving one document's facts again came to.
enum Refreshed {
    Derived,
    /// Purged meanwhile: nothing left to derive.
    Gone,
    /// The document does not load.
    Unreadable,
}

/// Derives one document's facts again.
async fn refresh_one(
    docs: &dyn DocStore,
    purges: &dyn PurgeStore,
    user: &str,
    doc_id: &core_sync::DocId,
) -> Result<Refreshed, PurgeError> {
    let Some(head) = docs.head(user, doc_id).await? else {
        return Ok(Refreshed::Gone);
    };
    let chunks = match docs.read_all(user, doc_id).await {
        Ok(chunks) => chunks,
        Err(StorageError::NotFound) => return Ok(Refreshed::Gone),
        Err(e) => return Err(e.into()),
    };
    let derived =
        AssetDoc::load_chunks(chunks.iter().map(|c| c.bytes.as_slice())).and_then(|doc| {
            let blobs = doc.blob_refs()?;
            let trashed = doc.reader().deletion()?.map(|d| d.retained_since());
            Ok((blobs, trashed))
        });
    match derived {
        Ok((blobs, trashed)) => {
            let blobs: Vec<String> = blobs.into_iter().collect();
            purges
                .put_purge_facts(user, doc_id, head.last_useq, &blobs, trashed)
                .await?;
            Ok(Refreshed::Derived)
        }
        Err(e) => {
            // A document that does not load is never purged: its
            // blobs stay, since nobody can say which it names.
            tracing::warn!(doc = %doc_id, error = %e, "cannot derive purge facts");
            Ok(Refreshed::Unreadable)
        }
    }
}

/// Deletes every queued blob that no document names; unqueues the rest.
async fn delete_queued(
    purges: &dyn PurgeStore,
    blobs: &dyn BlobStore,
    report: &mut PurgeReport,
) -> Result<(), PurgeError> {
    loop {
        let queued = purges.queued_blobs(BATCH).await?;
        if queued.is_empty() {
            return Ok(());
        }
        for q in queued {
            if purges.blob_unreferenced(&q.user, &q.sha256).await? {
                let freed = blobs.delete(&q.user, &q.sha256).await?;
                report.blobs += u64::from(freed > 0);
                report.blob_bytes += freed;
            } else {
                report.blobs_kept += 1;
            }
            purges.unqueue_blob(&q.user, &q.sha256).await?;
        }
    }
}

/// When and how often a server purges.
#[derive(Debug, Clone)]
pub struct PurgeSchedule {
    pub retention: Duration,
    pub interval: Duration,
    pub clock: Arc<dyn Clock>,
}

impl Default for PurgeSchedule {
    fn default() -> Self {
        PurgeSchedule {
            retention: DEFAULT_RETENTION,
            interval: Duration::from_secs(3600),
            clock: Arc::new(crate::auth::SystemClock),
        }
    }
}

/// Runs [`run`] now and then every `schedule.interval`, logging each
/// outcome, until the task is aborted.
pub fn spawn_periodic(
    docs: Arc<dyn DocStore>,
    blobs: Arc<dyn BlobStore>,
    schedule: PurgeSchedule,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let now = now_millis(schedule.clock.as_ref());
            match run(docs.as_ref(), blobs.as_ref(), now, schedule.retention).await {
                Ok(r) if r.assets > 0 || r.blobs > 0 => tracing::info!(
                    assets = r.assets,
                    blobs = r.blobs,
                    bytes = r.blob_bytes,
                    "purged the trash past its retention period"
                ),
                Ok(_) => {}
                Err(PurgeError::Unsupported) => {
                    tracing::warn!("this storage backend cannot purge; the trash is kept");
                    return;
                }
                Err(e) => tracing::error!(error = %e, "purging the trash failed; retrying later"),
            }
            tokio::time::sleep(schedule.interval).await;
        }
    })
}
