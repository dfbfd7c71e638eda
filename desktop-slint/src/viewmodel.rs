//! View-models: what each view shows, computed from the document model and
//! the store's listing. Plain data and pure functions (time and the local
//! offset are passed in), unit-tested without a UI. The Slint adapter turns
//! these rows into Slint structs one to one.

use std::collections::HashMap;

use core_sync::model::{
    AssetSummary, CostEventView, MessageKind, MessageStatus, MessageView, Millis, Unreadable,
    VersionView,
};
use core_sync::store::AssetListing;
use core_sync::sync::engine::{SyncState, SyncStatus};
use time::UtcOffset;

use crate::format;
use crate::images::{ImageKey, ImageSize};
use crate::tools::{Tools, tool_title};

/// Rows that keep their identity across refreshes (for single-row updates).
pub trait Row: PartialEq + Clone {
    fn id(&self) -> &str;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRow {
    pub id: String,
    pub title: String,
    /// "5 min ago · 12 messages"
    pub subtitle: String,
    /// Empty when the asset has no image yet.
    pub thumb_key: String,
}

impl Row for AssetRow {
    fn id(&self) -> &str {
        &self.id
    }
}

/// Whether `title` matches a search: every word of `query` appears in it,
/// ignoring case.
pub fn matches(title: &str, query: &str) -> bool {
    let title = title.to_lowercase();
    query
        .split_whitespace()
        .all(|word| title.contains(&word.to_lowercase()))
}

/// The asset list for `query`, newest first as the store lists them.
pub fn asset_rows(
    listings: &[AssetListing],
    query: &str,
    now: Millis,
    offset: UtcOffset,
) -> Vec<AssetRow> {
    listings
        .iter()
        .filter(|l| matches(&l.title, query))
        .map(|l| AssetRow {
            id: l.id.as_str().to_owned(),
            title: if l.title.is_empty() {
                "Untitled".into()
            } else {
                l.title.clone()
            },
            subtitle: format!(
                "{} · {} message{}",
                format::age(l.updated_at, now, offset),
                l.message_count,
                if l.message_count == 1 { "" } else { "s" }
            ),
            thumb_key: l
                .cover_sha256
                .as_deref()
                .map(|sha| ImageKey::new(sha, ImageSize::Small).to_string())
                .unwrap_or_default(),
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    pub id: String,
    /// "user", "request" or "system" (results are shown on their request).
    pub kind: &'static str,
    pub text: String,
    pub meta: String,
    pub status: &'static str,
    pub status_label: String,
    /// 0..1 while running, -1 when unknown.
    pub progress: f32,
    pub error: String,
    pub can_retry: bool,
    /// Queued or running: the card offers Cancel.
    pub can_cancel: bool,
    pub cost: String,
    pub time: String,
    pub image_key: String,
    /// Height over width of the image (0 when unknown).
    pub image_aspect: f32,
}

impl Row for MessageRow {
    fn id(&self) -> &str {
        &self.id
    }
}

/// Everything message rows are computed from, besides the messages.
pub struct TimelineContext<'a> {
    pub versions: &'a HashMap<String, VersionView>,
    /// Nano-dollars spent per message id.
    pub costs: &'a HashMap<String, i64>,
    pub tools: &'a Tools,
    pub now: Millis,
    pub offset: UtcOffset,
}

/// Nano-dollars per message id.
pub fn costs_by_message(events: &[CostEventView]) -> HashMap<String, i64> {
    let mut out = HashMap::new();
    for e in events {
        if let Some(m) = &e.message_id {
            *out.entry(m.clone()).or_insert(0) += e.cost_nano_usd;
        }
    }
    out
}

pub fn message_row(m: &MessageView, cx: &TimelineContext<'_>) -> MessageRow {
    let kind = match m.kind {
        MessageKind::User => "user",
        MessageKind::ToolRequest | MessageKind::Result => "request",
        MessageKind::System => "system",
    };
    let status = m.status.map(|s| s.as_str()).unwrap_or("");
    let progress = m.progress.map(|p| p.clamp(0.0, 1.0) as f32).unwrap_or(-1.0);
    let status_label = match m.status {
        Some(MessageStatus::Queued) => "Queued".to_owned(),
        Some(MessageStatus::Running) if progress >= 0.0 => {
            format!("Running {:.0}%", progress * 100.0)
        }
        Some(MessageStatus::Running) => "Running".to_owned(),
        Some(MessageStatus::Succeeded) => "Done".to_owned(),
        Some(MessageStatus::Failed) => "Failed".to_owned(),
        Some(MessageStatus::Canceled) => "Canceled".to_owned(),
        None => String::new(),
    };
    let mut meta = Vec::new();
    if let Some(tool) = &m.tool {
        meta.push(tool_title(tool));
    }
    if let Some(model) = m.model.as_deref().filter(|s| !s.is_empty()) {
        meta.push(cx.tools.model_label(model));
    }
    if let Some(p) = &m.params {
        if let Some(a) = p.get("aspectRatio").and_then(|v| v.as_str()) {
            meta.push(a.to_owned());
        }
        if let Some(s) = p.get("scale").and_then(|v| v.as_u64()) {
            meta.push(format!("{s}×"));
        }
    }
    // A result card shows its (last) output; a system note about a version
    // (a rollback) shows none.
    let output = m
        .output_version_ids
        .last()
        .and_then(|id| cx.versions.get(id))
        .filter(|_| kind == "request");
    let (image_key, image_aspect) = match output {
        Some(v) => (
            ImageKey::new(&v.blob.sha256, ImageSize::Large).to_string(),
            if v.blob.width > 0 && v.blob.height > 0 {
                v.blob.height as f32 / v.blob.width as f32
            } else {
                0.0
            },
        ),
        None => (String::new(), 0.0),
    };
    MessageRow {
        id: m.id.clone(),
        kind,
        text: m.text.clone().unwrap_or_default(),
        meta: meta.join(" · "),
        status,
        status_label,
        progress,
        error: m
            .error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default(),
        can_retry: kind == "request"
            && matches!(
                m.status,
                Some(MessageStatus::Failed | MessageStatus::Canceled)
            ),
        can_cancel: kind == "request"
            && matches!(
                m.status,
                Some(MessageStatus::Queued | MessageStatus::Running)
            ),
        cost: cx
            .costs
            .get(&m.id)
            .map(|n| format::usd(*n))
            .unwrap_or_default(),
        time: format::clock(m.created_at, cx.now, cx.offset),
        image_key,
        image_aspect,
    }
}

/// A timeline entry the model cannot read (another client wrote it against
/// the schema): a system-style row saying why, where the entry stands.
pub fn unreadable_row(u: &Unreadable) -> MessageRow {
    MessageRow {
        id: u
            .id
            .clone()
            .unwrap_or_else(|| format!("unreadable-{}", u.place)),
        kind: "system",
        text: format!("This entry cannot be read: {}", u.reason),
        meta: String::new(),
        status: "",
        status_label: String::new(),
        progress: -1.0,
        error: String::new(),
        can_retry: false,
        can_cancel: false,
        cost: String::new(),
        time: "kept as it is".into(),
        image_key: String::new(),
        image_aspect: 0.0,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub id: String,
    /// "v3"
    pub label: String,
    /// "Upscale · 14:03"
    pub detail: String,
    pub thumb_key: String,
    pub active: bool,
}

impl Row for VersionRow {
    fn id(&self) -> &str {
        &self.id
    }
}

/// The inspector of the open asset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InspectorVm {
    pub size: String,
    pub dimensions: String,
    pub created: String,
    pub cost: String,
    /// The active image, large.
    pub preview_key: String,
    /// Newest first.
    pub versions: Vec<VersionRow>,
}

pub fn inspector(
    summary: &AssetSummary,
    versions: &[VersionView],
    messages: &HashMap<String, MessageView>,
    costs: &[CostEventView],
    now: Millis,
    offset: UtcOffset,
) -> InspectorVm {
    let active = summary.active_version_id.as_deref();
    let active_version = active.and_then(|id| versions.iter().find(|v| v.id == id));
    let rows = versions
        .iter()
        .enumerate()
        .rev()
        .map(|(i, v)| {
            let made_by = v
                .created_by_message_id
                .as_ref()
                .and_then(|m| messages.get(m))
                .and_then(|m| m.tool.as_deref())
                .map(tool_title)
                .unwrap_or_else(|| "Upload".into());
            let thumb = v.thumbnail.as_ref().unwrap_or(&v.blob);
            VersionRow {
                id: v.id.clone(),
                label: format!("v{}", i + 1),
                detail: format!(
                    "{made_by} · {} · {}",
                    format::dimensions(v.blob.width, v.blob.height),
                    format::clock(v.created_at, now, offset)
                ),
                thumb_key: ImageKey::new(&thumb.sha256, ImageSize::Small).to_string(),
                active: Some(v.id.as_str()) == active,
            }
        })
        .collect();
    InspectorVm {
        size: active_version
            .map(|v| format::bytes(v.blob.bytes))
            .unwrap_or_else(|| "—".into()),
        dimensions: active_version
            .map(|v| format::dimensions(v.blob.width, v.blob.height))
            .unwrap_or_else(|| "—".into()),
        created: format::clock(summary.created_at, now, offset),
        cost: format::usd(costs.iter().map(|c| c.cost_nano_usd).sum()),
        preview_key: active_version
            .map(|v| ImageKey::new(&v.blob.sha256, ImageSize::Large).to_string())
            .unwrap_or_default(),
        versions: rows,
    }
}

/// The status bar's sync line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncVm {
    /// "off", "offline", "syncing" or "synced".
    pub state: &'static str,
    pub label: String,
    pub detail: String,
}

pub fn sync_vm(status: &SyncStatus, now: Millis, offset: UtcOffset) -> SyncVm {
    // Refused assets are pending too, but not waiting: they are said apart.
    let waiting = status.pending.saturating_sub(status.refused.len());
    let pending = match waiting {
        0 => String::new(),
        1 => "1 asset waiting to upload".into(),
        n => format!("{n} assets waiting to upload"),
    };
    let last = status
        .last_synced_at
        .map(|t| format!("last synced {}", format::clock(t, now, offset)));
    let (state, label) = match status.state {
        SyncState::Offline => ("offline", "Offline"),
        SyncState::Syncing => ("syncing", "Syncing…"),
        SyncState::Synced => ("synced", "Synced"),
    };
    let mut detail: Vec<String> = Vec::new();
    if status.state == SyncState::Offline
        && let Some(e) = &status.last_error
    {
        detail.push(format!("{e} — retrying"));
    }
    if !pending.is_empty() {
        detail.push(pending);
    }
    match status.refused.values().next() {
        None => {}
        Some(reason) if status.refused.len() == 1 => {
            detail.push(format!("1 asset refused by the server: {reason}"));
        }
        Some(reason) => detail.push(format!(
            "{} assets refused by the server (first: {reason})",
            status.refused.len()
        )),
    }
    if let Some(l) = last {
        detail.push(l);
    }
    SyncVm {
        state,
        label: label.into(),
        detail: detail.join(" · "),
    }
}

/// The sync line when the app does not sync at all.
pub fn sync_off(reason: &str) -> SyncVm {
    SyncVm {
        state: "off",
        label: "Not syncing".into(),
        detail: reason.to_owned(),
    }
}

/// The sign-in part of the status bar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionVm {
    /// "Sign in…" is offered (the server needs it).
    pub offer_sign_in: bool,
    /// The sign-in opens the browser (else a token sheet).
    pub browser: bool,
    /// "Waiting for the browser…" while a sign-in is under way.
    pub waiting: bool,
    /// "alice@example.com" when signed in.
    pub user: String,
    pub can_sign_out: bool,
    /// Syncing is paused by the user (Go online offered).
    pub paused: bool,
    pub syncs: bool,
}

/// One side of the compare view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompareSide {
    pub version_id: String,
    /// "v2 · Edit · 1024 × 768"
    pub label: String,
    /// The image, large.
    pub key: String,
}

/// Two versions of the open asset, the older on the left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompareVm {
    pub left: CompareSide,
    pub right: CompareSide,
}

/// The question an arriving image (drop, paste) asks while an asset is open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncomingVm {
    /// "harbour.jpg (800 × 600)" or "3 images".
    pub what: String,
    /// The open asset's title.
    pub asset: String,
}

/// How a list changed: the least a view must do to show the new rows.
#[derive(Debug, Clone, PartialEq)]
pub enum RowsDiff<T> {
    /// Row `i` changed (identity kept), plus rows appended at the end.
    Patch {
        changed: Vec<(usize, T)>,
        appended: Vec<T>,
    },
    /// Rows were inserted, removed or reordered: replace the list.
    Replace(Vec<T>),
}

impl<T> RowsDiff<T> {
    pub fn is_empty(&self) -> bool {
        matches!(self, RowsDiff::Patch { changed, appended } if changed.is_empty() && appended.is_empty())
    }
}

/// Compares `old` with `new`: when `new` is `old` with some rows changed in
/// place and some appended, only those; otherwise a replacement.
pub fn diff_rows<T: Row>(old: &[T], new: &[T]) -> RowsDiff<T> {
    if new.len() < old.len() || old.iter().zip(new).any(|(a, b)| a.id() != b.id()) {
        return RowsDiff::Replace(new.to_vec());
    }
    let changed = old
        .iter()
        .zip(new)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (_, b))| (i, b.clone()))
        .collect();
    RowsDiff::Patch {
        changed,
        appended: new[old.len()..].to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloud_lambda::registry::{BUILTIN, Registry};
    use core_sync::ids::DocId;
    use core_sync::model::{BlobRef, ErrorInfo};

    use crate::tools::Keys;

    const NOW: Millis = 1_795_608_000_000;

    fn listing(title: &str, cover: Option<&str>, messages: u64) -> AssetListing {
        AssetListing {
            id: DocId::random(),
            title: title.into(),
            cover_sha256: cover.map(str::to_owned),
            created_at: NOW - 3_600_000,
            updated_at: NOW - 120_000,
            message_count: messages,
        }
    }

    fn msg(id: &str, kind: MessageKind) -> MessageView {
        MessageView {
            id: id.into(),
            kind,
            text: Some("make it warmer".into()),
            tool: None,
            provider: None,
            model: None,
            params: None,
            input_version_ids: vec![],
            output_version_ids: vec![],
            status: None,
            progress: None,
            error: None,
            operation_id: None,
            created_at: NOW - 60_000,
            updated_at: NOW - 60_000,
        }
    }

    fn version(id: &str, sha: &str, w: u32, h: u32) -> VersionView {
        VersionView {
            id: id.into(),
            parent_version_id: None,
            created_by_message_id: None,
            blob: BlobRef {
                sha256: sha.into(),
                mime: "image/png".into(),
                width: w,
                height: h,
                bytes: 2_400_000,
            },
            thumbnail: None,
            created_at: NOW - 60_000,
        }
    }

    #[test]
    fn an_unreadable_entry_is_a_system_row_with_its_reason() {
        use core_sync::model::Place;
        let u = Unreadable {
            place: Place::Message { index: 4 },
            id: None,
            reason: "kind is missing".into(),
        };
        let row = unreadable_row(&u);
        assert_eq!(row.kind, "system");
        assert_eq!(row.text, "This entry cannot be read: kind is missing");
        assert_eq!(row.id, "unreadable-timeline entry 5");
        assert!(!row.can_retry);
        let named = unreadable_row(&Unreadable {
            id: Some("m1".into()),
            ..u
        });
        assert_eq!(named.id, "m1");
    }

    fn context<'a>(
        versions: &'a HashMap<String, VersionView>,
        costs: &'a HashMap<String, i64>,
        tools: &'a Tools,
    ) -> TimelineContext<'a> {
        TimelineContext {
            versions,
            costs,
            tools,
            now: NOW,
            offset: UtcOffset::UTC,
        }
    }

    #[test]
    fn search_matches_every_word_ignoring_case() {
        assert!(matches("Lighthouse at Dusk", "dusk light"));
        assert!(matches("anything", "  "));
        assert!(!matches("Lighthouse", "dawn"));
        let l = vec![listing("Lighthouse", Some("ab"), 1), listing("", None, 3)];
        let rows = asset_rows(&l, "", NOW, UtcOffset::UTC);
        assert_eq!(rows[0].subtitle, "2 min ago · 1 message");
        assert_eq!(rows[0].thumb_key, "ab@s");
        assert_eq!(rows[1].title, "Untitled");
        assert_eq!(rows[1].thumb_key, "");
        assert_eq!(asset_rows(&l, "LIGHT", NOW, UtcOffset::UTC).len(), 1);
    }

    #[test]
    fn a_failed_request_shows_its_reason_cost_and_retry() {
        let tools = Tools::new(Registry::parse(BUILTIN).unwrap(), Keys::Remote);
        let mut m = msg("m1", MessageKind::ToolRequest);
        m.tool = Some("edit".into());
        m.model = Some("gemini-3.1-flash-image".into());
        m.params = Some(serde_json::json!({"aspectRatio": "16:9"}));
        m.status = Some(MessageStatus::Failed);
        m.error = Some(ErrorInfo {
            code: "safety_block".into(),
            message: "The provider refused the prompt.".into(),
        });
        let versions = HashMap::new();
        let costs = HashMap::from([("m1".to_owned(), 39_000_000)]);
        let row = message_row(&m, &context(&versions, &costs, &tools));
        assert_eq!(row.kind, "request");
        assert_eq!(
            row.meta,
            "Edit · Gemini 3.1 Flash Image (Nano Banana 2) · 16:9"
        );
        assert_eq!(row.status_label, "Failed");
        assert_eq!(row.error, "The provider refused the prompt.");
        assert!(row.can_retry);
        assert_eq!(row.cost, "$0.0390");
        assert_eq!(row.time, "11:59");
    }

    #[test]
    fn a_running_request_shows_progress_and_a_result_its_image() {
        let tools = Tools::new(Registry::parse(BUILTIN).unwrap(), Keys::Remote);
        let mut m = msg("m1", MessageKind::ToolRequest);
        m.tool = Some("upscale".into());
        m.status = Some(MessageStatus::Running);
        m.progress = Some(0.4);
        let versions = HashMap::from([("v2".to_owned(), version("v2", "cd", 400, 300))]);
        let costs = HashMap::new();
        let cx = context(&versions, &costs, &tools);
        let row = message_row(&m, &cx);
        assert_eq!(row.status_label, "Running 40%");
        assert!((row.progress - 0.4).abs() < 1e-6);
        assert!(!row.can_retry);
        assert_eq!(row.image_key, "");
        m.status = Some(MessageStatus::Succeeded);
        m.output_version_ids = vec!["v2".into()];
        let row = message_row(&m, &cx);
        assert_eq!(row.status_label, "Done");
        assert_eq!(row.image_key, "cd@l");
        assert!((row.image_aspect - 0.75).abs() < 1e-6);
        // A rollback note names a version but shows no image.
        let mut s = msg("m2", MessageKind::System);
        s.output_version_ids = vec!["v2".into()];
        assert_eq!(message_row(&s, &cx).image_key, "");
    }

    #[test]
    fn inspector_lists_versions_newest_first_with_the_active_badge() {
        let summary = AssetSummary {
            title: "t".into(),
            created_at: NOW - 7_200_000,
            updated_at: NOW,
            active_version_id: Some("v1".into()),
            cover: None,
            message_count: 2,
            schema_version: 1,
            deleted: None,
        };
        let versions = vec![
            version("v1", "aa", 1024, 768),
            version("v2", "bb", 4096, 3072),
        ];
        let costs = vec![CostEventView {
            id: "c".into(),
            ts: NOW,
            provider: "replicate".into(),
            model: "m".into(),
            units: 1.0,
            unit: "s".into(),
            cost_nano_usd: 1_250_000,
            message_id: None,
        }];
        let vm = inspector(
            &summary,
            &versions,
            &HashMap::new(),
            &costs,
            NOW,
            UtcOffset::UTC,
        );
        assert_eq!(vm.versions[0].label, "v2");
        assert!(!vm.versions[0].active);
        assert!(vm.versions[1].active);
        assert_eq!(vm.dimensions, "1024 × 768");
        assert_eq!(vm.size, "2.4 MB");
        assert_eq!(vm.cost, "$0.0013");
        assert_eq!(vm.preview_key, "aa@l");
        assert_eq!(vm.versions[1].thumb_key, "aa@s");
    }

    #[test]
    fn sync_line_says_what_is_going_on() {
        let mut s = SyncStatus {
            state: SyncState::Synced,
            pending: 0,
            last_synced_at: Some(NOW),
            last_error: None,
            refused: Default::default(),
        };
        let vm = sync_vm(&s, NOW, UtcOffset::UTC);
        assert_eq!((vm.state, vm.label.as_str()), ("synced", "Synced"));
        assert_eq!(vm.detail, "last synced 12:00");
        s.state = SyncState::Offline;
        s.pending = 2;
        s.last_error = Some("cannot reach the sync server".into());
        let vm = sync_vm(&s, NOW, UtcOffset::UTC);
        assert_eq!(vm.state, "offline");
        assert_eq!(
            vm.detail,
            "cannot reach the sync server — retrying · 2 assets waiting to upload · last synced 12:00"
        );
        s.state = SyncState::Synced;
        s.refused.insert(
            core_sync::DocId::random(),
            "413: request body is larger than 16777216 bytes".into(),
        );
        let vm = sync_vm(&s, NOW, UtcOffset::UTC);
        assert_eq!(
            vm.detail,
            "1 asset waiting to upload · 1 asset refused by the server: 413: request body is larger than 16777216 bytes · last synced 12:00"
        );
    }

    #[derive(Debug, Clone, PartialEq)]
    struct R(&'static str, u32);
    impl Row for R {
        fn id(&self) -> &str {
            self.0
        }
    }

    #[test]
    fn diffs_are_single_row_updates_and_appends_when_possible() {
        let old = vec![R("a", 1), R("b", 1)];
        assert!(diff_rows(&old, &old.clone()).is_empty());
        assert_eq!(
            diff_rows(&old, &[R("a", 1), R("b", 2), R("c", 1)]),
            RowsDiff::Patch {
                changed: vec![(1, R("b", 2))],
                appended: vec![R("c", 1)]
            }
        );
        assert!(matches!(
            diff_rows(&old, &[R("b", 1), R("a", 1)]),
            RowsDiff::Replace(_)
        ));
        assert!(matches!(
            diff_rows(&old, &[R("a", 1)]),
            RowsDiff::Replace(_)
        ));
    }
}
