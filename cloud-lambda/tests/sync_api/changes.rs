//! Pushed changes that are refused before anything is stored: corrupt,
//! truncated and garbage changes, and requests that would cost more to
//! apply than they weigh.

use crate::fixtures::*;
use axum::http::StatusCode;
use core_sync::DocId;
use core_sync::sync::bounds::MAX_REQUEST_DOCS;
use core_sync::sync::protocol::{DocPush, PushStatus, SyncRequest};

#[tokio::test]
async fn corrupt_truncated_and_garbage_changes_are_refused_before_anything_is_stored() {
    let srv = Server::new().await;
    let alice = user("alice");
    let good_id = DocId::random();
    let good = new_doc("Fine", 1).changes_since(&[]);
    let bad_id = DocId::random();
    let bytes = new_doc("Broken", 2).changes_since(&[]);

    let flipped = |at: usize| {
        let mut b = bytes.clone();
        b[at] ^= 0x55;
        b
    };
    let mut magic_then_noise = vec![0x85, 0x6F, 0x4A, 0x83];
    magic_then_noise.extend(noise(64, 7));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("checksum byte flipped", flipped(5)),
        ("first change's body flipped", flipped(12)),
        ("middle byte flipped", flipped(bytes.len() / 2)),
        ("last change's body flipped", flipped(bytes.len() - 3)),
        (
            "truncated by a few bytes",
            bytes[..bytes.len() - 5].to_vec(),
        ),
        ("truncated to half", bytes[..bytes.len() / 2].to_vec()),
        ("random garbage", noise(512, 42)),
        ("magic then garbage", magic_then_noise),
        (
            "valid changes then garbage",
            [bytes.clone(), noise(40, 3)].concat(),
        ),
    ];
    for (what, changes) in cases {
        // The good push comes first: validation covers the whole request
        // before anything is written.
        let req = request(
            0,
            vec![push(&good_id, good.clone()), push(&bad_id, changes)],
        );
        let resp = srv.post_json(&alice.token, json_body(&req)).await;
        let msg = resp.error(StatusCode::BAD_REQUEST, "bad_request");
        assert!(msg.contains(bad_id.as_str()), "{what}: {msg}");
        assert!(!msg.contains(good_id.as_str()), "{what}: {msg}");
        assert_eq!(srv.head(&alice, &good_id).await, None, "{what}");
        assert_eq!(srv.head(&alice, &bad_id).await, None, "{what}");
        assert_eq!(srv.stored(&alice).await, Stored::NOTHING, "{what}");
    }

    // One document twice in one request.
    let req = request(
        0,
        vec![push(&good_id, good.clone()), push(&good_id, good.clone())],
    );
    let resp = srv.post_json(&alice.token, json_body(&req)).await;
    let msg = resp.error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(
        msg.contains(good_id.as_str()) && msg.contains("twice"),
        "{msg}"
    );
    assert_eq!(srv.stored(&alice).await, Stored::NOTHING);

    // The good push on its own was fine all along.
    let resp = srv
        .sync(&alice.token, &request(0, vec![push(&good_id, good)]))
        .await;
    assert_eq!(resp.pushed[0].status, PushStatus::Accepted);
}

/// A change chunk (checksum not filled in: it is weighed before anything
/// checks it) whose one operation column is `column`, an integer column.
fn hand_made_change(column: &[u8]) -> Vec<u8> {
    // No deps, a one-byte actor, seq 1, start op 1, time 0, no message,
    // no other actors, one column.
    let mut body = vec![
        0,
        1,
        0xaa,
        1,
        1,
        0,
        0,
        0,
        1,
        (1 << 4) | 2,
        column.len() as u8,
    ];
    body.extend_from_slice(column);
    let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 1, body.len() as u8];
    chunk.extend(body);
    chunk
}

/// The changes of a new document `fill` writes, in one change,
/// compressed as Automerge compresses changes.
fn compressed_changes(fill: impl FnOnce(&mut automerge::AutoCommit)) -> Vec<u8> {
    let mut doc = automerge::AutoCommit::new();
    fill(&mut doc);
    doc.commit();
    let mut bytes = Vec::new();
    for change in doc.get_changes(&[]) {
        let mut change = change.clone();
        bytes.extend_from_slice(&change.bytes());
    }
    bytes
}

#[tokio::test]
async fn requests_that_cost_more_than_they_weigh_are_refused_at_once() {
    use automerge::transaction::Transactable as _;
    let srv = Server::new().await;
    let alice = user("alice");
    let empty_pushes =
        |n: usize| -> Vec<DocPush> { (0..n).map(|_| push(&DocId::random(), vec![])).collect() };
    let resyncs = |n: usize| -> Vec<DocId> { (0..n).map(|_| DocId::random()).collect() };
    // 300,000 characters typed into a text in one change: about 400 bytes
    // compressed, 2.4 million rows to parse.
    let typed = compressed_changes(|d| {
        let text = d
            .put_object(automerge::ROOT, "t", automerge::ObjType::Text)
            .unwrap();
        d.splice_text(&text, 0, 0, &"a".repeat(300_000)).unwrap();
    });
    assert!(typed.len() < 2_000, "{} bytes", typed.len());
    // One value of 4 MiB: a few kilobytes compressed.
    let inflating = compressed_changes(|d| {
        d.put(automerge::ROOT, "v", "a".repeat(4 << 20)).unwrap();
    });
    assert!(inflating.len() < 16_000, "{} bytes", inflating.len());
    // A run of 2^40 operations declared in seven bytes: counted, never
    // expanded (expanding it would hold the server for days).
    let run = hand_made_change(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 7]);
    let id = DocId::random();

    // (case, request, code, words the detail must contain)
    let cases: Vec<(&str, SyncRequest, &str, &[&str])> = vec![
        (
            "one push over the document bound",
            request(0, empty_pushes(MAX_REQUEST_DOCS + 1)),
            "too_many_documents",
            &["501 documents", "at most 500"],
        ),
        (
            "200,000 empty pushes in 12 MB",
            request(0, empty_pushes(200_000)),
            "too_many_documents",
            &["200000 documents"],
        ),
        (
            "pushes and resyncs over the bound together",
            SyncRequest {
                resync: resyncs(201),
                ..request(0, empty_pushes(300))
            },
            "too_many_documents",
            &["501 documents"],
        ),
        (
            "resyncs alone over the bound",
            SyncRequest {
                resync: resyncs(MAX_REQUEST_DOCS + 1),
                ..request(0, vec![])
            },
            "too_many_documents",
            &["501 documents"],
        ),
        (
            "300,000 characters in a few hundred bytes",
            request(0, vec![push(&id, typed.clone())]),
            "too_much_work",
            &["rows", "per byte"],
        ),
        (
            "a declared run of 2^40 operations",
            request(0, vec![push(&id, run)]),
            "too_much_work",
            &["1099511627776 rows"],
        ),
        (
            "4 MiB inflated from a few kilobytes",
            request(0, vec![push(&id, inflating)]),
            "too_much_work",
            &["inflate"],
        ),
    ];
    for (what, req, code, words) in cases {
        let resp = srv.post_json(&alice.token, json_body(&req)).await;
        let detail = resp.error(StatusCode::PAYLOAD_TOO_LARGE, code);
        for word in words {
            assert!(detail.contains(word), "{what}: {detail}");
        }
        assert!(detail.contains("Nothing was stored"), "{what}: {detail}");
        assert_eq!(srv.head(&alice, &id).await, None, "{what}");
        assert_eq!(srv.stored(&alice).await, Stored::NOTHING, "{what}");
    }

    // At the bounds: answered.
    let resp = srv
        .sync(&alice.token, &request(0, empty_pushes(MAX_REQUEST_DOCS)))
        .await;
    assert_eq!(resp.pushed.len(), MAX_REQUEST_DOCS);
    let resp = srv
        .sync(
            &alice.token,
            &SyncRequest {
                resync: resyncs(MAX_REQUEST_DOCS),
                ..request(0, vec![])
            },
        )
        .await;
    assert!(resp.docs.is_empty());
    // A real document of 200 messages, as a snapshot: far inside them.
    let mut doc = new_doc("Fine", 200);
    let resp = srv
        .sync(&alice.token, &request(0, vec![push(&id, doc.save())]))
        .await;
    assert_eq!(resp.pushed, vec![accepted(&id, &mut doc)]);
}
