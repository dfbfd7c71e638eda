//! The sync endpoint, `POST /v1/sync`, end to end through the real Router
//! (every layer: request ids, request decompression, the body limit,
//! response compression, auth), called in-process with
//! `tower::ServiceExt::oneshot`, over a real [`EmbeddedStore`] in a
//! temporary directory and a [`LocalIssuer`].
//!
//! Every refusal is checked twice: the status and the JSON error body
//! (RFC 9457 problem details with a `code`) the client sees, and the store itself
//! (through the `DocStore` API), which must show that nothing was written.
//!
//! RSA key generation is slow in debug builds, so the binary generates one
//! key, once ([`keys`]); every other issuer in here reuses it. Compressed
//! bodies that must be exact (decompression bombs, a corrupt block past the
//! limit) are built by hand ([`zstd_frame`], [`gzip`]) so their decompressed
//! size is known without compressing megabytes in a debug build.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use automerge::ChangeHash;
use axum::Router;
use axum::body::{Body, Bytes as HttpBytes, to_bytes};
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cloud_lambda::app::{AppState, router};
use cloud_lambda::auth::{AuthError, LocalIssuer};
use cloud_lambda::error::Problem;
use cloud_lambda::limits::{ApiConfig, ApiLimits};
use cloud_lambda::storage::embedded::EmbeddedStore;
use cloud_lambda::storage::{DocHead, DocStore, FeedEntry};
use core_sync::model::NewMessage;
use core_sync::sync::bounds::MAX_REQUEST_DOCS;
use core_sync::sync::client::encode_request;
use core_sync::sync::protocol::{
    Bytes, DocPush, DocUpdate, MAX_REQUEST_BYTES, PushOutcome, PushStatus, SYNC_PATH, SyncRequest,
    SyncResponse, change_hashes, hashes,
};
use core_sync::{AssetDoc, DocId};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use tower_http::decompression::RequestDecompressionLayer;

const ISS: &str = "atelier-sync-api-test";
const AUD: &str = "atelier-sync-api-client";

// ------------------------------------------------------------- fixtures

/// The one issuer of this binary, and its private key.
struct Keys {
    issuer: LocalIssuer,
    pem: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        // The directory only exists while the key is generated and read.
        let dir = tempfile::tempdir().unwrap();
        let issuer = LocalIssuer::load_or_create(dir.path(), ISS, AUD).unwrap();
        let pem = std::fs::read_to_string(dir.path().join(LocalIssuer::KEY_FILE_NAME)).unwrap();
        Keys { issuer, pem }
    })
}

struct User {
    /// The user id the server scopes everything by (the token's `sub`).
    sub: String,
    token: String,
}

fn user(name: &str) -> User {
    User {
        sub: LocalIssuer::user_id(name),
        token: keys().issuer.mint(name, Duration::from_secs(3600)),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A Router over a fresh embedded store.
struct Server {
    app: Router,
    store: Arc<EmbeddedStore>,
    _dir: tempfile::TempDir,
}

/// What the store holds for one user: enough to see that nothing changed.
#[derive(Debug, PartialEq)]
struct Stored {
    user_head: u64,
    feed: Vec<FeedEntry>,
}

impl Stored {
    const NOTHING: Stored = Stored {
        user_head: 0,
        feed: Vec::new(),
    };
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: HttpBytes,
}

impl Server {
    async fn new() -> Self {
        Server::with_limits(ApiConfig::default()).await
    }

    /// A server with these request bounds (long polls per user, …).
    async fn with_limits(limits: ApiConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
        let keys = keys();
        let blobs =
            Arc::new(cloud_lambda::storage::embedded::EmbeddedBlobs::open(dir.path()).unwrap());
        let state = AppState::new(
            store.clone(),
            blobs,
            store.clone(),
            keys.issuer.verifier(),
            Some(keys.issuer.jwks_json()),
        )
        .with_limits(ApiLimits::new(limits));
        Server {
            app: router(state),
            store,
            _dir: dir,
        }
    }

    async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// `POST /v1/sync` with exactly these headers.
    async fn post(&self, headers: &[(&str, &str)], body: impl Into<Body>) -> Resp {
        let mut req = Request::post(SYNC_PATH);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.send(req.body(body.into()).unwrap()).await
    }

    /// An authenticated, uncompressed JSON body.
    async fn post_json(&self, token: &str, body: impl Into<Body>) -> Resp {
        let auth = bearer(token);
        self.post(
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await
    }

    async fn sync(&self, token: &str, req: &SyncRequest) -> SyncResponse {
        self.post_json(token, json_body(req)).await.ok()
    }

    async fn head(&self, user: &User, doc: &DocId) -> Option<DocHead> {
        self.store.head(&user.sub, doc).await.unwrap()
    }

    async fn stored(&self, user: &User) -> Stored {
        Stored {
            user_head: self.store.user_head(&user.sub).await.unwrap(),
            feed: self.store.feed_since(&user.sub, 0, 10_000).await.unwrap(),
        }
    }
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A successful sync response.
    #[track_caller]
    fn ok(&self) -> SyncResponse {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.text());
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Checks the status and that the body is exactly an RFC 9457 problem
    /// (`application/problem+json`: type, title, status, code, detail)
    /// with this code; returns the detail.
    #[track_caller]
    fn error(&self, status: StatusCode, code: &str) -> String {
        assert_eq!(self.status, status, "body: {}", self.text());
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/problem+json"),
            "{status}: content-type {content_type:?}, body {:?}",
            self.text()
        );
        let value: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {:?}", self.text()));
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["code", "detail", "status", "title", "type"],
            "{value}"
        );
        let problem: Problem = serde_json::from_value(value).unwrap();
        assert_eq!(problem.code, code, "{:?}", problem.detail);
        assert_eq!(problem.status, status.as_u16());
        assert_eq!(problem.type_, format!("urn:atelier:problem:{code}"));
        assert!(!problem.detail.is_empty());
        problem.detail
    }
}

fn json_body(req: &SyncRequest) -> Vec<u8> {
    serde_json::to_vec(req).unwrap()
}

fn request(feed_cursor: u64, push: Vec<DocPush>) -> SyncRequest {
    SyncRequest {
        feed_cursor,
        push,
        resync: vec![],
        wait_ms: 0,
        epoch: 0,
    }
}

fn push(doc_id: &DocId, changes: Vec<u8>) -> DocPush {
    DocPush {
        doc_id: doc_id.clone(),
        changes: Bytes(changes),
    }
}

fn accepted(doc_id: &DocId, doc: &mut AssetDoc) -> PushOutcome {
    PushOutcome {
        doc_id: doc_id.clone(),
        status: PushStatus::Accepted,
        server_heads: hashes(&doc.heads()),
    }
}

/// A document with `messages` user messages, one change each.
fn new_doc(title: &str, messages: usize) -> AssetDoc {
    let mut doc = AssetDoc::create(title, 1_000);
    for i in 0..messages {
        doc.append_message(NewMessage::user(format!("{title} #{i}")), 2_000 + i as i64)
            .unwrap();
    }
    doc
}

fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads
}

/// Deterministic noise.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// A client device: a cursor and the documents it has applied.
struct Device {
    token: String,
    cursor: u64,
    docs: HashMap<DocId, AssetDoc>,
}

impl Device {
    fn new(user: &User) -> Self {
        Device {
            token: user.token.clone(),
            cursor: 0,
            docs: HashMap::new(),
        }
    }

    /// One round trip; applies what came back and moves the cursor.
    async fn sync(&mut self, srv: &Server, resync: Vec<DocId>) -> SyncResponse {
        let req = SyncRequest {
            feed_cursor: self.cursor,
            push: vec![],
            resync,
            wait_ms: 0,
            epoch: 0,
        };
        let resp = srv.sync(&self.token, &req).await;
        for update in &resp.docs {
            self.apply(update);
        }
        self.cursor = resp.feed_cursor;
        resp
    }

    fn apply(&mut self, update: &DocUpdate) {
        let chunks = update.chunks.iter().map(|c| c.0.as_slice());
        let doc = match self.docs.entry(update.doc_id.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let doc = e.into_mut();
                for chunk in chunks {
                    doc.apply_incremental(chunk).unwrap();
                }
                doc
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(AssetDoc::load_chunks(chunks).unwrap())
            }
        };
        assert_eq!(
            sorted(doc.heads()),
            sorted(change_hashes(&update.server_heads)),
            "after applying, the device is where the server said it is"
        );
    }

    fn doc(&mut self, id: &DocId) -> &mut AssetDoc {
        self.docs.get_mut(id).expect("the device has the document")
    }
}

// ------------------------------------------------- hand-built encodings

/// One piece of a hand-built compressed body.
enum Seg<'a> {
    /// These bytes, verbatim.
    Raw(&'a [u8]),
    /// This many spaces (JSON whitespace).
    Spaces(usize),
    /// A block no decoder accepts (zstd only).
    Corrupt,
}

/// A zstd frame (RFC 8878) of raw and RLE blocks: 4 bytes per 128 KiB of
/// spaces, so a gigabyte costs 32 KiB on the wire.
fn zstd_frame(segs: &[Seg]) -> Vec<u8> {
    const BLOCK: usize = 128 * 1024;
    // (block type, size field, content)
    let mut blocks: Vec<(u32, usize, Vec<u8>)> = Vec::new();
    for seg in segs {
        match seg {
            Seg::Raw(bytes) => {
                for part in bytes.chunks(BLOCK) {
                    blocks.push((0, part.len(), part.to_vec()));
                }
            }
            Seg::Spaces(n) => {
                let mut n = *n;
                while n > 0 {
                    let size = n.min(BLOCK);
                    blocks.push((1, size, vec![b' ']));
                    n -= size;
                }
            }
            // Block type 3 is reserved: "Corruption detected".
            Seg::Corrupt => blocks.push((3, 0, vec![])),
        }
    }
    let mut out = vec![0x28, 0xB5, 0x2F, 0xFD]; // magic, little-endian
    out.push(0x00); // no content size, no checksum, no dictionary, not single-segment
    out.push(0x38); // window descriptor: 2^17 bytes = 128 KiB
    let count = blocks.len();
    for (i, (kind, size, content)) in blocks.into_iter().enumerate() {
        let last = u32::from(i + 1 == count);
        let header = last | (kind << 1) | ((size as u32) << 3);
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.extend_from_slice(&content);
    }
    out
}

/// Deflate's bit order: values LSB first, Huffman codes MSB first.
#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    bits: u32,
}

impl BitWriter {
    fn value(&mut self, value: u64, bits: u32) {
        self.acc |= value << self.bits;
        self.bits += bits;
        while self.bits >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.bits -= 8;
        }
    }

    fn code(&mut self, code: u32, bits: u32) {
        for i in (0..bits).rev() {
            self.value(u64::from((code >> i) & 1), 1);
        }
    }

    /// A literal byte in the fixed Huffman code (RFC 1951 §3.2.6).
    fn literal(&mut self, b: u8) {
        if b <= 143 {
            self.code(0x30 + u32::from(b), 8);
        } else {
            self.code(0x190 + u32::from(b - 144), 9);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.bits > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

fn crc32(prefix: &[u8], spaces: usize) -> u32 {
    let table: Vec<u32> = (0..256u32)
        .map(|n| {
            (0..8).fold(n, |c, _| {
                if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                }
            })
        })
        .collect();
    let mut crc = !0u32;
    for b in prefix
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b' ', spaces))
    {
        crc = table[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// A gzip member (RFC 1952) of `prefix` then `spaces` spaces: one fixed
/// Huffman block, the spaces as length-258 back-references (13 bits each).
fn gzip(prefix: &[u8], spaces: usize) -> Vec<u8> {
    let mut w = BitWriter::default();
    w.value(1, 1); // BFINAL
    w.value(1, 2); // BTYPE = 01, fixed Huffman
    for &b in prefix {
        w.literal(b);
    }
    let mut left = spaces;
    if left > 0 {
        w.literal(b' ');
        left -= 1;
    }
    while left >= 258 {
        w.code(0xC5, 8); // length code 285: 258 bytes
        w.code(0, 5); // distance code 0: distance 1
        left -= 258;
    }
    for _ in 0..left {
        w.literal(b' ');
    }
    w.code(0, 7); // end of block
    let mut out = vec![0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0xFF];
    out.extend_from_slice(&w.finish());
    out.extend_from_slice(&crc32(prefix, spaces).to_le_bytes());
    out.extend_from_slice(&((prefix.len() + spaces) as u32).to_le_bytes());
    out
}

/// Decodes a compressed body with tower-http's own request decompression
/// (an echo service), for reading compressed responses.
async fn decompress(encoding: &str, bytes: HttpBytes) -> HttpBytes {
    let echo = Router::new()
        .route("/", post(|body: HttpBytes| async move { body }))
        .layer(DefaultBodyLimit::disable())
        .layer(RequestDecompressionLayer::new());
    let req = Request::post("/")
        .header(header::CONTENT_ENCODING, encoding)
        .body(Body::from(bytes))
        .unwrap();
    let resp = echo.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    to_bytes(resp.into_body(), usize::MAX).await.unwrap()
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn a_pushed_document_reaches_a_second_device_and_an_idle_poll_is_empty() {
    let srv = Server::new().await;
    let alice = user("alice");
    let id = DocId::random();
    let mut a = AssetDoc::create("Sunset", 1_000);
    a.append_message(NewMessage::user("make the sky warmer"), 2_000)
        .unwrap();
    a.append_message(NewMessage::user("and add a boat"), 3_000)
        .unwrap();

    let resp = srv
        .sync(
            &alice.token,
            &request(0, vec![push(&id, a.changes_since(&[]))]),
        )
        .await;
    assert_eq!(resp.pushed, vec![accepted(&id, &mut a)]);
    assert_eq!(
        resp.feed_cursor, 1,
        "the pusher's cursor moves past its push"
    );
    let head = srv.head(&alice, &id).await.expect("stored");
    assert_eq!(sorted(head.heads), sorted(a.heads()));
    // A first push outweighs the (absent) snapshot: the server compacts it
    // at once, so devices syncing from scratch download a compact snapshot.
    assert_eq!((head.last_useq, head.snapshot_upto), (1, 1));
    assert_eq!(
        srv.stored(&alice).await,
        Stored {
            user_head: 1,
            feed: vec![FeedEntry {
                doc_id: id.clone(),
                useq: 1
            }],
        }
    );

    // Device B, same user, knows nothing yet.
    let mut b = Device::new(&alice);
    let pulled = b.sync(&srv, vec![]).await;
    assert_eq!(pulled.docs.len(), 1);
    assert_eq!(pulled.docs[0].doc_id, id);
    assert!(pulled.pushed.is_empty());
    assert!(!pulled.more);
    assert_eq!(b.cursor, 1);
    let copy = b.doc(&id);
    assert_eq!(sorted(copy.heads()), sorted(a.heads()));
    let messages = copy.messages().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages, a.messages().unwrap());

    // An idle poll: nothing new, cursor unchanged.
    let idle = b.sync(&srv, vec![]).await;
    assert!(idle.epoch >= 1, "every answer names the epoch");
    assert_eq!(
        idle,
        SyncResponse {
            feed_cursor: 1,
            docs: vec![],
            pushed: vec![],
            more: false,
            epoch: idle.epoch,
            start_over: false,
            purged: vec![],
        }
    );
    assert_eq!(srv.stored(&alice).await.user_head, 1);
}

#[tokio::test]
async fn retried_and_partial_pushes_store_nothing_twice() {
    let srv = Server::new().await;
    let alice = user("alice");
    let id = DocId::random();
    let mut a = AssetDoc::create("Retry", 1_000);
    let first_change = a.changes_since(&[]);
    for i in 0..3 {
        a.append_message(NewMessage::user(format!("note {i}")), 2_000 + i)
            .unwrap();
    }
    let all = request(0, vec![push(&id, a.changes_since(&[]))]);
    let first = srv.sync(&alice.token, &all).await;
    assert_eq!(first.pushed, vec![accepted(&id, &mut a)]);
    let stored = srv.stored(&alice).await;
    let head = srv.head(&alice, &id).await;
    assert_eq!(stored.user_head, 1);

    // The same request again, as after a lost response.
    let again = srv.sync(&alice.token, &all).await;
    assert_eq!(again.pushed, first.pushed);
    assert_eq!(srv.stored(&alice).await, stored);
    assert_eq!(srv.head(&alice, &id).await, head);

    // Only changes the server already has (a subset), and no changes at all.
    for changes in [first_change, vec![]] {
        let resp = srv
            .sync(&alice.token, &request(1, vec![push(&id, changes)]))
            .await;
        assert_eq!(resp.pushed, vec![accepted(&id, &mut a)]);
        assert!(resp.docs.is_empty());
        assert_eq!(srv.stored(&alice).await, stored);
        assert_eq!(srv.head(&alice, &id).await, head);
    }

    // A resend of everything plus one new change stores just that change.
    let server_heads = a.heads();
    a.append_message(NewMessage::user("one more"), 9_000)
        .unwrap();
    let resp = srv
        .sync(
            &alice.token,
            &request(1, vec![push(&id, a.changes_since(&[]))]),
        )
        .await;
    assert_eq!(resp.pushed, vec![accepted(&id, &mut a)]);
    assert_eq!(srv.stored(&alice).await.user_head, 2);
    let entry = srv.store.read_since(&alice.sub, &id, 1).await.unwrap();
    assert_eq!(entry.len(), 1);
    assert_eq!(entry[0].bytes, a.changes_since(&server_heads));

    // A second device sees every message exactly once.
    let mut b = Device::new(&alice);
    b.sync(&srv, vec![]).await;
    let messages = b.doc(&id).messages().unwrap();
    assert_eq!(messages, a.messages().unwrap());
    assert_eq!(messages.len(), 4);
    let ids: HashSet<_> = messages.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids.len(), 4);
}

#[tokio::test]
async fn a_push_missing_its_dependencies_stores_nothing_until_the_history_arrives() {
    let srv = Server::new().await;
    let alice = user("alice");

    // A new document: only its second change, whose parent the server never got.
    let id = DocId::random();
    let mut a = AssetDoc::create("Gap", 1_000);
    let after_create = a.heads();
    a.append_message(NewMessage::user("hello"), 2_000).unwrap();
    let later = a.changes_since(&after_create);
    let resp = srv
        .sync(&alice.token, &request(0, vec![push(&id, later)]))
        .await;
    assert_eq!(
        resp.pushed,
        vec![PushOutcome {
            doc_id: id.clone(),
            status: PushStatus::MissingDeps,
            server_heads: vec![],
        }]
    );
    assert_eq!(srv.head(&alice, &id).await, None);
    assert_eq!(srv.stored(&alice).await, Stored::NOTHING);

    // Resending the whole history is accepted.
    let resp = srv
        .sync(
            &alice.token,
            &request(0, vec![push(&id, a.changes_since(&[]))]),
        )
        .await;
    assert_eq!(resp.pushed, vec![accepted(&id, &mut a)]);
    assert_eq!(srv.stored(&alice).await.user_head, 1);

    // An existing document: skip a change; the answer names the server's heads.
    let server_heads = a.heads();
    a.append_message(NewMessage::user("skipped"), 3_000)
        .unwrap();
    let skipped = a.heads();
    a.append_message(NewMessage::user("sent"), 4_000).unwrap();
    let head = srv.head(&alice, &id).await;
    let resp = srv
        .sync(
            &alice.token,
            &request(1, vec![push(&id, a.changes_since(&skipped))]),
        )
        .await;
    assert_eq!(
        resp.pushed,
        vec![PushOutcome {
            doc_id: id.clone(),
            status: PushStatus::MissingDeps,
            server_heads: hashes(&server_heads),
        }]
    );
    assert_eq!(srv.head(&alice, &id).await, head);
    assert_eq!(srv.stored(&alice).await.user_head, 1);

    // Resending from the server's heads fills the gap.
    let resp = srv
        .sync(
            &alice.token,
            &request(1, vec![push(&id, a.changes_since(&server_heads))]),
        )
        .await;
    assert_eq!(resp.pushed, vec![accepted(&id, &mut a)]);
    let mut b = Device::new(&alice);
    b.sync(&srv, vec![]).await;
    assert_eq!(b.doc(&id).messages().unwrap(), a.messages().unwrap());
}

#[tokio::test]
async fn corrupt_truncated_and_garbage_changes_are_refused_before_anything_is_stored() {
    let srv = Server::new().await;
    let alice = user("alice");
    let good_id = DocId::random();
    let good = new_doc("Fine", 1).changes_since(&[]);
    let bad_id = DocId::random();
    let bytes = new_doc("Broken", 2).changes_since(&[]);

    let flipped = |at: usize| {
        let mut b = bytes.clone();
        b[at] ^= 0x55;
        b
    };
    let mut magic_then_noise = vec![0x85, 0x6F, 0x4A, 0x83];
    magic_then_noise.extend(noise(64, 7));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("checksum byte flipped", flipped(5)),
        ("first change's body flipped", flipped(12)),
        ("middle byte flipped", flipped(bytes.len() / 2)),
        ("last change's body flipped", flipped(bytes.len() - 3)),
        (
            "truncated by a few bytes",
            bytes[..bytes.len() - 5].to_vec(),
        ),
        ("truncated to half", bytes[..bytes.len() / 2].to_vec()),
        ("random garbage", noise(512, 42)),
        ("magic then garbage", magic_then_noise),
        (
            "valid changes then garbage",
            [bytes.clone(), noise(40, 3)].concat(),
        ),
    ];
    for (what, changes) in cases {
        // The good push comes first: validation covers the whole request
        // before anything is written.
        let req = request(
            0,
            vec![push(&good_id, good.clone()), push(&bad_id, changes)],
        );
        let resp = srv.post_json(&alice.token, json_body(&req)).await;
        let msg = resp.error(StatusCode::BAD_REQUEST, "bad_request");
        assert!(msg.contains(bad_id.as_str()), "{what}: {msg}");
        assert!(!msg.contains(good_id.as_str()), "{what}: {msg}");
        assert_eq!(srv.head(&alice, &good_id).await, None, "{what}");
        assert_eq!(srv.head(&alice, &bad_id).await, None, "{what}");
        assert_eq!(srv.stored(&alice).await, Stored::NOTHING, "{what}");
    }

    // One document twice in one request.
    let req = request(
        0,
        vec![push(&good_id, good.clone()), push(&good_id, good.clone())],
    );
    let resp = srv.post_json(&alice.token, json_body(&req)).await;
    let msg = resp.error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(
        msg.contains(good_id.as_str()) && msg.contains("twice"),
        "{msg}"
    );
    assert_eq!(srv.stored(&alice).await, Stored::NOTHING);

    // The good push on its own was fine all along.
    let resp = srv
        .sync(&alice.token, &request(0, vec![push(&good_id, good)]))
        .await;
    assert_eq!(resp.pushed[0].status, PushStatus::Accepted);
}

/// A change chunk (checksum not filled in: it is weighed before anything
/// checks it) whose one operation column is `column`, an integer column.
fn hand_made_change(column: &[u8]) -> Vec<u8> {
    // No deps, a one-byte actor, seq 1, start op 1, time 0, no message,
    // no other actors, one column.
    let mut body = vec![
        0,
        1,
        0xaa,
        1,
        1,
        0,
        0,
        0,
        1,
        (1 << 4) | 2,
        column.len() as u8,
    ];
    body.extend_from_slice(column);
    let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 1, body.len() as u8];
    chunk.extend(body);
    chunk
}

/// The changes of a new document `fill` writes, in one change,
/// compressed as Automerge compresses changes.
fn compressed_changes(fill: impl FnOnce(&mut automerge::AutoCommit)) -> Vec<u8> {
    let mut doc = automerge::AutoCommit::new();
    fill(&mut doc);
    doc.commit();
    let mut bytes = Vec::new();
    for change in doc.get_changes(&[]) {
        let mut change = change.clone();
        bytes.extend_from_slice(&change.bytes());
    }
    bytes
}

#[tokio::test]
async fn requests_that_cost_more_than_they_weigh_are_refused_at_once() {
    use automerge::transaction::Transactable as _;
    let srv = Server::new().await;
    let alice = user("alice");
    let empty_pushes =
        |n: usize| -> Vec<DocPush> { (0..n).map(|_| push(&DocId::random(), vec![])).collect() };
    let resyncs = |n: usize| -> Vec<DocId> { (0..n).map(|_| DocId::random()).collect() };
    // 300,000 characters typed into a text in one change: about 400 bytes
    // compressed, 2.4 million rows to parse.
    let typed = compressed_changes(|d| {
        let text = d
            .put_object(automerge::ROOT, "t", automerge::ObjType::Text)
            .unwrap();
        d.splice_text(&text, 0, 0, &"a".repeat(300_000)).unwrap();
    });
    assert!(typed.len() < 2_000, "{} bytes", typed.len());
    // One value of 4 MiB: a few kilobytes compressed.
    let inflating = compressed_changes(|d| {
        d.put(automerge::ROOT, "v", "a".repeat(4 << 20)).unwrap();
    });
    assert!(inflating.len() < 16_000, "{} bytes", inflating.len());
    // A run of 2^40 operations declared in seven bytes: counted, never
    // expanded (expanding it would hold the server for days).
    let run = hand_made_change(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 7]);
    let id = DocId::random();

    // (case, request, code, words the detail must contain)
    let cases: Vec<(&str, SyncRequest, &str, &[&str])> = vec![
        (
            "one push over the document bound",
            request(0, empty_pushes(MAX_REQUEST_DOCS + 1)),
            "too_many_documents",
            &["501 documents", "at most 500"],
        ),
        (
            "200,000 empty pushes in 12 MB",
            request(0, empty_pushes(200_000)),
            "too_many_documents",
            &["200000 documents"],
        ),
        (
            "pushes and resyncs over the bound together",
            SyncRequest {
                resync: resyncs(201),
                ..request(0, empty_pushes(300))
            },
            "too_many_documents",
            &["501 documents"],
        ),
        (
            "resyncs alone over the bound",
            SyncRequest {
                resync: resyncs(MAX_REQUEST_DOCS + 1),
                ..request(0, vec![])
            },
            "too_many_documents",
            &["501 documents"],
        ),
        (
            "300,000 characters in a few hundred bytes",
            request(0, vec![push(&id, typed.clone())]),
            "too_much_work",
            &["rows", "per byte"],
        ),
        (
            "a declared run of 2^40 operations",
            request(0, vec![push(&id, run)]),
            "too_much_work",
            &["1099511627776 rows"],
        ),
        (
            "4 MiB inflated from a few kilobytes",
            request(0, vec![push(&id, inflating)]),
            "too_much_work",
            &["inflate"],
        ),
    ];
    for (what, req, code, words) in cases {
        let resp = srv.post_json(&alice.token, json_body(&req)).await;
        let detail = resp.error(StatusCode::PAYLOAD_TOO_LARGE, code);
        for word in words {
            assert!(detail.contains(word), "{what}: {detail}");
        }
        assert!(detail.contains("Nothing was stored"), "{what}: {detail}");
        assert_eq!(srv.head(&alice, &id).await, None, "{what}");
        assert_eq!(srv.stored(&alice).await, Stored::NOTHING, "{what}");
    }

    // At the bounds: answered.
    let resp = srv
        .sync(&alice.token, &request(0, empty_pushes(MAX_REQUEST_DOCS)))
        .await;
    assert_eq!(resp.pushed.len(), MAX_REQUEST_DOCS);
    let resp = srv
        .sync(
            &alice.token,
            &SyncRequest {
                resync: resyncs(MAX_REQUEST_DOCS),
                ..request(0, vec![])
            },
        )
        .await;
    assert!(resp.docs.is_empty());
    // A real document of 200 messages, as a snapshot: far inside them.
    let mut doc = new_doc("Fine", 200);
    let resp = srv
        .sync(&alice.token, &request(0, vec![push(&id, doc.save())]))
        .await;
    assert_eq!(resp.pushed, vec![accepted(&id, &mut doc)]);
}

#[tokio::test]
async fn malformed_json_and_wrong_content_types_are_refused() {
    let srv = Server::new().await;
    let alice = user("alice");
    let id = DocId::random();
    let valid = serde_json::to_value(request(
        0,
        vec![push(&id, new_doc("Valid", 1).changes_since(&[]))],
    ))
    .unwrap();
    let text = valid.to_string();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = valid.clone();
        f(&mut v);
        v.to_string()
    };

    // (case, body, a word the message must contain)
    let cases: Vec<(&str, String, &str)> = vec![
        ("truncated JSON", text[..text.len() / 2].to_owned(), "EOF"),
        ("not JSON", "feedCursor=0".into(), "expected"),
        ("empty body", String::new(), "EOF"),
        ("an array", "[]".into(), "struct SyncRequest"),
        (
            "feedCursor as a string",
            edit(&|v| v["feedCursor"] = json!("0")),
            "invalid type",
        ),
        (
            "negative feedCursor",
            edit(&|v| v["feedCursor"] = json!(-1)),
            "invalid value",
        ),
        (
            "feedCursor missing",
            edit(&|v| {
                v.as_object_mut().unwrap().remove("feedCursor");
            }),
            "feedCursor",
        ),
        (
            "changes not base64",
            edit(&|v| v["push"][0]["changes"] = json!("***not base64***")),
            "base64",
        ),
        (
            "changes a number",
            edit(&|v| v["push"][0]["changes"] = json!(42)),
            "invalid type",
        ),
        (
            "push not a list",
            edit(&|v| v["push"] = v["push"][0].clone()),
            "invalid type",
        ),
        (
            "unknown field",
            edit(&|v| v["surprise"] = json!(true)),
            "surprise",
        ),
        (
            "unknown push field",
            edit(&|v| v["push"][0]["owner"] = json!("bob")),
            "owner",
        ),
        (
            "doc id with a path",
            edit(&|v| v["push"][0]["docId"] = json!("../../etc/passwd")),
            "invalid id",
        ),
        (
            "doc id in upper case",
            edit(&|v| v["push"][0]["docId"] = json!(id.as_str().to_uppercase())),
            "invalid id",
        ),
        (
            "doc id too short",
            edit(&|v| v["push"][0]["docId"] = json!("abc123")),
            "invalid id",
        ),
        (
            "resync id invalid",
            edit(&|v| v["resync"] = json!(["x"])),
            "invalid id",
        ),
    ];
    for (what, body, word) in cases {
        let resp = srv.post_json(&alice.token, body).await;
        let msg = resp.error(StatusCode::BAD_REQUEST, "bad_request");
        assert!(msg.starts_with("malformed sync request"), "{what}: {msg}");
        assert!(msg.contains(word), "{what}: {msg}");
        assert_eq!(srv.stored(&alice).await, Stored::NOTHING, "{what}");
    }

    let auth = bearer(&alice.token);
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend(content_type.map(|ct| ("content-type", ct)));
        let resp = srv.post(&headers, text.clone()).await;
        let msg = resp.error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
        assert!(msg.contains("application/json"), "{content_type:?}: {msg}");
        assert_eq!(
            srv.stored(&alice).await,
            Stored::NOTHING,
            "{content_type:?}"
        );
    }

    // Media type parameters and case are fine.
    let resp = srv
        .post(
            &[
                ("authorization", &auth),
                ("content-type", "Application/JSON; charset=utf-8"),
            ],
            text,
        )
        .await;
    assert_eq!(resp.ok().pushed[0].status, PushStatus::Accepted);
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_even_compressed_and_never_inflated_whole() {
    let srv = Server::new().await;
    let alice = user("alice");
    let id = DocId::random();
    let json = json_body(&request(
        0,
        vec![push(&id, new_doc("Big", 1).changes_since(&[]))],
    ));
    // Whitespace padding keeps a body valid JSON whatever its size.
    let pad_to = |total: usize| total - json.len();
    let auth = bearer(&alice.token);
    let headers = |encoding: Option<&'static str>| {
        let mut h = vec![
            ("authorization", auth.clone()),
            ("content-type", "application/json".to_owned()),
        ];
        h.extend(encoding.map(|e| ("content-encoding", e.to_owned())));
        h
    };
    let send = |encoding: Option<&'static str>, body: Vec<u8>| {
        let h = headers(encoding);
        let srv = &srv;
        async move {
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            srv.post(&h, body).await
        }
    };
    let too_large = |resp: Resp, what: &str| {
        let msg = resp.error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
        assert!(
            msg.contains(&MAX_REQUEST_BYTES.to_string()),
            "{what}: {msg}"
        );
    };
    let over = MAX_REQUEST_BYTES + 1;
    let mut plain = json.clone();
    plain.resize(over, b' ');

    too_large(send(None, plain).await, "plain");
    too_large(
        send(
            Some("zstd"),
            zstd_frame(&[Seg::Raw(&json), Seg::Spaces(pad_to(over))]),
        )
        .await,
        "zstd",
    );
    too_large(send(Some("gzip"), gzip(&json, pad_to(over))).await, "gzip");
    // A gigabyte in 32 KiB.
    let bomb = zstd_frame(&[Seg::Raw(&json), Seg::Spaces(1 << 30)]);
    assert!(bomb.len() < 40 * 1024);
    too_large(send(Some("zstd"), bomb).await, "zstd bomb");
    // Past the limit the body turns corrupt: refusing it as too large (not
    // as undecodable) shows decompression stopped at the limit.
    let bomb = zstd_frame(&[
        Seg::Raw(&json),
        Seg::Spaces(pad_to(MAX_REQUEST_BYTES + (1 << 20))),
        Seg::Corrupt,
        Seg::Spaces(1 << 30),
    ]);
    too_large(
        send(Some("zstd"), bomb).await,
        "zstd bomb, corrupt past the limit",
    );
    assert_eq!(srv.stored(&alice).await, Stored::NOTHING);
    assert_eq!(srv.head(&alice, &id).await, None);

    // ...and that corruption is seen when it comes before the limit.
    let early = zstd_frame(&[Seg::Raw(&json), Seg::Spaces(1 << 20), Seg::Corrupt]);
    let resp = send(Some("zstd"), early).await;
    resp.error(StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(srv.stored(&alice).await, Stored::NOTHING);

    // Exactly at the limit (after decompression) is accepted, in every form.
    let mut plain = json.clone();
    plain.resize(MAX_REQUEST_BYTES, b' ');
    let exact = [
        ("plain", None, plain),
        (
            "zstd",
            Some("zstd"),
            zstd_frame(&[Seg::Raw(&json), Seg::Spaces(pad_to(MAX_REQUEST_BYTES))]),
        ),
        ("gzip", Some("gzip"), gzip(&json, pad_to(MAX_REQUEST_BYTES))),
    ];
    for (what, encoding, body) in exact {
        let resp = send(encoding, body).await;
        assert_eq!(resp.status, StatusCode::OK, "{what}: {}", resp.text());
        assert_eq!(resp.ok().pushed[0].status, PushStatus::Accepted, "{what}");
    }
    assert_eq!(srv.stored(&alice).await.user_head, 1);
}

/// Claims as the local issuer writes them, for hand-made tokens.
fn claims(sub: &str, exp: u64) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({
        "sub": sub,
        "username": "alice",
        "iss": ISS,
        "client_id": AUD,
        "token_use": "access",
        "auth_time": now.min(exp),
        "iat": now.min(exp),
        "exp": exp,
    })
}

fn sign(claims: &Value, alg: Algorithm, key: &EncodingKey) -> String {
    sign_as(claims, alg, keys().issuer.kid(), key)
}

fn sign_as(claims: &Value, alg: Algorithm, kid: &str, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused_and_store_nothing() {
    let srv = Server::new().await;
    let alice = user("alice");
    let bob = user("bob");
    let keys = keys();
    let rsa = EncodingKey::from_rsa_pem(keys.pem.as_bytes()).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();

    let other_issuer = LocalIssuer::from_pkcs8_pem(&keys.pem, "someone-else", AUD).unwrap();
    let other_client = LocalIssuer::from_pkcs8_pem(&keys.pem, ISS, "another-client").unwrap();
    let flip_payload_char = {
        let mut parts: Vec<String> = alice.token.split('.').map(str::to_owned).collect();
        let mid = parts[1].len() / 2;
        let c = parts[1].as_bytes()[mid];
        let swapped = if c == b'A' { "B" } else { "A" };
        parts[1].replace_range(mid..=mid, swapped);
        parts.join(".")
    };
    let payload_now_bob = {
        let parts: Vec<&str> = alice.token.split('.').collect();
        let mut payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        payload["sub"] = json!(bob.sub);
        let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    let alg_none = {
        let header = json!({"alg": "none", "typ": "JWT", "kid": keys.issuer.kid()});
        let payload = claims(&alice.sub, now + 600);
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        )
    };
    let expired = sign(&claims(&alice.sub, now - 3600), Algorithm::RS256, &rsa);
    // HS256 keyed with public material: the classic algorithm confusion.
    let hs256 = sign(
        &claims(&alice.sub, now + 600),
        Algorithm::HS256,
        &EncodingKey::from_secret(keys.issuer.jwks_json().to_string().as_bytes()),
    );
    // Another key pair (small, so quick to generate: it only has to sign).
    let foreign = {
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        let key = rsa::RsaPrivateKey::new(&mut rand08::rngs::OsRng, 1024).unwrap();
        EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes())
    };
    let valid_claims = claims(&alice.sub, now + 600);
    let foreign_key_our_kid = sign(&valid_claims, Algorithm::RS256, &foreign);
    let unknown_kid = sign_as(&valid_claims, Algorithm::RS256, "no-such-key", &rsa);
    let malformed = AuthError::MalformedToken("").client_message();
    let bad_signature = AuthError::BadSignature.client_message();

    // (case, Authorization header, acceptable client messages)
    let cases: Vec<(&str, Option<String>, Vec<&str>)> = vec![
        (
            "no header",
            None,
            vec![AuthError::MissingHeader.client_message()],
        ),
        (
            "Basic scheme",
            Some(format!("Basic {}", STANDARD.encode("alice:secret"))),
            vec![AuthError::NotBearer.client_message()],
        ),
        (
            "bare token",
            Some(alice.token.clone()),
            vec![AuthError::NotBearer.client_message()],
        ),
        ("empty bearer", Some("Bearer ".into()), vec![malformed]),
        ("garbage", Some(bearer("not-a-jwt")), vec![malformed]),
        (
            "garbage parts",
            Some(bearer("aGVsbG8.d29ybGQ.eA")),
            vec![malformed],
        ),
        (
            "expired",
            Some(bearer(&expired)),
            vec![AuthError::Expired.client_message()],
        ),
        (
            "another issuer, same key",
            Some(bearer(
                &other_issuer.mint("alice", Duration::from_secs(600)),
            )),
            vec![
                AuthError::WrongIssuer {
                    found: String::new(),
                }
                .client_message(),
            ],
        ),
        (
            "another client id",
            Some(bearer(
                &other_client.mint("alice", Duration::from_secs(600)),
            )),
            vec![AuthError::WrongAudience { found: None }.client_message()],
        ),
        (
            "signed by another key",
            Some(bearer(&foreign_key_our_kid)),
            vec![bad_signature],
        ),
        (
            "unknown key id",
            Some(bearer(&unknown_kid)),
            vec![AuthError::MissingKeyId.client_message()],
        ),
        (
            "payload char flipped",
            Some(bearer(&flip_payload_char)),
            vec![bad_signature, malformed],
        ),
        (
            "payload re-encoded as bob",
            Some(bearer(&payload_now_bob)),
            vec![bad_signature],
        ),
        (
            "HS256",
            Some(bearer(&hs256)),
            vec![AuthError::UnsupportedAlgorithm(String::new()).client_message()],
        ),
        (
            "alg none",
            Some(bearer(&alg_none)),
            vec![AuthError::UnsupportedAlgorithm(String::new()).client_message()],
        ),
    ];
    let id = DocId::random();
    let body = json_body(&request(
        0,
        vec![push(&id, new_doc("Mine", 1).changes_since(&[]))],
    ));
    for (what, auth, messages) in cases {
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(auth.as_deref().map(|a| ("authorization", a)));
        let resp = srv.post(&headers, body.clone()).await;
        let msg = resp.error(StatusCode::UNAUTHORIZED, "unauthorized");
        assert!(messages.contains(&msg.as_str()), "{what}: {msg:?}");
        let challenge = resp.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{what}: {challenge:?}");
        if let Some(token) = auth.as_deref().and_then(|a| a.split_whitespace().nth(1)) {
            assert!(!resp.text().contains(token), "{what}: the token is echoed");
        }
        for user in [&alice, &bob] {
            assert_eq!(srv.stored(user).await, Stored::NOTHING, "{what}");
            assert_eq!(srv.head(user, &id).await, None, "{what}");
        }
    }
    // Just as the local issuer makes them: accepted.
    let resp = srv.post_json(&alice.token, body).await;
    assert_eq!(resp.ok().pushed[0].status, PushStatus::Accepted);
}

#[tokio::test]
async fn another_users_document_can_be_neither_written_nor_read() {
    let srv = Server::new().await;
    let alice = user("alice");
    let bob = user("bob");
    let d = DocId::random();
    let mut doc = new_doc("Alice's secret", 2);
    let history = doc.changes_since(&[]);
    srv.sync(&alice.token, &request(0, vec![push(&d, history.clone())]))
        .await;
    let alice_head = srv.head(&alice, &d).await.expect("alice's document");
    let alice_stored = srv.stored(&alice).await;

    // Bob pushes changes for D (all of them, as if copied): 404.
    let mut forged = doc.fork();
    forged
        .append_message(NewMessage::user("bob was here"), 9_000)
        .unwrap();
    for changes in [history.clone(), forged.changes_since(&[])] {
        let resp = srv
            .post_json(&bob.token, json_body(&request(0, vec![push(&d, changes)])))
            .await;
        let msg = resp.error(StatusCode::NOT_FOUND, "not_found");
        assert_eq!(msg, format!("no document {d}"));
        assert!(!resp.text().contains(&alice.sub));
    }
    // A change whose parents bob "lacks" reveals no heads either.
    let tip = doc.heads();
    doc.append_message(NewMessage::user("later"), 5_000)
        .unwrap();
    let resp = srv
        .sync(
            &bob.token,
            &request(0, vec![push(&d, doc.changes_since(&tip))]),
        )
        .await;
    assert_eq!(resp.pushed[0].status, PushStatus::MissingDeps);
    assert!(resp.pushed[0].server_heads.is_empty());

    assert_eq!(srv.head(&alice, &d).await, Some(alice_head));
    assert_eq!(srv.stored(&alice).await, alice_stored);
    assert_eq!(srv.head(&bob, &d).await, None);
    assert_eq!(srv.stored(&bob).await, Stored::NOTHING);

    // Bob's pulls, from the start and with a resync of D: nothing of D.
    let pull = srv
        .post_json(
            &bob.token,
            json_body(&SyncRequest {
                feed_cursor: 0,
                push: vec![],
                resync: vec![d.clone()],
                wait_ms: 0,
                epoch: 0,
            }),
        )
        .await;
    let text = pull.text();
    let answer = pull.ok();
    assert_eq!(
        answer,
        SyncResponse {
            feed_cursor: 0,
            docs: vec![],
            pushed: vec![],
            more: false,
            epoch: answer.epoch,
            start_over: false,
            purged: vec![],
        }
    );
    assert!(!text.contains(d.as_str()), "{text}");
    let mut bob_device = Device::new(&bob);
    let resp = bob_device.sync(&srv, vec![d.clone()]).await;
    assert!(resp.docs.is_empty());
    assert!(bob_device.docs.is_empty());

    // Bob's own documents work as usual and never mix with alice's.
    let own = DocId::random();
    let resp = srv
        .sync(
            &bob.token,
            &request(0, vec![push(&own, new_doc("Bob's", 1).changes_since(&[]))]),
        )
        .await;
    assert_eq!(resp.pushed[0].status, PushStatus::Accepted);
    assert!(resp.docs.is_empty(), "a push is not echoed back: {resp:?}");
    let other_device = srv.sync(&bob.token, &request(0, vec![])).await;
    assert_eq!(other_device.docs.len(), 1);
    assert_eq!(other_device.docs[0].doc_id, own);
    assert_eq!(srv.stored(&alice).await, alice_stored);
}

#[tokio::test]
async fn compressed_requests_are_read_and_responses_compressed_on_request() {
    let srv = Server::new().await;
    let alice = user("alice");
    let auth = bearer(&alice.token);

    // zstd, as the client engine sends it.
    let zid = DocId::random();
    let mut zdoc = new_doc("Zstd", 2);
    let body = encode_request(&request(0, vec![push(&zid, zdoc.changes_since(&[]))])).unwrap();
    let resp = srv
        .post(
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("content-encoding", "zstd"),
            ],
            body,
        )
        .await;
    assert_eq!(resp.ok().pushed, vec![accepted(&zid, &mut zdoc)]);

    // gzip.
    let gid = DocId::random();
    let mut gdoc = new_doc("Gzip", 1);
    let body = gzip(
        &json_body(&request(1, vec![push(&gid, gdoc.changes_since(&[]))])),
        0,
    );
    let resp = srv
        .post(
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            body,
        )
        .await;
    assert_eq!(resp.ok().pushed, vec![accepted(&gid, &mut gdoc)]);
    assert_eq!(srv.stored(&alice).await.user_head, 2);

    // A body that does not decompress: 400, nothing stored.
    let xid = DocId::random();
    let mut broken = encode_request(&request(
        0,
        vec![push(&xid, new_doc("X", 1).changes_since(&[]))],
    ))
    .unwrap();
    let end = broken.len();
    broken.truncate(end - 8);
    broken.extend(noise(8, 5));
    let resp = srv
        .post(
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("content-encoding", "zstd"),
            ],
            broken,
        )
        .await;
    resp.error(StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(srv.head(&alice, &xid).await, None);
    assert_eq!(srv.stored(&alice).await.user_head, 2);

    // Responses: identity unless asked, then zstd or gzip, same JSON.
    let pull = json_body(&request(0, vec![]));
    let plain = srv.post_json(&alice.token, pull.clone()).await;
    assert_eq!(plain.header("content-encoding"), None);
    let expected = plain.ok();
    assert_eq!(expected.docs.len(), 2);
    for encoding in ["zstd", "gzip"] {
        let resp = srv
            .post(
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                    ("accept-encoding", encoding),
                ],
                pull.clone(),
            )
            .await;
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.header("content-encoding"), Some(encoding));
        assert!(resp.body.len() < plain.body.len(), "{encoding} compresses");
        let decoded = decompress(encoding, resp.body).await;
        assert_eq!(decoded, plain.body, "{encoding}");
        let parsed: SyncResponse = serde_json::from_slice(&decoded).unwrap();
        assert_eq!(parsed, expected);
    }
}

#[tokio::test]
async fn compaction_keeps_every_device_whole() {
    let srv = Server::new().await;
    let alice = user("alice");
    let id = DocId::random();
    let mut a = AssetDoc::create("Long", 1_000);
    let mut server_heads = vec![];
    let mut middle = Device::new(&alice);
    for i in 0..40 {
        if i > 0 {
            a.append_message(NewMessage::user(format!("step {i}")), 2_000 + i)
                .unwrap();
        }
        let resp = srv
            .sync(
                &alice.token,
                &request(i as u64, vec![push(&id, a.changes_since(&server_heads))]),
            )
            .await;
        assert_eq!(resp.pushed, vec![accepted(&id, &mut a)], "push {i}");
        server_heads = a.heads();
        if i == 19 {
            middle.sync(&srv, vec![]).await;
            assert_eq!(middle.cursor, 20);
        }
    }
    let head = srv.head(&alice, &id).await.unwrap();
    assert_eq!(head.last_useq, 40);
    assert!(
        head.snapshot_upto > 0 && head.snapshot_upto <= 40,
        "compaction happened: {head:?}"
    );
    let chunks = srv.store.read_all(&alice.sub, &id).await.unwrap();
    assert!(chunks[0].is_snapshot, "{chunks:?}");
    assert!(chunks.len() < 40, "{chunks:?}");

    let mut fresh = Device::new(&alice);
    fresh.sync(&srv, vec![]).await;
    middle.sync(&srv, vec![]).await;
    let messages = a.messages().unwrap();
    assert_eq!(messages.len(), 39);
    for (what, device) in [("fresh", &mut fresh), ("middle", &mut middle)] {
        assert_eq!(device.cursor, 40, "{what}");
        let doc = device.doc(&id);
        assert_eq!(sorted(doc.heads()), sorted(a.heads()), "{what}");
        assert_eq!(doc.messages().unwrap(), messages, "{what}");
    }
}

#[tokio::test]
async fn health_jwks_and_request_ids() {
    let srv = Server::new().await;
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();

    let health = srv.send(get("/healthz")).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.text(), "ok");

    let jwks = srv.send(get("/.well-known/jwks.json")).await;
    assert_eq!(jwks.status, StatusCode::OK);
    let value: Value = serde_json::from_slice(&jwks.body).unwrap();
    let keys_json = value["keys"].as_array().expect("a keys array");
    assert_eq!(keys_json.len(), 1);
    let key = keys_json[0].as_object().unwrap();
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["kid"], keys().issuer.kid());
    assert_eq!(key["alg"], "RS256");
    assert!(key.contains_key("n") && key.contains_key("e"));
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        assert!(!key.contains_key(private), "{private} in the JWKS");
    }
    assert_eq!(value, keys().issuer.jwks_json());

    let alice = user("alice");
    let ok = srv
        .post_json(&alice.token, json_body(&request(0, vec![])))
        .await;
    let refused = srv
        .post(&[("content-type", "application/json")], "{}")
        .await;
    let not_found = srv.send(get("/nope")).await;
    assert_eq!(not_found.status, StatusCode::NOT_FOUND);
    let mut seen = HashSet::new();
    for resp in [&health, &jwks, &ok, &refused, &not_found] {
        let id = resp.header("x-request-id").expect("x-request-id");
        assert!(!id.is_empty());
        assert!(seen.insert(id.to_owned()), "request ids are unique");
    }
    // A caller's own request id is kept.
    let req = Request::get("/healthz")
        .header("x-request-id", "trace-me-123")
        .body(Body::empty())
        .unwrap();
    let resp = srv.send(req).await;
    assert_eq!(resp.header("x-request-id"), Some("trace-me-123"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_long_poll_answers_as_soon_as_another_device_pushes() {
    let srv = Arc::new(Server::new().await);
    let alice = user("alice");
    // Nothing new: a long poll is held, then answers empty at its deadline.
    let started = std::time::Instant::now();
    let mut idle = request(0, vec![]);
    idle.wait_ms = 300;
    let resp = srv.sync(&alice.token, &idle).await;
    assert!(resp.docs.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(290),
        "held until the deadline"
    );

    // A long poll of 20 s returns as soon as another device pushes.
    let mut waiting = request(0, vec![]);
    waiting.wait_ms = 20_000;
    let poller = {
        let srv = Arc::clone(&srv);
        let token = alice.token.clone();
        tokio::spawn(async move {
            let t = std::time::Instant::now();
            (srv.sync(&token, &waiting).await, t.elapsed())
        })
    };
    // Push only once the poll is parked: the push must wake it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while srv.store.parked_long_polls() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the long poll never parked"
        );
        tokio::task::yield_now().await;
    }
    let id = DocId::random();
    let mut a = AssetDoc::create("Sunset", 1_000);
    srv.sync(
        &alice.token,
        &request(0, vec![push(&id, a.changes_since(&[]))]),
    )
    .await;
    let (resp, took) = poller.await.unwrap();
    assert_eq!(resp.docs.len(), 1, "the held poll carries the new document");
    assert_eq!(resp.docs[0].doc_id, id);
    assert!(
        took < Duration::from_secs(5),
        "answered on the push, not the deadline: {took:?}"
    );

    // Another user's push does not wake alice with anything of theirs.
    let bob = user("bob");
    let mut held = request(resp.feed_cursor, vec![]);
    held.wait_ms = 400;
    let bob_doc = DocId::random();
    let mut b = AssetDoc::create("Bob's", 1_000);
    srv.sync(
        &bob.token,
        &request(0, vec![push(&bob_doc, b.changes_since(&[]))]),
    )
    .await;
    assert!(srv.sync(&alice.token, &held).await.docs.is_empty());

    // Longer than allowed: refused.
    let mut too_long = request(0, vec![]);
    too_long.wait_ms = 60_000;
    srv.post_json(&alice.token, json_body(&too_long))
        .await
        .error(StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_holds_only_so_many_long_polls_at_once() {
    let srv = Arc::new(
        Server::with_limits(ApiConfig {
            long_polls_per_user: 2,
            ..ApiConfig::default()
        })
        .await,
    );
    let alice = user("alice");
    let poll = |wait_ms| SyncRequest {
        wait_ms,
        ..request(0, vec![])
    };
    let held: Vec<_> = (0..2)
        .map(|_| {
            let srv = Arc::clone(&srv);
            let token = alice.token.clone();
            let req = poll(20_000);
            tokio::spawn(async move { srv.sync(&token, &req).await })
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while srv.store.parked_long_polls() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the polls never parked"
        );
        tokio::task::yield_now().await;
    }
    // A third is refused at once, saying when to retry.
    let resp = srv.post_json(&alice.token, json_body(&poll(20_000))).await;
    let detail = resp.error(StatusCode::TOO_MANY_REQUESTS, "too_many_long_polls");
    assert!(detail.contains("2 long polls"), "{detail}");
    assert_eq!(resp.header("retry-after"), Some("5"));
    // A poll that does not wait, and another user's long poll, still go.
    assert!(srv.sync(&alice.token, &poll(0)).await.docs.is_empty());
    assert!(
        srv.sync(&user("bob").token, &poll(50))
            .await
            .docs
            .is_empty()
    );

    // A push wakes the held ones; then there is room again.
    let id = DocId::random();
    let mut a = AssetDoc::create("Wake", 1_000);
    srv.sync(
        &alice.token,
        &request(0, vec![push(&id, a.changes_since(&[]))]),
    )
    .await;
    let mut cursor = 0;
    for h in held {
        let resp = h.await.unwrap();
        assert_eq!(resp.docs.len(), 1);
        cursor = resp.feed_cursor;
    }
    let idle = SyncRequest {
        feed_cursor: cursor,
        ..poll(50)
    };
    let resp = srv.sync(&alice.token, &idle).await;
    assert!(resp.docs.is_empty(), "held to its end, not refused");
    assert_eq!(srv.store.parked_long_polls(), 0);
}
