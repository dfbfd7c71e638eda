//! `POST /replicate/webhook`: Replicate's prediction updates. The signature
//! is verified (Standard Webhooks: HMAC-SHA256 with the webhook secret),
//! stale or future timestamps are refused, and each `webhook-id` is acted
//! on once; a replay answers 200 and changes nothing. A verified update
//! wakes the job waiting on that prediction, or (after a restart, or on
//! Lambda) runs the operation again, which resumes from its stored state.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use crate::error::ApiError;
use crate::providers::webhook;
use crate::state::AppState;

/// Oldest webhook timestamp accepted.
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Replicate's prediction updates (Standard Webhooks signature).
#[utoipa::path(post, path = "/replicate/webhook", tag = "webhooks",
    params(
        ("webhook-id" = String, Header, description = "Delivery id; each is acted on once"),
        ("webhook-timestamp" = String, Header, description = "Unix seconds; at most 5 minutes old"),
        ("webhook-signature" = String, Header, description = "`v1,<base64 HMAC-SHA256>`"),
    ),
    request_body(content = Object, content_type = "application/json", description = "A Replicate prediction"),
    responses((status = 200, description = "Accepted (or a replay, ignored)"),
        (status = 401, description = "A header is missing, or the signature or timestamp does not verify", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "This server runs no Replicate jobs", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn replicate_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    // Not a webhook at all without its three headers, whatever this server runs.
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        if headers.get(name).is_none() {
            return Err(ApiError::BadSignature(format!(
                "the {name} header is missing"
            )));
        }
    }
    let (Some(jobs), Some(secret)) = (&state.jobs, &state.webhook_secret) else {
        return Err(ApiError::Missing(
            "This server runs no Replicate jobs, so it takes no webhooks.".into(),
        ));
    };
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = core_sync::now_millis() / 1000;
    webhook::verify(
        secret,
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
        &body,
        now,
        TOLERANCE,
    )
    .map_err(|e| ApiError::BadSignature(e.to_string()))?;
    let id = h("webhook-id").unwrap_or_default();
    if !state.ops.first_delivery(id, now).await? {
        return Ok(StatusCode::OK);
    }
    let prediction: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("webhook body is not a prediction: {e}")))?;
    let Some(pid) = prediction.get("id").and_then(|v| v.as_str()) else {
        return Err(ApiError::BadRequest(
            "webhook body has no prediction id".into(),
        ));
    };
    if let Some(op) = state.ops.find_by_provider_ref(pid).await?
        && !op.status.is_terminal()
        && !jobs.wake(pid)
    {
        jobs.launch(op).await;
    }
    Ok(StatusCode::OK)
}
