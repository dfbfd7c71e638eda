//! Restores, on both backends: the server's data goes back to an older
//! copy (the embedded backend's database and blobs copied back; on AWS
//! every table restored from a DynamoDB backup, S3 left as it is, as with
//! point-in-time recovery) while devices keep editing. Devices find a new
//! epoch, push again what the server lacks (documents and images), pull
//! again, and nothing is lost: every edit reaches every device and a new
//! device. And the server's side of it, request by request. And the AWS
//! peer restarted with nothing kept (moto holds its state in memory):
//! errors while it is down or empty, then, once the tables are made
//! again, devices start over in a new epoch and lose nothing.

mod support;

use std::time::Duration;

use atelier_fixtures::moto::Moto;
use cloud_lambda::app::AppState;
use core_sync::DocId;
use core_sync::now_millis;
use core_sync::sync::client::SyncClient;
use core_sync::sync::engine::EngineConfig;
use core_sync::sync::protocol::{Bytes, DocPush, MAX_EPOCH, SYNC_PATH, SyncRequest};
use core_sync::sync::transport::SyncError;
use support::stores::{Backend, SharedStore, serve};
use support::{Device, asset_with, device_at, heads, issuer, note, png, texts};

fn token() -> String {
    issuer().mint("alice", Duration::from_secs(3600))
}

/// Points `d` at the server at `url`, keeping its store (its cursor, epoch
/// and what it knows of the server).
async fn reconnect(d: &mut Device, url: &str) {
    d.sync = SyncClient::new(d.store.clone(), url, token(), EngineConfig::default())
        .await
        .unwrap();
}

async fn epoch_of(d: &Device) -> i64 {
    d.store.meta("feed_epoch").await.unwrap().unwrap_or(0)
}

/// Syncs both devices in turns until neither has anything to do.
async fn converge(a: &mut Device, b: &mut Device) {
    for _ in 0..3 {
        a.sync.sync_until_idle().await.unwrap();
        b.sync.sync_until_idle().await.unwrap();
    }
}

async fn restoring_an_older_copy_while_devices_edit_loses_nothing(backend: Backend) {
    let mut store = SharedStore::new(backend).await;
    let first = serve(store.server(None).await).await;
    let (mut a, mut b) = (
        device_at(&first.url, &token()).await,
        device_at(&first.url, &token()).await,
    );

    // Before the backup: an asset with notes, one with an image.
    let notes = a.store.create("Notes", now_millis()).await.unwrap().id;
    a.sync.local_change(notes.clone());
    note(&mut a, &notes, "before").await;
    let (early, _) = asset_with(&mut a, png(40, 30), 40, 30, true).await;
    converge(&mut a, &mut b).await;
    let backup = store.backup().await;
    let epoch_before = epoch_of(&a).await;
    assert_ne!(epoch_before, 0);

    // After the backup, synced: edits on both, a new asset and image (its
    // bytes too are lost to the embedded restore).
    note(&mut a, &notes, "after, from A").await;
    note(&mut b, &notes, "after, from B").await;
    let late_image = png(24, 24);
    let (late, _) = asset_with(&mut b, late_image.clone(), 24, 24, true).await;
    converge(&mut a, &mut b).await;
    assert_eq!(texts(&a, &notes).await.len(), 3);

    // The server goes back to the backup; meanwhile both keep editing.
    drop(first);
    store.restore(&backup).await;
    note(&mut a, &notes, "during, from A").await;
    note(&mut b, &notes, "during, from B").await;
    let second = serve(store.server(None).await).await;
    reconnect(&mut a, &second.url).await;
    reconnect(&mut b, &second.url).await;
    converge(&mut a, &mut b).await;

    // A new epoch, and everything everywhere.
    let epoch_after = epoch_of(&a).await;
    assert_ne!(epoch_after, epoch_before, "devices moved to a new epoch");
    assert_eq!(epoch_of(&b).await, epoch_after);
    let all_notes = vec![
        "after, from A",
        "after, from B",
        "before",
        "during, from A",
        "during, from B",
    ];
    for d in [&a, &b] {
        assert_eq!(texts(d, &notes).await, all_notes);
    }
    let docs: [&DocId; 3] = [&notes, &early, &late];
    for doc in docs {
        assert_eq!(heads(&a, doc).await, heads(&b, doc).await, "{doc}");
    }
    // A device from scratch gets all of it from the server, images too.
    let mut c = device_at(&second.url, &token()).await;
    c.sync.sync_until_idle().await.unwrap();
    for doc in docs {
        assert_eq!(heads(&c, doc).await, heads(&a, doc).await, "{doc}");
    }
    let sha = core_sync::blob::sha256_hex(&late_image);
    assert_eq!(c.store.get_blob(&sha).await.unwrap(), late_image);
    assert_eq!(epoch_of(&c).await, epoch_after);

    // Later rounds are ordinary again: nothing pending, an edit goes
    // through once.
    note(&mut c, &notes, "later, from C").await;
    c.sync.sync_until_idle().await.unwrap();
    converge(&mut a, &mut b).await;
    assert_eq!(texts(&b, &notes).await.len(), 6);
    assert_eq!(a.sync.status().pending, 0);
    assert_eq!(epoch_of(&b).await, epoch_after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_an_older_copy_while_devices_edit_loses_nothing_on_the_embedded_backend() {
    restoring_an_older_copy_while_devices_edit_loses_nothing(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_an_older_copy_while_devices_edit_loses_nothing_on_the_aws_backend() {
    restoring_an_older_copy_while_devices_edit_loses_nothing(Backend::Aws).await;
}

/// One sync request as alice through the Router of `state`.
async fn sync_once(
    state: &cloud_lambda::app::AppState,
    req: &SyncRequest,
) -> (axum::http::StatusCode, serde_json::Value) {
    use tower::ServiceExt;
    let request = axum::http::Request::post(SYNC_PATH)
        .header("authorization", format!("Bearer {}", token()))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(serde_json::to_vec(req).unwrap()))
        .unwrap();
    let resp = cloud_lambda::app::router(state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

async fn the_server_answers_other_epochs_and_cursors_past_its_feed_with_start_over(
    backend: Backend,
) {
    let store = SharedStore::new(backend).await;
    let state = store.server(None).await;
    let mut doc = core_sync::model::AssetDoc::create("One", 1_000);
    let id = DocId::random();
    let first = SyncRequest {
        push: vec![DocPush {
            doc_id: id.clone(),
            changes: Bytes(doc.changes_since(&[])),
        }],
        ..SyncRequest::default()
    };
    let (status, resp) = sync_once(&state, &first).await;
    assert_eq!(status, 200, "{resp}");
    let epoch = resp["epoch"].as_u64().unwrap();
    let cursor = resp["feedCursor"].as_u64().unwrap();
    assert!(
        epoch >= 1 && cursor == 1 && resp.get("startOver").is_none(),
        "{resp}"
    );
    let heads = doc.heads();
    doc.append_message(core_sync::model::NewMessage::user("more"), 2_000)
        .unwrap();
    let more = DocPush {
        doc_id: id.clone(),
        changes: Bytes(doc.changes_since(&heads)),
    };
    let start_over = |resp: &serde_json::Value, epoch: u64| {
        assert_eq!(
            *resp,
            serde_json::json!({"feedCursor": 0, "docs": [], "pushed": [], "more": false,
                               "epoch": epoch, "startOver": true})
        );
    };

    // Another epoch: the current one back, and nothing pushed.
    let (status, resp) = sync_once(
        &state,
        &SyncRequest {
            feed_cursor: cursor,
            epoch: epoch % MAX_EPOCH + 1,
            push: vec![more.clone()],
            ..SyncRequest::default()
        },
    )
    .await;
    assert_eq!(status, 200);
    start_over(&resp, epoch);
    assert_eq!(state.store.user_head(&support::user()).await.unwrap(), 1);

    // A cursor past the end of the feed (the data went back): a new epoch,
    // whether the request pushes or only polls; the old one is gone.
    for push in [vec![more.clone()], vec![]] {
        let before = state.store.epoch(&support::user(), 0).await.unwrap();
        let (status, resp) = sync_once(
            &state,
            &SyncRequest {
                feed_cursor: 5,
                epoch: before,
                push,
                ..SyncRequest::default()
            },
        )
        .await;
        assert_eq!(status, 200);
        let renewed = resp["epoch"].as_u64().unwrap();
        assert_ne!(renewed, before);
        start_over(&resp, renewed);
        assert_eq!(state.store.user_head(&support::user()).await.unwrap(), 1);
    }

    // In the current epoch at a real cursor: an ordinary round.
    let now = state.store.epoch(&support::user(), 0).await.unwrap();
    let (status, resp) = sync_once(
        &state,
        &SyncRequest {
            feed_cursor: cursor,
            epoch: now,
            push: vec![more],
            ..SyncRequest::default()
        },
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (resp["epoch"].as_u64(), resp["feedCursor"].as_u64()),
        (Some(now), Some(2))
    );
    assert_eq!(resp["pushed"][0]["status"], "accepted");
    // An epoch no server hands out is refused.
    let (status, resp) = sync_once(
        &state,
        &SyncRequest {
            epoch: MAX_EPOCH + 1,
            ..SyncRequest::default()
        },
    )
    .await;
    assert_eq!(status, 400, "{resp}");
}

#[tokio::test]
async fn the_server_answers_other_epochs_and_cursors_past_its_feed_with_start_over_on_the_embedded_backend()
 {
    the_server_answers_other_epochs_and_cursors_past_its_feed_with_start_over(Backend::Embedded)
        .await;
}

#[tokio::test]
async fn the_server_answers_other_epochs_and_cursors_past_its_feed_with_start_over_on_the_aws_backend()
 {
    the_server_answers_other_epochs_and_cursors_past_its_feed_with_start_over(Backend::Aws).await;
}

fn assert_pending_after_error(
    result: Result<core_sync::sync::client::SyncReport, SyncError>,
    status: u16,
    d: &Device,
) {
    match result {
        Err(SyncError::Server { status: s, .. }) if s == status => {}
        other => panic!("expected a {status} from the server, got {other:?}"),
    }
    assert_eq!(d.sync.status().pending, 1, "the edit stays pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_aws_peer_that_kept_nothing_gives_errors_then_devices_start_over_losing_nothing()
 {
    let mut moto = Moto::start();
    let aws = support::aws::deployment(&moto.url()).await;
    // One server throughout, as a warm Lambda instance (its epoch and
    // counters cached) would be.
    let state = AppState::aws(&aws, issuer().verifier(), None);
    let served = serve(state.clone()).await;
    let (mut a, mut b) = (
        device_at(&served.url, &token()).await,
        device_at(&served.url, &token()).await,
    );
    let notes = a.store.create("Notes", now_millis()).await.unwrap().id;
    a.sync.local_change(notes.clone());
    note(&mut a, &notes, "before").await;
    let image = png(32, 20);
    let (photo, _) = asset_with(&mut b, image.clone(), 32, 20, true).await;
    converge(&mut a, &mut b).await;
    let epoch_before = epoch_of(&a).await;

    // Down: every request a 503 the device retries later; the edit waits.
    moto.stop();
    note(&mut a, &notes, "while down").await;
    assert_pending_after_error(a.sync.sync_until_idle().await, 503, &a);
    let (status, problem) = sync_once(&state, &SyncRequest::default()).await;
    assert_eq!(
        (status.as_u16(), problem["code"].as_str()),
        (503, Some("unavailable"))
    );

    // Up again, empty: no table, so an error, never an answer that would
    // make the device drop what it has.
    moto.restart();
    assert_pending_after_error(a.sync.sync_until_idle().await, 500, &a);

    // The operator makes the tables and buckets again (`atelier-cloud
    // init-aws`); devices find a new epoch and push everything again.
    aws.init().await.unwrap();
    note(&mut b, &notes, "after, from B").await;
    converge(&mut a, &mut b).await;
    let epoch_after = epoch_of(&a).await;
    assert_ne!(epoch_after, epoch_before);
    assert_eq!(epoch_of(&b).await, epoch_after);
    let all = vec!["after, from B", "before", "while down"];
    for d in [&a, &b] {
        assert_eq!(texts(d, &notes).await, all);
        let status = d.sync.status();
        assert_eq!((status.pending, status.refused.len()), (0, 0), "{status:?}");
    }
    // A device from scratch gets it all from the new tables and bucket.
    let mut c = device_at(&served.url, &token()).await;
    c.sync.sync_until_idle().await.unwrap();
    for doc in [&notes, &photo] {
        assert_eq!(heads(&c, doc).await, heads(&a, doc).await, "{doc}");
    }
    let sha = core_sync::blob::sha256_hex(&image);
    assert_eq!(c.store.get_blob(&sha).await.unwrap(), image);
}
