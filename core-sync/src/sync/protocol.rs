//! The HTTP sync protocol: the request and response bodies of `POST
//! /v1/sync`, shared by the server (`cloud-lambda`) and the client engine.
//!
//! One request syncs any number of documents in one round trip:
//!
//! - The client pushes, per document, the changes the server lacks (computed
//!   from the server heads it last saw) as concatenated raw Automerge changes.
//! - The client sends one `feedCursor`: the position in the user's change
//!   feed up to which it has durably applied everything. The server answers
//!   with every document that changed after that position, and for each the
//!   chunks appended after it (or a snapshot, where compaction folded them),
//!   plus the new cursor. An idle poll is one request and one feed query.
//! - Pushes are idempotent: the server stores only changes it did not have,
//!   so a retried request never duplicates anything. A push whose changes
//!   depend on changes the server does not have is refused for that document
//!   (nothing stored) with the server's heads, and the client resends from
//!   there; a client that finds a gap after applying asks for the document
//!   in full (`resync`).
//! - Cursors and server heads belong to an **epoch**, a number naming the
//!   lineage of the user's data on the server. It changes when the server's
//!   data is not the continuation of what devices saw (restored from a
//!   backup, DynamoDB point-in-time recovery). A client sends the epoch its
//!   cursor belongs to; a server in another epoch answers with its epoch
//!   and nothing else, and the client then starts over: it re-pushes every
//!   document and image (the server stores only what it lacks) and pulls
//!   from cursor 0.
//!
//! Bodies are JSON (`application/json`), bytes base64-encoded, and travel
//! compressed (zstd or gzip `Content-Encoding`), which brings base64 back to
//! about the size of the raw bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::DocId;

/// The sync endpoint's path.
pub const SYNC_PATH: &str = "/v1/sync";

/// Largest request body the server accepts (after decompression).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Longest long poll a client may ask for (below common proxy and API
/// Gateway timeouts).
pub const MAX_WAIT_MS: u64 = 25_000;

/// Most chunk bytes in one response: the server stops adding documents
/// before going over it and sets `more`. Chunks travel base64-encoded (4/3
/// of their size), and a compressed answer is base64-encoded once more by
/// Lambda (compression brings base64 back to about the raw size), so 4 MiB
/// keeps an answer under Lambda's 6 MB response limit with room for ids
/// and heads. A single document larger than this is sent alone.
pub const RESPONSE_SOFT_LIMIT_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncRequest {
    /// Everything in the user's feed up to here is durably applied.
    pub feed_cursor: u64,
    #[serde(default)]
    pub push: Vec<DocPush>,
    /// Documents the client wants sent in full (after finding a gap).
    #[serde(default)]
    pub resync: Vec<DocId>,
    /// Long poll: when nothing is new, the server may hold the request up
    /// to this many milliseconds (at most [`MAX_WAIT_MS`]) and answer as
    /// soon as the user's feed moves. 0 answers at once.
    #[serde(default)]
    pub wait_ms: u64,
    /// The epoch `feed_cursor` and the client's server heads belong to (0:
    /// none yet).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Largest epoch a server hands out: 2^53 - 1, exact in every JSON reader.
pub const MAX_EPOCH: u64 = (1 << 53) - 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DocPush {
    pub doc_id: DocId,
    /// Concatenated raw Automerge changes.
    pub changes: Bytes,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncResponse {
    /// The client may store this once it has durably applied `docs`.
    pub feed_cursor: u64,
    pub docs: Vec<DocUpdate>,
    /// One entry per pushed document, in request order.
    pub pushed: Vec<PushOutcome>,
    /// More updates are waiting: ask again with the new cursor at once.
    pub more: bool,
    /// The server's epoch for this user (1 to [`MAX_EPOCH`]; 0 from a
    /// server that has none).
    #[serde(default)]
    pub epoch: u64,
    /// The server's data does not continue what the request's cursor (and
    /// the client's server heads) describe: another epoch, or a cursor past
    /// the end of the user's feed (a restored copy). The response carries
    /// nothing else; the client starts over in `epoch`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub start_over: bool,
    /// Documents in the feed after the cursor that the server purged (they
    /// stayed in the trash past the retention period): the device drops
    /// its copy. Absent when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purged: Vec<DocId>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocUpdate {
    pub doc_id: DocId,
    /// Chunks to apply with `load_incremental`, in order: a snapshot and/or
    /// change batches. Applying a chunk the client already has is harmless.
    pub chunks: Vec<Bytes>,
    /// The server's heads for the document after these chunks.
    pub server_heads: Vec<Hash>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushOutcome {
    pub doc_id: DocId,
    pub status: PushStatus,
    /// The server's heads after the push.
    pub server_heads: Vec<Hash>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PushStatus {
    /// Stored (or already had every change: a retried push).
    Accepted,
    /// Some changes depend on changes the server lacks; nothing was stored
    /// for this document. Resend from `server_heads`, or everything.
    MissingDeps,
    /// The server purged this document (it stayed in the trash past the
    /// retention period): nothing was stored, and the device drops it.
    Purged,
}

/// The path of a request for an image's upload URL (`POST`, JSON body
/// [`UploadUrlRequest`]) and of its download URL (`GET ?sha256=`).
pub const UPLOAD_URL_PATH: &str = "/upload-url";
pub const DOWNLOAD_URL_PATH: &str = "/download-url";

/// What an upload URL is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UploadUrlRequest {
    pub sha256: String,
    pub bytes: u64,
    pub content_type: String,
}

/// A short-lived request a client makes without its bearer token (the
/// URL's signature is the permission): where an image goes or comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferUrl {
    /// Absolute, or a path on the server that gave it.
    pub url: String,
    pub method: String,
    /// Headers the request must carry exactly (they are signed), by
    /// lowercase name.
    pub headers: std::collections::BTreeMap<String, String>,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
}

/// An RFC 9457 problem details body (`application/problem+json`), the
/// shape of every error the server answers. Only the fields a client
/// reads; others are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemBody {
    /// Machine-readable: `not_found`, `rate_limited`, …
    pub code: String,
    /// What was wrong, for a person.
    pub detail: String,
}

/// The error body servers before problem details sent:
/// `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// Bytes that travel as base64 in JSON.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map(Bytes)
            .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
    }
}

/// An Automerge change hash, as 64 hex characters on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub automerge::ChangeHash);

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", hex::encode(self.0.0))
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0.0))
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.as_bytes(), &mut out)
            .map_err(|_| serde::de::Error::custom("a change hash is 64 hex characters"))?;
        Ok(Hash(automerge::ChangeHash(out)))
    }
}

impl Serialize for DocId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DocId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

pub fn hashes(heads: &[automerge::ChangeHash]) -> Vec<Hash> {
    heads.iter().copied().map(Hash).collect()
}

pub fn change_hashes(heads: &[Hash]) -> Vec<automerge::ChangeHash> {
    heads.iter().map(|h| h.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_and_reject_junk() {
        let req = SyncRequest {
            feed_cursor: 7,
            push: vec![DocPush {
                doc_id: DocId::random(),
                changes: Bytes(vec![0, 1, 2, 255]),
            }],
            resync: vec![],
            wait_ms: 0,
            epoch: 0,
        };
        let json = serde_json::to_string(&req).unwrap();
        assert!(json.contains("\"feedCursor\":7"), "{json}");
        assert!(!json.contains("epoch"), "no epoch yet: {json}");
        assert_eq!(serde_json::from_str::<SyncRequest>(&json).unwrap(), req);
        let req = SyncRequest {
            epoch: MAX_EPOCH,
            ..req
        };
        let json = serde_json::to_string(&req).unwrap();
        assert!(json.contains("\"epoch\":9007199254740991"), "{json}");
        assert_eq!(serde_json::from_str::<SyncRequest>(&json).unwrap(), req);
        // A response from a server without epochs reads as epoch 0.
        let resp: SyncResponse =
            serde_json::from_str(r#"{"feedCursor":3,"docs":[],"pushed":[],"more":false}"#).unwrap();
        assert_eq!(resp.epoch, 0);
        for bad in [
            r#"{"feedCursor":-1}"#,
            r#"{"feedCursor":1,"push":[{"docId":"../x","changes":""}]}"#,
            r#"{"feedCursor":1,"push":[{"docId":"0123456789abcdef0123456789abcdef","changes":"***"}]}"#,
            r#"{"feedCursor":1,"surprise":true}"#,
            r#"{"feedCursor":"#,
        ] {
            assert!(serde_json::from_str::<SyncRequest>(bad).is_err(), "{bad}");
        }
    }
}
