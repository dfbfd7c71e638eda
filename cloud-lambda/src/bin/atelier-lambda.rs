//! `atelier-lambda`: the cloud on AWS Lambda. Runs the Router under the
//! Lambda runtime (API Gateway HTTP API events, and the function's own
//! asynchronous job invocations), configured from the environment only
//! (see `cloud_lambda::lambda::LambdaConfig`). A thin shell: it is the
//! `bootstrap` `cargo lambda build --bin atelier-lambda` packages.
//!
//! Kept apart from `atelier-cloud` so the function carries no command
//! line (no flags to parse, no `init-aws` or `dev-token`), and so running
//! it anywhere but on Lambda (no `AWS_LAMBDA_RUNTIME_API`) is a clear
//! error rather than a second way to serve.

use std::process::ExitCode;

use clap::Parser;
use cloud_lambda::lambda::{self, LambdaApp, LambdaConfig};

/// Atelier's cloud on AWS Lambda: the sync endpoint, the REST API and
/// provider jobs behind an API Gateway HTTP API.
///
/// Configured from the environment: ATELIER_BACKEND (aws, the default, or
/// embedded), ATELIER_AWS_PREFIX, AWS_ENDPOINT_URL, ATELIER_CLOUD_DATA,
/// ATELIER_COGNITO_ISSUER, ATELIER_COGNITO_JWKS_URL,
/// ATELIER_COGNITO_CLIENT_IDS, GEMINI_API_KEY, REPLICATE_API_TOKEN,
/// REPLICATE_WEBHOOK_SECRET, ATELIER_SECRET_PARAMETERS (JSON: for each of
/// those three keys not set directly, the SSM parameters holding it, read
/// decrypted at start; AWS_ENDPOINT_URL_SSM), ATELIER_PUBLIC_URL,
/// ATELIER_JOBS=off, ATELIER_JOBS_PER_HOUR, ATELIER_DAILY_SPEND_CAP_USD,
/// ATELIER_EMF_METRICS (default true: one CloudWatch EMF line per
/// invocation), ATELIER_METRICS_DEPLOYMENT (default the prefix),
/// ATELIER_LONG_POLL_MAX_MS (default 0), ATELIER_REQUESTS_PER_MINUTE,
/// ATELIER_LAMBDA_QUALIFIER, AWS_ENDPOINT_URL_LAMBDA. Lambda sets
/// AWS_LAMBDA_RUNTIME_API and AWS_LAMBDA_FUNCTION_NAME; without the first
/// this program refuses to start (use `atelier-cloud serve` elsewhere).
#[derive(Parser)]
#[command(version)]
struct Cli {}

fn main() -> ExitCode {
    Cli::parse();
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        eprintln!(
            "error: AWS_LAMBDA_RUNTIME_API is not set: atelier-lambda runs on AWS Lambda \
             (or under `cargo lambda watch`); use `atelier-cloud serve` to serve elsewhere"
        );
        return ExitCode::from(2);
    }
    lambda::init_json_logs();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let app = match LambdaConfig::from_env() {
            Ok(config) => LambdaApp::start(config).await,
            Err(e) => Err(e),
        };
        let app = match app {
            Ok(app) => app,
            Err(e) => {
                tracing::error!(error = %e, "the function cannot start");
                return ExitCode::FAILURE;
            }
        };
        match lambda::run(app).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "the Lambda runtime stopped");
                ExitCode::FAILURE
            }
        }
    })
}
