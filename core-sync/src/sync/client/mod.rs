//! The sync adapter: executes the engine's plans over HTTP (reqwest) against
//! the local store (SQLite). All decisions live in [`super::engine`]; this
//! module only moves bytes and keeps the ordering rules:
//!
//! - a change is durable in the store before it can be pushed (pushes are
//!   read from the store);
//! - pulled chunks are applied and saved before the feed cursor that covers
//!   them is persisted;
//! - the server heads recorded for a document are always heads the server
//!   reported, so the next push is computed from what the server has;
//! - the cursor is stored with the server epoch it belongs to, and a server
//!   in another epoch makes the device forget both (and every server head)
//!   before anything else is done.
//!
//! This module runs the rounds; `apply.rs` applies a response to the store
//! and `blobs.rs` moves the images documents name.

mod apply;
mod blobs;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::ids::DocId;
use crate::model::weight::{WeighError, Weight, weigh};
use crate::now_millis;
use crate::store::{Store, StoreError};
use crate::sync::bounds::{Fit, Load, MAX_INFLATED_BYTES};
use crate::sync::engine::{Engine, EngineConfig, Next, Plan, Refusal, SyncStatus};
use crate::sync::protocol::{Bytes, DocPush, MAX_WAIT_MS, SyncRequest, SyncResponse};
pub use crate::sync::transport::{
    HttpTransport, OutgoingBlob, SyncError, Transport, decode_response, encode_request,
};
use crate::sync::warm::WarmAssets;

/// The store key of the feed cursor.
const FEED_CURSOR_KEY: &str = "feed_cursor";
/// The store key of the server epoch the cursor belongs to.
const FEED_EPOCH_KEY: &str = "feed_epoch";

/// What one pass of [`SyncClient::sync_until_idle`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub requests: usize,
    pub pushed_docs: usize,
    pub pulled_docs: usize,
    pub bytes_sent: usize,
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
    /// Documents kept loaded between rounds (applying a pulled change then
    /// costs the change, not a reload).
    warm: WarmAssets,
}

/// Stored bytes of documents the client keeps loaded.
const WARM_BYTES: u64 = 32 * 1024 * 1024;

/// How long an image or document the server refused waits before it is
/// offered again (the server's limits may have changed meanwhile).
const REFUSED_RETRY_MS: i64 = 60 * 60 * 1000;

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
        let epoch = store.meta(FEED_EPOCH_KEY).await?.unwrap_or(0).max(0) as u64;
        let pending = store.pending_sync().await?;
        let mut engine = Engine::new(config, cursor, epoch, pending);
        for r in store.refused_docs().await? {
            engine.set_refused(r.doc_id, r.reason, r.at + REFUSED_RETRY_MS);
        }
        Ok(SyncClient {
            transport,
            token,
            store,
            engine,
            nudge: Arc::new(Notify::new()),
            events: None,
            last_status: None,
            warm: WarmAssets::new(WARM_BYTES),
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
        let mut plan = self.engine.plan(now_millis());
        if !plan.push.is_empty() {
            // Images first: a job on the server needs its input, and other
            // devices fetch an image by the version that names it.
            self.upload_blobs().await?;
        }
        let mut push = Vec::with_capacity(plan.push.len());
        let mut sent = Vec::with_capacity(plan.push.len());
        // What the request carries: never over the protocol's bounds.
        let mut load = Load {
            docs: plan.resync.len(),
            ..Load::default()
        };
        for doc in &plan.push {
            // The chunks the server lacks, as stored: no document is loaded.
            let outbox = self.store.outbox(doc).await?;
            let changes = if outbox.is_empty() {
                // Nothing recorded as unpushed, yet the heads differ from the
                // server's: compute exactly what it lacks.
                let mut asset = match self.store.load(doc).await {
                    Ok(a) => a,
                    Err(StoreError::NotFound(_)) => continue,
                    Err(e) => return Err(e.into()),
                };
                let server = self.store.sync_state(doc).await?;
                asset.doc.changes_since(&server.server_heads)
            } else {
                outbox.bytes
            };
            let weight = match weigh(&changes, MAX_INFLATED_BYTES) {
                Ok(w) => w,
                Err(WeighError::InflatesPast(_)) => Weight {
                    inflated_bytes: u64::MAX,
                    rows: 0,
                },
                // Bytes that do not parse (a damaged store) go as they are:
                // the server refuses them, saying why.
                Err(WeighError::Malformed(_)) => Weight::default(),
            };
            match load.fit(changes.len() as u64, weight) {
                Fit::Here(more) => load = more,
                Fit::Later => break, // the rest goes in the next request
                Fit::Never(over) => {
                    // No request could carry it: set aside as a refusal
                    // would, without sending it.
                    self.set_aside(doc, &over.to_string()).await?;
                    continue;
                }
            }
            sent.push((doc.clone(), outbox.chunk_ids));
            push.push(DocPush {
                doc_id: doc.clone(),
                changes: Bytes(changes),
            });
        }
        plan.retain_push(|d| sent.iter().any(|(id, _)| id == d));
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
            epoch: plan.epoch,
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
            match self.send(&req, report).await {
                Ok(resp) => resp,
                Err(e) if e.is_refusal() => return self.refused(&plan, e).await,
                Err(e) => return Err(e),
            }
        };
        report.requests += 1;
        if self.engine.must_start_over(&resp) {
            return self.start_over(resp.epoch).await;
        }
        report.pushed_docs += req.push.len();
        let (applied, mut record) = self.apply(&resp, &sent).await?;
        report.pulled_docs += resp.docs.len();
        let next = self.engine.on_success(&plan, &resp, &applied, now_millis());
        // Everything the cursor covers is durable now (the pulled documents
        // are saved): persist it with the round's bookkeeping, in one commit.
        record.meta = vec![
            (FEED_CURSOR_KEY, self.engine.feed_cursor() as i64),
            (FEED_EPOCH_KEY, self.engine.epoch() as i64),
        ];
        self.store.record_round(&record, now_millis()).await?;
        Ok(next)
    }

    /// The server refused the round's request: the refused document is set
    /// aside (durably, with the reason) and the others go on; see
    /// [`Engine::on_refused`].
    async fn refused(&mut self, plan: &Plan, e: SyncError) -> Result<Next, SyncError> {
        let now = now_millis();
        match self
            .engine
            .on_refused(plan, &e.to_string(), now, REFUSED_RETRY_MS)
        {
            Refusal::Doc(doc) => {
                tracing::warn!(doc = %doc, error = %e, "the server refused a document; the others go on");
                self.store
                    .mark_doc_refused(&doc, &e.to_string(), now)
                    .await?;
                self.emit_status();
                Ok(Next::Now)
            }
            Refusal::Narrowed => Ok(Next::Now),
            Refusal::Request => Err(e),
        }
    }

    /// The server's data is not what this device synced with (restored
    /// from an older copy): forget what was known of it, then push every
    /// document and image again (the server keeps only what it lacks) and
    /// pull from the start of `epoch`.
    async fn start_over(&mut self, epoch: u64) -> Result<Next, SyncError> {
        tracing::warn!(
            old = self.engine.epoch(),
            new = epoch,
            "the server's data is not what this device synced with (restored?): \
             offering it everything again"
        );
        let docs = self
            .store
            .forget_server(&[(FEED_CURSOR_KEY, 0), (FEED_EPOCH_KEY, epoch as i64)])
            .await?;
        Ok(self.engine.start_over(epoch, docs, now_millis()))
    }

    /// Sets `doc` aside as if the server had refused it for `reason` (a
    /// push no request may carry): recorded durably, offered again later.
    async fn set_aside(&mut self, doc: &DocId, reason: &str) -> Result<(), SyncError> {
        let now = now_millis();
        tracing::warn!(doc = %doc, reason, "a document is over what one sync request may carry; the others go on");
        self.engine
            .set_refused(doc.clone(), reason.to_owned(), now + REFUSED_RETRY_MS);
        self.store.mark_doc_refused(doc, reason, now).await?;
        self.emit_status();
        Ok(())
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
}
