//! The Lambda entry point: the same Router as `atelier-cloud serve`, under
//! the Lambda runtime (`lambda_http`), configured from the environment
//! only ([`LambdaConfig`]).
//!
//! One function takes two kinds of events ([`LambdaApp::handle`]):
//!
//! - API Gateway HTTP API (payload format 2.0) events: converted to an
//!   HTTP request (base64 bodies decoded; headers, query string and cookies
//!   kept), sent through the Router, and the answer converted back (a
//!   compressed or binary body travels base64-encoded). An answer larger
//!   than Lambda's 6 MB response limit is replaced by a clear 500 problem
//!   (sync pages stay under it by construction, see `crate::sync`).
//! - Job events ([`invoke::JobEvent`]), sent by this function to itself
//!   (`InvocationType=Event`) when a request queued a provider job: the
//!   invocation runs the job to its end ([`crate::jobs::Jobs::run`]).
//! - EventBridge's scheduled events ([`schedule::ScheduledEvent`]): a rule
//!   fires once a day, and the invocation purges the trash past its
//!   retention period ([`crate::purge::run`]).
//!
//! At start ([`LambdaApp::start`]) the provider keys the environment does
//! not carry are read from SSM Parameter Store ([`secrets`]). Logs are JSON
//! lines (CloudWatch), never containing tokens or keys; beside them, each
//! invocation that counted something writes one CloudWatch EMF line
//! (`crate::metrics`), which CloudWatch Logs turns into the metrics the
//! alarms read.

pub mod config;
pub mod invoke;
pub mod schedule;
pub mod secrets;

use std::sync::Arc;

use axum::Router;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent, Service as _};
use serde_json::{Value, json};

use crate::app::{AppState, router};
use crate::jobs::JobConfig;
use crate::limits::ApiLimits;
use crate::metrics::EmfConfig;
use crate::providers::ProviderConfig;
use crate::registry::Registry;
use crate::storage::aws::Aws;

use self::config::setting;
pub use self::config::{
    Backend, DEFAULT_LONG_POLL_MAX_MS, LambdaConfig, LambdaError, SecretSource, VARIABLES,
};
use self::invoke::{InvokeLauncher, JobEvent};
use self::schedule::ScheduledEvent;

/// Lambda's limit on a synchronous invocation's response payload.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// The provider keys: those set directly, and the rest read from SSM
/// Parameter Store (see [`secrets`]).
pub async fn resolve_providers(config: &LambdaConfig) -> Result<ProviderConfig, LambdaError> {
    let mut providers = config.providers.clone();
    let Some(source) = &config.secrets else {
        return Ok(providers);
    };
    let client = secrets::client(&source.endpoint).await;
    for (name, value) in secrets::fetch(&client, &source.parameters).await? {
        let value = Some(value.expose().to_owned());
        match name.as_str() {
            "GEMINI_API_KEY" => providers.gemini_key = value,
            "REPLICATE_API_TOKEN" => providers.replicate_token = value,
            "REPLICATE_WEBHOOK_SECRET" => providers.replicate_webhook_secret = value,
            // SecretParameters::parse admits the names above only.
            other => unreachable!("secret {other} is not one of SECRET_NAMES"),
        }
    }
    Ok(providers)
}

/// The function: its Router and state, built once per instance.
#[derive(Clone)]
pub struct LambdaApp {
    router: Router,
    state: AppState,
}

impl LambdaApp {
    /// Opens the backend, the verifier and the jobs of `config`.
    pub async fn start(config: LambdaConfig) -> Result<LambdaApp, LambdaError> {
        let verifier = config.cognito.verifier()?;
        let providers = if config.jobs {
            resolve_providers(&config).await?
        } else {
            config.providers.clone()
        };
        if let Some(deployment) = &config.emf_deployment {
            crate::metrics::enable_emf(EmfConfig {
                deployment: deployment.clone(),
                each_event: false,
            });
        }
        let mut state = match &config.backend {
            Backend::Aws(options) => {
                let aws = Aws::connect(options.clone()).await?;
                AppState::aws(&aws, verifier, None)
            }
            Backend::Embedded(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    setting("ATELIER_CLOUD_DATA", format!("{}: {e}", dir.display()))
                })?;
                AppState::embedded(dir, verifier, None).await?
            }
        }
        .with_limits(ApiLimits::new(config.api.clone()))
        .with_trash_retention(config.trash_retention);
        if config.jobs {
            let mut job_config = JobConfig {
                public_url: config.public_url.clone(),
                limits: config.spend.clone(),
                ..JobConfig::default()
            };
            if let Some(target) = &config.invoke {
                job_config.launcher = Arc::new(InvokeLauncher::new(target.clone()).await);
            }
            state = state.with_jobs(Registry::load()?, providers, job_config);
        }
        Ok(LambdaApp::new(state))
    }

    /// The function over an existing state.
    pub fn new(state: AppState) -> LambdaApp {
        LambdaApp {
            router: router(state.clone()),
            state,
        }
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// One invocation: an HTTP API event through the Router, a job, or
    /// the scheduled purge. What it counted is written as one EMF line before it answers (an
    /// answered instance may be frozen or never thawed).
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, lambda_http::Error> {
        let answer = self.dispatch(event).await;
        crate::metrics::global().flush_emf();
        answer
    }

    async fn dispatch(&self, event: LambdaEvent<Value>) -> Result<Value, lambda_http::Error> {
        let LambdaEvent { payload, context } = event;
        if JobEvent::is_job(&payload) {
            let job: JobEvent = serde_json::from_value(payload)
                .map_err(|e| format!("a job event that does not parse: {e}"))?;
            return self.run_job(job).await;
        }
        if ScheduledEvent::is_scheduled(&payload) {
            let event: ScheduledEvent = serde_json::from_value(payload)
                .map_err(|e| format!("a scheduled event that does not parse: {e}"))?;
            let retention = self.state.trash_retention;
            return Ok(schedule::purge(&self.state, event, retention).await?);
        }
        let request: LambdaRequest = serde_json::from_value(payload).map_err(|e| {
            format!("not an API Gateway HTTP API (2.0) event, a job or a scheduled event: {e}")
        })?;
        let response = self.http(request, context).await?;
        Ok(response)
    }

    async fn http(
        &self,
        request: LambdaRequest,
        context: Context,
    ) -> Result<Value, lambda_http::Error> {
        let mut adapter = Adapter::from(self.router.clone());
        let response = adapter.call(LambdaEvent::new(request, context)).await?;
        let value = serde_json::to_value(&response)?;
        let size = serde_json::to_vec(&value)?.len();
        if size > MAX_RESPONSE_BYTES {
            tracing::error!(
                bytes = size,
                "response over Lambda's 6 MB limit replaced by a problem"
            );
            return Ok(json!({
                "statusCode": 500,
                "headers": {"content-type": "application/problem+json"},
                "isBase64Encoded": false,
                "body": json!({
                    "type": "about:blank",
                    "title": "Internal Server Error",
                    "status": 500,
                    "code": "response_too_large",
                    "detail": format!(
                        "The answer ({size} bytes) is larger than the {MAX_RESPONSE_BYTES} bytes \
                         this deployment can return; ask for less (a smaller page or range)."
                    ),
                })
                .to_string(),
            }));
        }
        Ok(value)
    }

    async fn run_job(&self, job: JobEvent) -> Result<Value, lambda_http::Error> {
        let Some(jobs) = &self.state.jobs else {
            return Err("a job event reached a function that runs no jobs".into());
        };
        let JobEvent {
            atelier_job: job_ref,
        } = job;
        tracing::info!(op = %job_ref.operation_id, "running an invoked job");
        jobs.run(&job_ref.user, &job_ref.operation_id).await;
        let status = self
            .state
            .ops
            .get_operation(&job_ref.user, &job_ref.operation_id)
            .await
            .ok()
            .flatten()
            .map(|op| format!("{:?}", op.status).to_lowercase());
        Ok(json!({"operationId": job_ref.operation_id, "status": status}))
    }
}

/// Serves invocations until the runtime stops the function.
pub async fn run(app: LambdaApp) -> Result<(), lambda_http::Error> {
    let app = Arc::new(app);
    lambda_http::lambda_runtime::run(lambda_http::service_fn(move |event: LambdaEvent<Value>| {
        let app = app.clone();
        async move { app.handle(event).await }
    }))
    .await
}

/// JSON log lines on stdout, as CloudWatch takes them (`RUST_LOG` filters;
/// `info` by default).
pub fn init_json_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .init();
}
