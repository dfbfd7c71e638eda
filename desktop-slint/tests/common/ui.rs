//! Helpers for the headless UI tests (Slint's testing backend with the
//! software renderer): start the backend, wait on what the window shows,
//! find elements, press keys, save snapshots.

use std::path::PathBuf;
use std::time::Duration;

use desktop_slint::ui::AppWindow;
use i_slint_backend_testing::{ElementHandle, TestingBackend, TestingBackendOptions};
use slint::ComponentHandle;
use slint::platform::{Key, WindowEvent};

/// The testing backend, with the software renderer and a real event loop
/// (once per process: one test per file).
pub fn init_backend() {
    slint::platform::set_platform(Box::new(TestingBackend::new(TestingBackendOptions {
        mock_time: false,
        threading: true,
        renderer_name: Some("software".into()),
    })))
    .unwrap();
}

/// The app in a 1360×840 window, shown, its worker started.
pub fn start_app(
    config: desktop_slint::config::Config,
    backend: desktop_slint::backend::BackendOptions,
    controller: desktop_slint::controller::ControllerConfig,
) -> (AppWindow, desktop_slint::app::Worker) {
    let window = AppWindow::new().unwrap();
    window
        .window()
        .set_size(slint::LogicalSize::new(1360.0, 840.0));
    let worker = desktop_slint::app::start(&window, config, backend, controller).unwrap();
    window.show().unwrap();
    (window, worker)
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/images")
        .join(name)
}

pub async fn sleep(ms: u64) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    slint::Timer::single_shot(Duration::from_millis(ms), move || {
        let _ = tx.send(());
    });
    let _ = rx.await;
}

/// Polls `ok` on the UI thread (up to 30 s) while the event loop runs,
/// drawing a frame each turn as a screen would (list rows are made, and
/// ask for their images, when drawn).
pub async fn until(w: &AppWindow, what: &str, ok: impl Fn() -> bool) {
    for _ in 0..300 {
        let _ = w.window().take_snapshot();
        if ok() {
            return;
        }
        sleep(100).await;
    }
    snapshot(w, "failure");
    panic!("timed out waiting for {what}");
}

pub fn element(w: &AppWindow, id: &str) -> ElementHandle {
    ElementHandle::find_by_element_id(w, id)
        .find(|e| e.is_valid())
        .unwrap_or_else(|| panic!("no element {id} on screen"))
}

pub fn shows(w: &AppWindow, text: &str) -> bool {
    ElementHandle::find_by_accessible_label(w, text).any(|e| e.is_valid() && e.size().width > 0.0)
}

/// Presses `text` (a character or a `Key`), with Control held if `ctrl`.
pub fn press(w: &AppWindow, text: &str, ctrl: bool, shift: bool) {
    let win = w.window();
    let key = |k: Key| -> slint::SharedString { k.into() };
    if ctrl {
        win.dispatch_event(WindowEvent::KeyPressed {
            text: key(Key::Control),
        });
    }
    if shift {
        win.dispatch_event(WindowEvent::KeyPressed {
            text: key(Key::Shift),
        });
    }
    win.dispatch_event(WindowEvent::KeyPressed { text: text.into() });
    win.dispatch_event(WindowEvent::KeyReleased { text: text.into() });
    if shift {
        win.dispatch_event(WindowEvent::KeyReleased {
            text: key(Key::Shift),
        });
    }
    if ctrl {
        win.dispatch_event(WindowEvent::KeyReleased {
            text: key(Key::Control),
        });
    }
}

/// Types `s` into whatever has the keyboard.
pub fn type_text(w: &AppWindow, s: &str) {
    for c in s.chars() {
        press(w, &c.to_string(), false, false);
    }
}

pub fn snapshot(w: &AppWindow, name: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-headless");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = w
        .window()
        .take_snapshot()
        .expect("software renderer snapshots");
    let img =
        image::RgbaImage::from_raw(shot.width(), shot.height(), shot.as_bytes().to_vec()).unwrap();
    let path = dir.join(format!("{name}.png"));
    img.save(&path).unwrap();
    eprintln!("snapshot: {}", path.display());
}
