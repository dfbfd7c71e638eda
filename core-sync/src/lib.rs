//! `core-sync`: Atelier's local-first core.
//!
//! - [`model`]: the asset document, a typed API over Automerge. No IO.
//! - [`store`]: the local SQLite store (chunks, listing projection, sync
//!   state, blob index).
//! - [`blob`]: the content-addressed blob store on disk.
//! - [`image_header`]: an image's type and size from its header alone.
//! - [`costs`]: cost rollups and the cost CSV (dashboard and `GET /costs`). No IO.
//! - [`backup`]: export, import and verification of a whole store.
//! - [`ids`]: document and entity ids.
//! - [`private_fs`]: owner-only files and directories (stores, blobs, exports).
//! - [`open_lock`]: concurrent openers of one SQLite database take turns.
//! - [`sync`]: the HTTP sync protocol shared with the server.
//! - [`auth`]: signing in with Cognito (`USER_PASSWORD_AUTH`), the token
//!   file (0600) and the session that keeps the access token fresh for the
//!   sync transport.
//!
//! See ARCHITECTURE.md at the repository root for the invariants.

pub mod auth;
pub mod backup;
pub mod blob;
pub mod costs;
pub mod ids;
pub mod image_header;
pub mod model;
pub mod open_lock;
pub mod private_fs;
pub mod store;
pub mod sync;

pub use ids::DocId;
pub use model::AssetDoc;
pub use store::{LocalAsset, Store, StoreOptions};

/// Milliseconds since the Unix epoch, from the system clock. The model never
/// calls this; adapters do and pass the time in.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// This device's name, as a tombstone records who deleted an asset: the
/// host name, or "this device" when the system will not say.
pub fn device_name() -> String {
    let name = gethostname::gethostname()
        .to_string_lossy()
        .trim()
        .to_owned();
    if name.is_empty() {
        "this device".into()
    } else {
        name
    }
}
