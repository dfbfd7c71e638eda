//! The HTTP layers around the endpoint: compressed requests and responses,
//! the health and JWKS routes, request ids.

use std::collections::HashSet;

use crate::encodings::*;
use crate::fixtures::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use core_sync::DocId;
use core_sync::sync::client::encode_request;
use core_sync::sync::protocol::SyncResponse;
use serde_json::Value;

#[tokio::test]
async fn compressed_requests_are_read_and_responses_compressed_on_request() {
    let srv = Server::new().await;
    let alice = user("alice");
    let auth = bearer(&alice.token);

    // zstd, as the client engine sends it.
    let zid = DocId::random();
    let mut zdoc = new_doc("Zstd", 2);
    let body = encode_request(&request(0, vec![push(&zid, zdoc.changes_since(&[]))])).unwrap();
    let resp = srv
        .post(
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("content-encoding", "zstd"),
            ],
            body,
        )
        .await;
    assert_eq!(resp.ok().pushed, vec![accepted(&zid, &mut zdoc)]);

    // gzip.
    let gid = DocId::random();
    let mut gdoc = new_doc("Gzip", 1);
    let body = gzip(
        &json_body(&request(1, vec![push(&gid, gdoc.changes_since(&[]))])),
        0,
    );
    let resp = srv
        .post(
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            body,
        )
        .await;
    assert_eq!(resp.ok().pushed, vec![accepted(&gid, &mut gdoc)]);
    assert_eq!(srv.stored(&alice).await.user_head, 2);

    // A body that does not decompress: 400, nothing stored.
    let xid = DocId::random();
    let mut broken = encode_request(&request(
        0,
        vec![push(&xid, new_doc("X", 1).changes_since(&[]))],
    ))
    .unwrap();
    let end = broken.len();
    broken.truncate(end - 8);
    broken.extend(noise(8, 5));
    let resp = srv
        .post(
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("content-encoding", "zstd"),
            ],
            broken,
        )
        .await;
    resp.error(StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(srv.head(&alice, &xid).await, None);
    assert_eq!(srv.stored(&alice).await.user_head, 2);

    // Responses: identity unless asked, then zstd or gzip, same JSON.
    let pull = json_body(&request(0, vec![]));
    let plain = srv.post_json(&alice.token, pull.clone()).await;
    assert_eq!(plain.header("content-encoding"), None);
    let expected = plain.ok();
    assert_eq!(expected.docs.len(), 2);
    for encoding in ["zstd", "gzip"] {
        let resp = srv
            .post(
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                    ("accept-encoding", encoding),
                ],
                pull.clone(),
            )
            .await;
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.header("content-encoding"), Some(encoding));
        assert!(resp.body.len() < plain.body.len(), "{encoding} compresses");
        let decoded = decompress(encoding, resp.body).await;
        assert_eq!(decoded, plain.body, "{encoding}");
        let parsed: SyncResponse = serde_json::from_slice(&decoded).unwrap();
        assert_eq!(parsed, expected);
    }
}

#[tokio::test]
async fn health_jwks_and_request_ids() {
    let srv = Server::new().await;
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();

    let health = srv.send(get("/healthz")).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.text(), "ok");

    let jwks = srv.send(get("/.well-known/jwks.json")).await;
    assert_eq!(jwks.status, StatusCode::OK);
    let value: Value = serde_json::from_slice(&jwks.body).unwrap();
    let keys_json = value["keys"].as_array().expect("a keys array");
    assert_eq!(keys_json.len(), 1);
    let key = keys_json[0].as_object().unwrap();
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["kid"], keys().issuer.kid());
    assert_eq!(key["alg"], "RS256");
    assert!(key.contains_key("n") && key.contains_key("e"));
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        assert!(!key.contains_key(private), "{private} in the JWKS");
    }
    assert_eq!(value, keys().issuer.jwks_json());

    let alice = user("alice");
    let ok = srv
        .post_json(&alice.token, json_body(&request(0, vec![])))
        .await;
    let refused = srv
        .post(&[("content-type", "application/json")], "{}")
        .await;
    let not_found = srv.send(get("/nope")).await;
    assert_eq!(not_found.status, StatusCode::NOT_FOUND);
    let mut seen = HashSet::new();
    for resp in [&health, &jwks, &ok, &refused, &not_found] {
        let id = resp.header("x-request-id").expect("x-request-id");
        assert!(!id.is_empty());
        assert!(seen.insert(id.to_owned()), "request ids are unique");
    }
    // A caller's own request id is kept.
    let req = Request::get("/healthz")
        .header("x-request-id", "trace-me-123")
        .body(Body::empty())
        .unwrap();
    let resp = srv.send(req).await;
    assert_eq!(resp.header("x-request-id"), Some("trace-me-123"));
}
