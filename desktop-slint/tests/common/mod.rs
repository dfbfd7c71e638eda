//! Shared test harness: a recording view (the [`ViewState`] test double),
//! devices (controller + backend), test ports (dialogs, clipboard, a sync
//! link the test plays), and fixture images.
#![allow(dead_code)]

pub mod auth;
pub mod ports;
pub mod ui;
mod view_state;

pub use view_state::ViewState;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloud_lambda::registry::{BUILTIN, Registry};
use core_sync::store::{Store, StoreOptions};
use desktop_slint::backend::{Backend, BackendOptions};
use desktop_slint::config::Config;
use desktop_slint::controller::{
    Controller, ControllerConfig, LinkEvent, UiEvent, View, ViewUpdate,
};
use desktop_slint::tools::{Keys, Tools};
use tokio::sync::{Notify, mpsc};

/// A view that keeps the state the updates describe, and wakes waiters.
#[derive(Default)]
pub struct Recorder {
    state: Mutex<ViewState>,
    changed: Notify,
}

impl View for Recorder {
    fn apply(&self, updates: Vec<ViewUpdate>) {
        let mut s = self.state.lock().unwrap();
        for u in updates {
            s.apply(u);
        }
        drop(s);
        self.changed.notify_waiters();
    }
}

impl Recorder {
    pub fn now(&self) -> ViewState {
        self.state.lock().unwrap().clone()
    }

    /// Waits (up to 30 s) until `pred` holds; panics naming `what`.
    pub async fn wait(&self, what: &str, pred: impl Fn(&ViewState) -> bool) -> ViewState {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let s = self.state.lock().unwrap();
                if pred(&s) {
                    return s.clone();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let s = self.now();
                panic!(
                    "timed out waiting for {what}; view: assets={:?} title={:?} messages={:#?} sync={:?} notice={:?}",
                    s.assets.iter().map(|a| &a.title).collect::<Vec<_>>(),
                    s.title,
                    s.messages
                        .iter()
                        .map(|m| (&m.kind, &m.text, &m.status_label, &m.error))
                        .collect::<Vec<_>>(),
                    s.sync,
                    s.notice
                );
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), notified).await;
        }
    }
}

/// A controller with a view, driven by events.
pub struct Device {
    pub events: mpsc::UnboundedSender<UiEvent>,
    pub view: Arc<Recorder>,
    pub backend: Option<Backend>,
    task: tokio::task::JoinHandle<()>,
}

impl Device {
    pub fn send(&self, ev: UiEvent) {
        self.events.send(ev).unwrap();
    }

    pub async fn stop(mut self) {
        let _ = self.events.send(UiEvent::Shutdown);
        let _ = (&mut self.task).await;
        if let Some(b) = self.backend.take() {
            b.stop().await;
        }
    }
}

/// A device over a started backend.
pub async fn device(config: Config, options: BackendOptions) -> Device {
    device_with(config, options, ports::test_config()).await
}

/// A device over a started backend, with these controller settings.
pub async fn device_with(
    config: Config,
    options: BackendOptions,
    controller: ControllerConfig,
) -> Device {
    let mut backend = Backend::start(&config, options).await.unwrap();
    let view = Arc::new(Recorder::default());
    let controller = Controller::new(
        Arc::new(backend.store.clone()),
        backend.tools.clone(),
        view.clone(),
        controller,
    );
    let (events, rx) = mpsc::unbounded_channel();
    let link_events = backend.link_events.take().unwrap();
    let task = tokio::spawn(controller.run(rx, backend.link.clone(), link_events));
    Device {
        events,
        view,
        backend: Some(backend),
        task,
    }
}

pub fn tools(keys: Keys) -> Tools {
    Tools::new(Registry::parse(BUILTIN).unwrap(), keys)
}

/// A controller over a store, with a sync link the test plays itself.
pub struct Local {
    pub store: Store,
    pub view: Arc<Recorder>,
    pub events: mpsc::UnboundedSender<UiEvent>,
    /// Link events, as the sync link would send them.
    pub pulled: mpsc::UnboundedSender<LinkEvent>,
    pub link: Arc<ports::TestLink>,
    pub _dir: tempfile::TempDir,
}

impl Local {
    pub fn send(&self, ev: UiEvent) {
        self.events.send(ev).unwrap();
    }
}

pub async fn local(keys: Keys, config: ControllerConfig) -> Local {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("data"), StoreOptions::default())
        .await
        .unwrap();
    let view = Arc::new(Recorder::default());
    let controller = Controller::new(Arc::new(store.clone()), tools(keys), view.clone(), config);
    let (events, rx) = mpsc::unbounded_channel();
    let (link, pulled, link_rx) = ports::test_link();
    tokio::spawn(controller.run(rx, link.clone(), link_rx));
    Local {
        store,
        view,
        events,
        pulled,
        link,
        _dir: dir,
    }
}

/// Sync tuned for tests: quick polls and quick retries.
pub fn fast_engine() -> core_sync::sync::engine::EngineConfig {
    core_sync::sync::engine::EngineConfig {
        fast_poll: Duration::from_millis(100),
        idle_poll_min: Duration::from_millis(200),
        idle_poll_max: Duration::from_secs(1),
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(500),
        ..core_sync::sync::engine::EngineConfig::default()
    }
}

/// A PNG of `w`×`h` with a colour pattern from `seed`.
pub fn png(w: u32, h: u32, seed: u8) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(w, h, |x, y| {
        image::Rgba([
            (x * 255 / w.max(1)) as u8 ^ seed,
            (y * 255 / h.max(1)) as u8,
            seed.wrapping_mul(37),
            255,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

pub fn write_png(dir: &Path, name: &str, w: u32, h: u32, seed: u8) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, png(w, h, seed)).unwrap();
    path
}
