//! The Slint adapter: the only code that touches generated Slint types. It
//! installs the models the views bind to, forwards the `Bridge` callbacks
//! to the controller as [`UiEvent`]s, and applies [`ViewUpdate`]s on the UI
//! thread — single-row updates with `set_row_data`, images made from the
//! pixels decoded on worker threads.

use std::cell::RefCell;
use std::collections::HashMap;

use slint::{
    ComponentHandle, Model, ModelRc, Rgba8Pixel, SharedPixelBuffer, SharedString, VecModel,
};
use tokio::sync::mpsc;

use crate::controller::{UiEvent, View, ViewUpdate};
use crate::images::Pixels;
use crate::tools::ComposerVm;
use crate::viewmodel as vm;

slint::include_modules!();

/// The log target of what the window shows (`RUST_LOG=atelier::ui=debug`):
/// a `ui state` line after every batch of updates and a `ui shows` line
/// when a sheet opens or closes, so a tool driving the real window (the
/// Xvfb test) waits on what is on screen instead of sleeping.
pub const UI_LOG: &str = "atelier::ui";

thread_local! {
    /// Called once, the first time the asset list gets rows (start-up
    /// timing).
    static FIRST_ASSETS: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
    /// Called once, the first time a timeline is shown.
    static FIRST_TIMELINE: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
    /// Slint images by key, for rows that show them. UI thread only
    /// (`slint::Image` is not `Send`).
    static IMAGES: RefCell<HashMap<String, slint::Image>> = RefCell::new(HashMap::new());
}

/// Runs `f` on the UI thread once the asset list first shows rows (or
/// learns there are none).
pub fn on_first_assets(f: impl FnOnce() + 'static) {
    FIRST_ASSETS.with(|h| *h.borrow_mut() = Some(Box::new(f)));
}

/// Runs `f` on the UI thread once a timeline is first shown.
pub fn on_first_timeline(f: impl FnOnce() + 'static) {
    FIRST_TIMELINE.with(|h| *h.borrow_mut() = Some(Box::new(f)));
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
            .upgrade_in_event_loop(move |w| apply_updates(&w, updates));
    }
}

/// Installs empty models and wires every callback to `events`.
pub fn install(window: &AppWindow, events: mpsc::UnboundedSender<UiEvent>) {
    let bridge = window.global::<Bridge>();
    bridge.set_assets(ModelRc::new(VecModel::<AssetRow>::default()));
    bridge.set_messages(ModelRc::new(VecModel::<MessageRow>::default()));
    bridge.set_versions(ModelRc::new(VecModel::<VersionRow>::default()));

    let send = move |ev: UiEvent| {
        let _ = events.send(ev);
    };
    let s = send.clone();
    bridge.on_search(move |q| s(UiEvent::Search(q.into())));
    let s = send.clone();
    bridge.on_select_asset(move |id| s(UiEvent::SelectAsset(id.into())));
    let s = send.clone();
    bridge.on_new_from_file(move || s(UiEvent::PickFile));
    let s = send.clone();
    bridge.on_new_from_prompt(move |prompt, model, aspect| {
        s(UiEvent::NewFromPrompt {
            prompt: prompt.into(),
            model_index: model.max(0) as usize,
            aspect: aspect.into(),
        })
    });
    let s = send.clone();
    bridge.on_send(move |prompt, aspect, scale| {
        s(UiEvent::Send {
            prompt: prompt.into(),
            aspect: aspect.into(),
            scale: scale.into(),
        })
    });
    let s = send.clone();
    bridge.on_tool_changed(move |i| s(UiEvent::ToolChanged(i.max(0) as usize)));
    let s = send.clone();
    bridge.on_model_changed(move |i| s(UiEvent::ModelChanged(i.max(0) as usize)));
    let s = send.clone();
    bridge.on_rollback(move |v| s(UiEvent::Rollback(v.into())));
    let s = send.clone();
    bridge.on_retry(move |m| s(UiEvent::Retry(m.into())));
    let s = send.clone();
    bridge.on_sign_in(move |t| s(UiEvent::SignIn(t.into())));
    let s = send.clone();
    bridge.on_need_image(move |k| s(UiEvent::NeedImage(k.into())));
    bridge.on_dismiss_notice(move || send(UiEvent::DismissNotice));
    bridge.on_shown(|what| tracing::debug!(target: UI_LOG, shown = %what, "ui shows"));
    bridge.on_quit(|| {
        let _ = slint::quit_event_loop();
    });
}

fn image_for(key: &str) -> Option<slint::Image> {
    if key.is_empty() {
        return None;
    }
    IMAGES.with(|m| m.borrow().get(key).cloned())
}

fn to_image(p: &Pixels) -> slint::Image {
    let buffer = SharedPixelBuffer::<Rgba8Pixel>::clone_from_slice(&p.rgba, p.width, p.height);
    slint::Image::from_rgba8(buffer)
}

fn asset_row(r: vm::AssetRow) -> AssetRow {
    let thumb = image_for(&r.thumb_key);
    AssetRow {
        id: r.id.into(),
        title: r.title.into(),
        subtitle: r.subtitle.into(),
        thumb_key: r.thumb_key.into(),
        has_thumb: thumb.is_some(),
        thumb: thumb.unwrap_or_default(),
    }
}

fn message_row(r: vm::MessageRow) -> MessageRow {
    let image = image_for(&r.image_key);
    MessageRow {
        id: r.id.into(),
        kind: r.kind.into(),
        text: r.text.into(),
        meta: r.meta.into(),
        status: r.status.into(),
        status_label: r.status_label.into(),
        progress: r.progress,
        error: r.error.into(),
        can_retry: r.can_retry,
        cost: r.cost.into(),
        time: r.time.into(),
        image_key: r.image_key.into(),
        has_image: image.is_some(),
        image: image.unwrap_or_default(),
        image_aspect: r.image_aspect,
    }
}

fn version_row(r: vm::VersionRow) -> VersionRow {
    let thumb = image_for(&r.thumb_key);
    VersionRow {
        id: r.id.into(),
        label: r.label.into(),
        detail: r.detail.into(),
        thumb_key: r.thumb_key.into(),
        has_thumb: thumb.is_some(),
        thumb: thumb.unwrap_or_default(),
        active: r.active,
    }
}

fn strings(v: Vec<String>) -> ModelRc<SharedString> {
    ModelRc::new(VecModel::from(
        v.into_iter().map(SharedString::from).collect::<Vec<_>>(),
    ))
}

fn set_composer(b: &Bridge<'_>, c: ComposerVm) {
    b.set_tool_labels(strings(c.tool_labels));
    b.set_tool_index(c.tool_index as i32);
    b.set_model_labels(strings(c.model_labels));
    b.set_model_index(c.model_index as i32);
    b.set_generate_model_labels(strings(c.generate_model_labels));
    b.set_show_aspect(c.show_aspect);
    b.set_show_scale(c.show_scale);
    b.set_needs_prompt(c.needs_prompt);
    b.set_can_send(c.can_send);
    b.set_composer_notice(c.notice.into());
}

/// Sets `update(row)` on every row of `model` whose key is `key`.
fn refresh_rows<T: Clone + 'static>(
    model: &ModelRc<T>,
    key: &str,
    row_key: impl Fn(&T) -> &str,
    update: impl Fn(&mut T),
) {
    for i in 0..model.row_count() {
        if let Some(mut row) = model.row_data(i)
            && row_key(&row) == key
        {
            update(&mut row);
            model.set_row_data(i, row);
        }
    }
}

fn apply_updates(w: &AppWindow, updates: Vec<ViewUpdate>) {
    apply_each(w, updates);
    if tracing::enabled!(target: UI_LOG, tracing::Level::DEBUG) {
        log_state(&w.global::<Bridge>());
    }
}

/// One `ui state` line: what the lists hold and how many rows still wait
/// for their image.
fn log_state(b: &Bridge<'_>) {
    let assets = all_rows(&b.get_assets());
    let messages = all_rows(&b.get_messages());
    let versions = all_rows(&b.get_versions());
    let waiting = assets
        .iter()
        .filter(|r| !r.thumb_key.is_empty() && !r.has_thumb)
        .count()
        + messages
            .iter()
            .filter(|r| !r.image_key.is_empty() && !r.has_image)
            .count()
        + versions
            .iter()
            .filter(|r| !r.thumb_key.is_empty() && !r.has_thumb)
            .count()
        + usize::from(!b.get_preview_key().is_empty() && !b.get_has_preview());
    let last_status = messages
        .iter()
        .rev()
        .find(|r| !r.status.is_empty())
        .map(|r| r.status.to_string());
    let active = versions
        .iter()
        .find(|r| r.active)
        .map(|r| r.label.to_string());
    tracing::debug!(
        target: UI_LOG,
        assets = assets.len(),
        messages = messages.len(),
        versions = versions.len(),
        active_version = active.as_deref().unwrap_or(""),
        last_status = last_status.as_deref().unwrap_or(""),
        images_waiting = waiting,
        "ui state"
    );
}

fn all_rows<T: Clone + 'static>(m: &ModelRc<T>) -> Vec<T> {
    (0..m.row_count()).filter_map(|i| m.row_data(i)).collect()
}

fn apply_each(w: &AppWindow, updates: Vec<ViewUpdate>) {
    let b = w.global::<Bridge>();
    for u in updates {
        match u {
            ViewUpdate::Assets { rows, total } => {
                b.set_assets(ModelRc::new(VecModel::from(
                    rows.into_iter().map(asset_row).collect::<Vec<_>>(),
                )));
                b.set_asset_total(total as i32);
                if let Some(f) = FIRST_ASSETS.with(|h| h.borrow_mut().take()) {
                    f();
                }
            }
            ViewUpdate::AssetRow(i, r) => {
                let m = b.get_assets();
                if i < m.row_count() {
                    m.set_row_data(i, asset_row(r));
                }
            }
            ViewUpdate::Selected(id) => b.set_selected_asset(id.into()),
            ViewUpdate::Timeline { title, rows } => {
                b.set_messages(ModelRc::new(VecModel::from(
                    rows.into_iter().map(message_row).collect::<Vec<_>>(),
                )));
                b.set_asset_title(title.into());
                b.set_has_asset(true);
                scroll_to_end(w);
                b.set_focus_composer(b.get_focus_composer() + 1);
                if let Some(f) = FIRST_TIMELINE.with(|h| h.borrow_mut().take()) {
                    f();
                }
            }
            ViewUpdate::NoAsset => {
                b.set_has_asset(false);
                b.set_messages(ModelRc::new(VecModel::<MessageRow>::default()));
                b.set_versions(ModelRc::new(VecModel::<VersionRow>::default()));
                b.set_has_preview(false);
                b.set_preview_key("".into());
            }
            ViewUpdate::Title(t) => b.set_asset_title(t.into()),
            ViewUpdate::MessageRow(i, r) => {
                let m = b.get_messages();
                if i < m.row_count() {
                    m.set_row_data(i, message_row(r));
                }
            }
            ViewUpdate::MessagesAppended(rows) => {
                let m = b.get_messages();
                if let Some(v) = m.as_any().downcast_ref::<VecModel<MessageRow>>() {
                    for r in rows {
                        v.push(message_row(r));
                    }
                }
                scroll_to_end(w);
            }
            ViewUpdate::Inspector(i) => {
                let preview = image_for(&i.preview_key);
                b.set_has_preview(preview.is_some());
                b.set_preview(preview.unwrap_or_default());
                b.set_preview_key(i.preview_key.clone().into());
                b.set_meta_size(i.size.into());
                b.set_meta_dimensions(i.dimensions.into());
                b.set_meta_created(i.created.into());
                b.set_meta_cost(i.cost.into());
                b.set_versions(ModelRc::new(VecModel::from(
                    i.versions.into_iter().map(version_row).collect::<Vec<_>>(),
                )));
                // The preview is not a list row: ask for it here.
                if !i.preview_key.is_empty() && !b.get_has_preview() {
                    b.invoke_need_image(i.preview_key.into());
                }
            }
            ViewUpdate::Composer(c) => set_composer(&b, c),
            ViewUpdate::Sync(s) => {
                b.set_sync_state(s.state.into());
                b.set_sync_label(s.label.into());
                b.set_sync_detail(s.detail.into());
            }
            ViewUpdate::ServerLabel(l) => b.set_server_label(l.into()),
            ViewUpdate::SignIn(url) => b.set_sign_in_server(url.into()),
            ViewUpdate::ImageReady { key, pixels } => {
                let image = to_image(&pixels);
                IMAGES.with(|m| m.borrow_mut().insert(key.clone(), image.clone()));
                set_image(&b, &key, Some(image));
            }
            ViewUpdate::ImageDropped(key) => {
                IMAGES.with(|m| m.borrow_mut().remove(&key));
                set_image(&b, &key, None);
            }
            ViewUpdate::Notice(n) => b.set_notice(n.into()),
            ViewUpdate::Picking(open) => b.set_picking(open),
        }
    }
}

/// Shows the newest timeline entry: now, and once more after the list has
/// measured the rows just added (its content height is an estimate until
/// they are laid out).
fn scroll_to_end(w: &AppWindow) {
    let b = w.global::<Bridge>();
    b.set_scroll_to_end(b.get_scroll_to_end() + 1);
    let weak = w.as_weak();
    slint::Timer::single_shot(std::time::Duration::from_millis(60), move || {
        if let Some(w) = weak.upgrade() {
            let b = w.global::<Bridge>();
            b.set_scroll_to_end(b.get_scroll_to_end() + 1);
        }
    });
}

/// Puts `image` (or the placeholder) into every row and the preview that
/// show `key`.
fn set_image(b: &Bridge<'_>, key: &str, image: Option<slint::Image>) {
    let has = image.is_some();
    let img = image.unwrap_or_default();
    refresh_rows(
        &b.get_assets(),
        key,
        |r: &AssetRow| r.thumb_key.as_str(),
        |r| {
            r.thumb = img.clone();
            r.has_thumb = has;
        },
    );
    refresh_rows(
        &b.get_messages(),
        key,
        |r: &MessageRow| r.image_key.as_str(),
        |r| {
            r.image = img.clone();
            r.has_image = has;
        },
    );
    refresh_rows(
        &b.get_versions(),
        key,
        |r: &VersionRow| r.thumb_key.as_str(),
        |r| {
            r.thumb = img.clone();
            r.has_thumb = has;
        },
    );
    if b.get_preview_key() == key {
        b.set_preview(img);
        b.set_has_preview(has);
    }
}
