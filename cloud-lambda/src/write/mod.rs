//! The one way the server changes a document. Every write — a device's
//! push, a job's status or result, a REST call — goes through [`DocWriter`]:
//! it takes the document as the log holds it (warm in the [`cache`], or
//! loaded), lets the pure [`core`] decide, appends conditionally on the log
//! position that copy reflects, retries on a lost race, compacts by the one
//! policy, and hands newly queued tool requests to the job launcher.
//!
//! A push to a warm document costs the change, not the document: deciding
//! is a lookup per change, appending writes only the new ones, and the copy
//! is brought up to date by applying them. A copy that fell behind (another
//! process appended) loses the conditional append and catches up by reading
//! only the entries after its position.
//!
//! This module does not know about jobs: the launcher is a trait the job
//! runner implements ([`RequestLauncher`]). No lock is held while storage
//! is called: a writer takes the warm copy out of the cache and puts it
//! back after.

pub mod cache;
pub mod core;

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use automerge::{Change, ChangeHash};
use core_sync::DocId;
use core_sync::model::{AssetDoc, ModelError, chunks};

use self::cache::{DocCache, Warm};
use self::core::{LogSizes, PushDecision, decide_push, queued_requests};
use crate::storage::{Chunk, DocStore, StorageError};

/// How often a write retries after losing a conditional append race.
const RETRIES: usize = 32;

/// Default size of the document cache, in stored bytes.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("document {0} not found")]
    NotFound(DocId),
    #[error("document {doc}: {source}")]
    Model { doc: DocId, source: ModelError },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("document {0} stayed busy through every retry")]
    Busy(DocId),
}

/// Runs `write` to its end in a task of its own, even when its caller is
/// dropped (a request timed out, a client hung up): an append is never cut
/// off from its listing, compaction and job launch. Every route that
/// writes a document goes through here. Fails only when the task panicked
/// or the runtime is shutting down.
pub async fn to_the_end<T: Send + 'static>(
    write: impl Future<Output = T> + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    tokio::spawn(write).await
}

/// Starts jobs for tool requests a write queued (implemented by the job
/// runner; set once at assembly).
#[async_trait]
pub trait RequestLauncher: Send + Sync {
    async fn queued(&self, user: &str, doc: &DocId, message_ids: Vec<String>);
}

/// The log entry a push added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogEntry {
    /// Its position in the user's log.
    pub useq: u64,
    /// The document's entry right before it (0: none), as the conditional
    /// append found it.
    pub after: u64,
}

/// What came of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Stored, or already there (a retry). `appended`: the log entry this
    /// push added, if it added one.
    Accepted {
        heads: Vec<ChangeHash>,
        appended: Option<LogEntry>,
    },
    /// Some changes depend on changes the log lacks: nothing stored.
    MissingDeps { heads: Vec<ChangeHash> },
}

pub struct DocWriter {
    docs: Arc<dyn DocStore>,
    cache: DocCache,
    launcher: OnceLock<Arc<dyn RequestLauncher>>,
}

impl DocWriter {
    pub fn new(docs: Arc<dyn DocStore>, cache_bytes: u64) -> DocWriter {
        DocWriter {
            docs,
            cache: DocCache::new(cache_bytes),
            launcher: OnceLock::new(),
        }
    }

    /// Sets who starts queued tool requests (once).
    pub fn set_launcher(&self, launcher: Arc<dyn RequestLauncher>) {
        let _ = self.launcher.set(launcher);
    }

    pub fn docs(&self) -> &Arc<dyn DocStore> {
        &self.docs
    }

    pub fn cache(&self) -> &DocCache {
        &self.cache
    }

    /// Applies a device's push of parsed changes (`chunks::changes`).
    pub async fn push(
        &self,
        user: &str,
        doc: &DocId,
        incoming: Vec<Change>,
    ) -> Result<Pushed, WriteError> {
        let mut warm = self.cache.take(user, doc);
        for attempt in 0..RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            if warm.is_none() {
                warm = self.load(user, doc).await?;
            }
            let decision = match warm.as_mut() {
                Some(w) => decide_push(Some(&mut w.doc), incoming.clone()),
                None => decide_push(None, incoming.clone()),
            };
            if !decision.missing.is_empty() {
                // Refuse only on the log's latest state: a copy behind it may
                // lack what the push depends on.
                if let Some(w) = warm.as_mut()
                    && !self.is_current(user, doc, w).await?
                {
                    if !self.catch_up(user, doc, w).await? {
                        warm = None;
                    }
                    continue;
                }
                let heads = match warm.as_mut() {
                    Some(w) => w.doc.heads(),
                    None => Vec::new(),
                };
                self.keep(user, doc, warm);
                return Ok(Pushed::MissingDeps { heads });
            }
            if decision.new_changes.is_empty() {
                // A retry: its first attempt may have been appended by a
                // server that died before it started the jobs the push
                // queued. Starting is idempotent; look again.
                let queued = match warm.as_mut() {
                    Some(w) => {
                        let n = w.doc.reader().message_count().unwrap_or(0);
                        self.queued(&w.doc, n)
                    }
                    None => Vec::new(),
                };
                self.keep(user, doc, warm);
                self.launch(user, doc, queued).await;
                return Ok(Pushed::Accepted {
                    heads: decision.heads_after,
                    appended: None,
                });
            }
            let expected = warm.as_ref().map_or(0, |w| w.last_useq);
            let entry = decision.entry();
            match self
                .docs
                .append(user, doc, expected, &entry, &decision.heads_after)
                .await
            {
                Ok(useq) => {
                    let mut w = self.appended_push(doc, warm, decision, useq, entry.len())?;
                    let queued = self.queued(&w.warm.doc, w.messages_before);
                    self.after_append(user, doc, &mut w.warm).await;
                    let heads = w.warm.doc.heads();
                    self.keep(user, doc, Some(w.warm));
                    self.launch(user, doc, queued).await;
                    return Ok(Pushed::Accepted {
                        heads,
                        appended: Some(LogEntry {
                            useq,
                            after: expected,
                        }),
                    });
                }
                Err(StorageError::Conflict) => {
                    // Someone else appended: catch up (a new document now
                    // exists) and decide again.
                    let caught_up = match warm.as_mut() {
                        Some(w) => self.catch_up(user, doc, w).await?,
                        None => false,
                    };
                    if !caught_up {
                        warm = None;
                    }
                }
                Err(StorageError::NotFound) => return Err(WriteError::NotFound(doc.clone())),
                // It may have committed: this copy's place is unknown; drop it.
                Err(e) => return Err(e.into()),
            }
        }
        Err(WriteError::Busy(doc.clone()))
    }

    /// Applies `write` (a typed model change) to the current document and
    /// appends what it changed; on a lost race, reloads and applies it
    /// again. A `write` that changes nothing appends nothing.
    pub async fn write<T>(
        &self,
        user: &str,
        doc: &DocId,
        mut write: impl FnMut(&mut AssetDoc) -> Result<T, ModelError>,
    ) -> Result<T, WriteError> {
        let mut taken = self.cache.take(user, doc);
        for attempt in 0..RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let mut w = match taken.take() {
                Some(w) => w,
                None => self
                    .load(user, doc)
                    .await?
                    .ok_or_else(|| WriteError::NotFound(doc.clone()))?,
            };
            let messages_before = w.doc.reader().message_count().unwrap_or(0);
            // A refused model write rolls itself back: the copy stays exact.
            let value = match write(&mut w.doc) {
                Ok(v) => v,
                Err(source) => {
                    self.keep(user, doc, Some(w));
                    return Err(WriteError::Model {
                        doc: doc.clone(),
                        source,
                    });
                }
            };
            let (bytes, heads) = w.doc.unsaved_changes();
            if bytes.is_empty() {
                self.keep(user, doc, Some(w));
                return Ok(value);
            }
            match self
                .docs
                .append(user, doc, w.last_useq, &bytes, &heads)
                .await
            {
                Ok(useq) => {
                    w.doc.mark_saved(heads);
                    w.last_useq = useq;
                    w.sizes = w.sizes.appended(bytes.len());
                    let queued = self.queued(&w.doc, messages_before);
                    self.after_append(user, doc, &mut w).await;
                    self.keep(user, doc, Some(w));
                    self.launch(user, doc, queued).await;
                    return Ok(value);
                }
                // The copy now holds a change the log does not: drop it and
                // start again from the log.
                Err(StorageError::Conflict) => {}
                Err(StorageError::NotFound) => return Err(WriteError::NotFound(doc.clone())),
                Err(e) => return Err(e.into()),
            }
        }
        Err(WriteError::Busy(doc.clone()))
    }

    /// Reads the document as the log holds it now (its head is checked;
    /// a warm copy behind it catches up first).
    pub async fn read<T>(
        &self,
        user: &str,
        doc: &DocId,
        read: impl FnOnce(&mut AssetDoc) -> T,
    ) -> Result<T, WriteError> {
        let mut warm = self.cache.take(user, doc);
        let fresh = match warm.as_mut() {
            Some(w) => self.is_current(user, doc, w).await? || self.catch_up(user, doc, w).await?,
            None => false,
        };
        if !fresh {
            warm = self.load(user, doc).await?;
        }
        let Some(mut w) = warm else {
            return Err(WriteError::NotFound(doc.clone()));
        };
        let value = read(&mut w.doc);
        self.keep(user, doc, Some(w));
        Ok(value)
    }

    /// Puts a copy that matches the log back in the cache.
    fn keep(&self, user: &str, doc: &DocId, warm: Option<Warm>) {
        if let Some(w) = warm {
            self.cache.put(user, doc, w);
        }
    }

    /// Loads a document from its log (`None` if absent). A load that
    /// migrated an old schema stores the migration at once, so the copy
    /// always equals the log.
    async fn load(&self, user: &str, doc: &DocId) -> Result<Option<Warm>, WriteError> {
        for _ in 0..RETRIES {
            let Some(head) = self.docs.head(user, doc).await? else {
                return Ok(None);
            };
            let stored = self.docs.read_all(user, doc).await?;
            let sizes = sizes_of(&stored);
            let loaded = AssetDoc::load_chunks(stored.iter().map(|c| c.bytes.as_slice())).map_err(
                |source| WriteError::Model {
                    doc: doc.clone(),
                    source,
                },
            )?;
            let mut warm = Warm {
                doc: loaded,
                last_useq: head.last_useq,
                sizes,
            };
            let (migration, heads) = warm.doc.unsaved_changes();
            if migration.is_empty() {
                return Ok(Some(warm));
            }
            match self
                .docs
                .append(user, doc, warm.last_useq, &migration, &heads)
                .await
            {
                Ok(useq) => {
                    warm.doc.mark_saved(heads);
                    warm.last_useq = useq;
                    warm.sizes = warm.sizes.appended(migration.len());
                    return Ok(Some(warm));
                }
                Err(StorageError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(WriteError::Busy(doc.clone()))
    }

    /// Whether `warm` is at the log's latest position (one head read).
    async fn is_current(&self, user: &str, doc: &DocId, warm: &Warm) -> Result<bool, WriteError> {
        match self.docs.head(user, doc).await? {
            Some(head) => Ok(head.last_useq == warm.last_useq),
            None => Err(WriteError::NotFound(doc.clone())),
        }
    }

    /// Brings `warm` up to the log's latest position by applying only what
    /// came after it. `false`: the entries do not apply (drop the copy).
    async fn catch_up(&self, user: &str, doc: &DocId, warm: &mut Warm) -> Result<bool, WriteError> {
        let newer = self.docs.read_since(user, doc, warm.last_useq).await?;
        for chunk in &newer {
            let Ok(changes) = chunks::changes(&chunk.bytes) else {
                return Ok(false);
            };
            if warm.doc.apply_changes(changes).is_err() {
                return Ok(false);
            }
            warm.last_useq = warm.last_useq.max(chunk.useq);
            warm.sizes = if chunk.is_snapshot {
                LogSizes::compacted(chunk.bytes.len())
            } else {
                warm.sizes.appended(chunk.bytes.len())
            };
        }
        if !warm.doc.missing_deps().is_empty() {
            return Ok(false);
        }
        let heads = warm.doc.heads();
        warm.doc.mark_saved(heads);
        Ok(true)
    }

    /// The copy past a successful push append (a new one for a document
    /// the log did not have), with the message count before it.
    fn appended_push(
        &self,
        doc: &DocId,
        warm: Option<Warm>,
        decision: PushDecision,
        useq: u64,
        bytes: usize,
    ) -> Result<Appended, WriteError> {
        let doc_err = |source| WriteError::Model {
            doc: doc.clone(),
            source,
        };
        let (messages_before, mut w) = match warm {
            Some(mut w) => {
                let before = w.doc.reader().message_count().unwrap_or(0);
                w.doc.apply_changes(decision.new_changes).map_err(doc_err)?;
                (before, w)
            }
            None => (
                0,
                Warm {
                    doc: AssetDoc::from_changes(decision.new_changes).map_err(doc_err)?,
                    last_useq: 0,
                    sizes: LogSizes::default(),
                },
            ),
        };
        let heads = w.doc.heads();
        w.doc.mark_saved(heads);
        w.last_useq = useq;
        w.sizes = w.sizes.appended(bytes);
        Ok(Appended {
            warm: w,
            messages_before,
        })
    }

    fn queued(&self, doc: &AssetDoc, messages_before: u64) -> Vec<String> {
        if self.launcher.get().is_none() {
            return Vec::new();
        }
        queued_requests(doc, messages_before)
    }

    /// After an append: updates the REST projections (listing, cost
    /// events) from the document, and compacts the log when the policy
    /// says so.
    async fn after_append(&self, user: &str, doc: &DocId, w: &mut Warm) {
        crate::projection::after_write(
            self.docs.as_ref(),
            user,
            doc,
            w.last_useq,
            w.doc.automerge(),
        )
        .await;
        if !w.sizes.should_compact() {
            return;
        }
        let snapshot = w.doc.save();
        match self.docs.compact(user, doc, w.last_useq, &snapshot).await {
            Ok(()) => w.sizes = LogSizes::compacted(snapshot.len()),
            Err(e) => tracing::warn!(%doc, error = %e, "compaction skipped"),
        }
    }

    async fn launch(&self, user: &str, doc: &DocId, queued: Vec<String>) {
        if queued.is_empty() {
            return;
        }
        if let Some(l) = self.launcher.get() {
            l.queued(user, doc, queued).await;
        }
    }
}

/// A short random wait before retrying a write that lost a race, growing
/// with the attempts (up to ~64 ms), so writers that collide spread out.
async fn backoff(attempt: usize) {
    let ceiling_us = 250u64 << attempt.min(8);
    let wait = rand08::random::<u64>() % ceiling_us;
    tokio::time::sleep(std::time::Duration::from_micros(wait)).await;
}

/// A copy just past an append.
struct Appended {
    warm: Warm,
    messages_before: u64,
}

fn sizes_of(chunks: &[Chunk]) -> LogSizes {
    chunks.iter().fold(LogSizes::default(), |s, c| {
        if c.is_snapshot {
            LogSizes {
                snapshot_bytes: s.snapshot_bytes + c.bytes.len() as u64,
                ..s
            }
        } else {
            s.appended(c.bytes.len())
        }
    })
}
