//! Replicate webhook signatures (Standard Webhooks).
//!
//! Replicate signs each delivery with the account's `whsec_...` secret:
//! `webhook-signature` holds space-separated `v1,<base64>` entries, each an
//! HMAC-SHA256 over `"{webhook-id}.{webhook-timestamp}.{raw body}"` keyed
//! with the base64-decoded secret. [`verify`] checks one delivery: all
//! three headers present, a numeric timestamp within `tolerance` of now
//! (either way), and at least one entry matching, compared in constant
//! time. It keeps no state: deduplicating by `webhook-id` is the caller's
//! job.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use sha2::Sha256;

/// Replay window Replicate's docs ask for.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// Why a delivery was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the webhook has no {0} header")]
    MissingHeader(&'static str),
    #[error("the webhook secret is not a whsec_ base64 key")]
    BadSecret,
    #[error("the webhook timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("the webhook timestamp is older than the replay window")]
    TooOld,
    #[error("the webhook timestamp is too far in the future")]
    TooNew,
    #[error("no webhook signature matches")]
    NoMatch,
}

type HmacSha256 = Hmac<Sha256>;

/// Verifies one delivery from its headers (`webhook-id`,
/// `webhook-timestamp`, `webhook-signature`) and raw body.
pub fn verify_headers(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
    tolerance: Duration,
) -> Result<(), WebhookError> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    verify(
        secret,
        get(ID_HEADER),
        get(TIMESTAMP_HEADER),
        get(SIGNATURE_HEADER),
        body,
        now_unix,
        tolerance,
    )
}

/// Verifies one delivery: `secret` is `whsec_<base64>`; `id`, `timestamp`
/// and `signature` are the three headers' values (`None` when absent).
pub fn verify(
    secret: &str,
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_unix: i64,
    tolerance: Duration,
) -> Result<(), WebhookError> {
    fn present<'a>(v: Option<&'a str>, name: &'static str) -> Result<&'a str, WebhookError> {
        v.filter(|v| !v.trim().is_empty())
            .ok_or(WebhookError::MissingHeader(name))
    }
    let id = present(id, ID_HEADER)?;
    let timestamp = present(timestamp, TIMESTAMP_HEADER)?;
    let signature = present(signature, SIGNATURE_HEADER)?;

    if !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WebhookError::BadTimestamp);
    }
    let sent: i64 = timestamp.parse().map_err(|_| WebhookError::BadTimestamp)?;
    let window = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now_unix.saturating_sub(sent) > window {
        return Err(WebhookError::TooOld);
    }
    if sent.saturating_sub(now_unix) > window {
        return Err(WebhookError::TooNew);
    }

    let mut mac = keyed(secret)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let matches = signature
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .any(|sig| mac.clone().verify_slice(&sig).is_ok());
    if matches {
        Ok(())
    } else {
        Err(WebhookError::NoMatch)
    }
}

/// The `v1,<base64>` signature of a delivery (what Replicate sends; for
/// tests and local fakes).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, WebhookError> {
    let mut mac = keyed(secret)?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

fn keyed(secret: &str) -> Result<HmacSha256, WebhookError> {
    let encoded = secret.trim();
    let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| WebhookError::BadSecret)?;
    if key.is_empty() {
        return Err(WebhookError::BadSecret);
    }
    HmacSha256::new_from_slice(&key).map_err(|_| WebhookError::BadSecret)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks test vector quoted in providers.md.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: &str = "1614265330";
    const NOW: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn check(id: &str, ts: &str, sig: &str, body: &[u8], now: i64) -> Result<(), WebhookError> {
        verify(
            SECRET,
            Some(id),
            Some(ts),
            Some(sig),
            body,
            now,
            DEFAULT_TOLERANCE,
        )
    }

    #[test]
    fn the_standard_webhooks_test_vector_verifies() {
        assert_eq!(check(ID, TS, SIG, BODY, NOW), Ok(()));
        assert_eq!(sign(SECRET, ID, NOW, BODY).unwrap(), SIG);
        let mut headers = HeaderMap::new();
        headers.insert(ID_HEADER, ID.parse().unwrap());
        headers.insert(TIMESTAMP_HEADER, TS.parse().unwrap());
        headers.insert(SIGNATURE_HEADER, SIG.parse().unwrap());
        assert_eq!(
            verify_headers(SECRET, &headers, BODY, NOW, DEFAULT_TOLERANCE),
            Ok(())
        );
    }

    #[test]
    fn any_matching_entry_among_several_is_enough() {
        let several = format!("v1,bm9wZQ== v2,whatever v1a,{} {SIG}", &SIG[3..]);
        assert_eq!(check(ID, TS, &several, BODY, NOW), Ok(()));
        assert_eq!(
            check(ID, TS, "v1,bm9wZQ== v1,%%%", BODY, NOW),
            Err(WebhookError::NoMatch)
        );
        assert_eq!(
            check(ID, TS, &SIG[3..], BODY, NOW),
            Err(WebhookError::NoMatch),
            "an entry needs its v1, prefix"
        );
    }

    #[test]
    fn tampering_is_refused() {
        assert_eq!(
            check(ID, TS, SIG, br#"{"test": 2432232315}"#, NOW),
            Err(WebhookError::NoMatch)
        );
        assert_eq!(
            check("msg_p5jXN8AQM9LWM0D4loKWxJel", TS, SIG, BODY, NOW),
            Err(WebhookError::NoMatch)
        );
        assert_eq!(
            check(ID, "1614265331", SIG, BODY, NOW),
            Err(WebhookError::NoMatch)
        );
        let other_secret = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(
            verify(
                other_secret,
                Some(ID),
                Some(TS),
                Some(SIG),
                BODY,
                NOW,
                DEFAULT_TOLERANCE
            ),
            Err(WebhookError::NoMatch)
        );
    }

    #[test]
    fn stale_future_and_malformed_timestamps_are_refused() {
        assert_eq!(
            check(ID, TS, SIG, BODY, NOW + 300),
            Ok(()),
            "exactly five minutes is still in the window"
        );
        assert_eq!(
            check(ID, TS, SIG, BODY, NOW + 301),
            Err(WebhookError::TooOld)
        );
        assert_eq!(check(ID, TS, SIG, BODY, NOW - 300), Ok(()));
        assert_eq!(
            check(ID, TS, SIG, BODY, NOW - 301),
            Err(WebhookError::TooNew)
        );
        for bad in [
            "abc",
            "1614265330.5",
            "-1614265330",
            "+1614265330",
            "99999999999999999999999",
        ] {
            assert_eq!(
                check(ID, bad, SIG, BODY, NOW),
                Err(WebhookError::BadTimestamp),
                "{bad}"
            );
        }
        assert_eq!(
            check(ID, TS, SIG, BODY, i64::MAX),
            Err(WebhookError::TooOld)
        );
    }

    #[test]
    fn missing_headers_and_bad_secrets_are_refused() {
        let v = |id, ts, sig| verify(SECRET, id, ts, sig, BODY, NOW, DEFAULT_TOLERANCE);
        assert_eq!(
            v(None, Some(TS), Some(SIG)),
            Err(WebhookError::MissingHeader(ID_HEADER))
        );
        assert_eq!(
            v(Some(ID), None, Some(SIG)),
            Err(WebhookError::MissingHeader(TIMESTAMP_HEADER))
        );
        assert_eq!(
            v(Some(ID), Some(TS), None),
            Err(WebhookError::MissingHeader(SIGNATURE_HEADER))
        );
        assert_eq!(
            v(Some(""), Some(TS), Some(SIG)),
            Err(WebhookError::MissingHeader(ID_HEADER))
        );
        assert_eq!(
            verify_headers(SECRET, &HeaderMap::new(), BODY, NOW, DEFAULT_TOLERANCE),
            Err(WebhookError::MissingHeader(ID_HEADER))
        );
        for secret in ["whsec_!!!", "whsec_", ""] {
            assert_eq!(
                verify(
                    secret,
                    Some(ID),
                    Some(TS),
                    Some(SIG),
                    BODY,
                    NOW,
                    DEFAULT_TOLERANCE
                ),
                Err(WebhookError::BadSecret),
                "{secret:?}"
            );
        }
        assert_eq!(
            verify(
                &SECRET["whsec_".len()..],
                Some(ID),
                Some(TS),
                Some(SIG),
                BODY,
                NOW,
                DEFAULT_TOLERANCE
            ),
            Ok(()),
            "a bare base64 secret works too"
        );
    }
}
