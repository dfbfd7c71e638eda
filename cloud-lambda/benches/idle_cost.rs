//! What an idle device costs per month on AWS, from measured inputs:
//! `cargo bench -p cloud-lambda --bench idle_cost` (`-- --quick`: fewer
//! polls). Prints the measurements, then a table of monthly cost per idle
//! device for Lambda memory sizes, idle poll intervals and long-poll holds.
//!
//! Measured here: an idle poll as Lambda runs it (an API Gateway HTTP API
//! event through `LambdaApp::handle`, release build, the AWS backend on
//! moto): its DynamoDB and S3 requests (counted by the SDK interceptor),
//! its handler time, and its answer's size; and a held poll's requests per
//! second of holding (the feed head is polled while a poll is held).
//!
//! Modelled (stated in the output): an idle device polls every `interval`
//! when the server answers at once (hold 0), or back to back when it holds
//! each poll `hold` seconds (the engine asks again at once after a poll
//! held to its end). Lambda bills the handler's time at 1 ms granularity,
//! scaled by the CPU share of the memory size (1,769 MB = one vCPU; the
//! time measured here is on one core), plus every held second. Each
//! DynamoDB read of an idle poll is one read request unit (strongly
//! consistent, under 4 KB). Prices: AWS list prices, eu-central-1, as
//! recorded in [`PRICES`]; check them before quoting.

use std::time::{Duration, Instant};

use atelier_fixtures::moto::Moto;
use cloud_lambda::app::AppState;
use cloud_lambda::auth::LocalIssuer;
use cloud_lambda::lambda::LambdaApp;
use cloud_lambda::limits::{ApiConfig, ApiLimits};
use cloud_lambda::storage::aws::{Aws, AwsOptions, RequestCounts};
use core_sync::DocId;
use core_sync::model::AssetDoc;
use core_sync::sync::protocol::SyncResponse;
use lambda_http::{Context, LambdaEvent};
use serde_json::{Value, json};

/// eu-central-1 list prices (USD).
struct Prices {
    /// API Gateway HTTP API, per request (first 300 million a month).
    apigw_request: f64,
    /// Lambda, per request.
    lambda_request: f64,
    /// Lambda (x86), per GB-second.
    lambda_gb_second: f64,
    /// DynamoDB on-demand, per read request unit.
    ddb_read: f64,
    /// DynamoDB on-demand, per write request unit.
    ddb_write: f64,
    /// S3 Standard GET, per request.
    s3_get: f64,
    /// Data out to the internet, per GB.
    transfer_gb: f64,
}

const PRICES: Prices = Prices {
    apigw_request: 1.20 / 1e6,
    lambda_request: 0.20 / 1e6,
    lambda_gb_second: 0.000_016_666_7,
    ddb_read: 0.1525 / 1e6,
    ddb_write: 0.7625 / 1e6,
    s3_get: 0.000_43 / 1e3,
    transfer_gb: 0.09,
};

const MONTH_SECS: f64 = 30.0 * 86_400.0;
/// Memory at which Lambda gives a function one whole vCPU.
const FULL_CPU_MB: f64 = 1_769.0;

struct Measured {
    handler_ms_p50: f64,
    handler_ms_p99: f64,
    reads_per_poll: f64,
    writes_per_poll: f64,
    s3_gets_per_poll: f64,
    answer_bytes: f64,
    reads_per_held_second: f64,
}

fn event(token: &str, cursor: u64) -> Value {
    let path = format!(
        "{}/../fixtures/events/apigw-v2/sync-json.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("__ACCESS_TOKEN__", token);
    let mut e: Value = serde_json::from_str(&text).unwrap();
    let body = json!({"feedCursor": cursor, "waitMs": 25_000}).to_string();
    e["headers"]["content-length"] = json!(body.len().to_string());
    e["body"] = json!(body);
    e
}

async fn poll(app: &LambdaApp, token: &str, cursor: u64) -> (Value, usize) {
    let out = app
        .handle(LambdaEvent::new(event(token, cursor), Context::default()))
        .await
        .unwrap();
    assert_eq!(out["statusCode"], 200, "{out}");
    let size = serde_json::to_vec(&out).unwrap().len();
    (out, size)
}

fn reads(c: &RequestCounts) -> u64 {
    ["Query", "GetItem", "BatchGetItem", "Scan"]
        .iter()
        .map(|op| c.of(op))
        .sum()
}

fn writes(c: &RequestCounts) -> u64 {
    [
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "TransactWriteItems",
        "BatchWriteItem",
    ]
    .iter()
    .map(|op| c.of(op))
    .sum()
}

fn app_with_hold(aws: &Aws, issuer: &LocalIssuer, hold_ms: u64) -> LambdaApp {
    let state =
        AppState::aws(aws, issuer.verifier(), None).with_limits(ApiLimits::new(ApiConfig {
            long_poll_max_ms: hold_ms,
            ..ApiConfig::default()
        }));
    LambdaApp::new(state)
}

async fn measure(polls: usize) -> Measured {
    let moto = Moto::start();
    let aws = Aws::connect(AwsOptions::emulator("idle-cost-", moto.url()))
        .await
        .unwrap();
    aws.init().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let issuer = LocalIssuer::load_or_create(dir.path(), "atelier-bench", "bench").unwrap();
    let token = issuer.mint("idle", Duration::from_secs(3600));
    let user = LocalIssuer::user_id("idle");

    // The device has everything: one document, its cursor at the head.
    let app = app_with_hold(&aws, &issuer, 0);
    let mut doc = AssetDoc::create("Idle", 1_000);
    let changes = core_sync::model::chunks::changes(&doc.changes_since(&[])).unwrap();
    app.state()
        .writer
        .push(&user, &DocId::random(), changes)
        .await
        .unwrap();
    let (first, _) = poll(&app, &token, 0).await;
    let body: SyncResponse = serde_json::from_str(first["body"].as_str().unwrap()).unwrap();
    let cursor = body.feed_cursor;

    // Warm (a Lambda instance serves many polls); then measure.
    for _ in 0..5 {
        poll(&app, &token, cursor).await;
    }
    let before = aws.requests().snapshot();
    let mut times = Vec::with_capacity(polls);
    let mut bytes = 0usize;
    for _ in 0..polls {
        let t = Instant::now();
        let (out, size) = poll(&app, &token, cursor).await;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        bytes += size;
        assert!(out["body"].as_str().unwrap().contains("\"docs\":[]"));
    }
    let counts = aws.requests().snapshot().since(&before);
    times.sort_by(f64::total_cmp);
    let n = polls as f64;

    // A held poll: what holding costs in requests per second.
    let held_ms = 2_000;
    let holding = app_with_hold(&aws, &issuer, held_ms);
    let before = aws.requests().snapshot();
    let t = Instant::now();
    poll(&holding, &token, cursor).await;
    let held = t.elapsed().as_secs_f64();
    let during = aws.requests().snapshot().since(&before);

    Measured {
        handler_ms_p50: times[times.len() / 2],
        handler_ms_p99: times[(times.len() * 99 / 100).min(times.len() - 1)],
        reads_per_poll: reads(&counts) as f64 / n,
        writes_per_poll: writes(&counts) as f64 / n,
        s3_gets_per_poll: counts.of("GetObject") as f64 / n,
        answer_bytes: bytes as f64 / n,
        reads_per_held_second: reads(&during).saturating_sub(2) as f64 / held,
    }
}

/// Monthly cost of one idle device: (total, API Gateway, Lambda, DynamoDB + S3).
fn monthly(
    m: &Measured,
    memory_mb: f64,
    interval_s: f64,
    hold_s: f64,
) -> (f64, f64, f64, f64, f64) {
    let period = if hold_s > 0.0 { hold_s } else { interval_s };
    let requests = MONTH_SECS / period;
    let cpu_scale = (FULL_CPU_MB / memory_mb).max(1.0);
    let billed_s = (m.handler_ms_p50 * cpu_scale).ceil() / 1e3 + hold_s;
    let gb = memory_mb / 1024.0;
    let apigw = requests * PRICES.apigw_request;
    let lambda = requests * (PRICES.lambda_request + billed_s * gb * PRICES.lambda_gb_second);
    let reads = requests * (m.reads_per_poll + m.reads_per_held_second * hold_s);
    let storage = reads * PRICES.ddb_read
        + requests * (m.writes_per_poll * PRICES.ddb_write + m.s3_gets_per_poll * PRICES.s3_get);
    let transfer = requests * m.answer_bytes / 1e9 * PRICES.transfer_gb;
    (
        apigw + lambda + storage + transfer,
        requests,
        apigw,
        lambda,
        storage,
    )
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let m = measure(if quick { 20 } else { 200 }).await;
    println!("Idle poll, measured (Lambda handler in-process, AWS backend on moto):");
    println!(
        "  handler time p50 {:.2} ms, p99 {:.2} ms (one core; moto's latency included)",
        m.handler_ms_p50, m.handler_ms_p99
    );
    println!(
        "  DynamoDB reads {:.2}, writes {:.2}, S3 GETs {:.2} per poll; answer {:.0} bytes",
        m.reads_per_poll, m.writes_per_poll, m.s3_gets_per_poll, m.answer_bytes
    );
    println!(
        "  a held poll reads the feed head {:.1} times per second held",
        m.reads_per_held_second
    );
    println!();
    println!("Cost per idle device per month, eu-central-1 list prices (USD):");
    println!(
        "| memory MB | idle interval s | hold s | requests/month | API Gateway | Lambda | DynamoDB+S3 | total |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for memory in [128.0, 256.0, 512.0] {
        for interval in [30.0, 60.0, 120.0] {
            for hold in [0.0, 25.0] {
                if hold > 0.0 && interval != 30.0 {
                    continue; // a held poll does not wait out the interval
                }
                let (total, requests, apigw, lambda, storage) = monthly(&m, memory, interval, hold);
                println!(
                    "| {memory:.0} | {interval:.0} | {hold:.0} | {requests:.0} | {apigw:.4} | {lambda:.4} | {storage:.4} | {total:.4} |"
                );
            }
        }
    }
}
