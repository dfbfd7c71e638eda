//! Bearer JWT verification and the local issuer (`cloud_lambda::auth`).
//!
//! RSA-2048 key generation is slow in debug builds, so the binary generates
//! exactly two keys, once: the local issuer's (through `load_or_create`, which
//! is itself under test) and an unrelated "attacker" key.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloud_lambda::auth::{
    AuthConfig, AuthError, Jwks, JwksJson, JwksSource, KeySource, LocalIssuer, StaticKeys,
    TokenUse, Verifier,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
use serde_json::{Value, json};

const ISS: &str = "https://cognito-idp.eu-central-1.amazonaws.com/eu-central-1_TEST";
const AUD: &str = "test-app-client";

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    issuer: LocalIssuer,
    /// The issuer's private key, read back from its key file.
    signing: EncodingKey,
    /// An unrelated key pair.
    other: LocalIssuer,
    other_signing: EncodingKey,
}

fn fx() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let issuer = LocalIssuer::load_or_create(&data, ISS, AUD).unwrap();
        let pem = std::fs::read_to_string(data.join(LocalIssuer::KEY_FILE_NAME)).unwrap();
        let signing = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();

        let other_key = rsa::RsaPrivateKey::new(&mut rand08::rngs::OsRng, 2048).unwrap();
        let other_pem = other_key.to_pkcs8_pem(LineEnding::LF).unwrap();
        let other = LocalIssuer::from_pkcs8_pem(&other_pem, ISS, AUD).unwrap();
        let other_signing = EncodingKey::from_rsa_pem(other_pem.as_bytes()).unwrap();
        Fixture {
            _dir: dir,
            dir: data,
            issuer,
            signing,
            other,
            other_signing,
        }
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A valid Cognito-shaped access token's claims.
fn access_claims() -> Value {
    let now = now();
    json!({
        "sub": "5f0c3a4e-0000-4000-8000-000000000001",
        "username": "alice",
        "iss": ISS,
        "client_id": AUD,
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin",
        "auth_time": now,
        "iat": now,
        "exp": now + 600,
        "jti": "jti-1",
    })
}

/// A valid Cognito-shaped ID token's claims.
fn id_claims() -> Value {
    let now = now();
    json!({
        "sub": "5f0c3a4e-0000-4000-8000-000000000001",
        "cognito:username": "alice",
        "iss": ISS,
        "aud": AUD,
        "token_use": "id",
        "auth_time": now,
        "iat": now,
        "exp": now + 600,
    })
}

fn set(mut claims: Value, key: &str, value: Value) -> Value {
    claims
        .as_object_mut()
        .unwrap()
        .insert(key.to_owned(), value);
    claims
}

fn unset(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn sign_with(claims: &Value, alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// Signed by the issuer's key, with its kid.
fn sign(claims: &Value) -> String {
    let fx = fx();
    sign_with(claims, Algorithm::RS256, Some(fx.issuer.kid()), &fx.signing)
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// `header.payload.signature` over an arbitrary payload part, RS256 with the
/// issuer's key.
fn signed_raw(header: &Value, payload_part: &str) -> String {
    let message = format!("{}.{payload_part}", b64(header));
    let sig =
        jsonwebtoken::crypto::sign(message.as_bytes(), &fx().signing, Algorithm::RS256).unwrap();
    format!("{message}.{sig}")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn verifier() -> Verifier {
    Verifier::with_source(
        AuthConfig::access(ISS, AUD),
        StaticKeys::new(fx().issuer.jwks()),
    )
}

fn id_verifier() -> Verifier {
    let config = AuthConfig {
        token_use: TokenUse::Id,
        ..AuthConfig::access(ISS, AUD)
    };
    Verifier::with_source(config, StaticKeys::new(fx().issuer.jwks()))
}

/// Verifies `token` as a bearer credential, expecting a rejection; checks
/// that neither the log text nor the client text leaks the token.
async fn reject(verifier: &Verifier, token: &str) -> AuthError {
    let err = verifier
        .verify(Some(&bearer(token)))
        .await
        .expect_err("token must be rejected");
    assert_eq!(err.status(), 401);
    for text in [
        err.to_string(),
        err.client_message().to_owned(),
        err.www_authenticate(),
        format!("{err:?}"),
    ] {
        for part in token.split('.').filter(|p| p.len() >= 8) {
            assert!(!text.contains(part), "error text leaks the token: {text}");
        }
    }
    err
}

// ---- acceptance --------------------------------------------------------

#[tokio::test]
async fn minted_token_verifies() {
    let fx = fx();
    let token = fx.issuer.mint("alice", Duration::from_secs(300));
    let claims = fx
        .issuer
        .verifier()
        .verify(Some(&bearer(&token)))
        .await
        .unwrap();
    assert_eq!(claims.sub, LocalIssuer::user_id("alice"));
    assert_eq!(claims.username, "alice");
    assert_eq!(claims.token_use, TokenUse::Access);
    assert!(claims.expires_at >= now() + 299 && claims.expires_at <= now() + 301);
}

#[tokio::test]
async fn minted_token_is_shaped_like_cognito_access_token() {
    let fx = fx();
    let token = fx.issuer.mint("bob", Duration::from_secs(3600));
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.kid.as_deref(), Some(fx.issuer.kid()));
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&token).unwrap();
    assert_eq!(claims["sub"], LocalIssuer::user_id("bob"));
    assert_eq!(claims["username"], "bob");
    assert_eq!(claims["iss"], ISS);
    assert_eq!(claims["client_id"], AUD);
    assert_eq!(claims["token_use"], "access");
    assert!(claims.get("aud").is_none());
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 3600);
    // Same user, same id; other user, other id; each token its own jti.
    let again: Value = jsonwebtoken::dangerous::insecure_decode_claims(
        fx.issuer.mint("bob", Duration::from_secs(60)),
    )
    .unwrap();
    assert_eq!(again["sub"], claims["sub"]);
    assert_ne!(again["jti"], claims["jti"]);
    assert_ne!(LocalIssuer::user_id("bob"), LocalIssuer::user_id("alice"));
}

#[tokio::test]
async fn cognito_access_token_verifies() {
    let claims = verifier()
        .verify(Some(&bearer(&sign(&access_claims()))))
        .await
        .unwrap();
    assert_eq!(claims.sub, "5f0c3a4e-0000-4000-8000-000000000001");
    assert_eq!(claims.username, "alice");
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let token = sign(&access_claims());
    verifier()
        .verify(Some(&format!("bearer {token}")))
        .await
        .unwrap();
    verifier()
        .verify(Some(&format!("BEARER  {token}")))
        .await
        .unwrap();
}

#[tokio::test]
async fn expiry_within_leeway_is_accepted() {
    let claims = set(access_claims(), "exp", json!(now() - 10));
    verifier()
        .verify(Some(&bearer(&sign(&claims))))
        .await
        .unwrap();
}

#[tokio::test]
async fn id_token_verifies_when_id_tokens_are_configured() {
    let claims = id_verifier()
        .verify(Some(&bearer(&sign(&id_claims()))))
        .await
        .unwrap();
    assert_eq!(claims.username, "alice");
    assert_eq!(claims.token_use, TokenUse::Id);
    // `aud` may be an array containing the client id.
    let multi = set(id_claims(), "aud", json!(["someone-else", AUD]));
    id_verifier()
        .verify(Some(&bearer(&sign(&multi))))
        .await
        .unwrap();
}

// ---- rejections: transport and shape -------------------------------------

#[tokio::test]
async fn rejects_missing_header() {
    let err = verifier().verify(None).await.unwrap_err();
    assert_eq!(err, AuthError::MissingHeader);
    assert_eq!(err.status(), 401);
    assert_eq!(err.www_authenticate(), "Bearer");
}

#[tokio::test]
async fn rejects_non_bearer_scheme() {
    let token = sign(&access_claims());
    for header in [
        "Basic dXNlcjpwYXNzd29yZA==".to_owned(),
        format!("Token {token}"),
        token.clone(),
        String::new(),
    ] {
        let err = verifier().verify(Some(&header)).await.unwrap_err();
        assert_eq!(err, AuthError::NotBearer, "header {header:?}");
    }
}

#[tokio::test]
async fn rejects_malformed_tokens() {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": fx().issuer.kid()});
    let payload = b64(&access_claims());
    let not_json = URL_SAFE_NO_PAD.encode(b"not json");
    let valid = sign(&access_claims());
    let cases = [
        "not-a-jwt".to_owned(),
        "a.b".to_owned(),
        format!("{valid}.extra.part"),
        format!("!!!.{payload}.sig"),
        format!("{not_json}.{payload}.sig"),
        format!("{}.{payload}.sig", b64(&json!(["RS256"]))),
        format!("{}.{payload}.sig", b64(&json!({"typ": "JWT"}))),
        // Correctly signed, but the payload is not a JSON object.
        signed_raw(&header, &URL_SAFE_NO_PAD.encode(b"not json")),
        signed_raw(&header, &b64(&json!(["a", "b"]))),
    ];
    for token in &cases {
        let err = reject(&verifier(), token).await;
        assert!(
            matches!(err, AuthError::MalformedToken(_)),
            "{token:?} gave {err:?}"
        );
    }
    let err = verifier().verify(Some("Bearer ")).await.unwrap_err();
    assert!(matches!(err, AuthError::MalformedToken(_)), "{err:?}");
}

// ---- rejections: algorithm and key ----------------------------------------

#[tokio::test]
async fn rejects_alg_none() {
    let payload = b64(&access_claims());
    for alg in ["none", "None", "NONE"] {
        let header = b64(&json!({"alg": alg, "typ": "JWT", "kid": fx().issuer.kid()}));
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            let err = reject(&verifier(), &token).await;
            if token.ends_with('.') {
                assert_eq!(err, AuthError::UnsupportedAlgorithm(alg.to_owned()));
            } else {
                assert!(matches!(err, AuthError::MalformedToken(_)), "{err:?}");
            }
        }
    }
}

#[tokio::test]
async fn rejects_hs256_even_keyed_with_the_public_key() {
    let fx = fx();
    // The classic confusion: HMAC keyed with the verifier's public key.
    let jwks = fx.issuer.jwks_json();
    let n = jwks["keys"][0]["n"].as_str().unwrap();
    for secret in [n.as_bytes(), b"secret".as_slice()] {
        let token = sign_with(
            &access_claims(),
            Algorithm::HS256,
            Some(fx.issuer.kid()),
            &EncodingKey::from_secret(secret),
        );
        let err = reject(&verifier(), &token).await;
        assert_eq!(err, AuthError::UnsupportedAlgorithm("HS256".to_owned()));
    }
}

#[tokio::test]
async fn rejects_other_rsa_algorithms_with_the_right_key() {
    let fx = fx();
    for (alg, name) in [(Algorithm::RS512, "RS512"), (Algorithm::PS256, "PS256")] {
        let token = sign_with(&access_claims(), alg, Some(fx.issuer.kid()), &fx.signing);
        let err = reject(&verifier(), &token).await;
        assert_eq!(err, AuthError::UnsupportedAlgorithm(name.to_owned()));
    }
}

#[tokio::test]
async fn rejects_missing_kid() {
    let token = sign_with(&access_claims(), Algorithm::RS256, None, &fx().signing);
    assert_eq!(reject(&verifier(), &token).await, AuthError::MissingKeyId);
}

#[tokio::test]
async fn rejects_unknown_kid() {
    let fx = fx();
    let token = sign_with(
        &access_claims(),
        Algorithm::RS256,
        Some(fx.other.kid()),
        &fx.other_signing,
    );
    let err = reject(&verifier(), &token).await;
    assert_eq!(err, AuthError::UnknownKey(fx.other.kid().to_owned()));
}

#[tokio::test]
async fn rejects_signature_by_another_key() {
    let fx = fx();
    // Right kid, wrong key.
    let token = sign_with(
        &access_claims(),
        Algorithm::RS256,
        Some(fx.issuer.kid()),
        &fx.other_signing,
    );
    assert_eq!(reject(&verifier(), &token).await, AuthError::BadSignature);
}

#[tokio::test]
async fn rejects_tampered_payload() {
    let fx = fx();
    let token = fx.issuer.mint("alice", Duration::from_secs(300));
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!(LocalIssuer::user_id("mallory"));
    claims["username"] = json!("mallory");
    let tampered = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
    let err = reject(&fx.issuer.verifier(), &tampered).await;
    assert_eq!(err, AuthError::BadSignature);

    // A signature lifted from another valid token does not fit either.
    let other = fx.issuer.mint("mallory", Duration::from_secs(300));
    let sig = other.rsplit('.').next().unwrap();
    let spliced = format!("{}.{}.{sig}", parts[0], parts[1]);
    assert_eq!(
        reject(&fx.issuer.verifier(), &spliced).await,
        AuthError::BadSignature
    );
}

// ---- rejections: claims ----------------------------------------------------

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

#[tokio::test]
async fn rejects_wrong_issuer() {
    let claims = set(access_claims(), "iss", json!("https://evil.example"));
    assert_eq!(
        reject(&verifier(), &sign(&claims)).await,
        AuthError::WrongIssuer {
            found: "https://evil.example".to_owned()
        }
    );
    let claims = unset(access_claims(), "iss");
    assert_eq!(
        reject(&verifier(), &sign(&claims)).await,
        AuthError::MissingClaim("iss")
    );
}

#[tokio::test]
async fn rejects_wrong_client_id() {
    let claims = set(access_claims(), "client_id", json!("other-client"));
    assert_eq!(
        reject(&verifier(), &sign(&claims)).await,
        AuthError::WrongAudience {
            found: Some("other-client".to_owned())
        }
    );
    // Access tokens must carry client_id: an `aud` alone does not do.
    let claims = set(unset(access_claims(), "client_id"), "aud", json!(AUD));
    assert_eq!(
        reject(&verifier(), &sign(&claims)).await,
        AuthError::WrongAudience { found: None }
    );
}

#[tokio::test]
async fn rejects_wrong_audience_of_id_token() {
    let claims = set(id_claims(), "aud", json!("other-client"));
    assert!(matches!(
        reject(&id_verifier(), &sign(&claims)).await,
        AuthError::WrongAudience { .. }
    ));
    // ID tokens must carry aud: a client_id alone does not do.
    let claims = set(unset(id_claims(), "aud"), "client_id", json!(AUD));
    assert_eq!(
        reject(&id_verifier(), &sign(&claims)).await,
        AuthError::WrongAudience { found: None }
    );
}

#[tokio::test]
async fn rejects_id_token_where_access_token_required() {
    let err = reject(&verifier(), &sign(&id_claims())).await;
    assert_eq!(
        err,
        AuthError::WrongTokenUse {
            expected: TokenUse::Access,
            found: Some("id".to_owned())
        }
    );
    assert_eq!(err.client_message(), "an access token is required");
    let claims = unset(access_claims(), "token_use");
    assert_eq!(
        reject(&verifier(), &sign(&claims)).await,
        AuthError::WrongTokenUse {
            expected: TokenUse::Access,
            found: None
        }
    );
}

#[tokio::test]
async fn rejects_access_token_where_id_token_required() {
    let err = reject(&id_verifier(), &sign(&access_claims())).await;
    assert_eq!(
        err,
        AuthError::WrongTokenUse {
            expected: TokenUse::Id,
            found: Some("access".to_owned())
        }
    );
}

#[tokio::test]
async fn rejects_missing_sub() {
    for claims in [
        unset(access_claims(), "sub"),
        set(access_claims(), "sub", json!("")),
        set(access_claims(), "sub", json!(42)),
    ] {
        assert_eq!(
            reject(&verifier(), &sign(&claims)).await,
            AuthError::MissingSubject
        );
    }
}

// ---- errors -----------------------------------------------------------------

#[test]
fn every_error_is_a_401_with_a_quote_free_message() {
    let errors = [
        AuthError::MissingHeader,
        AuthError::NotBearer,
        AuthError::MalformedToken("x"),
        AuthError::UnsupportedAlgorithm("HS256".into()),
        AuthError::MissingKeyId,
        AuthError::UnknownKey("k".into()),
        AuthError::KeysUnavailable("down".into()),
        AuthError::BadSignature,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::WrongIssuer { found: "i".into() },
        AuthError::WrongAudience { found: None },
        AuthError::WrongTokenUse {
            expected: TokenUse::Id,
            found: None,
        },
        AuthError::MissingSubject,
        AuthError::MissingClaim("exp"),
        AuthError::InvalidClaim("exp"),
        AuthError::KeyFile {
            path: "p".into(),
            message: "m".into(),
        },
        AuthError::InvalidSigningKey("k".into()),
    ];
    for err in errors {
        assert_eq!(err.status(), 401);
        assert!(!err.client_message().is_empty());
        assert!(!err.client_message().contains('"'), "{err:?}");
        assert!(!err.to_string().is_empty());
        assert!(err.www_authenticate().starts_with("Bearer"));
    }
}

// ---- key cache -------------------------------------------------------------

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

// ---- local issuer: key file and JWKS ----------------------------------------

#[cfg(unix)]
#[test]
fn key_file_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let path = fx().dir.join(LocalIssuer::KEY_FILE_NAME);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(fx().issuer.key_path(), Some(path.as_path()));
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 PEM");
    // No temp files are left behind.
    let names: Vec<_> = std::fs::read_dir(&fx().dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [LocalIssuer::KEY_FILE_NAME]);
}

#[tokio::test]
async fn key_file_is_reused_on_reload() {
    let fx = fx();
    let reloaded = LocalIssuer::load_or_create(&fx.dir, ISS, AUD).unwrap();
    assert_eq!(reloaded.kid(), fx.issuer.kid());
    assert_eq!(reloaded.jwks_json(), fx.issuer.jwks_json());
    // Tokens survive a restart.
    let token = fx.issuer.mint("alice", Duration::from_secs(60));
    reloaded
        .verifier()
        .verify(Some(&bearer(&token)))
        .await
        .unwrap();
}

#[cfg(unix)]
#[test]
fn loose_key_file_permissions_are_tightened() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LocalIssuer::KEY_FILE_NAME);
    std::fs::copy(fx().dir.join(LocalIssuer::KEY_FILE_NAME), &path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let issuer = LocalIssuer::load_or_create(dir.path(), ISS, AUD).unwrap();
    assert_eq!(issuer.kid(), fx().issuer.kid());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn corrupt_key_file_is_an_error_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LocalIssuer::KEY_FILE_NAME);
    std::fs::write(&path, "not a key").unwrap();
    let err = LocalIssuer::load_or_create(dir.path(), ISS, AUD).unwrap_err();
    assert!(matches!(err, AuthError::KeyFile { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a key");
}

#[test]
fn jwks_json_has_public_parts_only() {
    let fx = fx();
    let jwks = fx.issuer.jwks_json();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = keys[0].as_object().unwrap();
    let mut members: Vec<&str> = key.keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(members, ["alg", "e", "kid", "kty", "n", "use"]);
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        assert!(!key.contains_key(private));
    }
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kid"], fx.issuer.kid());
    assert_eq!(fx.issuer.kid().len(), 16);
    let n = URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap();
    assert_eq!(n.len(), 256, "2048-bit modulus");
    assert_eq!(key["e"], "AQAB");
    // Different keys, different kids; and the JWKS round-trips into a key set.
    assert_ne!(fx.other.kid(), fx.issuer.kid());
    assert!(
        Jwks::parse(&jwks.to_string())
            .unwrap()
            .contains(fx.issuer.kid())
    );
}

#[test]
fn local_auth_config_expects_access_tokens() {
    let config = fx().issuer.auth_config();
    assert_eq!(config.issuer, ISS);
    assert_eq!(config.audiences, [AUD]);
    assert_eq!(config.token_use, TokenUse::Access);
    assert_eq!(config.leeway_secs, AuthConfig::DEFAULT_LEEWAY_SECS);
}
