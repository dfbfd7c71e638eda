//! Jobs run once across processes, on both backends: servers sharing one
//! store (the embedded one opened twice on one data directory, or one AWS
//! deployment on moto) race on one operation and the fake provider sees
//! one call; a server that dies mid-job (its own tokio runtime shut down,
//! as a crash would) leaves a lease another server takes over once it
//! expires, resuming the same Replicate prediction.
//!
//! A device reaches the store through a server without jobs, so only the
//! servers under test ever run one.

mod support;

use std::sync::Arc;
use std::time::Duration;

use atelier_fixtures::fakes::{self, FakeConfig, RunningFakes};
use cloud_lambda::app::AppState;
use cloud_lambda::jobs::{JobConfig, Jobs};
use cloud_lambda::storage::jobs::OpStatus;
use core_sync::model::MessageStatus;
use core_sync::now_millis;
use serde_json::json;
use support::stores::{Backend, SharedStore, serve};
use support::{Device, asset_with_image, device_at, issuer, request, tool, until, user};

fn job_config(lease: Duration) -> JobConfig {
    JobConfig {
        retry_base: Duration::from_millis(50),
        poll_interval: Duration::from_millis(200),
        lease,
        ..JobConfig::default()
    }
}

fn jobs_of(state: &AppState) -> Arc<Jobs> {
    state.jobs.clone().expect("jobs on")
}

/// Calls the fakes saw on paths ending with `suffix` (`POST` only).
fn calls(fakes: &RunningFakes, suffix: &str) -> usize {
    fakes
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with(suffix))
        .count()
}

/// Waits until the operation's own record says succeeded and its lease
/// is given up: both follow the document's result, which a device sees
/// first.
async fn recorded_and_released(server: &AppState, id: &str) {
    until(
        "the operation recorded succeeded, its lease given up",
        Duration::from_secs(20),
        || async {
            let op = server
                .ops
                .get_operation(&user(), id)
                .await
                .unwrap()
                .unwrap();
            op.status == OpStatus::Succeeded
                && server.ops.lease(&user(), id).await.unwrap().is_none()
        },
    )
    .await;
}

/// A device of alice with an asset and a queued request, pushed through
/// `url`; returns the device, the document and the request's id.
async fn queued_request(
    url: &str,
    msg: core_sync::model::NewMessage,
) -> (Device, core_sync::DocId, String) {
    let token = issuer().mint("alice", Duration::from_secs(3600));
    let mut d = device_at(url, &token).await;
    let (doc, _) = asset_with_image(&mut d).await;
    let id = request(&mut d, &doc, msg).await;
    d.sync.sync_until_idle().await.unwrap();
    (d, doc, id)
}

/// The request as the device sees it once its job ended, with the
/// document's cost events.
async fn ended(d: &mut Device, doc: &core_sync::DocId, id: &str) -> (MessageStatus, usize, usize) {
    let m = support::wait_finished(d, doc, &[id.to_owned()])
        .await
        .remove(0);
    let a = d.store.load(doc).await.unwrap();
    (
        m.status.unwrap(),
        m.output_version_ids.len(),
        a.doc.cost_events().unwrap().len(),
    )
}

async fn two_servers_racing_on_one_operation_make_one_provider_call(backend: Backend) {
    let fakes = fakes::spawn(FakeConfig {
        slow: Duration::from_millis(1500),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let store = SharedStore::new(backend).await;
    let front = serve(store.server(None).await).await;
    let front = &front.url;
    let config = job_config(Duration::from_secs(30));
    let a = store.server(Some((config.clone(), &fakes))).await;
    let b = store.server(Some((config, &fakes))).await;
    let (ja, jb) = (jobs_of(&a), jobs_of(&b));
    let msg = tool(
        "generate",
        "google",
        "gemini-3.1-flash-image",
        "a lighthouse [slow]",
        None,
        json!({}),
    );
    let (mut d, doc, id) = queued_request(front, msg).await;
    let alice = user();

    // Both servers see the request at once (as two pushes would bring it):
    // one creates the operation and launches it.
    tokio::join!(
        ja.start(&alice, &doc, vec![id.clone()]),
        jb.start(&alice, &doc, vec![id.clone()]),
    );
    // While the provider call is in flight, every other way to run the
    // job, on both servers, finds the lease taken.
    until("the provider call", Duration::from_secs(10), || async {
        calls(&fakes, ":generateContent") > 0
    })
    .await;
    let lease = a.ops.lease(&user(), &id).await.unwrap().expect("a lease");
    assert!(lease.expires_at > now_millis(), "{lease:?}");
    tokio::join!(
        ja.run(&alice, &id),
        jb.run(&alice, &id),
        ja.resume_all(),
        jb.resume_all(),
    );
    assert_eq!(a.ops.lease(&user(), &id).await.unwrap(), Some(lease));

    assert_eq!(
        ended(&mut d, &doc, &id).await,
        (MessageStatus::Succeeded, 1, 1)
    );
    recorded_and_released(&b, &id).await;
    let op = b.ops.get_operation(&user(), &id).await.unwrap().unwrap();
    assert_eq!(op.attempts, 1);
    assert_eq!(calls(&fakes, ":generateContent"), 1, "one paid call");
    // Later resumes launch nothing, and a direct run finds it finished.
    assert_eq!(jb.resume_all().await, 0, "an ended operation was launched");
    ja.run(&user(), &id).await;
    assert_eq!(calls(&fakes, ":generateContent"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_racing_on_one_operation_make_one_provider_call_on_the_embedded_backend() {
    two_servers_racing_on_one_operation_make_one_provider_call(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_racing_on_one_operation_make_one_provider_call_on_the_aws_backend() {
    two_servers_racing_on_one_operation_make_one_provider_call(Backend::Aws).await;
}

async fn a_dead_servers_job_is_taken_over_and_resumes_its_prediction(backend: Backend) {
    let fakes = fakes::spawn(FakeConfig {
        step: Duration::from_millis(100),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let store = SharedStore::new(backend).await;
    let front = serve(store.server(None).await).await;
    let front = &front.url;
    let msg = tool(
        "remove-background",
        "replicate",
        "bria/remove-background",
        "",
        None,
        json!({"_fake_scenario": "slow"}),
    );
    let (mut d, doc, id) = queued_request(front, msg).await;

    // Server A, on a runtime of its own, starts the job; once its
    // prediction is made and recorded, A dies mid-job.
    let a_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let a = store.server(Some((job_config(Duration::from_secs(3)), &fakes)));
    let (user_a, doc_a, id_a) = (user(), doc.clone(), id.clone());
    a_runtime.spawn(async move {
        let a = a.await;
        jobs_of(&a).start(&user_a, &doc_a, vec![id_a]).await;
        std::future::pending::<()>().await;
    });
    let b = store
        .server(Some((job_config(Duration::from_secs(1)), &fakes)))
        .await;
    until("A's prediction", Duration::from_secs(20), || async {
        b.ops
            .get_operation(&user(), &id)
            .await
            .unwrap()
            .is_some_and(|op| op.provider_ref.is_some())
    })
    .await;
    a_runtime.shutdown_background();
    let dead = b.ops.lease(&user(), &id).await.unwrap().expect("A's lease");
    assert_eq!(calls(&fakes, "/predictions"), 1);

    // B, started now, leaves a live lease alone…
    let jb = jobs_of(&b);
    if dead.expires_at - now_millis() > 1_000 {
        jb.run(&user(), &id).await;
        assert_eq!(b.ops.lease(&user(), &id).await.unwrap(), Some(dead.clone()));
    }
    // …and takes the job over once it expires, following A's prediction.
    let _sweep = jb.keep_resuming();
    assert_eq!(
        ended(&mut d, &doc, &id).await,
        (MessageStatus::Succeeded, 1, 1)
    );
    assert!(
        now_millis() >= dead.expires_at,
        "not before A's lease ran out"
    );
    assert_eq!(calls(&fakes, "/predictions"), 1, "one prediction, A's");
    recorded_and_released(&b, &id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_servers_job_is_taken_over_and_resumes_its_prediction_on_the_embedded_backend() {
    a_dead_servers_job_is_taken_over_and_resumes_its_prediction(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_servers_job_is_taken_over_and_resumes_its_prediction_on_the_aws_backend() {
    a_dead_servers_job_is_taken_over_and_resumes_its_prediction(Backend::Aws).await;
}
