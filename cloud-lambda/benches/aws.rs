//! Sync rounds on the AWS backend (DynamoDB + S3 on moto) beside the
//! embedded backend (SQLite + files), in one run: prints a table; run with
//! `cargo bench -p cloud-lambda --bench aws` (`-- --quick` for a smoke run).
//!
//! Each round is one `POST /v1/sync` through the real Router in-process
//! (`tower::ServiceExt::oneshot`: no socket between device and server, so
//! the difference is the storage). The document starts with 200 messages
//! (its snapshot outweighs small pushes; the server compacts every 32
//! entries, inside the measured pushes). Rounds: an idle poll (nothing
//! new), a push of one change and of ten changes (the document warm in the
//! server's cache), the same push on a server without a document cache (as
//! a Lambda instance that has not seen the document), and a second device
//! pulling one change. For the
//! AWS backend the table adds the DynamoDB and S3 requests per round
//! (counted by the SDK interceptor, mean over the rounds) and the time per
//! request, which is moto's (a Python server), not DynamoDB's: compare
//! request counts with AWS, latencies only with each other.

use std::time::{Duration, Instant};

use atelier_fixtures::moto::Moto;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use cloud_lambda::app::{AppState, router};
use cloud_lambda::auth::LocalIssuer;
use cloud_lambda::storage::aws::{Aws, AwsOptions, RequestCounts};
use core_sync::DocId;
use core_sync::model::{AssetDoc, NewMessage};
use core_sync::sync::protocol::{Bytes, DocPush, SYNC_PATH, SyncRequest, SyncResponse};
use tower::ServiceExt;

/// One backend under measurement.
struct Backend {
    name: &'static str,
    /// `None`: the embedded backend in `dir`.
    aws: Option<Aws>,
    dir: tempfile::TempDir,
    issuer: LocalIssuer,
}

impl Backend {
    async fn state(&self) -> AppState {
        match &self.aws {
            Some(aws) => AppState::aws(aws, self.issuer.verifier(), None),
            None => AppState::embedded(self.dir.path(), self.issuer.verifier(), None)
                .await
                .unwrap(),
        }
    }

    fn counts(&self) -> RequestCounts {
        self.aws
            .as_ref()
            .map(|a| a.requests().snapshot())
            .unwrap_or_default()
    }
}

async fn sync(state: &AppState, token: &str, req: &SyncRequest) -> SyncResponse {
    let request = Request::post(SYNC_PATH)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(req).unwrap()))
        .unwrap();
    let resp = router(state.clone()).oneshot(request).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn request(cursor: u64, push: Option<(&DocId, Vec<u8>)>) -> SyncRequest {
    SyncRequest {
        feed_cursor: cursor,
        push: push
            .map(|(doc_id, changes)| DocPush {
                doc_id: doc_id.clone(),
                changes: Bytes(changes),
            })
            .into_iter()
            .collect(),
        ..SyncRequest::default()
    }
}

/// Latencies and requests of one kind of round.
#[derive(Default)]
struct Row {
    times: Vec<Duration>,
    requests: RequestCounts,
}

impl Row {
    fn pct(&self, p: f64) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        t[((t.len() - 1) as f64 * p).round() as usize]
    }

    fn add(&mut self, took: Duration, requests: RequestCounts) {
        self.times.push(took);
        for (k, n) in requests.0 {
            *self.requests.0.entry(k).or_default() += n;
        }
    }

    /// Mean requests per round, e.g. `Query 1, TransactWriteItems 1`.
    fn per_round(&self) -> String {
        if self.requests.0.is_empty() {
            return "-".into();
        }
        let rounds = self.times.len() as f64;
        self.requests
            .0
            .iter()
            .map(|((_, op), n)| format!("{op} {}", trim(*n as f64 / rounds)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn trim(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// A document of 200 messages, and the next `n` changes to it.
struct Doc {
    id: DocId,
    doc: AssetDoc,
    edits: usize,
}

impl Doc {
    fn new() -> Doc {
        let mut doc = AssetDoc::create("Bench", 1_000);
        for i in 0..200 {
            doc.append_message(NewMessage::user(format!("earlier message {i}")), 1_000)
                .unwrap();
        }
        Doc {
            id: DocId::random(),
            doc,
            edits: 0,
        }
    }

    /// A push of the whole document.
    fn first(&mut self) -> SyncRequest {
        request(0, Some((&self.id, self.doc.changes_since(&[]))))
    }

    /// A push of `n` new changes.
    fn push(&mut self, cursor: u64, n: usize) -> SyncRequest {
        let heads = self.doc.heads();
        for _ in 0..n {
            self.edits += 1;
            let text = format!("edit {}", self.edits);
            self.doc
                .append_message(NewMessage::user(text), 2_000)
                .unwrap();
        }
        request(cursor, Some((&self.id, self.doc.changes_since(&heads))))
    }
}

const ROWS: [&str; 5] = [
    "idle poll",
    "push 1 change (warm)",
    "pull 1 change (other device)",
    "push 10 changes (warm)",
    "push 1 change (no doc cache)",
];

/// Runs every kind of round `reps` times on `b`. `tokens`: the user of the
/// warm server and the user of the one without a document cache (two
/// users, so neither server's memory of the user's counter goes stale).
async fn measure(b: &Backend, tokens: [&str; 2], reps: usize) -> Vec<(&'static str, Row)> {
    let [token, cold_token] = tokens;
    let state = b.state().await;
    // Another server's view: no document kept warm, so every push loads
    // the document first (a Lambda instance that has not seen it).
    let cold = b.state().await.with_cache_bytes(0);
    let (mut doc, mut cold_doc) = (Doc::new(), Doc::new());
    let mut cursor = sync(&state, token, &doc.first()).await.feed_cursor;
    let mut cold_cursor = sync(&cold, cold_token, &cold_doc.first()).await.feed_cursor;
    let mut rows: Vec<(&'static str, Row)> = ROWS.iter().map(|n| (*n, Row::default())).collect();
    for _ in 0..reps {
        let mut timed = async |row: usize, state: &AppState, token: &str, req: SyncRequest| {
            let (before, t) = (b.counts(), Instant::now());
            let resp = sync(state, token, &req).await;
            rows[row].1.add(t.elapsed(), b.counts().since(&before));
            resp
        };
        timed(0, &state, token, request(cursor, None)).await;
        let pulled_from = cursor;
        let push = doc.push(cursor, 1);
        cursor = timed(1, &state, token, push).await.feed_cursor;
        let pulled = timed(2, &state, token, request(pulled_from, None)).await;
        assert_eq!(pulled.docs.len(), 1);
        let push = doc.push(cursor, 10);
        cursor = timed(3, &state, token, push).await.feed_cursor;
        let push = cold_doc.push(cold_cursor, 1);
        cold_cursor = timed(4, &cold, cold_token, push).await.feed_cursor;
    }
    rows
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 10 } else { 100 };
    let moto = Moto::start();
    let keys = tempfile::tempdir().unwrap();
    let issuer =
        LocalIssuer::load_or_create(keys.path(), "atelier-local", "atelier-desktop").unwrap();
    let token = issuer.mint("bench", Duration::from_secs(3600));
    let cold_token = issuer.mint("bench-cold", Duration::from_secs(3600));
    let aws = Aws::connect(AwsOptions {
        region: Some("eu-central-1".into()),
        ..AwsOptions::emulator("bench-", moto.url())
    })
    .await
    .unwrap();
    aws.init().await.unwrap();
    let backends = [
        Backend {
            name: "embedded",
            aws: None,
            dir: tempfile::tempdir().unwrap(),
            issuer: LocalIssuer::load_or_create(keys.path(), "atelier-local", "atelier-desktop")
                .unwrap(),
        },
        Backend {
            name: "aws (moto)",
            aws: Some(aws),
            dir: tempfile::tempdir().unwrap(),
            issuer,
        },
    ];
    println!("sync rounds through the Router, {reps} each (p50/p99 in ms)\n");
    println!(
        "{:<30} {:<11} {:>8} {:>8} {:>12}  requests per round (AWS)",
        "round", "backend", "p50", "p99", "ms/request"
    );
    for b in &backends {
        for (name, row) in measure(b, [&token, &cold_token], reps).await {
            let total = row.requests.total();
            let per_request = if total == 0 {
                "-".to_owned()
            } else {
                ms(row.times.iter().sum::<Duration>() / total as u32)
            };
            println!(
                "{name:<30} {:<11} {:>8} {:>8} {per_request:>12}  {}",
                b.name,
                ms(row.pct(0.5)),
                ms(row.pct(0.99)),
                row.per_round()
            );
        }
    }
}
