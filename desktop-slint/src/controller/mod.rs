//! The controller: the app's state and behaviour as one task on the tokio
//! runtime, never on the UI thread. It turns [`UiEvent`]s, sync-link events
//! and finished background work into [`ViewUpdate`]s for a [`View`], and
//! knows nothing of Slint or of how the backend is built: the store, the
//! sync link, dialogs and the clipboard are the traits in [`ports`].
//!
//! One file per concern: [`assets`] (the list), [`timeline`] (the open
//! asset), [`decoder`] (images), [`imports`] and [`exports`] (images in and
//! out), [`costbook`] (the dashboard's costs); this file wires them to
//! events. None of them imports this file. Every edit is saved to the
//! store before the view shows it, then sync is nudged.

pub mod assets;
pub mod costbook;
pub mod decoder;
pub mod error;
pub mod exports;
pub mod imports;
pub mod ports;
pub mod protocol;
pub mod timeline;

mod actions;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cloud_lambda::registry::Tool;
use core_sync::ids::DocId;
use core_sync::model::{AssetDoc, MessageKind, MessageStatus, MessageUpdate, NewMessage};
use core_sync::now_millis;
use core_sync::store::LocalAsset;
use core_sync::sync::client::SyncEvent;
use tokio::sync::mpsc;

use crate::dashboard::{self, DashboardFilterForm};
use crate::format;
use crate::palette::Palette;
use crate::settings::{Settings, SettingsForm};
use crate::tools::{ComposerVm, Draft, TOOLS, Tools};
use crate::viewmodel::{self, IncomingVm, SessionVm};
use assets::AssetList;
use costbook::{AssetCosts, CostBook};
use decoder::{Decoded, Decoder, Want};
pub use error::{ControllerError, Result};
use imports::IncomingImage;
pub use ports::{
    AssetStore, Browser, Clipboard, ClipboardContent, FilePicker, LinkEvent, Picked, SaveDialog,
    SessionState, SyncLink,
};
pub use protocol::{RowRefs, Screen, UiCommand, UiEvent, View, ViewUpdate};
use timeline::{Env, OpenAsset};

#[derive(Clone)]
pub struct ControllerConfig {
    /// Memory for decoded images.
    pub image_budget_bytes: usize,
    /// Largest image accepted for upload.
    pub max_import_bytes: u64,
    /// Images decoded at once (each on a blocking thread).
    pub decode_parallelism: usize,
    /// An asset to open at start.
    pub open_at_start: Option<String>,
    pub picker: Arc<dyn FilePicker>,
    pub saver: Arc<dyn SaveDialog>,
    pub clipboard: Arc<dyn Clipboard>,
    /// Where settings are kept (`None`: not kept, e.g. benchmarks).
    pub data: Option<PathBuf>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            image_budget_bytes: 96 << 20,
            max_import_bytes: 64 << 20,
            decode_parallelism: 2,
            open_at_start: None,
            picker: Arc::new(crate::platform::NativePicker),
            saver: Arc::new(crate::platform::NativeSaver),
            clipboard: Arc::new(crate::platform::SystemClipboard::default()),
            data: None,
        }
    }
}

/// Background work finished.
enum Work {
    Decoded { key: String, result: Decoded },
    Picked(Picked),
    Incoming(Vec<Result<IncomingImage>>, bool),
    SaveTo { sha: String, mime: String, picked: Picked },
    ExportTo(Picked),
    Done(std::result::Result<String, String>),
    Costs(Vec<AssetCosts>),
    CostProgress(usize, usize),
}

pub struct Controller {
    store: Arc<dyn AssetStore>,
    tools: Tools,
    view: Arc<dyn View>,
    config: ControllerConfig,
    link: Option<Arc<dyn SyncLink>>,

    assets: AssetList,
    open: Option<OpenAsset>,
    tool: Tool,
    model_index: usize,
    decoder: Decoder,
    /// Images waiting for the user's word on what they become.
    incoming: Vec<IncomingImage>,
    compare: Option<viewmodel::CompareVm>,

    screen: Screen,
    costs: CostBook,
    costs_reading: bool,
    export_when_read: bool,
    filter: DashboardFilterForm,
    labels: Arc<HashMap<String, String>>,
    palette: Palette,
    session: SessionState,
    token_refused: bool,

    work_tx: mpsc::UnboundedSender<Work>,
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
        let labels = Arc::new(tools.model_labels().into_iter().collect());
        Controller {
            store,
            tools,
            view,
            decoder: Decoder::new(config.image_budget_bytes, config.decode_parallelism),
            config,
            link: None,
            assets: AssetList::default(),
            open: None,
            tool: Tool::Edit,
            model_index: 0,
            incoming: Vec::new(),
            compare: None,
            screen: Screen::Asset,
            costs: CostBook::default(),
            costs_reading: false,
            export_when_read: false,
            filter: DashboardFilterForm {
                preset: "30d".into(),
                ..Default::default()
            },
            labels,
            palette: Palette::default(),
            session: SessionState::default(),
            token_refused: false,
            work_tx,
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
        self.link = Some(link);
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
                Some(w) = work.recv() => self.on_work(w).await,
                _ = minute.tick() => {
                    // "5 min ago" moves on.
                    let updates = self.refresh_list().await;
                    self.view.apply(updates);
                }
            }
        }
        tracing::debug!("controller stopped");
    }

    /// The first screen: the asset list, the composer, nothing open.
    pub async fn start(&mut self) {
        let mut updates = self.refresh_list().await;
        updates.push(ViewUpdate::NoAsset);
        updates.push(self.composer_update());
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
            && let Err(e) = self.select(&id).await
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
    }

    async fn dispatch(&mut self, ev: UiEvent) -> Result<()> {
        match ev {
            UiEvent::Search(q) => {
                self.assets.set_query(q);
                let u = self.list_updates();
                self.view.apply(u);
            }
            UiEvent::SelectAsset(id) => self.select(&id).await?,
            UiEvent::StepAsset(step) => {
                let current = self.open.as_ref().map(|o| o.asset.id.to_string());
                if let Some(id) = self.assets.step(current.as_deref(), step) {
                    self.select(&id).await?;
                }
            }
            UiEvent::PickFile => self.pick_file(),
            UiEvent::ImportFile(path) => {
                let img = imports::read_file(&path, self.config.max_import_bytes).await?;
                self.create_asset(&img).await?;
            }
            UiEvent::Dropped(paths) => self.read_files(paths, true),
            UiEvent::Paste { explicit } => self.paste(explicit),
            UiEvent::IncomingAs(as_version) => self.take_incoming(as_version).await?,
            UiEvent::IncomingCancel => {
                self.incoming.clear();
                self.view.apply(vec![ViewUpdate::Incoming(None)]);
            }
            UiEvent::NewFromPrompt {
                prompt,
                model_index,
                aspect,
            } => self.new_from_prompt(&prompt, model_index, &aspect).await?,
            UiEvent::ToolChanged(i) => {
                self.tool = TOOLS.get(i).copied().unwrap_or(Tool::Edit);
                self.model_index = 0;
                let u = self.composer_update();
                self.view.apply(vec![u]);
            }
            UiEvent::ModelChanged(i) => {
                self.model_index = i;
                let u = self.composer_update();
                self.view.apply(vec![u]);
            }
            UiEvent::Send {
                prompt,
                aspect,
                scale,
            } => self.send(prompt, aspect, scale).await?,
            UiEvent::Rollback(version) => self.rollback(&version).await?,
            UiEvent::RollbackPrevious => {
                let prev = self
                    .open
                    .as_ref()
                    .ok_or(ControllerError::NoAsset)?
                    .previous_version()
                    .map(|v| v.id.clone())
                    .ok_or_else(|| {
                        ControllerError::Refused("there is no earlier version".into())
                    })?;
                self.rollback(&prev).await?;
            }
            UiEvent::Retry(message) => self.retry(&message).await?,
            UiEvent::Cancel(message) => self.cancel(&message).await?,
            UiEvent::LoadEarlier => self.load_earlier()?,
            UiEvent::SaveImage(v) => self.save_image(v.as_deref())?,
            UiEvent::CopyImage(v) => self.copy_image(v.as_deref())?,
            UiEvent::Compare(v) => self.show_compare(v.as_deref())?,
            UiEvent::CloseCompare => {
                self.compare = None;
                self.view.apply(vec![ViewUpdate::Compare(None)]);
            }
            UiEvent::ShowDashboard(show) => self.show_dashboard(show),
            UiEvent::DashboardFilter(form) => {
                self.filter = form;
                self.dashboard_update();
            }
            UiEvent::ExportCsv => self.export_csv(),
            UiEvent::PaletteQuery(q) => self.palette_query(&q),
            UiEvent::PaletteRun(i) => {
                if let Some(action) = self.palette.pick(i) {
                    Box::pin(self.run_action(action)).await?;
                }
            }
            UiEvent::SignIn(token) => {
                if let Some(l) = self.link.clone() {
                    l.sign_in_token(token).await;
                }
            }
            UiEvent::SignInBrowser => {
                if let Some(l) = self.link.clone() {
                    l.sign_in_browser().await;
                }
            }
            UiEvent::SignOut => {
                if let Some(l) = self.link.clone() {
                    l.sign_out().await;
                }
            }
            UiEvent::GoOffline => {
                if let Some(l) = self.link.clone() {
                    l.pause().await;
                }
            }
            UiEvent::GoOnline => {
                if let Some(l) = self.link.clone() {
                    l.resume().await;
                }
            }
            UiEvent::SaveSettings(form) => self.save_settings(form).await?,
            UiEvent::NeedImage(key) => self.need_image(key),
            UiEvent::DismissNotice => self.view.apply(vec![
                ViewUpdate::Notice(String::new()),
                ViewUpdate::Info(String::new()),
            ]),
            UiEvent::Shutdown => {}
        }
        Ok(())
    }

    // ------------------------------------------------------------ asset list

    async fn refresh_list(&mut self) -> Vec<ViewUpdate> {
        match self.store.list().await {
            Ok(l) => {
                self.assets.set_listings(l);
                self.list_updates()
            }
            Err(e) => vec![ViewUpdate::Notice(format!("Cannot list assets: {e}"))],
        }
    }

    fn list_updates(&mut self) -> Vec<ViewUpdate> {
        self.assets.updates(now_millis(), format::local_offset())
    }

    // ------------------------------------------------------------ the open asset

    async fn select(&mut self, id: &str) -> Result<()> {
        let id: DocId = id
            .parse()
            .map_err(|_| ControllerError::Refused(format!("{id:?} is not an asset id")))?;
        let started = std::time::Instant::now();
        let asset = self.store.load(&id).await?;
        let loaded = started.elapsed();
        self.open_asset(asset);
        tracing::debug!(doc = %id, ?loaded, total = ?started.elapsed(), "asset opened");
        Ok(())
    }

    fn open_asset(&mut self, asset: LocalAsset) {
        let id = asset.id.to_string();
        self.compare = None;
        self.screen = Screen::Asset;
        let (now, offset) = (now_millis(), format::local_offset());
        let mut updates = vec![
            ViewUpdate::Selected(id),
            ViewUpdate::Screen(Screen::Asset),
            ViewUpdate::Compare(None),
        ];
        let opened = OpenAsset::open(
            asset,
            &Env {
                tools: &self.tools,
                now,
                offset,
            },
        );
        match opened {
            Ok((open, timeline)) => {
                updates.push(timeline);
                self.open = Some(open);
                updates.push(self.composer_update());
                self.view.apply(updates);
                // Versions and the inspector after the first screen.
                let env = Env {
                    tools: &self.tools,
                    now,
                    offset,
                };
                let more = self.open.as_mut().map(|o| o.complete(&env));
                match more {
                    Some(Ok(u)) => self.view.apply(u),
                    Some(Err(e)) => self.view.apply(vec![ViewUpdate::Notice(format!(
                        "Cannot show its versions: {e}"
                    ))]),
                    None => {}
                }
            }
            Err(e) => {
                updates.push(ViewUpdate::Notice(format!("Cannot show this asset: {e}")));
                self.view.apply(updates);
            }
        }
    }

    fn load_earlier(&mut self) -> Result<()> {
        let env = Env {
            tools: &self.tools,
            now: now_millis(),
            offset: format::local_offset(),
        };
        if let Some(open) = self.open.as_mut()
            && let Some(u) = open.load_earlier(&env)?
        {
            self.view.apply(vec![u]);
        }
        Ok(())
    }

    /// Shows what changed in the open asset: from the store when another
    /// writer (the sync client) changed it, else from its own edits.
    async fn refresh_open(&mut self, from_store: bool) -> Vec<ViewUpdate> {
        let Some(open) = self.open.as_mut() else {
            return Vec::new();
        };
        if from_store && let Err(e) = self.store.refresh(&mut open.asset).await {
            return vec![ViewUpdate::Notice(format!("Cannot reload the asset: {e}"))];
        }
        let had_image = open.active_version.is_some();
        let env = Env {
            tools: &self.tools,
            now: now_millis(),
            offset: format::local_offset(),
        };
        let mut updates = match open.apply_changes(&env) {
            Ok(u) => u,
            Err(e) => vec![ViewUpdate::Notice(format!("Cannot show this asset: {e}"))],
        };
        if had_image != open.active_version.is_some() {
            updates.push(self.composer_update());
        }
        updates
    }

    /// Applies `change` to the open asset, saves it, and shows the result.
    async fn edit<T>(
        &mut self,
        change: impl FnOnce(&mut AssetDoc, Option<&str>) -> Result<T>,
    ) -> Result<T> {
        let open = self.open.as_mut().ok_or(ControllerError::NoAsset)?;
        let out = change(&mut open.asset.doc, open.active_version.as_deref())?;
        if let Err(e) = self.store.save(&mut open.asset).await {
            // Not stored: do not show it either. Back to what the store has.
            if let Ok(a) = self.store.load(&open.asset.id).await {
                self.open_asset(a);
            }
            return Err(e.into());
        }
        self.nudge_sync();
        let mut updates = self.refresh_open(false).await;
        updates.extend(self.refresh_list().await);
        self.view.apply(updates);
        Ok(out)
    }

    async fn send(&mut self, prompt: String, aspect: String, scale: String) -> Result<()> {
        let draft = Draft {
            tool: self.tool,
            model_index: self.model_index,
            prompt,
            aspect,
            scale,
        };
        let tools = self.tools.clone();
        self.edit(move |doc, active| {
            let msg = tools
                .request(&draft, active)
                .map_err(ControllerError::Refused)?;
            Ok(doc.append_message(msg, now_millis())?)
        })
        .await
        .map(|_| ())
    }

    async fn rollback(&mut self, version: &str) -> Result<()> {
        let version = version.to_owned();
        self.edit(move |doc, _| Ok(doc.set_active_version(&version, now_millis())?))
            .await
            .map(|_| ())
    }

    /// Sends a failed (or canceled) request again, as a new request.
    async fn retry(&mut self, message: &str) -> Result<()> {
        let message = message.to_owned();
        self.edit(move |doc, _| {
            let old = doc.message(&message)?;
            if old.kind != MessageKind::ToolRequest {
                return Err(ControllerError::Refused(
                    "only tool requests can be retried".into(),
                ));
            }
            let again = NewMessage {
                input_version_ids: old.input_version_ids,
                params: old.params,
                ..NewMessage::tool_request(
                    old.tool.unwrap_or_default(),
                    old.provider.unwrap_or_default(),
                    old.model.unwrap_or_default(),
                    old.text.unwrap_or_default(),
                )
            };
            Ok(doc.append_message(again, now_millis())?)
        })
        .await
        .map(|_| ())
    }

    /// Stops a queued or running request: the server's job sees the status
    /// at its next check, cancels the provider's work and records what was
    /// spent.
    async fn cancel(&mut self, message: &str) -> Result<()> {
        let message = message.to_owned();
        self.edit(move |doc, _| {
            let m = doc.message(&message)?;
            match m.status {
                Some(MessageStatus::Queued | MessageStatus::Running) => {}
                _ => {
                    return Err(ControllerError::Refused(
                        "only queued or running requests can be canceled".into(),
                    ));
                }
            }
            Ok(doc.update_message(
                &message,
                MessageUpdate {
                    status: Some(MessageStatus::Canceled),
                    ..Default::default()
                },
                now_millis(),
            )?)
        })
        .await
    }

    // ------------------------------------------------------------ new assets

    /// Opens the file dialog; the answer comes back as [`Work::Picked`].
    fn pick_file(&self) {
        let tx = self.work_tx.clone();
        let picked = self.config.picker.pick();
        self.view.apply(vec![ViewUpdate::Picking(true)]);
        tokio::spawn(async move {
            let _ = tx.send(Work::Picked(picked.await));
        });
    }

    /// Reads and checks files in the background ([`Work::Incoming`]).
    fn read_files(&self, paths: Vec<PathBuf>, ask: bool) {
        let tx = self.work_tx.clone();
        let max = self.config.max_import_bytes;
        tokio::spawn(async move {
            let mut out = Vec::new();
            for p in paths {
                out.push(imports::read_file(&p, max).await);
            }
            let _ = tx.send(Work::Incoming(out, ask));
        });
    }

    fn paste(&self, explicit: bool) {
        let tx = self.work_tx.clone();
        let clipboard = self.config.clipboard.clone();
        let max = self.config.max_import_bytes;
        tokio::spawn(async move {
            let content = tokio::task::spawn_blocking(move || clipboard.read())
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            let work = match content {
                Ok(ClipboardContent::Image(px)) => {
                    let r = tokio::task::spawn_blocking(move || imports::from_pixels(&px, max))
                        .await
                        .expect("image checks do not panic");
                    Work::Incoming(vec![r], true)
                }
                Ok(ClipboardContent::Files(paths)) => {
                    let mut out = Vec::new();
                    for p in paths {
                        out.push(imports::read_file(&p, max).await);
                    }
                    Work::Incoming(out, true)
                }
                Ok(ClipboardContent::Other) if explicit => Work::Done(Err(
                    "The clipboard holds no image: copy an image or an image file first.".into(),
                )),
                Ok(ClipboardContent::Other) => return,
                Err(e) => Work::Done(Err(format!("Cannot read the clipboard: {e}"))),
            };
            let _ = tx.send(work);
        });
    }

    /// Checked images arrived: with an asset open, ask what they become;
    /// otherwise each becomes an asset.
    async fn on_incoming(&mut self, results: Vec<Result<IncomingImage>>, ask: bool) {
        let mut errors = Vec::new();
        let mut images = Vec::new();
        for r in results {
            match r {
                Ok(i) => images.push(i),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            self.view.apply(vec![ViewUpdate::Notice(errors.join("; "))]);
        }
        if images.is_empty() {
            return;
        }
        if ask && let Some(open) = &self.open {
            let what = match images.as_slice() {
                [one] => one.describe(),
                many => format!("{} images", many.len()),
            };
            let vm = IncomingVm {
                what,
                asset: open.title.clone(),
            };
            self.incoming = images;
            self.view.apply(vec![ViewUpdate::Incoming(Some(vm))]);
            return;
        }
        for img in images {
            if let Err(e) = self.create_asset(&img).await {
                self.view.apply(vec![ViewUpdate::Notice(e.to_string())]);
            }
        }
    }

    async fn take_incoming(&mut self, as_version: bool) -> Result<()> {
        let images = std::mem::take(&mut self.incoming);
        self.view.apply(vec![ViewUpdate::Incoming(None)]);
        for img in images {
            if as_version && self.open.is_some() {
                let now = now_millis();
                let blobs = imports::store_blobs(self.store.as_ref(), &img, now).await?;
                self.edit(move |doc, active| {
                    imports::add_version(doc, &img, blobs, active.map(str::to_owned), now)
                })
                .await?;
            } else {
                self.create_asset(&img).await?;
            }
        }
        Ok(())
    }

    /// A new asset from a checked image; it opens.
    async fn create_asset(&mut self, img: &IncomingImage) -> Result<DocId> {
        let now = now_millis();
        let blobs = imports::store_blobs(self.store.as_ref(), img, now).await?;
        let doc = imports::new_asset(img, blobs, now)?;
        self.insert_and_open(doc).await
    }

    /// Creates an asset from a prompt: a queued text-to-image request.
    async fn new_from_prompt(&mut self, prompt: &str, model_index: usize, aspect: &str) -> Result<()> {
        let draft = Draft {
            tool: Tool::Generate,
            model_index,
            prompt: prompt.to_owned(),
            aspect: aspect.to_owned(),
            scale: String::new(),
        };
        let msg = self
            .tools
            .request(&draft, None)
            .map_err(ControllerError::Refused)?;
        let now = now_millis();
        let mut doc = AssetDoc::create(&format::headline(prompt, 60), now);
        doc.append_message(msg, now)?;
        self.insert_and_open(doc).await.map(|_| ())
    }

    async fn insert_and_open(&mut self, doc: AssetDoc) -> Result<DocId> {
        let asset = self.store.insert(DocId::random(), doc).await?;
        let id = asset.id.clone();
        self.nudge_sync();
        self.assets.clear_query();
        let updates = self.refresh_list().await;
        self.view.apply(updates);
        self.open_asset(asset);
        Ok(id)
    }

    // ------------------------------------------------------------ images out

    fn save_image(&mut self, version: Option<&str>) -> Result<()> {
        let open = self.open.as_ref().ok_or(ControllerError::NoAsset)?;
        let (i, v) = open
            .version(version)
            .ok_or_else(|| ControllerError::Refused("this asset has no image yet".into()))?;
        let name = exports::suggested_name(&open.title, &format!("v{}", i + 1), &v.blob.mime);
        let (sha, mime) = (v.blob.sha256.clone(), v.blob.mime.clone());
        let dialog = self
            .config
            .saver
            .save("Save image as", &name, exports::extensions(&mime));
        let tx = self.work_tx.clone();
        self.view.apply(vec![ViewUpdate::Picking(true)]);
        tokio::spawn(async move {
            let picked = dialog.await;
            let _ = tx.send(Work::SaveTo { sha, mime, picked });
        });
        Ok(())
    }

    fn copy_image(&mut self, version: Option<&str>) -> Result<()> {
        let open = self.open.as_ref().ok_or(ControllerError::NoAsset)?;
        let (i, v) = open
            .version(version)
            .ok_or_else(|| ControllerError::Refused("this asset has no image yet".into()))?;
        let label = format!("v{} of {}", i + 1, open.title);
        let sha = v.blob.sha256.clone();
        let blobs = self.store.blobs();
        let clipboard = self.config.clipboard.clone();
        let tx = self.work_tx.clone();
        tokio::task::spawn_blocking(move || {
            let r = exports::full_pixels(&blobs, &sha)
                .map_err(|e| e.to_string())
                .and_then(|px| clipboard.write_image(&px).map(|_| px))
                .map(|px| {
                    format!(
                        "Copied {label} ({}) to the clipboard.",
                        format::dimensions(px.width, px.height)
                    )
                })
                .map_err(|e| format!("Cannot copy the image: {e}"));
            let _ = tx.send(Work::Done(r));
        });
        Ok(())
    }

    fn show_compare(&mut self, version: Option<&str>) -> Result<()> {
        let open = self.open.as_ref().ok_or(ControllerError::NoAsset)?;
        let vm = open.compare(version).ok_or_else(|| {
            ControllerError::Refused("compare needs two versions of this asset".into())
        })?;
        let keys = [vm.left.key.clone(), vm.right.key.clone()];
        self.compare = Some(vm.clone());
        self.view.apply(vec![ViewUpdate::Compare(Some(vm))]);
        for k in keys {
            self.need_image(k);
        }
        Ok(())
    }

    // ------------------------------------------------------------ composer

    fn composer_update(&mut self) -> ViewUpdate {
        let has_image = self
            .open
            .as_ref()
            .is_some_and(|o| o.active_version.is_some());
        let vm: ComposerVm = self.tools.composer(self.tool, self.model_index, has_image);
        self.model_index = vm.model_index;
        ViewUpdate::Composer(vm)
    }

    // ------------------------------------------------------------ dashboard

    fn show_dashboard(&mut self, show: bool) {
        self.screen = if show { Screen::Dashboard } else { Screen::Asset };
        self.view.apply(vec![ViewUpdate::Screen(self.screen)]);
        if show {
            self.dashboard_update();
            self.read_costs();
        }
    }

    /// Reads the costs of assets changed since they were last read.
    fn read_costs(&mut self) {
        if self.costs_reading {
            return;
        }
        let stale = self.costs.stale(self.assets.listings());
        if stale.is_empty() {
            if self.export_when_read {
                self.export_when_read = false;
                self.export_csv();
            }
            return;
        }
        self.costs_reading = true;
        let total = stale.len();
        let tx = self.work_tx.clone();
        let store = self.store.clone();
        tokio::spawn(async move {
            let progress_tx = tx.clone();
            let read = costbook::read(store, stale, move |n| {
                let _ = progress_tx.send(Work::CostProgress(n, total));
            })
            .await;
            let _ = tx.send(Work::Costs(read));
        });
    }

    fn dashboard_update(&mut self) {
        if self.screen != Screen::Dashboard {
            return;
        }
        let started = std::time::Instant::now();
        let vm = dashboard::build(
            self.costs.rows(),
            self.costs.models(),
            &self.labels,
            &self.filter,
            now_millis(),
            format::local_offset(),
        );
        self.filter = vm.form.clone();
        tracing::debug!(elapsed = ?started.elapsed(), events = vm.table.len(), "dashboard computed");
        self.view.apply(vec![ViewUpdate::Dashboard(Box::new(vm))]);
    }

    fn export_csv(&mut self) {
        if self.screen != Screen::Dashboard || self.costs_reading {
            // Export what the dashboard shows, once it has read the costs.
            self.export_when_read = true;
            self.show_dashboard(true);
            return;
        }
        let form = dashboard::resolve_preset(&self.filter, now_millis());
        let name = format!(
            "atelier-costs-{}-{}.csv",
            if form.from.is_empty() { "start" } else { &form.from },
            if form.to.is_empty() { "today" } else { &form.to }
        );
        let dialog = self.config.saver.save("Export costs as CSV", &name, &["csv"]);
        let tx = self.work_tx.clone();
        self.view.apply(vec![ViewUpdate::Picking(true)]);
        tokio::spawn(async move {
            let _ = tx.send(Work::ExportTo(dialog.await));
        });
    }

    fn write_csv(&self, path: PathBuf) -> std::result::Result<String, String> {
        let vm = dashboard::build(
            self.costs.rows(),
            self.costs.models(),
            &self.labels,
            &self.filter,
            now_millis(),
            format::local_offset(),
        );
        if !vm.error.is_empty() {
            return Err(vm.error);
        }
        let path = ports::with_extension(&path, &["csv"]);
        let rows = self.costs.rows();
        // The CSV lists events oldest first; the table newest first.
        let out: Vec<&core_sync::costs::CostRow> =
            vm.table.shown.iter().rev().map(|&i| &rows[i as usize]).collect();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".part");
        let tmp = PathBuf::from(tmp);
        let written = std::fs::File::create(&tmp)
            .and_then(|f| core_sync::costs::write_csv(std::io::BufWriter::new(f), out))
            .and_then(|n| std::fs::rename(&tmp, &path).map(|_| n))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                format!("Cannot write {}: {e}", path.display())
            })?;
        Ok(format!(
            "Exported {written} cost event{} to {}",
            if written == 1 { "" } else { "s" },
            path.display()
        ))
    }

    // ------------------------------------------------------------ palette

    fn palette_query(&mut self, query: &str) {
        if query.is_empty() || self.palette.is_empty() {
            let items = actions::palette_items(
                self.assets.listings(),
                self.open.as_ref(),
                &self.session,
                self.screen,
            );
            self.palette.set_items(items);
        }
        let rows = self.palette.search(query);
        self.view.apply(vec![ViewUpdate::Palette(rows)]);
    }

    /// Runs a palette action.
    async fn run_action(&mut self, action: crate::palette::Action) -> Result<()> {
        use crate::palette::Action as A;
        let ui = |c| vec![ViewUpdate::Ui(c)];
        match action {
            A::NewAsset => self.view.apply(ui(UiCommand::NewAsset)),
            A::Upload => self.pick_file(),
            A::Paste => self.paste(true),
            A::Send => self.view.apply(ui(UiCommand::FocusComposer)),
            A::Tool(i) => {
                self.dispatch(UiEvent::ToolChanged(i)).await?;
                self.view.apply(ui(UiCommand::FocusComposer));
            }
            A::RollbackPrevious => self.dispatch(UiEvent::RollbackPrevious).await?,
            A::Rollback(v) => self.rollback(&v).await?,
            // An empty id: back to the asset view.
            A::Open(id) if id.is_empty() => self.show_dashboard(false),
            A::Open(id) => self.select(&id).await?,
            A::NextAsset => self.dispatch(UiEvent::StepAsset(1)).await?,
            A::PreviousAsset => self.dispatch(UiEvent::StepAsset(-1)).await?,
            A::Search => self.view.apply(ui(UiCommand::FocusSearch)),
            A::Dashboard => self.show_dashboard(true),
            A::ExportCsv => self.export_csv(),
            A::SaveImage => self.save_image(None)?,
            A::CopyImage => self.copy_image(None)?,
            A::Compare => self.show_compare(None)?,
            A::GoOffline => self.dispatch(UiEvent::GoOffline).await?,
            A::GoOnline => self.dispatch(UiEvent::GoOnline).await?,
            A::SignIn if self.session.browser => self.dispatch(UiEvent::SignInBrowser).await?,
            A::SignIn => self.view.apply(ui(UiCommand::TokenSheet)),
            A::SignOut => self.dispatch(UiEvent::SignOut).await?,
            A::Settings => self.view.apply(ui(UiCommand::Settings)),
            A::Shortcuts => self.view.apply(ui(UiCommand::Shortcuts)),
            A::About => self.view.apply(ui(UiCommand::About)),
            A::Quit => self.view.apply(ui(UiCommand::Quit)),
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
        let settings = form
            .parse()
            .map_err(|e| ControllerError::Refused(e.to_string()))?;
        let old = Settings::load(&data).unwrap_or_default();
        settings
            .save(&data)
            .map_err(|e| ControllerError::Refused(e.to_string()))?;
        if let Some(l) = self.link.clone() {
            l.apply_settings(&settings).await;
        }
        let mut form = SettingsForm::of(&settings);
        let restart = old.server_url != settings.server_url
            || old.auth_url != settings.auth_url
            || old.client_id != settings.client_id;
        form.note = if restart {
            "Saved. The server and sign-in apply when Atelier starts again.".into()
        } else {
            "Saved.".into()
        };
        self.view.apply(vec![
            ViewUpdate::Settings(form),
            ViewUpdate::Info("Settings saved.".into()),
        ]);
        Ok(())
    }

    // ------------------------------------------------------------ sync

    fn nudge_sync(&self) {
        if let Some(l) = &self.link {
            l.nudge();
        }
    }

    fn session_update(&self) -> ViewUpdate {
        let s = &self.session;
        ViewUpdate::Session(SessionVm {
            offer_sign_in: s.needs_sign_in || (self.token_refused && !s.browser),
            browser: s.browser,
            waiting: s.waiting,
            user: s.user.clone().unwrap_or_default(),
            can_sign_out: s.can_sign_out,
            paused: s.paused,
            syncs: s.syncs,
        })
    }

    async fn on_link(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Sync(SyncEvent::Status(s)) => {
                let vm = viewmodel::sync_vm(&s, now_millis(), format::local_offset());
                let mut updates = vec![ViewUpdate::Sync(vm)];
                // A refused token (expired, revoked): offer to sign in again.
                let refused = s
                    .last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("answered 401"));
                if refused != self.token_refused {
                    self.token_refused = refused;
                    updates.push(self.session_update());
                }
                self.view.apply(updates);
            }
            LinkEvent::Sync(SyncEvent::Pulled(docs)) => {
                let mut updates = self.refresh_list().await;
                let open_changed = self
                    .open
                    .as_ref()
                    .is_some_and(|o| docs.contains(&o.asset.id));
                if open_changed {
                    updates.extend(self.refresh_open(true).await);
                }
                self.view.apply(updates);
                if self.screen == Screen::Dashboard {
                    self.read_costs();
                }
                // Blobs arrive with the documents that use them.
                for key in self.decoder.take_missing() {
                    self.need_image(key);
                }
            }
            LinkEvent::Session(s) => {
                self.token_refused = false;
                let server = s.server.clone();
                self.session = s;
                let u = self.session_update();
                self.view.apply(vec![u, ViewUpdate::ServerLabel(server)]);
            }
            LinkEvent::Failed(msg) => self.view.apply(vec![ViewUpdate::Notice(msg)]),
            LinkEvent::NotSyncing(why) => self
                .view
                .apply(vec![ViewUpdate::Sync(viewmodel::sync_off(&why))]),
            LinkEvent::Keys(keys) => {
                self.tools.set_keys(keys);
                let u = self.composer_update();
                self.view.apply(vec![u]);
            }
        }
    }

    // ------------------------------------------------------------ images

    /// Where `key` is shown.
    fn refs(&self, key: &str) -> RowRefs {
        RowRefs {
            assets: self.assets.rows_with(key),
            messages: self
                .open
                .as_ref()
                .map(|o| o.rows_with(key))
                .unwrap_or_default(),
            versions: self
                .open
                .as_ref()
                .map(|o| o.versions_with(key))
                .unwrap_or_default(),
        }
    }

    fn need_image(&mut self, key: String) {
        match self.decoder.want(key.clone()) {
            Want::Ready(pixels) => {
                let at = self.refs(&key);
                self.view
                    .apply(vec![ViewUpdate::ImageReady { key, pixels, at }]);
            }
            Want::Later => self.pump_decodes(),
        }
    }

    fn pump_decodes(&mut self) {
        let tx = self.work_tx.clone();
        self.decoder.pump(&self.store.blobs(), move |key, result| {
            let _ = tx.send(Work::Decoded { key, result });
        });
    }

    async fn on_work(&mut self, work: Work) {
        match work {
            Work::Decoded { key, result } => {
                let (pixels, evicted) = self.decoder.finished(&key, result);
                let mut updates = Vec::new();
                if let Some(pixels) = pixels {
                    let at = self.refs(&key);
                    updates.push(ViewUpdate::ImageReady { key, pixels, at });
                }
                for k in evicted {
                    let at = self.refs(&k);
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
                                if let Err(e) = self.create_asset(&img).await {
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
            Work::Incoming(results, ask) => self.on_incoming(results, ask).await,
            Work::SaveTo { sha, mime, picked } => {
                let result = match picked {
                    Picked::File(path) => {
                        let blobs = self.store.blobs();
                        tokio::task::spawn_blocking(move || {
                            exports::save_blob(&blobs, &sha, &mime, &path)
                        })
                        .await
                        .expect("saving does not panic")
                        .map(|p| format!("Saved the image to {}", p.display()))
                        .map_err(|e| e.to_string())
                    }
                    Picked::Unavailable => Err(NO_DIALOG.into()),
                    Picked::Canceled => Ok(String::new()),
                };
                self.done(result);
                self.view.apply(vec![ViewUpdate::Picking(false)]);
            }
            Work::ExportTo(picked) => {
                let result = match picked {
                    Picked::File(path) => self.write_csv(path),
                    Picked::Unavailable => Err(NO_DIALOG.into()),
                    Picked::Canceled => Ok(String::new()),
                };
                self.done(result);
                self.view.apply(vec![ViewUpdate::Picking(false)]);
            }
            Work::Done(result) => self.done(result),
            Work::CostProgress(n, total) => {
                let vm = dashboard::DashboardVm {
                    loading: format!("Reading costs: {n} of {total} assets…"),
                    ..dashboard::DashboardVm::default()
                };
                if self.costs.rows().is_empty() && self.screen == Screen::Dashboard {
                    self.view.apply(vec![ViewUpdate::Dashboard(Box::new(vm))]);
                }
            }
            Work::Costs(read) => {
                self.costs_reading = false;
                let changed = self.costs.update(read, self.assets.listings());
                if changed {
                    self.labels = Arc::new(
                        self.costs
                            .models()
                            .iter()
                            .map(|m| (m.clone(), self.tools.model_label(m)))
                            .collect(),
                    );
                }
                self.dashboard_update();
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

const NO_DIALOG: &str = "No file dialog could open: install xdg-desktop-portal (or zenity).";
