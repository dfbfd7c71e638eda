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
//!
//! Logs are JSON lines (CloudWatch), never containing tokens or keys.

pub mod invoke;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent, Service as _};
use serde_json::{Value, json};

use crate::app::{AppState, router};
use crate::auth::{AuthError, CognitoSettings};
use crate::jobs::JobConfig;
use crate::limits::{ApiConfig, ApiLimits};
use crate::providers::ProviderConfig;
use crate::registry::{Registry, RegistryError};
use crate::storage::StorageError;
use crate::storage::aws::{Aws, AwsOptions};

use self::invoke::{InvokeLauncher, InvokeTarget, JobEvent};

/// Lambda's limit on a synchronous invocation's response payload.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// How long a long poll is held on Lambda by default: not at all. A held
/// poll bills Lambda for every second (and polls the feed meanwhile); an
/// idle device answered at once waits out its poll interval instead. See
/// ARCHITECTURE.md, "What an idle device costs on AWS".
pub const DEFAULT_LONG_POLL_MAX_MS: u64 = 0;

/// Where the function keeps documents, blobs and jobs.
#[derive(Debug, Clone)]
pub enum Backend {
    /// DynamoDB and S3 (the deployment): tables and buckets named with
    /// `ATELIER_AWS_PREFIX`; `AWS_ENDPOINT_URL` points at an emulator.
    Aws(AwsOptions),
    /// SQLite and files in a directory (a local emulator's test; on Lambda
    /// only `/tmp` is writable, and it is not shared).
    Embedded(PathBuf),
}

/// Everything the function needs, read from its environment.
#[derive(Debug, Clone)]
pub struct LambdaConfig {
    pub backend: Backend,
    pub cognito: CognitoSettings,
    pub providers: ProviderConfig,
    /// Run provider jobs (`ATELIER_JOBS=off` turns them off).
    pub jobs: bool,
    /// The API's public base URL, for Replicate's webhook.
    pub public_url: Option<String>,
    pub api: ApiConfig,
    /// Where launched jobs go: an asynchronous invoke of this function;
    /// `None` runs them as tasks of the invocation (tests only).
    pub invoke: Option<InvokeTarget>,
}

/// Why the function cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    #[error("{name}: {message}")]
    Setting { name: &'static str, message: String },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

fn setting(name: &'static str, message: impl Into<String>) -> LambdaError {
    LambdaError::Setting {
        name,
        message: message.into(),
    }
}

impl LambdaConfig {
    /// The function's environment.
    pub fn from_env() -> Result<LambdaConfig, LambdaError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`LambdaConfig::from_env`] over any lookup.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<LambdaConfig, LambdaError> {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let backend = match get("ATELIER_BACKEND").as_deref() {
            None | Some("aws") => {
                let prefix = get("ATELIER_AWS_PREFIX").ok_or_else(|| {
                    setting(
                        "ATELIER_AWS_PREFIX",
                        "is required: it names the tables and buckets",
                    )
                })?;
                let endpoint = get("AWS_ENDPOINT_URL");
                // An emulator takes any credentials; on Lambda the role's come
                // from the environment.
                let emulated = endpoint.is_some() && get("AWS_ACCESS_KEY_ID").is_none();
                Backend::Aws(AwsOptions {
                    endpoint,
                    region: get("AWS_REGION"),
                    credentials: emulated.then(|| ("test".to_owned(), "test".to_owned())),
                    ..AwsOptions::new(prefix)
                })
            }
            Some("embedded") => Backend::Embedded(
                get("ATELIER_CLOUD_DATA")
                    .unwrap_or_else(|| "/tmp/atelier-cloud".into())
                    .into(),
            ),
            other => {
                return Err(setting(
                    "ATELIER_BACKEND",
                    format!("{other:?} is not a backend this function knows (aws, embedded)"),
                ));
            }
        };
        let cognito = CognitoSettings::from_lookup(&var)?.ok_or_else(|| {
            setting(
                crate::auth::cognito::ENV_ISSUER,
                "is required: the function accepts Cognito access tokens only",
            )
        })?;
        let number = |name: &'static str, default: u64| -> Result<u64, LambdaError> {
            get(name).map_or(Ok(default), |v| {
                v.parse()
                    .map_err(|_| setting(name, format!("{v:?} is not a whole number")))
            })
        };
        let requests_per_minute = match get("ATELIER_REQUESTS_PER_MINUTE").as_deref() {
            Some("off") => None,
            _ => std::num::NonZeroU32::new(number("ATELIER_REQUESTS_PER_MINUTE", 600)? as u32),
        };
        let long_poll_max_ms = number("ATELIER_LONG_POLL_MAX_MS", DEFAULT_LONG_POLL_MAX_MS)?;
        if long_poll_max_ms > core_sync::sync::protocol::MAX_WAIT_MS {
            return Err(setting(
                "ATELIER_LONG_POLL_MAX_MS",
                format!(
                    "at most {} (API Gateway ends a request at 30 s)",
                    core_sync::sync::protocol::MAX_WAIT_MS
                ),
            ));
        }
        let invoke = get("AWS_LAMBDA_FUNCTION_NAME").map(|function_name| InvokeTarget {
            function_name,
            qualifier: get("ATELIER_LAMBDA_QUALIFIER"),
            endpoint: get("AWS_ENDPOINT_URL_LAMBDA"),
            region: get("AWS_REGION").unwrap_or_else(|| "eu-central-1".into()),
        });
        Ok(LambdaConfig {
            backend,
            cognito,
            providers: ProviderConfig::from_lookup(&var),
            jobs: get("ATELIER_JOBS").as_deref() != Some("off"),
            public_url: get("ATELIER_PUBLIC_URL"),
            api: ApiConfig {
                requests_per_minute,
                long_poll_max_ms,
                ..ApiConfig::default()
            },
            invoke,
        })
    }
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
        .with_limits(ApiLimits::new(config.api.clone()));
        if config.jobs {
            let mut job_config = JobConfig {
                public_url: config.public_url.clone(),
                ..JobConfig::default()
            };
            if let Some(target) = &config.invoke {
                job_config.launcher = Arc::new(InvokeLauncher::new(target.clone()).await);
            }
            state = state.with_jobs(Registry::load()?, config.providers.clone(), job_config);
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

    /// One invocation: an HTTP API event through the Router, or a job.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, lambda_http::Error> {
        let LambdaEvent { payload, context } = event;
        if JobEvent::is_job(&payload) {
            let job: JobEvent = serde_json::from_value(payload)
                .map_err(|e| format!("a job event that does not parse: {e}"))?;
            return self.run_job(job).await;
        }
        let request: LambdaRequest = serde_json::from_value(payload)
            .map_err(|e| format!("not an API Gateway HTTP API (2.0) event nor a job event: {e}"))?;
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
