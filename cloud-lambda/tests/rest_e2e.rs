//! A tool request posted over REST reaches a syncing device's timeline
//! with its result, exactly once, while the device keeps editing the same
//! asset (its pushes carry the still-queued request back to the server,
//! which must not start the job again). Real Router with jobs, fake
//! providers, a device over HTTP.

#[path = "support/rest.rs"]
mod rest;

use std::time::{Duration, Instant};

use core_sync::DocId;
use core_sync::model::{MessageKind, MessageStatus, NewMessage};
use core_sync::now_millis;
use rest::{Backend, Options, device, world};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_tool_request_reaches_a_device_with_its_result_once_on_the_embedded_backend() {
    a_rest_tool_request_reaches_a_device_with_its_result_once(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_tool_request_reaches_a_device_with_its_result_once_on_the_aws_backend() {
    a_rest_tool_request_reaches_a_device_with_its_result_once(Backend::Aws).await;
}

async fn a_rest_tool_request_reaches_a_device_with_its_result_once(backend: Backend) {
    let w = world(Options {
        backend,
        jobs: true,
        ..Options::default()
    })
    .await;
    let asset = w.asset_with_image(&w.alice, "Sneaker").await;
    let doc: DocId = asset.parse().unwrap();
    let mut d = device(&w, &w.alice).await;
    d.sync.sync_until_idle().await.unwrap();
    assert!(
        d.store.contains(&doc).await.unwrap(),
        "the REST-made asset synced down"
    );

    let posted = w
        .post(
            &w.alice,
            &format!("/assets/{asset}/messages"),
            json!({"type": "upscale", "scale": 4}),
        )
        .await
        .json(202);
    let id = posted["message"]["id"].as_str().unwrap().to_owned();
    assert_eq!(posted["operation"]["id"], id.as_str());
    // The device edits the same asset meanwhile: its pushes hold the
    // request too.
    for i in 0..3 {
        let mut a = d.store.load(&doc).await.unwrap();
        a.doc
            .append_message(NewMessage::user(format!("note {i}")), now_millis())
            .unwrap();
        d.store.save(&mut a).await.unwrap();
        d.sync.local_change(doc.clone());
        d.sync.sync_until_idle().await.unwrap();
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    let request = loop {
        d.sync.sync_until_idle().await.unwrap();
        let mut a = d.store.load(&doc).await.unwrap();
        let m = a.doc.message(&id).unwrap();
        if m.status.is_some_and(|s| s.is_terminal()) {
            break m;
        }
        assert!(Instant::now() < deadline, "the job never finished: {m:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        request.status,
        Some(MessageStatus::Succeeded),
        "{:?}",
        request.error
    );
    assert_eq!(request.kind, MessageKind::ToolRequest);
    assert_eq!(request.output_version_ids.len(), 1);

    let a = d.store.load(&doc).await.unwrap();
    let timeline = a.doc.messages().unwrap();
    assert_eq!(
        timeline.iter().filter(|m| m.id == id).count(),
        1,
        "once in the timeline"
    );
    assert_eq!(
        timeline.len(),
        4,
        "the request and the device's three notes"
    );
    let versions = a.doc.versions().unwrap();
    assert_eq!(versions.len(), 2, "the upload and one result");
    let result = versions
        .iter()
        .find(|v| v.id == request.output_version_ids[0])
        .unwrap();
    assert_eq!(
        (result.blob.width, result.blob.height),
        (256, 192),
        "4x of 64x48"
    );
    d.store.get_blob(&result.blob.sha256).await.unwrap();
    assert_eq!(a.doc.cost_events().unwrap().len(), 1, "paid once");
    // One prediction at the provider.
    let predictions = w
        .fakes
        .as_ref()
        .unwrap()
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/predictions"))
        .count();
    assert_eq!(predictions, 1);
    // And REST reads the same.
    let page = w
        .get(&w.alice, &format!("/assets/{asset}/messages"))
        .await
        .json(200);
    let item = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(item["status"], "succeeded");
    assert_eq!(w.get(&w.alice, "/costs").await.json(200)["events"], 1);
}
