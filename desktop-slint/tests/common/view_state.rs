//! The test double of the view: keeps what it is told in plain data, the
//! reference for what a sequence of updates means.

use std::collections::HashMap;
use std::sync::Arc;

use desktop_slint::controller::{Screen, UiCommand, ViewUpdate};
use desktop_slint::dashboard::DashboardVm;
use desktop_slint::images::Pixels;
use desktop_slint::palette::PaletteRow;
use desktop_slint::settings::SettingsForm;
use desktop_slint::tools::ComposerVm;
use desktop_slint::trash::TrashVm;
use desktop_slint::viewmodel::{
    AssetRow, CompareVm, IncomingVm, InspectorVm, MessageRow, SessionVm, SyncVm, VersionRow,
};

#[derive(Debug, Default, Clone)]
pub struct ViewState {
    pub assets: Vec<AssetRow>,
    pub asset_total: usize,
    pub selected: String,
    pub has_asset: bool,
    pub title: String,
    pub messages: Vec<MessageRow>,
    /// Messages not loaded yet, before `messages`.
    pub earlier: usize,
    pub inspector: InspectorVm,
    pub composer: Option<ComposerVm>,
    pub sync: Option<SyncVm>,
    pub server_label: String,
    pub session: SessionVm,
    pub images: HashMap<String, Arc<Pixels>>,
    pub notice: String,
    pub info: String,
    /// Single-row updates received (timeline and list), for tests to
    /// check that changes did not replace whole lists.
    pub row_updates: usize,
    pub full_timelines: usize,
    /// A native dialog is open.
    pub picking: bool,
    /// Native dialogs that have answered.
    pub picks_answered: usize,
    pub incoming: Option<IncomingVm>,
    pub compare: Option<CompareVm>,
    pub screen: Screen,
    pub dashboard: Option<DashboardVm>,
    pub palette: Vec<PaletteRow>,
    pub commands: Vec<UiCommand>,
    pub settings: Option<SettingsForm>,
    pub trash: TrashVm,
    /// The Undo bar's sentence ("" hidden).
    pub undo: String,
}

impl ViewState {
    pub fn apply(&mut self, update: ViewUpdate) {
        match update {
            ViewUpdate::Assets { rows, total } => {
                self.assets = rows;
                self.asset_total = total;
            }
            ViewUpdate::AssetRow(i, r) => {
                self.row_updates += 1;
                if let Some(slot) = self.assets.get_mut(i) {
                    *slot = r;
                }
            }
            ViewUpdate::Selected(id) => self.selected = id,
            ViewUpdate::Timeline {
                title,
                rows,
                earlier,
            } => {
                self.full_timelines += 1;
                self.has_asset = true;
                self.title = title;
                self.messages = rows;
                self.earlier = earlier;
            }
            ViewUpdate::NoAsset => {
                self.has_asset = false;
                self.messages.clear();
                self.inspector = InspectorVm::default();
            }
            ViewUpdate::Title(t) => self.title = t,
            ViewUpdate::MessageRow(i, r) => {
                self.row_updates += 1;
                if let Some(slot) = self.messages.get_mut(i) {
                    *slot = r;
                }
            }
            ViewUpdate::MessagesAppended(rows) => self.messages.extend(rows),
            ViewUpdate::MessagesPrepended { rows, earlier } => {
                self.messages.splice(0..0, rows);
                self.earlier = earlier;
            }
            ViewUpdate::Inspector(vm) => self.inspector = vm,
            ViewUpdate::Composer(vm) => self.composer = Some(vm),
            ViewUpdate::Sync(vm) => self.sync = Some(vm),
            ViewUpdate::ServerLabel(l) => self.server_label = l,
            ViewUpdate::Session(s) => self.session = s,
            ViewUpdate::ImageReady { key, pixels, .. } => {
                self.images.insert(key, pixels);
            }
            ViewUpdate::ImageDropped { key, .. } => {
                self.images.remove(&key);
            }
            ViewUpdate::Notice(n) => self.notice = n,
            ViewUpdate::Info(n) => self.info = n,
            ViewUpdate::Picking(open) => {
                if self.picking && !open {
                    self.picks_answered += 1;
                }
                self.picking = open;
            }
            ViewUpdate::Incoming(q) => self.incoming = q,
            ViewUpdate::Compare(c) => self.compare = c,
            ViewUpdate::Screen(s) => self.screen = s,
            ViewUpdate::Dashboard(d) => self.dashboard = Some(*d),
            ViewUpdate::Palette(rows) => self.palette = rows,
            ViewUpdate::Ui(c) => self.commands.push(c),
            ViewUpdate::Settings(f) => self.settings = Some(f),
            ViewUpdate::Trash(t) => self.trash = t,
            ViewUpdate::Undo(u) => self.undo = u.unwrap_or_default(),
        }
    }

    pub fn versions(&self) -> &[VersionRow] {
        &self.inspector.versions
    }
}
