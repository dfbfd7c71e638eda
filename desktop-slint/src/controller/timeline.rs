//! The open asset: its document, the page of the timeline the view holds
//! (the newest messages first, earlier pages on request), the inspector,
//! and an index from image keys to the rows showing them. A change re-reads
//! only the messages it touched (`AssetDoc::take_touched`).

use std::collections::HashMap;

use core_sync::model::{
    CostEventView, Entry, MessageKind, MessageView, Millis, ModelResult, Touched, VersionView,
};
use core_sync::store::LocalAsset;
use time::UtcOffset;

use super::protocol::ViewUpdate;
use crate::format;
use crate::images::{ImageKey, ImageSize};
use crate::tools::{Tools, tool_title};
use crate::viewmodel::{self, CompareSide, CompareVm, InspectorVm, MessageRow, TimelineContext};

/// Messages shown when an asset opens (more than a screen holds).
pub const FIRST_PAGE: usize = 40;
/// Messages added per scroll to the top.
pub const PAGE: usize = 120;

/// What rows are computed with.
pub struct Env<'a> {
    pub tools: &'a Tools,
    pub now: Millis,
    pub offset: UtcOffset,
}

pub struct OpenAsset {
    pub asset: LocalAsset,
    pub title: String,
    pub active_version: Option<String>,
    /// Messages in the document.
    total: usize,
    /// Position of the first loaded message.
    first: usize,
    /// The loaded entries (unreadable ones kept where they stand).
    views: Vec<Entry<MessageView>>,
    rows: Vec<MessageRow>,
    /// Every version, oldest first (after [`Self::complete`]).
    versions: Vec<VersionView>,
    version_map: HashMap<String, VersionView>,
    costs: Vec<CostEventView>,
    cost_by_message: HashMap<String, i64>,
    pub inspector: InspectorVm,
    /// Image key → positions in `rows`.
    index: HashMap<String, Vec<usize>>,
}

impl OpenAsset {
    /// Reads what the first screen needs: the title and the newest page of
    /// messages with their costs and result images. Versions and the
    /// inspector follow in [`Self::complete`].
    pub fn open(mut asset: LocalAsset, env: &Env<'_>) -> ModelResult<(OpenAsset, ViewUpdate)> {
        asset.doc.watch_changes();
        let summary = asset.doc.summary()?;
        let total = asset.doc.reader().message_count()? as usize;
        let first = total.saturating_sub(FIRST_PAGE);
        let views = asset.doc.reader().timeline_range(first..total)?;
        let costs = asset.doc.cost_events()?;
        let mut open = OpenAsset {
            title: summary.title,
            active_version: summary.active_version_id,
            total,
            first,
            version_map: HashMap::new(),
            cost_by_message: viewmodel::costs_by_message(&costs),
            costs,
            views,
            rows: Vec::new(),
            versions: Vec::new(),
            inspector: InspectorVm::default(),
            index: HashMap::new(),
            asset,
        };
        // Only the versions the page shows, for now.
        open.learn_versions(0..open.views.len())?;
        open.rows = open.compute_rows(0..open.views.len(), env);
        open.reindex();
        let update = ViewUpdate::Timeline {
            title: open.title.clone(),
            rows: open.rows.clone(),
            earlier: open.first,
        };
        Ok((open, update))
    }

    /// Reads every version and makes the inspector.
    pub fn complete(&mut self, env: &Env<'_>) -> ModelResult<Vec<ViewUpdate>> {
        self.versions = self.asset.doc.versions()?;
        self.version_map = self
            .versions
            .iter()
            .map(|v| (v.id.clone(), v.clone()))
            .collect();
        Ok(self.refresh_inspector(env))
    }

    /// Reads the result versions of the loaded messages `range` that are
    /// not known yet (one lookup each, not the whole version map).
    fn learn_versions(&mut self, range: std::ops::Range<usize>) -> ModelResult<()> {
        for m in self.views[range].iter().filter_map(Entry::as_read) {
            if let Some(v) = m.output_version_ids.last()
                && !self.version_map.contains_key(v)
                && let Some(view) = self.asset.doc.reader().version(v)?
            {
                self.version_map.insert(v.clone(), view);
            }
        }
        Ok(())
    }

    fn compute_rows(&self, range: std::ops::Range<usize>, env: &Env<'_>) -> Vec<MessageRow> {
        let cx = TimelineContext {
            versions: &self.version_map,
            costs: &self.cost_by_message,
            tools: env.tools,
            now: env.now,
            offset: env.offset,
        };
        self.views[range]
            .iter()
            .map(|e| match e {
                Entry::Read(m) => viewmodel::message_row(m, &cx),
                Entry::Unreadable(u) => viewmodel::unreadable_row(u),
            })
            .collect()
    }

    fn reindex(&mut self) {
        self.index.clear();
        for (i, r) in self.rows.iter().enumerate() {
            if !r.image_key.is_empty() {
                self.index.entry(r.image_key.clone()).or_default().push(i);
            }
        }
    }

    fn refresh_inspector(&mut self, env: &Env<'_>) -> Vec<ViewUpdate> {
        let summary = match self.asset.doc.summary() {
            Ok(s) => s,
            Err(_) => return Vec::new(),
        };
        // The tools that made versions (for "Upscale · 14:03").
        let mut makers: HashMap<String, MessageView> = HashMap::new();
        for v in &self.versions {
            if let Some(m) = &v.created_by_message_id
                && let Ok(view) = self.asset.doc.message(m)
                && view.kind == MessageKind::ToolRequest
            {
                makers.insert(m.clone(), view);
            }
        }
        let vm = viewmodel::inspector(
            &summary,
            &self.versions,
            &makers,
            &self.costs,
            env.now,
            env.offset,
        );
        if vm == self.inspector {
            return Vec::new();
        }
        self.inspector = vm.clone();
        vec![ViewUpdate::Inspector(vm)]
    }

    /// Loads the page before the first loaded message.
    pub fn load_earlier(&mut self, env: &Env<'_>) -> ModelResult<Option<ViewUpdate>> {
        if self.first == 0 {
            return Ok(None);
        }
        let start = self.first.saturating_sub(PAGE);
        let earlier = self.asset.doc.reader().timeline_range(start..self.first)?;
        let n = earlier.len();
        self.views.splice(0..0, earlier);
        self.learn_versions(0..n)?;
        let rows = self.compute_rows(0..n, env);
        self.rows.splice(0..0, rows.clone());
        self.first = start;
        self.reindex();
        Ok(Some(ViewUpdate::MessagesPrepended {
            rows,
            earlier: self.first,
        }))
    }

    /// Shows what changed in the document (local edits, or what
    /// `Store::refresh` applied): only touched messages are read again.
    pub fn apply_changes(&mut self, env: &Env<'_>) -> ModelResult<Vec<ViewUpdate>> {
        let touched: Touched = self.asset.doc.take_touched();
        let mut updates = Vec::new();
        if touched.is_empty() {
            return Ok(updates);
        }
        let summary = self.asset.doc.summary()?;
        if touched.title && summary.title != self.title {
            self.title = summary.title.clone();
            updates.push(ViewUpdate::Title(self.title.clone()));
        }
        self.active_version = summary.active_version_id;
        if touched.costs {
            self.costs = self.asset.doc.cost_events()?;
            self.cost_by_message = viewmodel::costs_by_message(&self.costs);
        }
        if touched.versions {
            self.versions = self.asset.doc.versions()?;
            self.version_map = self
                .versions
                .iter()
                .map(|v| (v.id.clone(), v.clone()))
                .collect();
        }
        let new_total = self.asset.doc.reader().message_count()? as usize;
        if touched.reordered || new_total < self.total {
            // Rare (a container replaced): read the loaded window again.
            self.first = self.first.min(new_total);
            self.views = self
                .asset
                .doc
                .reader()
                .timeline_range(self.first..new_total)?;
            self.total = new_total;
            self.rows = self.compute_rows(0..self.views.len(), env);
            self.reindex();
            updates.push(ViewUpdate::Timeline {
                title: self.title.clone(),
                rows: self.rows.clone(),
                earlier: self.first,
            });
            updates.extend(self.refresh_inspector(env));
            return Ok(updates);
        }
        // Re-read the touched messages that are loaded, then the new ones.
        let mut changed: Vec<usize> = Vec::new();
        for &i in touched.messages.range(self.first..self.total) {
            if let Some(m) = self.asset.doc.reader().timeline_range(i..i + 1)?.pop() {
                self.views[i - self.first] = m;
                changed.push(i - self.first);
            }
        }
        if touched.costs || touched.versions {
            // Costs and result images of loaded rows may have changed.
            changed = (0..self.views.len()).collect();
        }
        for local in changed {
            let row = self.compute_rows(local..local + 1, env).remove(0);
            if self.rows[local] != row {
                self.rows[local] = row.clone();
                updates.push(ViewUpdate::MessageRow(local, row));
            }
        }
        if new_total > self.total {
            let added = self
                .asset
                .doc
                .reader()
                .timeline_range(self.total..new_total)?;
            let from = self.views.len();
            self.views.extend(added);
            let rows = self.compute_rows(from..self.views.len(), env);
            self.rows.extend(rows.clone());
            updates.push(ViewUpdate::MessagesAppended(rows));
            self.total = new_total;
        }
        self.reindex();
        if touched.versions || touched.costs || touched.title {
            updates.extend(self.refresh_inspector(env));
        }
        Ok(updates)
    }

    /// Rows (positions in the loaded page) showing `key`.
    pub fn rows_with(&self, key: &str) -> Vec<usize> {
        self.index.get(key).cloned().unwrap_or_default()
    }

    /// Inspector rows showing `key`.
    pub fn versions_with(&self, key: &str) -> Vec<usize> {
        self.inspector
            .versions
            .iter()
            .enumerate()
            .filter(|(_, v)| v.thumb_key == key)
            .map(|(i, _)| i)
            .collect()
    }

    /// A version by id (`None`: the active one).
    pub fn version(&self, id: Option<&str>) -> Option<(usize, &VersionView)> {
        let id = id.or(self.active_version.as_deref())?;
        self.versions.iter().enumerate().find(|(_, v)| v.id == id)
    }

    /// The version before the active one.
    pub fn previous_version(&self) -> Option<&VersionView> {
        let (i, _) = self.version(None)?;
        i.checked_sub(1).map(|p| &self.versions[p])
    }

    /// `other` (or the version before the active one) against the active one.
    pub fn compare(&self, other: Option<&str>) -> Option<CompareVm> {
        let (ai, active) = self.version(None)?;
        let (oi, older) = match other {
            Some(id) => self.version(Some(id))?,
            // The version before the active one, or (the first is active)
            // the newest other one.
            None => match ai.checked_sub(1) {
                Some(p) => (p, &self.versions[p]),
                None if self.versions.len() > 1 => {
                    let last = self.versions.len() - 1;
                    (last, &self.versions[last])
                }
                None => return None,
            },
        };
        let side = |i: usize, v: &VersionView| {
            let made_by = v
                .created_by_message_id
                .as_ref()
                .and_then(|m| {
                    self.views
                        .iter()
                        .filter_map(Entry::as_read)
                        .find(|x| &x.id == m)
                })
                .and_then(|m| m.tool.as_deref())
                .map(tool_title)
                .unwrap_or_else(|| "Upload".into());
            CompareSide {
                version_id: v.id.clone(),
                label: format!(
                    "v{} · {made_by} · {}",
                    i + 1,
                    format::dimensions(v.blob.width, v.blob.height)
                ),
                key: ImageKey::new(&v.blob.sha256, ImageSize::Large).to_string(),
            }
        };
        let (l, r) = if oi <= ai {
            (side(oi, older), side(ai, active))
        } else {
            (side(ai, active), side(oi, older))
        };
        Some(CompareVm { left: l, right: r })
    }

    pub fn message_count(&self) -> usize {
        self.total
    }
}
