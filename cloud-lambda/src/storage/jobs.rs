//! Provider jobs ("operations") as the server stores them: one per queued
//! tool-request message, created with a conditional write so a retried push
//! or two devices pushing the same request never start a job twice.
//!
//! **Leases** make a job run once across processes: a runner takes the
//! operation's lease (an owner and an expiry) with a conditional write
//! before it calls a provider, renews it while it runs, and gives it up at
//! the end. Nobody else takes a live lease; an expired one (its runner
//! crashed, or an invocation ended) is taken over, and the new runner
//! resumes from the operation's stored state. Expiries are wall-clock
//! milliseconds, passed in by the caller.

use async_trait::async_trait;
use core_sync::DocId;
use serde::{Deserialize, Serialize};

use super::StorageError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl OpStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OpStatus::Queued => "queued",
            OpStatus::Running => "running",
            OpStatus::Succeeded => "succeeded",
            OpStatus::Failed => "failed",
            OpStatus::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<OpStatus> {
        [
            Self::Queued,
            Self::Running,
            Self::Succeeded,
            Self::Failed,
            Self::Canceled,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OpStatus::Succeeded | OpStatus::Failed | OpStatus::Canceled
        )
    }
}

/// One provider job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// The tool-request message's id: one operation per message.
    pub id: String,
    pub user: String,
    pub doc_id: DocId,
    pub status: OpStatus,
    /// The provider's own id (a Replicate prediction), once created.
    pub provider_ref: Option<String>,
    pub attempts: u32,
    pub error: Option<String>,
    /// How the input image reaches the provider, once chosen (and the
    /// upload, if one was made): a resumed job reuses it.
    pub input: Option<InputRecord>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The way an input image travels to a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputRoute {
    /// Inside the request: a base64 data URL (Replicate) or `inline_data`
    /// (Gemini).
    Inline,
    /// A short-lived presigned GET URL from the server's own storage.
    Presigned,
    /// Uploaded with Replicate's Files API; the file's `urls.get` is passed.
    ReplicateFile,
    /// Uploaded with Gemini's Files API; the file's `uri` is passed as
    /// `file_data`.
    GeminiFile,
}

/// The input of an operation as it was handed to the provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputRecord {
    pub route: InputRoute,
    /// The blob it carries.
    pub sha256: String,
    pub bytes: u64,
    /// The provider's id of an upload (a Replicate file id, a Gemini file
    /// name such as `files/abc123`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// What the provider is given: a file URL, a file URI or a presigned URL
    /// (never a data URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When the upload or URL stops working (unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// The upload was deleted at the provider (the job no longer needs it).
    #[serde(default)]
    pub deleted: bool,
}

/// Who runs an operation, and until when (unix milliseconds) unless renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub expires_at: i64,
}

/// Longest lease owner accepted.
pub const MAX_LEASE_OWNER_LEN: usize = 200;

/// Checks a lease owner: 1 to [`MAX_LEASE_OWNER_LEN`] bytes, no control
/// characters.
pub fn validate_owner(owner: &str) -> Result<(), StorageError> {
    if owner.is_empty() || owner.len() > MAX_LEASE_OWNER_LEN || owner.chars().any(char::is_control)
    {
        return Err(StorageError::Invalid(format!(
            "a lease owner is 1 to {MAX_LEASE_OWNER_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

#[async_trait]
pub trait JobStore: Send + Sync {
    /// Creates the operation unless one with its id exists; returns whether
    /// this call created it (exactly one caller ever gets `true`).
    async fn create_operation(&self, op: &Operation) -> Result<bool, StorageError>;

    /// The operation, if it exists and belongs to `user`.
    async fn get_operation(&self, user: &str, id: &str) -> Result<Option<Operation>, StorageError>;

    /// Overwrites the mutable fields (status, provider_ref, attempts, error,
    /// input, updated_at) of an existing operation of `op.user`.
    async fn update_operation(&self, op: &Operation) -> Result<(), StorageError>;

    /// The operation a provider id belongs to (webhooks carry no user).
    async fn find_by_provider_ref(
        &self,
        provider_ref: &str,
    ) -> Result<Option<Operation>, StorageError>;

    /// Records a webhook delivery id; `true` the first time it is seen.
    async fn first_delivery(&self, webhook_id: &str, now: i64) -> Result<bool, StorageError>;

    /// How many of `user`'s operations created at or after `since`
    /// (milliseconds) ran or may still run: every one except those that
    /// failed before any attempt (refused by a limit, a retired model).
    /// What the jobs-per-hour limit counts.
    async fn count_started_since(&self, user: &str, since: i64) -> Result<u64, StorageError>;

    /// Operations not yet finished (to resume after a restart).
    async fn unfinished(&self) -> Result<Vec<Operation>, StorageError>;

    /// Takes the lease of `user`'s unfinished operation `id` for `owner`
    /// until `expires_at`, unless another owner's lease is live at `now`
    /// (`expires_at > now`); `owner`'s own lease is taken again (a retried
    /// request). Returns the operation as stored once taken; `None` (and
    /// nothing written) when another owner holds it, or the operation is
    /// finished, absent or another user's.
    async fn take_lease(
        &self,
        user: &str,
        id: &str,
        owner: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<Option<Operation>, StorageError>;

    /// Moves `owner`'s lease to `expires_at`; `false` (nothing written) when
    /// the lease is not `owner`'s any more (taken over after it expired).
    async fn renew_lease(
        &self,
        user: &str,
        id: &str,
        owner: &str,
        expires_at: i64,
    ) -> Result<bool, StorageError>;

    /// Gives up `owner`'s lease, so another runner may take it at once;
    /// nothing changes when it is not `owner`'s.
    async fn release_lease(&self, user: &str, id: &str, owner: &str) -> Result<(), StorageError>;

    /// The operation's lease as stored (live or expired), `None` when it has
    /// none or is another user's.
    async fn lease(&self, user: &str, id: &str) -> Result<Option<Lease>, StorageError>;
}
