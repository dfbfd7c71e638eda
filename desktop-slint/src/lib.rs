//! The Atelier desktop app: a Slint window over the local-first core.
//!
//! The app is three layers, kept apart so that everything but the last is
//! tested without a window:
//!
//! - [`viewmodel`], [`tools`], [`format`] and [`images`]: pure data and
//!   functions — the rows, the inspector, the composer's choices, how
//!   times and money read, image decoding and the image cache.
//! - [`controller`]: the app's state and behaviour as a task on the tokio
//!   runtime. It reads and writes the store, nudges sync, decodes images
//!   on blocking threads, and sends [`controller::ViewUpdate`]s to a
//!   [`controller::View`].
//! - [`ui`]: the Slint adapter, the only code touching generated Slint
//!   types; it applies updates on the UI thread. The `.slint` files live in
//!   `desktop-slint/ui/` (views, widgets, theme, and the `Bridge` global).
//!
//! [`backend`] starts the IO side (store, embedded server, sync client) and
//! [`app`] puts it all together for the `atelier` binary and the tests.

pub mod app;
pub mod backend;
pub mod config;
pub mod controller;
pub mod format;
pub mod images;
pub mod tools;
pub mod ui;
pub mod viewmodel;
