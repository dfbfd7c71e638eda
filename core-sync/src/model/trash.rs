//! Deleting and restoring an asset. A delete is a change in the document —
//! a tombstone `deleted: {at, by}` at the root — so it syncs like any edit,
//! is undone by another change (restore removes the tombstone) and leaves
//! the history whole until the server purges the asset after the retention
//! period.
//!
//! **Delete against an edit.** An edit made on a device that had not seen
//! the deletion (offline, or concurrent) does not bring the asset back: the
//! deletion wins, and the edit is kept inside the asset in the trash. The
//! trash says so ([`Deletion::edited_after`]), and the retention period
//! counts from the latest edit's time as well as the deletion
//! ([`Deletion::retained_since`]), so a restore gets every edit back. A
//! restore concurrent with a second deletion leaves the asset deleted
//! (the restore removes only the tombstones it saw). Rules and reasons are
//! in `core-sync/SCHEMA.md`.

use std::collections::{BTreeSet, HashMap};

use automerge::hydrate::Value as H;
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ObjType, ROOT, ReadDoc, Value};

use super::AssetDoc;
use super::error::{ModelError, ModelResult};
use super::schema::{AT, BY, CODE, DELETED, ERROR, MESSAGE, SHA256, STATUS, UPDATED_AT, VERSIONS};
use super::types::{AssetSummary, Deletion, ErrorInfo, MessageStatus, Millis};

/// The commit message of a delete or restore: changes that only move an
/// asset in or out of the trash do not count as edits after a deletion.
pub const TRASH_CHANGE: &str = "atelier:trash";

/// Longest device name kept in a tombstone.
const MAX_DEVICE_CHARS: usize = 200;

/// Longest title a rename accepts, in characters (the REST API's default
/// bound too).
pub const MAX_TITLE_CHARS: usize = 200;

impl AssetDoc {
    /// Renames the asset as a person asked to: the title is trimmed, and an
    /// empty one, one with control characters or one longer than
    /// [`MAX_TITLE_CHARS`] is refused and changes nothing. The same title
    /// again writes nothing. Concurrent renames on two devices resolve to
    /// one title, the same everywhere (Automerge's winner of the two).
    /// Returns whether the title changed.
    pub fn rename(&mut self, title: &str, now: Millis) -> ModelResult<bool> {
        let title = title.trim();
        if title.is_empty() {
            return Err(ModelError::Invalid("a title cannot be empty".into()));
        }
        if title.chars().any(char::is_control) {
            return Err(ModelError::Invalid(
                "a title cannot contain control characters (such as line breaks)".into(),
            ));
        }
        let n = title.chars().count();
        if n > MAX_TITLE_CHARS {
            return Err(ModelError::Invalid(format!(
                "the title is {n} characters long; the limit is {MAX_TITLE_CHARS}"
            )));
        }
        if self.summary()?.title == title {
            return Ok(false);
        }
        self.set_title(title, now)?;
        Ok(true)
    }

    /// Moves the asset to the trash: one change that writes the tombstone
    /// (`now`, and `device`, the deleting device's name). Deleting an asset
    /// already in the trash is refused and changes nothing.
    pub fn delete(&mut self, device: &str, now: Millis) -> ModelResult<()> {
        if self.reader().deletion()?.is_some() {
            return Err(ModelError::Invalid(
                "the asset is already in the trash".into(),
            ));
        }
        let device: String = device.chars().take(MAX_DEVICE_CHARS).collect();
        let value: H =
            HashMap::from([(AT, H::scalar(now)), (BY, H::scalar(device.as_str()))]).into();
        self.trash_change(|this| {
            this.doc.batch_create_object(ROOT, DELETED, &value, false)?;
            this.touch(now)?;
            Ok(())
        })?;
        if let Some(s) = &mut self.summary {
            s.deleted = Some(Deletion {
                at: now,
                by: device,
                edited_after: false,
                last_edit: now,
            });
        }
        Ok(())
    }

    /// Takes the asset out of the trash (undo, or a restore from the trash
    /// view): one change removing every tombstone this copy knows. Restoring
    /// an asset that is not in the trash is refused and changes nothing.
    pub fn restore(&mut self, now: Millis) -> ModelResult<()> {
        if self.doc.get(ROOT, DELETED)?.is_none() {
            return Err(ModelError::Invalid("the asset is not in the trash".into()));
        }
        self.trash_change(|this| {
            this.doc.delete(ROOT, DELETED)?;
            this.touch(now)
        })?;
        self.summary = None;
        Ok(())
    }

    /// Ends a tool request the server will not run because the asset is in
    /// the trash: one change, marked like a delete (so it does not count as
    /// an edit after the deletion, and leaves the retention period alone:
    /// the asset's `updatedAt` is not touched), setting the message
    /// `canceled` with `reason`. A request already finished is left alone
    /// (`Ok(false)`).
    pub fn stop_request_in_trash(
        &mut self,
        message_id: &str,
        reason: &ErrorInfo,
        now: Millis,
    ) -> ModelResult<bool> {
        if self
            .message(message_id)?
            .status
            .is_some_and(|s| s.is_terminal())
        {
            return Ok(false);
        }
        let (obj, _) = self.find_message(message_id)?;
        let error: H = HashMap::from([
            (CODE, H::scalar(reason.code.as_str())),
            (MESSAGE, H::scalar(reason.message.as_str())),
        ])
        .into();
        self.trash_change(|this| {
            this.doc
                .put(&obj, STATUS, MessageStatus::Canceled.as_str())?;
            this.doc.batch_create_object(&obj, ERROR, &error, false)?;
            this.doc.put(&obj, UPDATED_AT, now)?;
            Ok(())
        })?;
        Ok(true)
    }

    /// The tombstone, with [`Deletion::edited_after`] worked out from the
    /// change graph: a change that is not an ancestor of the tombstone (and
    /// is not itself a delete or restore) was made without seeing it, or
    /// after it.
    pub fn deletion(&mut self) -> ModelResult<Option<Deletion>> {
        let Some(mut d) = self.reader().deletion()? else {
            return Ok(None);
        };
        let tombstones: Vec<_> = self
            .doc
            .get_all(ROOT, DELETED)?
            .into_iter()
            .filter(|(v, _)| matches!(v, Value::Object(ObjType::Map)))
            .filter_map(|(_, obj)| self.doc.hash_for_opid(&obj))
            .collect();
        if !tombstones.is_empty() {
            d.edited_after = self
                .doc
                .get_changes_meta(&tombstones)
                .iter()
                .any(|m| m.message.as_deref() != Some(TRASH_CHANGE));
        }
        Ok(Some(d))
    }

    /// Every blob the document's versions name (images and thumbnails),
    /// unreadable versions included: a blob is only ever collected when no
    /// document names it anywhere, read or not.
    pub fn blob_refs(&self) -> ModelResult<BTreeSet<String>> {
        blob_refs(&self.doc)
    }

    /// Fills in what only the change graph can tell about a summary.
    pub(super) fn complete_summary(&mut self, s: &mut AssetSummary) -> ModelResult<()> {
        if s.deleted.is_some() {
            s.deleted = self.deletion()?;
        }
        Ok(())
    }

    /// Like `change`, but marks the change as a move in or out of the trash.
    fn trash_change(&mut self, f: impl FnOnce(&mut Self) -> ModelResult<()>) -> ModelResult<()> {
        match f(self) {
            Ok(()) => {
                self.doc
                    .commit_with(CommitOptions::default().with_message(TRASH_CHANGE));
                Ok(())
            }
            Err(e) => {
                self.doc.rollback();
                self.invalidate();
                Err(e)
            }
        }
    }
}

/// [`AssetDoc::blob_refs`] of a bare Automerge document (the server's).
pub fn blob_refs(doc: &automerge::AutoCommit) -> ModelResult<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let Some((Value::Object(ObjType::Map), versions)) = doc.get(ROOT, VERSIONS)? else {
        return Ok(out);
    };
    collect_shas(&doc.hydrate(&versions, None)?, false, &mut out);
    Ok(out)
}

/// Every string under a `sha256` key anywhere inside `v` that is a SHA-256.
fn collect_shas(v: &H, under_sha_key: bool, out: &mut BTreeSet<String>) {
    match v {
        H::Map(m) => {
            for (k, item) in m.iter() {
                collect_shas(&item.value, k == SHA256, out);
            }
        }
        H::List(l) => {
            for item in l.iter() {
                collect_shas(&item.value, false, out);
            }
        }
        other if under_sha_key => {
            if let Some(s) = super::parse::string(other)
                && crate::blob::is_valid_sha256(&s)
            {
                out.insert(s);
            }
        }
        _ => {}
    }
}
