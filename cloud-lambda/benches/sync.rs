//! Sync benchmark: our HTTP sync against `samod` (automerge-repo in Rust)
//! doing the same work in the same run, both over loopback TCP on
//! 127.0.0.1. Prints markdown tables; run with
//! `cargo bench -p cloud-lambda --bench sync` (add `-- --quick` for a smoke
//! run with small sizes).
//!
//! - **Initial sync** of D assets x 20 messages from the server to an empty
//!   device. Ours: `atelier-cloud`'s Router (`axum::serve`) over the
//!   embedded backend, sync only (as `serve --no-jobs`), seeded by a device
//!   pushing the documents; timed is a fresh device's `SyncClient::new` +
//!   `sync_until_idle` into an empty `Store`. Samod: a server repo holding
//!   the same documents (configured like automerge-repo's sync server: no
//!   announce) and a fresh client repo dialing it; timed is dial +
//!   handshake + `find` of every document until its heads equal the
//!   server's. Both persist to disk (SQLite / samod's filesystem storage) on
//!   both sides. Bytes on the wire are counted by a TCP proxy in front of
//!   each server (both directions, HTTP and TCP framing included).
//! - **One small edit** (an appended message) on device A until device B
//!   has it, on a 20-message and a 1,000-message asset. Ours: A's durable
//!   save + `round()` push, then B's `round()` poll (started at once: no
//!   poll wait). Samod: A edits its `DocHandle`, B's handle reports the new
//!   heads via `changes()`.
//! - **Idle poll** with the documents of the largest initial sync of at most
//!   1,000 documents already on the device: one request that finds nothing;
//!   end to end, the bare HTTP request, and the handler logic called
//!   directly on the store.
//!
//! TCP_NODELAY is set on samod's sockets (the stock dialer leaves Nagle on,
//! which adds ~40 ms per small message on loopback) and on the proxy's.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use automerge::hydrate::Value as H;
use automerge::transaction::Transactable;
use automerge::{Automerge, AutomergeError, ChangeHash, ROOT, ReadDoc};
use cloud_lambda::app::{AppState, router};
use cloud_lambda::auth::{LocalIssuer, Verifier};
use core_sync::model::NewMessage;
use core_sync::sync::client::{HttpTransport, SyncClient, SyncReport, Transport as _};
use core_sync::sync::engine::EngineConfig;
use core_sync::sync::protocol::SyncRequest;
use core_sync::{AssetDoc, DocId, Store, StoreOptions};
use futures::StreamExt;
use futures::future::{BoxFuture, join_all};
use samod::storage::TokioFilesystemStorage;
use samod::{
    BackoffConfig, DialError, Dialer, DialerHandle, DocHandle, DocumentId, Repo, ShareConfig,
    Transport, Url,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

const MESSAGES_PER_ASSET: usize = 20;
/// The long asset of the edit measurement: per-edit costs that grow with
/// the document show up against it.
const LONG_ASSET_MESSAGES: usize = 1_000;
const USER: &str = "bench";
/// A samod run that takes longer than this is reported as timed out.
const SAMOD_TIMEOUT: Duration = Duration::from_secs(90);
/// Start the largest initial-sync size only if the run so far took less.
const LARGEST_SIZE_BUDGET: Duration = Duration::from_secs(100);

// ------------------------------------------------------------------ stats

struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        max: *samples.last().unwrap(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn kb(b: u64) -> String {
    format!("{:.1} KB", b as f64 / 1e3)
}

fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads
}

// --------------------------------------------------------------- fixtures

/// `n` assets of `MESSAGES_PER_ASSET` messages each, as `save()` bytes.
fn build_assets(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut doc = AssetDoc::create(&format!("asset {i}"), i as i64);
            for m in 0..MESSAGES_PER_ASSET {
                doc.append_message(
                    NewMessage::user(format!("message {m} of asset {i}")),
                    (i * 100 + m) as i64,
                )
                .unwrap();
            }
            doc.save()
        })
        .collect()
}

/// One asset of `n` messages, as `save()` bytes.
fn build_long_asset(n: usize) -> Vec<u8> {
    let mut doc = AssetDoc::create("long asset", 0);
    for m in 0..n {
        doc.append_message(NewMessage::user(format!("message {m}")), m as i64)
            .unwrap();
    }
    doc.save()
}

/// The message the model appends, as a raw Automerge value (for samod).
fn raw_message(i: usize, now: i64) -> H {
    H::from(std::collections::HashMap::from([
        ("id", H::scalar(format!("{i:032x}"))),
        ("kind", H::scalar("user")),
        ("text", H::scalar(format!("edit {i}"))),
        ("inputVersionIds", H::list()),
        ("outputVersionIds", H::list()),
        ("createdAt", H::scalar(now)),
        ("updatedAt", H::scalar(now)),
    ]))
}

/// Appends a message the way the model does, as one change; returns the heads.
fn samod_append(doc: &mut Automerge, i: usize) -> Vec<ChangeHash> {
    doc.transact::<_, _, AutomergeError>(|tx| {
        let (_, list) = tx.get(ROOT, "messages")?.expect("an asset has messages");
        let len = tx.length(&list);
        tx.batch_create_object(&list, len, &raw_message(i, i as i64), true)?;
        tx.put(ROOT, "updatedAt", i as i64)?;
        Ok(())
    })
    .unwrap();
    doc.get_heads()
}

// ---------------------------------------------------------- counting proxy

/// A TCP proxy in front of a server counting the bytes it relays, both
/// directions.
struct Proxy {
    addr: SocketAddr,
    bytes: Arc<AtomicU64>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bytes = Arc::new(AtomicU64::new(0));
        let counter = bytes.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::join!(pump(ri, wo, counter.clone()), pump(ro, wi, counter));
                });
            }
        });
        Proxy { addr, bytes }
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, counter: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => {
                counter.fetch_add(n as u64, Ordering::SeqCst);
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

// -------------------------------------------------------------------- ours

/// `atelier-cloud serve --no-jobs`: the Router over the embedded backend
/// (database and blobs in `dir`), on 127.0.0.1:0.
struct OurServer {
    addr: SocketAddr,
    writer: Arc<cloud_lambda::write::DocWriter>,
}

async fn our_server(dir: &Path, issuer: &LocalIssuer) -> OurServer {
    // As `atelier-cloud serve` assembles it, without `with_jobs`.
    let state = AppState::embedded(dir, issuer.verifier(), Some(issuer.jwks_json()))
        .await
        .unwrap();
    let writer = state.writer.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    OurServer { addr, writer }
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

async fn our_client(store: Store, addr: SocketAddr, token: &str) -> SyncClient {
    SyncClient::new(store, &url(addr), token.to_owned(), EngineConfig::default())
        .await
        .unwrap()
}

/// A device pushes `assets` to the server; returns their ids and heads.
async fn seed(
    dir: &Path,
    server: &OurServer,
    token: &str,
    assets: &[Vec<u8>],
) -> (Vec<(DocId, Vec<ChangeHash>)>, Duration, SyncReport) {
    let store = Store::open(dir, StoreOptions::default()).await.unwrap();
    let mut docs = Vec::with_capacity(assets.len());
    for bytes in assets {
        let mut asset = store
            .insert(DocId::random(), AssetDoc::load(bytes).unwrap())
            .await
            .unwrap();
        docs.push((asset.id.clone(), sorted(asset.doc.heads())));
    }
    let t = Instant::now();
    let mut client = our_client(store.clone(), server.addr, token).await;
    let report = client.sync_until_idle().await.unwrap();
    let took = t.elapsed();
    drop(client);
    store.close().await;
    (docs, took, report)
}

/// Every document is on the device with the server's heads.
async fn verify_ours(store: &Store, docs: &[(DocId, Vec<ChangeHash>)]) {
    assert_eq!(store.ids().await.unwrap().len(), docs.len());
    for (id, heads) in docs {
        assert_eq!(&sorted(store.recorded_heads(id).await.unwrap()), heads);
    }
}

// ------------------------------------------------------------------- samod

/// The stock `TcpDialer` with TCP_NODELAY.
struct NoDelayDialer(SocketAddr);

impl Dialer for NoDelayDialer {
    type Error = std::convert::Infallible;

    fn url(&self) -> Url {
        Url::parse(&format!("tcp://{}", self.0)).unwrap()
    }

    fn connect(&self) -> BoxFuture<'static, Result<Transport, DialError<Self::Error>>> {
        let addr = self.0;
        Box::pin(async move {
            let io = TcpStream::connect(addr)
                .await
                .map_err(DialError::transient)?;
            io.set_nodelay(true).map_err(DialError::transient)?;
            Ok(Transport::from_tokio_io(io))
        })
    }
}

/// A samod sync server (no announce, like automerge-repo's) on 127.0.0.1:0.
async fn samod_server(dir: &Path) -> (Repo, SocketAddr) {
    let repo = Repo::build_tokio()
        .with_storage(TokioFilesystemStorage::new(dir))
        .with_share_policy(ShareConfig::read_write().with_announce(false))
        .load()
        .await;
    let acceptor = repo
        .make_acceptor(Url::parse("tcp://samod-bench-server").unwrap())
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((io, _)) = listener.accept().await {
            let _ = io.set_nodelay(true);
            if acceptor.accept(Transport::from_tokio_io(io)).is_err() {
                return;
            }
        }
    });
    (repo, addr)
}

async fn samod_client(dir: &Path) -> Repo {
    Repo::build_tokio()
        .with_storage(TokioFilesystemStorage::new(dir))
        .load()
        .await
}

fn samod_dial(repo: &Repo, addr: SocketAddr) -> DialerHandle {
    repo.dial(BackoffConfig::default(), Arc::new(NoDelayDialer(addr)))
        .unwrap()
}

fn heads_of(handle: &DocHandle) -> Vec<ChangeHash> {
    sorted(handle.with_document(|d| d.get_heads()))
}

/// Waits until the handle's heads are `want` (sorted).
async fn wait_heads(handle: &DocHandle, want: &[ChangeHash]) {
    let mut changes = handle.changes();
    while heads_of(handle) != want {
        changes.next().await.expect("samod stopped");
    }
}

/// How often samod's `find` answered "unavailable" for a document the
/// server has (the fetch then asks again).
static SAMOD_UNAVAILABLE: AtomicU64 = AtomicU64::new(0);

/// Finds a document and waits until it has the server's heads.
async fn samod_fetch(repo: &Repo, id: DocumentId, want: &[ChangeHash]) -> DocHandle {
    let handle = loop {
        match repo.find(id.clone()).await.unwrap() {
            Some(handle) => break handle,
            None => {
                SAMOD_UNAVAILABLE.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_heads(&handle, want).await;
    handle
}

// ------------------------------------------------------- 1. initial sync

struct InitialRow {
    docs: usize,
    save_bytes: u64,
    ours: Duration,
    ours_bytes: u64,
    ours_requests: usize,
    seed: Duration,
    samod: Option<Duration>,
    samod_bytes: u64,
    samod_settled_bytes: u64,
    reps: usize,
}

/// What the idle-poll measurement reuses: a server and a synced device.
struct Synced {
    server: OurServer,
    store: Store,
    docs: usize,
}

async fn initial_sync(
    root: &Path,
    issuer: &LocalIssuer,
    token: &str,
    assets: &[Vec<u8>],
    reps: usize,
) -> (InitialRow, Synced) {
    let d = assets.len();
    let save_bytes: u64 = assets.iter().map(|a| a.len() as u64).sum();

    // Ours: seed the server from one device, then sync fresh devices.
    let server = our_server(&root.join(format!("ours-server-{d}")), issuer).await;
    let (docs, seed_took, _) =
        seed(&root.join(format!("ours-seed-{d}")), &server, token, assets).await;
    let proxy = Proxy::start(server.addr).await;
    let (mut times, mut bytes, mut requests) = (Vec::new(), 0, 0);
    let mut last = None;
    for rep in 0..reps {
        let store = Store::open(
            root.join(format!("ours-device-{d}-{rep}")),
            StoreOptions::default(),
        )
        .await
        .unwrap();
        let before = proxy.bytes();
        let t = Instant::now();
        let mut client = our_client(store.clone(), proxy.addr, token).await;
        let report = client.sync_until_idle().await.unwrap();
        times.push(t.elapsed());
        bytes = proxy.bytes() - before;
        requests = report.requests;
        drop(client);
        verify_ours(&store, &docs).await;
        if let Some(old) = last.replace(store) {
            old.close().await;
        }
    }
    let ours = stats(times).p50;

    // Samod: a server repo with the same documents, fresh client repos.
    let (server_repo, samod_addr) = samod_server(&root.join(format!("samod-server-{d}"))).await;
    let mut samod_docs = Vec::with_capacity(d);
    for bytes in assets {
        let handle = server_repo
            .create(Automerge::load(bytes).unwrap())
            .await
            .unwrap();
        samod_docs.push((handle.document_id().clone(), heads_of(&handle)));
    }
    let samod_proxy = Proxy::start(samod_addr).await;
    let (mut samod_times, mut samod_bytes, mut samod_settled_bytes) = (Vec::new(), 0, 0);
    let mut timed_out = false;
    for rep in 0..reps {
        let client = samod_client(&root.join(format!("samod-device-{d}-{rep}"))).await;
        let before = samod_proxy.bytes();
        let t = Instant::now();
        let dialer = samod_dial(&client, samod_proxy.addr);
        dialer.established().await.unwrap();
        let fetched = tokio::time::timeout(
            SAMOD_TIMEOUT,
            join_all(
                samod_docs
                    .iter()
                    .map(|(id, heads)| samod_fetch(&client, id.clone(), heads)),
            ),
        )
        .await;
        let took = t.elapsed();
        samod_bytes = samod_proxy.bytes() - before;
        // Whatever the peers still exchange once the client has everything.
        tokio::time::sleep(Duration::from_millis(300)).await;
        samod_settled_bytes = samod_proxy.bytes() - before;
        match fetched {
            Ok(handles) => {
                assert_eq!(handles.len(), d);
                samod_times.push(took);
            }
            Err(_) => timed_out = true,
        }
        dialer.close();
        client.stop().await;
        if timed_out {
            break;
        }
    }
    server_repo.stop().await;
    let samod = (!timed_out).then(|| stats(samod_times).p50);

    let row = InitialRow {
        docs: d,
        save_bytes,
        ours,
        ours_bytes: bytes,
        ours_requests: requests,
        seed: seed_took,
        samod,
        samod_bytes,
        samod_settled_bytes,
        reps,
    };
    let synced = Synced {
        server,
        store: last.unwrap(),
        docs: d,
    };
    (row, synced)
}

// --------------------------------------------------------- 2. one edit

struct EditResult {
    ours_push: Stats,
    ours_poll: Stats,
    ours_total: Stats,
    samod: Stats,
}

async fn one_edit(
    root: &Path,
    issuer: &LocalIssuer,
    token: &str,
    asset: &[u8],
    reps: usize,
) -> EditResult {
    let warmup = 5;
    let root = &root.join(format!("edit-{}", asset.len()));

    // Ours: A and B both have the asset; A edits, pushes; B polls at once.
    let server = our_server(&root.join("edit-ours-server"), issuer).await;
    let store_a = Store::open(root.join("edit-ours-a"), StoreOptions::default())
        .await
        .unwrap();
    let mut doc = store_a
        .insert(DocId::random(), AssetDoc::load(asset).unwrap())
        .await
        .unwrap();
    let mut a = our_client(store_a.clone(), server.addr, token).await;
    a.sync_until_idle().await.unwrap();
    let store_b = Store::open(root.join("edit-ours-b"), StoreOptions::default())
        .await
        .unwrap();
    let mut b = our_client(store_b.clone(), server.addr, token).await;
    b.sync_until_idle().await.unwrap();
    let (mut push, mut poll, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..warmup + reps {
        let t = Instant::now();
        doc.doc
            .append_message(NewMessage::user(format!("edit {i}")), i as i64)
            .unwrap();
        store_a.save(&mut doc).await.unwrap();
        a.local_change(doc.id.clone());
        a.round(&mut SyncReport::default()).await.unwrap();
        let pushed = t.elapsed();
        let mut report = SyncReport::default();
        b.round(&mut report).await.unwrap();
        let took = t.elapsed();
        assert_eq!(report.pulled_docs, 1);
        assert_eq!(
            sorted(store_b.recorded_heads(&doc.id).await.unwrap()),
            sorted(doc.doc.heads())
        );
        if i >= warmup {
            push.push(pushed);
            poll.push(took - pushed);
            total.push(took);
        }
    }
    drop((a, b));
    store_a.close().await;
    store_b.close().await;

    // Samod: A and B connected to a server, both with the document open.
    let (server_repo, addr) = samod_server(&root.join("edit-samod-server")).await;
    let repo_a = samod_client(&root.join("edit-samod-a")).await;
    let repo_b = samod_client(&root.join("edit-samod-b")).await;
    let dial_a = samod_dial(&repo_a, addr);
    let dial_b = samod_dial(&repo_b, addr);
    dial_a.established().await.unwrap();
    dial_b.established().await.unwrap();
    let handle_a = repo_a
        .create(Automerge::load(asset).unwrap())
        .await
        .unwrap();
    // The server has A's document before B asks for it.
    handle_a
        .they_have_our_changes(dial_a.connection_id().unwrap())
        .await;
    let handle_b = samod_fetch(
        &repo_b,
        handle_a.document_id().clone(),
        &heads_of(&handle_a),
    )
    .await;
    let mut changes = handle_b.changes();
    let mut samod = Vec::new();
    for i in 0..warmup + reps {
        let t = Instant::now();
        let want = sorted(handle_a.with_document(|d| samod_append(d, i)));
        loop {
            let seen = tokio::time::timeout(Duration::from_secs(10), changes.next())
                .await
                .expect("samod propagates an edit within 10 s")
                .expect("samod stopped");
            if sorted(seen.new_heads) == want {
                break;
            }
        }
        let took = t.elapsed();
        if i >= warmup {
            samod.push(took);
        }
    }
    drop(changes);
    dial_a.close();
    dial_b.close();
    repo_a.stop().await;
    repo_b.stop().await;
    server_repo.stop().await;

    EditResult {
        ours_push: stats(push),
        ours_poll: stats(poll),
        ours_total: stats(total),
        samod: stats(samod),
    }
}

// ------------------------------------------------------------ 3. idle poll

struct IdleResult {
    round: Stats,
    http: Stats,
    handler: Stats,
    verify: Stats,
}

async fn idle_poll(synced: &Synced, verifier: &Verifier, token: &str, reps: usize) -> IdleResult {
    let user = LocalIssuer::user_id(USER);
    let mut client = our_client(synced.store.clone(), synced.server.addr, token).await;
    client.sync_until_idle().await.unwrap();
    let cursor = synced.store.meta("feed_cursor").await.unwrap().unwrap() as u64;
    let req = SyncRequest {
        feed_cursor: cursor,
        ..Default::default()
    };
    let http = HttpTransport::new(&url(synced.server.addr)).unwrap();
    let header = format!("Bearer {token}");
    let (mut round, mut bare, mut handler, mut verify) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let polls = cloud_lambda::limits::LongPolls::new(1);
    for i in 0..reps + 10 {
        let t = Instant::now();
        let mut report = SyncReport::default();
        client.round(&mut report).await.unwrap();
        let a = t.elapsed();
        assert_eq!(report.pulled_docs, 0);

        let t = Instant::now();
        let (resp, _) = http.sync(&req, token).await.unwrap();
        let b = t.elapsed();
        assert!(resp.docs.is_empty());

        let t = Instant::now();
        let resp = cloud_lambda::sync::sync(&synced.server.writer, &polls, &user, req.clone())
            .await
            .unwrap();
        let c = t.elapsed();
        assert!(resp.docs.is_empty());

        let t = Instant::now();
        verifier.verify(Some(&header)).await.unwrap();
        let d = t.elapsed();

        if i >= 10 {
            round.push(a);
            bare.push(b);
            handler.push(c);
            verify.push(d);
        }
    }
    IdleResult {
        round: stats(round),
        http: stats(bare),
        handler: stats(handler),
        verify: stats(verify),
    }
}

// -------------------------------------------------------------------- main

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let sizes: &[usize] = if quick { &[100] } else { &[250, 1_000, 2_000] };
    let edit_reps = if quick { 20 } else { 50 };
    let idle_reps = if quick { 50 } else { 200 };

    let issuer =
        LocalIssuer::load_or_create(&root.join("issuer"), "atelier-local", "atelier-desktop")
            .unwrap();
    let token = issuer.mint(USER, Duration::from_secs(3600));
    let assets = build_assets(*sizes.last().unwrap());

    // 1. Initial sync.
    let mut rows: Vec<InitialRow> = Vec::new();
    let mut synced: Option<Synced> = None;
    let mut skipped = Vec::new();
    for (k, &d) in sizes.iter().enumerate() {
        let largest = k + 1 == sizes.len() && k > 0;
        if largest && started.elapsed() > LARGEST_SIZE_BUDGET {
            skipped.push(d);
            continue;
        }
        let reps = if d <= 250 {
            3
        } else if d <= 1_000 {
            2
        } else {
            1
        };
        let (row, s) = initial_sync(root, &issuer, &token, &assets[..d], reps).await;
        rows.push(row);
        // The idle poll runs against the largest device of at most 1,000 docs.
        if d <= 1_000 {
            synced = Some(s);
        }
    }

    println!(
        "## 1. Initial sync to an empty device ({MESSAGES_PER_ASSET} messages per asset, loopback TCP, median of the runs)"
    );
    println!();
    println!(
        "| docs (runs) | ours | samod | samod / ours | ours docs/s | samod docs/s | ours wire | samod wire (synced / settled) | sum of save() | ours wire / save | samod wire / save |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let (samod, ratio, samod_rate) = match r.samod {
            Some(s) => (
                secs(s),
                format!("{:.2}x", s.as_secs_f64() / r.ours.as_secs_f64()),
                format!("{:.0}", r.docs as f64 / s.as_secs_f64()),
            ),
            None => (
                format!("> {} (timed out)", secs(SAMOD_TIMEOUT)),
                "—".into(),
                "—".into(),
            ),
        };
        println!(
            "| {} docs ({} runs) | {} | {samod} | {ratio} | {:.0} | {samod_rate} | {} | {} / {} | {} | {:.2}x | {:.2}x |",
            r.docs,
            r.reps,
            secs(r.ours),
            r.docs as f64 / r.ours.as_secs_f64(),
            kb(r.ours_bytes),
            kb(r.samod_bytes),
            kb(r.samod_settled_bytes),
            kb(r.save_bytes),
            r.ours_bytes as f64 / r.save_bytes as f64,
            r.samod_bytes as f64 / r.save_bytes as f64,
        );
    }
    println!();
    for r in &rows {
        println!(
            "Ours, {} docs: {} sync requests; seeding (one device pushing all {} docs): {}.",
            r.docs,
            r.ours_requests,
            r.docs,
            secs(r.seed)
        );
    }
    let unavailable = SAMOD_UNAVAILABLE.load(Ordering::SeqCst);
    if unavailable > 0 {
        println!(
            "Samod's `find` answered \"unavailable\" {unavailable} times for documents the server has; each was asked again (included in the time)."
        );
    }
    for d in &skipped {
        println!(
            "The {d}-doc size was skipped: the run had already taken over {} (time cap).",
            secs(LARGEST_SIZE_BUDGET)
        );
    }
    if rows.len() > 1 {
        println!();
        println!("### Growth (time ratio / docs ratio: 1.00 is linear)");
        println!();
        println!(
            "| growth | ours time ratio | ours / linear | samod time ratio | samod / linear |"
        );
        println!("|---|---:|---:|---:|---:|");
        for w in rows.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            let n = b.docs as f64 / a.docs as f64;
            let ours = b.ours.as_secs_f64() / a.ours.as_secs_f64();
            let samod = match (a.samod, b.samod) {
                (Some(x), Some(y)) => {
                    let r = y.as_secs_f64() / x.as_secs_f64();
                    (format!("{r:.2}x"), format!("{:.2}", r / n))
                }
                _ => ("—".into(), "—".into()),
            };
            println!(
                "| {} → {} docs | {ours:.2}x | {:.2} | {} | {} |",
                a.docs,
                b.docs,
                ours / n,
                samod.0,
                samod.1
            );
        }
    }

    // 2. One edit from A to B, on a small and a long asset.
    let long = build_long_asset(LONG_ASSET_MESSAGES);
    let edits = [
        (
            MESSAGES_PER_ASSET,
            one_edit(root, &issuer, &token, &assets[0], edit_reps).await,
        ),
        (
            LONG_ASSET_MESSAGES,
            one_edit(root, &issuer, &token, &long, edit_reps).await,
        ),
    ];
    println!();
    println!(
        "## 2. One small edit (an appended message) on device A until device B has it ({edit_reps} runs after 5 warm-up)"
    );
    println!();
    println!("| asset | measure | p50 | p99 | max |");
    println!("|---|---|---:|---:|---:|");
    for (n, edit) in &edits {
        let asset = format!("{n} messages");
        for (name, s) in [
            (
                "ours: A edit + durable save + push (`round`)",
                &edit.ours_push,
            ),
            ("ours: B poll (`round`, applied durably)", &edit.ours_poll),
            ("ours: A edit → B has it (total)", &edit.ours_total),
            ("samod: A edit → B's handle has it", &edit.samod),
        ] {
            println!(
                "| {asset} | {name} | {} | {} | {} |",
                ms(s.p50),
                ms(s.p99),
                ms(s.max)
            );
        }
        println!(
            "| {asset} | ours / samod | {:.2}x | {:.2}x | |",
            edit.ours_total.p50.as_secs_f64() / edit.samod.p50.as_secs_f64(),
            edit.ours_total.p99.as_secs_f64() / edit.samod.p99.as_secs_f64()
        );
    }

    // 3. Idle poll.
    let synced = synced.expect("an initial sync ran");
    let idle = idle_poll(&synced, &issuer.verifier(), &token, idle_reps).await;
    println!();
    println!(
        "## 3. Idle poll with {} docs synced ({idle_reps} runs after 10 warm-up; samod pushes, it has no poll)",
        synced.docs
    );
    println!();
    println!("| measure | p50 | p99 | max | goal |");
    println!("|---|---:|---:|---:|---|");
    for (name, s, goal) in [
        (
            "`SyncClient::round` end to end (incl. persisting the cursor)",
            &idle.round,
            "< 5 ms",
        ),
        (
            "one HTTP request (`HttpTransport::sync`)",
            &idle.http,
            "< 5 ms",
        ),
        (
            "server handler logic (`cloud_lambda::sync::sync` on the store)",
            &idle.handler,
            "",
        ),
        (
            "bearer JWT check (`Verifier::verify`, RS256)",
            &idle.verify,
            "",
        ),
    ] {
        println!(
            "| {name} | {} | {} | {} | {goal} |",
            ms(s.p50),
            ms(s.p99),
            ms(s.max)
        );
    }
    println!();
    println!("Total bench time: {}.", secs(started.elapsed()));
}
