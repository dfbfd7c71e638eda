//! The server's storage: one small fallible trait pair ([`DocStore`],
//! [`BlobStore`]) that the sync endpoint and the REST API are written
//! against (plus [`jobs::JobStore`]), an embedded implementation
//! ([`embedded`]: SQLite + files), an AWS one ([`aws`]: DynamoDB + S3) and
//! a black-box [`conformance`] suite both must pass.
//!
//! The model, shared by every backend:
//!
//! - **Per-user sequence.** Each user has a counter `useq` (starting at 1);
//!   every append to any of the user's documents takes the next value. A
//!   client's sync position is one number: the `useq` up to which it has
//!   applied everything.
//! - **Change log.** A document is its log entries keyed `(doc_id, useq)`,
//!   each a chunk of concatenated Automerge changes, plus at most one
//!   snapshot that folds every entry with `useq <= snapshot_upto`.
//! - **Feed.** Per user, one row per document at that document's latest
//!   `useq`; "what changed since cursor `c`" is one range query `useq > c`.
//! - **Compaction** writes the new snapshot first and only then deletes the
//!   entries it folded in (exactly `useq <= upto`). A crash in between loses
//!   nothing: readers see the snapshot and the leftover entries, and applying
//!   an Automerge chunk twice is harmless.
//! - **Epoch.** Per user, a number naming the lineage of the user's data
//!   ([`DocStore::epoch`]): devices' cursors and server heads belong to it,
//!   and a new one (after a restore) sends them back to the start.
//! - **Ownership.** A document belongs to the user whose append created it.
//!   To anyone else it does not exist: reads answer `None`/`NotFound` and
//!   nothing is written.
//!
//! - **Projections** ([`projection`]): what the REST API reads without
//!   loading a document. [`projection::ListingStore`] keeps one listing per
//!   document (title, cover, active version, message count, times; newest
//!   first, cursor pages); [`projection::CostStore`] keeps the user's cost
//!   events by time (rollups per UTC day, provider and model; pages for the
//!   CSV). Both are derived from the document after each successful append
//!   by `crate::projection::after_write`, and reached through
//!   [`DocStore::projections`], so whatever writes a document can update
//!   them.
//!
//! - **Purging** ([`purge`]): what `crate::purge` needs to remove assets
//!   that stayed in the trash past the retention period, reached through
//!   [`DocStore::purges`] (`None` on a backend that cannot purge yet), and
//!   [`BlobStore::delete`].
//!
//! What this module does *not* know: HTTP, JWTs, Automerge semantics. The
//! bytes are opaque; callers build and check them.

#[cfg(feature = "aws")]
pub mod aws;
pub mod conformance;
pub mod embedded;
pub mod jobs;
pub mod projection;
pub mod purge;

use std::time::Duration;

use async_trait::async_trait;
use automerge::ChangeHash;
use core_sync::DocId;

/// Longest user id accepted (Cognito `sub`s are 36 characters).
pub const MAX_USER_LEN: usize = 128;

/// Where a document stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocHead {
    pub owner: String,
    /// The `useq` of the document's latest append.
    pub last_useq: u64,
    /// The snapshot folds every entry up to here; 0 if there is none.
    pub snapshot_upto: u64,
    /// The document's heads after its latest append (as the appender
    /// computed them), so a sync response can name them without loading the
    /// document.
    pub heads: Vec<ChangeHash>,
}

/// One stored piece of a document, to apply with `load_incremental`.
#[derive(Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The entry's `useq`, or for a snapshot the `snapshot_upto` it covers.
    pub useq: u64,
    pub bytes: Vec<u8>,
    pub is_snapshot: bool,
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("useq", &self.useq)
            .field("bytes", &self.bytes.len())
            .field("is_snapshot", &self.is_snapshot)
            .finish()
    }
}

/// One row of a user's change feed: `doc_id` last changed at `useq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    pub doc_id: DocId,
    pub useq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// A conditional write lost: the document is not at the state the
    /// caller read. Nothing was written; re-read and retry.
    #[error("conflict: the document changed since it was read; nothing was written")]
    Conflict,
    /// The document does not exist, or belongs to another user.
    #[error("not found")]
    NotFound,
    /// The caller passed something malformed (user id, hash, empty chunk).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The backend failed (database, disk, network). May be transient.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// The backend is overloaded or out of reach right now (throttled, a
    /// timeout, a refused connection): retry later. A write that reports
    /// this may or may not have been applied; the write path's appends
    /// are idempotent, so a retried push stores nothing twice.
    #[error("storage temporarily unavailable: {0}")]
    Unavailable(String),
    /// The backend has no room for the write (a full disk) or cannot write
    /// at all (a read-only file system). Nothing was written; the same
    /// write succeeds once space returns.
    #[error("storage full or read-only: {0}")]
    Full(String),
}

/// Documents: logs, snapshots and the per-user feed.
///
/// Every method takes the authenticated user and validates it
/// ([`validate_user`]); a document owned by someone else behaves as absent.
#[async_trait]
pub trait DocStore: Send + Sync {
    /// `None` if absent or owned by someone else.
    async fn head(&self, user: &str, doc: &DocId) -> Result<Option<DocHead>, StorageError>;

    /// Appends one log entry (non-empty `bytes`), allocating the next `useq`
    /// for `user`, and returns it.
    ///
    /// Conditional: `expected_last_useq` must equal the document's current
    /// `last_useq`, else `Conflict`. `0` means "a new document": it is
    /// created owned by `user`. A document owned by someone else, or an
    /// absent one with `expected_last_useq > 0`, is `NotFound`. Allocation,
    /// entry and feed row are one atomic write: on any error nothing is
    /// written and no `useq` is used up.
    async fn append(
        &self,
        user: &str,
        doc: &DocId,
        expected_last_useq: u64,
        bytes: &[u8],
        heads: &[ChangeHash],
    ) -> Result<u64, StorageError>;

    /// What a client at cursor `after` lacks of this document, ascending:
    /// the snapshot if `snapshot_upto > after`, then the entries with
    /// `useq > max(after, snapshot_upto)`. Empty if nothing is newer.
    ///
    /// The answer is one consistent view even while a compaction runs: it
    /// never misses an entry that was folded between two of its reads.
    async fn read_since(
        &self,
        user: &str,
        doc: &DocId,
        after: u64,
    ) -> Result<Vec<Chunk>, StorageError>;

    /// The whole document: the snapshot (if any), then the entries after it.
    async fn read_all(&self, user: &str, doc: &DocId) -> Result<Vec<Chunk>, StorageError> {
        self.read_since(user, doc, 0).await
    }

    /// Feed rows with `useq > after`, ascending, at most `limit`.
    async fn feed_since(
        &self,
        user: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FeedEntry>, StorageError>;

    /// Replaces the snapshot with `snapshot` (which must fold every entry
    /// with `useq <= upto`), then deletes exactly those entries.
    /// Conditional on `snapshot_upto < upto <= last_useq`, else `Conflict`.
    /// Entries left behind by a crash are ignored by reads and deleted by
    /// the next compaction.
    async fn compact(
        &self,
        user: &str,
        doc: &DocId,
        upto: u64,
        snapshot: &[u8],
    ) -> Result<(), StorageError>;

    /// The listing and cost-event projections kept beside these documents
    /// (see [`projection`]).
    fn projections(&self) -> &dyn projection::ProjectionStore;

    /// What purging needs (see [`purge`]). `None`: this backend cannot
    /// purge, and assets stay in the trash until it can.
    fn purges(&self) -> Option<&dyn purge::PurgeStore> {
        None
    }

    /// The user's latest `useq` (0 if none): the feed position of "now".
    async fn user_head(&self, user: &str) -> Result<u64, StorageError>;

    /// The user's feed epoch (1 to [`MAX_EPOCH`]): names the lineage of the
    /// user's data, so a device can tell a restored server from the one it
    /// synced with. Made on first use; it changes by [`Self::renew_epoch`],
    /// or when the data itself was replaced where the backend can tell (on
    /// AWS the tables' identity is mixed in, and a restore makes new
    /// tables). `known`: the epoch the caller last heard (a device's, 0 if
    /// none); a backend that caches epochs answers from its cache only
    /// when it agrees.
    async fn epoch(&self, user: &str, known: u64) -> Result<u64, StorageError>;

    /// Starts a new epoch for `user` if it is still `seen`: the data was
    /// found behind a device (restored from an older copy). Returns the
    /// epoch now current; callers racing from the same `seen` all get the
    /// same new one.
    async fn renew_epoch(&self, user: &str, seen: u64) -> Result<u64, StorageError>;

    /// Returns once the user's feed moves past `after`, or when `timeout`
    /// runs out (not an error): the server side of a long poll. The default
    /// polls `user_head`, which works across many server instances; a
    /// backend in one process can wake waiters directly.
    async fn wait_for_change(
        &self,
        user: &str,
        after: u64,
        timeout: Duration,
    ) -> Result<(), StorageError> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.user_head(user).await? <= after {
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep_until(
                (tokio::time::Instant::now() + Duration::from_millis(250)).min(deadline),
            )
            .await;
        }
        Ok(())
    }
}

/// What an image is to the server, for storage that treats kinds apart
/// (on AWS: a key prefix and an object tag, which lifecycle rules select
/// on; `aws-schema.json` names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// Images as a user added them (uploads through transfer URLs).
    Raw,
    /// Images the server made: provider outputs.
    Derivative,
    /// Small previews for lists and timelines.
    Thumbnail,
}

impl BlobKind {
    pub const ALL: [BlobKind; 3] = [BlobKind::Raw, BlobKind::Derivative, BlobKind::Thumbnail];

    /// The kind's name, as `aws-schema.json` names it.
    pub fn segment(self) -> &'static str {
        match self {
            BlobKind::Raw => "raw",
            BlobKind::Derivative => "derivatives",
            BlobKind::Thumbnail => "thumbnails",
        }
    }
}

/// Content-addressed blobs (images), scoped per user.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` under `sha256`, which they must hash to (else
    /// `Invalid`, nothing stored). Storing a blob twice is harmless.
    async fn put(&self, user: &str, sha256: &str, bytes: &[u8]) -> Result<(), StorageError>;

    /// [`BlobStore::put`] of an image the server knows the kind of. A
    /// blob is still found by its hash alone, whatever its kind; storage
    /// that does not tell kinds apart ignores it (the default).
    async fn put_as(
        &self,
        user: &str,
        sha256: &str,
        bytes: &[u8],
        kind: BlobKind,
    ) -> Result<(), StorageError> {
        let _ = kind;
        self.put(user, sha256, bytes).await
    }

    /// The user's blob, `None` if that user has not stored it.
    async fn get(&self, user: &str, sha256: &str) -> Result<Option<Vec<u8>>, StorageError>;

    async fn exists(&self, user: &str, sha256: &str) -> Result<bool, StorageError>;

    /// A short-lived URL a client uploads `user`'s blob to directly, pinned
    /// to its SHA-256, size and content type: S3 presigned on AWS, the
    /// embedded server's own signed URL otherwise.
    async fn upload_url(
        &self,
        user: &str,
        sha256: &str,
        bytes: u64,
        content_type: &str,
    ) -> Result<TransferUrl, StorageError>;

    /// Deletes `user`'s blob and returns the bytes it freed (0 if it was
    /// not there: deleting twice is harmless). Only the purge calls this,
    /// for a blob no document names. The default refuses: a backend that
    /// cannot delete keeps every blob.
    async fn delete(&self, user: &str, sha256: &str) -> Result<u64, StorageError> {
        let _ = (user, sha256);
        Err(StorageError::Backend(
            "this storage backend cannot delete blobs".into(),
        ))
    }

    /// A short-lived URL to download `user`'s blob from; `None` if that
    /// user has not stored it.
    async fn download_url(
        &self,
        user: &str,
        sha256: &str,
    ) -> Result<Option<TransferUrl>, StorageError>;
}

/// How long transfer URLs live.
pub const TRANSFER_URL_TTL: Duration = Duration::from_secs(15 * 60);

pub use core_sync::sync::protocol::{MAX_EPOCH, TransferUrl};

/// A fresh random user epoch, 1 to [`MAX_EPOCH`].
pub(crate) fn new_epoch() -> u64 {
    rand08::random::<u64>() % MAX_EPOCH + 1
}

/// The epoch devices see: the user's stored epoch, mixed with what names
/// the backend's data as a whole (empty where nothing does), 1 to
/// [`MAX_EPOCH`].
#[cfg(feature = "aws")]
pub(crate) fn mix_epoch(data_id: &str, user_epoch: u64) -> u64 {
    if data_id.is_empty() {
        return user_epoch.clamp(1, MAX_EPOCH);
    }
    let digest = core_sync::blob::sha256_hex(format!("{data_id}\n{user_epoch}").as_bytes());
    let n = u64::from_str_radix(&digest[..16], 16).expect("hex");
    n % MAX_EPOCH + 1
}

/// Checks a user id: non-empty, at most [`MAX_USER_LEN`] bytes, no control
/// characters. Ids are otherwise opaque (Cognito `sub`s).
pub fn validate_user(user: &str) -> Result<(), StorageError> {
    if user.is_empty() {
        return Err(StorageError::Invalid("empty user id".into()));
    }
    if user.len() > MAX_USER_LEN {
        return Err(StorageError::Invalid(format!(
            "user id is {} bytes, more than {MAX_USER_LEN}",
            user.len()
        )));
    }
    if user.chars().any(char::is_control) {
        return Err(StorageError::Invalid(
            "user id contains control characters".into(),
        ));
    }
    Ok(())
}

/// Checks a blob name: 64 lowercase hex characters.
pub fn validate_sha256(sha256: &str) -> Result<(), StorageError> {
    if core_sync::blob::is_valid_sha256(sha256) {
        Ok(())
    } else {
        Err(StorageError::Invalid(format!(
            "{:?} is not a SHA-256 (64 lowercase hex characters)",
            sha256.chars().take(80).collect::<String>()
        )))
    }
}

/// Heads as both backends store them: concatenated 32-byte change hashes.
pub(crate) fn decode_heads(bytes: &[u8]) -> Result<Vec<ChangeHash>, StorageError> {
    if !bytes.len().is_multiple_of(32) {
        return Err(StorageError::Backend(format!(
            "stored heads have {} bytes",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| ChangeHash(c.try_into().expect("32 bytes")))
        .collect())
}
