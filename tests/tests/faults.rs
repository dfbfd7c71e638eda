//! Convergence through a faulty network and a crashing server.
//!
//! An `atelier-cloud serve` process sits behind a small fault-injecting
//! HTTP proxy (tokio, on 127.0.0.1). For each connection a seeded RNG
//! chooses what happens to the request:
//!
//! - pass it through, or pass it through after a delay;
//! - drop the connection before forwarding anything;
//! - forward it, then cut the response in the middle of its body;
//! - answer 500 without forwarding;
//! - forward it twice (duplicate delivery) and return the second answer.
//!
//! Three devices, each a `core_sync::Store` with an in-process
//! `SyncClient` pointed at the proxy, make random offline edits (messages
//! with unique texts, now and then a new asset; some while a sync request
//! is in flight), sync through the proxy with errors expected, and now and
//! then restart (a fresh `SyncClient` resuming from the store). In the
//! middle the server is restarted gracefully (SIGINT) and later SIGKILLed,
//! each while requests are in flight, and started again on the same data
//! directory and port.
//!
//! At the end the faults are removed and every device syncs until idle,
//! twice around. Then every device must hold the same documents with the
//! same heads, every acknowledged message text must be in its document
//! exactly once on every device, nothing may be left pending, and every
//! error seen on the way must have been a transient one (network or 5xx).
//!
//! The seed is printed; `FAULT_SEED` overrides it. Everything is bounded
//! (rounds, timeouts) and takes well under a minute.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atelier_tests::procs::{Server, dev_token};
use core_sync::model::NewMessage;
use core_sync::sync::client::{SyncClient, SyncError};
use core_sync::sync::engine::EngineConfig;
use core_sync::{DocId, Store, StoreOptions, now_millis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DEVICES: usize = 3;
const ROUNDS: usize = 32;
/// The round during which the server is stopped with SIGINT and restarted.
const GRACEFUL_RESTART_ROUND: usize = 10;
/// The round during which the server is SIGKILLed and restarted.
const KILL_ROUND: usize = 21;
/// Longest one device's sync attempt may take (faults included).
const SYNC_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest the proxy waits on the server for one exchange.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest request head the proxy accepts.
const MAX_HEAD: usize = 64 * 1024;

#[test]
fn devices_converge_through_faults_and_server_crashes() {
    let started = Instant::now();
    let seed = std::env::var("FAULT_SEED")
        .ok()
        .map(|s| s.trim().parse().expect("FAULT_SEED is a number"))
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("fault test: seed {seed} (rerun with FAULT_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    let tmp = tempfile::Builder::new()
        .prefix("atelier-faults-")
        .tempdir()
        .expect("a temporary directory");
    let server_dir = tmp.path().join("server");
    let token = dev_token(&server_dir, "fault-user");
    let mut server = Some(Server::start(&server_dir));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let proxy = rt.block_on(Proxy::start(
        server.as_ref().expect("started").addr(),
        rng.random(),
    ));
    let mut devices: Vec<Device> = (0..DEVICES)
        .map(|i| {
            rt.block_on(Device::new(
                i,
                &tmp.path().join(format!("device-{i}")),
                proxy.url(),
                token.clone(),
                rng.random(),
            ))
        })
        .collect();

    for round in 0..ROUNDS {
        let crash = match round {
            GRACEFUL_RESTART_ROUND => Some(Crash::Graceful),
            KILL_ROUND => Some(Crash::Kill),
            _ => None,
        };
        let before = Duration::from_millis(rng.random_range(0..150));
        let down = Duration::from_millis(rng.random_range(0..300));
        rt.block_on(async {
            // The crash happens while the devices' requests are in flight.
            let crash = crash.map(|crash| {
                let mut s = server.take().expect("the server is up between rounds");
                tokio::task::spawn_blocking(move || {
                    std::thread::sleep(before);
                    match crash {
                        Crash::Graceful => s.stop(),
                        Crash::Kill => s.kill(),
                    }
                    std::thread::sleep(down);
                    s.restart();
                    s
                })
            });
            let [d0, d1, d2] = &mut devices[..] else {
                unreachable!("three devices")
            };
            tokio::join!(d0.step(round), d1.step(round), d2.step(round));
            if let Some(task) = crash {
                server = Some(task.await.expect("the restart task"));
            }
        });
        if let Some(crash) = crash {
            eprintln!("round {round}: server {crash:?} and restarted");
        }
    }
    let faulty = proxy.stats();
    eprintln!(
        "fault test: {ROUNDS} rounds in {:.1?}; proxy: {faulty:?}",
        started.elapsed()
    );

    // Heal: no more faults; everyone syncs until idle, twice around.
    proxy.faults_enabled(false);
    for pass in 0..2 {
        for d in &mut devices {
            rt.block_on(d.sync_clean(pass));
        }
    }

    // Converged: same documents, same heads, every acknowledged text once.
    let views: Vec<View> = devices.iter().map(|d| rt.block_on(d.view())).collect();
    let acked: BTreeMap<DocId, Vec<String>> = {
        let mut all: BTreeMap<DocId, Vec<String>> = BTreeMap::new();
        for d in &devices {
            for (doc, text) in &d.acked {
                all.entry(doc.clone()).or_default().push(text.clone());
            }
        }
        all
    };
    let created: BTreeSet<&DocId> = devices.iter().flat_map(|d| &d.created).collect();
    for (i, view) in views.iter().enumerate() {
        let ids: BTreeSet<&DocId> = view.docs.keys().collect();
        assert_eq!(
            ids, created,
            "device {i} holds other documents than the ones created"
        );
        for (doc, state) in &view.docs {
            assert_eq!(
                state.heads, views[0].docs[doc].heads,
                "device {i} and device 0 have different heads for {doc}"
            );
            for text in acked.get(doc).into_iter().flatten() {
                let n = state.texts.iter().filter(|t| *t == text).count();
                assert_eq!(n, 1, "device {i}: {text:?} is in {doc} {n} times");
            }
            let mut unique = BTreeSet::new();
            for text in &state.texts {
                assert!(unique.insert(text), "device {i}: {text:?} twice in {doc}");
            }
        }
        assert_eq!(view.pending, 0, "device {i} still has documents to push");
    }
    for d in &devices {
        assert!(
            d.bad_errors.is_empty(),
            "device {}: errors a retry cannot fix: {:?}",
            d.index,
            d.bad_errors
        );
    }

    let messages: usize = acked.values().map(Vec::len).sum();
    let oks: usize = devices.iter().map(|d| d.ok).sum();
    let fails: usize = devices.iter().map(|d| d.failed).sum();
    eprintln!(
        "fault test: converged: {} documents, {messages} acknowledged messages; \
         {oks} syncs succeeded, {fails} failed; errors: {:?}; {:.1?} in all",
        created.len(),
        devices
            .iter()
            .map(|d| &d.errors)
            .fold(BTreeMap::new(), |mut all, e| {
                for (k, n) in e {
                    *all.entry(k.clone()).or_insert(0) += n;
                }
                all
            }),
        started.elapsed()
    );
    assert!(fails > 0, "the faults never made a sync fail");
    assert!(oks > 0, "no sync ever succeeded under faults");
    for d in devices {
        rt.block_on(d.store.close());
    }
    drop(server);
}

#[derive(Debug, Clone, Copy)]
enum Crash {
    /// SIGINT: the server finishes what is in flight and exits.
    Graceful,
    /// SIGKILL.
    Kill,
}

// ---------------------------------------------------------------- devices

/// One device: a store, its sync client, and what it acknowledged.
struct Device {
    index: usize,
    store: Store,
    client: SyncClient,
    url: String,
    token: String,
    rng: StdRng,
    writes: u64,
    /// Every message text whose `save` returned `Ok`, with its document.
    acked: Vec<(DocId, String)>,
    /// Assets this device created.
    created: Vec<DocId>,
    ok: usize,
    failed: usize,
    /// Failed syncs by kind.
    errors: BTreeMap<String, usize>,
    /// Errors that are not transient: these should never happen.
    bad_errors: Vec<String>,
}

/// What a device holds at the end.
struct View {
    docs: BTreeMap<DocId, DocState>,
    pending: usize,
}

struct DocState {
    heads: Vec<String>,
    texts: Vec<String>,
}

impl Device {
    async fn new(
        index: usize,
        dir: &std::path::Path,
        url: String,
        token: String,
        seed: u64,
    ) -> Self {
        let store = Store::open(dir, StoreOptions::default())
            .await
            .expect("open a device store");
        let client = SyncClient::new(store.clone(), &url, token.clone(), EngineConfig::default())
            .await
            .expect("a sync client");
        let mut device = Device {
            index,
            store,
            client,
            url,
            token,
            rng: StdRng::seed_from_u64(seed),
            writes: 0,
            acked: Vec::new(),
            created: Vec::new(),
            ok: 0,
            failed: 0,
            errors: BTreeMap::new(),
            bad_errors: Vec::new(),
        };
        // Every device starts with an asset of its own, made offline.
        device.edit(0, true).await;
        device
    }

    /// One offline edit: a message with a unique text in a random asset it
    /// has (or a new asset). Returns the document it changed.
    async fn edit(&mut self, round: usize, new_asset: bool) -> DocId {
        let ids = self.store.ids().await.expect("list assets");
        let id = if new_asset || ids.is_empty() {
            let title = format!("device {} asset {}", self.index, self.created.len());
            let asset = self
                .store
                .create(&title, now_millis())
                .await
                .expect("create");
            self.created.push(asset.id.clone());
            asset.id
        } else {
            ids[self.rng.random_range(0..ids.len())].clone()
        };
        let text = format!("d{}-r{round}-w{}", self.index, self.writes);
        self.writes += 1;
        let mut asset = self.store.load(&id).await.expect("load an asset");
        asset
            .doc
            .append_message(NewMessage::user(text.clone()), now_millis())
            .expect("append a message");
        self.store.save(&mut asset).await.expect("save");
        self.acked.push((id.clone(), text));
        id
    }

    /// A round: a few edits, then a sync attempt with more edits landing
    /// while it is in flight; now and then the device "restarts" first.
    async fn step(&mut self, round: usize) {
        if self.rng.random_ratio(1, 10) {
            // An app restart: a new client resumes from the store alone.
            self.client = SyncClient::new(
                self.store.clone(),
                &self.url,
                self.token.clone(),
                EngineConfig::default(),
            )
            .await
            .expect("a sync client");
        }
        for _ in 0..self.rng.random_range(0..=2) {
            let new_asset = self.rng.random_ratio(1, 15);
            let id = self.edit(round, new_asset).await;
            self.client.local_change(id);
        }
        let during = self.rng.random_range(0..=1);
        let new_asset = self.rng.random_ratio(1, 15);
        let delay = Duration::from_millis(self.rng.random_range(0..20));
        // Edits in flight use a second handle on the same store, as another
        // part of the app would; the client learns of them afterwards.
        let mut editor = Editor {
            store: self.store.clone(),
            index: self.index,
            writes: self.writes,
            pick: self.rng.random(),
        };
        let sync = tokio::time::timeout(SYNC_TIMEOUT, self.client.sync_until_idle());
        let edits = async {
            tokio::time::sleep(delay).await;
            let mut done = Vec::new();
            for _ in 0..during {
                done.push(editor.edit(round, new_asset && done.is_empty()).await);
            }
            done
        };
        let (result, done) = tokio::join!(sync, edits);
        self.writes = editor.writes;
        for (id, text, created) in done {
            if created {
                self.created.push(id.clone());
            }
            self.acked.push((id.clone(), text));
            self.client.local_change(id);
        }
        match result {
            Ok(Ok(_)) => self.ok += 1,
            Ok(Err(e)) => self.note_error(&e),
            Err(_) => {
                self.failed += 1;
                *self.errors.entry("timeout".into()).or_insert(0) += 1;
            }
        }
    }

    fn note_error(&mut self, e: &SyncError) {
        self.failed += 1;
        let kind = match e {
            SyncError::Network(_) => "network".to_owned(),
            SyncError::Server { status, .. } => format!("http {status}"),
            SyncError::Store(_) => "store".to_owned(),
            SyncError::Protocol(_) => "protocol".to_owned(),
        };
        *self.errors.entry(kind).or_insert(0) += 1;
        if !e.is_transient() {
            self.bad_errors.push(e.to_string());
        }
    }

    /// Syncs without faults; it must succeed.
    async fn sync_clean(&mut self, pass: usize) {
        let result = tokio::time::timeout(SYNC_TIMEOUT, self.client.sync_until_idle()).await;
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!(
                "device {}: sync without faults failed (pass {pass}): {e}",
                self.index
            ),
            Err(_) => panic!(
                "device {}: sync without faults timed out (pass {pass})",
                self.index
            ),
        }
    }

    async fn view(&self) -> View {
        let mut docs = BTreeMap::new();
        for id in self.store.ids().await.expect("ids") {
            let mut asset = self.store.load(&id).await.expect("load");
            let mut heads: Vec<String> = asset.doc.heads().iter().map(|h| h.to_string()).collect();
            heads.sort();
            let texts = asset
                .doc
                .messages()
                .expect("messages")
                .into_iter()
                .filter_map(|m| m.text)
                .collect();
            docs.insert(id, DocState { heads, texts });
        }
        let pending = self.store.pending_sync().await.expect("pending").len();
        View { docs, pending }
    }
}

/// Edits made while a sync request is in flight, on another handle of the
/// device's store.
struct Editor {
    store: Store,
    index: usize,
    writes: u64,
    pick: u64,
}

impl Editor {
    /// Appends one message (to a new asset if `new_asset`); returns the
    /// document, the text and whether the asset was created.
    async fn edit(&mut self, round: usize, new_asset: bool) -> (DocId, String, bool) {
        let ids = self.store.ids().await.expect("list assets");
        let (id, created) = if new_asset || ids.is_empty() {
            let title = format!("device {} asset made mid-sync w{}", self.index, self.writes);
            let asset = self
                .store
                .create(&title, now_millis())
                .await
                .expect("create");
            (asset.id, true)
        } else {
            (ids[(self.pick % ids.len() as u64) as usize].clone(), false)
        };
        let text = format!("d{}-r{round}-w{}-inflight", self.index, self.writes);
        self.writes += 1;
        let mut asset = self.store.load(&id).await.expect("load an asset");
        asset
            .doc
            .append_message(NewMessage::user(text.clone()), now_millis())
            .expect("append a message");
        self.store.save(&mut asset).await.expect("save");
        (id, text, created)
    }
}

// ------------------------------------------------------------------ proxy

/// What the proxy does with one connection's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Pass,
    Delay(u64),
    DropBeforeForward,
    CutResponse,
    Error500,
    Duplicate,
}

impl Fault {
    fn choose(rng: &mut StdRng) -> Fault {
        match rng.random_range(0..100) {
            0..40 => Fault::Pass,
            40..55 => Fault::Delay(rng.random_range(20..400)),
            55..67 => Fault::DropBeforeForward,
            67..79 => Fault::CutResponse,
            79..89 => Fault::Error500,
            _ => Fault::Duplicate,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Fault::Pass => "pass",
            Fault::Delay(_) => "delay",
            Fault::DropBeforeForward => "drop",
            Fault::CutResponse => "cut",
            Fault::Error500 => "500",
            Fault::Duplicate => "duplicate",
        }
    }
}

/// A TCP proxy on 127.0.0.1 in front of the server, one request per
/// connection (it makes every exchange `connection: close`).
struct Proxy {
    addr: SocketAddr,
    faults: Arc<AtomicBool>,
    stats: Arc<Mutex<BTreeMap<&'static str, usize>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr, seed: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let faults = Arc::new(AtomicBool::new(true));
        let stats = Arc::new(Mutex::new(BTreeMap::new()));
        let (on, counts) = (faults.clone(), stats.clone());
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let fault = if on.load(Ordering::SeqCst) {
                    Fault::choose(&mut rng)
                } else {
                    Fault::Pass
                };
                *counts
                    .lock()
                    .expect("stats")
                    .entry(fault.name())
                    .or_insert(0) += 1;
                tokio::spawn(async move {
                    // Errors just close the connection: the client sees a
                    // network error, which is what a fault is.
                    let _ = handle(conn, upstream, fault).await;
                });
            }
        });
        Proxy {
            addr,
            faults,
            stats,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn faults_enabled(&self, on: bool) {
        self.faults.store(on, Ordering::SeqCst);
    }

    fn stats(&self) -> BTreeMap<&'static str, usize> {
        self.stats.lock().expect("stats").clone()
    }
}

type IoResult<T> = std::io::Result<T>;

fn io_error(what: &str) -> std::io::Error {
    std::io::Error::other(what.to_owned())
}

async fn handle(mut client: TcpStream, upstream: SocketAddr, fault: Fault) -> IoResult<()> {
    let request = read_request(&mut client).await?;
    let response = match fault {
        Fault::DropBeforeForward => return Ok(()),
        Fault::Error500 => {
            let body = br#"{"error":{"code":"injected","message":"injected by the fault proxy"}}"#;
            let mut r = format!(
                "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(body);
            r
        }
        Fault::Pass => forward(upstream, &request).await?,
        Fault::Delay(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            forward(upstream, &request).await?
        }
        Fault::Duplicate => {
            let _first = forward(upstream, &request).await?;
            forward(upstream, &request).await?
        }
        Fault::CutResponse => {
            let full = forward(upstream, &request).await?;
            let body_start = find(&full, b"\r\n\r\n").map_or(full.len() / 2, |i| i + 4);
            let cut = body_start + (full.len() - body_start) / 2;
            client.write_all(&full[..cut]).await?;
            client.flush().await?;
            return Ok(());
        }
    };
    client.write_all(&response).await?;
    client.flush().await?;
    let _ = client.shutdown().await;
    Ok(())
}

/// Sends one request to the server on a fresh connection and reads the
/// whole answer (the server closes after it: the request says so).
async fn forward(upstream: SocketAddr, request: &[u8]) -> IoResult<Vec<u8>> {
    tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        let mut s = TcpStream::connect(upstream).await?;
        s.write_all(request).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        if out.is_empty() {
            return Err(io_error("the server closed without answering"));
        }
        Ok(out)
    })
    .await
    .map_err(|_| io_error("the server did not answer in time"))?
}

/// Reads one HTTP/1.1 request (head and `content-length` body) and returns
/// it re-encoded with `connection: close`.
async fn read_request(client: &mut TcpStream) -> IoResult<Vec<u8>> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(io_error("request head too large"));
        }
        let mut chunk = [0u8; 8192];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(io_error("the client closed before a whole request"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| io_error("non-UTF-8 head"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    let mut length = 0usize;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "connection" | "keep-alive" => continue,
            "content-length" => {
                length = value
                    .trim()
                    .parse()
                    .map_err(|_| io_error("bad content-length"))?;
            }
            "transfer-encoding" => return Err(io_error("chunked requests are not supported")),
            _ => {}
        }
        headers.push(line.to_owned());
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; (length - body.len()).min(64 * 1024)];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(io_error("the client closed mid-body"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    let mut out = request_line.into_bytes();
    out.extend_from_slice(b"\r\n");
    for h in headers {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out.extend_from_slice(&body);
    Ok(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
