//! Load: many devices against one real `atelier-cloud serve`, then a check
//! that every device converged with nothing lost or duplicated. Prints a
//! table; run with `cargo bench -p cloud-lambda --bench load` (options after
//! `--`: `--devices N` (50), `--users N` (devices / 2), `--seconds N` (30),
//! `--quick` (10 devices, 8 s), `--serve-arg ARG` (repeatable, passed to
//! `serve`), `--aws` (the AWS backend on a fresh moto server of its own,
//! tables and buckets made by `atelier-cloud init-aws`), `--server-log FILE`
//! (the server's log, at `RUST_LOG` or warn, instead of nowhere)).
//!
//! The server is the release `atelier-cloud serve` binary in its own
//! process (its peak RSS and CPU are read from /proc), with its default
//! limits, jobs on, pointed at the fake providers (`atelier_fixtures::
//! fakes`, in this process). Each device is a real sync client
//! (`SyncClient::run`: pushes at once, long polls when idle) over HTTP, with
//! a store of its own; devices of one user share that user's assets. For
//! the bounded time, each device acts about once a second: appends a note
//! (most often), creates an asset, queues a text-to-image job, or reads the
//! REST API (`GET /assets`, `GET /costs`) as a script would. Every request
//! is timed by kind through a wrapping transport.
//!
//! Then the edits stop, every device syncs until its user's devices agree
//! (same documents, same heads) and every job has ended, and the bench
//! checks that each acknowledged note is there exactly once. It fails
//! (after printing the table) on a lost or duplicated edit, devices that
//! did not converge, or any 5xx.

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atelier_fixtures::fakes::{self, FakeConfig};
use atelier_fixtures::moto::Moto;
use core_sync::blob::BlobStore;
use core_sync::model::{MessageStatus, NewMessage};
use core_sync::store::{Store, StoreOptions};
use core_sync::sync::client::SyncClient;
use core_sync::sync::engine::EngineConfig;
use core_sync::sync::protocol::{SyncRequest, SyncResponse};
use core_sync::sync::transport::{HttpTransport, OutgoingBlob, SyncError, Transport};
use core_sync::{DocId, now_millis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ------------------------------------------------------------ measuring

/// Latencies and failures of one kind of request.
#[derive(Default)]
struct Kind {
    times: Vec<Duration>,
    errors: BTreeMap<String, u64>,
}

/// Every request of the run, by kind.
#[derive(Default, Clone)]
struct Meter(Arc<Mutex<BTreeMap<&'static str, Kind>>>);

impl Meter {
    fn record(&self, kind: &'static str, took: Duration, outcome: Result<(), String>) {
        let mut kinds = self.0.lock().unwrap();
        let k = kinds.entry(kind).or_default();
        match outcome {
            Ok(()) => k.times.push(took),
            Err(e) => *k.errors.entry(e).or_default() += 1,
        }
    }

    fn error_label(e: &SyncError) -> String {
        match e {
            SyncError::Server { status, .. } => status.to_string(),
            SyncError::Network(_) => "network".into(),
            other => format!("{other}"),
        }
    }
}

/// The HTTP transport, timing each request by kind.
struct Timed {
    inner: HttpTransport,
    meter: Meter,
}

#[async_trait::async_trait]
impl Transport for Timed {
    async fn sync(
        &self,
        req: &SyncRequest,
        token: &str,
    ) -> Result<(SyncResponse, usize), SyncError> {
        let kind = if !req.push.is_empty() {
            "sync: push"
        } else if !req.resync.is_empty() {
            "sync: resync"
        } else if req.wait_ms > 0 {
            "sync: long poll (held)"
        } else {
            "sync: pull"
        };
        let t = Instant::now();
        let r = self.inner.sync(req, token).await;
        let outcome = r.as_ref().map(|_| ()).map_err(Meter::error_label);
        self.meter.record(kind, t.elapsed(), outcome);
        r
    }

    async fn put_blob(&self, blob: &OutgoingBlob<'_>, token: &str) -> Result<(), SyncError> {
        let t = Instant::now();
        let r = self.inner.put_blob(blob, token).await;
        let outcome = r.as_ref().map(|_| ()).map_err(Meter::error_label);
        self.meter.record("image upload", t.elapsed(), outcome);
        r
    }

    async fn get_blob(
        &self,
        sha256: &str,
        into: &BlobStore,
        token: &str,
    ) -> Result<bool, SyncError> {
        let t = Instant::now();
        let r = self.inner.get_blob(sha256, into, token).await;
        let outcome = r.as_ref().map(|_| ()).map_err(Meter::error_label);
        self.meter.record("image download", t.elapsed(), outcome);
        r
    }

    fn moves_blobs(&self) -> bool {
        true
    }
}

// --------------------------------------------------------------- server

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

/// User and system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// A `/proc/PID/status` size in MiB (`VmHWM`: peak resident set).
fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn start_server(
    dir: &std::path::Path,
    fakes_url: &str,
    extra: &[String],
    log: Option<&str>,
) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_atelier-cloud"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir)
        .args(extra)
        .env("AWS_REGION", "eu-central-1")
        .env("ATELIER_GEMINI_BASE_URL", fakes_url)
        .env("ATELIER_REPLICATE_BASE_URL", fakes_url)
        .env("GEMINI_API_KEY", fakes::DEFAULT_API_KEY)
        .env("REPLICATE_API_TOKEN", fakes::DEFAULT_REPLICATE_TOKEN)
        .env("REPLICATE_WEBHOOK_SECRET", fakes::DEFAULT_WEBHOOK_SECRET)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(match log {
            Some(path) => std::fs::File::create(path)
                .expect("the server log can be created")
                .into(),
            None => Stdio::null(),
        })
        .spawn()
        .expect("atelier-cloud runs");
    // Killed and waited for on drop, also when it never answers.
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    for _ in 0..400 {
        if http
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("atelier-cloud serve did not answer /healthz within 10 s");
}

fn token(dir: &std::path::Path, user: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_atelier-cloud"))
        .args(["dev-token", "--user", user, "--data"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "dev-token: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

// -------------------------------------------------------------- devices

struct Device {
    user: usize,
    store: Store,
    token: String,
    /// Notes whose save returned Ok.
    acked: Vec<String>,
    jobs: u64,
}

/// One action of a device, about once a second until `until`.
async fn act(
    d: &mut Device,
    n: u64,
    rng: &mut StdRng,
    http: &reqwest::Client,
    url: &str,
    meter: &Meter,
) {
    let ids = d.store.ids().await.unwrap();
    let roll: f64 = rng.random();
    if ids.is_empty() || roll < 0.08 {
        let mut asset = d
            .store
            .create(&format!("u{} asset", d.user), now_millis())
            .await
            .unwrap();
        let text = format!("note u{}-{}-{n}", d.user, d.store.dir().display());
        asset
            .doc
            .append_message(NewMessage::user(text.clone()), now_millis())
            .unwrap();
        d.store.save(&mut asset).await.unwrap();
        d.acked.push(text);
    } else if roll < 0.78 {
        let id = &ids[rng.random_range(0..ids.len())];
        let mut asset = d.store.load(id).await.unwrap();
        let text = format!("note u{}-{}-{n}", d.user, d.store.dir().display());
        asset
            .doc
            .append_message(NewMessage::user(text.clone()), now_millis())
            .unwrap();
        d.store.save(&mut asset).await.unwrap();
        d.acked.push(text);
    } else if roll < 0.88 {
        let id = &ids[rng.random_range(0..ids.len())];
        let mut asset = d.store.load(id).await.unwrap();
        let msg = NewMessage {
            params: Some(serde_json::json!({"aspectRatio": "1:1"})),
            ..NewMessage::tool_request(
                "generate",
                "google",
                "gemini-3.1-flash-image",
                format!("a red shoe {n}"),
            )
        };
        asset.doc.append_message(msg, now_millis()).unwrap();
        d.store.save(&mut asset).await.unwrap();
        d.jobs += 1;
    } else {
        let (kind, path) = if roll < 0.94 {
            ("REST: GET /assets", "/assets?limit=20")
        } else {
            ("REST: GET /costs", "/costs?from=2020-01-01")
        };
        let t = Instant::now();
        let r = http
            .get(format!("{url}{path}"))
            .bearer_auth(&d.token)
            .send()
            .await;
        let outcome = match r {
            Ok(resp) if resp.status().is_success() => {
                resp.bytes().await.map(|_| ()).map_err(|_| "network".into())
            }
            Ok(resp) => Err(resp.status().as_u16().to_string()),
            Err(_) => Err("network".into()),
        };
        meter.record(kind, t.elapsed(), outcome);
    }
}

/// A user's documents as one device holds them: id -> sorted heads.
async fn holdings(store: &Store) -> BTreeMap<DocId, Vec<String>> {
    let mut out = BTreeMap::new();
    for id in store.ids().await.unwrap() {
        let mut asset = store.load(&id).await.unwrap();
        let mut heads: Vec<String> = asset.doc.heads().iter().map(|h| h.to_string()).collect();
        heads.sort();
        out.insert(id, heads);
    }
    out
}

/// Every note text in a store, and how many tool requests are still
/// queued or running.
async fn contents(store: &Store) -> (HashMap<String, u64>, u64, u64, u64) {
    let (mut notes, mut open, mut succeeded, mut failed) = (HashMap::new(), 0, 0, 0);
    for id in store.ids().await.unwrap() {
        let asset = store.load(&id).await.unwrap();
        for m in asset.doc.messages().unwrap() {
            match m.status {
                Some(MessageStatus::Queued | MessageStatus::Running) => open += 1,
                Some(MessageStatus::Succeeded) => succeeded += 1,
                Some(MessageStatus::Failed) => failed += 1,
                _ => {}
            }
            if let Some(t) = m.text.filter(|t| t.starts_with("note ")) {
                *notes.entry(t).or_default() += 1;
            }
        }
    }
    (notes, open, succeeded, failed)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let devices: usize = arg(&args, "--devices").unwrap_or(if quick { 10 } else { 50 });
    let users: usize = arg(&args, "--users").unwrap_or((devices / 2).max(1));
    let seconds: u64 = arg(&args, "--seconds").unwrap_or(if quick { 8 } else { 30 });
    let mut serve_args: Vec<String> = args
        .windows(2)
        .filter(|w| w[0] == "--serve-arg")
        .map(|w| w[1].clone())
        .collect();
    // Kept to the end: dropping it stops moto.
    let _moto = args.iter().any(|a| a == "--aws").then(|| {
        let moto = Moto::start();
        let aws = [
            "--aws-endpoint".to_owned(),
            moto.url(),
            "--aws-prefix".to_owned(),
            "atelier-load-".to_owned(),
        ];
        let made = Command::new(env!("CARGO_BIN_EXE_atelier-cloud"))
            .arg("init-aws")
            .args(&aws)
            .env("AWS_REGION", "eu-central-1")
            .output()
            .expect("atelier-cloud runs");
        assert!(
            made.status.success(),
            "atelier-cloud init-aws failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        serve_args.extend(["--backend".to_owned(), "aws".to_owned()]);
        serve_args.extend(aws);
        moto
    });

    let fakes = fakes::spawn(FakeConfig {
        step: Duration::from_millis(50),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let server_dir = tmp.path().join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    let server_log: Option<String> = arg(&args, "--server-log");
    let server = start_server(
        &server_dir,
        fakes.base_url(),
        &serve_args,
        server_log.as_deref(),
    )
    .await;
    let pid = server.child.id();
    let tokens: Vec<String> = (0..users)
        .map(|u| token(&server_dir, &format!("load-{u}")))
        .collect();
    let meter = Meter::default();
    let http = reqwest::Client::new();

    // Devices and their sync loops.
    let mut devs = Vec::new();
    let mut loops = Vec::new();
    let mut stops = Vec::new();
    for i in 0..devices {
        let user = i % users;
        let store = Store::open(tmp.path().join(format!("dev-{i}")), StoreOptions::default())
            .await
            .unwrap();
        let transport = Timed {
            inner: HttpTransport::new(&server.url).unwrap(),
            meter: meter.clone(),
        };
        let mut client = SyncClient::with_transport(
            store.clone(),
            Box::new(transport),
            tokens[user].clone(),
            EngineConfig::default(),
        )
        .await
        .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        loops.push(tokio::spawn(async move {
            client
                .run(async {
                    let _ = stopped.await;
                })
                .await;
            client
        }));
        devs.push(Device {
            user,
            store,
            token: tokens[user].clone(),
            acked: Vec::new(),
            jobs: 0,
        });
    }

    // The bounded load.
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut actors = Vec::new();
    for (i, mut d) in devs.into_iter().enumerate() {
        let (http, url, meter) = (http.clone(), server.url.clone(), meter.clone());
        actors.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(i as u64);
            let mut n = 0;
            while Instant::now() < until {
                act(&mut d, n, &mut rng, &http, &url, &meter).await;
                n += 1;
                let pause = rng.random_range(500..1500);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            d
        }));
    }
    let mut devs = Vec::new();
    for a in actors {
        devs.push(a.await.unwrap());
    }
    let load_secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;

    // Settle: sync loops keep running until every user's devices agree and
    // every job has ended.
    let settle = Instant::now();
    let deadline = Duration::from_secs(180);
    let mut converged = false;
    while settle.elapsed() < deadline {
        let mut all = true;
        for u in 0..users {
            let mine: Vec<&Device> = devs.iter().filter(|d| d.user == u).collect();
            let first = holdings(&mine[0].store).await;
            for d in &mine[1..] {
                all &= holdings(&d.store).await == first;
            }
            all &= contents(&mine[0].store).await.1 == 0;
            if !all {
                break;
            }
        }
        if all {
            converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settle_secs = settle.elapsed().as_secs_f64();
    for s in stops {
        let _ = s.send(());
    }
    for l in loops {
        l.await.unwrap();
    }
    let peak_rss = status_mib(pid, "VmHWM:");

    // Nothing lost, nothing doubled: each device's acknowledged notes, on
    // every device of its user, exactly once.
    let (mut lost, mut doubled, mut checked) = (0u64, 0u64, 0u64);
    let (mut jobs_ok, mut jobs_failed, mut jobs_open) = (0, 0, 0);
    for u in 0..users {
        let mine: Vec<&Device> = devs.iter().filter(|d| d.user == u).collect();
        for holder in &mine {
            let (notes, open, ok, failed) = contents(&holder.store).await;
            if std::ptr::eq(*holder, mine[0]) {
                (jobs_ok, jobs_failed, jobs_open) =
                    (jobs_ok + ok, jobs_failed + failed, jobs_open + open);
            }
            for d in &mine {
                for t in &d.acked {
                    checked += 1;
                    match notes.get(t).copied().unwrap_or(0) {
                        0 => lost += 1,
                        1 => {}
                        _ => doubled += 1,
                    }
                }
            }
        }
    }
    let queued: u64 = devs.iter().map(|d| d.jobs).sum();
    let edits: usize = devs.iter().map(|d| d.acked.len()).sum();

    // The table.
    let kinds = meter.0.lock().unwrap();
    let total: usize = kinds
        .values()
        .map(|k| k.times.len() + k.errors.values().sum::<u64>() as usize)
        .sum();
    println!(
        "## Load: {devices} devices ({users} users) for {seconds} s against `atelier-cloud serve`"
    );
    println!();
    println!("| request | count | per s | p50 | p99 | max | errors |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    let mut five_xx = 0;
    for (name, k) in kinds.iter() {
        let mut t = k.times.clone();
        t.sort();
        let at = |q: f64| {
            t.get(((t.len().max(1) - 1) as f64 * q).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        let errs: u64 = k.errors.values().sum();
        five_xx += k
            .errors
            .iter()
            .filter(|(s, _)| s.starts_with('5'))
            .map(|(_, n)| n)
            .sum::<u64>();
        let errors = if errs == 0 {
            "0".to_owned()
        } else {
            k.errors
                .iter()
                .map(|(s, n)| format!("{n}× {s}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let count = t.len() + errs as usize;
        println!(
            "| {name} | {count} | {:.1} | {} | {} | {} | {errors} |",
            count as f64 / (load_secs + settle_secs),
            ms(at(0.5)),
            ms(at(0.99)),
            ms(t.last().copied().unwrap_or_default()),
        );
    }
    println!();
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| requests per second (load + settle) | {:.1} |",
        total as f64 / (load_secs + settle_secs)
    );
    println!("| acknowledged edits (notes) | {edits} |");
    println!(
        "| jobs queued / succeeded / failed / still open | {queued} / {jobs_ok} / {jobs_failed} / {jobs_open} |"
    );
    println!("| server peak RSS (VmHWM) | {peak_rss:.1} MiB |");
    println!(
        "| server CPU during the load | {:.0} % of one core ({cpu:.1} s in {load_secs:.1} s) |",
        cpu / load_secs * 100.0
    );
    println!("| settle time (until converged) | {settle_secs:.1} s |");
    println!("| 5xx responses | {five_xx} |");
    println!(
        "| notes checked on every device / lost / duplicated | {checked} / {lost} / {doubled} |"
    );
    println!("| converged | {} |", if converged { "yes" } else { "NO" });
    drop(kinds);
    drop(server);
    assert!(converged, "devices did not converge within {deadline:?}");
    assert_eq!((lost, doubled), (0, 0), "edits lost or duplicated");
    assert_eq!(five_xx, 0, "the server answered 5xx");
}
