//! Replicate's webhook deliveries (Standard Webhooks): the three headers
//! and the body as `providers::webhook::verify` checks them, and any
//! secret as configured (`whsec_<base64>`).
//!
//! Input: `secret`, `webhook-id`, `webhook-timestamp`,
//! `webhook-signature` and the body, split by [`crate::fields`].
//!
//! Properties: a delivery signed with the secret verifies; the same
//! delivery with its body changed does not.

use cloud_lambda::providers::webhook::{DEFAULT_TOLERANCE, WebhookError, sign, verify};

use crate::{NOW_SECS, fields};

/// The secret deliveries are checked against (a test secret).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub fn run(data: &[u8]) {
    let parts = fields(data, 5);
    let text = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_owned);
    let (secret, id, timestamp, signature) = (
        text(parts[0]),
        text(parts[1]),
        text(parts[2]),
        text(parts[3]),
    );
    let body = parts[4];
    let now = NOW_SECS as i64;
    let _ = verify(
        SECRET,
        id.as_deref(),
        timestamp.as_deref(),
        signature.as_deref(),
        body,
        now,
        DEFAULT_TOLERANCE,
    );
    let Some(secret) = secret else { return };
    let checked = verify(
        &secret,
        id.as_deref(),
        timestamp.as_deref(),
        signature.as_deref(),
        body,
        now,
        DEFAULT_TOLERANCE,
    );
    // Signed with the secret, now: accepted (the id is any non-blank
    // header value).
    let Some(id) = id.filter(|i| !i.trim().is_empty()) else {
        return;
    };
    let Ok(signed) = sign(&secret, &id, now, body) else {
        // A secret that cannot sign verifies nothing.
        assert!(
            checked.is_err(),
            "a delivery verified with an unusable secret"
        );
        return;
    };
    let ts = now.to_string();
    assert_eq!(
        verify(
            &secret,
            Some(&id),
            Some(&ts),
            Some(&signed),
            body,
            now,
            DEFAULT_TOLERANCE
        ),
        Ok(()),
        "a delivery signed with the secret is refused"
    );
    let mut other = body.to_vec();
    other.push(b'!');
    assert_eq!(
        verify(
            &secret,
            Some(&id),
            Some(&ts),
            Some(&signed),
            &other,
            now,
            DEFAULT_TOLERANCE
        ),
        Err(WebhookError::NoMatch),
        "a changed body still verifies"
    );
}
