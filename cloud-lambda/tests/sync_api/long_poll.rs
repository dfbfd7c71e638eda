//! Long polls: an idle poll answers as soon as another device pushes, and
//! a user holds only so many at once.

use std::sync::Arc;
use std::time::Duration;

use crate::fixtures::*;
use axum::http::StatusCode;
use cloud_lambda::limits::ApiConfig;
use core_sync::sync::protocol::SyncRequest;
use core_sync::{AssetDoc, DocId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_long_poll_answers_as_soon_as_another_device_pushes() {
    let srv = Arc::new(Server::new().await);
    let alice = user("alice");
    // Nothing new: a long poll is held, then answers empty at its deadline.
    let started = std::time::Instant::now();
    let mut idle = request(0, vec![]);
    idle.wait_ms = 300;
    let resp = srv.sync(&alice.token, &idle).await;
    assert!(resp.docs.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(290),
        "held until the deadline"
    );

    // A long poll of 20 s returns as soon as another device pushes.
    let mut waiting = request(0, vec![]);
    waiting.wait_ms = 20_000;
    let poller = {
        let srv = Arc::clone(&srv);
        let token = alice.token.clone();
        tokio::spawn(async move {
            let t = std::time::Instant::now();
            (srv.sync(&token, &waiting).await, t.elapsed())
        })
    };
    // Push only once the poll is parked: the push must wake it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while srv.store.parked_long_polls() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the long poll never parked"
        );
        tokio::task::yield_now().await;
    }
    let id = DocId::random();
    let mut a = AssetDoc::create("Sunset", 1_000);
    srv.sync(
        &alice.token,
        &request(0, vec![push(&id, a.changes_since(&[]))]),
    )
    .await;
    let (resp, took) = poller.await.unwrap();
    assert_eq!(resp.docs.len(), 1, "the held poll carries the new document");
    assert_eq!(resp.docs[0].doc_id, id);
    assert!(
        took < Duration::from_secs(5),
        "answered on the push, not the deadline: {took:?}"
    );

    // Another user's push does not wake alice with anything of theirs.
    let bob = user("bob");
    let mut held = request(resp.feed_cursor, vec![]);
    held.wait_ms = 400;
    let bob_doc = DocId::random();
    let mut b = AssetDoc::create("Bob's", 1_000);
    srv.sync(
        &bob.token,
        &request(0, vec![push(&bob_doc, b.changes_since(&[]))]),
    )
    .await;
    assert!(srv.sync(&alice.token, &held).await.docs.is_empty());

    // Longer than allowed: refused.
    let mut too_long = request(0, vec![]);
    too_long.wait_ms = 60_000;
    srv.post_json(&alice.token, json_body(&too_long))
        .await
        .error(StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_holds_only_so_many_long_polls_at_once() {
    let srv = Arc::new(
        Server::with_limits(ApiConfig {
            long_polls_per_user: 2,
            ..ApiConfig::default()
        })
        .await,
    );
    let alice = user("alice");
    let poll = |wait_ms| SyncRequest {
        wait_ms,
        ..request(0, vec![])
    };
    let held: Vec<_> = (0..2)
        .map(|_| {
            let srv = Arc::clone(&srv);
            let token = alice.token.clone();
            let req = poll(20_000);
            tokio::spawn(async move { srv.sync(&token, &req).await })
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while srv.store.parked_long_polls() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the polls never parked"
        );
        tokio::task::yield_now().await;
    }
    // A third is refused at once, saying when to retry.
    let resp = srv.post_json(&alice.token, json_body(&poll(20_000))).await;
    let detail = resp.error(StatusCode::TOO_MANY_REQUESTS, "too_many_long_polls");
    assert!(detail.contains("2 long polls"), "{detail}");
    assert_eq!(resp.header("retry-after"), Some("5"));
    // A poll that does not wait, and another user's long poll, still go.
    assert!(srv.sync(&alice.token, &poll(0)).await.docs.is_empty());
    assert!(
        srv.sync(&user("bob").token, &poll(50))
            .await
            .docs
            .is_empty()
    );

    // A push wakes the held ones; then there is room again.
    let id = DocId::random();
    let mut a = AssetDoc::create("Wake", 1_000);
    srv.sync(
        &alice.token,
        &request(0, vec![push(&id, a.changes_since(&[]))]),
    )
    .await;
    let mut cursor = 0;
    for h in held {
        let resp = h.await.unwrap();
        assert_eq!(resp.docs.len(), 1);
        cursor = resp.feed_cursor;
    }
    let idle = SyncRequest {
        feed_cursor: cursor,
        ..poll(50)
    };
    let resp = srv.sync(&alice.token, &idle).await;
    assert!(resp.docs.is_empty(), "held to its end, not refused");
    assert_eq!(srv.store.parked_long_polls(), 0);
}
