//! What changed in a document since the last look, for a view that shows a
//! long timeline and must not re-read all of it on every change.
//!
//! [`AssetDoc::watch_changes`] starts Automerge's indexed diff (its patch
//! log records every change applied from then on, local or merged in);
//! [`AssetDoc::take_touched`] turns the patches since the last call into a
//! [`Touched`]: which timeline entries, and whether versions, costs or the
//! title changed. The cost is proportional to the changes, not the document.

use std::collections::BTreeSet;

use automerge::{Patch, PatchAction, Prop};

use super::AssetDoc;
use super::schema::{ACTIVE_VERSION_ID, COST_EVENTS, DELETED, MESSAGES, TITLE, VERSIONS};

/// The parts of a document that changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Timeline entries changed or added, by position.
    pub messages: BTreeSet<usize>,
    /// Entries were removed (or a container replaced): positions seen
    /// before may have moved, re-read the timeline.
    pub reordered: bool,
    /// A version was added, or the active version moved.
    pub versions: bool,
    pub costs: bool,
    pub title: bool,
    /// The asset was deleted or restored.
    pub deleted: bool,
}

impl Touched {
    pub fn is_empty(&self) -> bool {
        *self == Touched::default()
    }

    fn note(&mut self, patch: &Patch) {
        let root_key = match patch.path.first() {
            Some((_, Prop::Map(k))) => Some(k.as_str()),
            Some((_, Prop::Seq(_))) => None,
            None => match &patch.action {
                PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key } => {
                    Some(key.as_str())
                }
                _ => None,
            },
        };
        let Some(key) = root_key else {
            self.reordered = true;
            return;
        };
        let at_root = patch.path.is_empty();
        match key {
            MESSAGES if at_root => self.reordered = true,
            MESSAGES => match (patch.path.get(1), &patch.action) {
                (Some((_, Prop::Seq(i))), _) => {
                    self.messages.insert(*i);
                }
                (None, PatchAction::Insert { index, values, .. }) => {
                    self.messages.extend(*index..*index + values.len());
                }
                (None, PatchAction::PutSeq { index, .. }) => {
                    self.messages.insert(*index);
                }
                _ => self.reordered = true,
            },
            VERSIONS | ACTIVE_VERSION_ID => self.versions = true,
            COST_EVENTS => self.costs = true,
            TITLE => self.title = true,
            DELETED => self.deleted = true,
            _ => {}
        }
    }
}

impl AssetDoc {
    /// Starts recording changes for [`Self::take_touched`] (a small cost
    /// on every later change; call once per loaded document that a view
    /// follows).
    pub fn watch_changes(&mut self) {
        self.doc.update_diff_cursor();
    }

    /// What changed since [`Self::watch_changes`] or the previous call.
    pub fn take_touched(&mut self) -> Touched {
        let mut t = Touched::default();
        for p in self.doc.diff_incremental() {
            t.note(&p);
        }
        t
    }
}
