//! Who may sync: requests without a valid token are refused and store
//! nothing, and one user can neither write nor read another's documents.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::fixtures::*;
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cloud_lambda::auth::{AuthError, LocalIssuer};
use core_sync::DocId;
use core_sync::model::NewMessage;
use core_sync::sync::protocol::{PushStatus, SyncRequest, SyncResponse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// Claims as the local issuer writes them, for hand-made tokens.
fn claims(sub: &str, exp: u64) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({
        "sub": sub,
        "username": "alice",
        "iss": ISS,
        "client_id": AUD,
        "token_use": "access",
        "auth_time": now.min(exp),
        "iat": now.min(exp),
        "exp": exp,
    })
}

fn sign(claims: &Value, alg: Algorithm, key: &EncodingKey) -> String {
    sign_as(claims, alg, keys().issuer.kid(), key)
}

fn sign_as(claims: &Value, alg: Algorithm, kid: &str, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused_and_store_nothing() {
    let srv = Server::new().await;
    let alice = user("alice");
    let bob = user("bob");
    let keys = keys();
    let rsa = EncodingKey::from_rsa_pem(keys.pem.as_bytes()).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();

    let other_issuer = LocalIssuer::from_pkcs8_pem(&keys.pem, "someone-else", AUD).unwrap();
    let other_client = LocalIssuer::from_pkcs8_pem(&keys.pem, ISS, "another-client").unwrap();
    let flip_payload_char = {
        let mut parts: Vec<String> = alice.token.split('.').map(str::to_owned).collect();
        let mid = parts[1].len() / 2;
        let c = parts[1].as_bytes()[mid];
        let swapped = if c == b'A' { "B" } else { "A" };
        parts[1].replace_range(mid..=mid, swapped);
        parts.join(".")
    };
    let payload_now_bob = {
        let parts: Vec<&str> = alice.token.split('.').collect();
        let mut payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        payload["sub"] = json!(bob.sub);
        let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    let alg_none = {
        let header = json!({"alg": "none", "typ": "JWT", "kid": keys.issuer.kid()});
        let payload = claims(&alice.sub, now + 600);
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        )
    };
    let expired = sign(&claims(&alice.sub, now - 3600), Algorithm::RS256, &rsa);
    // HS256 keyed with public material: the classic algorithm confusion.
    let hs256 = sign(
        &claims(&alice.sub, now + 600),
        Algorithm::HS256,
        &EncodingKey::from_secret(keys.issuer.jwks_json().to_string().as_bytes()),
    );
    // Another key pair (small, so quick to generate: it only has to sign).
    let foreign = {
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        let key = rsa::RsaPrivateKey::new(&mut rand08::rngs::OsRng, 1024).unwrap();
        EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes())
    };
    let valid_claims = claims(&alice.sub, now + 600);
    let foreign_key_our_kid = sign(&valid_claims, Algorithm::RS256, &foreign);
    let unknown_kid = sign_as(&valid_claims, Algorithm::RS256, "no-such-key", &rsa);
    let malformed = AuthError::MalformedToken("").client_message();
    let bad_signature = AuthError::BadSignature.client_message();

    // (case, Authorization header, acceptable client messages)
    let cases: Vec<(&str, Option<String>, Vec<&str>)> = vec![
        (
            "no header",
            None,
            vec![AuthError::MissingHeader.client_message()],
        ),
        (
            "Basic scheme",
            Some(format!("Basic {}", STANDARD.encode("alice:secret"))),
            vec![AuthError::NotBearer.client_message()],
        ),
        (
            "bare token",
            Some(alice.token.clone()),
            vec![AuthError::NotBearer.client_message()],
        ),
        ("empty bearer", Some("Bearer ".into()), vec![malformed]),
        ("garbage", Some(bearer("not-a-jwt")), vec![malformed]),
        (
            "garbage parts",
            Some(bearer("aGVsbG8.d29ybGQ.eA")),
            vec![malformed],
        ),
        (
            "expired",
            Some(bearer(&expired)),
            vec![AuthError::Expired.client_message()],
        ),
        (
            "another issuer, same key",
            Some(bearer(
                &other_issuer.mint("alice", Duration::from_secs(600)),
            )),
            vec![
                AuthError::WrongIssuer {
                    found: String::new(),
                }
                .client_message(),
            ],
        ),
        (
            "another client id",
            Some(bearer(
                &other_client.mint("alice", Duration::from_secs(600)),
            )),
            vec![AuthError::WrongAudience { found: None }.client_message()],
        ),
        (
            "signed by another key",
            Some(bearer(&foreign_key_our_kid)),
            vec![bad_signature],
        ),
        (
            "unknown key id",
            Some(bearer(&unknown_kid)),
            vec![AuthError::MissingKeyId.client_message()],
        ),
        (
            "payload char flipped",
            Some(bearer(&flip_payload_char)),
            vec![bad_signature, malformed],
        ),
        (
            "payload re-encoded as bob",
            Some(bearer(&payload_now_bob)),
            vec![bad_signature],
        ),
        (
            "HS256",
            Some(bearer(&hs256)),
            vec![AuthError::UnsupportedAlgorithm(String::new()).client_message()],
        ),
        (
            "alg none",
            Some(bearer(&alg_none)),
            vec![AuthError::UnsupportedAlgorithm(String::new()).client_message()],
        ),
    ];
    let id = DocId::random();
    let body = json_body(&request(
        0,
        vec![push(&id, new_doc("Mine", 1).changes_since(&[]))],
    ));
    for (what, auth, messages) in cases {
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(auth.as_deref().map(|a| ("authorization", a)));
        let resp = srv.post(&headers, body.clone()).await;
        let msg = resp.error(StatusCode::UNAUTHORIZED, "unauthorized");
        assert!(messages.contains(&msg.as_str()), "{what}: {msg:?}");
        let challenge = resp.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{what}: {challenge:?}");
        if let Some(token) = auth.as_deref().and_then(|a| a.split_whitespace().nth(1)) {
            assert!(!resp.text().contains(token), "{what}: the token is echoed");
        }
        for user in [&alice, &bob] {
            assert_eq!(srv.stored(user).await, Stored::NOTHING, "{what}");
            assert_eq!(srv.head(user, &id).await, None, "{what}");
        }
    }
    // Just as the local issuer makes them: accepted.
    let resp = srv.post_json(&alice.token, body).await;
    assert_eq!(resp.ok().pushed[0].status, PushStatus::Accepted);
}

#[tokio::test]
async fn another_users_document_can_be_neither_written_nor_read() {
    let srv = Server::new().await;
    let alice = user("alice");
    let bob = user("bob");
    let d = DocId::random();
    let mut doc = new_doc("Alice's secret", 2);
    let history = doc.changes_since(&[]);
    srv.sync(&alice.token, &request(0, vec![push(&d, history.clone())]))
        .await;
    let alice_head = srv.head(&alice, &d).await.expect("alice's document");
    let alice_stored = srv.stored(&alice).await;

    // Bob pushes changes for D (all of them, as if copied): 404.
    let mut forged = doc.fork();
    forged
        .append_message(NewMessage::user("bob was here"), 9_000)
        .unwrap();
    for changes in [history.clone(), forged.changes_since(&[])] {
        let resp = srv
            .post_json(&bob.token, json_body(&request(0, vec![push(&d, changes)])))
            .await;
        let msg = resp.error(StatusCode::NOT_FOUND, "not_found");
        assert_eq!(msg, format!("no document {d}"));
        assert!(!resp.text().contains(&alice.sub));
    }
    // A change whose parents bob "lacks" reveals no heads either.
    let tip = doc.heads();
    doc.append_message(NewMessage::user("later"), 5_000)
        .unwrap();
    let resp = srv
        .sync(
            &bob.token,
            &request(0, vec![push(&d, doc.changes_since(&tip))]),
        )
        .await;
    assert_eq!(resp.pushed[0].status, PushStatus::MissingDeps);
    assert!(resp.pushed[0].server_heads.is_empty());

    assert_eq!(srv.head(&alice, &d).await, Some(alice_head));
    assert_eq!(srv.stored(&alice).await, alice_stored);
    assert_eq!(srv.head(&bob, &d).await, None);
    assert_eq!(srv.stored(&bob).await, Stored::NOTHING);

    // Bob's pulls, from the start and with a resync of D: nothing of D.
    let pull = srv
        .post_json(
            &bob.token,
            json_body(&SyncRequest {
                feed_cursor: 0,
                push: vec![],
                resync: vec![d.clone()],
                wait_ms: 0,
                epoch: 0,
            }),
        )
        .await;
    let text = pull.text();
    let answer = pull.ok();
    assert_eq!(
        answer,
        SyncResponse {
            feed_cursor: 0,
            docs: vec![],
            pushed: vec![],
            more: false,
            epoch: answer.epoch,
            start_over: false,
            purged: vec![],
        }
    );
    assert!(!text.contains(d.as_str()), "{text}");
    let mut bob_device = Device::new(&bob);
    let resp = bob_device.sync(&srv, vec![d.clone()]).await;
    assert!(resp.docs.is_empty());
    assert!(bob_device.docs.is_empty());

    // Bob's own documents work as usual and never mix with alice's.
    let own = DocId::random();
    let resp = srv
        .sync(
            &bob.token,
            &request(0, vec![push(&own, new_doc("Bob's", 1).changes_since(&[]))]),
        )
        .await;
    assert_eq!(resp.pushed[0].status, PushStatus::Accepted);
    assert!(resp.docs.is_empty(), "a push is not echoed back: {resp:?}");
    let other_device = srv.sync(&bob.token, &request(0, vec![])).await;
    assert_eq!(other_device.docs.len(), 1);
    assert_eq!(other_device.docs[0].doc_id, own);
    assert_eq!(srv.stored(&alice).await, alice_stored);
}
