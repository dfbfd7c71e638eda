//! When to compact a document's chunks: a pure decision, so it is tested
//! without a database. One rule for the local store and the server's log
//! (which adds a cap on the number of entries: see [`CompactionPolicy::SERVER`]).
//!
//! A document is compacted once its incremental chunks outweigh its snapshot
//! (with a floor, so tiny documents do not compact on every edit). That keeps
//! the bytes on disk within about 2x of `save()` between compactions and
//! exactly one snapshot after, while the cost of compaction (one `save()`,
//! linear in the document) is amortised over at least as many bytes of edits:
//! constant cost per edit. The 64 KiB floor (about 300 small edits) keeps
//! compaction of small documents off the p99 of an append too.

/// Tunables for [`should_compact`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Never compact while incremental chunks total less than this.
    pub min_incremental_bytes: u64,
    /// Compact when incremental bytes exceed the snapshot times this ratio
    /// (in percent).
    pub ratio_percent: u64,
    /// Compact once this many chunks (snapshot included) pile up, whatever
    /// their size.
    pub max_chunks: u64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            min_incremental_bytes: 64 * 1024,
            ratio_percent: 100,
            max_chunks: u64::MAX,
        }
    }
}

impl CompactionPolicy {
    /// Compaction turned off (tests that need many chunks).
    pub const NEVER: CompactionPolicy = CompactionPolicy {
        min_incremental_bytes: u64::MAX,
        ratio_percent: u64::MAX,
        max_chunks: u64::MAX,
    };

    /// The server's log: compacted as soon as raw changes outweigh the
    /// snapshot, with no floor, so a device syncing from scratch downloads
    /// compact snapshots rather than change logs; and at 32 entries, so a
    /// read of the whole document stays a few items.
    pub const SERVER: CompactionPolicy = CompactionPolicy {
        min_incremental_bytes: 0,
        ratio_percent: 100,
        max_chunks: 32,
    };

    pub fn should_compact(&self, snapshot_bytes: u64, incremental_bytes: u64, chunks: u64) -> bool {
        chunks >= 2
            && (chunks >= self.max_chunks
                || (incremental_bytes >= self.min_incremental_bytes
                    && incremental_bytes.saturating_mul(100)
                        > snapshot_bytes.saturating_mul(self.ratio_percent)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacts_when_edits_outweigh_the_snapshot() {
        let p = CompactionPolicy::default();
        assert!(!p.should_compact(0, 1000, 5), "below the floor");
        assert!(!p.should_compact(1000, 20_000, 90), "below the floor");
        assert!(p.should_compact(1000, 70_000, 300));
        assert!(
            !p.should_compact(100_000, 70_000, 300),
            "snapshot still larger"
        );
        assert!(p.should_compact(100_000, 100_001, 450));
        assert!(
            !p.should_compact(0, 1 << 20, 1),
            "one chunk is already compact"
        );
        assert!(!CompactionPolicy::NEVER.should_compact(0, u64::MAX - 1, 1 << 40));
        let server = CompactionPolicy::SERVER;
        assert!(server.should_compact(1000, 1001, 2), "no floor");
        assert!(!server.should_compact(1000, 999, 31));
        assert!(server.should_compact(1000, 999, 32), "too many entries");
        assert!(!server.should_compact(0, 10, 1), "nothing to fold");
    }
}
