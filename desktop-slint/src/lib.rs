//! The Atelier desktop app: a Slint window over the local-first core.
//!
//! The app is three layers, kept apart so that everything but the last is
//! tested without a window:
//!
//! - [`viewmodel`], [`dashboard`], [`palette`], [`tools`], [`format`],
//!   [`images`], [`settings`], [`trash`]: pure data and functions — the
//!   rows, the inspector, the cost dashboard, the command palette and
//!   shortcuts, the composer's choices, the trash, how times and money
//!   read, image decoding.
//! - [`controller`]: the app's state and behaviour as a task on the tokio
//!   runtime, over small traits for the store, the sync link, dialogs and
//!   the clipboard ([`ports`]); it sends
//!   [`controller::ViewUpdate`]s to a [`controller::View`].
//! - [`ui`]: the Slint adapter, the only code touching generated Slint
//!   types; it applies updates on the UI thread. The `.slint` files live in
//!   `desktop-slint/ui/` (views, widgets, theme, and the `Bridge` global).
//!
//! [`backend`] starts the IO side (store, embedded server, the sync link
//! with sign-in from [`signin`]), [`platform`] holds the native dialogs,
//! clipboard and browser, [`instance`] keeps one app per data directory,
//! and [`app`] puts it all together for the `atelier` binary and the tests.

pub mod app;
pub mod backend;
pub mod config;
pub mod controller;
pub mod dashboard;
pub mod format;
pub mod images;
pub mod instance;
pub mod palette;
pub mod platform;
pub mod ports;
pub mod settings;
pub mod signin;
pub mod tools;
pub mod trash;
pub mod ui;
pub mod viewmodel;
