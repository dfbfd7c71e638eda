//! What purging assets needs from a backend: facts derived from each
//! document (the blobs it names; whether it is in the trash and since
//! when), the documents due, an all-or-nothing purge of one document, and a
//! durable queue of blob deletions. The policy (retention, order, when a
//! blob may go) is `crate::purge`; this trait only keeps the state.
//!
//! Rules every backend keeps:
//!
//! - **Facts are a projection.** [`PurgeStore::put_purge_facts`] is called
//!   by `crate::projection::after_write` after every append, with the
//!   `useq` it was derived at; an older or equal `useq` changes nothing
//!   (like listings). A document's blob references only grow (versions are
//!   never removed).
//! - **A purge is conditional and whole.** [`PurgeStore::purge_doc`]
//!   succeeds only while the document is still at `expected_last_useq`
//!   (an edit or a restore since is `Conflict`, and nothing changes). It
//!   removes the log, snapshot, listing, facts and blob references, marks
//!   the document purged (it then reads as absent; an append to it is
//!   `NotFound`; [`PurgeStore::is_purged`] says so), moves its feed row to
//!   a fresh `useq` so every device learns of it, and queues every blob it
//!   named that no other document of the user names. A backend that
//!   cannot do all of it in one transaction (DynamoDB's hold 100 items)
//!   does it in steps: the first, conditional one marks the document
//!   purged (from then on it reads as absent and refuses appends), the
//!   others remove the rest; a crash between them leaves a purge that
//!   [`PurgeStore::finish_purges`] completes.
//! - **Blob deletions are queued before any blob goes.** The queue
//!   survives crashes; a blob is deleted only while
//!   [`PurgeStore::blob_unreferenced`] says no document names it, and its
//!   queue entry is removed after.
//! - **Scoped by owner**, as everywhere: every call that names a document
//!   takes the user.

use async_trait::async_trait;
use core_sync::DocId;
use core_sync::model::Millis;

use super::StorageError;

/// A document in the trash, as the purge sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrashEntry {
    pub user: String,
    pub doc_id: DocId,
    /// Retention counts from here (`model::Deletion::retained_since`).
    pub retained_since: Millis,
}

/// One page of documents whose purge facts are behind their log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StalePage {
    /// (owner, document); may be fewer than asked for, even none, while
    /// `next` says there is more.
    pub docs: Vec<(String, DocId)>,
    /// Where the next page starts (opaque to callers); `None`: done.
    pub next: Option<String>,
}

/// A blob deletion a purge queued.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueuedBlob {
    pub user: String,
    pub sha256: String,
}

#[async_trait]
pub trait PurgeStore: Send + Sync {
    /// Records, for `user`'s document `doc` as derived at `useq`: the blobs
    /// it names (added to those already recorded) and whether it is in the
    /// trash (`Some(since)`) or not (`None`). A put derived at an older or
    /// equal `useq` than the stored one changes nothing; a document owned
    /// by someone else, or purged, changes nothing.
    async fn put_purge_facts(
        &self,
        user: &str,
        doc: &DocId,
        useq: u64,
        blobs: &[String],
        trashed_since: Option<Millis>,
    ) -> Result<(), StorageError>;

    /// Documents (any user's) whose facts are behind their log, or missing
    /// (stored before purging existed, or a crash between an append and its
    /// projection), one page from `start` (`None`: the beginning), looking
    /// at about `limit` documents: the purge derives them again before it
    /// decides anything. Paging through every document once sees every
    /// document that was stale when the first page was read.
    async fn stale_purge_facts(
        &self,
        start: Option<&str>,
        limit: usize,
    ) -> Result<StalePage, StorageError>;

    /// Documents in the trash (any user's) whose retention began at or
    /// before `since`, oldest first, at most `limit`.
    async fn due_for_purge(
        &self,
        since: Millis,
        limit: usize,
    ) -> Result<Vec<TrashEntry>, StorageError>;

    /// Purges one document (see the module docs); returns the blobs it
    /// queued for deletion. `Conflict` if the document moved past
    /// `expected_last_useq`; `NotFound` if absent, another user's or
    /// already purged.
    async fn purge_doc(
        &self,
        user: &str,
        doc: &DocId,
        expected_last_useq: u64,
    ) -> Result<Vec<String>, StorageError>;

    /// Completes purges a crash interrupted after their first step (see
    /// the module docs) and returns how many. A backend whose purge is one
    /// transaction has none.
    async fn finish_purges(&self) -> Result<u64, StorageError> {
        Ok(0)
    }

    /// Whether `user`'s document `doc` was purged.
    async fn is_purged(&self, user: &str, doc: &DocId) -> Result<bool, StorageError>;

    /// Queued blob deletions, at most `limit`, in no particular order;
    /// empty only when none is queued.
    async fn queued_blobs(&self, limit: usize) -> Result<Vec<QueuedBlob>, StorageError>;

    /// Whether no document of `user` names the blob (it may be deleted).
    async fn blob_unreferenced(&self, user: &str, sha256: &str) -> Result<bool, StorageError>;

    /// Removes a queued deletion (the blob is gone, or named again).
    async fn unqueue_blob(&self, user: &str, sha256: &str) -> Result<(), StorageError>;
}
