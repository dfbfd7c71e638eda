//! Provider job latency and overhead: prints a table; run with
//! `cargo bench -p cloud-lambda --bench jobs` (`-- --quick` for a smoke run).
//!
//! The server is the real `atelier-cloud serve` binary in its own process
//! (so its CPU time can be read from /proc), pointed at the fake providers,
//! which answer as fast as they can. Device A queues a request and pushes it;
//! device B runs its sync loop at the default settings (long polls). For
//! each tool the table gives the time from the request reaching the server
//! (A's push returning) to the result being visible on B, the server's CPU
//! time per job, and the bytes each device moved.
//!
//! A first table measures getting a 3 MB and a 20 MB input to the
//! providers (`providers::inputs::prepare`: the way chosen, and the upload
//! to the fakes' Files APIs where it needs one): wall time and the peak of
//! heap memory allocated on the preparing thread beyond the input itself (a
//! counting allocator; the preparing thread runs its own single-threaded
//! runtime, the fakes another).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use cloud_lambda::providers::ProviderConfig;
use cloud_lambda::providers::inputs::{self, InputImage};
use cloud_lambda::registry::{BUILTIN, Registry};

use atelier_fixtures::fakes::{self, FakeConfig};
use core_sync::model::{BlobRef, MessageStatus, NewMessage, NewVersion};
use core_sync::store::{Store, StoreOptions};
use core_sync::sync::client::SyncClient;
use core_sync::sync::engine::EngineConfig;
use core_sync::{DocId, now_millis};

/// Counts heap bytes allocated and freed by threads that opt in.
struct Counting;

static CURRENT: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    COUNTED.try_with(Cell::get).unwrap_or(false)
}

fn count(delta: isize) {
    let now = CURRENT.fetch_add(delta, Ordering::Relaxed) + delta;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && counted() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        if counted() {
            count(-(layout.size() as isize));
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && counted() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A PNG of about `mb` megabytes: noise, which PNG cannot squeeze.
fn photo(mb: usize) -> Vec<u8> {
    let side = ((mb * 1_000_000 / 3) as f64).sqrt() as u32;
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let img = image::RgbImage::from_fn(side, side, |_, _| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let b = seed.to_le_bytes();
        image::Rgb([b[0], b[1], b[2]])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// Prepares each input for each model `runs` times on a thread of its own;
/// prints the table.
fn bench_inputs(fakes_url: &str, runs: usize) {
    let cfg = ProviderConfig {
        gemini_base: fakes_url.into(),
        gemini_key: Some(fakes::DEFAULT_API_KEY.into()),
        replicate_base: fakes_url.into(),
        replicate_token: Some(fakes::DEFAULT_REPLICATE_TOKEN.into()),
        ..ProviderConfig::default()
    };
    let registry = Registry::parse(BUILTIN).unwrap();
    println!("## Getting an input to the provider (`providers::inputs::prepare`)");
    println!();
    println!(
        "Fakes on loopback; median of {runs} runs; peak heap is what the preparing thread allocates beyond the input it holds."
    );
    println!();
    println!(
        "An inline input costs nothing here: its bytes are base64-encoded into the request (4/3 of their size) when the call is made."
    );
    println!();
    println!("| input | model | way | time | peak heap |");
    println!("|---|---|---|---:|---:|");
    for mb in [3, 20] {
        let bytes = photo(mb);
        let image = InputImage {
            sha256: core_sync::blob::sha256_hex(&bytes),
            mime: "image/png".into(),
            bytes: bytes.into(),
        };
        for id in ["bria/remove-background", "gemini-3.1-flash-image"] {
            let model = registry.get(id).unwrap().clone();
            let (cfg, image) = (cfg.clone(), image.clone());
            let size = image.bytes.len();
            let (mut times, mut peaks, way) = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let (mut times, mut peaks, mut way) = (Vec::new(), Vec::new(), None);
                for i in 0..runs {
                    let mut record = None;
                    let ctx = inputs::Context {
                        cfg: &cfg,
                        public: None,
                        user: "bench",
                        label: "bench",
                        now_ms: now_millis(),
                    };
                    CURRENT.store(0, Ordering::Relaxed);
                    PEAK.store(0, Ordering::Relaxed);
                    COUNTED.with(|c| c.set(true));
                    let t0 = Instant::now();
                    rt.block_on(inputs::prepare(ctx, &model, &image, &mut record))
                        .unwrap_or_else(|e| panic!("run {i}: {e}"));
                    times.push(t0.elapsed());
                    COUNTED.with(|c| c.set(false));
                    peaks.push(PEAK.load(Ordering::Relaxed));
                    let mut record = record.unwrap();
                    way = Some(record.route);
                    rt.block_on(inputs::release(&cfg, &mut record)).unwrap();
                }
                (times, peaks, way.unwrap())
            })
            .join()
            .unwrap();
            times.sort();
            peaks.sort();
            println!(
                "| {:.1} MB | {} | {:?} | {:.1} ms | {:.1} MB |",
                size as f64 / 1e6,
                id,
                way,
                times[times.len() / 2].as_secs_f64() * 1e3,
                peaks[peaks.len() / 2] as f64 / 1e6
            );
        }
    }
    println!();
}

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

/// utime + stime of a process, in seconds.
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
    // Fields 14 and 15 of stat (1-based), i.e. 11 and 12 after the ')',
    // in clock ticks (USER_HZ, 100 on Linux).
    (ticks(11) + ticks(12)) / 100.0
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(w, h, |x, y| image::Rgba([x as u8, y as u8, 160, 255]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

async fn start_server(dir: &std::path::Path, fakes_url: &str) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_atelier-cloud"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir)
        .env("ATELIER_GEMINI_BASE_URL", fakes_url)
        .env("ATELIER_REPLICATE_BASE_URL", fakes_url)
        .env("GEMINI_API_KEY", fakes::DEFAULT_API_KEY)
        .env("REPLICATE_API_TOKEN", fakes::DEFAULT_REPLICATE_TOKEN)
        .env("REPLICATE_WEBHOOK_SECRET", fakes::DEFAULT_WEBHOOK_SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("atelier-cloud runs");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(format!("{url}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Server { child, url }
}

fn token(dir: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_atelier-cloud"))
        .args(["dev-token", "--user", "bench", "--data"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 3 } else { 15 };
    let fakes = fakes::spawn(FakeConfig {
        step: Duration::from_millis(1),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    bench_inputs(fakes.base_url(), if quick { 2 } else { 7 });
    let tmp = tempfile::tempdir().unwrap();
    let server_dir = tmp.path().join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    let server = start_server(&server_dir, fakes.base_url()).await;
    let token = token(&server_dir);

    let store_a = Store::open(tmp.path().join("a"), StoreOptions::default())
        .await
        .unwrap();
    let store_b = Store::open(tmp.path().join("b"), StoreOptions::default())
        .await
        .unwrap();
    let mut a = SyncClient::new(
        store_a.clone(),
        &server.url,
        token.clone(),
        EngineConfig::default(),
    )
    .await
    .unwrap();
    let mut b = SyncClient::new(
        store_b.clone(),
        &server.url,
        token.clone(),
        EngineConfig::default(),
    )
    .await
    .unwrap();

    // One asset with a 512x384 image, synced to both devices.
    let bytes = png(512, 384);
    let len = bytes.len() as u64;
    let sha = store_a
        .put_blob(bytes, "image/png", now_millis())
        .await
        .unwrap();
    let mut asset = store_a.create("bench", now_millis()).await.unwrap();
    let v1 = asset
        .doc
        .add_version(
            NewVersion {
                blob: BlobRef {
                    sha256: sha,
                    mime: "image/png".into(),
                    width: 512,
                    height: 384,
                    bytes: len,
                },
                thumbnail: None,
                parent_version_id: None,
                created_by_message_id: None,
            },
            now_millis(),
        )
        .unwrap();
    store_a.save(&mut asset).await.unwrap();
    let doc: DocId = asset.id.clone();
    a.local_change(doc.clone());
    a.sync_until_idle().await.unwrap();
    b.sync_until_idle().await.unwrap();

    // Device B syncs in the background at the default settings.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let b_task = tokio::spawn(async move {
        b.run(async {
            let _ = stop_rx.await;
        })
        .await;
        b
    });

    let tools: [(&str, &str, &str, serde_json::Value); 4] = [
        (
            "edit",
            "google",
            "gemini-3.1-flash-image",
            serde_json::json!({}),
        ),
        (
            "generate",
            "google",
            "gemini-3.1-flash-image",
            serde_json::json!({"aspectRatio": "1:1"}),
        ),
        (
            "upscale",
            "replicate",
            "nightmareai/real-esrgan",
            serde_json::json!({"scale": 2}),
        ),
        (
            "remove-background",
            "replicate",
            "bria/remove-background",
            serde_json::json!({}),
        ),
    ];
    println!(
        "## Provider jobs: queued request reaching the server -> result visible on a second device"
    );
    println!();
    println!(
        "Fakes answer at once; device B runs its default sync loop (long polls). {runs} runs per tool."
    );
    println!();
    println!("| tool | p50 | max | server CPU per job | A→server bytes per job |");
    println!("|---|---:|---:|---:|---:|");
    for (tool, provider, model, params) in tools {
        let mut times = Vec::new();
        let cpu_before = cpu_seconds(server.child.id());
        let mut sent = 0usize;
        for i in 0..runs {
            let mut asset = store_a.load(&doc).await.unwrap();
            let msg = NewMessage {
                input_version_ids: if tool == "generate" {
                    vec![]
                } else {
                    vec![v1.clone()]
                },
                params: Some(params.clone()),
                ..NewMessage::tool_request(tool, provider, model, format!("bench run {i}"))
            };
            let id = asset.doc.append_message(msg, now_millis()).unwrap();
            store_a.save(&mut asset).await.unwrap();
            a.local_change(doc.clone());
            let report = a.sync_until_idle().await.unwrap();
            sent += report.bytes_sent;
            let t0 = Instant::now();
            loop {
                let mut on_b = store_b.load(&doc).await.unwrap();
                let m = on_b.doc.message(&id).ok();
                match m.as_ref().and_then(|m| m.status) {
                    Some(MessageStatus::Succeeded) => {
                        let out = &m.as_ref().unwrap().output_version_ids[0];
                        let v = on_b.doc.reader().version(out).unwrap().unwrap();
                        if store_b.blobs().contains(&v.blob.sha256) {
                            break;
                        }
                    }
                    Some(MessageStatus::Failed) => panic!("{tool} failed: {:?}", m.unwrap().error),
                    _ => {}
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(30),
                    "{tool}: no result after 30 s"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            times.push(t0.elapsed());
        }
        let cpu = (cpu_seconds(server.child.id()) - cpu_before) / runs as f64;
        times.sort();
        println!(
            "| {tool} ({model}) | {:.0} ms | {:.0} ms | {:.1} ms | {} B |",
            times[times.len() / 2].as_secs_f64() * 1e3,
            times.last().unwrap().as_secs_f64() * 1e3,
            cpu * 1e3,
            sent / runs
        );
    }
    let _ = stop_tx.send(());
    let _ = b_task.await;
    println!();
    println!(
        "Goal: under 1 s from the request reaching the server to the result on the second device."
    );
}
