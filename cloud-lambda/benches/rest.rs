//! The REST API's reads at size: prints a table; run with
//! `cargo bench -p cloud-lambda --bench rest` (`-- --quick` for a smoke run).
//!
//! The server is the real `atelier-cloud serve` binary in its own process,
//! so its peak resident memory (`VmHWM`, reset before each measurement
//! through `/proc/PID/clear_refs`) is its own. The projections are seeded
//! straight into its database before it starts (10,000 listings; users
//! with 10,000 and 100,000 cost events), since those reads never load a
//! document. Each row: p50 of the request's wall time seen by the client
//! (the whole body read), the server's RSS before those requests and its
//! peak during them. The CSV rows show whether memory stays flat as the
//! CSV grows tenfold: what a request adds is the peak minus the RSS before
//! (what stays resident between requests is SQLite's page caches, bounded
//! per connection, and the allocator's free lists).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloud_lambda::auth::LocalIssuer;
use cloud_lambda::storage::DocStore;
use cloud_lambda::storage::embedded::EmbeddedStore;
use cloud_lambda::storage::projection::{CostEvent, Listing};
use core_sync::DocId;

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Resets the peak RSS counter to the current RSS.
    fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }

    /// Peak RSS since the last reset, in MiB.
    fn peak_mib(&self) -> f64 {
        self.status_mib("VmHWM:")
    }

    /// RSS now, in MiB.
    fn rss_mib(&self) -> f64 {
        self.status_mib("VmRSS:")
    }

    fn status_mib(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

async fn start_server(dir: &std::path::Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_atelier-cloud"))
        .args(["serve", "--no-jobs", "--requests-per-minute", "off"])
        .args(["--addr", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("atelier-cloud runs");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..400 {
        if http.get(format!("{url}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Server { child, url }
}

fn token(dir: &std::path::Path, user: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_atelier-cloud"))
        .args(["dev-token", "--user", user, "--data"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

const DAY: i64 = 86_400_000;
const START: i64 = 20_000 * DAY;

/// `assets` listings and `events` cost events (spread over 100-event
/// documents, 90 days and 4 models) for `user`.
async fn seed(store: &EmbeddedStore, user: &str, assets: usize, events: usize) {
    let p = store.projections();
    for i in 0..assets {
        let l = Listing {
            doc_id: DocId::random(),
            title: format!("Asset {i}"),
            cover: None,
            active_version_id: None,
            message_count: 12,
            cost_event_count: 0,
            created_at: START + i as i64,
            updated_at: START + i as i64,
            useq: 1,
            trash: None,
        };
        p.put_listing(user, &l).await.unwrap();
    }
    let models = [
        "gemini-3.1-flash-image",
        "gemini-3-pro-image",
        "nightmareai/real-esrgan",
        "bria/remove-background",
    ];
    for chunk in 0..events.div_ceil(100) {
        let doc = DocId::random();
        let batch: Vec<CostEvent> = (0..100.min(events - chunk * 100))
            .map(|k| {
                let n = chunk * 100 + k;
                CostEvent {
                    event_id: format!("{n:032x}"),
                    doc_id: doc.clone(),
                    ts: START + (n as i64 * 7_777_777) % (90 * DAY),
                    provider: if n % 4 < 2 { "google" } else { "replicate" }.into(),
                    model: models[n % 4].into(),
                    units: 1290.0,
                    unit: "tokens".into(),
                    cost_nano_usd: 38_779_200 + n as i64,
                    message_id: Some(format!("{n:032x}")),
                }
            })
            .collect();
        p.put_cost_events(user, &doc, &batch).await.unwrap();
    }
}

/// p50 wall time (ms) of `runs` GETs of `path`, reading every body byte,
/// and the body size of the last one.
async fn p50(
    http: &reqwest::Client,
    s: &Server,
    tok: &str,
    path: &str,
    runs: usize,
) -> (f64, usize) {
    let mut times = Vec::with_capacity(runs);
    let mut size = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let resp = http
            .get(format!("{}{path}", s.url))
            .bearer_auth(tok)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        size = resp.bytes().await.unwrap().len();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    (times[times.len() / 2], size)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (assets, small, large, runs): (usize, usize, usize, usize) = if quick {
        (1_000, 1_000, 10_000, 3)
    } else {
        (10_000, 10_000, 100_000, 15)
    };
    let dir = tempfile::tempdir().unwrap();
    let (lister, smaller, larger) = ("lister", "ten-thousand", "hundred-thousand");
    let seeded = Instant::now();
    {
        let store = EmbeddedStore::open(dir.path()).await.unwrap();
        seed(&store, &LocalIssuer::user_id(lister), assets, 0).await;
        seed(&store, &LocalIssuer::user_id(smaller), 0, small).await;
        seed(&store, &LocalIssuer::user_id(larger), 0, large).await;
        store.close().await;
    }
    eprintln!("seeded in {:.1} s", seeded.elapsed().as_secs_f64());
    let tokens: Vec<String> = [lister, smaller, larger]
        .iter()
        .map(|u| token(dir.path(), u))
        .collect();
    let server = start_server(dir.path()).await;
    let http = reqwest::Client::new();
    // Warm up (connections, SQLite page cache).
    p50(&http, &server, &tokens[0], "/assets", 2).await;
    p50(&http, &server, &tokens[2], "/costs", 1).await;

    println!("| request | data | p50 | body | server RSS before | server peak RSS |");
    println!("|---|---|---|---|---|---|");
    let rows: [(&str, usize, String, &str); 5] = [
        (
            "GET /assets (first page, 50)",
            0,
            format!("{assets} assets"),
            "/assets",
        ),
        ("GET /costs", 1, format!("{small} events"), "/costs"),
        ("GET /costs", 2, format!("{large} events"), "/costs"),
        ("GET /costs.csv", 1, format!("{small} events"), "/costs.csv"),
        ("GET /costs.csv", 2, format!("{large} events"), "/costs.csv"),
    ];
    for (what, user, data, path) in rows {
        let n = if path == "/costs.csv" {
            runs.div_ceil(3).max(3)
        } else {
            runs
        };
        server.reset_peak();
        let before = server.rss_mib();
        let (ms, size) = p50(&http, &server, &tokens[user], path, n).await;
        println!(
            "| {what} | {data} | {ms:.1} ms | {:.1} KiB | {before:.1} MiB | {:.1} MiB |",
            size as f64 / 1024.0,
            server.peak_mib()
        );
    }
}
