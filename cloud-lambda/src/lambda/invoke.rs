//! The Lambda [`JobLauncher`]: a job outlives the request by an
//! asynchronous invocation of this same function (`Invoke` with
//! `InvocationType=Event`) whose payload is a [`JobEvent`] naming the user
//! and the operation; that invocation runs [`Jobs::run`] to the end.
//!
//! The invoke is made before the request is answered (a Lambda instance is
//! frozen once it has answered, so a spawned task would not run). Lambda
//! queues the event and retries a failed invocation (twice by default);
//! [`Jobs::run`] is idempotent, so a retry or a second launch by a webhook
//! does no harm. When the invoke itself fails the operation stays queued
//! and is logged; the next launch (a webhook, a resume) picks it up.

use std::sync::Arc;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde::{Deserialize, Serialize};

use crate::aws_sdk::SdkSettings;
use crate::jobs::Jobs;
use crate::jobs::launcher::JobLauncher;
use crate::storage::jobs::Operation;

/// The payload of a job invocation: `{"atelierJob": {"user": …, "operationId": …}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobEvent {
    pub atelier_job: JobRef,
}

/// Which operation to run, and whose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobRef {
    pub user: String,
    pub operation_id: String,
}

impl JobEvent {
    pub fn new(user: &str, operation_id: &str) -> JobEvent {
        JobEvent {
            atelier_job: JobRef {
                user: user.to_owned(),
                operation_id: operation_id.to_owned(),
            },
        }
    }

    /// Whether a raw event is a job event (rather than an HTTP one).
    pub fn is_job(event: &serde_json::Value) -> bool {
        event.get("atelierJob").is_some()
    }
}

/// Where the function is and how to reach the Lambda API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeTarget {
    /// The function to invoke: this one (`AWS_LAMBDA_FUNCTION_NAME`).
    pub function_name: String,
    /// A version or alias (`None`: unqualified, `$LATEST`).
    pub qualifier: Option<String>,
    /// Another Lambda API endpoint (`AWS_ENDPOINT_URL_LAMBDA`, e.g. the
    /// local emulator's); `None`: AWS.
    pub endpoint: Option<String>,
    pub region: String,
}

/// Invokes the function asynchronously for each launched job.
#[derive(Debug, Clone)]
pub struct InvokeLauncher {
    client: aws_sdk_lambda::Client,
    target: InvokeTarget,
}

impl InvokeLauncher {
    /// A Lambda client with the default credentials chain (on Lambda, the
    /// function's role from its environment). Sends nothing yet.
    pub async fn new(target: InvokeTarget) -> InvokeLauncher {
        let config = crate::aws_sdk::load(&SdkSettings {
            endpoint: target.endpoint.clone(),
            ..SdkSettings::new(target.region.clone())
        })
        .await;
        InvokeLauncher {
            client: aws_sdk_lambda::Client::new(&config),
            target,
        }
    }

    pub fn target(&self) -> &InvokeTarget {
        &self.target
    }

    /// Queues one job invocation. Lambda answers 202 once it has queued the
    /// event; an emulator that runs Event invocations synchronously (cargo
    /// lambda's) answers 200 after the job ran, which is as good.
    pub async fn invoke(&self, event: &JobEvent) -> Result<(), String> {
        let payload = serde_json::to_vec(event).map_err(|e| e.to_string())?;
        let mut call = self
            .client
            .invoke()
            .function_name(&self.target.function_name)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload));
        if let Some(q) = &self.target.qualifier {
            call = call.qualifier(q);
        }
        let out = call
            .send()
            .await
            .map_err(|e| aws_sdk_lambda::error::DisplayErrorContext(e).to_string())?;
        match out.status_code() {
            202 | 200 => match out.function_error() {
                Some(e) => Err(format!("the invoked job failed: {e}")),
                None => Ok(()),
            },
            other => Err(format!("Invoke answered {other}, not 202")),
        }
    }
}

#[async_trait::async_trait]
impl JobLauncher for InvokeLauncher {
    async fn launch(&self, _jobs: &Arc<Jobs>, op: Operation) {
        let event = JobEvent::new(&op.user, &op.id);
        match self.invoke(&event).await {
            Ok(()) => {
                tracing::info!(op = %op.id, function = %self.target.function_name, "job invoked")
            }
            Err(error) => {
                tracing::error!(op = %op.id, %error, "cannot invoke the job; it stays queued")
            }
        }
    }
}
