//! A write whose request is given up halfway (the server's request timeout,
//! a client hanging up) still runs to its end: once the append is stored,
//! the tool request it queued is started even though nobody reads the
//! answer. Otherwise a busy store (the AWS backend on moto under the load
//! bench answered pushes 408 after 30 s) leaves appended requests that
//! start only when their device pushes again, and listings that lag their
//! documents.
//!
//! Deterministic: the job launcher is a gate the test holds shut. The test
//! drives the request until the launch is under way, drops the request's
//! future there (what the timeout does), then opens the gate and waits for
//! the launch to finish. Both routes that write documents are covered: a
//! sync push and a REST tool request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use atelier_fixtures::fakes::{self, FakeConfig};
use axum::body::Body;
use axum::http::Request;
use cloud_lambda::app::{AppState, router};
use cloud_lambda::jobs::JobConfig;
use cloud_lambda::registry::{BUILTIN, Registry};
use cloud_lambda::write::RequestLauncher;
use core_sync::DocId;
use core_sync::model::{AssetDoc, NewMessage};
use core_sync::sync::protocol::{Bytes, DocPush, SYNC_PATH, SyncRequest};
use serde_json::json;
use tokio::sync::Notify;
use tower::ServiceExt;

mod support;
use support::{issuer, providers, until, user};

/// A launcher that stops every launch until the test opens it.
#[derive(Default)]
struct Gate {
    entered: Notify,
    open: Notify,
    launched: Mutex<Vec<String>>,
}

#[async_trait]
impl RequestLauncher for Gate {
    async fn queued(&self, _user: &str, _doc: &DocId, ids: Vec<String>) {
        self.entered.notify_one();
        self.open.notified().await;
        self.launched.lock().unwrap().extend(ids);
    }
}

/// How the request under test writes.
#[derive(Debug, Clone, Copy)]
enum Route {
    /// `POST /v1/sync` pushing a new asset with a tool request.
    SyncPush,
    /// `POST /assets/{id}/messages` asking a tool on an existing asset.
    RestMessage,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_given_up_while_it_starts_its_job_still_starts_it() {
    for route in [Route::SyncPush, Route::RestMessage] {
        given_up(route).await;
    }
}

async fn given_up(route: Route) {
    let fake_providers = fakes::spawn(FakeConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = AppState::embedded(dir.path(), issuer().verifier(), None)
        .await
        .unwrap();
    let gate = Arc::new(Gate::default());
    // Set before the jobs are: the first launcher set is the one used.
    state.writer.set_launcher(gate.clone());
    let state = state.with_jobs(
        Registry::parse(BUILTIN).unwrap(),
        providers(&fake_providers),
        JobConfig::default(),
    );
    let app = router(state.clone());
    let token = issuer().mint("alice", Duration::from_secs(3600));
    let doc_id = DocId::random();

    let mut doc = AssetDoc::create("Given up", 1_000);
    let request = match route {
        Route::SyncPush => {
            doc.append_message(
                NewMessage::tool_request("generate", "google", "gemini-3.1-flash-image", "a shoe"),
                2_000,
            )
            .unwrap();
            sync_push(&token, &doc_id, &mut doc)
        }
        Route::RestMessage => {
            // The asset exists first (no tool request: the gate stays out).
            let created = app
                .clone()
                .oneshot(sync_push(&token, &doc_id, &mut doc))
                .await
                .unwrap();
            assert_eq!(created.status(), 200, "{route:?}");
            Request::post(format!("/assets/{doc_id}/messages"))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({"type": "generate", "prompt": "a shoe"}).to_string(),
                ))
                .unwrap()
        }
    };

    // Driven until the append is stored and its launch under way, then
    // dropped: the request is given up there.
    let mut answer = Box::pin(app.oneshot(request));
    tokio::select! {
        r = &mut answer => panic!("{route:?}: answered while the launch was held: {r:?}"),
        () = gate.entered.notified() => {}
    }
    drop(answer);

    gate.open.notify_one();
    until(
        &format!("{route:?}: the tool request of a given-up write to start"),
        Duration::from_secs(20),
        || async { !gate.launched.lock().unwrap().is_empty() },
    )
    .await;
    let listing = state
        .store
        .projections()
        .get_listing(&user(), &doc_id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{route:?}: no listing"));
    assert_eq!(listing.title, "Given up", "{route:?}");
}

fn sync_push(token: &str, doc_id: &DocId, doc: &mut AssetDoc) -> Request<Body> {
    let body = SyncRequest {
        push: vec![DocPush {
            doc_id: doc_id.clone(),
            changes: Bytes(doc.changes_since(&[])),
        }],
        ..SyncRequest::default()
    };
    Request::post(SYNC_PATH)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}
