//! The asset list: the store's listing, the search, and what the view
//! shows of them (sent as single-row updates when only rows changed).

use std::collections::HashMap;

use core_sync::model::Millis;
use core_sync::store::AssetListing;
use time::UtcOffset;

use super::protocol::ViewUpdate;
use crate::viewmodel::{self, AssetRow, RowsDiff};

#[derive(Default)]
pub struct AssetList {
    listings: Vec<AssetListing>,
    query: String,
    shown: Vec<AssetRow>,
    shown_total: Option<usize>,
    /// Image key → rows showing it.
    index: HashMap<String, Vec<usize>>,
}

impl AssetList {
    pub fn listings(&self) -> &[AssetListing] {
        &self.listings
    }

    pub fn set_listings(&mut self, listings: Vec<AssetListing>) {
        self.listings = listings;
    }

    pub fn set_query(&mut self, query: String) {
        self.query = query;
    }

    pub fn clear_query(&mut self) {
        self.query.clear();
    }

    /// What the view must change to show the list as it now is.
    pub fn updates(&mut self, now: Millis, offset: UtcOffset) -> Vec<ViewUpdate> {
        let rows = viewmodel::asset_rows(&self.listings, &self.query, now, offset);
        let total = self.listings.len();
        let updates = match viewmodel::diff_rows(&self.shown, &rows) {
            RowsDiff::Patch { changed, appended }
                if appended.is_empty() && Some(total) == self.shown_total =>
            {
                changed
                    .into_iter()
                    .map(|(i, r)| ViewUpdate::AssetRow(i, r))
                    .collect()
            }
            _ => vec![ViewUpdate::Assets {
                rows: rows.clone(),
                total,
            }],
        };
        self.index.clear();
        for (i, r) in rows.iter().enumerate() {
            if !r.thumb_key.is_empty() {
                self.index.entry(r.thumb_key.clone()).or_default().push(i);
            }
        }
        self.shown = rows;
        self.shown_total = Some(total);
        updates
    }

    /// Rows showing `key`.
    pub fn rows_with(&self, key: &str) -> Vec<usize> {
        self.index.get(key).cloned().unwrap_or_default()
    }

    /// The asset `step` rows from `selected` in the list as shown (the
    /// first or last when none is selected).
    pub fn step(&self, selected: Option<&str>, step: i32) -> Option<String> {
        if self.shown.is_empty() {
            return None;
        }
        let last = self.shown.len() as i64 - 1;
        let at = selected.and_then(|s| self.shown.iter().position(|r| r.id == s));
        let next = match at {
            Some(i) => (i as i64 + step as i64).clamp(0, last),
            None if step >= 0 => 0,
            None => last,
        };
        Some(self.shown[next as usize].id.clone())
    }
}
