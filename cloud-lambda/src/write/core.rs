//! The pure core of every server write: given the document as the log
//! holds it (a cached or freshly loaded copy) and what arrives (a device's
//! changes, or a job's typed model write), decide what to append, the heads
//! after it, what dependencies are missing, whether to compact, and which
//! tool requests are newly queued. No IO, no clock: the adapter
//! ([`super::DocWriter`]) executes the decision.

use std::collections::{BTreeSet, HashSet};

use automerge::{Change, ChangeHash};
use core_sync::model::{AssetDoc, MessageKind, MessageStatus, Reader};
use core_sync::store::CompactionPolicy;

/// What the server's log of one document weighs (drives compaction).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogSizes {
    pub snapshot_bytes: u64,
    pub entry_bytes: u64,
    /// Log entries beside the snapshot.
    pub entries: u64,
}

impl LogSizes {
    /// After appending an entry of `bytes`.
    pub fn appended(self, bytes: usize) -> LogSizes {
        LogSizes {
            entry_bytes: self.entry_bytes + bytes as u64,
            entries: self.entries + 1,
            ..self
        }
    }

    /// After compacting into a snapshot of `bytes`.
    pub fn compacted(bytes: usize) -> LogSizes {
        LogSizes {
            snapshot_bytes: bytes as u64,
            entry_bytes: 0,
            entries: 0,
        }
    }

    /// Whether to fold the log into a snapshot now (the same rule as the
    /// local store's, with the server's settings). The snapshot counts as
    /// a chunk even before there is one: a lone entry of raw changes is not
    /// compact, and a document's first push is folded at once, so devices
    /// syncing from scratch download snapshots.
    pub fn should_compact(&self) -> bool {
        CompactionPolicy::SERVER.should_compact(
            self.snapshot_bytes,
            self.entry_bytes,
            self.entries + 1,
        )
    }

    pub fn total(&self) -> u64 {
        self.snapshot_bytes + self.entry_bytes
    }
}

/// What to do with a device's push.
#[derive(Debug)]
pub struct PushDecision {
    /// Changes the log lacks, in the order they came.
    pub new_changes: Vec<Change>,
    /// Dependencies neither in the log nor in the push: the push is
    /// refused for this document, nothing stored.
    pub missing: Vec<ChangeHash>,
    /// The document's heads once `new_changes` are appended.
    pub heads_after: Vec<ChangeHash>,
}

impl PushDecision {
    /// The bytes of the log entry to append (empty: nothing new).
    pub fn entry(&self) -> Vec<u8> {
        self.new_changes
            .iter()
            .flat_map(|c| c.raw_bytes().iter().copied())
            .collect()
    }
}

/// Decides a push of `incoming` (parsed changes) against `doc`, the
/// document as the log holds it (`None`: the log has no such document),
/// without changing `doc`: a lookup per change, so the cost follows the
/// push, not the document.
pub fn decide_push(mut doc: Option<&mut AssetDoc>, incoming: Vec<Change>) -> PushDecision {
    let mut known = |h: &ChangeHash| doc.as_deref_mut().is_some_and(|d| d.has_change(h));
    let mut seen = HashSet::new();
    let new_changes: Vec<Change> = incoming
        .into_iter()
        .filter(|c| seen.insert(c.hash()))
        .filter(|c| !known(&c.hash()))
        .collect();
    let new_hashes: HashSet<ChangeHash> = new_changes.iter().map(Change::hash).collect();
    let mut missing: BTreeSet<ChangeHash> = BTreeSet::new();
    for c in &new_changes {
        for d in c.deps() {
            if !new_hashes.contains(d) && !known(d) {
                missing.insert(*d);
            }
        }
    }
    let mut heads: BTreeSet<ChangeHash> = doc
        .map(|d| d.heads())
        .unwrap_or_default()
        .into_iter()
        .collect();
    heads.extend(new_hashes.iter().copied());
    for c in &new_changes {
        for d in c.deps() {
            heads.remove(d);
        }
    }
    PushDecision {
        new_changes,
        missing: missing.into_iter().collect(),
        heads_after: heads.into_iter().collect(),
    }
}

/// How many recent messages a search for new tool requests reads beyond
/// the ones a write added: requests appended concurrently on other devices
/// interleave near the end of the list.
const SCAN_SLACK: usize = 32;

/// The queued tool requests among the messages a write added (plus a few
/// before them): after a write, the candidates for new operations. Cost
/// follows the write, not the timeline.
pub fn queued_requests(doc: &AssetDoc, messages_before: u64) -> Vec<String> {
    let reader: Reader<'_> = doc.reader();
    let n = reader.message_count().unwrap_or(0) as usize;
    let added = n.saturating_sub(messages_before as usize);
    let from = n.saturating_sub(added + SCAN_SLACK);
    doc.messages_range(from..n)
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.kind == MessageKind::ToolRequest && m.status == Some(MessageStatus::Queued))
        .map(|m| m.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use core_sync::model::{NewMessage, chunks};

    fn parsed(bytes: &[u8]) -> Vec<Change> {
        chunks::changes(bytes).unwrap()
    }

    #[test]
    fn a_push_appends_only_what_the_log_lacks() {
        let mut server = AssetDoc::create("t", 1);
        let base = server.heads();
        let mut device = server.fork();
        device.append_message(NewMessage::user("a"), 2).unwrap();
        device.append_message(NewMessage::user("b"), 3).unwrap();
        let pushed = device.changes_since(&base);

        let d = decide_push(Some(&mut server), parsed(&pushed));
        assert_eq!(d.new_changes.len(), 2);
        assert!(d.missing.is_empty());
        assert_eq!(d.heads_after, device.heads());
        assert_eq!(server.heads(), base, "deciding changes nothing");

        // Once applied, the same push (a retry) is nothing new.
        server.apply_changes(d.new_changes).unwrap();
        let again = decide_push(Some(&mut server), parsed(&pushed));
        assert!(again.new_changes.is_empty() && again.entry().is_empty());
        assert_eq!(again.heads_after, device.heads());
    }

    #[test]
    fn a_push_with_a_gap_names_what_is_missing() {
        let mut server = AssetDoc::create("t", 1);
        let base = server.heads();
        let mut device = server.fork();
        device.append_message(NewMessage::user("a"), 2).unwrap();
        let after_a = device.heads();
        device.append_message(NewMessage::user("b"), 3).unwrap();
        let only_b = device.changes_since(&after_a);
        let d = decide_push(Some(&mut server), parsed(&only_b));
        assert_eq!(d.missing, after_a);
        // Concurrent heads: both survive.
        let mut other = server.fork();
        other.append_message(NewMessage::user("c"), 4).unwrap();
        server
            .apply_changes(parsed(&other.changes_since(&base)))
            .unwrap();
        let d = decide_push(Some(&mut server), parsed(&device.changes_since(&base)));
        assert!(d.missing.is_empty());
        let mut want = vec![device.heads()[0], other.heads()[0]];
        want.sort();
        assert_eq!(d.heads_after, want);
    }

    #[test]
    fn new_tool_requests_are_found_among_the_added_messages() {
        let mut doc = AssetDoc::create("t", 1);
        for i in 0..20 {
            doc.append_message(NewMessage::user(format!("m{i}")), 2)
                .unwrap();
        }
        let before = doc.reader().message_count().unwrap();
        let id = doc
            .append_message(
                NewMessage::tool_request("edit", "gemini", "gemini-3.1-flash-image", "warmer"),
                3,
            )
            .unwrap();
        assert_eq!(queued_requests(&doc, before), vec![id]);
    }

    #[test]
    fn the_server_compacts_when_changes_outweigh_the_snapshot_or_pile_up() {
        let s = LogSizes::compacted(1000);
        assert!(!s.appended(500).should_compact());
        assert!(s.appended(500).appended(501).should_compact());
        let mut many = LogSizes::compacted(1_000_000);
        for _ in 0..31 {
            many = many.appended(10);
        }
        assert!(many.should_compact());
        assert!(
            LogSizes::default().appended(100).should_compact(),
            "a first push"
        );
        assert!(!LogSizes::compacted(100).should_compact());
    }
}
