//! Bearer token verification (`Verifier`): Cognito-shaped access and ID
//! tokens verify; the header, the token's shape, its algorithm, its key id
//! and its signature are each refused with their own `AuthError`; and every
//! error is a 401 whose texts never quote the token.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloud_lambda::auth::{AuthError, LocalIssuer, TokenUse};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use crate::fixtures::{
    AUD, access_claims, bearer, fx, id_claims, id_verifier, reject, set, sign, sign_with, verifier,
};

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

// ---- acceptance --------------------------------------------------------

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
