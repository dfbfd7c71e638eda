//! Documents the sync client keeps loaded between rounds, so applying what
//! another device changed costs the change, not a reload of the document:
//! a least-recently-used set of [`LocalAsset`]s bounded by their stored
//! bytes. No IO: the client checks a copy is current (its heads are the
//! store's) before using it, and reloads when it is not.

use std::collections::HashMap;

use crate::ids::DocId;
use crate::store::LocalAsset;

pub struct WarmAssets {
    budget: u64,
    total: u64,
    tick: u64,
    assets: HashMap<DocId, (LocalAsset, u64)>,
}

impl WarmAssets {
    /// Keeps at most `budget` stored bytes of documents (0: none).
    pub fn new(budget: u64) -> WarmAssets {
        WarmAssets {
            budget,
            total: 0,
            tick: 0,
            assets: HashMap::new(),
        }
    }

    /// Takes the copy of `id` out, if kept.
    pub fn take(&mut self, id: &DocId) -> Option<LocalAsset> {
        let (asset, _) = self.assets.remove(id)?;
        self.total -= asset.stored_bytes();
        Some(asset)
    }

    /// Keeps `asset`, evicting the least recently kept over the budget.
    pub fn put(&mut self, asset: LocalAsset) {
        let weight = asset.stored_bytes();
        if weight > self.budget {
            return;
        }
        if let Some((old, _)) = self.assets.remove(&asset.id) {
            self.total -= old.stored_bytes();
        }
        self.tick += 1;
        self.total += weight;
        self.assets.insert(asset.id.clone(), (asset, self.tick));
        while self.total > self.budget {
            let Some(oldest) = self
                .assets
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            if let Some((a, _)) = self.assets.remove(&oldest) {
                self.total -= a.stored_bytes();
            }
        }
    }

    /// Drops every copy (the store changed underneath, e.g. a restore).
    pub fn clear(&mut self) {
        self.assets.clear();
        self.total = 0;
    }
}
