//! The controller: owns the app's state (the asset list and search, the
//! open asset, the composer's choices, decoded images) and turns user
//! events, sync events and finished background work into [`ViewUpdate`]s.
//! It runs as one task on the tokio runtime, never on the UI thread, and
//! knows nothing of Slint: a [`View`] receives the updates (the Slint
//! adapter in the app, a [`ViewState`] in tests).
//!
//! Every edit is saved to the store before the view shows it, then the
//! sync client is nudged to push it.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cloud_lambda::registry::Tool;
use core_sync::blob::{BlobError, sniff_mime};
use core_sync::ids::DocId;
use core_sync::model::{
    AssetDoc, BlobRef, Entry, MessageKind, MessageView, ModelError, NewMessage, NewVersion,
    VersionView,
};
use core_sync::now_millis;
use core_sync::store::{AssetListing, LocalAsset, Store, StoreError};
use core_sync::sync::client::SyncEvent;
use tokio::sync::{Notify, mpsc};

use crate::backend::Connector;
use crate::format;
use crate::images::{self, ImageCache, ImageKey, Pixels};
use crate::tools::{ComposerVm, Draft, TOOLS, Tools};
use crate::viewmodel::{
    self, AssetRow, InspectorVm, MessageRow, RowsDiff, SyncVm, TimelineContext, VersionRow,
};

/// What the user did.
#[derive(Debug, Clone, PartialEq)]
pub enum UiEvent {
    Search(String),
    SelectAsset(String),
    /// Open the native file dialog to pick an image.
    PickFile,
    /// Create an asset from this image file.
    ImportFile(PathBuf),
    NewFromPrompt {
        prompt: String,
        model_index: usize,
        aspect: String,
    },
    ToolChanged(usize),
    ModelChanged(usize),
    Send {
        prompt: String,
        aspect: String,
        scale: String,
    },
    Rollback(String),
    Retry(String),
    /// Sign in to the remote server with this token.
    SignIn(String),
    /// A row on screen shows this image key and has no pixels for it.
    NeedImage(String),
    DismissNotice,
    Shutdown,
}

/// What the view must change.
#[derive(Debug, Clone, PartialEq)]
pub enum ViewUpdate {
    Assets {
        rows: Vec<AssetRow>,
        total: usize,
    },
    AssetRow(usize, AssetRow),
    Selected(String),
    /// An asset opened: its title and whole timeline (show the newest).
    Timeline {
        title: String,
        rows: Vec<MessageRow>,
    },
    NoAsset,
    Title(String),
    MessageRow(usize, MessageRow),
    /// New entries at the end (show the newest).
    MessagesAppended(Vec<MessageRow>),
    Inspector(InspectorVm),
    Composer(ComposerVm),
    Sync(SyncVm),
    ServerLabel(String),
    /// The server to offer a sign-in for; empty hides the offer.
    SignIn(String),
    ImageReady {
        key: String,
        pixels: Arc<Pixels>,
    },
    ImageDropped(String),
    /// Something the user should read (an error); empty clears it.
    Notice(String),
    /// The file dialog is open (true) or has answered (false).
    Picking(bool),
}

/// Where updates go. Called from the controller's task; implementations
/// hand the updates to their UI thread.
pub trait View: Send + Sync + 'static {
    fn apply(&self, updates: Vec<ViewUpdate>);
}

/// What came of asking the user for a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Picked {
    File(PathBuf),
    /// The user closed the dialog without picking.
    Canceled,
    /// No dialog could open (no portal, no zenity).
    Unavailable,
}

/// How the user picks an image file: the native dialog in the app; tests
/// (which cannot drive a native dialog) hand over a fixture.
pub trait FilePicker: Send + Sync + 'static {
    fn pick(&self) -> Pin<Box<dyn Future<Output = Picked> + Send>>;
}

/// The platform's file dialog (the XDG desktop portal on Linux, with a
/// zenity fallback).
pub struct NativePicker;

/// rfd answers "nothing picked" both for a canceled dialog and for one
/// that could not open; no person cancels a dialog faster than this.
const NO_DIALOG: Duration = Duration::from_millis(150);

impl FilePicker for NativePicker {
    fn pick(&self) -> Pin<Box<dyn Future<Output = Picked> + Send>> {
        Box::pin(async {
            let started = std::time::Instant::now();
            let picked = rfd::AsyncFileDialog::new()
                .set_title("Upload an image")
                .add_filter("Images", &["png", "jpg", "jpeg", "webp"])
                .pick_file()
                .await;
            match picked {
                Some(f) => Picked::File(f.path().to_owned()),
                None if started.elapsed() < NO_DIALOG => Picked::Unavailable,
                None => Picked::Canceled,
            }
        })
    }
}

/// The sync client as the controller sees it.
pub enum SyncLink {
    /// Not syncing, and why (shown in the status bar).
    Off(String),
    On {
        nudge: Arc<Notify>,
        events: mpsc::UnboundedReceiver<SyncEvent>,
        /// "embedded server", or the remote URL.
        label: String,
        /// For signing in again when the server refuses the token.
        connector: Option<Arc<Connector>>,
    },
    /// A server that needs a sign-in first.
    SignIn(Arc<Connector>),
}

#[derive(Clone)]
pub struct ControllerConfig {
    /// Memory for decoded images.
    pub image_budget_bytes: usize,
    /// Largest image file accepted for upload.
    pub max_import_bytes: u64,
    /// Images decoded at once (each on a blocking thread).
    pub decode_parallelism: usize,
    /// An asset to open at start.
    pub open_at_start: Option<String>,
    pub picker: Arc<dyn FilePicker>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            image_budget_bytes: 96 << 20,
            max_import_bytes: 64 << 20,
            decode_parallelism: 2,
            open_at_start: None,
            picker: Arc::new(NativePicker),
        }
    }
}

/// Errors the user reads in the notice bar.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is {size}, more than the {limit} an upload may be")]
    TooLarge {
        path: PathBuf,
        size: String,
        limit: String,
    },
    #[error("{path} is not a PNG, JPEG or WebP image")]
    NotAnImage { path: PathBuf },
    #[error("{path}: {message}")]
    BadImage { path: PathBuf, message: String },
    #[error("open an asset first")]
    NoAsset,
    #[error("{0}")]
    Refused(String),
}

type Result<T, E = ControllerError> = std::result::Result<T, E>;

struct OpenAsset {
    asset: LocalAsset,
    rows: Vec<MessageRow>,
    inspector: InspectorVm,
    title: String,
    active_version: Option<String>,
}

enum Work {
    Decoded {
        key: String,
        result: std::result::Result<Pixels, DecodeFailure>,
    },
    Picked(Picked),
}

enum DecodeFailure {
    /// The blob is not here (yet): sync may bring it.
    Missing,
    Broken(String),
}

pub struct Controller {
    store: Store,
    tools: Tools,
    view: Arc<dyn View>,
    config: ControllerConfig,
    nudge: Option<Arc<Notify>>,
    connector: Option<Arc<Connector>>,

    listings: Vec<AssetListing>,
    query: String,
    shown_assets: Vec<AssetRow>,
    shown_total: usize,
    open: Option<OpenAsset>,
    tool: Tool,
    model_index: usize,

    images: ImageCache,
    decoding: HashSet<String>,
    /// Requested, not yet started: newest request last (decoded first).
    wanted: Vec<String>,
    /// Images whose blob was missing: retried when sync brings documents.
    missing: HashSet<String>,
    work_tx: mpsc::UnboundedSender<Work>,
    work_rx: Option<mpsc::UnboundedReceiver<Work>>,
}

impl Controller {
    pub fn new(store: Store, tools: Tools, view: Arc<dyn View>, config: ControllerConfig) -> Self {
        let (work_tx, work_rx) = mpsc::unbounded_channel();
        Controller {
            store,
            tools,
            view,
            images: ImageCache::new(config.image_budget_bytes),
            config,
            nudge: None,
            connector: None,
            listings: Vec::new(),
            query: String::new(),
            shown_assets: Vec::new(),
            shown_total: usize::MAX,
            open: None,
            tool: Tool::Edit,
            model_index: 0,
            decoding: HashSet::new(),
            wanted: Vec::new(),
            missing: HashSet::new(),
            work_tx,
            work_rx: Some(work_rx),
        }
    }

    /// Shows the first state, then handles events until [`UiEvent::Shutdown`]
    /// or until the UI's sender is gone.
    pub async fn run(mut self, mut ui: mpsc::UnboundedReceiver<UiEvent>, sync: SyncLink) {
        let mut work = self.work_rx.take().expect("run is called once");
        let mut sync_events = match sync {
            SyncLink::Off(reason) => {
                self.view.apply(vec![
                    ViewUpdate::Sync(viewmodel::sync_off(&reason)),
                    ViewUpdate::ServerLabel("local only".into()),
                ]);
                None
            }
            SyncLink::On {
                nudge,
                events,
                label,
                connector,
            } => {
                self.nudge = Some(nudge);
                self.connector = connector;
                self.view.apply(vec![ViewUpdate::ServerLabel(label)]);
                Some(events)
            }
            SyncLink::SignIn(connector) => {
                let url = connector.url().to_owned();
                self.connector = Some(connector);
                self.view.apply(vec![
                    ViewUpdate::Sync(viewmodel::sync_off(&format!("sign in to sync with {url}"))),
                    ViewUpdate::ServerLabel(url.clone()),
                    ViewUpdate::SignIn(url),
                ]);
                None
            }
        };
        self.start().await;
        let mut minute = tokio::time::interval(Duration::from_secs(60));
        minute.tick().await;
        loop {
            tokio::select! {
                ev = ui.recv() => match ev {
                    None | Some(UiEvent::Shutdown) => break,
                    Some(UiEvent::SignIn(token)) => {
                        if let Some(events) = self.sign_in(token).await {
                            sync_events = Some(events);
                        }
                    }
                    Some(ev) => self.handle(ev).await,
                },
                ev = recv_or_pend(&mut sync_events) => match ev {
                    Some(ev) => self.on_sync(ev).await,
                    None => sync_events = None,
                },
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
        self.view.apply(updates);
        if let Some(id) = self.config.open_at_start.take()
            && let Err(e) = self.select(&id).await
        {
            self.view.apply(vec![ViewUpdate::Notice(e.to_string())]);
        }
    }

    /// Handles one user event.
    pub async fn handle(&mut self, ev: UiEvent) {
        let result = match ev {
            UiEvent::Search(q) => {
                self.query = q;
                let updates = self.list_updates();
                self.view.apply(updates);
                Ok(())
            }
            UiEvent::SelectAsset(id) => self.select(&id).await,
            UiEvent::PickFile => {
                self.pick_file();
                Ok(())
            }
            UiEvent::ImportFile(path) => self.import(&path).await.map(|_| ()),
            UiEvent::NewFromPrompt {
                prompt,
                model_index,
                aspect,
            } => self
                .new_from_prompt(&prompt, model_index, &aspect)
                .await
                .map(|_| ()),
            UiEvent::ToolChanged(i) => {
                self.tool = TOOLS.get(i).copied().unwrap_or(Tool::Edit);
                self.model_index = 0;
                let u = self.composer_update();
                self.view.apply(vec![u]);
                Ok(())
            }
            UiEvent::ModelChanged(i) => {
                self.model_index = i;
                let u = self.composer_update();
                self.view.apply(vec![u]);
                Ok(())
            }
            UiEvent::Send {
                prompt,
                aspect,
                scale,
            } => self.send(prompt, aspect, scale).await.map(|_| ()),
            UiEvent::Rollback(version) => self.rollback(&version).await,
            UiEvent::Retry(message) => self.retry(&message).await.map(|_| ()),
            UiEvent::NeedImage(key) => {
                self.need_image(key);
                Ok(())
            }
            UiEvent::DismissNotice => {
                self.view.apply(vec![ViewUpdate::Notice(String::new())]);
                Ok(())
            }
            // Handled by `run`, which owns the sync event stream.
            UiEvent::SignIn(_) | UiEvent::Shutdown => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "user action failed");
            self.view.apply(vec![ViewUpdate::Notice(e.to_string())]);
        }
    }

    // ------------------------------------------------------------ asset list

    async fn refresh_list(&mut self) -> Vec<ViewUpdate> {
        match self.store.list().await {
            Ok(l) => {
                self.listings = l;
                self.list_updates()
            }
            Err(e) => vec![ViewUpdate::Notice(format!("Cannot list assets: {e}"))],
        }
    }

    fn list_updates(&mut self) -> Vec<ViewUpdate> {
        let rows = viewmodel::asset_rows(
            &self.listings,
            &self.query,
            now_millis(),
            format::local_offset(),
        );
        let total = self.listings.len();
        let updates = match viewmodel::diff_rows(&self.shown_assets, &rows) {
            RowsDiff::Patch { changed, appended }
                if appended.is_empty() && total == self.shown_total =>
            {
                changed
                    .into_iter()
                    .map(|(i, r)| ViewUpdate::AssetRow(i, r))
                    .collect()
            }
            _ => vec![ViewUpdate::Assets {
                rows: rows.clone(),
                total,
            }],
        };
        self.shown_assets = rows;
        self.shown_total = total;
        updates
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
        let mut open = OpenAsset {
            asset,
            rows: Vec::new(),
            inspector: InspectorVm::default(),
            title: String::new(),
            active_version: None,
        };
        let mut updates = vec![ViewUpdate::Selected(open.asset.id.to_string())];
        match self.compute(&mut open) {
            Ok((rows, inspector)) => {
                updates.push(ViewUpdate::Timeline {
                    title: open.title.clone(),
                    rows: rows.clone(),
                });
                updates.push(ViewUpdate::Inspector(inspector.clone()));
                open.rows = rows;
                open.inspector = inspector;
            }
            Err(e) => updates.push(ViewUpdate::Notice(format!("Cannot show this asset: {e}"))),
        }
        self.open = Some(open);
        updates.push(self.composer_update());
        self.view.apply(updates);
    }

    /// Rows and inspector of `open` as its document now stands.
    fn compute(&self, open: &mut OpenAsset) -> Result<(Vec<MessageRow>, InspectorVm)> {
        let started = std::time::Instant::now();
        let doc = &mut open.asset.doc;
        let summary = doc.summary()?;
        let timeline = doc.timeline()?;
        let versions = doc.versions()?;
        let costs = doc.cost_events()?;
        tracing::debug!(read = ?started.elapsed(), messages = timeline.len(), "document read");
        let by_id: HashMap<String, VersionView> =
            versions.iter().map(|v| (v.id.clone(), v.clone())).collect();
        let cost_by_message = viewmodel::costs_by_message(&costs);
        let now = now_millis();
        let offset = format::local_offset();
        let cx = TimelineContext {
            versions: &by_id,
            costs: &cost_by_message,
            tools: &self.tools,
            now,
            offset,
        };
        let rows = timeline
            .iter()
            .map(|e| match e {
                Entry::Read(m) => viewmodel::message_row(m, &cx),
                Entry::Unreadable(u) => viewmodel::unreadable_row(u),
            })
            .collect();
        let makers: HashMap<String, MessageView> = timeline
            .into_iter()
            .filter_map(Entry::read)
            .filter(|m| m.kind == MessageKind::ToolRequest)
            .map(|m| (m.id.clone(), m))
            .collect();
        let inspector = viewmodel::inspector(&summary, &versions, &makers, &costs, now, offset);
        open.title = summary.title;
        open.active_version = summary.active_version_id;
        Ok((rows, inspector))
    }

    /// Re-reads the open asset (from the store when another writer, the
    /// sync client, changed it) and sends the view only what changed.
    async fn refresh_open(&mut self, reload: bool) -> Vec<ViewUpdate> {
        let Some(mut open) = self.open.take() else {
            return Vec::new();
        };
        let mut updates = Vec::new();
        if reload {
            match self.store.load(&open.asset.id).await {
                Ok(a) => open.asset = a,
                Err(e) => {
                    self.open = Some(open);
                    return vec![ViewUpdate::Notice(format!("Cannot reload the asset: {e}"))];
                }
            }
        }
        let old_title = open.title.clone();
        let had_image = open.active_version.is_some();
        match self.compute(&mut open) {
            Ok((rows, inspector)) => {
                if open.title != old_title {
                    updates.push(ViewUpdate::Title(open.title.clone()));
                }
                match viewmodel::diff_rows(&open.rows, &rows) {
                    RowsDiff::Patch { changed, appended } => {
                        updates.extend(
                            changed
                                .into_iter()
                                .map(|(i, r)| ViewUpdate::MessageRow(i, r)),
                        );
                        if !appended.is_empty() {
                            updates.push(ViewUpdate::MessagesAppended(appended));
                        }
                    }
                    RowsDiff::Replace(all) => updates.push(ViewUpdate::Timeline {
                        title: open.title.clone(),
                        rows: all,
                    }),
                }
                if inspector != open.inspector {
                    updates.push(ViewUpdate::Inspector(inspector.clone()));
                }
                open.rows = rows;
                open.inspector = inspector;
            }
            Err(e) => updates.push(ViewUpdate::Notice(format!("Cannot show this asset: {e}"))),
        }
        let has_image = open.active_version.is_some();
        self.open = Some(open);
        if had_image != has_image {
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
                open.asset = a;
            }
            return Err(e.into());
        }
        self.nudge_sync();
        let mut updates = self.refresh_open(false).await;
        updates.extend(self.refresh_list().await);
        self.view.apply(updates);
        Ok(out)
    }

    async fn send(&mut self, prompt: String, aspect: String, scale: String) -> Result<String> {
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
    }

    async fn rollback(&mut self, version: &str) -> Result<()> {
        let version = version.to_owned();
        self.edit(move |doc, _| Ok(doc.set_active_version(&version, now_millis())?))
            .await
            .map(|_| ())
    }

    /// Sends a failed (or canceled) request again, as a new request.
    async fn retry(&mut self, message: &str) -> Result<String> {
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
    }

    // ------------------------------------------------------------ new assets

    /// Opens the file dialog; the answer comes back as [`Work::Picked`].
    /// The view shows a dialog open until then.
    fn pick_file(&self) {
        let tx = self.work_tx.clone();
        let picked = self.config.picker.pick();
        self.view.apply(vec![ViewUpdate::Picking(true)]);
        tokio::spawn(async move {
            let _ = tx.send(Work::Picked(picked.await));
        });
    }

    /// Creates an asset from an image file: the image becomes version 1
    /// (with a thumbnail), the asset opens.
    pub async fn import(&mut self, path: &Path) -> Result<DocId> {
        let read_err = |source| ControllerError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = tokio::fs::metadata(path).await.map_err(read_err)?;
        if meta.len() > self.config.max_import_bytes {
            return Err(ControllerError::TooLarge {
                path: path.to_owned(),
                size: format::bytes(meta.len()),
                limit: format::bytes(self.config.max_import_bytes),
            });
        }
        let bytes = tokio::fs::read(path).await.map_err(read_err)?;
        let mime = sniff_mime(&bytes).ok_or_else(|| ControllerError::NotAnImage {
            path: path.to_owned(),
        })?;
        let (bytes, described) = tokio::task::spawn_blocking(move || {
            let described = cloud_lambda::images::describe(&bytes)
                .and_then(|(_, w, h)| cloud_lambda::images::thumbnail(&bytes).map(|t| (w, h, t)));
            (bytes, described)
        })
        .await
        .expect("image decoding does not panic");
        let (width, height, (thumb, tw, th)) =
            described.map_err(|e| ControllerError::BadImage {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        let now = now_millis();
        let len = bytes.len() as u64;
        let sha = self.store.put_blob(bytes, mime, now).await?;
        let thumb_len = thumb.len() as u64;
        let thumb_sha = self.store.put_blob(thumb, "image/png", now).await?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        let title = path
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "Untitled".into());
        let mut doc = AssetDoc::create(&title, now);
        let note = doc.append_message(NewMessage::user(format!("Uploaded {name}")), now)?;
        doc.add_version(
            NewVersion {
                blob: BlobRef {
                    sha256: sha,
                    mime: mime.into(),
                    width,
                    height,
                    bytes: len,
                },
                thumbnail: Some(BlobRef {
                    sha256: thumb_sha,
                    mime: "image/png".into(),
                    width: tw,
                    height: th,
                    bytes: thumb_len,
                }),
                parent_version_id: None,
                created_by_message_id: Some(note),
            },
            now,
        )?;
        self.insert_and_open(doc).await
    }

    /// Creates an asset from a prompt: a queued text-to-image request.
    pub async fn new_from_prompt(
        &mut self,
        prompt: &str,
        model_index: usize,
        aspect: &str,
    ) -> Result<DocId> {
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
        self.insert_and_open(doc).await
    }

    async fn insert_and_open(&mut self, doc: AssetDoc) -> Result<DocId> {
        let asset = self.store.insert(DocId::random(), doc).await?;
        let id = asset.id.clone();
        self.nudge_sync();
        self.query.clear();
        let updates = self.refresh_list().await;
        self.view.apply(updates);
        self.open_asset(asset);
        Ok(id)
    }

    // ------------------------------------------------------------ composer

    fn composer_update(&mut self) -> ViewUpdate {
        let has_image = self
            .open
            .as_ref()
            .is_some_and(|o| o.active_version.is_some());
        let vm = self.tools.composer(self.tool, self.model_index, has_image);
        self.model_index = vm.model_index;
        ViewUpdate::Composer(vm)
    }

    // ------------------------------------------------------------ sync

    /// Starts syncing with `token` (replacing a client whose token the
    /// server refused); returns the new client's events.
    async fn sign_in(&mut self, token: String) -> Option<mpsc::UnboundedReceiver<SyncEvent>> {
        let Some(connector) = self.connector.clone() else {
            self.view.apply(vec![ViewUpdate::Notice(
                "this server needs no sign-in".into(),
            )]);
            return None;
        };
        match connector.connect(token).await {
            Ok(parts) => {
                self.nudge = Some(parts.nudge);
                self.view.apply(vec![
                    ViewUpdate::SignIn(String::new()),
                    ViewUpdate::ServerLabel(parts.label),
                    ViewUpdate::Notice(String::new()),
                ]);
                Some(parts.events)
            }
            Err(e) => {
                self.view.apply(vec![ViewUpdate::Notice(e.to_string())]);
                None
            }
        }
    }

    fn nudge_sync(&self) {
        if let Some(n) = &self.nudge {
            n.notify_one();
        }
    }

    async fn on_sync(&mut self, ev: SyncEvent) {
        match ev {
            SyncEvent::Status(s) => {
                let vm = viewmodel::sync_vm(&s, now_millis(), format::local_offset());
                let mut updates = vec![ViewUpdate::Sync(vm)];
                // A refused token (expired, revoked): offer to sign in again.
                if let Some(c) = &self.connector
                    && s.last_error
                        .as_deref()
                        .is_some_and(|e| e.contains("answered 401"))
                {
                    updates.push(ViewUpdate::SignIn(c.url().to_owned()));
                }
                self.view.apply(updates);
            }
            SyncEvent::Pulled(docs) => {
                let mut updates = self.refresh_list().await;
                let open_changed = self
                    .open
                    .as_ref()
                    .is_some_and(|o| docs.contains(&o.asset.id));
                if open_changed {
                    updates.extend(self.refresh_open(true).await);
                }
                self.view.apply(updates);
                // Blobs arrive with the documents that use them.
                let retry: Vec<String> = self.missing.drain().collect();
                for key in retry {
                    self.need_image(key);
                }
            }
        }
    }

    // ------------------------------------------------------------ images

    fn need_image(&mut self, key: String) {
        tracing::debug!(%key, "image wanted");
        if let Some(pixels) = self.images.touch(&key) {
            self.view
                .apply(vec![ViewUpdate::ImageReady { key, pixels }]);
            return;
        }
        if self.decoding.contains(&key) || ImageKey::parse(&key).is_none() {
            return;
        }
        self.wanted.retain(|k| k != &key);
        self.wanted.push(key);
        self.pump_decodes();
    }

    fn pump_decodes(&mut self) {
        while self.decoding.len() < self.config.decode_parallelism.max(1) {
            let Some(key) = self.wanted.pop() else { return };
            let Some(parsed) = ImageKey::parse(&key) else {
                continue;
            };
            self.decoding.insert(key.clone());
            let blobs = self.store.blobs().clone();
            let tx = self.work_tx.clone();
            tokio::task::spawn_blocking(move || {
                let result = match blobs.get(&parsed.sha256) {
                    Ok(bytes) => images::decode(&bytes, parsed.size)
                        .map_err(|e| DecodeFailure::Broken(e.to_string())),
                    Err(BlobError::NotFound(_)) => Err(DecodeFailure::Missing),
                    Err(e) => Err(DecodeFailure::Broken(e.to_string())),
                };
                let _ = tx.send(Work::Decoded { key, result });
            });
        }
    }

    async fn on_work(&mut self, work: Work) {
        match work {
            Work::Decoded { key, result } => {
                self.decoding.remove(&key);
                match result {
                    Ok(pixels) => {
                        let pixels = Arc::new(pixels);
                        let evicted = self.images.insert(key.clone(), pixels.clone());
                        let mut updates = vec![ViewUpdate::ImageReady { key, pixels }];
                        updates.extend(evicted.into_iter().map(ViewUpdate::ImageDropped));
                        self.view.apply(updates);
                    }
                    Err(DecodeFailure::Missing) => {
                        self.missing.insert(key);
                    }
                    Err(DecodeFailure::Broken(e)) => {
                        tracing::warn!(%key, error = %e, "image does not decode");
                    }
                }
                self.pump_decodes();
            }
            Work::Picked(picked) => {
                match picked {
                    Picked::File(path) => {
                        if let Err(e) = self.import(&path).await {
                            self.view.apply(vec![ViewUpdate::Notice(e.to_string())]);
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
        }
    }
}

async fn recv_or_pend<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A view that keeps what it is told in plain data: the reference for what
/// a sequence of updates means, used by tests (and by benchmarks that run
/// without a window).
#[derive(Debug, Default, Clone)]
pub struct ViewState {
    pub assets: Vec<AssetRow>,
    pub asset_total: usize,
    pub selected: String,
    pub has_asset: bool,
    pub title: String,
    pub messages: Vec<MessageRow>,
    pub inspector: InspectorVm,
    pub composer: Option<ComposerVm>,
    pub sync: Option<SyncVm>,
    pub server_label: String,
    /// The server a sign-in is offered for ("" when none is).
    pub sign_in: String,
    pub images: HashMap<String, Arc<Pixels>>,
    pub notice: String,
    /// Single-row updates received (timeline and list), for tests to
    /// check that changes did not replace whole lists.
    pub row_updates: usize,
    pub full_timelines: usize,
    /// The file dialog is open.
    pub picking: bool,
    /// File dialogs that have answered.
    pub picks_answered: usize,
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
            ViewUpdate::Timeline { title, rows } => {
                self.full_timelines += 1;
                self.has_asset = true;
                self.title = title;
                self.messages = rows;
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
            ViewUpdate::Inspector(vm) => self.inspector = vm,
            ViewUpdate::Composer(vm) => self.composer = Some(vm),
            ViewUpdate::Sync(vm) => self.sync = Some(vm),
            ViewUpdate::ServerLabel(l) => self.server_label = l,
            ViewUpdate::SignIn(url) => self.sign_in = url,
            ViewUpdate::ImageReady { key, pixels } => {
                self.images.insert(key, pixels);
            }
            ViewUpdate::ImageDropped(key) => {
                self.images.remove(&key);
            }
            ViewUpdate::Notice(n) => self.notice = n,
            ViewUpdate::Picking(open) => {
                if self.picking && !open {
                    self.picks_answered += 1;
                }
                self.picking = open;
            }
        }
    }

    pub fn versions(&self) -> &[VersionRow] {
        &self.inspector.versions
    }
}
