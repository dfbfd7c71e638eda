//! The time claims: `exp` within the leeway is accepted, past it refused
//! (on a clock the test sets, to the second), a future `nbf` is refused,
//! and a token without `exp` is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cloud_lambda::auth::AuthError;
use serde_json::json;

use crate::fixtures::{access_claims, bearer, fx, now, reject, set, sign, unset, verifier};

#[tokio::test]
async fn expiry_within_leeway_is_accepted() {
    let claims = set(access_claims(), "exp", json!(now() - 10));
    verifier()
        .verify(Some(&bearer(&sign(&claims))))
        .await
        .unwrap();
}

#[tokio::test]
async fn rejects_expired() {
    let fx = fx();
    let claims = set(access_claims(), "exp", json!(now() - 3600));
    assert_eq!(
        reject(&verifier(), &sign(&claims)).await,
        AuthError::Expired
    );
    // A five-minute token against a verifier whose clock moves: valid to
    // its last second plus the leeway, expired one second later.
    let clock = Arc::new(FixedClock(AtomicU64::new(1_800_000_000)));
    let token = fx
        .issuer
        .mint_at("alice", Duration::from_secs(300), 1_800_000_000);
    let verifier = fx.issuer.verifier().with_clock(clock.clone());
    let leeway = verifier.config().leeway_secs;
    for (after, valid) in [(0, true), (300 + leeway, true), (301 + leeway, false)] {
        clock.0.store(1_800_000_000 + after, Ordering::SeqCst);
        let result = verifier.verify_token(&token).await;
        assert_eq!(result.is_ok(), valid, "{after} s after minting: {result:?}");
        if !valid {
            assert_eq!(result.unwrap_err(), AuthError::Expired);
        }
    }
}

/// A clock the test sets.
#[derive(Debug)]
struct FixedClock(AtomicU64);

impl cloud_lambda::auth::Clock for FixedClock {
    fn now_secs(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn rejects_not_yet_valid() {
    let claims = set(access_claims(), "nbf", json!(now() + 3600));
    assert_eq!(
        reject(&verifier(), &sign(&claims)).await,
        AuthError::NotYetValid
    );
}

#[tokio::test]
async fn rejects_missing_exp() {
    let claims = unset(access_claims(), "exp");
    assert_eq!(
        reject(&verifier(), &sign(&claims)).await,
        AuthError::MissingClaim("exp")
    );
}
