//! How a document is written as rows: a chunk row (snapshot or
//! incremental) with the listing projection the `chunks_keep_projection`
//! trigger copies into `documents`, where its changes came from, and heads
//! as stored bytes.

use automerge::ChangeHash;
use sqlx::sqlite::SqliteConnection;

use super::error::StoreResult;
use crate::ids::DocId;
use crate::model::{AssetSummary, Millis};

/// The listing fields a chunk carries for the `chunks_keep_projection`
/// trigger.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Projection<'a> {
    title: &'a str,
    cover_sha256: Option<&'a str>,
    cover_mime: Option<&'a str>,
    updated_at: Millis,
    message_count: u64,
    schema_version: u64,
    /// Sorted, concatenated, hex.
    heads: String,
    deleted_at: Option<Millis>,
    deleted_by: Option<&'a str>,
    edited_after: bool,
    retained_since: Option<Millis>,
}

impl<'a> Projection<'a> {
    pub(super) fn of(s: &'a AssetSummary, heads: &[ChangeHash]) -> Self {
        Projection {
            title: &s.title,
            cover_sha256: s.cover.as_ref().map(|c| c.sha256.as_str()),
            cover_mime: s.cover.as_ref().map(|c| c.mime.as_str()),
            updated_at: s.updated_at,
            message_count: s.message_count,
            schema_version: s.schema_version,
            heads: hex::encode(encode_heads(heads)),
            deleted_at: s.deleted.as_ref().map(|d| d.at),
            deleted_by: s.deleted.as_ref().map(|d| d.by.as_str()),
            edited_after: s.deleted.as_ref().is_some_and(|d| d.edited_after),
            retained_since: s.deleted.as_ref().map(|d| d.retained_since()),
        }
    }
}

/// Where a chunk's changes come from: this device (to push) or the sync
/// server (already there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    Local,
    Server,
}

pub(super) async fn insert_chunk(
    conn: &mut SqliteConnection,
    id: &DocId,
    kind: i64,
    bytes: &[u8],
    projection: Option<&Projection<'_>>,
    origin: Origin,
) -> StoreResult<i64> {
    let projection = projection.map(|p| serde_json::to_string(p).expect("projection serializes"));
    let done = sqlx::query(
        "INSERT INTO chunks (doc_id, kind, bytes, projection, pushed) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(id.as_str())
    .bind(kind)
    .bind(bytes)
    .bind(projection)
    .bind(i64::from(origin == Origin::Server))
    .execute(conn)
    .await?;
    Ok(done.last_insert_rowid())
}

/// Heads as stored: sorted, so equal sets compare equal as bytes.
pub(super) fn encode_heads(heads: &[ChangeHash]) -> Vec<u8> {
    let mut sorted = heads.to_vec();
    sorted.sort();
    sorted.iter().flat_map(|h| h.0).collect()
}

pub(super) fn decode_heads(bytes: &[u8]) -> Result<Vec<ChangeHash>, String> {
    if !bytes.len().is_multiple_of(32) {
        return Err(format!(
            "{} bytes is not a list of 32-byte hashes",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| ChangeHash(c.try_into().expect("32 bytes")))
        .collect())
}
