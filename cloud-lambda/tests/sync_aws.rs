//! Sync over the AWS backend (DynamoDB + S3 on moto), through the real
//! Router on a loopback port and real devices (`core_sync` stores and sync
//! clients): two devices converge, a third syncs from scratch after the
//! server compacted, images travel through presigned S3 URLs (pinned to
//! their checksum, type and length), a long poll wakes on
//! another device's push; what one sync round costs in requests; storage
//! faults reach devices as errors while their edits stay pending; images
//! stored and tagged by kind (upload, job output, thumbnail) as the
//! bucket's lifecycle rules expect, and found by their hash alone.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use atelier_fixtures::moto::Moto;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use cloud_lambda::app::{AppState, router};
use cloud_lambda::storage::DocStore;
use cloud_lambda::storage::aws::Aws;
use core_sync::model::NewMessage;
use core_sync::sync::protocol::{DocPush, SYNC_PATH, SyncRequest, SyncResponse};
use core_sync::{DocId, now_millis};
use support::aws::{Fault, ThrottlingProxy, deployment};
use support::{Device, heads, note, texts, until};
use tower::ServiceExt;

/// The Router over a deployment, served on loopback.
struct Cloud {
    aws: Aws,
    state: AppState,
    url: String,
    token: String,
    task: tokio::task::JoinHandle<()>,
}

impl Cloud {
    async fn start(aws: Aws) -> Cloud {
        let state = AppState::aws(&aws, support::issuer().verifier(), None);
        Cloud::with_state(aws, state).await
    }

    async fn with_state(aws: Aws, state: AppState) -> Cloud {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = router(state.clone());
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Cloud {
            aws,
            state,
            url,
            token: support::issuer().mint("alice", Duration::from_secs(3600)),
            task,
        }
    }

    /// One sync request through the Router in-process.
    async fn sync(&self, req: &SyncRequest) -> (StatusCode, Vec<u8>) {
        let request = Request::post(SYNC_PATH)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(req).unwrap()))
            .unwrap();
        let resp = router(self.state.clone()).oneshot(request).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, body.to_vec())
    }

    async fn sync_ok(&self, req: &SyncRequest) -> SyncResponse {
        let (status, body) = self.sync(req).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn device(cloud: &Cloud) -> Device {
    support::device_at(&cloud.url, &cloud.token).await
}

/// Random letters: a long text that compresses little.
fn letters(len: usize, mut seed: u64) -> String {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            char::from(b'a' + (seed % 26) as u8)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_converge_through_the_aws_backend() {
    let moto = Moto::start();
    let cloud = Cloud::start(deployment(&moto.url()).await).await;
    let (mut a, mut b) = (device(&cloud).await, device(&cloud).await);

    // A works offline: two assets, an image, and one text over DynamoDB's
    // item limit (the server spills it to S3).
    let image = support::png(64, 48);
    let (photo, _) = support::asset_with(&mut a, image.clone(), 64, 48, true).await;
    let notes = a.store.create("Notes", now_millis()).await.unwrap().id;
    a.sync.local_change(notes.clone());
    note(&mut a, &notes, "first").await;
    let long = letters(700_000, 7);
    note(&mut a, &notes, &long).await;
    a.sync.sync_until_idle().await.unwrap();

    b.sync.sync_until_idle().await.unwrap();
    for doc in [&photo, &notes] {
        assert_eq!(heads(&a, doc).await, heads(&b, doc).await);
    }
    assert_eq!(texts(&b, &notes).await, texts(&a, &notes).await);
    let sha = core_sync::blob::sha256_hex(&image);
    assert_eq!(
        b.store.get_blob(&sha).await.unwrap(),
        image,
        "the image came through S3"
    );

    // Both edit the same asset offline, then sync: both edits everywhere.
    note(&mut a, &notes, "from A").await;
    note(&mut b, &notes, "from B").await;
    for _ in 0..2 {
        a.sync.sync_until_idle().await.unwrap();
        b.sync.sync_until_idle().await.unwrap();
    }
    assert_eq!(heads(&a, &notes).await, heads(&b, &notes).await);
    let merged = texts(&b, &notes).await;
    assert!(merged.contains(&"from A".to_owned()) && merged.contains(&"from B".to_owned()));

    // Many small edits: the server compacts; a new device gets snapshots.
    for i in 0..40 {
        note(&mut a, &notes, &format!("edit {i}")).await;
        a.sync.sync_until_idle().await.unwrap();
    }
    let head = cloud
        .aws
        .store()
        .head(&support::user(), &notes)
        .await
        .unwrap()
        .unwrap();
    assert!(head.snapshot_upto > 0, "compacted: {head:?}");
    let mut c = device(&cloud).await;
    c.sync.sync_until_idle().await.unwrap();
    b.sync.sync_until_idle().await.unwrap();
    for d in [&b, &c] {
        assert_eq!(heads(d, &notes).await, heads(&a, &notes).await);
        assert_eq!(texts(d, &notes).await, texts(&a, &notes).await);
    }
}

/// A push request of `doc`'s changes since `since`.
fn push(doc: &DocId, changes: Vec<u8>, cursor: u64) -> SyncRequest {
    SyncRequest {
        push: vec![DocPush {
            doc_id: doc.clone(),
            changes: core_sync::sync::protocol::Bytes(changes),
        }],
        ..idle(cursor)
    }
}

fn idle(cursor: u64) -> SyncRequest {
    SyncRequest {
        feed_cursor: cursor,
        ..SyncRequest::default()
    }
}

#[tokio::test]
async fn an_idle_poll_is_one_query_and_a_warm_push_one_transaction() {
    let moto = Moto::start();
    let cloud = Cloud::start(deployment(&moto.url()).await).await;
    let counts = || cloud.aws.requests().snapshot();
    let id = DocId::random();
    // A document whose snapshot outweighs a few pushes (no compaction).
    let mut doc = core_sync::model::AssetDoc::create("Counted", 1_000);
    for i in 0..200 {
        let text = format!("an earlier message, number {i}, {}", letters(40, i + 1));
        doc.append_message(NewMessage::user(text), 1_500).unwrap();
    }
    let first = cloud.sync_ok(&push(&id, doc.changes_since(&[]), 0)).await;
    let mut cursor = first.feed_cursor;

    let before = counts();
    let resp = cloud.sync_ok(&idle(cursor)).await;
    assert!(resp.docs.is_empty());
    let poll = counts().since(&before);
    assert_eq!(
        (poll.of("Query"), poll.total()),
        (1, 1),
        "idle poll: {poll}"
    );

    // Five changes to one document the server holds warm: one transaction
    // writes them (the rest of the round is the pull after it).
    for round in 0..3 {
        let heads = doc.heads();
        for i in 0..5 {
            doc.append_message(NewMessage::user(format!("r{round} m{i}")), 2_000)
                .unwrap();
        }
        let before = counts();
        let resp = cloud
            .sync_ok(&push(&id, doc.changes_since(&heads), cursor))
            .await;
        cursor = resp.feed_cursor;
        let round_counts = counts().since(&before);
        assert_eq!(
            round_counts.of("TransactWriteItems"),
            1,
            "push: {round_counts}"
        );
        assert_eq!(round_counts.of("PutObject"), 0, "push: {round_counts}");
        eprintln!("push of 5 changes, warm: {round_counts}");
    }
}

#[tokio::test]
async fn a_long_poll_wakes_when_another_device_pushes() {
    let moto = Moto::start();
    let cloud = Arc::new(Cloud::start(deployment(&moto.url()).await).await);
    let id = DocId::random();
    let mut doc = core_sync::model::AssetDoc::create("Later", 1_000);
    let cursor = cloud.sync_ok(&idle(0)).await.feed_cursor;
    let waiting = {
        let cloud = cloud.clone();
        tokio::spawn(async move {
            let mut req = idle(cursor);
            req.wait_ms = 20_000;
            let started = Instant::now();
            (cloud.sync_ok(&req).await, started.elapsed())
        })
    };
    // Push only once the poll is held: its pull found nothing, so only
    // the wake-up can answer it with the push.
    until(
        "the long poll to be held",
        Duration::from_secs(20),
        || async { cloud.state.limits.long_polls.held(&support::user()) > 0 },
    )
    .await;
    cloud
        .sync_ok(&push(&id, doc.changes_since(&[]), cursor))
        .await;
    let (resp, took) = waiting.await.unwrap();
    assert_eq!(resp.docs.len(), 1);
    assert!(took < Duration::from_secs(10), "woke after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_faults_reach_devices_as_errors_and_their_edits_stay_pending() {
    let moto = Moto::start();
    let proxy = ThrottlingProxy::start(&moto.url()).await;
    let cloud = Cloud::start(deployment(&proxy.url).await).await;
    let (mut a, mut b) = (device(&cloud).await, device(&cloud).await);
    let doc = a.store.create("Careful", now_millis()).await.unwrap().id;
    a.sync.local_change(doc.clone());
    a.sync.sync_until_idle().await.unwrap();

    // Throttled for good: the push answers 503 and A keeps its edit.
    proxy.throttle("TransactWriteItems", usize::MAX);
    note(&mut a, &doc, "while throttled").await;
    let mut other = core_sync::model::AssetDoc::create("Other", 1_000);
    let (status, body) = cloud
        .sync(&push(&DocId::random(), other.changes_since(&[]), 0))
        .await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(a.sync.sync_until_idle().await.is_err());
    assert_eq!(a.sync.status().pending, 1);

    // Throttling over: it goes through and reaches B.
    proxy.throttle("TransactWriteItems", 0);
    a.sync.sync_until_idle().await.unwrap();
    assert_eq!(a.sync.status().pending, 0);
    b.sync.sync_until_idle().await.unwrap();
    assert!(
        texts(&b, &doc)
            .await
            .contains(&"while throttled".to_owned())
    );

    // S3 faults: a download URL of an image whose lookup S3 keeps
    // refusing is a 503 to retry, and a device's upload through its
    // presigned URL fails, leaving the image to send again.
    let (photo, _) = support::asset_with(&mut a, support::png(20, 10), 20, 10, true).await;
    let sha = core_sync::blob::sha256_hex(&support::png(20, 10));
    proxy.fail("S3 PUT", Fault::SlowDown, usize::MAX);
    assert!(a.sync.sync_until_idle().await.is_err());
    proxy.fail("S3 PUT", Fault::SlowDown, 0);
    a.sync.sync_until_idle().await.unwrap();
    proxy.fail("S3 HEAD", Fault::SlowDown, usize::MAX);
    let path = format!("/download-url?sha256={sha}");
    let (status, problem) = transfer_url(&cloud, "GET", &path, None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable"))
    );
    proxy.fail("S3 HEAD", Fault::SlowDown, 0);
    assert_eq!(
        transfer_url(&cloud, "GET", &path, None).await.0,
        StatusCode::OK
    );
    b.sync.sync_until_idle().await.unwrap();
    assert_eq!(b.store.get_blob(&sha).await.unwrap(), support::png(20, 10));
    assert!(b.store.contains(&photo).await.unwrap());

    // The emulator forgets everything: an error, never a silent success.
    moto.reset();
    note(&mut a, &doc, "after the reset").await;
    assert!(a.sync.sync_until_idle().await.is_err());
    assert_eq!(a.sync.status().pending, 1);
    let (status, _) = cloud.sync(&idle(0)).await;
    assert!(status.is_server_error(), "{status}");
}

/// `POST /upload-url` or `GET /download-url` as alice, through the Router.
async fn transfer_url(
    cloud: &Cloud,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {}", cloud.token))
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let resp = router(cloud.state.clone()).oneshot(request).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn images_move_through_presigned_s3_urls() {
    use base64::Engine as _;
    use cloud_lambda::storage::aws::BlobKind;

    let moto = Moto::start();
    let cloud = Cloud::start(deployment(&moto.url()).await).await;
    let image = support::png(80, 60);
    let sha = core_sync::blob::sha256_hex(&image);
    let blobs = cloud.aws.blobs();
    let key = blobs.key(&support::user(), BlobKind::Raw, &sha);
    let checksum = base64::engine::general_purpose::STANDARD.encode(hex::decode(&sha).unwrap());

    // The upload URL: a presigned S3 PUT of alice's raw/{sha256} key whose
    // signed headers pin the checksum, type and length.
    let (status, url) = transfer_url(
        &cloud,
        "POST",
        "/upload-url",
        Some(serde_json::json!({"sha256": sha, "bytes": image.len(), "contentType": "image/png"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{url}");
    assert_eq!(url["method"], "PUT");
    let target = url["url"].as_str().unwrap();
    assert!(
        target.starts_with(&format!("{}/{}/{key}?", moto.url(), blobs.bucket())),
        "{target}"
    );
    let headers: std::collections::HashMap<String, String> =
        serde_json::from_value(url["headers"].clone()).unwrap();
    assert_eq!(headers["x-amz-checksum-sha256"], checksum);
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["content-length"], image.len().to_string());
    let signed = reqwest::Url::parse(target)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "X-Amz-SignedHeaders")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    for header in ["content-length", "content-type", "x-amz-checksum-sha256"] {
        assert!(signed.split(';').any(|h| h == header), "{signed}");
    }
    let expires_in = url["expiresAt"].as_u64().unwrap() - core_sync::now_millis() as u64 / 1000;
    assert!((890..=900).contains(&expires_in), "{expires_in}");
    // Nothing stored yet: no download URL.
    let (status, _) =
        transfer_url(&cloud, "GET", &format!("/download-url?sha256={sha}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A device uploads through it, another downloads through a presigned
    // GET (on this backend the server has no route that moves image bytes).
    let mut a = device(&cloud).await;
    let (photo, _) = support::asset_with(&mut a, image.clone(), 80, 60, true).await;
    a.sync.sync_until_idle().await.unwrap();
    let mut b = device(&cloud).await;
    b.sync.sync_until_idle().await.unwrap();
    assert_eq!(b.store.get_blob(&sha).await.unwrap(), image);
    assert_eq!(heads(&a, &photo).await, heads(&b, &photo).await);
    // The object carries the type the URL pinned (the server's own writes
    // are `application/octet-stream`): it came through the URL.
    let stored = cloud
        .aws
        .s3()
        .head_object()
        .bucket(blobs.bucket())
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.content_type(), Some("image/png"));
    assert_eq!(stored.content_length(), Some(image.len() as i64));
    let (status, url) =
        transfer_url(&cloud, "GET", &format!("/download-url?sha256={sha}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(url["method"], "GET");
    assert!(url["url"].as_str().unwrap().contains(&key), "{url}");
}

/// `key`'s kind tag in the blob bucket (`None`: untagged).
async fn kind_tag_of(aws: &Aws, key: &str) -> Option<String> {
    use cloud_lambda::storage::aws::kind_tag;
    let tags = aws
        .s3()
        .get_object_tagging()
        .bucket(aws.blobs().bucket())
        .key(key)
        .send()
        .await
        .unwrap();
    tags.tag_set()
        .iter()
        .find(|t| t.key() == kind_tag())
        .map(|t| t.value().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_stored_and_tagged_by_kind_and_found_by_their_hash_alone() {
    use atelier_fixtures::fakes::{self, FakeConfig};
    use cloud_lambda::jobs::JobConfig;
    use cloud_lambda::registry::{BUILTIN, Registry};
    use cloud_lambda::storage::aws::BlobKind;
    use core_sync::model::MessageStatus;

    let moto = Moto::start();
    let providers = fakes::spawn(FakeConfig::default()).await.unwrap();
    let aws = deployment(&moto.url()).await;
    let state = AppState::aws(&aws, support::issuer().verifier(), None).with_jobs(
        Registry::parse(BUILTIN).unwrap(),
        support::providers(&providers),
        JobConfig::default(),
    );
    let cloud = Cloud::with_state(aws, state).await;
    let blobs = cloud.aws.blobs();
    let user = support::user();

    // An upload, an edit of it by a provider, and an asset made over REST
    // from the upload (the server makes its thumbnail).
    let mut a = device(&cloud).await;
    let (doc, v1) = support::asset_with_image(&mut a).await;
    let edit = support::tool(
        "edit",
        "google",
        "gemini-3.1-flash-image",
        "Make it blue",
        Some(&v1),
        serde_json::json!({}),
    );
    let id = support::request(&mut a, &doc, edit).await;
    let done = support::wait_finished(&mut a, &doc, &[id]).await;
    assert_eq!(
        done[0].status,
        Some(MessageStatus::Succeeded),
        "{:?}",
        done[0].error
    );
    let versions = a.store.load(&doc).await.unwrap().doc.versions().unwrap();
    let input = versions.iter().find(|v| v.id == v1).unwrap();
    let output = versions
        .iter()
        .find(|v| v.id == done[0].output_version_ids[0])
        .unwrap();
    let (status, created) = transfer_url(
        &cloud,
        "POST",
        "/assets",
        Some(serde_json::json!({"from": "blob", "sha256": input.blob.sha256, "title": "Again"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let rest_thumb = created["asset"]["versions"][0]["thumbnail"]["sha256"]
        .as_str()
        .unwrap();

    let expected = [
        (input.blob.sha256.as_str(), BlobKind::Raw),
        (output.blob.sha256.as_str(), BlobKind::Derivative),
        (
            output.thumbnail.as_ref().unwrap().sha256.as_str(),
            BlobKind::Thumbnail,
        ),
        (rest_thumb, BlobKind::Thumbnail),
    ];
    for (sha, kind) in expected {
        let key = blobs.key(&user, kind, sha);
        assert_eq!(
            kind_tag_of(&cloud.aws, &key).await.as_deref(),
            Some(kind.segment()),
            "{key}"
        );
        // Found by its hash alone, wherever it is.
        let (status, url) =
            transfer_url(&cloud, "GET", &format!("/download-url?sha256={sha}"), None).await;
        assert_eq!(status, StatusCode::OK, "{url}");
        assert!(url["url"].as_str().unwrap().contains(&key), "{url}");
    }
    // Every object of the user's is under its kind and tagged with it.
    let listed = cloud
        .aws
        .s3()
        .list_objects_v2()
        .bucket(blobs.bucket())
        .prefix("users/")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.contents().len(), expected.len());
    for object in listed.contents() {
        let key = object.key().unwrap();
        let kind = key.split('/').nth(2).unwrap();
        assert_eq!(
            kind_tag_of(&cloud.aws, key).await.as_deref(),
            Some(kind),
            "{key}"
        );
    }

    // Another device gets every image of every version by its hash.
    let mut b = device(&cloud).await;
    b.sync.sync_until_idle().await.unwrap();
    for v in [input, output] {
        assert!(
            b.store.get_blob(&v.blob.sha256).await.is_ok(),
            "{}",
            v.blob.sha256
        );
    }
}
