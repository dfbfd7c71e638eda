//! The controller's ports as tests play them: dialogs that answer with a
//! given path, an in-memory clipboard, and a sync link driven by the test.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use desktop_slint::controller::ports::BoxFuture;
use desktop_slint::controller::{
    Clipboard, ClipboardContent, ControllerConfig, FilePicker, LinkEvent, Picked, SaveDialog,
    SyncLink,
};
use desktop_slint::images::Pixels;
use desktop_slint::settings::Settings;
use tokio::sync::mpsc;

/// A file dialog that answers what it is given.
pub struct Answer(pub Picked);

impl FilePicker for Answer {
    fn pick(&self) -> BoxFuture<Picked> {
        let p = self.0.clone();
        Box::pin(async move { p })
    }
}

/// A save dialog that answers `path` (and records what it was asked).
#[derive(Default)]
pub struct SaveTo {
    pub path: Mutex<Option<PathBuf>>,
    pub asked: Mutex<Vec<(String, String)>>,
}

impl SaveTo {
    pub fn new(path: PathBuf) -> Arc<SaveTo> {
        Arc::new(SaveTo {
            path: Mutex::new(Some(path)),
            asked: Mutex::default(),
        })
    }

    pub fn answer(&self, path: PathBuf) {
        *self.path.lock().unwrap() = Some(path);
    }
}

impl SaveDialog for SaveTo {
    fn save(&self, title: &str, suggested: &str, _: &[&str]) -> BoxFuture<Picked> {
        self.asked
            .lock()
            .unwrap()
            .push((title.to_owned(), suggested.to_owned()));
        let p = self.path.lock().unwrap().clone();
        Box::pin(async move { p.map_or(Picked::Canceled, Picked::File) })
    }
}

/// A clipboard in memory (the real one is tested under Xvfb).
#[derive(Default)]
pub struct MemoryClipboard(pub Mutex<Option<ClipboardContent>>);

impl Clipboard for MemoryClipboard {
    fn read(&self) -> Result<ClipboardContent, String> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .clone()
            .unwrap_or(ClipboardContent::Other))
    }

    fn write_image(&self, image: &Pixels) -> Result<(), String> {
        *self.0.lock().unwrap() = Some(ClipboardContent::Image(image.clone()));
        Ok(())
    }
}

/// Controller settings for tests: no native dialog, an in-memory clipboard.
pub fn test_config() -> ControllerConfig {
    ControllerConfig {
        picker: Arc::new(Answer(Picked::Unavailable)),
        saver: Arc::new(SaveTo::default()),
        clipboard: Arc::new(MemoryClipboard::default()),
        ..ControllerConfig::default()
    }
}

/// A sync link the test plays: it sends the events, the link records what
/// the controller asked of it.
#[derive(Default)]
pub struct TestLink {
    pub nudges: Mutex<usize>,
    pub calls: Mutex<Vec<String>>,
}

#[async_trait]
impl SyncLink for TestLink {
    fn nudge(&self) {
        *self.nudges.lock().unwrap() += 1;
    }
    async fn sign_in_token(&self, _: String) {
        self.calls.lock().unwrap().push("sign_in_token".into());
    }
    async fn sign_in_browser(&self) {
        self.calls.lock().unwrap().push("sign_in_browser".into());
    }
    async fn sign_out(&self) {
        self.calls.lock().unwrap().push("sign_out".into());
    }
    async fn pause(&self) {
        self.calls.lock().unwrap().push("pause".into());
    }
    async fn resume(&self) {
        self.calls.lock().unwrap().push("resume".into());
    }
    async fn apply_settings(&self, _: &Settings) {
        self.calls.lock().unwrap().push("apply_settings".into());
    }
}

/// A test link and the sender of its events.
pub fn test_link() -> (
    Arc<TestLink>,
    mpsc::UnboundedSender<LinkEvent>,
    mpsc::UnboundedReceiver<LinkEvent>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Arc::new(TestLink::default()), tx, rx)
}
