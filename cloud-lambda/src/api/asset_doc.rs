//! The REST API's document operations, shared by the asset and message
//! resources, all through the server's one write path
//! (`crate::write::DocWriter`): read an asset, create a new asset document
//! (pushed like a device's first push of it), write a change, and report a
//! tool request's message and operation. A write that queues a tool request
//! starts its job there, as a synced request's does (exactly once, under
//! the spend limits).

use core_sync::DocId;
use core_sync::model::{AssetDoc, ModelError};

use super::views::{Message, OperationView};
use crate::error::ApiError;
use crate::state::AppState;
use crate::write::{Pushed, WriteError};

/// The 404 of an asset that is absent or another user's (the same answer).
pub fn no_asset(id: &DocId) -> ApiError {
    ApiError::Missing(format!(
        "There is no asset {id}; it may have been typed wrong, or belong to another account."
    ))
}

/// Maps a document write's failure to the answer a client gets.
pub fn write_error(e: WriteError) -> ApiError {
    match e {
        WriteError::NotFound(id) => no_asset(&id),
        WriteError::Model {
            source: ModelError::UnknownVersion(v),
            ..
        } => ApiError::invalid(
            "unknown_version",
            format!("the asset has no version {v}; GET /assets/{{id}} lists its versions"),
        ),
        WriteError::Model {
            source: ModelError::Invalid(m),
            ..
        } => ApiError::BadRequest(m),
        WriteError::Storage(e) => e.into(),
        WriteError::Busy(id) => {
            ApiError::Unavailable(format!("asset {id} is being written by others; retry"))
        }
        other => ApiError::Internal(other.to_string()),
    }
}

/// Reads the asset as the log holds it now.
pub async fn read<T>(
    state: &AppState,
    user: &str,
    id: &DocId,
    read: impl FnOnce(&mut AssetDoc) -> T,
) -> Result<T, ApiError> {
    state.writer.read(user, id, read).await.map_err(write_error)
}

/// Applies a typed model write to the asset and appends it.
/// Run to its end even when the request is given up
/// ([`crate::write::to_the_end`]).
pub async fn write<T: Send + 'static>(
    state: &AppState,
    user: &str,
    id: &DocId,
    write: impl FnMut(&mut AssetDoc) -> Result<T, ModelError> + Send + 'static,
) -> Result<T, ApiError> {
    let (writer, user, id) = (state.writer.clone(), user.to_owned(), id.clone());
    crate::write::to_the_end(async move { writer.write(&user, &id, write).await })
        .await?
        .map_err(write_error)
}

/// Stores `doc` as the new asset `id` of `user`: its changes go through
/// the write path as a device's first push of a document would, run to its
/// end even when the request is given up.
pub async fn create(
    state: &AppState,
    user: &str,
    id: &DocId,
    doc: &mut AssetDoc,
) -> Result<(), ApiError> {
    let (bytes, _) = doc.unsaved_changes();
    let changes = core_sync::model::chunks::changes(&bytes)
        .map_err(|e| ApiError::Internal(format!("a new asset's changes do not parse: {e}")))?;
    let (writer, owner, doc_id) = (state.writer.clone(), user.to_owned(), id.clone());
    match crate::write::to_the_end(async move { writer.push(&owner, &doc_id, changes).await })
        .await?
        .map_err(write_error)?
    {
        Pushed::Accepted { .. } => Ok(()),
        Pushed::MissingDeps { .. } => Err(ApiError::Internal(format!(
            "a new asset's own changes were refused as incomplete ({id})"
        ))),
    }
}

/// Message `message_id` of the asset and its operation, as they stand
/// (after the write that queued it: a refused job has failed already).
pub async fn report(
    state: &AppState,
    user: &str,
    id: &DocId,
    message_id: &str,
) -> Result<(Message, Option<OperationView>), ApiError> {
    let op = state.ops.get_operation(user, message_id).await?;
    let m = read(state, user, id, |d| message(d, message_id)).await??;
    Ok((m, op.map(OperationView::from)))
}

/// Message `message_id` of `doc`.
pub fn message(doc: &mut AssetDoc, message_id: &str) -> Result<Message, ApiError> {
    doc.message(message_id)
        .map(Message::from)
        .map_err(|e| ApiError::Internal(format!("message {message_id} just written: {e}")))
}
