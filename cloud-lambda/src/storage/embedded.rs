//! The embedded backend of `atelier-cloud serve`: documents in SQLite at
//! `DIR/cloud.db`, blobs as files under `DIR/blobs`.
//!
//! SQLite runs in WAL mode with `synchronous=FULL` and a busy timeout: the
//! server is every device's source of truth, and a device that saw a push
//! acknowledged never pushes it again, so an acknowledged append must
//! survive power loss too (a rolled-back log would strand devices whose
//! cursor is past it). All writes go through one dedicated connection behind a mutex,
//! so concurrent appends from many tasks queue there instead of failing
//! with `SQLITE_BUSY`; each write transaction starts with a write, so it
//! holds the write lock from its first statement even if another process
//! shares the file. Reads run on a small pool beside the writer and each
//! multi-statement read is one read transaction (one WAL snapshot).
//!
//! Compaction here is a single transaction (snapshot and deletion commit
//! together), which is stronger than the trait asks. Snapshots sit in their
//! own table, so an append (which rewrites the small `docs` row) never
//! rewrites a snapshot.
//!
//! Blobs live at `DIR/blobs/users/{hex sha256 of user id}/{sha256}`: the raw
//! user id never reaches a path. Writes go to `DIR/blobs/tmp`, are fsynced,
//! then renamed into place, so a crash never leaves a partial blob under a
//! real name; reads re-hash the bytes.

use std::io;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use automerge::ChangeHash;
use core_sync::DocId;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Row};
use tokio::sync::Mutex;

use super::{Chunk, DocHead, DocStore, FeedEntry, StorageError, decode_heads, validate_user};

mod blobs;
mod jobs;
mod projection;
mod purge;

pub use blobs::{EmbeddedBlobs, Grant, TRANSFER_PATH, TransferError};

/// The database file inside the store directory.
pub const DB_FILE: &str = "cloud.db";

/// Documents in SQLite. Cheap to clone (shared connections).
#[derive(Clone)]
pub struct EmbeddedStore {
    /// Readers (WAL lets them run beside the writer).
    pool: SqlitePool,
    /// The one connection that writes.
    writer: Arc<Mutex<SqliteConnection>>,
    /// Wakes long polls when a user's feed moves (this process is the only
    /// writer, so no polling is needed).
    feed_moved: Arc<tokio::sync::Notify>,
    /// Long polls parked in [`DocStore::wait_for_change`] right now.
    parked: Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts a parked long poll while it lives (also when its request is
/// dropped mid-wait).
struct ParkedGuard<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> ParkedGuard<'a> {
    fn new(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ParkedGuard(count)
    }
}

impl Drop for ParkedGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        if sqlx_full(&e) {
            StorageError::Full(format!("database: {e}"))
        } else {
            StorageError::Backend(format!("database: {e}"))
        }
    }
}

/// SQLite's SQLITE_READONLY (8) or SQLITE_FULL (13), as primary codes of
/// the extended code sqlx reports, or a full or read-only file system.
fn sqlx_full(e: &sqlx::Error) -> bool {
    let primary = e
        .as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i64>().ok())
        .map(|c| c & 0xff);
    match e {
        sqlx::Error::Io(io) => is_full(io),
        _ => matches!(primary, Some(8 | 13)),
    }
}

/// A full disk or a read-only file system (also when wrapped, as
/// `tempfile` wraps its errors with the path).
fn is_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::ReadOnlyFilesystem
    )
}

/// A file-system error as a storage error: a full disk or a read-only file
/// system is [`StorageError::Full`].
pub(super) fn io_storage_error(what: String, e: &io::Error) -> StorageError {
    if is_full(e) {
        StorageError::Full(what)
    } else {
        StorageError::Backend(what)
    }
}

/// A blob store error as a storage error (see [`io_storage_error`]).
pub(super) fn blob_storage_error(e: core_sync::blob::BlobError) -> StorageError {
    match &e {
        core_sync::blob::BlobError::Io { source, .. } => io_storage_error(e.to_string(), source),
        _ => StorageError::Backend(e.to_string()),
    }
}

impl From<sqlx::migrate::MigrateError> for StorageError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        let what = format!("database migration: {e}");
        match e {
            // Opening the database writes (its WAL file, the migrations
            // table): a full disk says so.
            sqlx::migrate::MigrateError::Execute(inner) if sqlx_full(&inner) => {
                StorageError::Full(what)
            }
            _ => StorageError::Backend(what),
        }
    }
}

impl EmbeddedStore {
    /// Opens (creating and migrating if needed) the store at `dir/cloud.db`,
    /// owner-only (see `core_sync::private_fs`).
    pub async fn open(dir: &Path) -> Result<Self, StorageError> {
        let db = dir.join(DB_FILE);
        core_sync::private_fs::create_dir(dir).map_err(io_err(dir))?;
        core_sync::private_fs::database(&db).map_err(io_err(&db))?;
        let connect = SqliteConnectOptions::from_str("sqlite://")?
            .filename(&db)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // Connecting (WAL on a new file) and migrating, one opener at a time.
        let turn = core_sync::open_lock::take(&db).await.map_err(io_err(&db))?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(connect.clone())
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let writer = SqliteConnection::connect_with(&connect).await?;
        drop(turn);
        Ok(EmbeddedStore {
            pool,
            writer: Arc::new(Mutex::new(writer)),
            feed_moved: Arc::new(tokio::sync::Notify::new()),
            parked: Arc::default(),
        })
    }

    /// How many long polls are parked, waiting for a user's feed to move
    /// (registered for the wake-up: an append now answers them at once).
    pub fn parked_long_polls(&self) -> usize {
        self.parked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Closes the connections, checkpointing the WAL.
    pub async fn close(self) {
        if let Ok(writer) = Arc::try_unwrap(self.writer) {
            let _ = writer.into_inner().close().await;
        }
        self.pool.close().await;
    }

    /// Ends a write transaction: commits if `result` is `Ok`, else rolls
    /// back (so a refused conditional write leaves nothing, not even a
    /// used-up useq).
    async fn finish<T>(
        tx: sqlx::Transaction<'_, sqlx::Sqlite>,
        result: Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        match result {
            Ok(value) => {
                tx.commit().await?;
                Ok(value)
            }
            Err(e) => {
                // Should the rollback itself fail, nothing is committed
                // either; the connection reports the fault on its next use.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }
}

#[async_trait]
impl DocStore for EmbeddedStore {
    async fn head(&self, user: &str, doc: &DocId) -> Result<Option<DocHead>, StorageError> {
        validate_user(user)?;
        let row =
            sqlx::query("SELECT owner, last_useq, snapshot_upto, heads FROM docs WHERE doc_id = ? AND purged = 0")
                .bind(doc.as_str())
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let owner: String = row.try_get("owner")?;
        if owner != user {
            return Ok(None);
        }
        Ok(Some(DocHead {
            owner,
            last_useq: from_sql(row.try_get("last_useq")?)?,
            snapshot_upto: from_sql(row.try_get("snapshot_upto")?)?,
            heads: decode_heads(&row.try_get::<Vec<u8>, _>("heads")?)?,
        }))
    }

    async fn append(
        &self,
        user: &str,
        doc: &DocId,
        expected_last_useq: u64,
        bytes: &[u8],
        heads: &[ChangeHash],
    ) -> Result<u64, StorageError> {
        validate_user(user)?;
        if bytes.is_empty() {
            return Err(StorageError::Invalid("empty log entry".into()));
        }
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let result = append_in(
            &mut tx,
            user,
            doc.as_str(),
            expected_last_useq,
            bytes,
            heads,
        )
        .await;
        let appended = Self::finish(tx, result).await;
        if appended.is_ok() {
            self.feed_moved.notify_waiters();
        }
        appended
    }

    async fn wait_for_change(
        &self,
        user: &str,
        after: u64,
        timeout: Duration,
    ) -> Result<(), StorageError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register before checking, so an append in between still wakes us.
            let moved = self.feed_moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if self.user_head(user).await? > after {
                return Ok(());
            }
            let parked = ParkedGuard::new(&self.parked);
            let timed_out = tokio::time::timeout_at(deadline, moved).await.is_err();
            drop(parked);
            if timed_out {
                return Ok(());
            }
        }
    }

    async fn read_since(
        &self,
        user: &str,
        doc: &DocId,
        after: u64,
    ) -> Result<Vec<Chunk>, StorageError> {
        validate_user(user)?;
        let after = to_sql(after);
        // One read transaction: the head and the entries come from the
        // same WAL snapshot, so a compaction in between cannot hide entries.
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT docs.owner, docs.snapshot_upto,
                    CASE WHEN docs.snapshot_upto > ?2 THEN snapshots.bytes END AS snapshot
             FROM docs LEFT JOIN snapshots ON snapshots.doc_id = docs.doc_id
             WHERE docs.doc_id = ?1 AND docs.purged = 0",
        )
        .bind(doc.as_str())
        .bind(after)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StorageError::NotFound)?;
        if row.try_get::<String, _>("owner")? != user {
            return Err(StorageError::NotFound);
        }
        let snapshot_upto: i64 = row.try_get("snapshot_upto")?;
        let snapshot: Option<Vec<u8>> = row.try_get("snapshot")?;
        let mut chunks = Vec::new();
        let mut from = after;
        if let Some(bytes) = snapshot {
            chunks.push(Chunk {
                useq: from_sql(snapshot_upto)?,
                bytes,
                is_snapshot: true,
            });
            // Entries the snapshot folded in (left by an interrupted
            // compaction elsewhere) are not sent again.
            from = snapshot_upto;
        }
        let rows =
            sqlx::query("SELECT useq, bytes FROM log WHERE doc_id = ? AND useq > ? ORDER BY useq")
                .bind(doc.as_str())
                .bind(from)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        for row in rows {
            chunks.push(Chunk {
                useq: from_sql(row.try_get("useq")?)?,
                bytes: row.try_get("bytes")?,
                is_snapshot: false,
            });
        }
        Ok(chunks)
    }

    async fn feed_since(
        &self,
        user: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FeedEntry>, StorageError> {
        validate_user(user)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT useq, doc_id FROM feed WHERE user_id = ? AND useq > ? ORDER BY useq LIMIT ?",
        )
        .bind(user)
        .bind(to_sql(after))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let doc_id: String = row.try_get("doc_id")?;
                Ok(FeedEntry {
                    doc_id: doc_id.parse().map_err(|e| {
                        StorageError::Backend(format!("database holds a bad document id: {e}"))
                    })?,
                    useq: from_sql(row.try_get("useq")?)?,
                })
            })
            .collect()
    }

    async fn compact(
        &self,
        user: &str,
        doc: &DocId,
        upto: u64,
        snapshot: &[u8],
    ) -> Result<(), StorageError> {
        validate_user(user)?;
        if snapshot.is_empty() {
            return Err(StorageError::Invalid("empty snapshot".into()));
        }
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let result = compact_in(&mut tx, user, doc.as_str(), to_sql(upto), snapshot).await;
        Self::finish(tx, result).await
    }

    fn projections(&self) -> &dyn super::projection::ProjectionStore {
        self
    }

    fn purges(&self) -> Option<&dyn super::purge::PurgeStore> {
        Some(self)
    }

    async fn user_head(&self, user: &str) -> Result<u64, StorageError> {
        validate_user(user)?;
        let last: Option<i64> = sqlx::query_scalar("SELECT last_useq FROM users WHERE user_id = ?")
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        from_sql(last.unwrap_or(0))
    }

    async fn epoch(&self, user: &str, _known: u64) -> Result<u64, StorageError> {
        validate_user(user)?;
        let stored: Option<Option<i64>> =
            sqlx::query_scalar("SELECT epoch FROM users WHERE user_id = ?")
                .bind(user)
                .fetch_optional(&self.pool)
                .await?;
        if let Some(Some(epoch)) = stored {
            return from_sql(epoch);
        }
        // First use: made once, whoever comes first.
        let epoch: i64 = sqlx::query_scalar(
            "INSERT INTO users (user_id, last_useq, epoch) VALUES (?, 0, ?)
             ON CONFLICT (user_id) DO UPDATE SET epoch = COALESCE(users.epoch, excluded.epoch)
             RETURNING epoch",
        )
        .bind(user)
        .bind(to_sql(super::new_epoch()))
        .fetch_one(&mut *self.writer.lock().await)
        .await?;
        from_sql(epoch)
    }

    async fn renew_epoch(&self, user: &str, seen: u64) -> Result<u64, StorageError> {
        validate_user(user)?;
        sqlx::query("UPDATE users SET epoch = ? WHERE user_id = ? AND epoch = ?")
            .bind(to_sql(super::new_epoch()))
            .bind(user)
            .bind(to_sql(seen))
            .execute(&mut *self.writer.lock().await)
            .await?;
        self.epoch(user, 0).await
    }
}

/// The body of [`DocStore::append`], inside a write transaction.
async fn append_in(
    tx: &mut SqliteConnection,
    user: &str,
    doc_id: &str,
    expected_last_useq: u64,
    bytes: &[u8],
    heads: &[ChangeHash],
) -> Result<u64, StorageError> {
    let heads: Vec<u8> = heads.iter().flat_map(|h| h.0).collect();
    // A write first: the transaction holds the write lock from here on. A
    // refused append rolls the allocation back.
    let useq: i64 = sqlx::query_scalar(
        "INSERT INTO users (user_id, last_useq) VALUES (?, 1)
         ON CONFLICT (user_id) DO UPDATE SET last_useq = last_useq + 1
         RETURNING last_useq",
    )
    .bind(user)
    .fetch_one(&mut *tx)
    .await?;
    let current = sqlx::query("SELECT owner, last_useq, purged FROM docs WHERE doc_id = ?")
        .bind(doc_id)
        .fetch_optional(&mut *tx)
        .await?;
    match current {
        None if expected_last_useq == 0 => {
            sqlx::query("INSERT INTO docs (doc_id, owner, last_useq, heads) VALUES (?, ?, ?, ?)")
                .bind(doc_id)
                .bind(user)
                .bind(useq)
                .bind(&heads)
                .execute(&mut *tx)
                .await?;
        }
        None => return Err(StorageError::NotFound),
        Some(row) => {
            if row.try_get::<String, _>("owner")? != user || row.try_get::<i64, _>("purged")? != 0 {
                return Err(StorageError::NotFound);
            }
            if from_sql(row.try_get("last_useq")?)? != expected_last_useq {
                return Err(StorageError::Conflict);
            }
            sqlx::query("UPDATE docs SET last_useq = ?, heads = ? WHERE doc_id = ?")
                .bind(useq)
                .bind(&heads)
                .bind(doc_id)
                .execute(&mut *tx)
                .await?;
        }
    }
    sqlx::query("INSERT INTO log (doc_id, useq, bytes) VALUES (?, ?, ?)")
        .bind(doc_id)
        .bind(useq)
        .bind(bytes)
        .execute(&mut *tx)
        .await?;
    // The document's previous feed row (if any) moves to the new useq.
    sqlx::query(
        "INSERT INTO feed (user_id, useq, doc_id) VALUES (?, ?, ?)
         ON CONFLICT (user_id, doc_id) DO UPDATE SET useq = excluded.useq",
    )
    .bind(user)
    .bind(useq)
    .bind(doc_id)
    .execute(&mut *tx)
    .await?;
    from_sql(useq)
}

/// The body of [`DocStore::compact`], inside a write transaction: the
/// snapshot, then the deletion of exactly the entries it folds in.
async fn compact_in(
    tx: &mut SqliteConnection,
    user: &str,
    doc_id: &str,
    upto: i64,
    snapshot: &[u8],
) -> Result<(), StorageError> {
    // The conditional write comes first (it takes the write lock).
    let moved = sqlx::query(
        "UPDATE docs SET snapshot_upto = ?1
         WHERE doc_id = ?2 AND owner = ?3 AND snapshot_upto < ?1 AND last_useq >= ?1
           AND purged = 0",
    )
    .bind(upto)
    .bind(doc_id)
    .bind(user)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved == 0 {
        let owner: Option<String> = sqlx::query_scalar("SELECT owner FROM docs WHERE doc_id = ?")
            .bind(doc_id)
            .fetch_optional(&mut *tx)
            .await?;
        return Err(match owner {
            Some(owner) if owner == user => StorageError::Conflict,
            _ => StorageError::NotFound,
        });
    }
    sqlx::query(
        "INSERT INTO snapshots (doc_id, bytes) VALUES (?, ?)
         ON CONFLICT (doc_id) DO UPDATE SET bytes = excluded.bytes",
    )
    .bind(doc_id)
    .bind(snapshot)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM log WHERE doc_id = ? AND useq <= ?")
        .bind(doc_id)
        .bind(upto)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Runs blocking file IO off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Backend(format!("blob IO task failed: {e}")))?
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |e| io_storage_error(format!("{}: {e}", path.display()), &e)
}

/// A cursor or bound from the caller, for SQL. Values past `i64::MAX` (no
/// stored useq is that large) behave as "after everything".
fn to_sql(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn from_sql(v: i64) -> Result<u64, StorageError> {
    u64::try_from(v).map_err(|_| StorageError::Backend(format!("database holds useq {v}")))
}

#[cfg(test)]
mod tests {
    use super::EmbeddedStore;

    /// Servers (or Lambda instances) starting together on one new data
    /// directory: every one opens it (`core_sync::open_lock`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_openers_of_a_new_data_directory_all_open_it() {
        for _round in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let opens: Vec<_> = (0..8)
                .map(|_| {
                    let dir = dir.path().to_owned();
                    tokio::spawn(async move { EmbeddedStore::open(&dir).await.map(drop) })
                })
                .collect();
            for open in opens {
                if let Err(e) = open.await.unwrap() {
                    panic!("a concurrent opener failed: {e}");
                }
            }
        }
    }
}
