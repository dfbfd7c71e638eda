//! Cognito access tokens through the whole Router: a fake user pool
//! (`atelier_fixtures::fakes::cognito`) signs users in with
//! `USER_PASSWORD_AUTH` and serves its JWKS over HTTP; the server verifies
//! with [`CognitoSettings::verifier`] (issuer and JWKS URL apart, the keys
//! fetched, cached and refetched on an unknown `kid`).
//!
//! Every refused token is a 401 and leaves the store untouched (checked
//! through `DocStore`), while the same push with a good token is stored.

use std::time::Duration;

use atelier_fixtures::fakes::cognito::{self, AppClient, CognitoConfig, PoolUser, RunningCognito};
use atelier_fixtures::fakes::oauth::FakeUser;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloud_lambda::app::{AppState, router};
use cloud_lambda::auth::CognitoSettings;
use core_sync::sync::protocol::{Bytes, DocPush, SYNC_PATH, SyncRequest, SyncResponse};
use core_sync::{AssetDoc, DocId};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const OTHER_CLIENT: &str = "some-other-app-client";

struct Pool {
    cognito: RunningCognito,
    state: AppState,
    _dir: tempfile::TempDir,
}

async fn pool(min_refetch_interval: Duration) -> Pool {
    let cognito = cognito::spawn(CognitoConfig {
        clients: vec![
            AppClient {
                client_id: cognito::DEFAULT_CLIENT_ID.into(),
                password_auth: true,
            },
            AppClient {
                client_id: OTHER_CLIENT.into(),
                password_auth: true,
            },
        ],
        users: vec![PoolUser {
            user: FakeUser::default(),
            password: cognito::DEFAULT_PASSWORD.into(),
            confirmed: true,
        }],
        ..CognitoConfig::default()
    })
    .await
    .unwrap();
    let settings = CognitoSettings {
        issuer: cognito.issuer(),
        jwks_url: Some(cognito.jwks_url()),
        client_ids: vec![cognito::DEFAULT_CLIENT_ID.into(), "atelier-desktop".into()],
        min_refetch_interval,
    };
    let dir = tempfile::tempdir().unwrap();
    let state = AppState::embedded(dir.path(), settings.verifier().unwrap(), None)
        .await
        .unwrap();
    Pool {
        cognito,
        state,
        _dir: dir,
    }
}

/// `InitiateAuth` with `USER_PASSWORD_AUTH` on the fake's wire: the
/// `AuthenticationResult`.
async fn sign_in(pool: &Pool, client_id: &str) -> Value {
    let resp = reqwest::Client::new()
        .post(pool.cognito.endpoint())
        .header(
            "x-amz-target",
            "AWSCognitoIdentityProviderService.InitiateAuth",
        )
        .header(header::CONTENT_TYPE, cognito::CONTENT_TYPE)
        .body(
            json!({
                "AuthFlow": "USER_PASSWORD_AUTH",
                "ClientId": client_id,
                "AuthParameters": {"USERNAME": "alice", "PASSWORD": cognito::DEFAULT_PASSWORD},
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    body["AuthenticationResult"].clone()
}

async fn access_token(pool: &Pool) -> String {
    sign_in(pool, cognito::DEFAULT_CLIENT_ID).await["AccessToken"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A push of one new document with `token`: the status, the
/// `WWW-Authenticate` header, and the document pushed.
async fn push(pool: &Pool, token: &str) -> (StatusCode, Option<String>, DocId) {
    let doc_id = DocId::random();
    let mut doc = AssetDoc::create("Pushed with a token", 1_000);
    let req = SyncRequest {
        push: vec![DocPush {
            doc_id: doc_id.clone(),
            changes: Bytes(doc.changes_since(&[])),
        }],
        ..SyncRequest::default()
    };
    let resp = router(pool.state.clone())
        .oneshot(
            Request::post(SYNC_PATH)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&req).unwrap()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let www = resp
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    if status == StatusCode::OK {
        let r: SyncResponse = serde_json::from_slice(&body).unwrap();
        assert_eq!(r.pushed.len(), 1);
    }
    (status, www, doc_id)
}

/// What the server holds for the fake user.
async fn stored(pool: &Pool, doc: &DocId) -> (usize, bool) {
    let sub = FakeUser::default().sub;
    let feed = pool.state.store.feed_since(&sub, 0, 100).await.unwrap();
    let head = pool.state.store.head(&sub, doc).await.unwrap();
    (feed.len(), head.is_some())
}

/// A token's payload with `edit` applied, the signature kept.
fn tampered(token: &str, edit: impl Fn(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    edit(&mut claims);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

#[tokio::test]
async fn refused_tokens_are_401_and_store_nothing_while_a_good_one_stores() {
    let p = pool(Duration::from_secs(3600)).await;
    let good = access_token(&p).await;
    let result = sign_in(&p, cognito::DEFAULT_CLIENT_ID).await;
    let id_token = result["IdToken"].as_str().unwrap().to_owned();
    let other_client = sign_in(&p, OTHER_CLIENT).await["AccessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = FakeUser::default();
    let mut other_pool = p.cognito.access_claims(cognito::DEFAULT_CLIENT_ID, &user);
    other_pool["iss"] = json!("https://cognito-idp.eu-central-1.amazonaws.com/eu-central-1_Other");
    let mut expired = p.cognito.access_claims(cognito::DEFAULT_CLIENT_ID, &user);
    expired["iat"] = json!(expired["iat"].as_i64().unwrap() - 7200);
    expired["exp"] = json!(expired["iat"].as_i64().unwrap() + 3600);
    let unknown_kid = p
        .cognito
        .forge(&p.cognito.access_claims(cognito::DEFAULT_CLIENT_ID, &user))
        .await
        .unwrap();

    let cases: Vec<(&str, String)> = vec![
        ("another pool's issuer", p.cognito.sign(&other_pool)),
        ("another app client", other_client),
        ("an ID token", id_token),
        ("expired", p.cognito.sign(&expired)),
        (
            "tampered (other sub)",
            tampered(&good, |c| c["sub"] = json!("mallory")),
        ),
        (
            "tampered (exp)",
            tampered(&good, |c| c["exp"] = json!(9_999_999_999u64)),
        ),
        ("signed by an unknown key", unknown_kid),
        ("not a JWT", "abc.def".into()),
    ];
    for (what, token) in &cases {
        let (status, www, doc) = push(&p, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert!(
            www.as_deref().is_some_and(|w| w.contains("invalid_token")),
            "{what}: {www:?}"
        );
        assert_eq!(stored(&p, &doc).await, (0, false), "{what}: nothing stored");
    }

    let (status, _, doc) = push(&p, &good).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        stored(&p, &doc).await,
        (1, true),
        "the good token's push is stored"
    );
    // Fetched once to fill the cache; the unknown kid came within the
    // refetch interval (an hour), so it was refused without a fetch.
    assert_eq!(p.cognito.counts().jwks_fetches, 1);
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_on_its_first_token() {
    let p = pool(Duration::ZERO).await;
    let before = access_token(&p).await;
    assert_eq!(push(&p, &before).await.0, StatusCode::OK);
    assert_eq!(p.cognito.counts().jwks_fetches, 1);

    let old_kid = p.cognito.current_kid();
    let new_kid = p.cognito.rotate_key().await.unwrap();
    assert_ne!(old_kid, new_kid);
    let after = access_token(&p).await;
    let (status, _, doc) = push(&p, &after).await;
    assert_eq!(status, StatusCode::OK, "signed by the new key");
    assert!(stored(&p, &doc).await.1);
    assert_eq!(
        p.cognito.counts().jwks_fetches,
        2,
        "one refetch for the new kid"
    );
    // The old key is still published, so earlier tokens go on working.
    assert_eq!(push(&p, &before).await.0, StatusCode::OK);

    // Retired: a fetch forgets it, and its tokens (not yet remembered as
    // accepted under the new key set) are refused.
    p.cognito.retire_old_keys();
    let forged = p
        .cognito
        .forge(
            &p.cognito
                .access_claims(cognito::DEFAULT_CLIENT_ID, &FakeUser::default()),
        )
        .await
        .unwrap();
    assert_eq!(push(&p, &forged).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(p.cognito.counts().jwks_fetches, 3);
    let (status, _, doc) = push(&p, &before).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the retired key's token");
    assert!(!stored(&p, &doc).await.1);
}

#[tokio::test]
async fn forged_kids_cost_at_most_one_fetch_per_interval() {
    let p = pool(Duration::from_secs(3600)).await;
    let good = access_token(&p).await;
    assert_eq!(push(&p, &good).await.0, StatusCode::OK);
    for _ in 0..5 {
        let forged = p
            .cognito
            .forge(
                &p.cognito
                    .access_claims(cognito::DEFAULT_CLIENT_ID, &FakeUser::default()),
            )
            .await
            .unwrap();
        assert_eq!(push(&p, &forged).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        p.cognito.counts().jwks_fetches,
        1,
        "no fetch for any forged kid"
    );
    // A rotation inside the interval waits for it: refused, not fetched.
    p.cognito.rotate_key().await.unwrap();
    let rotated = access_token(&p).await;
    assert_eq!(push(&p, &rotated).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(p.cognito.counts().jwks_fetches, 1);
}

#[tokio::test]
async fn an_unreachable_jwks_is_a_401_saying_the_keys_are_unavailable() {
    let p = pool(Duration::ZERO).await;
    let settings = CognitoSettings {
        issuer: p.cognito.issuer(),
        jwks_url: Some(format!(
            "{}/eu-central-1_Nope/.well-known/jwks.json",
            p.cognito.endpoint()
        )),
        client_ids: vec![cognito::DEFAULT_CLIENT_ID.into()],
        min_refetch_interval: Duration::ZERO,
    };
    let verifier = settings.verifier().unwrap();
    let token = access_token(&p).await;
    let err = verifier.verify_token(&token).await.unwrap_err();
    assert!(
        matches!(err, cloud_lambda::auth::AuthError::KeysUnavailable(_)),
        "{err}"
    );
    assert_eq!(err.status(), 401);
}
