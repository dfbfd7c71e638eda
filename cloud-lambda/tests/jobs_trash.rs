//! Provider jobs of an asset moved to the trash spend nothing more: a
//! queued request never reaches the provider, a running Replicate
//! prediction is canceled at the provider as a user's cancel would be, and
//! the request ends `canceled` with the reason `asset_deleted`, which does
//! not count as an edit after the deletion. On the embedded server with
//! the fake providers, counting what reached them.

use atelier_fixtures::fakes::RecordedRequest;
use cloud_lambda::jobs::TRASHED_CODE;
use cloud_lambda::storage::jobs::OpStatus;
use core_sync::model::MessageStatus;
use core_sync::now_millis;
use serde_json::json;

mod support;
use support::*;

/// Provider calls that cost or create something (not cancels).
fn billable(requests: &[RecordedRequest]) -> usize {
    requests
        .iter()
        .filter(|r| r.method == "POST" && !r.path.ends_with("/cancel"))
        .count()
}

async fn trash(d: &mut Device, doc: &core_sync::DocId) {
    let mut a = d.store.load(doc).await.unwrap();
    a.doc.delete("laptop", now_millis()).unwrap();
    d.store.save(&mut a).await.unwrap();
    d.sync.local_change(doc.clone());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_request_on_an_asset_in_the_trash_never_reaches_the_provider() {
    let w = world().await;
    let mut a = device(&w).await;
    let (doc, v1) = asset_with_image(&mut a).await;
    a.sync.sync_until_idle().await.unwrap();
    // Offline: a request for each provider, then the asset goes to the
    // trash; the server gets all of it in one push.
    let ids = vec![
        request(
            &mut a,
            &doc,
            tool(
                "edit",
                "google",
                "gemini-3.1-flash-image",
                "make it blue",
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
                "bigger",
                Some(&v1),
                json!({}),
            ),
        )
        .await,
    ];
    trash(&mut a, &doc).await;
    a.sync.sync_until_idle().await.unwrap();
    for id in &ids {
        assert_eq!(w.job_ended(id).await, OpStatus::Canceled);
    }
    let msgs = wait_finished(&mut a, &doc, &ids).await;
    for m in &msgs {
        assert_eq!(m.status, Some(MessageStatus::Canceled));
        let e = m.error.as_ref().expect("a reason");
        assert_eq!(e.code, TRASHED_CODE);
        assert!(e.message.contains("trash"), "{}", e.message);
        assert!(e.message.contains("nothing was spent"), "{}", e.message);
    }
    assert_eq!(billable(&w.fakes.requests()), 0, "{:?}", w.fakes.requests());
    let op = w
        .state
        .ops
        .get_operation(&user(), &ids[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(op.attempts, 0);
    // Resuming launches nothing (both operations ended), so nothing can
    // reach a provider later; the trash shows no edit after the deletion.
    let launched = w.state.jobs.as_ref().unwrap().resume_all().await;
    assert_eq!(launched, 0, "a resume launched an ended operation");
    assert_eq!(billable(&w.fakes.requests()), 0);
    let mut asset = a.store.load(&doc).await.unwrap();
    let deletion = asset.doc.deletion().unwrap().expect("still in the trash");
    assert!(!deletion.edited_after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_prediction_is_canceled_when_its_asset_goes_to_the_trash() {
    let w = world().await;
    let mut a = device(&w).await;
    let (doc, id) = running_slow_upscale(&mut a).await;
    trash(&mut a, &doc).await;
    a.sync.sync_until_idle().await.unwrap();
    wait_cancel_reached(&w.fakes).await;
    assert_eq!(w.job_ended(&id).await, OpStatus::Canceled);
    let predictions = w
        .fakes
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/predictions"))
        .count();
    assert_eq!(predictions, 1, "one prediction, never a second");
    let m = wait_finished(&mut a, &doc, std::slice::from_ref(&id)).await;
    assert_eq!(m[0].status, Some(MessageStatus::Canceled));
    let e = m[0].error.as_ref().expect("a reason");
    assert_eq!(e.code, TRASHED_CODE);
    assert!(e.message.contains("while this ran"), "{}", e.message);
    let mut asset = a.store.load(&doc).await.unwrap();
    assert!(m[0].output_version_ids.is_empty());
    assert_eq!(asset.doc.versions().unwrap().len(), 1, "no result kept");
    assert!(asset.doc.deletion().unwrap().is_some());
}
