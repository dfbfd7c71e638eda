//! The trash as the window shows it: one row per deleted asset (when and
//! where it was deleted, when it will be purged, and whether it was edited
//! after the deletion), and the sentences of the Undo bar and of a deletion
//! that arrived from another device. Pure: times and the retention period
//! are passed in.

use core_sync::model::Millis;
use core_sync::store::TrashedAsset;
use time::UtcOffset;

use crate::format;

const DAY_MS: i64 = 86_400_000;

/// One row of the trash sheet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrashRow {
    pub id: String,
    pub title: String,
    /// "Deleted 5 min ago on laptop".
    pub deleted: String,
    /// "Deleted for good in 30 days" (when the server purges it).
    pub purge: String,
    /// Said when the asset was edited after its deletion: the deletion won,
    /// and restoring brings the edits back.
    pub conflict: String,
}

/// What the trash sheet shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrashVm {
    pub open: bool,
    pub rows: Vec<TrashRow>,
}

/// The trash sheet and the last deletion, as the controller keeps them.
#[derive(Debug)]
pub struct TrashState {
    pub open: bool,
    /// The asset the Undo bar would bring back.
    pub undo: Option<core_sync::ids::DocId>,
    /// Days an asset stays in the trash before the server purges it.
    pub retention_days: u32,
}

impl Default for TrashState {
    fn default() -> Self {
        TrashState {
            open: false,
            undo: None,
            retention_days: 30,
        }
    }
}

/// The rows of `trash` at `now`, with `retention_days` until a purge.
pub fn rows(
    trash: &[TrashedAsset],
    retention_days: u32,
    now: Millis,
    offset: UtcOffset,
) -> Vec<TrashRow> {
    trash
        .iter()
        .map(|t| {
            let by = if t.deleted_by.is_empty() {
                String::new()
            } else {
                format!(" on {}", t.deleted_by)
            };
            TrashRow {
                id: t.id.to_string(),
                title: t.title.clone(),
                deleted: format!("Deleted {}{by}", format::age(t.deleted_at, now, offset)),
                purge: purge_in(t.retained_since, retention_days, now),
                conflict: if t.edited_after {
                    "Edited after it was deleted (on another device, or a result that \
                     came in). The deletion wins; restore it to keep the edits."
                        .into()
                } else {
                    String::new()
                },
            }
        })
        .collect()
}

/// "Deleted for good in 12 days", "… tomorrow", "… at the next purge".
pub fn purge_in(retained_since: Millis, retention_days: u32, now: Millis) -> String {
    let due = retained_since.saturating_add(i64::from(retention_days) * DAY_MS);
    let left = due - now;
    if left <= 0 {
        "Deleted for good at the next purge".into()
    } else if left <= DAY_MS {
        "Deleted for good within a day".into()
    } else {
        format!("Deleted for good in {} days", (left + DAY_MS - 1) / DAY_MS)
    }
}

/// The Undo bar's sentence after deleting `title`.
pub fn undo_text(title: &str) -> String {
    format!("Moved “{}” to the Trash.", format::headline(title, 60))
}

/// What to say when an asset this device showed went to the trash by
/// another device's hand.
pub fn deleted_elsewhere(t: &TrashedAsset) -> String {
    let by = if t.deleted_by.is_empty() {
        "another device".to_string()
    } else {
        t.deleted_by.clone()
    };
    let kept = if t.edited_after {
        " Edits made after that are kept with it."
    } else {
        ""
    };
    format!(
        "“{}” was deleted on {by} and is in the Trash.{kept}",
        format::headline(&t.title, 60)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trashed(edited_after: bool) -> TrashedAsset {
        TrashedAsset {
            id: "0123456789abcdef0123456789abcdef".parse().unwrap(),
            title: "Shoe".into(),
            cover_sha256: None,
            deleted_at: 1_000_000,
            deleted_by: "laptop".into(),
            edited_after,
            retained_since: 1_000_000,
        }
    }

    #[test]
    fn rows_say_when_where_and_until_when() {
        let now = 1_000_000 + 5 * 60_000;
        let r = rows(&[trashed(false)], 30, now, UtcOffset::UTC);
        assert_eq!(r[0].deleted, "Deleted 5 min ago on laptop");
        assert_eq!(r[0].purge, "Deleted for good in 30 days");
        assert_eq!(r[0].conflict, "");
        let r = rows(&[trashed(true)], 30, now, UtcOffset::UTC);
        assert!(r[0].conflict.contains("deletion wins"), "{}", r[0].conflict);
    }

    #[test]
    fn the_purge_countdown() {
        for (now, want) in [
            (0, "Deleted for good in 30 days"),
            (29 * DAY_MS + 1, "Deleted for good within a day"),
            (30 * DAY_MS, "Deleted for good at the next purge"),
            (DAY_MS / 2, "Deleted for good in 30 days"),
            (DAY_MS + 1, "Deleted for good in 29 days"),
        ] {
            assert_eq!(purge_in(0, 30, now), want, "at {now}");
        }
    }

    #[test]
    fn a_deletion_from_elsewhere_says_who_and_what_is_kept() {
        assert_eq!(
            deleted_elsewhere(&trashed(false)),
            "“Shoe” was deleted on laptop and is in the Trash."
        );
        assert!(deleted_elsewhere(&trashed(true)).ends_with("kept with it."));
    }
}
