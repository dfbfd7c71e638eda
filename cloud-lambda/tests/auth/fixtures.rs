//! Set-up shared by the auth tests: the binary's two RSA keys (generated
//! once), Cognito-shaped access and ID token claims, signing, verifiers
//! for each token use, and `reject`, which also checks that a refusal never
//! quotes the token.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use cloud_lambda::auth::{AuthConfig, AuthError, LocalIssuer, StaticKeys, TokenUse, Verifier};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
use serde_json::{Value, json};

pub(crate) const ISS: &str = "https://cognito-idp.eu-central-1.amazonaws.com/eu-central-1_TEST";
pub(crate) const AUD: &str = "test-app-client";

pub(crate) struct Fixture {
    _dir: tempfile::TempDir,
    pub(crate) dir: PathBuf,
    pub(crate) issuer: LocalIssuer,
    /// The issuer's private key, read back from its key file.
    pub(crate) signing: EncodingKey,
    /// An unrelated key pair.
    pub(crate) other: LocalIssuer,
    pub(crate) other_signing: EncodingKey,
}

pub(crate) fn fx() -> &'static Fixture {
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

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A valid Cognito-shaped access token's claims.
pub(crate) fn access_claims() -> Value {
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
pub(crate) fn id_claims() -> Value {
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

pub(crate) fn set(mut claims: Value, key: &str, value: Value) -> Value {
    claims
        .as_object_mut()
        .unwrap()
        .insert(key.to_owned(), value);
    claims
}

pub(crate) fn unset(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

pub(crate) fn sign_with(
    claims: &Value,
    alg: Algorithm,
    kid: Option<&str>,
    key: &EncodingKey,
) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// Signed by the issuer's key, with its kid.
pub(crate) fn sign(claims: &Value) -> String {
    let fx = fx();
    sign_with(claims, Algorithm::RS256, Some(fx.issuer.kid()), &fx.signing)
}

pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub(crate) fn verifier() -> Verifier {
    Verifier::with_source(
        AuthConfig::access(ISS, AUD),
        StaticKeys::new(fx().issuer.jwks()),
    )
}

pub(crate) fn id_verifier() -> Verifier {
    let config = AuthConfig {
        token_use: TokenUse::Id,
        ..AuthConfig::access(ISS, AUD)
    };
    Verifier::with_source(config, StaticKeys::new(fx().issuer.jwks()))
}

/// Verifies `token` as a bearer credential, expecting a rejection; checks
/// that neither the log text nor the client text leaks the token.
pub(crate) async fn reject(verifier: &Verifier, token: &str) -> AuthError {
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
