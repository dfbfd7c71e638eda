//! What the controller is built with: memory and size limits, the asset
//! to open at start, the platform's dialogs and clipboard, where settings
//! are kept.

use std::path::PathBuf;
use std::sync::Arc;

use super::ports::{Clipboard, FilePicker, SaveDialog};

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
    /// Days an asset stays in the trash before the server purges it (what
    /// the trash counts down to).
    pub trash_retention_days: u32,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            image_budget_bytes: 96 << 20,
            max_import_bytes: core_sync::blob::MAX_BLOB_BYTES,
            decode_parallelism: 2,
            open_at_start: None,
            picker: Arc::new(crate::platform::NativePicker),
            saver: Arc::new(crate::platform::NativeSaver),
            clipboard: Arc::new(crate::platform::SystemClipboard::default()),
            data: None,
            trash_retention_days: 30,
        }
    }
}
