//! Refusals of a correctly signed token by its claims: the issuer, the
//! audience (`client_id` for access tokens, `aud` for ID tokens), the token
//! use, and the subject.

use cloud_lambda::auth::{AuthError, TokenUse};
use serde_json::json;

use crate::fixtures::{
    AUD, access_claims, id_claims, id_verifier, reject, set, sign, unset, verifier,
};

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
