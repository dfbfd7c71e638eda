//! The typed vocabulary of an asset document: what callers pass in to change
//! it and the read views they get back. Plain data, no Automerge types.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch. The model never reads a clock: callers
/// pass the time in, so the model stays deterministic under test.
pub type Millis = i64;

/// Who or what a timeline entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MessageKind {
    /// Words the user typed (a note, or the prompt that created the asset).
    User,
    /// A request for a tool to run (an edit, a generation, an upscale).
    ToolRequest,
    /// A tool's answer: carries output versions.
    Result,
    /// Something the app itself records, such as a rollback.
    System,
}

impl MessageKind {
    pub const ALL: [MessageKind; 4] = [Self::User, Self::ToolRequest, Self::Result, Self::System];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::ToolRequest => "toolRequest",
            Self::Result => "result",
            Self::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Where a message stands in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MessageStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 5] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Succeeded, failed and canceled are final: nothing moves a message out.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Canceled)
    }
}

/// A reference to content-addressed bytes in the blob store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobRef {
    /// Lowercase hex SHA-256 of the bytes.
    pub sha256: String,
    pub mime: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}

/// A human-readable failure attached to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Stable machine code, e.g. `safety_block`, `quota`.
    pub code: String,
    /// What a person reads in the timeline.
    pub message: String,
}

/// What a caller supplies to append a message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewMessage {
    pub kind: Option<MessageKind>,
    pub text: Option<String>,
    pub tool: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    /// Tool parameters as a JSON object (aspect ratio, scale, …).
    pub params: Option<serde_json::Value>,
    pub input_version_ids: Vec<String>,
    /// Initial status; tool requests start `queued`, others have none.
    pub status: Option<MessageStatus>,
}

impl NewMessage {
    /// A note typed by the user.
    pub fn user(text: impl Into<String>) -> Self {
        NewMessage {
            kind: Some(MessageKind::User),
            text: Some(text.into()),
            ..Default::default()
        }
    }

    /// A queued request for `tool`, to be picked up by the cloud.
    pub fn tool_request(
        tool: impl Into<String>,
        provider: impl Into<String>,
        model: impl Into<String>,
        prompt: impl Into<String>,
    ) -> Self {
        NewMessage {
            kind: Some(MessageKind::ToolRequest),
            text: Some(prompt.into()),
            tool: Some(tool.into()),
            provider: Some(provider.into()),
            model: Some(model.into()),
            status: Some(MessageStatus::Queued),
            ..Default::default()
        }
    }

    /// A system note such as a rollback record.
    pub fn system(text: impl Into<String>) -> Self {
        NewMessage {
            kind: Some(MessageKind::System),
            text: Some(text.into()),
            ..Default::default()
        }
    }
}

/// A change to a message's lifecycle fields; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageUpdate {
    pub status: Option<MessageStatus>,
    /// 0.0 ..= 1.0
    pub progress: Option<f64>,
    pub error: Option<ErrorInfo>,
    pub operation_id: Option<String>,
    /// Appended to the message's output versions.
    pub add_output_version_ids: Vec<String>,
}

/// A new image version.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVersion {
    pub blob: BlobRef,
    pub thumbnail: Option<BlobRef>,
    pub parent_version_id: Option<String>,
    pub created_by_message_id: Option<String>,
}

/// A provider call's cost.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCostEvent {
    pub provider: String,
    pub model: String,
    /// How many of `unit` were billed (tokens, images, seconds).
    pub units: f64,
    pub unit: String,
    /// Cost in billionths of a US dollar: integer, so sums are exact.
    pub cost_nano_usd: i64,
    pub message_id: Option<String>,
}

// ---------------------------------------------------------------- read views

/// What the asset list shows for one asset; also the listing projection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetSummary {
    pub title: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub active_version_id: Option<String>,
    /// The active version's thumbnail (or, lacking one, its image).
    pub cover: Option<BlobRef>,
    pub message_count: u64,
    pub schema_version: u64,
    /// Set while the asset is in the trash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<Deletion>,
}

/// An asset's tombstone: it is in the trash. Deleting is a change in the
/// document (so it syncs like any edit); restoring removes the tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deletion {
    /// When it was deleted (the deleting device's clock).
    pub at: Millis,
    /// The device that deleted it (its host name), as it named itself.
    pub by: String,
    /// Some change the deleting device had not seen when it deleted (an
    /// offline device's edit, a job's result) is in the document, or one
    /// came after the deletion: the asset stays in the trash with it, and
    /// the trash says so. Only [`super::AssetDoc`] can tell (it walks the
    /// change graph); a bare [`super::Reader`] says `false`.
    #[serde(default)]
    pub edited_after: bool,
    /// The latest `updatedAt` the document holds (every concurrent value
    /// counted): retention runs from the later of this and `at`.
    pub last_edit: Millis,
}

impl Deletion {
    /// From when the retention period counts: the deletion, or any edit
    /// written after it, whichever is later.
    pub fn retained_since(&self) -> Millis {
        self.at.max(self.last_edit)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub id: String,
    pub kind: MessageKind,
    pub text: Option<String>,
    pub tool: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub params: Option<serde_json::Value>,
    pub input_version_ids: Vec<String>,
    pub output_version_ids: Vec<String>,
    pub status: Option<MessageStatus>,
    pub progress: Option<f64>,
    pub error: Option<ErrorInfo>,
    pub operation_id: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionView {
    pub id: String,
    pub parent_version_id: Option<String>,
    pub created_by_message_id: Option<String>,
    pub blob: BlobRef,
    pub thumbnail: Option<BlobRef>,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CostEventView {
    pub id: String,
    pub ts: Millis,
    pub provider: String,
    pub model: String,
    pub units: f64,
    pub unit: String,
    pub cost_nano_usd: i64,
    pub message_id: Option<String>,
}

impl CostEventView {
    pub fn cost_usd(&self) -> f64 {
        self.cost_nano_usd as f64 / 1e9
    }
}

// ------------------------------------------------------- what cannot be read

/// Where in a document an unreadable part sits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "in")]
pub enum Place {
    /// A field of the asset itself (`title`, `createdAt`, a container).
    Asset,
    /// The timeline entry at this position of `messages`.
    Message { index: usize },
    /// The version under this key of `versions`.
    Version { key: String },
    /// The cost event at this position of its `costEvents` list.
    CostEvent { index: usize },
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Asset => f.write_str("the asset"),
            Place::Message { index } => write!(f, "timeline entry {}", index + 1),
            Place::Version { key } => write!(f, "version {key:?}"),
            Place::CostEvent { index } => write!(f, "cost event {}", index + 1),
        }
    }
}

/// A part of the document that does not follow the schema (a wrong type, a
/// missing id, an unknown kind), as another writer left it. It is kept in
/// the document untouched and shown with the reason; never skipped silently.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unreadable {
    pub place: Place,
    /// The entry's `id`, when at least that much reads as a string.
    pub id: Option<String>,
    /// What is wrong, naming the field: "kind is missing".
    pub reason: String,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.place)?;
        if let Some(id) = &self.id {
            write!(f, " (id {id:?})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// One timeline entry, version or cost event: read, or kept as unreadable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Entry<T> {
    Read(T),
    Unreadable(Unreadable),
}

impl<T> Entry<T> {
    pub fn read(self) -> Option<T> {
        match self {
            Entry::Read(v) => Some(v),
            Entry::Unreadable(_) => None,
        }
    }

    pub fn as_read(&self) -> Option<&T> {
        match self {
            Entry::Read(v) => Some(v),
            Entry::Unreadable(_) => None,
        }
    }

    pub fn unreadable(&self) -> Option<&Unreadable> {
        match self {
            Entry::Read(_) => None,
            Entry::Unreadable(u) => Some(u),
        }
    }
}
