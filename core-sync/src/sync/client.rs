//! The sync adapter: executes the engine's plans over HTTP (reqwest) against
//! the local store (SQLite). All decisions live in [`super::engine`]; this
//! module only moves bytes and keeps the ordering rules:
//!
//! - a change is durable in the store before it can be pushed (pushes are
//!   read from the store);
//! - pulled chunks are applied and saved before the feed cursor that covers
//!   them is persisted;
//! - the server heads recorded for a document are always heads the server
//!   reported, so the next push is computed from what the server has.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::ids::DocId;
use crate::model::{AssetDoc, MessageStatus};
use crate::now_millis;
use crate::store::{Store, StoreError, SyncState as DocSyncState};
use crate::sync::engine::{Applied, Engine, EngineConfig, Next, SyncStatus};
use crate::sync::protocol::{
    Bytes, DocPush, ErrorBody, MAX_WAIT_MS, SYNC_PATH, SyncRequest, SyncResponse, change_hashes,
};

/// The store key of the feed cursor.
const FEED_CURSOR_KEY: &str = "feed_cursor";

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot reach the sync server: {0}")]
    Network(#[from] reqwest::Error),
    /// The server answered with an error status.
    #[error("sync server answered {status}: {message}")]
    Server { status: u16, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("sync protocol error: {0}")]
    Protocol(String),
}

impl SyncError {
    /// Worth retrying with backoff (as opposed to a request the server will
    /// refuse again).
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Network(_) => true,
            SyncError::Server { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            SyncError::Store(_) | SyncError::Protocol(_) => false,
        }
    }
}

/// What one pass of [`SyncClient::sync_until_idle`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub requests: usize,
    pub pushed_docs: usize,
    pub pulled_docs: usize,
    pub bytes_sent: usize,
}

/// How a sync request reaches the server: HTTP in production
/// ([`HttpTransport`]); tests plug in an in-process Router or a faulty
/// network.
#[async_trait::async_trait]
pub trait Transport: Send + Sync {
    /// Sends one request with the bearer token; returns the parsed response
    /// and the bytes put on the wire, or the error the server or network
    /// produced.
    async fn sync(
        &self,
        req: &SyncRequest,
        token: &str,
    ) -> Result<(SyncResponse, usize), SyncError>;

    /// Uploads a blob (`PUT /v1/blobs/{sha256}`). Transports without blob
    /// support (some test doubles) refuse.
    async fn put_blob(
        &self,
        _sha256: &str,
        _bytes: Vec<u8>,
        _token: &str,
    ) -> Result<(), SyncError> {
        Err(SyncError::Protocol(
            "this transport does not move blobs".into(),
        ))
    }

    /// Downloads a blob; `None` if the server does not have it (yet).
    async fn get_blob(&self, _sha256: &str, _token: &str) -> Result<Option<Vec<u8>>, SyncError> {
        Err(SyncError::Protocol(
            "this transport does not move blobs".into(),
        ))
    }

    /// Whether `put_blob`/`get_blob` work.
    fn moves_blobs(&self) -> bool {
        false
    }
}

/// `POST {server}/v1/sync` with a zstd-compressed JSON body; blobs via
/// `PUT`/`GET {server}/v1/blobs/{sha256}`.
pub struct HttpTransport {
    http: reqwest::Client,
    url: String,
    blobs_url: String,
}

impl HttpTransport {
    pub fn new(server: &str) -> Result<Self, SyncError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()?;
        let base = server.trim_end_matches('/');
        Ok(HttpTransport {
            http,
            url: format!("{base}{SYNC_PATH}"),
            blobs_url: format!("{base}/v1/blobs"),
        })
    }
}

/// Encodes a request body as the server expects it: JSON, zstd-compressed.
pub fn encode_request(req: &SyncRequest) -> Result<Vec<u8>, SyncError> {
    let json = serde_json::to_vec(req).map_err(|e| SyncError::Protocol(e.to_string()))?;
    let mut enc = zstd::Encoder::new(Vec::with_capacity(json.len() / 3), 3)
        .map_err(|e| SyncError::Protocol(e.to_string()))?;
    enc.write_all(&json)
        .map_err(|e| SyncError::Protocol(e.to_string()))?;
    enc.finish().map_err(|e| SyncError::Protocol(e.to_string()))
}

/// Turns a status and body into a response or the server's error.
pub fn decode_response(status: u16, bytes: &[u8]) -> Result<SyncResponse, SyncError> {
    if !(200..300).contains(&status) {
        let message = serde_json::from_slice::<ErrorBody>(bytes)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(bytes).chars().take(300).collect());
        return Err(SyncError::Server { status, message });
    }
    serde_json::from_slice(bytes)
        .map_err(|e| SyncError::Protocol(format!("unreadable sync response: {e}")))
}

#[async_trait::async_trait]
impl Transport for HttpTransport {
    async fn sync(
        &self,
        req: &SyncRequest,
        token: &str,
    ) -> Result<(SyncResponse, usize), SyncError> {
        let body = encode_request(req)?;
        let sent = body.len();
        let resp = self
            .http
            .post(&self.url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::CONTENT_ENCODING, "zstd")
            .body(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        Ok((decode_response(status, &bytes)?, sent))
    }

    async fn put_blob(&self, sha256: &str, bytes: Vec<u8>, token: &str) -> Result<(), SyncError> {
        let resp = self
            .http
            .put(format!("{}/{sha256}", self.blobs_url))
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .send()
            .await?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let body = resp.bytes().await?;
        decode_response(status, &body).map(|_| ())
    }

    async fn get_blob(&self, sha256: &str, token: &str) -> Result<Option<Vec<u8>>, SyncError> {
        let resp = self
            .http
            .get(format!("{}/{sha256}", self.blobs_url))
            .bearer_auth(token)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await?;
        match status {
            200 => Ok(Some(body.to_vec())),
            404 => Ok(None),
            _ => decode_response(status, &body).map(|_| None),
        }
    }

    fn moves_blobs(&self) -> bool {
        true
    }
}

/// What a running client tells the app it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncEvent {
    /// The status changed (sent only on change).
    Status(SyncStatus),
    /// These documents changed in the store with changes from the server.
    Pulled(Vec<DocId>),
}

pub struct SyncClient {
    transport: Box<dyn Transport>,
    token: String,
    store: Store,
    engine: Engine,
    /// Cuts an idle long poll short: an app that just saved an edit wants
    /// it pushed now, not when the poll ends.
    nudge: Arc<Notify>,
    events: Option<mpsc::UnboundedSender<SyncEvent>>,
    last_status: Option<SyncStatus>,
}

impl SyncClient {
    /// A client for `server` (base URL, e.g. `http://127.0.0.1:8787`)
    /// resuming from the cursor and pending documents in `store`.
    pub async fn new(
        store: Store,
        server: &str,
        token: String,
        config: EngineConfig,
    ) -> Result<Self, SyncError> {
        let transport = HttpTransport::new(server)?;
        Self::with_transport(store, Box::new(transport), token, config).await
    }

    /// A client over any transport (in-process servers, simulated networks).
    pub async fn with_transport(
        store: Store,
        transport: Box<dyn Transport>,
        token: String,
        config: EngineConfig,
    ) -> Result<Self, SyncError> {
        let cursor = store.meta(FEED_CURSOR_KEY).await?.unwrap_or(0).max(0) as u64;
        let pending = store.pending_sync().await?;
        Ok(SyncClient {
            transport,
            token,
            store,
            engine: Engine::new(config, cursor, pending),
            nudge: Arc::new(Notify::new()),
            events: None,
            last_status: None,
        })
    }

    /// A handle that wakes [`Self::run`] to look for local changes at once
    /// (cutting an idle long poll short). Call `notify_one` after saving.
    pub fn nudge_handle(&self) -> Arc<Notify> {
        self.nudge.clone()
    }

    /// Status changes and pulled documents, for an app to show.
    pub fn subscribe(&mut self) -> mpsc::UnboundedReceiver<SyncEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.events = Some(tx);
        self.last_status = None;
        self.emit_status();
        rx
    }

    fn emit_status(&mut self) {
        let Some(tx) = &self.events else { return };
        let status = self.engine.status();
        if self.last_status.as_ref() != Some(&status) {
            let _ = tx.send(SyncEvent::Status(status.clone()));
            self.last_status = Some(status);
        }
    }

    pub fn status(&self) -> SyncStatus {
        self.engine.status()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Tells the engine a document changed locally (after `Store::save`).
    pub fn local_change(&mut self, doc: DocId) {
        self.engine.local_change(doc);
    }

    /// Replaces the bearer token (after a refresh).
    pub fn set_token(&mut self, token: String) {
        self.token = token;
    }

    /// One request: push what is pending, pull what changed. Returns when to
    /// run next; on error the caller backs off with [`Self::backoff`].
    pub async fn round(&mut self, report: &mut SyncReport) -> Result<Next, SyncError> {
        self.round_waiting(report, Duration::ZERO).await
    }

    /// A round that, when there is nothing to push, lets the server hold
    /// the request up to `wait` until something changes (a long poll).
    pub async fn round_waiting(
        &mut self,
        report: &mut SyncReport,
        wait: Duration,
    ) -> Result<Next, SyncError> {
        let plan = self.engine.plan();
        let mut push = Vec::with_capacity(plan.push.len());
        let mut jobs_active = false;
        for doc in &plan.push {
            let mut asset = match self.store.load(doc).await {
                Ok(a) => a,
                Err(StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let server = self.store.sync_state(doc).await?;
            let changes = asset.doc.changes_since(&server.server_heads);
            jobs_active |= has_active_job(&asset.doc);
            // The server needs a version's image before a job can use it.
            self.upload_blobs(&asset.doc).await?;
            push.push(DocPush {
                doc_id: doc.clone(),
                changes: Bytes(changes),
            });
        }
        let idle = push.is_empty() && plan.resync.is_empty();
        let req = SyncRequest {
            feed_cursor: plan.feed_cursor,
            push,
            resync: plan.resync.clone(),
            wait_ms: if idle {
                wait.as_millis().min(MAX_WAIT_MS as u128) as u64
            } else {
                0
            },
        };
        let resp = if idle && req.wait_ms > 0 {
            let nudge = self.nudge.clone();
            tokio::select! {
                r = self.send(&req, report) => r?,
                // Nothing was pushed and nothing applied yet: dropping the
                // poll loses nothing.
                _ = nudge.notified() => {
                    self.engine.abandon();
                    return Ok(Next::Now);
                }
            }
        } else {
            self.send(&req, report).await?
        };
        report.requests += 1;
        report.pushed_docs += req.push.len();
        let mut applied = self.apply(&resp).await?;
        applied.jobs_active |= jobs_active;
        report.pulled_docs += resp.docs.len();
        let next = self.engine.on_success(&plan, &resp, &applied, now_millis());
        // Everything the cursor covers is durable now: persist it.
        self.store
            .set_meta(FEED_CURSOR_KEY, self.engine.feed_cursor() as i64)
            .await?;
        Ok(next)
    }

    /// Records a failed round; returns how long to wait before the next
    /// (exponential backoff with jitter; longer for errors a retry will not
    /// fix by itself).
    pub fn failed(&mut self, e: &SyncError) -> Duration {
        let jitter: f64 = rand::random();
        let d = self.engine.on_failure(e.to_string(), jitter);
        if e.is_transient() {
            d
        } else {
            d.max(Duration::from_secs(5))
        }
    }

    /// Rounds until nothing is left to push or pull (bounded).
    pub async fn sync_until_idle(&mut self) -> Result<SyncReport, SyncError> {
        let mut report = SyncReport::default();
        for _ in 0..10_000 {
            match self.round(&mut report).await {
                Ok(Next::Now) => continue,
                Ok(Next::After(_)) => return Ok(report),
                Err(e) => {
                    self.failed(&e);
                    return Err(e);
                }
            }
        }
        Err(SyncError::Protocol(
            "the server kept answering `more` for 10,000 rounds".into(),
        ))
    }

    /// Syncs forever until `shutdown` resolves: pushes as soon as there is
    /// something to push, and otherwise long-polls, so a change made on
    /// another device (or by a provider job) arrives as soon as the server
    /// has it. The engine's poll interval bounds each long poll; failures
    /// back off exponentially with jitter.
    pub async fn run(&mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut report = SyncReport::default();
        loop {
            // Edits another process sharing the store (the CLI, the app)
            // made meanwhile were never reported to this client.
            if let Err(e) = self.pick_up_local_changes().await {
                tracing::warn!(error = %e, "cannot read the store's pending documents");
            }
            let wait = if self.engine.has_work() {
                Duration::ZERO
            } else {
                self.engine.poll_interval()
            };
            if self.engine.has_work() {
                self.engine.mark_in_flight();
            }
            self.emit_status();
            let started = tokio::time::Instant::now();
            let pulled_before = report.pulled_docs;
            let round = tokio::select! {
                _ = &mut shutdown => return,
                r = self.round_waiting(&mut report, wait) => r,
            };
            let pulled = report.pulled_docs > pulled_before;
            let delay = match round {
                Ok(Next::Now) => Duration::ZERO,
                Ok(Next::After(d)) if wait.is_zero() => d,
                // A long poll that brought news, or was held to its end: ask
                // again at once. One answered early with nothing (a server
                // that does not hold) waits out the interval instead.
                Ok(Next::After(_)) if pulled || started.elapsed() >= wait / 2 => Duration::ZERO,
                Ok(Next::After(d)) => d,
                Err(e) => {
                    let d = self.failed(&e);
                    tracing::warn!(error = %e, retry_in = ?d, "sync failed");
                    d
                }
            };
            self.emit_status();
            let nudge = self.nudge.clone();
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(delay) => {}
                // A local edit ends a quiet wait (not a backoff: the server
                // is failing, and the edit is safe in the store meanwhile).
                _ = nudge.notified(), if self.engine.status().last_error.is_none() => {}
            }
        }
    }

    /// Marks every document the store says has changes the server lacks
    /// as pending: edits another process sharing the store (the CLI, the
    /// app) made without telling this client.
    pub async fn pick_up_local_changes(&mut self) -> Result<(), SyncError> {
        for doc in self.store.pending_sync().await? {
            self.engine.local_change(doc);
        }
        Ok(())
    }

    async fn send(
        &self,
        req: &SyncRequest,
        report: &mut SyncReport,
    ) -> Result<SyncResponse, SyncError> {
        let (resp, sent) = self.transport.sync(req, &self.token).await?;
        report.bytes_sent += sent;
        Ok(resp)
    }

    /// Uploads the blobs of `doc` the server is not known to hold.
    async fn upload_blobs(&self, doc: &AssetDoc) -> Result<(), SyncError> {
        if !self.transport.moves_blobs() {
            return Ok(());
        }
        for (sha, mime) in referenced_blobs(doc) {
            if !self.store.blobs().contains(&sha) || self.store.blob_uploaded(&sha).await? {
                continue;
            }
            let bytes = self.store.get_blob(&sha).await?;
            let len = bytes.len() as u64;
            self.transport.put_blob(&sha, bytes, &self.token).await?;
            self.store
                .mark_blob_uploaded(&sha, &mime, len, now_millis())
                .await?;
        }
        Ok(())
    }

    /// Downloads the blobs of `doc` missing locally (a result made by the
    /// cloud, an image added on another device). A blob the server does not
    /// have yet is skipped and fetched on a later round.
    async fn download_blobs(&self, doc: &AssetDoc) -> Result<(), SyncError> {
        if !self.transport.moves_blobs() {
            return Ok(());
        }
        for (sha, mime) in referenced_blobs(doc) {
            if self.store.blobs().contains(&sha) {
                continue;
            }
            if let Some(bytes) = self.transport.get_blob(&sha, &self.token).await? {
                self.store
                    .put_blob_verified(&sha, bytes, &mime, now_millis())
                    .await?;
            }
        }
        Ok(())
    }

    /// Applies a response durably: push outcomes' server heads, then every
    /// pulled document (saved before returning).
    async fn apply(&mut self, resp: &SyncResponse) -> Result<Applied, SyncError> {
        let now = now_millis();
        let mut applied = Applied::default();
        let mut pulled = Vec::new();
        for outcome in &resp.pushed {
            let state = DocSyncState {
                cursor: 0,
                server_heads: change_hashes(&outcome.server_heads),
            };
            self.store
                .set_sync_state(&outcome.doc_id, &state, now)
                .await?;
        }
        for update in &resp.docs {
            let chunks: Vec<&[u8]> = update.chunks.iter().map(|c| c.0.as_slice()).collect();
            // The document as now stored, or `None` for a gap.
            let stored = if self.store.contains(&update.doc_id).await? {
                let mut asset = self.store.load(&update.doc_id).await?;
                for chunk in &chunks {
                    asset.doc.apply_incremental(chunk).map_err(|e| {
                        SyncError::Protocol(format!(
                            "server sent unreadable changes for {}: {e}",
                            update.doc_id
                        ))
                    })?;
                }
                if asset.doc.missing_deps().is_empty() {
                    self.store.save(&mut asset).await?;
                    applied.jobs_active |= has_active_job(&asset.doc);
                    Some(asset)
                } else {
                    // A gap. Save nothing: changes waiting for their
                    // dependencies stay in the document, and a compaction
                    // would write them into the snapshot (Automerge's
                    // `save()` keeps them), after which the document no
                    // longer loads. The resync brings the whole document.
                    None
                }
            } else {
                match AssetDoc::load_chunks(chunks.iter().copied()) {
                    Ok(doc) => {
                        applied.jobs_active |= has_active_job(&doc);
                        Some(self.store.insert(update.doc_id.clone(), doc).await?)
                    }
                    // Only part of a document we never had: ask for all of it.
                    Err(_) => None,
                }
            };
            let Some(asset) = stored else {
                applied.gaps.push(update.doc_id.clone());
                continue;
            };
            // The copy in hand is the stored one: no second load.
            self.download_blobs(&asset.doc).await?;
            let state = DocSyncState {
                cursor: 0,
                server_heads: change_hashes(&update.server_heads),
            };
            self.store
                .set_sync_state(&update.doc_id, &state, now)
                .await?;
            pulled.push(update.doc_id.clone());
        }
        if let (Some(tx), false) = (&self.events, pulled.is_empty()) {
            let _ = tx.send(SyncEvent::Pulled(pulled));
        }
        Ok(applied)
    }
}

/// The blobs a document's versions refer to (images and thumbnails).
fn referenced_blobs(doc: &AssetDoc) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in doc.versions().unwrap_or_default() {
        out.push((v.blob.sha256, v.blob.mime));
        if let Some(t) = v.thumbnail {
            out.push((t.sha256, t.mime));
        }
    }
    out
}

/// Whether one of the document's recent messages is a queued or running tool
/// request (the engine then polls fast until it finishes).
fn has_active_job(doc: &AssetDoc) -> bool {
    let n = doc.reader().message_count().unwrap_or(0) as usize;
    doc.messages_range(n.saturating_sub(16)..n)
        .unwrap_or_default()
        .iter()
        .any(|m| {
            matches!(
                m.status,
                Some(MessageStatus::Queued | MessageStatus::Running)
            )
        })
}
