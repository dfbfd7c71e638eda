//! What passes between the UI and the controller: [`UiEvent`]s in (what
//! the user did), [`ViewUpdate`]s out (what the view must change), and the
//! [`View`] that receives them. Plain data; no Slint, no IO.

use std::path::PathBuf;
use std::sync::Arc;

use crate::dashboard::{DashboardFilterForm, DashboardVm};
use crate::images::Pixels;
use crate::palette::PaletteRow;
use crate::settings::SettingsForm;
use crate::tools::ComposerVm;
use crate::trash::TrashVm;
use crate::viewmodel::{
    AssetRow, CompareVm, IncomingVm, InspectorVm, MessageRow, SessionVm, SyncVm,
};

/// What the user did.
#[derive(Debug, Clone, PartialEq)]
pub enum UiEvent {
    Search(String),
    SelectAsset(String),
    /// The next (or previous) asset of the list.
    StepAsset(i32),
    /// Open the native file dialog to pick an image.
    PickFile,
    /// Create an asset from this image file.
    ImportFile(PathBuf),
    /// Files dropped on the window.
    Dropped(Vec<PathBuf>),
    /// An image (or image files) from the clipboard. `explicit`: asked
    /// for by name (menu, palette), so "no image there" is said; Ctrl+V in
    /// a text field with text on the clipboard stays quiet.
    Paste {
        explicit: bool,
    },
    /// What to make of the incoming image: a new version of the open
    /// asset (true) or a new asset (false).
    IncomingAs(bool),
    IncomingCancel,
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
    /// Back to the version before the active one.
    RollbackPrevious,
    Retry(String),
    /// Stop a queued or running request.
    Cancel(String),
    /// The timeline was scrolled to its top: show earlier messages.
    LoadEarlier,
    /// Save a version's original file (`None`: the active version).
    SaveImage(Option<String>),
    /// Copy a version's image to the clipboard (`None`: the active one).
    CopyImage(Option<String>),
    /// Compare a version with the active one (`None`: the one before it).
    Compare(Option<String>),
    CloseCompare,
    ShowDashboard(bool),
    DashboardFilter(DashboardFilterForm),
    ExportCsv,
    /// The palette's text changed (opening it sends the empty query).
    PaletteQuery(String),
    /// Run the palette's result at this position.
    PaletteRun(usize),
    /// Sign in to the remote server with this token.
    SignIn(String),
    /// Sign in through the browser (OAuth with PKCE).
    SignInBrowser,
    SignOut,
    GoOffline,
    GoOnline,
    SaveSettings(SettingsForm),
    /// A row on screen shows this image key and has no pixels for it.
    NeedImage(String),
    DismissNotice,
    /// Rename an asset (from the list or the timeline's header).
    Rename {
        id: String,
        title: String,
    },
    /// Move an asset to the trash (`None`: the open one).
    Delete(Option<String>),
    /// Take back the last deletion (the Undo bar).
    Undo,
    /// The Undo bar was dismissed.
    DismissUndo,
    /// Open (true) or close the trash.
    ShowTrash(bool),
    /// Take an asset out of the trash.
    Restore(String),
    Shutdown,
}

/// Which main view is shown beside the asset list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Screen {
    #[default]
    Asset,
    Dashboard,
}

/// Things only the UI can do (focus, sheets), asked for by the controller
/// (from the palette).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiCommand {
    FocusSearch,
    FocusComposer,
    NewAsset,
    Shortcuts,
    Settings,
    TokenSheet,
    About,
    Quit,
    /// Edit the open asset's title in place.
    Rename,
}

/// Where an image key is shown, so a decoded image reaches its rows
/// without a scan of every list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowRefs {
    pub assets: Vec<usize>,
    pub messages: Vec<usize>,
    pub versions: Vec<usize>,
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
    /// An asset opened: its title and newest messages (show the newest);
    /// `earlier` messages are not loaded yet.
    Timeline {
        title: String,
        rows: Vec<MessageRow>,
        earlier: usize,
    },
    NoAsset,
    Title(String),
    MessageRow(usize, MessageRow),
    /// New entries at the end (show the newest).
    MessagesAppended(Vec<MessageRow>),
    /// Earlier entries loaded at the top; `earlier` are still not loaded.
    MessagesPrepended {
        rows: Vec<MessageRow>,
        earlier: usize,
    },
    Inspector(InspectorVm),
    Composer(ComposerVm),
    Sync(SyncVm),
    ServerLabel(String),
    Session(SessionVm),
    ImageReady {
        key: String,
        pixels: Arc<Pixels>,
        at: RowRefs,
    },
    ImageDropped {
        key: String,
        at: RowRefs,
    },
    /// Something the user should read (an error); empty clears it.
    Notice(String),
    /// Something that went well (a file saved); empty clears it.
    Info(String),
    /// A native dialog is open (true) or has answered (false).
    Picking(bool),
    /// An image arrived (drop, paste) while an asset is open: ask what it
    /// becomes. `None` closes the question.
    Incoming(Option<IncomingVm>),
    Compare(Option<CompareVm>),
    Screen(Screen),
    Dashboard(Box<DashboardVm>),
    Palette(Vec<PaletteRow>),
    Ui(UiCommand),
    Settings(SettingsForm),
    /// The trash sheet: open or not, and its rows.
    Trash(TrashVm),
    /// The Undo bar after a deletion: its sentence; `None` hides it.
    Undo(Option<String>),
}

/// Where updates go. Called from the controller's task; implementations
/// hand the updates to their UI thread.
pub trait View: Send + Sync + 'static {
    fn apply(&self, updates: Vec<ViewUpdate>);
}
