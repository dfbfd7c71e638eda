//! Reading and writing asset documents on the server side, for jobs and the
//! REST API: load from the change log, apply typed model writes, append
//! only the new changes (conditional on the log's head; retried on a lost
//! race).
//!
//! Every load gets a fresh random actor id (see `core_sync::model`), so
//! each server write — in any process, Lambda invocation or retry — uses an
//! actor no other writer ever used.

use std::sync::Arc;

use core_sync::DocId;
use core_sync::model::{AssetDoc, ModelError};

use crate::storage::{DocStore, StorageError};

/// How often a write retries after losing a conditional append race.
const RETRIES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum DocWriteError {
    #[error("document {0} not found")]
    NotFound(DocId),
    #[error("document {doc}: {source}")]
    Model { doc: DocId, source: ModelError },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("document {0} stayed busy through every retry")]
    Busy(DocId),
}

/// Loads the server's current copy of a document.
pub async fn load(
    docs: &Arc<dyn DocStore>,
    user: &str,
    doc: &DocId,
) -> Result<(AssetDoc, u64), DocWriteError> {
    let head = docs
        .head(user, doc)
        .await?
        .ok_or_else(|| DocWriteError::NotFound(doc.clone()))?;
    let chunks = docs.read_all(user, doc).await?;
    let asset =
        AssetDoc::load_chunks(chunks.iter().map(|c| c.bytes.as_slice())).map_err(|source| {
            DocWriteError::Model {
                doc: doc.clone(),
                source,
            }
        })?;
    Ok((asset, head.last_useq))
}

/// Applies `write` to the current document and appends the resulting
/// changes; on a concurrent append, reloads and applies `write` again.
/// A `write` that changes nothing appends nothing.
pub async fn write<T>(
    docs: &Arc<dyn DocStore>,
    user: &str,
    doc: &DocId,
    mut write: impl FnMut(&mut AssetDoc) -> Result<T, ModelError>,
) -> Result<T, DocWriteError> {
    for _ in 0..RETRIES {
        let (mut asset, last_useq) = load(docs, user, doc).await?;
        let value = write(&mut asset).map_err(|source| DocWriteError::Model {
            doc: doc.clone(),
            source,
        })?;
        // Everything not in the stored log: the write, plus a schema
        // migration the load may have made (its change must be stored too,
        // or the write's changes would depend on a change the log lacks).
        let (changes, after) = asset.unsaved_changes();
        if changes.is_empty() {
            return Ok(value);
        }
        match docs.append(user, doc, last_useq, &changes, &after).await {
            Ok(_) => return Ok(value),
            Err(StorageError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(DocWriteError::Busy(doc.clone()))
}
