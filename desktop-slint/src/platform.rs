//! The platform's pieces behind the controller's ports: file dialogs (rfd:
//! the XDG desktop portal on Linux, zenity as fallback), the clipboard
//! (arboard) and the browser (webbrowser).

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use crate::images::Pixels;
use crate::ports::{
    BoxFuture, Browser, Clipboard, ClipboardContent, FilePicker, Picked, SaveDialog,
};

/// rfd answers "nothing picked" both for a canceled dialog and for one
/// that could not open; no person cancels a dialog faster than this.
const NO_DIALOG: Duration = Duration::from_millis(150);

fn answer(path: Option<PathBuf>, started: Instant) -> Picked {
    match path {
        Some(p) => Picked::File(p),
        None if started.elapsed() < NO_DIALOG => Picked::Unavailable,
        None => Picked::Canceled,
    }
}

/// The platform's open-file dialog, for images.
pub struct NativePicker;

impl FilePicker for NativePicker {
    fn pick(&self) -> BoxFuture<Picked> {
        Box::pin(async {
            let started = Instant::now();
            let picked = rfd::AsyncFileDialog::new()
                .set_title("Upload an image")
                .add_filter("Images", &["png", "jpg", "jpeg", "webp"])
                .pick_file()
                .await;
            answer(picked.map(|f| f.path().to_owned()), started)
        })
    }
}

/// The platform's save-file dialog.
pub struct NativeSaver;

impl SaveDialog for NativeSaver {
    fn save(&self, title: &str, suggested: &str, extensions: &[&str]) -> BoxFuture<Picked> {
        let dialog = rfd::AsyncFileDialog::new()
            .set_title(title)
            .set_file_name(suggested)
            .add_filter(extensions.first().copied().unwrap_or("file"), extensions);
        Box::pin(async move {
            let started = Instant::now();
            let picked = dialog.save_file().await;
            answer(picked.map(|f| f.path().to_owned()), started)
        })
    }
}

enum ClipRequest {
    Read(mpsc::Sender<Result<ClipboardContent, String>>),
    Write(Pixels, mpsc::Sender<Result<(), String>>),
}

/// The system clipboard, owned by a thread of its own: on X11 the app
/// serves what it copied for as long as its clipboard lives, so it lives as
/// long as the app.
#[derive(Default)]
pub struct SystemClipboard {
    requests: OnceLock<Mutex<mpsc::Sender<ClipRequest>>>,
}

impl SystemClipboard {
    fn send(&self, r: ClipRequest) -> Result<(), String> {
        let tx = self.requests.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<ClipRequest>();
            std::thread::Builder::new()
                .name("atelier-clipboard".into())
                .spawn(move || serve_clipboard(rx))
                .expect("a thread starts");
            Mutex::new(tx)
        });
        tx.lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(r)
            .map_err(|_| "the clipboard is gone".to_owned())
    }
}

fn serve_clipboard(rx: mpsc::Receiver<ClipRequest>) {
    let mut clipboard: Option<arboard::Clipboard> = None;
    for r in rx {
        if clipboard.is_none() {
            match arboard::Clipboard::new() {
                Ok(c) => clipboard = Some(c),
                Err(e) => {
                    let msg = format!("no clipboard: {e}");
                    match r {
                        ClipRequest::Read(reply) => drop(reply.send(Err(msg))),
                        ClipRequest::Write(_, reply) => drop(reply.send(Err(msg))),
                    }
                    continue;
                }
            }
        }
        let c = clipboard.as_mut().expect("made above");
        match r {
            ClipRequest::Read(reply) => {
                let content = match c.get_image() {
                    Ok(img) => Ok(ClipboardContent::Image(Pixels {
                        width: img.width as u32,
                        height: img.height as u32,
                        rgba: img.bytes.into_owned(),
                    })),
                    Err(_) => match c.get().file_list() {
                        Ok(files) if !files.is_empty() => Ok(ClipboardContent::Files(files)),
                        _ => Ok(ClipboardContent::Other),
                    },
                };
                let _ = reply.send(content);
            }
            ClipRequest::Write(px, reply) => {
                let r = c
                    .set_image(arboard::ImageData {
                        width: px.width as usize,
                        height: px.height as usize,
                        bytes: px.rgba.into(),
                    })
                    .map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
        }
    }
}

impl Clipboard for SystemClipboard {
    fn read(&self) -> Result<ClipboardContent, String> {
        let (tx, rx) = mpsc::channel();
        self.send(ClipRequest::Read(tx))?;
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the clipboard did not answer".to_owned())?
    }

    fn write_image(&self, image: &Pixels) -> Result<(), String> {
        let (tx, rx) = mpsc::channel();
        self.send(ClipRequest::Write(image.clone(), tx))?;
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the clipboard did not answer".to_owned())?
    }
}

/// The user's default browser.
pub struct SystemBrowser;

impl Browser for SystemBrowser {
    fn open(&self, url: &str) -> Result<(), String> {
        webbrowser::open(url).map_err(|e| e.to_string())
    }
}
