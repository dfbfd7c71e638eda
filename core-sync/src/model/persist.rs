//! Loading, saving and exchanging an asset document's changes: strict
//! loads, incremental saves for the store, changes for sync, merges, forks
//! and history. Bytes in, bytes out; no IO.

use automerge::{ActorId, AutoCommit, ChangeHash};

use super::AssetDoc;
use super::error::{ModelError, ModelResult};
use super::schema::migrate;

/// One entry of a document's change history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeInfo {
    pub hash: ChangeHash,
    pub actor: ActorId,
    pub seq: u64,
    pub deps: Vec<ChangeHash>,
}

impl AssetDoc {
    /// Loads a document from any concatenation of `save()` and incremental
    /// chunks, gives it a fresh actor id, and migrates it to the current
    /// schema (as a new, unsaved change).
    pub fn load(bytes: &[u8]) -> ModelResult<Self> {
        Self::load_chunks([bytes])
    }

    /// Loads from several chunks: the first is loaded whole, the rest applied
    /// incrementally. Empty input is an error, not an empty document.
    pub fn load_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> ModelResult<Self> {
        // One strict load of the concatenation: `load_incremental` would
        // silently skip a truncated or corrupt tail, `load` refuses it.
        let mut chunks = chunks.into_iter();
        let first = chunks
            .next()
            .ok_or_else(|| ModelError::Malformed("no data".into()))?;
        let mut doc = match chunks.next() {
            None => AutoCommit::load(first)?,
            Some(second) => {
                let mut all = Vec::with_capacity(first.len() + second.len());
                all.extend_from_slice(first);
                all.extend_from_slice(second);
                chunks.for_each(|c| all.extend_from_slice(c));
                AutoCommit::load(&all)?
            }
        };
        if !doc.get_missing_deps(&[]).is_empty() {
            return Err(ModelError::Malformed(
                "changes are missing their dependencies".into(),
            ));
        }
        // A fresh actor for every load: an actor id must never produce two
        // different changes with the same sequence number, which reusing one
        // after a crash could do.
        doc.set_actor(crate::ids::new_actor_id());
        if doc.get_heads().is_empty() {
            return Err(ModelError::Malformed("document has no changes".into()));
        }
        let saved_heads = doc.get_heads();
        migrate(&mut doc)?;
        let mut this = Self::wrap(doc);
        this.saved_heads = saved_heads;
        Ok(this)
    }

    /// A document made of `changes` alone (a first push of a document the
    /// server never had), with a fresh actor and no migration: exactly what
    /// the changes say. Changes with missing dependencies are an error.
    pub fn from_changes(changes: Vec<automerge::Change>) -> ModelResult<Self> {
        let mut doc = AutoCommit::new().with_actor(crate::ids::new_actor_id());
        doc.apply_changes(changes)?;
        if !doc.get_missing_deps(&[]).is_empty() {
            return Err(ModelError::Malformed(
                "changes are missing their dependencies".into(),
            ));
        }
        if doc.get_heads().is_empty() {
            return Err(ModelError::Malformed("document has no changes".into()));
        }
        let mut this = Self::wrap(doc);
        this.saved_heads = this.doc.get_heads();
        Ok(this)
    }

    /// Loads with no migration, for inspecting old documents as they are.
    pub fn load_raw(bytes: &[u8]) -> ModelResult<AutoCommit> {
        Ok(AutoCommit::load(bytes)?)
    }

    /// A compact encoding of the whole document. Changes still waiting for
    /// their dependencies are left out: a snapshot holding them would not
    /// load (their dependencies come later, by resync, with the changes).
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save_with_options(automerge::SaveOptions {
            deflate: true,
            retain_orphans: false,
        })
    }

    /// Changes not yet durable in the local store, encoded for storage;
    /// empty when there are none. Call [`Self::mark_saved`] once stored.
    pub fn unsaved_changes(&mut self) -> (Vec<u8>, Vec<ChangeHash>) {
        let heads = self.doc.get_heads();
        if heads == self.saved_heads {
            return (Vec::new(), heads);
        }
        // Saved heads are always heads this document produced or loaded, so
        // they are known to it and `save_after` cannot fall back to "all".
        (self.doc.save_after(&self.saved_heads), heads)
    }

    /// Records that everything up to `heads` is durable.
    pub fn mark_saved(&mut self, heads: Vec<ChangeHash>) {
        self.saved_heads = heads;
    }

    /// Whether there are changes the store has not made durable yet.
    pub fn has_unsaved_changes(&mut self) -> bool {
        self.doc.get_heads() != self.saved_heads
    }

    /// Applies chunks or changes from elsewhere (another device, the server).
    /// The bytes are parsed strictly first: corrupt or truncated input is an
    /// error and changes nothing (Automerge's own `load_incremental` would
    /// apply the readable prefix and drop the rest without a word).
    pub fn apply_incremental(&mut self, bytes: &[u8]) -> ModelResult<()> {
        check_chunks(bytes)?;
        let before = self.doc.get_heads();
        self.doc.load_incremental(bytes)?;
        if self.doc.get_heads() != before {
            self.invalidate();
        }
        Ok(())
    }

    /// Encoded changes a peer that has `heads` lacks. Heads this document
    /// does not know (a peer ahead of us, or a server restored from an older
    /// backup) make that impossible to compute exactly, so then every change
    /// is returned: Automerge's own `get_changes` would silently do the same,
    /// and saying so here keeps the fallback deliberate.
    pub fn changes_since(&mut self, heads: &[ChangeHash]) -> Vec<u8> {
        let known = self.knows(heads);
        let from: &[ChangeHash] = if known { heads } else { &[] };
        self.doc
            .get_changes(from)
            .iter()
            .flat_map(|c| c.raw_bytes().to_vec())
            .collect()
    }

    /// Applies changes parsed elsewhere (`chunks::changes`); ones already
    /// here are skipped, ones whose dependencies are missing wait for them.
    pub fn apply_changes(&mut self, changes: Vec<automerge::Change>) -> ModelResult<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.doc.apply_changes(changes)?;
        self.invalidate();
        Ok(())
    }

    /// Whether the change `hash` is in this document (a lookup, not a
    /// rebuild of the change).
    pub fn has_change(&mut self, hash: &ChangeHash) -> bool {
        self.doc.get_change_meta_by_hash(hash).is_some()
    }

    /// Whether every change named by `heads` is in this document.
    pub fn knows(&mut self, heads: &[ChangeHash]) -> bool {
        heads.iter().all(|h| self.has_change(h))
    }

    /// Changes this document is waiting for (referenced but absent).
    pub fn missing_deps(&mut self) -> Vec<ChangeHash> {
        self.doc.get_missing_deps(&[])
    }

    /// Merges another copy of this asset into this one.
    pub fn merge(&mut self, other: &mut AssetDoc) -> ModelResult<()> {
        self.doc.merge(&mut other.doc)?;
        self.invalidate();
        Ok(())
    }

    /// An independent copy with its own actor, as a second device would have.
    pub fn fork(&mut self) -> AssetDoc {
        let mut doc = self.doc.fork().with_actor(crate::ids::new_actor_id());
        let heads = doc.get_heads();
        let mut this = Self::wrap(doc);
        this.saved_heads = heads;
        this
    }

    /// Every change, in causal order: the document's history. Read any past
    /// state with the `*_at` views and a change's hash as heads.
    pub fn history(&mut self) -> Vec<ChangeInfo> {
        self.doc
            .get_changes_meta(&[])
            .into_iter()
            .map(|m| ChangeInfo {
                hash: m.hash,
                actor: m.actor.into_owned(),
                seq: m.seq,
                deps: m.deps,
            })
            .collect()
    }
}

/// Parses `bytes` (snapshots and/or changes) strictly without applying them.
/// Changes whose dependencies are elsewhere are fine; bad bytes are not.
pub fn check_chunks(bytes: &[u8]) -> ModelResult<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    // Automerge logs an error for changes whose dependencies are not in the
    // scratch document; here that is expected, so keep it out of the logs.
    let loaded = tracing::dispatcher::with_default(&tracing::Dispatch::none(), || {
        automerge::Automerge::load(bytes)
    });
    match loaded {
        Ok(_) | Err(automerge::AutomergeError::MissingDeps) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
