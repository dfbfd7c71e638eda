//! The app assembled: the Slint window on the main thread, the controller
//! and the backend on a tokio runtime in a thread of their own. The UI
//! thread only applies updates; it never waits for IO or the network.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slint::ComponentHandle;
use tokio::sync::mpsc;

use crate::backend::{Backend, BackendOptions};
use crate::config::Config;
use crate::controller::{Controller, ControllerConfig, UiEvent, View, ViewUpdate};
use crate::instance::{Instance, InstanceError};
use crate::ui::{self, AppWindow, SlintView};
use crate::viewmodel;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("the window cannot open: {0}")]
    Platform(#[from] slint::PlatformError),
    #[error("cannot start the background runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Instance(#[from] InstanceError),
}

/// Start-up timings, measured from `started`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartupTimes {
    /// The first frame drawn (GPU renderers report it; `None` otherwise).
    pub first_frame: Option<Duration>,
    /// The event loop ran its first turn with the window shown.
    pub window_shown: Option<Duration>,
    /// The asset list had its rows.
    pub assets_shown: Option<Duration>,
    /// The asset opened at start had its timeline (with `--open`).
    pub timeline_shown: Option<Duration>,
}

/// Options beyond [`Config`], for benchmarks and tests.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// When the process started (for [`StartupTimes`]); now if `None`.
    pub started: Option<Instant>,
    /// Quit once the asset list (and the asset to open, if any) is shown
    /// and a frame is drawn, printing the timings and memory as one JSON
    /// line on stdout.
    pub exit_after_startup: bool,
    /// An asset to open at start.
    pub open: Option<String>,
}

/// The background half of a running app: stop it after the event loop.
pub struct Worker {
    events: mpsc::UnboundedSender<UiEvent>,
    thread: std::thread::JoinHandle<()>,
}

impl Worker {
    /// Asks the controller to stop and waits for the backend to close.
    pub fn stop(self) {
        let _ = self.events.send(UiEvent::Shutdown);
        let _ = self.thread.join();
    }
}

/// Wires `window` to a controller over the backend `config` describes,
/// running on a runtime thread of its own. The window is not shown.
pub fn start(
    window: &AppWindow,
    config: Config,
    backend: BackendOptions,
    controller: ControllerConfig,
) -> Result<Worker, AppError> {
    let (events, rx) = mpsc::unbounded_channel();
    ui::install(window, events.clone());
    let controller = ControllerConfig {
        data: controller.data.or(Some(config.data.clone())),
        trash_retention_days: config.trash_retention_days,
        ..controller
    };
    let view: Arc<dyn View> = Arc::new(SlintView::new(window));
    let thread = spawn_worker(config, backend, controller, view, rx)?;
    Ok(Worker { events, thread })
}

/// Runs the app until its window closes.
pub fn run(config: Config, options: RunOptions) -> Result<(), AppError> {
    let started = options.started.unwrap_or_else(Instant::now);
    // One app per data directory: a second one raises the first and stops.
    let instance = Instance::acquire(&config.data)?;
    let window = AppWindow::new()?;
    {
        let weak = window.as_weak();
        instance.listen(move || {
            let _ = weak.upgrade_in_event_loop(|w| ui::raise(&w));
        });
    }
    let times = Arc::new(Mutex::new(StartupTimes::default()));
    watch_startup(&window, started, times.clone(), options.exit_after_startup);
    let waits_for_timeline = options.open.is_some();
    if !waits_for_timeline {
        times.lock().unwrap().timeline_shown = Some(Duration::ZERO);
    }
    let worker = start(
        &window,
        config,
        BackendOptions::default(),
        ControllerConfig {
            open_at_start: options.open.clone(),
            ..ControllerConfig::default()
        },
    )?;
    window.show()?;
    {
        let times = times.clone();
        slint::Timer::single_shot(Duration::ZERO, move || {
            times.lock().unwrap().window_shown = Some(started.elapsed());
        });
    }
    slint::run_event_loop()?;
    window.hide()?;
    worker.stop();
    drop(instance);
    if options.exit_after_startup {
        let t = *times.lock().unwrap();
        let ms = |d: Option<Duration>| {
            d.map(|d| serde_json::json!(d.as_secs_f64() * 1000.0))
                .unwrap_or(serde_json::Value::Null)
        };
        let (rss, peak) = memory_kib();
        println!(
            "{}",
            serde_json::json!({
                "first_frame_ms": ms(t.first_frame),
                "window_shown_ms": ms(t.window_shown),
                "assets_shown_ms": ms(t.assets_shown),
                "timeline_shown_ms": if waits_for_timeline { ms(t.timeline_shown) } else { serde_json::Value::Null },
                "rss_kib": rss,
                "peak_rss_kib": peak,
            })
        );
    }
    Ok(())
}

/// Records the first frame and the first filled asset list; quits after
/// both when asked to.
fn watch_startup(
    window: &AppWindow,
    started: Instant,
    times: Arc<Mutex<StartupTimes>>,
    exit_after: bool,
) {
    let done = move |t: &StartupTimes| {
        if exit_after
            && t.assets_shown.is_some()
            && t.timeline_shown.is_some()
            && (t.first_frame.is_some() || t.window_shown.is_some())
        {
            // Let one more frame render the rows, then quit.
            slint::Timer::single_shot(Duration::from_millis(50), || {
                let _ = slint::quit_event_loop();
            });
        }
    };
    let frame_times = times.clone();
    let frame_done = done;
    let notifier = window.window().set_rendering_notifier(move |state, _| {
        if let slint::RenderingState::AfterRendering = state {
            let mut t = frame_times.lock().unwrap();
            if t.first_frame.is_none() {
                t.first_frame = Some(started.elapsed());
                frame_done(&t);
            }
        }
    });
    let software = notifier.is_err();
    let list_times = times.clone();
    let list_done = done;
    ui::on_first_assets(move || {
        let mut t = list_times.lock().unwrap();
        t.assets_shown = Some(started.elapsed());
        if software || t.first_frame.is_some() {
            list_done(&t);
        }
    });
    ui::on_first_timeline(move || {
        let mut t = times.lock().unwrap();
        if t.timeline_shown.is_none() {
            t.timeline_shown = Some(started.elapsed());
        }
        if software || t.first_frame.is_some() {
            done(&t);
        }
    });
}

/// Resident and peak resident memory of this process, in KiB (Linux).
pub fn memory_kib() -> (Option<u64>, Option<u64>) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The tokio runtime thread: starts the backend, runs the controller until
/// the UI says shutdown, then stops the backend.
fn spawn_worker(
    config: Config,
    backend_options: BackendOptions,
    controller_config: ControllerConfig,
    view: Arc<dyn View>,
    rx: mpsc::UnboundedReceiver<UiEvent>,
) -> Result<std::thread::JoinHandle<()>, AppError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("atelier-worker")
        .enable_all()
        .build()
        .map_err(AppError::Runtime)?;
    std::thread::Builder::new()
        .name("atelier-runtime".into())
        .spawn(move || {
            runtime.block_on(async move {
                match Backend::start(&config, backend_options).await {
                    Ok(mut backend) => {
                        let link_events = backend.link_events.take().expect("taken once");
                        let controller = Controller::new(
                            Arc::new(backend.store.clone()),
                            backend.tools.clone(),
                            view,
                            controller_config,
                        );
                        controller.run(rx, backend.link.clone(), link_events).await;
                        backend.stop().await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start");
                        view.apply(vec![
                            ViewUpdate::Sync(viewmodel::sync_off("not started")),
                            ViewUpdate::Notice(e.to_string()),
                        ]);
                        let mut rx = rx;
                        while let Some(ev) = rx.recv().await {
                            if ev == UiEvent::Shutdown {
                                break;
                            }
                        }
                    }
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(2));
        })
        .map_err(AppError::Runtime)
}
