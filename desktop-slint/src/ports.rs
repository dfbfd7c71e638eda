//! The controller's seams to the outside world, as small traits: the local
//! store, the sync link, and the platform's dialogs and clipboard. The app
//! plugs in the real ones (`backend`, `platform`); tests plug in theirs.
//! Nothing here knows about Slint or about how the backend is built.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use async_trait::async_trait;
use core_sync::blob::BlobStore;
use core_sync::ids::DocId;
use core_sync::model::{AssetDoc, Millis};
use core_sync::store::{AssetListing, LocalAsset, Store, StoreError, TrashedAsset};
use core_sync::sync::client::SyncEvent;

use crate::images::Pixels;
use crate::settings::Settings;
use crate::tools::Keys;

/// The local store as the controller uses it.
#[async_trait]
pub trait AssetStore: Send + Sync + 'static {
    async fn list(&self) -> Result<Vec<AssetListing>, StoreError>;
    /// The assets in the trash, most recently deleted first.
    async fn list_trash(&self) -> Result<Vec<TrashedAsset>, StoreError>;
    async fn load(&self, id: &DocId) -> Result<LocalAsset, StoreError>;
    /// Applies what others stored since `asset` was loaded.
    async fn refresh(&self, asset: &mut LocalAsset) -> Result<bool, StoreError>;
    async fn save(&self, asset: &mut LocalAsset) -> Result<(), StoreError>;
    async fn insert(&self, id: DocId, doc: AssetDoc) -> Result<LocalAsset, StoreError>;
    async fn put_blob(&self, bytes: Vec<u8>, mime: &str, now: Millis)
    -> Result<String, StoreError>;
    /// The blob files, for reads on blocking threads.
    fn blobs(&self) -> BlobStore;
}

#[async_trait]
impl AssetStore for Store {
    async fn list(&self) -> Result<Vec<AssetListing>, StoreError> {
        Store::list(self).await
    }
    async fn list_trash(&self) -> Result<Vec<TrashedAsset>, StoreError> {
        Store::list_trash(self).await
    }
    async fn load(&self, id: &DocId) -> Result<LocalAsset, StoreError> {
        Store::load(self, id).await
    }
    async fn refresh(&self, asset: &mut LocalAsset) -> Result<bool, StoreError> {
        Store::refresh(self, asset).await
    }
    async fn save(&self, asset: &mut LocalAsset) -> Result<(), StoreError> {
        Store::save(self, asset).await
    }
    async fn insert(&self, id: DocId, doc: AssetDoc) -> Result<LocalAsset, StoreError> {
        Store::insert(self, id, doc).await
    }
    async fn put_blob(
        &self,
        bytes: Vec<u8>,
        mime: &str,
        now: Millis,
    ) -> Result<String, StoreError> {
        Store::put_blob(self, bytes, mime, now).await
    }
    fn blobs(&self) -> BlobStore {
        Store::blobs(self).clone()
    }
}

/// What the sync link tells the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    Sync(SyncEvent),
    /// The session changed: who is signed in where, what can be done.
    Session(SessionState),
    /// A sign-in or sign-out failed; the sentence says why.
    Failed(String),
    /// No sync client runs, and why ("offline by choice", "sign in to
    /// sync with …").
    NotSyncing(String),
    /// Provider keys changed (settings): the composer says what it can run.
    Keys(Keys),
}

/// The sign-in side of the link, for the status bar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionState {
    /// "embedded server", the remote URL, or "local only".
    pub server: String,
    /// The user signed in, when known.
    pub user: Option<String>,
    /// A sign-in is needed (none yet, or the session ended).
    pub needs_sign_in: bool,
    /// Sign-in happens in the browser (OAuth); otherwise with a token.
    pub browser: bool,
    /// A browser sign-in is under way.
    pub waiting: bool,
    /// Signed in with something that can be signed out of.
    pub can_sign_out: bool,
    /// Syncing is paused by the user.
    pub paused: bool,
    /// Syncing at all (not `--offline`).
    pub syncs: bool,
}

/// The sync client and sign-in as the controller drives them. Events come
/// back on the channel the link was made with; nothing here waits for the
/// network (a browser sign-in reports its end as an event).
#[async_trait]
pub trait SyncLink: Send + Sync + 'static {
    /// Push local changes soon.
    fn nudge(&self);
    /// Sign in with a pasted token (servers without browser sign-in).
    async fn sign_in_token(&self, token: String);
    /// Start a browser sign-in.
    async fn sign_in_browser(&self);
    async fn sign_out(&self);
    /// Stop syncing until [`Self::resume`] (changes stay local meanwhile).
    async fn pause(&self);
    async fn resume(&self);
    /// New settings: polling cadence and provider keys take effect now.
    async fn apply_settings(&self, settings: &Settings);
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

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How the user picks an image file: the native dialog in the app; tests
/// (which cannot drive a native dialog) hand over a fixture.
pub trait FilePicker: Send + Sync + 'static {
    fn pick(&self) -> BoxFuture<Picked>;
}

/// How the user names a file to save: the native dialog in the app, a
/// fixed path in tests.
pub trait SaveDialog: Send + Sync + 'static {
    /// `suggested` is a file name; `extensions` the ones the format has.
    fn save(&self, title: &str, suggested: &str, extensions: &[&str]) -> BoxFuture<Picked>;
}

/// What the clipboard holds, as far as images go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClipboardContent {
    Image(Pixels),
    Files(Vec<PathBuf>),
    /// No image and no files (text, or nothing).
    Other,
}

/// The system clipboard. Calls block (run them on blocking threads).
pub trait Clipboard: Send + Sync + 'static {
    fn read(&self) -> Result<ClipboardContent, String>;
    fn write_image(&self, image: &Pixels) -> Result<(), String>;
}

/// Opens URLs in the user's browser.
pub trait Browser: Send + Sync + 'static {
    fn open(&self, url: &str) -> Result<(), String>;
}

/// A path with the extension of its format: `photo` → `photo.png`; a
/// name with another extension gets the right one appended.
pub fn with_extension(path: &Path, extensions: &[&str]) -> PathBuf {
    let has = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| x.eq_ignore_ascii_case(e)));
    match (has, extensions.first()) {
        (false, Some(ext)) => {
            let mut s = path.as_os_str().to_owned();
            s.push(".");
            s.push(ext);
            PathBuf::from(s)
        }
        _ => path.to_owned(),
    }
}
