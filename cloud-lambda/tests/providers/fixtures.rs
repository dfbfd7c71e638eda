//! Set-up shared by the provider tests: fake providers started on a
//! loopback port with a `ProviderConfig` aimed at them, the built-in model
//! registry's prices, small PNGs, and matchers for the two kinds of
//! `ProviderError`.

use std::time::Duration;

use atelier_fixtures::fakes::{self, FakeConfig, RunningFakes, images};
use cloud_lambda::providers::{ProviderConfig, ProviderError};
use cloud_lambda::registry::{BUILTIN, Registry, Usage};

pub(crate) async fn start(cfg: FakeConfig) -> (RunningFakes, ProviderConfig) {
    let f = fakes::spawn(cfg).await.expect("the fakes start");
    let c = f.config();
    let cfg = ProviderConfig {
        gemini_base: f.base_url().to_owned(),
        gemini_key: Some(c.api_key.clone()),
        replicate_base: f.base_url().to_owned(),
        replicate_token: Some(c.replicate_token.clone()),
        replicate_webhook_secret: Some(c.webhook_secret.clone()),
        ..ProviderConfig::default()
    };
    (f, cfg)
}

pub(crate) async fn fakes() -> (RunningFakes, ProviderConfig) {
    start(FakeConfig {
        step: Duration::from_millis(50),
        ..FakeConfig::default()
    })
    .await
}

pub(crate) fn registry() -> Registry {
    Registry::parse(BUILTIN).unwrap()
}

pub(crate) fn nano_usd(model_id: &str, usage: Usage) -> i64 {
    registry()
        .get(model_id)
        .unwrap()
        .price
        .cost(usage)
        .expect("the usage fits the price")
        .nano_usd
}

/// A solid-colour PNG.
pub(crate) fn png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    images::encode_png(&images::solid(width, height, rgb).into())
}

/// Width, height and colour type from a PNG's IHDR.
pub(crate) fn png_header(bytes: &[u8]) -> (u32, u32, u8) {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20), bytes[25])
}

#[track_caller]
pub(crate) fn permanent(e: ProviderError) -> (&'static str, String) {
    match e {
        ProviderError::Permanent { code, message } => (code, message),
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

#[track_caller]
pub(crate) fn transient(e: ProviderError) -> (String, Option<Duration>) {
    match e {
        ProviderError::Transient {
            reason,
            retry_after,
        } => (reason, retry_after),
        other => panic!("expected a transient error, got {other:?}"),
    }
}
