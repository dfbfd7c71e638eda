//! View-model rows into Slint structs, one to one; the dashboard's event
//! table as a model that formats a row only when the table shows it.

use std::cell::RefCell;
use std::collections::HashMap;

use slint::{
    Model, ModelNotify, ModelRc, ModelTracker, Rgba8Pixel, SharedPixelBuffer, SharedString,
    VecModel,
};

use super::types::{
    AssetRow, BarRow, EventRow, MessageRow, PaletteRow, SpendRow, TrashRow, VersionRow,
};
use crate::dashboard;
use crate::images::Pixels;
use crate::palette;
use crate::viewmodel as vm;

thread_local! {
    /// Slint images by key, for rows that show them. UI thread only
    /// (`slint::Image` is not `Send`).
    pub static IMAGES: RefCell<HashMap<String, slint::Image>> = RefCell::new(HashMap::new());
}

pub fn strings(v: impl IntoIterator<Item = impl Into<SharedString>>) -> ModelRc<SharedString> {
    ModelRc::new(VecModel::from(
        v.into_iter().map(Into::into).collect::<Vec<SharedString>>(),
    ))
}

pub fn image_for(key: &str) -> Option<slint::Image> {
    if key.is_empty() {
        return None;
    }
    IMAGES.with(|m| m.borrow().get(key).cloned())
}

pub fn to_image(p: &Pixels) -> slint::Image {
    let buffer = SharedPixelBuffer::<Rgba8Pixel>::clone_from_slice(&p.rgba, p.width, p.height);
    slint::Image::from_rgba8(buffer)
}

pub fn asset_row(r: vm::AssetRow) -> AssetRow {
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

pub fn message_row(r: vm::MessageRow) -> MessageRow {
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
        can_cancel: r.can_cancel,
        cost: r.cost.into(),
        time: r.time.into(),
        image_key: r.image_key.into(),
        has_image: image.is_some(),
        image: image.unwrap_or_default(),
        image_aspect: r.image_aspect,
    }
}

pub fn version_row(r: vm::VersionRow) -> VersionRow {
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

pub fn spend_row(r: &dashboard::SpendRow) -> SpendRow {
    SpendRow {
        label: r.label.clone().into(),
        amount: r.amount.clone().into(),
        events: r.events.clone().into(),
        share: r.share,
    }
}

pub fn bar_row(b: &dashboard::Bar) -> BarRow {
    BarRow {
        label: b.label.clone().into(),
        amount: b.amount.clone().into(),
        height: b.height,
    }
}

pub fn trash_row(r: crate::trash::TrashRow) -> TrashRow {
    TrashRow {
        id: r.id.into(),
        title: r.title.into(),
        deleted: r.deleted.into(),
        purge: r.purge.into(),
        conflict: r.conflict.into(),
    }
}

pub fn palette_row(r: palette::PaletteRow) -> PaletteRow {
    PaletteRow {
        title: r.title.into(),
        detail: r.detail.into(),
        keys: r.keys.into(),
    }
}

/// The event table: rows formatted on demand from the shared cost rows.
pub struct EventRows {
    table: RefCell<dashboard::EventTable>,
    notify: ModelNotify,
}

impl EventRows {
    pub fn new() -> EventRows {
        EventRows {
            table: RefCell::new(dashboard::EventTable::default()),
            notify: ModelNotify::default(),
        }
    }

    pub fn set(&self, table: dashboard::EventTable) {
        *self.table.borrow_mut() = table;
        self.notify.reset();
    }
}

impl Model for EventRows {
    type Data = EventRow;

    fn row_count(&self) -> usize {
        self.table.borrow().len()
    }

    fn row_data(&self, row: usize) -> Option<EventRow> {
        let r = self.table.borrow().row(row)?;
        Some(EventRow {
            time: r.time.into(),
            asset: r.asset.into(),
            model: r.model.into(),
            provider: r.provider.into(),
            units: r.units.into(),
            cost: r.cost.into(),
        })
    }

    fn model_tracker(&self) -> &dyn ModelTracker {
        &self.notify
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
