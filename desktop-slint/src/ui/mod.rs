//! The Slint adapter: the only code that touches generated Slint types. It
//! installs the models the views bind to, forwards the `Bridge` callbacks
//! to the controller as [`UiEvent`]s ([`install`]), feeds dropped files
//! from winit to it, and applies [`ViewUpdate`]s on the UI thread
//! ([`apply`]: single-row updates with `set_row_data`, images made from
//! pixels decoded elsewhere, the dashboard's event table formatted only
//! for the rows on screen).

mod apply;
mod rows;
mod types;

use std::cell::RefCell;
use std::path::PathBuf;

use slint::{ComponentHandle, ModelRc, SharedString, VecModel};
use tokio::sync::mpsc;

use crate::controller::{UiEvent, View, ViewUpdate};
use crate::dashboard::DashboardFilterForm;
use crate::palette::SHORTCUTS;
use crate::settings::{CADENCES, SettingsForm};

pub use apply::{UI_LOG, after_updates, log_state, on_first_assets, on_first_timeline};
use rows::strings;
pub use types::*;

thread_local! {
    /// Files dropped in this turn of the event loop (winit sends one
    /// event per file).
    static DROPPED: RefCell<Vec<PathBuf>> = const { RefCell::new(Vec::new()) };
}

/// The view the controller talks to: hands updates to the UI thread.
pub struct SlintView {
    window: slint::Weak<AppWindow>,
}

impl SlintView {
    pub fn new(window: &AppWindow) -> Self {
        SlintView {
            window: window.as_weak(),
        }
    }
}

impl View for SlintView {
    fn apply(&self, updates: Vec<ViewUpdate>) {
        // Fails only once the event loop has quit: nothing left to show.
        let _ = self
            .window
            .upgrade_in_event_loop(move |w| apply::apply_updates(&w, updates));
    }
}

/// Files dropped on the window (from winit, or a test): sent to the
/// controller as one event once the event loop has delivered them all.
pub fn files_dropped(w: &AppWindow, paths: Vec<PathBuf>) {
    let first = DROPPED.with(|d| {
        let mut d = d.borrow_mut();
        let first = d.is_empty();
        d.extend(paths);
        first
    });
    w.global::<Bridge>().set_drop_hover(false);
    if first {
        let weak = w.as_weak();
        slint::Timer::single_shot(std::time::Duration::ZERO, move || {
            let paths = DROPPED.with(|d| std::mem::take(&mut *d.borrow_mut()));
            if let Some(w) = weak.upgrade() {
                w.global::<Bridge>()
                    .invoke_files_dropped(ModelRc::new(VecModel::from(
                        paths
                            .iter()
                            .map(|p| SharedString::from(p.to_string_lossy().as_ref()))
                            .collect::<Vec<_>>(),
                    )));
            }
        });
    }
}

/// Brings the window forward (a second `atelier` asked for it).
pub fn raise(w: &AppWindow) {
    use slint::winit_030::WinitWindowAccessor as _;
    let _ = w.show();
    w.window().with_winit_window(|ww| {
        ww.set_minimized(false);
        ww.focus_window();
    });
    tracing::debug!(target: UI_LOG, shown = "raised", "ui shows");
}

/// Dropped files and drag hovering, from winit (X11; Wayland's winit
/// delivers no drops).
fn watch_drops(window: &AppWindow) {
    use slint::winit_030::{EventResult, WinitWindowAccessor as _, winit};
    let weak = window.as_weak();
    window.window().on_winit_window_event(move |_, event| {
        let Some(w) = weak.upgrade() else {
            return EventResult::Propagate;
        };
        match event {
            winit::event::WindowEvent::DroppedFile(path) => {
                files_dropped(&w, vec![path.clone()]);
            }
            winit::event::WindowEvent::HoveredFile(_) => {
                w.global::<Bridge>().set_drop_hover(true);
            }
            winit::event::WindowEvent::HoveredFileCancelled => {
                w.global::<Bridge>().set_drop_hover(false);
            }
            _ => {}
        }
        EventResult::Propagate
    });
}

/// Installs empty models and wires every callback to `events`.
pub fn install(window: &AppWindow, events: mpsc::UnboundedSender<UiEvent>) {
    let bridge = window.global::<Bridge>();
    apply::install_models(&bridge);
    bridge.set_shortcuts(ModelRc::new(VecModel::from(
        SHORTCUTS
            .iter()
            .map(|(what, keys)| ShortcutRow {
                what: (*what).into(),
                keys: (*keys).into(),
            })
            .collect::<Vec<_>>(),
    )));
    bridge.set_cadences(strings(CADENCES.iter().map(|(_, l)| *l)));
    watch_drops(window);

    let send = move |ev: UiEvent| {
        let _ = events.send(ev);
    };
    macro_rules! on {
        ($cb:ident, || $ev:expr) => {{
            let s = send.clone();
            bridge.$cb(move || s($ev));
        }};
        ($cb:ident, |$($arg:ident),*| $ev:expr) => {{
            let s = send.clone();
            bridge.$cb(move |$($arg),*| s($ev));
        }};
    }
    on!(on_search, |q| UiEvent::Search(q.into()));
    on!(on_select_asset, |id| UiEvent::SelectAsset(id.into()));
    on!(on_step_asset, |step| UiEvent::StepAsset(step));
    on!(on_new_from_file, || UiEvent::PickFile);
    on!(on_new_from_prompt, |prompt, model, aspect| {
        UiEvent::NewFromPrompt {
            prompt: prompt.into(),
            model_index: model.max(0) as usize,
            aspect: aspect.into(),
        }
    });
    on!(on_send, |prompt, aspect, scale| UiEvent::Send {
        prompt: prompt.into(),
        aspect: aspect.into(),
        scale: scale.into(),
    });
    on!(on_tool_changed, |i| UiEvent::ToolChanged(i.max(0) as usize));
    on!(on_model_changed, |i| UiEvent::ModelChanged(
        i.max(0) as usize
    ));
    on!(on_rollback, |v| UiEvent::Rollback(v.into()));
    on!(on_rollback_previous, || UiEvent::RollbackPrevious);
    on!(on_retry, |m| UiEvent::Retry(m.into()));
    on!(on_cancel, |m| UiEvent::Cancel(m.into()));
    on!(on_load_earlier, || UiEvent::LoadEarlier);
    on!(on_sign_in, |t| UiEvent::SignIn(t.into()));
    on!(on_sign_in_browser, || UiEvent::SignInBrowser);
    on!(on_sign_out, || UiEvent::SignOut);
    on!(on_go_offline, || UiEvent::GoOffline);
    on!(on_go_online, || UiEvent::GoOnline);
    on!(on_need_image, |k| UiEvent::NeedImage(k.into()));
    on!(on_dismiss_notice, || UiEvent::DismissNotice);
    on!(on_paste, |explicit| UiEvent::Paste { explicit });
    on!(on_incoming_as, |as_version| UiEvent::IncomingAs(as_version));
    on!(on_incoming_cancel, || UiEvent::IncomingCancel);
    on!(on_save_image, |v| UiEvent::SaveImage(some(v)));
    on!(on_copy_image, |v| UiEvent::CopyImage(some(v)));
    on!(on_compare, |v| UiEvent::Compare(some(v)));
    on!(on_close_compare, || UiEvent::CloseCompare);
    on!(on_show_dashboard, |show| UiEvent::ShowDashboard(show));
    on!(on_dashboard_filter, |from, to, model, preset| {
        UiEvent::DashboardFilter(DashboardFilterForm {
            from: from.into(),
            to: to.into(),
            model: model.max(0) as usize,
            preset: preset.into(),
        })
    });
    on!(on_export_csv, || UiEvent::ExportCsv);
    on!(on_rename, |id, title| UiEvent::Rename {
        id: id.into(),
        title: title.into(),
    });
    on!(on_delete_asset, |id| UiEvent::Delete(some(id)));
    on!(on_undo, || UiEvent::Undo);
    on!(on_dismiss_undo, || UiEvent::DismissUndo);
    on!(on_show_trash, |open| UiEvent::ShowTrash(open));
    on!(on_restore, |id| UiEvent::Restore(id.into()));
    on!(on_palette_query, |q| UiEvent::PaletteQuery(q.into()));
    on!(on_palette_run, |i| UiEvent::PaletteRun(i.max(0) as usize));
    on!(on_save_settings, |server,
                           auth,
                           client,
                           gemini,
                           replicate,
                           cadence| {
        UiEvent::SaveSettings(SettingsForm {
            server_url: server.into(),
            auth_url: auth.into(),
            client_id: client.into(),
            gemini_api_key: gemini.into(),
            replicate_api_token: replicate.into(),
            cadence: cadence.max(0) as usize,
            note: String::new(),
        })
    });
    {
        let s = send.clone();
        bridge.on_files_dropped(move |paths| {
            use slint::Model as _;
            s(UiEvent::Dropped(
                paths.iter().map(|p| PathBuf::from(p.as_str())).collect(),
            ))
        });
    }
    bridge.on_shown(|what| tracing::debug!(target: UI_LOG, shown = %what, "ui shows"));
    bridge.on_quit(|| {
        let _ = slint::quit_event_loop();
    });
}

/// A version id from the UI ("" means the active version).
fn some(v: SharedString) -> Option<String> {
    Some(v.to_string()).filter(|s| !s.is_empty())
}
