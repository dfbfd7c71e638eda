//! The key cache (`JwksSource`) over a key source that counts its
//! fetches: an unknown kid refetches once and is then rate-limited, picks
//! up a rotated key, shares one fetch among concurrent callers; a failed or
//! slow fetch is `KeysUnavailable` and keeps the old keys; and JWKS parsing
//! keeps only RS256 signing keys.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cloud_lambda::auth::{AuthConfig, AuthError, Jwks, JwksJson, JwksSource, KeySource, Verifier};
use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::fixtures::{AUD, ISS, access_claims, bearer, fx, reject, sign, sign_with};

/// A key source that counts fetches and can change its keys or fail.
#[derive(Clone)]
struct Counting(Arc<CountingInner>);

struct CountingInner {
    jwks: Mutex<Result<JwksJson, AuthError>>,
    fetches: AtomicUsize,
    delay: Duration,
}

impl Counting {
    fn new(jwks: JwksJson, delay: Duration) -> Self {
        Counting(Arc::new(CountingInner {
            jwks: Mutex::new(Ok(jwks)),
            fetches: AtomicUsize::new(0),
            delay,
        }))
    }
    fn fetches(&self) -> usize {
        self.0.fetches.load(Ordering::SeqCst)
    }
    fn serve(&self, jwks: Result<JwksJson, AuthError>) {
        *self.0.jwks.lock().unwrap() = jwks;
    }
}

#[async_trait]
impl KeySource for Counting {
    async fn fetch(&self) -> Result<JwksJson, AuthError> {
        self.0.fetches.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.0.delay).await;
        self.0.jwks.lock().unwrap().clone()
    }
}

fn both_keys() -> JwksJson {
    let mut jwks = fx().issuer.jwks();
    jwks.keys.extend(fx().other.jwks().keys);
    jwks
}

fn token_by_other_key() -> String {
    let fx = fx();
    sign_with(
        &access_claims(),
        Algorithm::RS256,
        Some(fx.other.kid()),
        &fx.other_signing,
    )
}

#[tokio::test]
async fn unknown_kid_refetches_once_then_is_rate_limited() {
    let source = Counting::new(fx().issuer.jwks(), Duration::ZERO);
    let verifier = Verifier::with_source(AuthConfig::access(ISS, AUD), source.clone());
    let good = bearer(&sign(&access_claims()));
    verifier.verify(Some(&good)).await.unwrap();
    assert_eq!(source.fetches(), 1, "first use fetches");
    verifier.verify(Some(&good)).await.unwrap();
    assert_eq!(source.fetches(), 1, "known kid is served from the cache");

    // The key appears at the source, but the last fetch was just now.
    source.serve(Ok(both_keys()));
    let rotated = token_by_other_key();
    assert!(matches!(
        reject(&verifier, &rotated).await,
        AuthError::UnknownKey(_)
    ));
    assert_eq!(source.fetches(), 1, "no refetch within the interval");
    for _ in 0..5 {
        reject(&verifier, &rotated).await;
    }
    assert_eq!(source.fetches(), 1, "no refetch storm");
}

#[tokio::test]
async fn unknown_kid_picks_up_a_rotated_key() {
    let source = Counting::new(fx().issuer.jwks(), Duration::ZERO);
    let keys = JwksSource::new(source.clone()).with_min_refetch_interval(Duration::ZERO);
    let verifier = Verifier::new(AuthConfig::access(ISS, AUD), keys);
    verifier
        .verify(Some(&bearer(&sign(&access_claims()))))
        .await
        .unwrap();
    source.serve(Ok(both_keys()));
    verifier
        .verify(Some(&bearer(&token_by_other_key())))
        .await
        .unwrap();
    assert_eq!(source.fetches(), 2);

    // Rotated out: the old key's tokens are refused after the next fetch.
    source.serve(Ok(fx().other.jwks()));
    let forged = sign_with(
        &access_claims(),
        Algorithm::RS256,
        Some("no-such-kid"),
        &fx().other_signing,
    );
    assert!(matches!(
        reject(&verifier, &forged).await,
        AuthError::UnknownKey(_)
    ));
    assert_eq!(source.fetches(), 3);
    assert!(matches!(
        reject(&verifier, &sign(&access_claims())).await,
        AuthError::UnknownKey(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unknown_kids_share_one_fetch() {
    let source = Counting::new(fx().issuer.jwks(), Duration::from_millis(100));
    let verifier = Verifier::with_source(AuthConfig::access(ISS, AUD), source.clone());
    let token = bearer(&token_by_other_key());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (verifier, token) = (verifier.clone(), token.clone());
        tasks.spawn(async move { verifier.verify(Some(&token)).await });
    }
    while let Some(result) = tasks.join_next().await {
        assert!(matches!(result.unwrap(), Err(AuthError::UnknownKey(_))));
    }
    assert_eq!(source.fetches(), 1);
}

#[tokio::test]
async fn failed_fetch_is_keys_unavailable_and_keeps_old_keys() {
    let source = Counting::new(fx().issuer.jwks(), Duration::ZERO);
    let verifier = Verifier::with_source(AuthConfig::access(ISS, AUD), source.clone());
    source.serve(Err(AuthError::KeysUnavailable("HTTP 503".into())));
    let good = bearer(&sign(&access_claims()));
    assert!(matches!(
        verifier.verify(Some(&good)).await,
        Err(AuthError::KeysUnavailable(_))
    ));
    assert!(matches!(
        verifier.verify(Some(&good)).await,
        Err(AuthError::KeysUnavailable(_))
    ));
    assert_eq!(source.fetches(), 1, "a failing source is not hammered");

    // Once keys are loaded, a later failed refresh does not drop them.
    source.serve(Ok(fx().issuer.jwks()));
    verifier.keys().refresh().await.unwrap();
    source.serve(Err(AuthError::KeysUnavailable("HTTP 503".into())));
    assert!(verifier.keys().refresh().await.is_err());
    verifier.verify(Some(&good)).await.unwrap();
}

#[tokio::test]
async fn slow_fetch_times_out() {
    let source = Counting::new(fx().issuer.jwks(), Duration::from_secs(30));
    let keys = JwksSource::new(source).with_fetch_timeout(Duration::from_millis(50));
    let verifier = Verifier::new(AuthConfig::access(ISS, AUD), keys);
    assert!(matches!(
        verifier
            .verify(Some(&bearer(&sign(&access_claims()))))
            .await,
        Err(AuthError::KeysUnavailable(_))
    ));
}

#[test]
fn jwks_keeps_only_rs256_signing_keys() {
    let fx = fx();
    let rsa = &fx.issuer.jwks().keys[0];
    let (n, e) = (rsa.n.clone().unwrap(), rsa.e.clone().unwrap());
    let doc = json!({"keys": [
        {"kty": "RSA", "kid": "sig-1", "n": n, "e": e, "alg": "RS256", "use": "sig"},
        {"kty": "RSA", "kid": "no-alg", "n": n, "e": e},
        {"kty": "RSA", "kid": "enc-1", "n": n, "e": e, "alg": "RSA-OAEP", "use": "enc"},
        {"kty": "RSA", "kid": "rs512", "n": n, "e": e, "alg": "RS512"},
        {"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": "AAAA", "y": "AAAA"},
        {"kty": "RSA", "n": n, "e": e, "alg": "RS256"},
    ]});
    let jwks = Jwks::parse(&doc.to_string()).unwrap();
    let mut kids: Vec<&str> = jwks.kids().collect();
    kids.sort_unstable();
    assert_eq!(kids, ["no-alg", "sig-1"]);
    assert!(jwks.get("sig-1").is_some() && jwks.get("enc-1").is_none());
    assert!(matches!(
        Jwks::parse("{\"nokeys\": 1}"),
        Err(AuthError::KeysUnavailable(_))
    ));
}
