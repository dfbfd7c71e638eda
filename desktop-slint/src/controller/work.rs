//! Work the controller starts off its own task (dialogs, reading files and
//! the clipboard, writing images out, reading costs, decoding) and the
//! [`Work`] message each sends back when it is done. The controller's task
//! never waits on any of it; it handles the message like any other event.

use std::path::PathBuf;
use std::sync::Arc;

use core_sync::blob::BlobStore;
use core_sync::ids::DocId;
use core_sync::model::Millis;
use tokio::sync::mpsc;

use super::costbook::{self, AssetCosts};
use super::decoder::Decoded;
use super::error::Result;
use super::exports;
use super::imports::{self, IncomingImage};
use super::ports::{AssetStore, Clipboard, FilePicker, Picked, SaveDialog};
use crate::format;

/// What a dialog that could not open says.
pub const NO_DIALOG: &str = "No file dialog could open: install xdg-desktop-portal (or zenity).";

/// Background work finished.
pub enum Work {
    Decoded {
        key: String,
        result: Decoded,
    },
    Picked(Picked),
    Incoming(Vec<Result<IncomingImage>>, bool),
    /// The save dialog closed and what it chose is written: what to tell
    /// the user.
    Saved(std::result::Result<String, String>),
    ExportTo(Picked),
    /// A message for the user: `Ok` informs (empty: nothing to say), `Err`
    /// warns.
    Done(std::result::Result<String, String>),
    Costs(Vec<AssetCosts>),
    CostProgress(usize, usize),
}

/// Starts background work; each job ends by sending one [`Work`] (or,
/// for reading costs, progress first).
pub struct Background {
    tx: mpsc::UnboundedSender<Work>,
    picker: Arc<dyn FilePicker>,
    saver: Arc<dyn SaveDialog>,
    clipboard: Arc<dyn Clipboard>,
    max_import_bytes: u64,
}

impl Background {
    pub fn new(
        tx: mpsc::UnboundedSender<Work>,
        picker: Arc<dyn FilePicker>,
        saver: Arc<dyn SaveDialog>,
        clipboard: Arc<dyn Clipboard>,
        max_import_bytes: u64,
    ) -> Self {
        Background {
            tx,
            picker,
            saver,
            clipboard,
            max_import_bytes,
        }
    }

    /// Opens the file dialog: [`Work::Picked`].
    pub fn pick_file(&self) {
        let tx = self.tx.clone();
        let picked = self.picker.pick();
        tokio::spawn(async move {
            let _ = tx.send(Work::Picked(picked.await));
        });
    }

    /// Reads and checks files: [`Work::Incoming`].
    pub fn read_files(&self, paths: Vec<PathBuf>, ask: bool) {
        let tx = self.tx.clone();
        let max = self.max_import_bytes;
        tokio::spawn(async move {
            let _ = tx.send(Work::Incoming(imports::read_paths(paths, max).await, ask));
        });
    }

    /// Reads the images on the clipboard: [`Work::Incoming`]; an empty
    /// clipboard says so only when the user asked to paste (`explicit`).
    pub fn paste(&self, explicit: bool) {
        let tx = self.tx.clone();
        let clipboard = self.clipboard.clone();
        let max = self.max_import_bytes;
        tokio::spawn(async move {
            let work = match imports::read_clipboard(clipboard, max).await {
                Ok(Some(images)) => Work::Incoming(images, true),
                Ok(None) if explicit => Work::Done(Err(
                    "The clipboard holds no image: copy an image or an image file first.".into(),
                )),
                Ok(None) => return,
                Err(e) => Work::Done(Err(format!("Cannot read the clipboard: {e}"))),
            };
            let _ = tx.send(work);
        });
    }

    /// Asks where to save the image `sha` and writes it there:
    /// [`Work::Saved`].
    pub fn save_image(&self, blobs: BlobStore, sha: String, mime: String, suggested: &str) {
        let dialog = self
            .saver
            .save("Save image as", suggested, exports::extensions(&mime));
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let picked = dialog.await;
            let _ = tx.send(Work::Saved(save_to(blobs, sha, mime, picked).await));
        });
    }

    /// Puts the full pixels of image `sha` on the clipboard: [`Work::Done`].
    pub fn copy_image(&self, blobs: BlobStore, sha: String, label: String) {
        let clipboard = self.clipboard.clone();
        let tx = self.tx.clone();
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
    }

    /// Asks where to export the costs: [`Work::ExportTo`].
    pub fn export_dialog(&self, suggested: &str) {
        let dialog = self.saver.save("Export costs as CSV", suggested, &["csv"]);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(Work::ExportTo(dialog.await));
        });
    }

    /// Reads the costs of `stale` assets: [`Work::CostProgress`] as it
    /// goes, then [`Work::Costs`].
    pub fn read_costs(&self, store: Arc<dyn AssetStore>, stale: Vec<(DocId, Millis)>) {
        let total = stale.len();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let progress_tx = tx.clone();
            let read = costbook::read(store, stale, move |n| {
                let _ = progress_tx.send(Work::CostProgress(n, total));
            })
            .await;
            let _ = tx.send(Work::Costs(read));
        });
    }

    /// Where a finished decode goes: [`Work::Decoded`].
    pub fn decoded(&self) -> impl Fn(String, Decoded) + Clone + Send + 'static {
        let tx = self.tx.clone();
        move |key, result| {
            let _ = tx.send(Work::Decoded { key, result });
        }
    }
}

/// Writes image `sha` where the save dialog pointed: what to tell the user.
async fn save_to(
    blobs: BlobStore,
    sha: String,
    mime: String,
    picked: Picked,
) -> std::result::Result<String, String> {
    match picked {
        Picked::File(path) => {
            tokio::task::spawn_blocking(move || exports::save_blob(&blobs, &sha, &mime, &path))
                .await
                .expect("saving does not panic")
                .map(|p| format!("Saved the image to {}", p.display()))
                .map_err(|e| e.to_string())
        }
        Picked::Unavailable => Err(NO_DIALOG.into()),
        Picked::Canceled => Ok(String::new()),
    }
}
