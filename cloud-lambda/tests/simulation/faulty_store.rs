//! The faulty server store: [`FaultyDocStore`] wraps the embedded store and,
//! from a seeded RNG ([`StoreFaults`], shared by every server incarnation),
//! fails reads and writes, lets some writes commit and then report failure
//! (a lost acknowledgement), and dies mid-request when the network arms a
//! crash. Every operation is also a passage of the [`Gate`].

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use automerge::ChangeHash;
use cloud_lambda::storage::embedded::EmbeddedStore;
use cloud_lambda::storage::{Chunk, DocHead, DocStore, FeedEntry, StorageError};
use core_sync::DocId;
use rand08::Rng;
use rand08::rngs::StdRng;

use crate::gate::Gate;

/// Faults of the server's storage, shared by every server incarnation.
pub(crate) struct StoreFaults {
    pub(crate) rng: StdRng,
    pub(crate) enabled: bool,
    /// Writes left before the armed crash.
    pub(crate) crash_in: Option<u32>,
    /// Crashed: every operation fails until the server restarts.
    pub(crate) dead: bool,
    pub(crate) injected: u64,
    pub(crate) compactions: u64,
}

/// The server's store with injected failures: reads and writes that fail,
/// writes that commit and then report failure, and crashes.
pub(crate) struct FaultyDocStore {
    pub(crate) inner: EmbeddedStore,
    pub(crate) faults: Arc<Mutex<StoreFaults>>,
    /// Every operation is a passage: concurrent devices take turns here.
    pub(crate) gate: Arc<Gate>,
}

fn backend(msg: &str) -> StorageError {
    StorageError::Backend(format!("simulated: {msg}"))
}

impl FaultyDocStore {
    fn before_read(&self) -> Result<(), StorageError> {
        let mut f = self.faults.lock().unwrap();
        if f.dead {
            return Err(backend("server crashed"));
        }
        if f.enabled && f.rng.gen_range(0..100) < 1 {
            f.injected += 1;
            return Err(backend("read failed"));
        }
        Ok(())
    }

    /// Whether the write fails before (`Err`) or after it commits
    /// (`Ok(true)`).
    fn before_write(&self) -> Result<bool, StorageError> {
        let mut f = self.faults.lock().unwrap();
        if f.dead {
            return Err(backend("server crashed"));
        }
        if f.crash_in == Some(0) {
            f.dead = true;
            return Err(backend("server crashed mid-request"));
        }
        if !f.enabled {
            return Ok(false);
        }
        match f.rng.gen_range(0..100) {
            0..2 => {
                f.injected += 1;
                Err(backend("write failed"))
            }
            2..4 => {
                f.injected += 1;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn after_write(&self, fail: bool) -> Result<(), StorageError> {
        let mut f = self.faults.lock().unwrap();
        if let Some(n) = &mut f.crash_in {
            *n = n.saturating_sub(1);
        }
        if fail {
            Err(backend("write committed, acknowledgement lost"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl DocStore for FaultyDocStore {
    // The REST projections are not what this simulation is about: faults
    // and turns apply to the document store only.
    fn projections(&self) -> &dyn cloud_lambda::storage::projection::ProjectionStore {
        self.inner.projections()
    }

    // Nor are epochs: no restore happens here.
    async fn epoch(&self, user: &str, known: u64) -> Result<u64, StorageError> {
        self.inner.epoch(user, known).await
    }

    async fn renew_epoch(&self, user: &str, seen: u64) -> Result<u64, StorageError> {
        self.inner.renew_epoch(user, seen).await
    }

    async fn head(&self, user: &str, doc: &DocId) -> Result<Option<DocHead>, StorageError> {
        self.gate.pass().await;
        self.before_read()?;
        self.inner.head(user, doc).await
    }

    async fn append(
        &self,
        user: &str,
        doc: &DocId,
        expected_last_useq: u64,
        bytes: &[u8],
        heads: &[ChangeHash],
    ) -> Result<u64, StorageError> {
        self.gate.pass().await;
        let fail = self.before_write()?;
        let useq = self
            .inner
            .append(user, doc, expected_last_useq, bytes, heads)
            .await?;
        self.after_write(fail)?;
        Ok(useq)
    }

    async fn read_since(
        &self,
        user: &str,
        doc: &DocId,
        after: u64,
    ) -> Result<Vec<Chunk>, StorageError> {
        self.gate.pass().await;
        self.before_read()?;
        self.inner.read_since(user, doc, after).await
    }

    async fn feed_since(
        &self,
        user: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FeedEntry>, StorageError> {
        self.gate.pass().await;
        self.before_read()?;
        self.inner.feed_since(user, after, limit).await
    }

    async fn compact(
        &self,
        user: &str,
        doc: &DocId,
        upto: u64,
        snapshot: &[u8],
    ) -> Result<(), StorageError> {
        self.gate.pass().await;
        let fail = self.before_write()?;
        self.inner.compact(user, doc, upto, snapshot).await?;
        self.faults.lock().unwrap().compactions += 1;
        self.after_write(fail)
    }

    async fn user_head(&self, user: &str) -> Result<u64, StorageError> {
        self.gate.pass().await;
        self.before_read()?;
        self.inner.user_head(user).await
    }
}
