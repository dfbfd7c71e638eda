//! The REST API's JSON shapes (responses), built from the model's read
//! views and the projections. Times are milliseconds since the Unix epoch
//! (UTC), as in the document itself.

use core_sync::model::{BlobRef, Entry, ErrorInfo, MessageView, VersionView};
use serde::Serialize;
use utoipa::ToSchema;

use crate::storage::jobs::Operation;
use crate::storage::projection::{Listing, ListingTrash};

/// A content-addressed image.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Blob {
    /// SHA-256 of the bytes: `GET /v1/blobs/{sha256}` downloads them.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub sha256: String,
    pub mime: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}

impl From<BlobRef> for Blob {
    fn from(b: BlobRef) -> Self {
        Blob {
            sha256: b.sha256,
            mime: b.mime,
            width: b.width,
            height: b.height,
            bytes: b.bytes,
        }
    }
}

/// One asset as the list shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssetSummary {
    #[schema(pattern = "^[0-9a-f]{32}$")]
    pub id: String,
    pub title: String,
    /// The active version's thumbnail (or image).
    pub cover: Option<Blob>,
    pub active_version_id: Option<String>,
    pub message_count: u64,
    pub created_at: i64,
    pub updated_at: i64,
    /// Set while the asset is in the trash (`GET /assets?trashed=true`
    /// lists those); `null` otherwise.
    pub trash: Option<Trash>,
}

/// An asset in the trash: restorable until it is purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trash {
    /// When it was moved to the trash (the deleting device's clock).
    pub deleted_at: i64,
    /// When the server purges it for good: the retention period after the
    /// deletion, or after the latest edit made after it (an edit from a
    /// device that had not seen the deletion keeps it longer). Purges run
    /// periodically, so it goes at the first run after this time.
    pub purge_at: i64,
}

impl Trash {
    /// The trash state of a listing, with this server's retention period.
    pub fn new(t: ListingTrash, retention: std::time::Duration) -> Trash {
        let retention = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        Trash {
            deleted_at: t.deleted_at,
            purge_at: t.retained_since.saturating_add(retention),
        }
    }
}

impl AssetSummary {
    /// A listing as the list shows it, with this server's retention period.
    pub fn from_listing(l: Listing, retention: std::time::Duration) -> Self {
        AssetSummary {
            id: l.doc_id.to_string(),
            title: l.title,
            cover: l.cover.map(Blob::from),
            active_version_id: l.active_version_id,
            message_count: l.message_count,
            created_at: l.created_at,
            updated_at: l.updated_at,
            trash: l.trash.map(|t| Trash::new(t, retention)),
        }
    }
}

/// A page of the asset list, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssetPage {
    pub items: Vec<AssetSummary>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// One image version of an asset.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    pub id: String,
    pub parent_version_id: Option<String>,
    pub created_by_message_id: Option<String>,
    pub image: Blob,
    pub thumbnail: Option<Blob>,
    pub created_at: i64,
}

impl From<VersionView> for Version {
    fn from(v: VersionView) -> Self {
        Version {
            id: v.id,
            parent_version_id: v.parent_version_id,
            created_by_message_id: v.created_by_message_id,
            image: v.blob.into(),
            thumbnail: v.thumbnail.map(Blob::from),
            created_at: v.created_at,
        }
    }
}

/// One asset in full: its listing, versions (oldest first) and what its
/// provider calls cost.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssetDetail {
    #[serde(flatten)]
    pub summary: AssetSummary,
    pub versions: Vec<Version>,
    /// Exact decimal US dollars, e.g. `"0.0387"`.
    pub cost_usd: String,
    pub cost_events: u64,
}

/// What kind of timeline entry a message is; `unreadable` is an entry
/// that does not follow the document schema (kept, with the reason).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum MessageKind {
    User,
    ToolRequest,
    Result,
    System,
    Unreadable,
}

/// Where a tool request stands.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum MessageStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

/// Why a message failed.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageError {
    pub code: String,
    pub message: String,
}

/// One timeline entry.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// `null` only for an unreadable entry without a readable id.
    pub id: Option<String>,
    pub kind: MessageKind,
    /// The note, or the tool request's prompt.
    pub text: Option<String>,
    pub tool: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub params: Option<serde_json::Map<String, serde_json::Value>>,
    pub input_version_ids: Vec<String>,
    pub output_version_ids: Vec<String>,
    pub status: Option<MessageStatus>,
    /// 0 to 1.
    pub progress: Option<f64>,
    pub error: Option<MessageError>,
    pub operation_id: Option<String>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
    /// For an unreadable entry: what is wrong with it.
    pub reason: Option<String>,
}

impl From<MessageView> for Message {
    fn from(m: MessageView) -> Self {
        use core_sync::model::{MessageKind as K, MessageStatus as S};
        Message {
            id: Some(m.id),
            kind: match m.kind {
                K::User => MessageKind::User,
                K::ToolRequest => MessageKind::ToolRequest,
                K::Result => MessageKind::Result,
                K::System => MessageKind::System,
            },
            text: m.text,
            tool: m.tool,
            provider: m.provider,
            model: m.model,
            params: match m.params {
                Some(serde_json::Value::Object(o)) => Some(o),
                _ => None,
            },
            input_version_ids: m.input_version_ids,
            output_version_ids: m.output_version_ids,
            status: m.status.map(|s| match s {
                S::Queued => MessageStatus::Queued,
                S::Running => MessageStatus::Running,
                S::Succeeded => MessageStatus::Succeeded,
                S::Failed => MessageStatus::Failed,
                S::Canceled => MessageStatus::Canceled,
            }),
            progress: m.progress.filter(|p| p.is_finite()),
            error: m
                .error
                .map(|ErrorInfo { code, message }| MessageError { code, message }),
            operation_id: m.operation_id,
            created_at: Some(m.created_at),
            updated_at: Some(m.updated_at),
            reason: None,
        }
    }
}

impl From<Entry<MessageView>> for Message {
    fn from(e: Entry<MessageView>) -> Self {
        match e {
            Entry::Read(m) => m.into(),
            Entry::Unreadable(u) => Message {
                id: u.id,
                kind: MessageKind::Unreadable,
                text: None,
                tool: None,
                provider: None,
                model: None,
                params: None,
                input_version_ids: Vec::new(),
                output_version_ids: Vec::new(),
                status: None,
                progress: None,
                error: None,
                operation_id: None,
                created_at: None,
                updated_at: None,
                reason: Some(u.reason),
            },
        }
    }
}

/// A page of a timeline: the newest page first; within a page, oldest
/// first (timeline order).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    pub items: Vec<Message>,
    /// Pass as `cursor` for the page of older messages; `null` on the
    /// oldest page.
    pub next_cursor: Option<String>,
}

/// Where a provider job stands.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationView {
    /// The tool request's message id.
    pub id: String,
    pub status: MessageStatus,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<Operation> for OperationView {
    fn from(op: Operation) -> Self {
        use crate::storage::jobs::OpStatus as O;
        OperationView {
            id: op.id,
            status: match op.status {
                O::Queued => MessageStatus::Queued,
                O::Running => MessageStatus::Running,
                O::Succeeded => MessageStatus::Succeeded,
                O::Failed => MessageStatus::Failed,
                O::Canceled => MessageStatus::Canceled,
            },
            error: op.error,
            created_at: op.created_at,
            updated_at: op.updated_at,
        }
    }
}

/// A message just written, and the provider job it started (if it is a
/// tool request and this server runs jobs).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Posted {
    pub message: Message,
    pub operation: Option<OperationView>,
}

/// A new asset, and (when created from a prompt) its generation request
/// and job.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    pub asset: AssetDetail,
    pub message: Option<Message>,
    pub operation: Option<OperationView>,
}
