//! Devices converging through the endpoint: a push reaching a second
//! device, retried and partial pushes, a push missing its history, and
//! compaction keeping every device whole.

use std::collections::HashSet;

use crate::fixtures::*;
use cloud_lambda::storage::{DocStore, FeedEntry};
use core_sync::model::NewMessage;
use core_sync::sync::protocol::{PushOutcome, PushStatus, SyncResponse, hashes};
use core_sync::{AssetDoc, DocId};

#[tokio::test]
async fn a_pushed_document_reaches_a_second_device_and_an_idle_poll_is_empty() {
    let srv = Server::new().await;
    let alice = user("alice");
    let id = DocId::random();
    let mut a = AssetDoc::create("Sunset", 1_000);
    a.append_message(NewMessage::user("make the sky warmer"), 2_000)
        .unwrap();
    a.append_message(NewMessage::user("and add a boat"), 3_000)
        .unwrap();

    let resp = srv
        .sync(
            &alice.token,
            &request(0, vec![push(&id, a.changes_since(&[]))]),
        )
        .await;
    assert_eq!(resp.pushed, vec![accepted(&id, &mut a)]);
    assert_eq!(
        resp.feed_cursor, 1,
        "the pusher's cursor moves past its push"
    );
    let head = srv.head(&alice, &id).await.expect("stored");
    assert_eq!(sorted(head.heads), sorted(a.heads()));
    // A first push outweighs the (absent) snapshot: the server compacts it
    // at once, so devices syncing from scratch download a compact snapshot.
    assert_eq!((head.last_useq, head.snapshot_upto), (1, 1));
    assert_eq!(
        srv.stored(&alice).await,
        Stored {
            user_head: 1,
            feed: vec![FeedEntry {
                doc_id: id.clone(),
                useq: 1
            }],
        }
    );

    // Device B, same user, knows nothing yet.
    let mut b = Device::new(&alice);
    let pulled = b.sync(&srv, vec![]).await;
    assert_eq!(pulled.docs.len(), 1);
    assert_eq!(pulled.docs[0].doc_id, id);
    assert!(pulled.pushed.is_empty());
    assert!(!pulled.more);
    assert_eq!(b.cursor, 1);
    let copy = b.doc(&id);
    assert_eq!(sorted(copy.heads()), sorted(a.heads()));
    let messages = copy.messages().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages, a.messages().unwrap());

    // An idle poll: nothing new, cursor unchanged.
    let idle = b.sync(&srv, vec![]).await;
    assert!(idle.epoch >= 1, "every answer names the epoch");
    assert_eq!(
        idle,
        SyncResponse {
            feed_cursor: 1,
            docs: vec![],
            pushed: vec![],
            more: false,
            epoch: idle.epoch,
            start_over: false,
            purged: vec![],
        }
    );
    assert_eq!(srv.stored(&alice).await.user_head, 1);
}

#[tokio::test]
async fn retried_and_partial_pushes_store_nothing_twice() {
    let srv = Server::new().await;
    let alice = user("alice");
    let id = DocId::random();
    let mut a = AssetDoc::create("Retry", 1_000);
    let first_change = a.changes_since(&[]);
    for i in 0..3 {
        a.append_message(NewMessage::user(format!("note {i}")), 2_000 + i)
            .unwrap();
    }
    let all = request(0, vec![push(&id, a.changes_since(&[]))]);
    let first = srv.sync(&alice.token, &all).await;
    assert_eq!(first.pushed, vec![accepted(&id, &mut a)]);
    let stored = srv.stored(&alice).await;
    let head = srv.head(&alice, &id).await;
    assert_eq!(stored.user_head, 1);

    // The same request again, as after a lost response.
    let again = srv.sync(&alice.token, &all).await;
    assert_eq!(again.pushed, first.pushed);
    assert_eq!(srv.stored(&alice).await, stored);
    assert_eq!(srv.head(&alice, &id).await, head);

    // Only changes the server already has (a subset), and no changes at all.
    for changes in [first_change, vec![]] {
        let resp = srv
            .sync(&alice.token, &request(1, vec![push(&id, changes)]))
            .await;
        assert_eq!(resp.pushed, vec![accepted(&id, &mut a)]);
        assert!(resp.docs.is_empty());
        assert_eq!(srv.stored(&alice).await, stored);
        assert_eq!(srv.head(&alice, &id).await, head);
    }

    // A resend of everything plus one new change stores just that change.
    let server_heads = a.heads();
    a.append_message(NewMessage::user("one more"), 9_000)
        .unwrap();
    let resp = srv
        .sync(
            &alice.token,
            &request(1, vec![push(&id, a.changes_since(&[]))]),
        )
        .await;
    assert_eq!(resp.pushed, vec![accepted(&id, &mut a)]);
    assert_eq!(srv.stored(&alice).await.user_head, 2);
    let entry = srv.store.read_since(&alice.sub, &id, 1).await.unwrap();
    assert_eq!(entry.len(), 1);
    assert_eq!(entry[0].bytes, a.changes_since(&server_heads));

    // A second device sees every message exactly once.
    let mut b = Device::new(&alice);
    b.sync(&srv, vec![]).await;
    let messages = b.doc(&id).messages().unwrap();
    assert_eq!(messages, a.messages().unwrap());
    assert_eq!(messages.len(), 4);
    let ids: HashSet<_> = messages.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids.len(), 4);
}

#[tokio::test]
async fn a_push_missing_its_dependencies_stores_nothing_until_the_history_arrives() {
    let srv = Server::new().await;
    let alice = user("alice");

    // A new document: only its second change, whose parent the server never got.
    let id = DocId::random();
    let mut a = AssetDoc::create("Gap", 1_000);
    let after_create = a.heads();
    a.append_message(NewMessage::user("hello"), 2_000).unwrap();
    let later = a.changes_since(&after_create);
    let resp = srv
        .sync(&alice.token, &request(0, vec![push(&id, later)]))
        .await;
    assert_eq!(
        resp.pushed,
        vec![PushOutcome {
            doc_id: id.clone(),
            status: PushStatus::MissingDeps,
            server_heads: vec![],
        }]
    );
    assert_eq!(srv.head(&alice, &id).await, None);
    assert_eq!(srv.stored(&alice).await, Stored::NOTHING);

    // Resending the whole history is accepted.
    let resp = srv
        .sync(
            &alice.token,
            &request(0, vec![push(&id, a.changes_since(&[]))]),
        )
        .await;
    assert_eq!(resp.pushed, vec![accepted(&id, &mut a)]);
    assert_eq!(srv.stored(&alice).await.user_head, 1);

    // An existing document: skip a change; the answer names the server's heads.
    let server_heads = a.heads();
    a.append_message(NewMessage::user("skipped"), 3_000)
        .unwrap();
    let skipped = a.heads();
    a.append_message(NewMessage::user("sent"), 4_000).unwrap();
    let head = srv.head(&alice, &id).await;
    let resp = srv
        .sync(
            &alice.token,
            &request(1, vec![push(&id, a.changes_since(&skipped))]),
        )
        .await;
    assert_eq!(
        resp.pushed,
        vec![PushOutcome {
            doc_id: id.clone(),
            status: PushStatus::MissingDeps,
            server_heads: hashes(&server_heads),
        }]
    );
    assert_eq!(srv.head(&alice, &id).await, head);
    assert_eq!(srv.stored(&alice).await.user_head, 1);

    // Resending from the server's heads fills the gap.
    let resp = srv
        .sync(
            &alice.token,
            &request(1, vec![push(&id, a.changes_since(&server_heads))]),
        )
        .await;
    assert_eq!(resp.pushed, vec![accepted(&id, &mut a)]);
    let mut b = Device::new(&alice);
    b.sync(&srv, vec![]).await;
    assert_eq!(b.doc(&id).messages().unwrap(), a.messages().unwrap());
}

#[tokio::test]
async fn compaction_keeps_every_device_whole() {
    let srv = Server::new().await;
    let alice = user("alice");
    let id = DocId::random();
    let mut a = AssetDoc::create("Long", 1_000);
    let mut server_heads = vec![];
    let mut middle = Device::new(&alice);
    for i in 0..40 {
        if i > 0 {
            a.append_message(NewMessage::user(format!("step {i}")), 2_000 + i)
                .unwrap();
        }
        let resp = srv
            .sync(
                &alice.token,
                &request(i as u64, vec![push(&id, a.changes_since(&server_heads))]),
            )
            .await;
        assert_eq!(resp.pushed, vec![accepted(&id, &mut a)], "push {i}");
        server_heads = a.heads();
        if i == 19 {
            middle.sync(&srv, vec![]).await;
            assert_eq!(middle.cursor, 20);
        }
    }
    let head = srv.head(&alice, &id).await.unwrap();
    assert_eq!(head.last_useq, 40);
    assert!(
        head.snapshot_upto > 0 && head.snapshot_upto <= 40,
        "compaction happened: {head:?}"
    );
    let chunks = srv.store.read_all(&alice.sub, &id).await.unwrap();
    assert!(chunks[0].is_snapshot, "{chunks:?}");
    assert!(chunks.len() < 40, "{chunks:?}");

    let mut fresh = Device::new(&alice);
    fresh.sync(&srv, vec![]).await;
    middle.sync(&srv, vec![]).await;
    let messages = a.messages().unwrap();
    assert_eq!(messages.len(), 39);
    for (what, device) in [("fresh", &mut fresh), ("middle", &mut middle)] {
        assert_eq!(device.cursor, 40, "{what}");
        let doc = device.doc(&id);
        assert_eq!(sorted(doc.heads()), sorted(a.heads()), "{what}");
        assert_eq!(doc.messages().unwrap(), messages, "{what}");
    }
}
