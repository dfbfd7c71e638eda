//! What the function is told, from its environment only:
//! [`LambdaConfig::from_lookup`] reads exactly the variables of
//! [`VARIABLES`] (a test holds the two together, and the infrastructure's
//! tests check that every variable `amplify/` sets is one of them).

use std::path::PathBuf;

use super::secrets::{SECRET_PARAMETERS_ENV, SecretParameters, SsmEndpoint};
use crate::auth::cognito::ENV_ISSUER;
use crate::auth::{AuthError, CognitoSettings};
use crate::limits::{ApiConfig, SpendLimits, parse_count_or_off, parse_usd_or_off};
use crate::providers::ProviderConfig;
use crate::registry::RegistryError;
use crate::storage::StorageError;
use crate::storage::aws::AwsOptions;

use super::invoke::InvokeTarget;
use super::secrets::SecretError;

/// Every environment variable the function reads (besides the AWS SDK's
/// own credential variables).
pub const VARIABLES: [&str; 30] = [
    "ATELIER_BACKEND",
    "ATELIER_AWS_PREFIX",
    "ATELIER_CLOUD_DATA",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_LAMBDA",
    "AWS_ENDPOINT_URL_SSM",
    "AWS_ACCESS_KEY_ID",
    "AWS_REGION",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_RUNTIME_API",
    "ATELIER_LAMBDA_QUALIFIER",
    "ATELIER_COGNITO_ISSUER",
    "ATELIER_COGNITO_JWKS_URL",
    "ATELIER_COGNITO_CLIENT_IDS",
    "ATELIER_GEMINI_BASE_URL",
    "ATELIER_REPLICATE_BASE_URL",
    "GEMINI_API_KEY",
    "REPLICATE_API_TOKEN",
    "REPLICATE_WEBHOOK_SECRET",
    "ATELIER_SECRET_PARAMETERS",
    "ATELIER_JOBS",
    "ATELIER_PUBLIC_URL",
    "ATELIER_REQUESTS_PER_MINUTE",
    "ATELIER_LONG_POLL_MAX_MS",
    "ATELIER_JOBS_PER_HOUR",
    "ATELIER_DAILY_SPEND_CAP_USD",
    "ATELIER_EMF_METRICS",
    "ATELIER_METRICS_DEPLOYMENT",
    "ATELIER_TRASH_RETENTION_DAYS",
    "RUST_LOG",
];

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

/// The provider secrets to read from SSM Parameter Store at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSource {
    /// Only the secrets not already set directly in the environment.
    pub parameters: SecretParameters,
    pub endpoint: SsmEndpoint,
}

/// Everything the function needs, read from its environment.
#[derive(Debug, Clone)]
pub struct LambdaConfig {
    pub backend: Backend,
    pub cognito: CognitoSettings,
    /// Keys set directly in the environment; the rest come from `secrets`.
    pub providers: ProviderConfig,
    /// Provider keys kept in SSM Parameter Store (`ATELIER_SECRET_PARAMETERS`).
    pub secrets: Option<SecretSource>,
    /// Run provider jobs (`ATELIER_JOBS=off` turns them off).
    pub jobs: bool,
    /// The API's public base URL, for Replicate's webhook.
    pub public_url: Option<String>,
    pub api: ApiConfig,
    pub spend: SpendLimits,
    /// Where launched jobs go: an asynchronous invoke of this function;
    /// `None` runs them as tasks of the invocation (tests only).
    pub invoke: Option<InvokeTarget>,
    /// CloudWatch EMF lines on stdout, one per invocation that counted
    /// something (`ATELIER_EMF_METRICS`, on by default), with this value
    /// of the `Deployment` dimension (`ATELIER_METRICS_DEPLOYMENT`, default
    /// the AWS prefix).
    pub emf_deployment: Option<String>,
    /// How long an asset stays in the trash before a scheduled event
    /// purges it (`ATELIER_TRASH_RETENTION_DAYS`, default 30).
    pub trash_retention: std::time::Duration,
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
    #[error(transparent)]
    Secrets(#[from] SecretError),
}

pub(super) fn setting(name: &'static str, message: impl Into<String>) -> LambdaError {
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
        let endpoint = get("AWS_ENDPOINT_URL");
        // An emulator takes any credentials; on Lambda the role's come
        // from the environment.
        let emulated = |endpoint: &Option<String>| {
            (endpoint.is_some() && get("AWS_ACCESS_KEY_ID").is_none())
                .then(|| ("test".to_owned(), "test".to_owned()))
        };
        let region = get("AWS_REGION");
        let backend = match get("ATELIER_BACKEND").as_deref() {
            None | Some("aws") => {
                let prefix = get("ATELIER_AWS_PREFIX").ok_or_else(|| {
                    setting(
                        "ATELIER_AWS_PREFIX",
                        "is required: it names the tables and buckets",
                    )
                })?;
                Backend::Aws(AwsOptions {
                    endpoint: endpoint.clone(),
                    region: region.clone(),
                    credentials: emulated(&endpoint),
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
                ENV_ISSUER,
                "is required: the function accepts Cognito access tokens only",
            )
        })?;
        let number = |name: &'static str, default: u64| -> Result<u64, LambdaError> {
            get(name).map_or(Ok(default), |v| {
                v.parse()
                    .map_err(|_| setting(name, format!("{v:?} is not a whole number")))
            })
        };
        let count =
            |name: &'static str, default: Option<u32>| -> Result<Option<u32>, LambdaError> {
                get(name).map_or(Ok(default), |v| {
                    parse_count_or_off(&v).map_err(|m| setting(name, m))
                })
            };
        let requests_per_minute =
            count("ATELIER_REQUESTS_PER_MINUTE", Some(600))?.and_then(std::num::NonZeroU32::new);
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
        let defaults = SpendLimits::default();
        let spend = SpendLimits {
            jobs_per_hour: count("ATELIER_JOBS_PER_HOUR", defaults.jobs_per_hour)?,
            daily_cap_nano_usd: match get("ATELIER_DAILY_SPEND_CAP_USD") {
                None => defaults.daily_cap_nano_usd,
                Some(v) => {
                    parse_usd_or_off(&v).map_err(|m| setting("ATELIER_DAILY_SPEND_CAP_USD", m))?
                }
            },
        };
        let invoke = get("AWS_LAMBDA_FUNCTION_NAME").map(|function_name| InvokeTarget {
            function_name,
            qualifier: get("ATELIER_LAMBDA_QUALIFIER"),
            endpoint: get("AWS_ENDPOINT_URL_LAMBDA"),
            region: region.clone().unwrap_or_else(|| "eu-central-1".into()),
        });
        let providers = ProviderConfig::from_lookup(&var);
        let secrets = match get(SECRET_PARAMETERS_ENV) {
            None => None,
            Some(json) => {
                let mut parameters = SecretParameters::parse(&json)
                    .map_err(|m| setting(SECRET_PARAMETERS_ENV, m))?;
                // A key set directly wins (and is not looked up).
                parameters.by_secret.retain(|name, _| get(name).is_none());
                let ssm = get("AWS_ENDPOINT_URL_SSM").or(endpoint.clone());
                (!parameters.by_secret.is_empty()).then(|| SecretSource {
                    parameters,
                    endpoint: SsmEndpoint {
                        credentials: emulated(&ssm),
                        url: ssm,
                        region: region.clone().unwrap_or_else(|| "eu-central-1".into()),
                    },
                })
            }
        };
        let emf = match get("ATELIER_EMF_METRICS").as_deref() {
            None | Some("true" | "1" | "on") => true,
            Some("false" | "0" | "off") => false,
            Some(other) => {
                return Err(setting(
                    "ATELIER_EMF_METRICS",
                    format!("{other:?} is neither true nor false"),
                ));
            }
        };
        let deployment = get("ATELIER_METRICS_DEPLOYMENT").or_else(|| match &backend {
            Backend::Aws(o) => Some(o.prefix.clone()),
            Backend::Embedded(_) => Some("embedded".into()),
        });
        Ok(LambdaConfig {
            backend,
            cognito,
            providers,
            secrets,
            jobs: get("ATELIER_JOBS").as_deref() != Some("off"),
            public_url: get("ATELIER_PUBLIC_URL"),
            api: ApiConfig {
                requests_per_minute,
                long_poll_max_ms,
                ..ApiConfig::default()
            },
            spend,
            invoke,
            emf_deployment: deployment.filter(|_| emf),
            trash_retention: std::time::Duration::from_secs(
                number("ATELIER_TRASH_RETENTION_DAYS", 30)?.saturating_mul(86_400),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::{BTreeSet, HashMap};

    use super::*;

    fn config(vars: &[(&str, &str)]) -> (Result<LambdaConfig, LambdaError>, BTreeSet<String>) {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let asked = RefCell::new(BTreeSet::new());
        let got = LambdaConfig::from_lookup(|name| {
            asked.borrow_mut().insert(name.to_owned());
            env.get(name).cloned()
        });
        (got, asked.into_inner())
    }

    const BASE: [(&str, &str); 3] = [
        ("ATELIER_AWS_PREFIX", "atelier-prod-"),
        (
            "ATELIER_COGNITO_ISSUER",
            "https://cognito-idp.eu-central-1.amazonaws.com/pool",
        ),
        ("ATELIER_COGNITO_CLIENT_IDS", "desktop,daemon"),
    ];

    #[test]
    fn every_variable_read_is_listed_and_every_listed_one_is_read() {
        let secrets = r#"{"GEMINI_API_KEY": ["/a/GEMINI_API_KEY"]}"#;
        let mut vars = BASE.to_vec();
        vars.extend([
            ("ATELIER_SECRET_PARAMETERS", secrets),
            ("AWS_LAMBDA_FUNCTION_NAME", "atelier-prod-api"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("ATELIER_JOBS_PER_HOUR", "5"),
            ("ATELIER_DAILY_SPEND_CAP_USD", "2.5"),
        ]);
        let (got, mut asked) = config(&vars);
        got.unwrap();
        let embedded = config(&[("ATELIER_BACKEND", "embedded")]).1;
        asked.extend(embedded);
        let listed: BTreeSet<String> = VARIABLES.iter().map(|v| v.to_string()).collect();
        let unlisted: Vec<_> = asked.difference(&listed).collect();
        assert!(
            unlisted.is_empty(),
            "read but not in VARIABLES: {unlisted:?}"
        );
        // Read elsewhere: the binary (runtime API) and the log filter.
        let elsewhere =
            BTreeSet::from(["AWS_LAMBDA_RUNTIME_API".to_owned(), "RUST_LOG".to_owned()]);
        let unread: Vec<_> = listed
            .difference(&asked)
            .filter(|v| !elsewhere.contains(*v))
            .collect();
        assert!(unread.is_empty(), "in VARIABLES but never read: {unread:?}");
    }

    #[test]
    fn limits_metrics_and_secret_parameters_come_from_the_environment() {
        let secrets = r#"{"GEMINI_API_KEY": ["/b/GEMINI_API_KEY", "/s/GEMINI_API_KEY"],
                          "REPLICATE_API_TOKEN": ["/b/REPLICATE_API_TOKEN"]}"#;
        let mut vars = BASE.to_vec();
        vars.extend([
            ("ATELIER_SECRET_PARAMETERS", secrets),
            ("REPLICATE_API_TOKEN", "r8_direct"),
            ("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:5"),
            ("ATELIER_JOBS_PER_HOUR", "off"),
            ("ATELIER_DAILY_SPEND_CAP_USD", "2.5"),
        ]);
        let c = config(&vars).0.unwrap();
        assert_eq!(c.spend.jobs_per_hour, None);
        assert_eq!(c.spend.daily_cap_nano_usd, Some(2_500_000_000));
        assert_eq!(c.emf_deployment.as_deref(), Some("atelier-prod-"));
        let s = c.secrets.unwrap();
        // The token set directly is not looked up.
        assert_eq!(
            s.parameters.by_secret.keys().collect::<Vec<_>>(),
            ["GEMINI_API_KEY"]
        );
        assert_eq!(s.endpoint.url.as_deref(), Some("http://127.0.0.1:5"));
        assert_eq!(s.endpoint.credentials, Some(("test".into(), "test".into())));

        let c = config(&BASE).0.unwrap();
        assert_eq!(c.spend, SpendLimits::default());
        assert!(c.secrets.is_none());
        let mut off = BASE.to_vec();
        off.push(("ATELIER_EMF_METRICS", "false"));
        assert_eq!(config(&off).0.unwrap().emf_deployment, None);

        for (name, value, why) in [
            ("ATELIER_EMF_METRICS", "maybe", "neither true nor false"),
            ("ATELIER_JOBS_PER_HOUR", "-1", "positive whole number"),
            ("ATELIER_DAILY_SPEND_CAP_USD", "lots", "amount of dollars"),
            (
                "ATELIER_SECRET_PARAMETERS",
                r#"{"OTHER": ["/x"]}"#,
                "not a secret",
            ),
        ] {
            let mut vars = BASE.to_vec();
            vars.push((name, value));
            let err = config(&vars).0.unwrap_err().to_string();
            assert!(err.starts_with(name) && err.contains(why), "{err}");
        }
    }
}
