//! The scheduled purge on Lambda: an EventBridge rule (the infrastructure's
//! `PurgeSchedule`, once a day) invokes the function with its standard
//! *Scheduled Event*; the invocation runs one [`crate::purge::run`] over
//! the function's own storage with the configured retention
//! (`ATELIER_TRASH_RETENTION_DAYS`) and answers what it removed.
//!
//! A run that the function's timeout cuts short leaves only what the next
//! run finishes (the purge is crash-safe by design); Lambda retries a
//! failed asynchronous invocation, and a second run at once finds nothing
//! left to do.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::purge::{self, PurgeError};

/// EventBridge's scheduled event, as much of it as the function reads:
/// `{"source": "aws.events", "detail-type": "Scheduled Event", "time": …,
/// "resources": [rule ARN], …}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ScheduledEvent {
    pub source: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    /// When the rule fired (RFC 3339).
    #[serde(default)]
    pub time: Option<String>,
    /// The rule's ARN.
    #[serde(default)]
    pub resources: Vec<String>,
}

impl ScheduledEvent {
    /// Whether a raw event is a scheduled one.
    pub fn is_scheduled(event: &Value) -> bool {
        event.get("source").and_then(Value::as_str) == Some("aws.events")
            && event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
    }
}

/// Runs one purge at the current time; the answer says what it removed.
pub async fn purge(
    state: &AppState,
    event: ScheduledEvent,
    retention: std::time::Duration,
) -> Result<Value, PurgeError> {
    tracing::info!(
        fired = event.time.as_deref().unwrap_or("?"),
        rule = event.resources.first().map_or("?", String::as_str),
        retention_days = retention.as_secs() / 86_400,
        "purging the trash"
    );
    let started = std::time::Instant::now();
    let now = core_sync::now_millis();
    let r = purge::run(state.store.as_ref(), state.blobs.as_ref(), now, retention).await?;
    tracing::info!(
        assets = r.assets,
        blobs = r.blobs,
        bytes = r.blob_bytes,
        resumed = r.resumed,
        refreshed = r.refreshed,
        seconds = started.elapsed().as_secs_f64(),
        "purged the trash past its retention period"
    );
    Ok(json!({
        "purge": {
            "assets": r.assets,
            "blobs": r.blobs,
            "blobBytes": r.blob_bytes,
            "blobsKept": r.blobs_kept,
            "refreshed": r.refreshed,
            "resumed": r.resumed,
        }
    }))
}
