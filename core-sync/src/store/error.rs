//! The local store's one error type.

use std::path::PathBuf;

use crate::blob::BlobError;
use crate::ids::DocId;
use crate::model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("local database error: {0}")]
    Db(#[from] sqlx::Error),

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
