//! The one configuration every AWS SDK client here starts from (DynamoDB,
//! S3, Lambda, SSM): the ring-based rustls HTTP client (the SDK's default
//! aws-lc stack is off), a region of our own (left to itself, the SDK's
//! region chain ends by asking the EC2 instance metadata service, an HTTP
//! call off this machine), an emulator's endpoint, fixed credentials for
//! an emulator, and timeouts.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ssm::config::Credentials;
use aws_smithy_http_client::tls;

/// What a client needs to know beyond the SDK's defaults.
#[derive(Debug, Clone)]
pub struct SdkSettings {
    /// An emulator's URL; `None`: AWS.
    pub endpoint: Option<String>,
    pub region: String,
    /// Fixed credentials (an emulator takes any); `None`: the default
    /// chain (on Lambda, the function's role).
    pub credentials: Option<(String, String)>,
    /// Longest one attempt of a request may take.
    pub attempt_timeout: Duration,
    /// `None`: the SDK's standard retries.
    pub retry: Option<RetryConfig>,
}

impl SdkSettings {
    pub fn new(region: impl Into<String>) -> SdkSettings {
        SdkSettings {
            endpoint: None,
            region: region.into(),
            credentials: None,
            attempt_timeout: Duration::from_secs(10),
            retry: None,
        }
    }
}

/// The shared configuration for `settings`. Sends nothing.
pub async fn load(settings: &SdkSettings) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new(settings.region.clone()))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(settings.attempt_timeout)
                .build(),
        );
    if let Some(retry) = &settings.retry {
        loader = loader.retry_config(retry.clone());
    }
    if let Some(endpoint) = &settings.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some((id, secret)) = &settings.credentials {
        loader = loader.credentials_provider(Credentials::new(
            id.clone(),
            secret.clone(),
            None,
            None,
            "atelier-static",
        ));
    }
    loader.load().await
}
