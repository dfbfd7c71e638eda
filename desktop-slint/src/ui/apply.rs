//! Applying [`ViewUpdate`]s to the `Bridge` on the UI thread, and the
//! `ui state` log line that says what the window shows.

use std::cell::RefCell;
use std::rc::Rc;

use slint::{ComponentHandle, Model, ModelRc, SharedString, VecModel};

use super::rows::{self, EventRows, IMAGES, image_for, strings};
use super::types::{
    AppWindow, AssetRow, BarRow, Bridge, MessageRow, PaletteRow, SpendRow, VersionRow,
};
use crate::controller::{RowRefs, Screen, UiCommand, ViewUpdate};
use crate::dashboard::DashboardVm;
use crate::viewmodel::CompareVm;

/// The log target of what the window shows (`RUST_LOG=atelier::ui=debug`):
/// a `ui state` line after every batch of updates and a `ui shows` line
/// when a sheet opens or closes, so a tool driving the real window (the
/// Xvfb test) waits on what is on screen instead of sleeping.
pub const UI_LOG: &str = "atelier::ui";

/// Called after every batch of updates.
type Hook = Box<dyn FnMut(&AppWindow)>;

thread_local! {
    static EVENT_ROWS: Rc<EventRows> = Rc::new(EventRows::new());
    /// Called once, the first time the asset list gets rows (start-up
    /// timing).
    static FIRST_ASSETS: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
    /// Called once, the first time a timeline is shown.
    static FIRST_TIMELINE: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
    /// Called after every batch of updates (benchmarks time with it).
    static AFTER_UPDATES: RefCell<Option<Hook>> = RefCell::new(None);
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

/// Runs `f` on the UI thread after every batch of updates is applied.
pub fn after_updates(f: impl FnMut(&AppWindow) + 'static) {
    AFTER_UPDATES.with(|h| *h.borrow_mut() = Some(Box::new(f)));
}

pub fn install_models(b: &Bridge<'_>) {
    b.set_assets(ModelRc::new(VecModel::<AssetRow>::default()));
    b.set_messages(ModelRc::new(VecModel::<MessageRow>::default()));
    b.set_versions(ModelRc::new(VecModel::<VersionRow>::default()));
    b.set_palette_rows(ModelRc::new(VecModel::<PaletteRow>::default()));
    b.set_dash_by_model(ModelRc::new(VecModel::<SpendRow>::default()));
    b.set_dash_by_provider(ModelRc::new(VecModel::<SpendRow>::default()));
    b.set_dash_bars(ModelRc::new(VecModel::<BarRow>::default()));
    b.set_dash_events(ModelRc::from(EVENT_ROWS.with(|m| m.clone())));
}

pub fn apply_updates(w: &AppWindow, updates: Vec<ViewUpdate>) {
    apply_each(w, updates);
    if tracing::enabled!(target: UI_LOG, tracing::Level::DEBUG) {
        log_state(&w.global::<Bridge>());
    }
    AFTER_UPDATES.with(|h| {
        if let Some(f) = h.borrow_mut().as_mut() {
            f(w);
        }
    });
}

/// One `ui state` line: what the lists hold, what is open, how many rows
/// still wait for their image.
pub fn log_state(b: &Bridge<'_>) {
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
        + usize::from(!b.get_preview_key().is_empty() && !b.get_has_preview())
        + usize::from(b.get_compare_open() && !b.get_compare_left_ready())
        + usize::from(b.get_compare_open() && !b.get_compare_right_ready());
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
        screen = %b.get_screen(),
        dashboard_events = b.get_dash_events().row_count(),
        dashboard_total = %b.get_dash_total(),
        palette_rows = b.get_palette_rows().row_count(),
        compare = b.get_compare_open(),
        trash_open = b.get_trash_open(),
        trash_rows = b.get_trash_rows().row_count(),
        undo = %b.get_undo_text(),
        title = %b.get_asset_title(),
        "ui state"
    );
}

fn all_rows<T: Clone + 'static>(m: &ModelRc<T>) -> Vec<T> {
    (0..m.row_count()).filter_map(|i| m.row_data(i)).collect()
}

fn command_name(c: UiCommand) -> &'static str {
    match c {
        UiCommand::FocusSearch => "focus-search",
        UiCommand::FocusComposer => "focus-composer",
        UiCommand::NewAsset => "new-asset",
        UiCommand::Shortcuts => "shortcuts",
        UiCommand::Settings => "settings",
        UiCommand::TokenSheet => "sign-in",
        UiCommand::About => "about",
        UiCommand::Quit => "quit",
        UiCommand::Rename => "rename",
    }
}

fn apply_each(w: &AppWindow, updates: Vec<ViewUpdate>) {
    let b = w.global::<Bridge>();
    for u in updates {
        match u {
            ViewUpdate::Assets { rows, total } => {
                b.set_assets(ModelRc::new(VecModel::from(
                    rows.into_iter().map(rows::asset_row).collect::<Vec<_>>(),
                )));
                b.set_asset_total(total as i32);
                if let Some(f) = FIRST_ASSETS.with(|h| h.borrow_mut().take()) {
                    f();
                }
            }
            ViewUpdate::AssetRow(i, r) => {
                let m = b.get_assets();
                if i < m.row_count() {
                    m.set_row_data(i, rows::asset_row(r));
                }
            }
            ViewUpdate::Selected(id) => b.set_selected_asset(id.into()),
            ViewUpdate::Timeline {
                title,
                rows,
                earlier,
            } => {
                b.set_messages(ModelRc::new(VecModel::from(
                    rows.into_iter().map(rows::message_row).collect::<Vec<_>>(),
                )));
                b.set_earlier(earlier as i32);
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
                b.set_earlier(0);
            }
            ViewUpdate::Title(t) => b.set_asset_title(t.into()),
            ViewUpdate::MessageRow(i, r) => {
                let m = b.get_messages();
                if i < m.row_count() {
                    m.set_row_data(i, rows::message_row(r));
                }
            }
            ViewUpdate::MessagesAppended(rows) => {
                let m = b.get_messages();
                if let Some(v) = m.as_any().downcast_ref::<VecModel<MessageRow>>() {
                    for r in rows {
                        v.push(rows::message_row(r));
                    }
                }
                scroll_to_end(w);
            }
            ViewUpdate::MessagesPrepended { rows, earlier } => {
                let m = b.get_messages();
                if let Some(v) = m.as_any().downcast_ref::<VecModel<MessageRow>>() {
                    for (i, r) in rows.into_iter().enumerate() {
                        v.insert(i, rows::message_row(r));
                    }
                }
                b.set_earlier(earlier as i32);
                b.set_prepended(b.get_prepended() + 1);
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
                    i.versions
                        .into_iter()
                        .map(rows::version_row)
                        .collect::<Vec<_>>(),
                )));
                // The preview is not a list row: ask for it here.
                if !i.preview_key.is_empty() && !b.get_has_preview() {
                    b.invoke_need_image(i.preview_key.into());
                }
            }
            ViewUpdate::Composer(c) => {
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
            ViewUpdate::Sync(s) => {
                b.set_sync_state(s.state.into());
                b.set_sync_label(s.label.into());
                b.set_sync_detail(s.detail.into());
            }
            ViewUpdate::ServerLabel(l) => b.set_server_label(l.into()),
            ViewUpdate::Session(s) => {
                b.set_offer_sign_in(s.offer_sign_in);
                b.set_browser_sign_in(s.browser);
                b.set_sign_in_waiting(s.waiting);
                b.set_signed_in_user(s.user.into());
                b.set_can_sign_out(s.can_sign_out);
                b.set_sync_paused(s.paused);
                b.set_syncs(s.syncs);
            }
            ViewUpdate::ImageReady { key, pixels, at } => {
                let image = rows::to_image(&pixels);
                IMAGES.with(|m| m.borrow_mut().insert(key.clone(), image.clone()));
                set_image(&b, &key, Some(image), &at);
            }
            ViewUpdate::ImageDropped { key, at } => {
                IMAGES.with(|m| m.borrow_mut().remove(&key));
                set_image(&b, &key, None, &at);
            }
            ViewUpdate::Notice(n) => b.set_notice(n.into()),
            ViewUpdate::Info(n) => b.set_info(n.into()),
            ViewUpdate::Picking(open) => b.set_picking(open),
            ViewUpdate::Incoming(q) => {
                b.set_incoming_open(q.is_some());
                let q = q.unwrap_or_default();
                b.set_incoming_what(q.what.into());
                b.set_incoming_asset(q.asset.into());
            }
            ViewUpdate::Compare(c) => set_compare(&b, c),
            ViewUpdate::Screen(s) => b.set_screen(
                match s {
                    Screen::Asset => "asset",
                    Screen::Dashboard => "dashboard",
                }
                .into(),
            ),
            ViewUpdate::Dashboard(d) => set_dashboard(&b, *d),
            ViewUpdate::Palette(rows) => b.set_palette_rows(ModelRc::new(VecModel::from(
                rows.into_iter().map(rows::palette_row).collect::<Vec<_>>(),
            ))),
            ViewUpdate::Ui(c) => {
                if c == UiCommand::Quit {
                    let _ = slint::quit_event_loop();
                }
                b.set_command(command_name(c).into());
                b.set_command_tick(b.get_command_tick() + 1);
            }
            ViewUpdate::Trash(t) => {
                b.set_trash_rows(ModelRc::new(VecModel::from(
                    t.rows.into_iter().map(rows::trash_row).collect::<Vec<_>>(),
                )));
                b.set_trash_open(t.open);
            }
            ViewUpdate::Undo(text) => b.set_undo_text(text.unwrap_or_default().into()),
            ViewUpdate::Settings(f) => {
                b.set_set_server_url(f.server_url.into());
                b.set_set_auth_url(f.auth_url.into());
                b.set_set_client_id(f.client_id.into());
                b.set_set_gemini_key(f.gemini_api_key.into());
                b.set_set_replicate_token(f.replicate_api_token.into());
                b.set_set_cadence(f.cadence as i32);
                b.set_set_note(f.note.into());
            }
        }
    }
}

fn set_compare(b: &Bridge<'_>, c: Option<CompareVm>) {
    b.set_compare_open(c.is_some());
    let c = c.unwrap_or_default();
    let l = image_for(&c.left.key);
    let r = image_for(&c.right.key);
    b.set_compare_left_label(c.left.label.into());
    b.set_compare_left_key(c.left.key.into());
    b.set_compare_left_ready(l.is_some());
    b.set_compare_left(l.unwrap_or_default());
    b.set_compare_right_label(c.right.label.into());
    b.set_compare_right_key(c.right.key.into());
    b.set_compare_right_ready(r.is_some());
    b.set_compare_right(r.unwrap_or_default());
}

fn set_dashboard(b: &Bridge<'_>, d: DashboardVm) {
    b.set_dash_loading(d.loading.into());
    if d.model_choices.is_empty() {
        return;
    }
    b.set_dash_from(d.form.from.into());
    b.set_dash_to(d.form.to.into());
    b.set_dash_models(strings(d.model_choices));
    b.set_dash_model_index(d.form.model as i32);
    b.set_dash_error(d.error.into());
    b.set_dash_total(d.total.into());
    b.set_dash_count(d.events.into());
    b.set_dash_by_model(ModelRc::new(VecModel::from(
        d.by_model.iter().map(rows::spend_row).collect::<Vec<_>>(),
    )));
    b.set_dash_by_provider(ModelRc::new(VecModel::from(
        d.by_provider
            .iter()
            .map(rows::spend_row)
            .collect::<Vec<_>>(),
    )));
    b.set_dash_bars(ModelRc::new(VecModel::from(
        d.bars.iter().map(rows::bar_row).collect::<Vec<_>>(),
    )));
    b.set_dash_caption(d.chart_caption.into());
    EVENT_ROWS.with(|m| m.set(d.table));
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

/// Updates rows `at` of `model` with `patch` (which returns `None` for a row
/// that no longer shows what it was meant to).
fn patch_rows<T: Clone + 'static>(
    model: &ModelRc<T>,
    at: &[usize],
    patch: impl Fn(&mut T) -> Option<()>,
) {
    for &i in at {
        if let Some(mut r) = model.row_data(i)
            && patch(&mut r).is_some()
        {
            model.set_row_data(i, r);
        }
    }
}

/// Puts `image` (or the placeholder) into the rows the controller says show
/// `key` (checked, in case a row changed meanwhile), the preview and the
/// compare view.
fn set_image(b: &Bridge<'_>, key: &str, image: Option<slint::Image>, at: &RowRefs) {
    let has = image.is_some();
    let img = image.unwrap_or_default();
    let key_s = SharedString::from(key);
    patch_rows(&b.get_assets(), &at.assets, |r: &mut AssetRow| {
        (r.thumb_key == key_s).then(|| {
            r.thumb = img.clone();
            r.has_thumb = has;
        })
    });
    patch_rows(&b.get_messages(), &at.messages, |r: &mut MessageRow| {
        (r.image_key == key_s).then(|| {
            r.image = img.clone();
            r.has_image = has;
        })
    });
    patch_rows(&b.get_versions(), &at.versions, |r: &mut VersionRow| {
        (r.thumb_key == key_s).then(|| {
            r.thumb = img.clone();
            r.has_thumb = has;
        })
    });
    if b.get_preview_key() == key_s {
        b.set_preview(img.clone());
        b.set_has_preview(has);
    }
    if b.get_compare_left_key() == key_s {
        b.set_compare_left(img.clone());
        b.set_compare_left_ready(has);
    }
    if b.get_compare_right_key() == key_s {
        b.set_compare_right(img);
        b.set_compare_right_ready(has);
    }
}
