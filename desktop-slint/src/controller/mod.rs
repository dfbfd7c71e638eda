//! The controller: the app's state and behaviour as one task on the tokio
//! runtime, never on the UI thread. It turns [`UiEvent`]s, sync-link events
//! and finished background work into [`ViewUpdate`]s for a [`View`], and
//! knows nothing of Slint or of how the backend is built: the store, the
//! sync link, dialogs and the clipboard are the traits in [`ports`].
//!
//! One file per concern: [`assets`] (the list), [`timeline`] (the open
//! asset), [`decoder`] (images), [`imports`] and [`exports`] (images in and
//! out), [`costbook`] (the dashboard's costs), `work` (what runs off the
//! controller's task and the message it sends back); this file wires them
//! to events. None of them imports this file. Every edit is saved to the
//! store before the view shows it, then sync is nudged.

pub mod assets;
pub mod costbook;
pub mod decoder;
pub mod error;
pub mod exports;
pub mod imports;
pub use crate::ports;
pub mod protocol;
pub mod timeline;
pub mod trash;
pub mod workbench;

mod actions;
mod config;
mod costs_view;
mod session;
mod work;

use std::sync::Arc;
use std::time::Duration;

use cloud_lambda::registry::Tool;
use core_sync::now_millis;
use core_sync::sync::client::SyncEvent;
use tokio::sync::mpsc;

use crate::format;
use crate::palette::Palette;
use crate::settings::{Settings, SettingsForm};
use crate::tools::{TOOLS, Tools};
use crate::viewmodel;
pub use config::ControllerConfig;
use costs_view::CostsView;
use decoder::{Decoder, Want};
pub use error::{ControllerError, Result};
pub use ports::{
    AssetStore, Browser, Clipboard, ClipboardContent, FilePicker, LinkEvent, Picked, SaveDialog,
    SessionState, SyncLink,
};
pub use protocol::{RowRefs, Screen, UiCommand, UiEvent, View, ViewUpdate};
use session::SessionView;
use work::{Background, NO_DIALOG, Work};
use workbench::Workbench;

pub struct Controller {
    bench: Workbench,
    view: Arc<dyn View>,
    config: ControllerConfig,
    decoder: Decoder,
    costs: CostsView,
    palette: Palette,
    session: SessionView,
    background: Background,
    work_rx: Option<mpsc::UnboundedReceiver<Work>>,
}

impl Controller {
    pub fn new(
        store: Arc<dyn AssetStore>,
        tools: Tools,
        view: Arc<dyn View>,
        config: ControllerConfig,
    ) -> Self {
        let (work_tx, work_rx) = mpsc::unbounded_channel();
        let mut bench = Workbench::new(store, tools, view.clone());
        bench.trash.retention_days = config.trash_retention_days;
        let background = Background::new(
            work_tx,
            config.picker.clone(),
            config.saver.clone(),
            config.clipboard.clone(),
            config.max_import_bytes,
        );
        Controller {
            bench,
            view,
            decoder: Decoder::new(config.image_budget_bytes, config.decode_parallelism),
            config,
            costs: CostsView::default(),
            palette: Palette::default(),
            session: SessionView::default(),
            background,
            work_rx: Some(work_rx),
        }
    }

    /// Shows the first state, then handles events until [`UiEvent::Shutdown`]
    /// or until the UI's sender is gone.
    pub async fn run(
        mut self,
        mut ui: mpsc::UnboundedReceiver<UiEvent>,
        link: Arc<dyn SyncLink>,
        mut link_events: mpsc::UnboundedReceiver<LinkEvent>,
    ) {
        let mut work = self.work_rx.take().expect("run is called once");
        self.bench.link = Some(link);
        self.start().await;
        let mut minute = tokio::time::interval(Duration::from_secs(60));
        minute.tick().await;
        loop {
            tokio::select! {
                ev = ui.recv() => match ev {
                    None | Some(UiEvent::Shutdown) => break,
                    Some(ev) => self.handle(ev).await,
                },
                Some(ev) = link_events.recv() => self.on_link(ev).await,
                Some(w) = work.recv() => {
                    self.on_work(w).await;
                    self.follow_screen();
                }
                _ = minute.tick() => {
                    // "5 min ago" moves on.
                    let updates = self.bench.refresh_list().await;
                    self.view.apply(updates);
                }
            }
        }
        tracing::debug!("controller stopped");
    }

    /// The first screen: the asset list, the composer, nothing open.
    pub async fn start(&mut self) {
        let mut updates = self.bench.refresh_list().await;
        updates.push(ViewUpdate::NoAsset);
        updates.push(self.bench.composer_update());
        if let Some(data) = &self.config.data {
            let form = match Settings::load(data) {
                Ok(s) => SettingsForm::of(&s),
                Err(e) => {
                    updates.push(ViewUpdate::Notice(format!("{e}; using the defaults")));
                    SettingsForm::default()
                }
            };
            updates.push(ViewUpdate::Settings(form));
        }
        self.view.apply(updates);
        if let Some(id) = self.config.open_at_start.take()
            && let Err(e) = self.bench.select(&id).await
        {
            self.view.apply(vec![ViewUpdate::Notice(e.to_string())]);
        }
    }

    /// Handles one user event.
    pub async fn handle(&mut self, ev: UiEvent) {
        if let Err(e) = self.dispatch(ev).await {
            tracing::warn!(error = %e, "user action failed");
            self.view.apply(vec![ViewUpdate::Notice(e.to_string())]);
        }
        self.follow_screen();
    }

    /// An asset opened: the dashboard gave way to it.
    fn follow_screen(&mut self) {
        if self.bench.take_opened() {
            self.costs.shown = false;
        }
    }

    async fn dispatch(&mut self, ev: UiEvent) -> Result<()> {
        match ev {
            UiEvent::Search(q) => {
                self.bench.assets.set_query(q);
                let u = self.bench.list_updates();
                self.view.apply(u);
            }
            UiEvent::SelectAsset(id) => self.bench.select(&id).await?,
            UiEvent::StepAsset(step) => {
                let current = self.bench.open.as_ref().map(|o| o.asset.id.to_string());
                if let Some(id) = self.bench.assets.step(current.as_deref(), step) {
                    self.bench.select(&id).await?;
                }
            }
            UiEvent::PickFile => self.pick_file(),
            UiEvent::ImportFile(path) => {
                let img = imports::read_file(&path, self.config.max_import_bytes).await?;
                self.bench.create_asset(&img).await?;
            }
            UiEvent::Dropped(paths) => self.background.read_files(paths, true),
            UiEvent::Paste { explicit } => self.background.paste(explicit),
            UiEvent::IncomingAs(as_version) => self.bench.take_incoming(as_version).await?,
            UiEvent::IncomingCancel => {
                self.bench.drop_incoming();
                self.view.apply(vec![ViewUpdate::Incoming(None)]);
            }
            UiEvent::NewFromPrompt {
                prompt,
                model_index,
                aspect,
            } => {
                self.bench
                    .new_from_prompt(&prompt, model_index, &aspect)
                    .await?
            }
            UiEvent::ToolChanged(i) => {
                self.bench.tool = TOOLS.get(i).copied().unwrap_or(Tool::Edit);
                self.bench.model_index = 0;
                let u = self.bench.composer_update();
                self.view.apply(vec![u]);
            }
            UiEvent::ModelChanged(i) => {
                self.bench.model_index = i;
                let u = self.bench.composer_update();
                self.view.apply(vec![u]);
            }
            UiEvent::Send {
                prompt,
                aspect,
                scale,
            } => self.bench.send(prompt, aspect, scale).await?,
            UiEvent::Rollback(version) => self.bench.rollback(&version).await?,
            UiEvent::RollbackPrevious => {
                let prev = self
                    .bench
                    .open
                    .as_ref()
                    .ok_or(ControllerError::NoAsset)?
                    .previous_version()
                    .map(|v| v.id.clone())
                    .ok_or_else(|| {
                        ControllerError::Refused("there is no earlier version".into())
                    })?;
                self.bench.rollback(&prev).await?;
            }
            UiEvent::Retry(message) => self.bench.retry(&message).await?,
            UiEvent::Cancel(message) => self.bench.cancel(&message).await?,
            UiEvent::LoadEarlier => self.bench.load_earlier()?,
            UiEvent::SaveImage(v) => self.save_image(v.as_deref())?,
            UiEvent::CopyImage(v) => self.copy_image(v.as_deref())?,
            UiEvent::Compare(v) => self.show_compare(v.as_deref())?,
            UiEvent::CloseCompare => {
                self.bench.compare = None;
                self.view.apply(vec![ViewUpdate::Compare(None)]);
            }
            UiEvent::ShowDashboard(show) => self.show_dashboard(show),
            UiEvent::DashboardFilter(form) => {
                if let Some(u) = self.costs.set_filter(form) {
                    self.view.apply(vec![u]);
                }
            }
            UiEvent::ExportCsv => self.export_csv(),
            UiEvent::PaletteQuery(q) => self.palette_query(&q),
            UiEvent::PaletteRun(i) => {
                if let Some(action) = self.palette.pick(i) {
                    Box::pin(self.run_action(action)).await?;
                }
            }
            UiEvent::SignIn(token) => {
                if let Some(l) = self.bench.link.clone() {
                    l.sign_in_token(token).await;
                }
            }
            UiEvent::SignInBrowser => {
                if let Some(l) = self.bench.link.clone() {
                    l.sign_in_browser().await;
                }
            }
            UiEvent::SignOut => {
                if let Some(l) = self.bench.link.clone() {
                    l.sign_out().await;
                }
            }
            UiEvent::GoOffline => {
                if let Some(l) = self.bench.link.clone() {
                    l.pause().await;
                }
            }
            UiEvent::GoOnline => {
                if let Some(l) = self.bench.link.clone() {
                    l.resume().await;
                }
            }
            UiEvent::SaveSettings(form) => self.save_settings(form).await?,
            UiEvent::NeedImage(key) => self.need_image(key),
            UiEvent::DismissNotice => self.view.apply(vec![
                ViewUpdate::Notice(String::new()),
                ViewUpdate::Info(String::new()),
            ]),
            UiEvent::Rename { id, title } => self.bench.rename(&id, &title).await?,
            UiEvent::Delete(id) => self.bench.delete(id.as_deref()).await?,
            UiEvent::Undo => self.bench.undo().await?,
            UiEvent::DismissUndo => {
                self.bench.trash.undo = None;
                self.view.apply(vec![ViewUpdate::Undo(None)]);
            }
            UiEvent::ShowTrash(open) => self.bench.show_trash(open).await,
            UiEvent::Restore(id) => self.bench.restore(&id).await?,
            UiEvent::Shutdown => {}
        }
        Ok(())
    }

    // ------------------------------------------------------------ new assets

    /// Opens the file dialog; the answer comes back as [`Work::Picked`].
    fn pick_file(&self) {
        self.view.apply(vec![ViewUpdate::Picking(true)]);
        self.background.pick_file();
    }

    // ------------------------------------------------------------ images out

    fn show_compare(&mut self, version: Option<&str>) -> Result<()> {
        let vm = self.bench.compare(version)?;
        let keys = [vm.left.key.clone(), vm.right.key.clone()];
        self.view.apply(vec![ViewUpdate::Compare(Some(vm))]);
        for k in keys {
            self.need_image(k);
        }
        Ok(())
    }

    fn save_image(&mut self, version: Option<&str>) -> Result<()> {
        let (open, i, v) = self.bench.version_of(version)?;
        let name = exports::suggested_name(&open.title, &format!("v{}", i + 1), &v.blob.mime);
        let (sha, mime) = (v.blob.sha256.clone(), v.blob.mime.clone());
        self.view.apply(vec![ViewUpdate::Picking(true)]);
        self.background
            .save_image(self.bench.store.blobs(), sha, mime, &name);
        Ok(())
    }

    fn copy_image(&mut self, version: Option<&str>) -> Result<()> {
        let (open, i, v) = self.bench.version_of(version)?;
        let label = format!("v{} of {}", i + 1, open.title);
        let sha = v.blob.sha256.clone();
        self.background
            .copy_image(self.bench.store.blobs(), sha, label);
        Ok(())
    }

    // ------------------------------------------------------------ dashboard

    fn show_dashboard(&mut self, show: bool) {
        self.costs.shown = show;
        let screen = if show {
            Screen::Dashboard
        } else {
            Screen::Asset
        };
        let mut updates = vec![ViewUpdate::Screen(screen)];
        updates.extend(self.costs.update());
        self.view.apply(updates);
        if show {
            self.read_costs();
        }
    }

    /// Reads the costs of assets changed since they were last read (in the
    /// background); an export waiting for them goes once they are.
    fn read_costs(&mut self) {
        let Some(stale) = self.costs.start_read(self.bench.assets.listings()) else {
            if self.costs.export_due() {
                self.export_csv();
            }
            return;
        };
        self.background.read_costs(self.bench.store.clone(), stale);
    }

    fn export_csv(&mut self) {
        if !self.costs.ready_to_export() {
            // Export what the dashboard shows, once it has read the costs.
            self.show_dashboard(true);
            return;
        }
        self.view.apply(vec![ViewUpdate::Picking(true)]);
        self.background.export_dialog(&self.costs.export_name());
    }

    // ------------------------------------------------------------ palette

    fn palette_query(&mut self, query: &str) {
        if query.is_empty() || self.palette.is_empty() {
            let screen = if self.costs.shown {
                Screen::Dashboard
            } else {
                Screen::Asset
            };
            let items = actions::palette_items(
                self.bench.assets.listings(),
                self.bench.open.as_ref(),
                self.session.state(),
                screen,
            );
            self.palette.set_items(items);
        }
        let rows = self.palette.search(query);
        self.view.apply(vec![ViewUpdate::Palette(rows)]);
    }

    /// Runs a palette action.
    async fn run_action(&mut self, action: crate::palette::Action) -> Result<()> {
        for step in actions::plan(action, self.session.browser()) {
            match step {
                actions::Step::Event(e) => Box::pin(self.dispatch(e)).await?,
                actions::Step::Ui(c) => self.view.apply(vec![ViewUpdate::Ui(c)]),
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ settings

    async fn save_settings(&mut self, form: SettingsForm) -> Result<()> {
        let data = self
            .config
            .data
            .clone()
            .ok_or_else(|| ControllerError::Refused("settings are not kept here".into()))?;
        let (settings, form) = form
            .save(&data)
            .map_err(|e| ControllerError::Refused(e.to_string()))?;
        if let Some(l) = self.bench.link.clone() {
            l.apply_settings(&settings).await;
        }
        self.view.apply(vec![
            ViewUpdate::Settings(form),
            ViewUpdate::Info("Settings saved.".into()),
        ]);
        Ok(())
    }

    // ------------------------------------------------------------ sync

    async fn on_link(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Sync(SyncEvent::Status(s)) => {
                let u = self
                    .session
                    .on_status(&s, now_millis(), format::local_offset());
                self.view.apply(u);
            }
            LinkEvent::Sync(SyncEvent::Pulled(docs)) => {
                let before: std::collections::HashSet<_> = self
                    .bench
                    .assets
                    .listings()
                    .iter()
                    .map(|l| l.id.clone())
                    .collect();
                let mut updates = self.bench.refresh_list().await;
                updates.extend(self.bench.deleted_elsewhere(&before).await);
                let open_changed = self
                    .bench
                    .open
                    .as_ref()
                    .is_some_and(|o| docs.contains(&o.asset.id));
                if open_changed {
                    updates.extend(self.bench.refresh_open(true).await);
                }
                self.view.apply(updates);
                if self.costs.shown {
                    self.read_costs();
                }
                // Blobs arrive with the documents that use them.
                for key in self.decoder.take_missing() {
                    self.need_image(key);
                }
            }
            LinkEvent::Session(s) => {
                let u = self.session.on_session(s);
                self.view.apply(u);
            }
            LinkEvent::Failed(msg) => self.view.apply(vec![ViewUpdate::Notice(msg)]),
            LinkEvent::NotSyncing(why) => self
                .view
                .apply(vec![ViewUpdate::Sync(viewmodel::sync_off(&why))]),
            LinkEvent::Keys(keys) => {
                self.bench.tools.set_keys(keys);
                let u = self.bench.composer_update();
                self.view.apply(vec![u]);
            }
        }
    }

    // ------------------------------------------------------------ images

    fn need_image(&mut self, key: String) {
        match self.decoder.want(key.clone()) {
            Want::Ready(pixels) => {
                let at = self.bench.refs(&key);
                self.view
                    .apply(vec![ViewUpdate::ImageReady { key, pixels, at }]);
            }
            Want::Later => self.pump_decodes(),
        }
    }

    fn pump_decodes(&mut self) {
        let done = self.background.decoded();
        self.decoder.pump(&self.bench.store.blobs(), done);
    }

    async fn on_work(&mut self, work: Work) {
        match work {
            Work::Decoded { key, result } => {
                let (pixels, evicted) = self.decoder.finished(&key, result);
                let mut updates = Vec::new();
                if let Some(pixels) = pixels {
                    let at = self.bench.refs(&key);
                    updates.push(ViewUpdate::ImageReady { key, pixels, at });
                }
                for k in evicted {
                    let at = self.bench.refs(&k);
                    updates.push(ViewUpdate::ImageDropped { key: k, at });
                }
                if !updates.is_empty() {
                    self.view.apply(updates);
                }
                self.pump_decodes();
            }
            Work::Picked(picked) => {
                match picked {
                    Picked::File(path) => {
                        match imports::read_file(&path, self.config.max_import_bytes).await {
                            Ok(img) => {
                                if let Err(e) = self.bench.create_asset(&img).await {
                                    self.view.apply(vec![ViewUpdate::Notice(e.to_string())]);
                                }
                            }
                            Err(e) => self.view.apply(vec![ViewUpdate::Notice(e.to_string())]),
                        }
                    }
                    Picked::Unavailable => self.view.apply(vec![ViewUpdate::Notice(
                        "No file dialog could open: install xdg-desktop-portal (or zenity), \
                         or create the asset from a prompt."
                            .into(),
                    )]),
                    Picked::Canceled => {}
                }
                // After the import or the notice: a view that sees the
                // dialog closed sees what came of it.
                self.view.apply(vec![ViewUpdate::Picking(false)]);
            }
            Work::Incoming(results, ask) => self.bench.on_incoming(results, ask).await,
            Work::Saved(result) => {
                self.done(result);
                self.view.apply(vec![ViewUpdate::Picking(false)]);
            }
            Work::ExportTo(picked) => {
                let result = match picked {
                    Picked::File(path) => self.costs.write_csv(path),
                    Picked::Unavailable => Err(NO_DIALOG.into()),
                    Picked::Canceled => Ok(String::new()),
                };
                self.done(result);
                self.view.apply(vec![ViewUpdate::Picking(false)]);
            }
            Work::Done(result) => self.done(result),
            Work::CostProgress(n, total) => {
                if let Some(u) = self.costs.progress(n, total) {
                    self.view.apply(vec![u]);
                }
            }
            Work::Costs(read) => {
                let u =
                    self.costs
                        .finish_read(read, self.bench.assets.listings(), &self.bench.tools);
                if let Some(u) = u {
                    self.view.apply(vec![u]);
                }
                // Anything changed meanwhile is read next.
                self.read_costs();
            }
        }
    }

    fn done(&self, result: std::result::Result<String, String>) {
        let u = match result {
            Ok(s) if s.is_empty() => return,
            Ok(s) => ViewUpdate::Info(s),
            Err(e) => ViewUpdate::Notice(e),
        };
        self.view.apply(vec![u]);
    }
}
