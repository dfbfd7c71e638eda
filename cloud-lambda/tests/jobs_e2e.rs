//! Provider jobs end to end on the embedded server, against the fake
//! providers in `fixtures/` (real wire formats, real PNGs, signed webhooks).
//!
//! Devices are `SyncClient`s over HTTP on loopback; the server is the real
//! Router with jobs on. Each test creates assets offline, queues tool
//! requests, syncs, and watches the result merge on a second device.

use atelier_fixtures::fakes;
use cloud_lambda::storage::jobs::OpStatus;
use core_sync::model::{MessageStatus, MessageUpdate};
use core_sync::now_millis;
use core_sync::sync::client::SyncClient;
use core_sync::sync::engine::EngineConfig;
use serde_json::json;

mod support;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tool_runs_once_and_its_result_reaches_a_second_device() {
    let w = world().await;
    let mut a = device(&w).await;
    let mut b = device(&w).await;
    let (doc, v1) = asset_with_image(&mut a).await;
    let ids = vec![
        request(
            &mut a,
            &doc,
            tool(
                "edit",
                "google",
                "gemini-3.1-flash-image",
                "make the sky stormy.",
                Some(&v1),
                json!({}),
            ),
        )
        .await,
        request(
            &mut a,
            &doc,
            tool(
                "generate",
                "google",
                "gemini-3-pro-image",
                "a lighthouse at dusk",
                None,
                json!({"aspectRatio": "16:9"}),
            ),
        )
        .await,
        request(
            &mut a,
            &doc,
            tool(
                "upscale",
                "replicate",
                "nightmareai/real-esrgan",
                "Upscale 4x",
                Some(&v1),
                json!({"scale": 4}),
            ),
        )
        .await,
        request(
            &mut a,
            &doc,
            tool(
                "remove-background",
                "replicate",
                "bria/remove-background",
                "Remove the background",
                Some(&v1),
                json!({}),
            ),
        )
        .await,
    ];
    // Offline until now: the requests wait in the local store, queued.
    a.sync.sync_until_idle().await.unwrap();
    // A retried push of the same requests starts nothing twice.
    let mut again = SyncClient::new(
        a.store.clone(),
        &w.url,
        w.token.clone(),
        EngineConfig::default(),
    )
    .await
    .unwrap();
    again.local_change(doc.clone());
    again.sync_until_idle().await.unwrap();

    let msgs = wait_finished(&mut b, &doc, &ids).await;
    for m in &msgs {
        assert_eq!(
            m.status,
            Some(MessageStatus::Succeeded),
            "{:?}: {:?}",
            m.tool,
            m.error
        );
        assert_eq!(m.output_version_ids.len(), 1);
        assert!(m.operation_id.is_some());
    }
    let mut asset = b.store.load(&doc).await.unwrap();
    let versions = asset.doc.versions().unwrap();
    let by_msg = |i: usize| {
        versions
            .iter()
            .find(|v| v.id == msgs[i].output_version_ids[0])
            .unwrap()
    };
    // Edits keep the input's size; the upscale really is 4x; outputs chain to their input.
    assert_eq!((by_msg(0).blob.width, by_msg(0).blob.height), (64, 48));
    assert_eq!((by_msg(2).blob.width, by_msg(2).blob.height), (256, 192));
    assert_eq!(by_msg(2).parent_version_id.as_deref(), Some(v1.as_str()));
    assert!(
        by_msg(1).blob.width > by_msg(1).blob.height,
        "16:9 text-to-image"
    );
    // Every result image and thumbnail reached device B, verified.
    for v in &versions {
        b.store.get_blob(&v.blob.sha256).await.unwrap();
        if let Some(t) = &v.thumbnail {
            b.store.get_blob(&t.sha256).await.unwrap();
        }
    }
    // Costs from the providers' own usage numbers, to the nano-dollar.
    let mut costs: Vec<(String, i64)> = asset
        .doc
        .cost_events()
        .unwrap()
        .into_iter()
        .map(|c| (c.model, c.cost_nano_usd))
        .collect();
    costs.sort();
    assert_eq!(
        costs,
        vec![
            ("bria/remove-background".into(), 18_000_000),
            // Google's prices and token counts (models.json cites them):
            // 3 Pro Image $2 / $120 per 1M, a 1K image 1120 tokens; 3.1 Flash
            // Image $0.50 / $60 per 1M, 1120 tokens per input and 1K image.
            ("gemini-3-pro-image".into(), 5 * 2_000 + 1120 * 120_000),
            (
                "gemini-3.1-flash-image".into(),
                (5 + 1120) * 500 + 1120 * 60_000
            ),
            ("nightmareai/real-esrgan".into(), 337_500),
        ]
    );
    // Exactly one provider call per request despite the retried push.
    let creates = w
        .fakes
        .requests()
        .iter()
        .filter(|r| {
            r.method == "POST" && r.path.contains("predictions") && !r.path.ends_with("/cancel")
        })
        .count();
    assert_eq!(creates, 2, "one Replicate prediction per Replicate request");
    let gemini = w
        .fakes
        .requests()
        .iter()
        .filter(|r| r.path.contains(":generateContent"))
        .count();
    assert_eq!(gemini, 2);
    // Device A converges too.
    a.sync.sync_until_idle().await.unwrap();
    let mut on_a = a.store.load(&doc).await.unwrap();
    let mut ha = on_a.doc.heads();
    let mut hb = asset.doc.heads();
    ha.sort();
    hb.sort();
    assert_eq!(ha, hb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_errors_end_as_readable_failures() {
    let w = world().await;
    let mut a = device(&w).await;
    let (doc, v1) = asset_with_image(&mut a).await;
    let cases = [
        (
            tool(
                "edit",
                "google",
                "gemini-3.1-flash-image",
                "[block-prompt] something",
                Some(&v1),
                json!({}),
            ),
            "safety",
        ),
        (
            tool(
                "edit",
                "google",
                "gemini-3.1-flash-image",
                "[block-image] something",
                Some(&v1),
                json!({}),
            ),
            "safety",
        ),
        (
            tool(
                "edit",
                "google",
                "gemini-3.1-flash-image",
                "[text-only] describe it",
                Some(&v1),
                json!({}),
            ),
            "no image",
        ),
        (
            tool(
                "generate",
                "google",
                "gemini-3.1-flash-image",
                "[503] busy",
                None,
                json!({}),
            ),
            "unavailable",
        ),
        (
            tool(
                "edit",
                "google",
                "gemini-2.5-flash-image",
                "retired model",
                Some(&v1),
                json!({}),
            ),
            "gemini-3.1-flash-image",
        ),
        (
            tool(
                "generate",
                "google",
                "imagen-4.0-generate-001",
                "retired imagen",
                None,
                json!({}),
            ),
            "gemini-3.1-flash-image",
        ),
        (
            tool(
                "upscale",
                "replicate",
                "nightmareai/real-esrgan",
                "fails",
                Some(&v1),
                json!({"_fake_scenario": "fail"}),
            ),
            "failed",
        ),
        (
            tool(
                "generate",
                "google",
                "gemini-3.1-flash-image",
                "[429] quota",
                None,
                json!({}),
            ),
            "unavailable",
        ),
        (
            tool(
                "generate",
                "google",
                "gemini-3.1-flash-image",
                "[504] deadline",
                None,
                json!({}),
            ),
            "unavailable",
        ),
        (
            tool(
                "upscale",
                "replicate",
                "nightmareai/real-esrgan",
                "no credit",
                Some(&v1),
                json!({"_fake_scenario": "no-credit"}),
            ),
            "credit",
        ),
        (
            tool(
                "upscale",
                "replicate",
                "nightmareai/real-esrgan",
                "throttled",
                Some(&v1),
                json!({"_fake_scenario": "throttle"}),
            ),
            "unavailable",
        ),
    ];
    let mut ids = Vec::new();
    for (msg, _) in &cases {
        ids.push(request(&mut a, &doc, msg.clone()).await);
    }
    a.sync.sync_until_idle().await.unwrap();
    let msgs = wait_finished(&mut a, &doc, &ids).await;
    for (m, (_, needle)) in msgs.iter().zip(&cases) {
        assert_eq!(m.status, Some(MessageStatus::Failed), "{:?}", m.text);
        let e = m.error.as_ref().expect("a failure carries its reason");
        assert!(
            e.message.to_lowercase().contains(&needle.to_lowercase()),
            "{:?}: {:?} should mention {needle:?}",
            m.text,
            e
        );
        assert!(m.output_version_ids.is_empty());
    }
    // Retired models were refused before any request reached a provider.
    let reqs = w.fakes.requests();
    assert!(
        !reqs
            .iter()
            .any(|r| r.path.contains("gemini-2.5-flash-image") || r.path.contains("imagen-4.0"))
    );
    // Transient errors were retried before giving up; permanent ones were not.
    let tries = |needle: &[u8]| {
        reqs.iter()
            .filter(|r| r.body.windows(needle.len()).any(|w| w == needle))
            .count()
    };
    assert_eq!(tries(b"[503]"), 4);
    assert_eq!(tries(b"[429]"), 4);
    assert_eq!(tries(b"[block-prompt]"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceled_request_stops_and_keeps_no_result() {
    let w = world().await;
    let mut a = device(&w).await;
    let (doc, id) = running_slow_upscale(&mut a).await;
    let mut asset = a.store.load(&doc).await.unwrap();
    asset
        .doc
        .update_message(
            &id,
            MessageUpdate {
                status: Some(MessageStatus::Canceled),
                ..Default::default()
            },
            now_millis(),
        )
        .unwrap();
    a.store.save(&mut asset).await.unwrap();
    a.sync.local_change(doc.clone());
    a.sync.sync_until_idle().await.unwrap();
    // The prediction gets canceled at the provider; no version appears.
    wait_cancel_reached(&w.fakes).await;
    // Once the job has ended, nothing more will be written: what the device
    // then pulls is the final state.
    assert_eq!(w.job_ended(&id).await, OpStatus::Canceled);
    a.sync.sync_until_idle().await.unwrap();
    let mut asset = a.store.load(&doc).await.unwrap();
    let m = asset.doc.message(&id).unwrap();
    assert_eq!(m.status, Some(MessageStatus::Canceled));
    assert!(m.output_version_ids.is_empty());
    assert_eq!(asset.doc.versions().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_refuses_bad_signatures_stale_timestamps_and_replays() {
    use cloud_lambda::providers::webhook::sign;
    let w = world().await;
    let http = reqwest::Client::new();
    let body = br#"{"id":"nonexistent","status":"succeeded"}"#.to_vec();
    let now = now_millis() / 1000;
    let post = |id: &str, ts: i64, sig: String, body: Vec<u8>| {
        http.post(format!("{}/replicate/webhook", w.url))
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let good = sign(fakes::DEFAULT_WEBHOOK_SECRET, "msg_1", now, &body).unwrap();
    // A signature over different bytes.
    let tampered = sign(fakes::DEFAULT_WEBHOOK_SECRET, "msg_1", now, b"{}").unwrap();
    assert_eq!(
        post("msg_1", now, tampered, body.clone())
            .await
            .unwrap()
            .status(),
        401
    );
    // Signed by someone else.
    let other = sign(
        "whsec_b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldC0xMjM0NTY=",
        "msg_1",
        now,
        &body,
    )
    .unwrap();
    assert_eq!(
        post("msg_1", now, other, body.clone())
            .await
            .unwrap()
            .status(),
        401
    );
    // Older than five minutes.
    let stale = sign(fakes::DEFAULT_WEBHOOK_SECRET, "msg_1", now - 600, &body).unwrap();
    assert_eq!(
        post("msg_1", now - 600, stale, body.clone())
            .await
            .unwrap()
            .status(),
        401
    );
    // Good, then replayed: both 200, acted on once (an unknown prediction is ignored).
    assert_eq!(
        post("msg_1", now, good.clone(), body.clone())
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        post("msg_1", now, good, body.clone())
            .await
            .unwrap()
            .status(),
        200
    );
    // Missing headers.
    let r = http
        .post(format!("{}/replicate/webhook", w.url))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thoughts_are_skipped_and_a_missed_webhook_is_covered_by_polling() {
    let w = world().await;
    let mut a = device(&w).await;
    let (doc, v1) = asset_with_image(&mut a).await;
    let ids = vec![
        request(
            &mut a,
            &doc,
            tool(
                "edit",
                "google",
                "gemini-3.1-flash-image",
                "[thought] warmer light",
                Some(&v1),
                json!({}),
            ),
        )
        .await,
        request(
            &mut a,
            &doc,
            tool(
                "upscale",
                "replicate",
                "nightmareai/real-esrgan",
                "no webhook",
                Some(&v1),
                json!({"scale": 2, "_fake_scenario": "no-webhook"}),
            ),
        )
        .await,
    ];
    a.sync.sync_until_idle().await.unwrap();
    let msgs = wait_finished(&mut a, &doc, &ids).await;
    for m in &msgs {
        assert_eq!(
            m.status,
            Some(MessageStatus::Succeeded),
            "{:?}: {:?}",
            m.text,
            m.error
        );
    }
    let asset = a.store.load(&doc).await.unwrap();
    let edit = asset
        .doc
        .reader()
        .version(&msgs[0].output_version_ids[0])
        .unwrap()
        .unwrap();
    // The real image (the input, inverted, at its size), not the 256x256 draft.
    assert_eq!((edit.blob.width, edit.blob.height), (64, 48));
    let up = asset
        .doc
        .reader()
        .version(&msgs[1].output_version_ids[0])
        .unwrap()
        .unwrap();
    assert_eq!((up.blob.width, up.blob.height), (128, 96));
    assert!(
        w.fakes
            .deliveries()
            .iter()
            .any(|d| format!("{:?}", d.outcome).contains("Dropped"))
    );
    assert_eq!(asset.doc.cost_events().unwrap().len(), 2);
}
