//! The local store's one error type.
//!
//! A write that cannot land because the disk is full or the store's
//! directory turned read-only is told apart from other database errors
//! ([`StoreError::DiskFull`], [`StoreError::ReadOnly`]), naming the store's
//! directory: nothing of that write was saved, everything acknowledged
//! before it still is, and the same write succeeds once space returns.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::blob::BlobError;
use crate::ids::DocId;
use crate::model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("local database error: {0}")]
    Db(sqlx::Error),

    /// No space left where the store lives. `path`: the store's directory
    /// (`None` where the error arose without it).
    #[error(
        "no space left on the disk holding the local store{}: this change was not saved (everything saved before it is kept); free some space and try again",
        at(path)
    )]
    DiskFull { path: Option<PathBuf> },

    /// The store's directory or database cannot be written (a read-only
    /// file system or permissions).
    #[error(
        "the local store{} cannot be written (read-only file system or permissions): this change was not saved (everything saved before it is kept)",
        at(path)
    )]
    ReadOnly { path: Option<PathBuf> },

    #[error("local database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    /// The stored bytes of one asset do not decode (or decode to something
    /// this build refuses). Nothing was written; other assets still load.
    #[error("asset {doc_id} cannot be loaded: {source}")]
    Corrupt { doc_id: DocId, source: ModelError },

    #[error("asset {0} is not in the local store")]
    NotFound(DocId),

    /// A change to an asset was refused by the document model.
    #[error("asset {doc_id}: {source}")]
    Model { doc_id: DocId, source: ModelError },

    #[error(transparent)]
    Blob(#[from] BlobError),

    #[error("cannot use store directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type StoreResult<T> = Result<T, StoreError>;

fn at(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" ({})", p.display()))
        .unwrap_or_default()
}

/// SQLite's primary result codes for a full disk, a read-only database and
/// a file it cannot open (what a read-only directory gives a WAL store).
const SQLITE_READONLY: i64 = 8;
const SQLITE_FULL: i64 = 13;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let primary = e
            .as_database_error()
            .and_then(|d| d.code())
            .and_then(|c| c.parse::<i64>().ok())
            .map(|c| c & 0xff);
        let io = match &e {
            sqlx::Error::Io(io) => Some(io.kind()),
            _ => None,
        };
        match (primary, io) {
            (Some(SQLITE_FULL), _) | (_, Some(ErrorKind::StorageFull)) => {
                StoreError::DiskFull { path: None }
            }
            (Some(SQLITE_READONLY), _) | (_, Some(ErrorKind::ReadOnlyFilesystem)) => {
                StoreError::ReadOnly { path: None }
            }
            _ => StoreError::Db(e),
        }
    }
}

impl StoreError {
    /// The same error, naming `dir` if it is about the disk.
    pub fn at(self, dir: &Path) -> StoreError {
        match self {
            StoreError::DiskFull { path: None } => StoreError::DiskFull {
                path: Some(dir.to_owned()),
            },
            StoreError::ReadOnly { path: None } => StoreError::ReadOnly {
                path: Some(dir.to_owned()),
            },
            StoreError::Blob(BlobError::Io { source, .. })
                if source.kind() == ErrorKind::StorageFull =>
            {
                StoreError::DiskFull {
                    path: Some(dir.to_owned()),
                }
            }
            StoreError::Blob(BlobError::Io { source, .. })
                if source.kind() == ErrorKind::ReadOnlyFilesystem =>
            {
                StoreError::ReadOnly {
                    path: Some(dir.to_owned()),
                }
            }
            other => other,
        }
    }

    /// Whether the write failed for want of disk space or write access:
    /// worth retrying once the user has made room.
    pub fn is_disk_full_or_read_only(&self) -> bool {
        matches!(
            self,
            StoreError::DiskFull { .. } | StoreError::ReadOnly { .. }
        )
    }
}
