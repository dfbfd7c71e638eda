//! Provider jobs ("operations") as the server stores them: one per queued
//! tool-request message, created with a conditional write so a retried push
//! or two devices pushing the same request never start a job twice.

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
    pub created_at: i64,
    pub updated_at: i64,
}

#[async_trait]
pub trait JobStore: Send + Sync {
    /// Creates the operation unless one with its id exists; returns whether
    /// this call created it (exactly one caller ever gets `true`).
    async fn create_operation(&self, op: &Operation) -> Result<bool, StorageError>;

    /// The operation, if it exists and belongs to `user`.
    async fn get_operation(&self, user: &str, id: &str) -> Result<Option<Operation>, StorageError>;

    /// Overwrites the mutable fields (status, provider_ref, attempts, error,
    /// updated_at) of an existing operation of `op.user`.
    async fn update_operation(&self, op: &Operation) -> Result<(), StorageError>;

    /// The operation a provider id belongs to (webhooks carry no user).
    async fn find_by_provider_ref(
        &self,
        provider_ref: &str,
    ) -> Result<Option<Operation>, StorageError>;

    /// Records a webhook delivery id; `true` the first time it is seen.
    async fn first_delivery(&self, webhook_id: &str, now: i64) -> Result<bool, StorageError>;

    /// Operations not yet finished (to resume after a restart).
    async fn unfinished(&self) -> Result<Vec<Operation>, StorageError>;
}
