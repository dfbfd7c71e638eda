//! Request bodies that are refused: malformed JSON, wrong content types,
//! and bodies over the limit, compressed or not, never inflated whole.

use crate::encodings::*;
use crate::fixtures::*;
use axum::http::StatusCode;
use core_sync::DocId;
use core_sync::sync::protocol::{MAX_REQUEST_BYTES, PushStatus};
use serde_json::{Value, json};

#[tokio::test]
async fn malformed_json_and_wrong_content_types_are_refused() {
    let srv = Server::new().await;
    let alice = user("alice");
    let id = DocId::random();
    let valid = serde_json::to_value(request(
        0,
        vec![push(&id, new_doc("Valid", 1).changes_since(&[]))],
    ))
    .unwrap();
    let text = valid.to_string();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = valid.clone();
        f(&mut v);
        v.to_string()
    };

    // (case, body, a word the message must contain)
    let cases: Vec<(&str, String, &str)> = vec![
        ("truncated JSON", text[..text.len() / 2].to_owned(), "EOF"),
        ("not JSON", "feedCursor=0".into(), "expected"),
        ("empty body", String::new(), "EOF"),
        ("an array", "[]".into(), "struct SyncRequest"),
        (
            "feedCursor as a string",
            edit(&|v| v["feedCursor"] = json!("0")),
            "invalid type",
        ),
        (
            "negative feedCursor",
            edit(&|v| v["feedCursor"] = json!(-1)),
            "invalid value",
        ),
        (
            "feedCursor missing",
            edit(&|v| {
                v.as_object_mut().unwrap().remove("feedCursor");
            }),
            "feedCursor",
        ),
        (
            "changes not base64",
            edit(&|v| v["push"][0]["changes"] = json!("***not base64***")),
            "base64",
        ),
        (
            "changes a number",
            edit(&|v| v["push"][0]["changes"] = json!(42)),
            "invalid type",
        ),
        (
            "push not a list",
            edit(&|v| v["push"] = v["push"][0].clone()),
            "invalid type",
        ),
        (
            "unknown field",
            edit(&|v| v["surprise"] = json!(true)),
            "surprise",
        ),
        (
            "unknown push field",
            edit(&|v| v["push"][0]["owner"] = json!("bob")),
            "owner",
        ),
        (
            "doc id with a path",
            edit(&|v| v["push"][0]["docId"] = json!("../../etc/passwd")),
            "invalid id",
        ),
        (
            "doc id in upper case",
            edit(&|v| v["push"][0]["docId"] = json!(id.as_str().to_uppercase())),
            "invalid id",
        ),
        (
            "doc id too short",
            edit(&|v| v["push"][0]["docId"] = json!("abc123")),
            "invalid id",
        ),
        (
            "resync id invalid",
            edit(&|v| v["resync"] = json!(["x"])),
            "invalid id",
        ),
    ];
    for (what, body, word) in cases {
        let resp = srv.post_json(&alice.token, body).await;
        let msg = resp.error(StatusCode::BAD_REQUEST, "bad_request");
        assert!(msg.starts_with("malformed sync request"), "{what}: {msg}");
        assert!(msg.contains(word), "{what}: {msg}");
        assert_eq!(srv.stored(&alice).await, Stored::NOTHING, "{what}");
    }

    let auth = bearer(&alice.token);
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend(content_type.map(|ct| ("content-type", ct)));
        let resp = srv.post(&headers, text.clone()).await;
        let msg = resp.error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
        assert!(msg.contains("application/json"), "{content_type:?}: {msg}");
        assert_eq!(
            srv.stored(&alice).await,
            Stored::NOTHING,
            "{content_type:?}"
        );
    }

    // Media type parameters and case are fine.
    let resp = srv
        .post(
            &[
                ("authorization", &auth),
                ("content-type", "Application/JSON; charset=utf-8"),
            ],
            text,
        )
        .await;
    assert_eq!(resp.ok().pushed[0].status, PushStatus::Accepted);
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_even_compressed_and_never_inflated_whole() {
    let srv = Server::new().await;
    let alice = user("alice");
    let id = DocId::random();
    let json = json_body(&request(
        0,
        vec![push(&id, new_doc("Big", 1).changes_since(&[]))],
    ));
    // Whitespace padding keeps a body valid JSON whatever its size.
    let pad_to = |total: usize| total - json.len();
    let auth = bearer(&alice.token);
    let headers = |encoding: Option<&'static str>| {
        let mut h = vec![
            ("authorization", auth.clone()),
            ("content-type", "application/json".to_owned()),
        ];
        h.extend(encoding.map(|e| ("content-encoding", e.to_owned())));
        h
    };
    let send = |encoding: Option<&'static str>, body: Vec<u8>| {
        let h = headers(encoding);
        let srv = &srv;
        async move {
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            srv.post(&h, body).await
        }
    };
    let too_large = |resp: Resp, what: &str| {
        let msg = resp.error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
        assert!(
            msg.contains(&MAX_REQUEST_BYTES.to_string()),
            "{what}: {msg}"
        );
    };
    let over = MAX_REQUEST_BYTES + 1;
    let mut plain = json.clone();
    plain.resize(over, b' ');

    too_large(send(None, plain).await, "plain");
    too_large(
        send(
            Some("zstd"),
            zstd_frame(&[Seg::Raw(&json), Seg::Spaces(pad_to(over))]),
        )
        .await,
        "zstd",
    );
    too_large(send(Some("gzip"), gzip(&json, pad_to(over))).await, "gzip");
    // A gigabyte in 32 KiB.
    let bomb = zstd_frame(&[Seg::Raw(&json), Seg::Spaces(1 << 30)]);
    assert!(bomb.len() < 40 * 1024);
    too_large(send(Some("zstd"), bomb).await, "zstd bomb");
    // Past the limit the body turns corrupt: refusing it as too large (not
    // as undecodable) shows decompression stopped at the limit.
    let bomb = zstd_frame(&[
        Seg::Raw(&json),
        Seg::Spaces(pad_to(MAX_REQUEST_BYTES + (1 << 20))),
        Seg::Corrupt,
        Seg::Spaces(1 << 30),
    ]);
    too_large(
        send(Some("zstd"), bomb).await,
        "zstd bomb, corrupt past the limit",
    );
    assert_eq!(srv.stored(&alice).await, Stored::NOTHING);
    assert_eq!(srv.head(&alice, &id).await, None);

    // ...and that corruption is seen when it comes before the limit.
    let early = zstd_frame(&[Seg::Raw(&json), Seg::Spaces(1 << 20), Seg::Corrupt]);
    let resp = send(Some("zstd"), early).await;
    resp.error(StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(srv.stored(&alice).await, Stored::NOTHING);

    // Exactly at the limit (after decompression) is accepted, in every form.
    let mut plain = json.clone();
    plain.resize(MAX_REQUEST_BYTES, b' ');
    let exact = [
        ("plain", None, plain),
        (
            "zstd",
            Some("zstd"),
            zstd_frame(&[Seg::Raw(&json), Seg::Spaces(pad_to(MAX_REQUEST_BYTES))]),
        ),
        ("gzip", Some("gzip"), gzip(&json, pad_to(MAX_REQUEST_BYTES))),
    ];
    for (what, encoding, body) in exact {
        let resp = send(encoding, body).await;
        assert_eq!(resp.status, StatusCode::OK, "{what}: {}", resp.text());
        assert_eq!(resp.ok().pushed[0].status, PushStatus::Accepted, "{what}");
    }
    assert_eq!(srv.stored(&alice).await.user_head, 1);
}
