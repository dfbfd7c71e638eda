//! The cost events of every asset, for the dashboard: gathered from the
//! local documents (so the dashboard works offline), kept per asset and
//! read again only for assets whose listing says they changed.

use std::collections::HashMap;
use std::sync::Arc;

use core_sync::costs::CostRow;
use core_sync::ids::DocId;
use core_sync::model::Millis;
use core_sync::store::AssetListing;

use super::ports::AssetStore;

/// Cost rows of one asset, as of its `updated_at`.
pub type AssetCosts = (DocId, Millis, Vec<CostRow>);

#[derive(Default)]
pub struct CostBook {
    per_asset: HashMap<DocId, (Millis, Vec<CostRow>)>,
    /// Every row, newest first.
    rows: Arc<Vec<CostRow>>,
    models: Vec<String>,
}

impl CostBook {
    /// The assets to read again: new or changed since they were read.
    pub fn stale(&self, listings: &[AssetListing]) -> Vec<(DocId, Millis)> {
        listings
            .iter()
            .filter(|l| {
                self.per_asset
                    .get(&l.id)
                    .is_none_or(|(at, _)| *at != l.updated_at)
            })
            .map(|l| (l.id.clone(), l.updated_at))
            .collect()
    }

    /// Takes what was read; forgets assets no longer listed. Returns
    /// whether the rows changed.
    pub fn update(&mut self, read: Vec<AssetCosts>, listings: &[AssetListing]) -> bool {
        let before = self.per_asset.len();
        let mut changed = !read.is_empty();
        for (id, at, rows) in read {
            self.per_asset.insert(id, (at, rows));
        }
        let listed: std::collections::HashSet<&DocId> = listings.iter().map(|l| &l.id).collect();
        self.per_asset.retain(|id, _| listed.contains(id));
        changed |= self.per_asset.len() != before;
        if changed {
            let mut all: Vec<CostRow> = self
                .per_asset
                .values()
                .flat_map(|(_, r)| r.iter().cloned())
                .collect();
            all.sort_by(|a, b| (b.event.ts, &b.event.id).cmp(&(a.event.ts, &a.event.id)));
            self.models = crate::dashboard::model_ids(&all);
            self.rows = Arc::new(all);
        }
        changed
    }

    pub fn rows(&self) -> &Arc<Vec<CostRow>> {
        &self.rows
    }

    pub fn models(&self) -> &[String] {
        &self.models
    }
}

/// Reads the cost events of `stale` assets; `progress(done)` after each.
pub async fn read(
    store: Arc<dyn AssetStore>,
    stale: Vec<(DocId, Millis)>,
    progress: impl Fn(usize),
) -> Vec<AssetCosts> {
    let mut out = Vec::with_capacity(stale.len());
    for (n, (id, at)) in stale.into_iter().enumerate() {
        match store.load(&id).await {
            Ok(mut a) => {
                let title = a.doc.summary().map(|s| s.title).unwrap_or_default();
                match a.doc.cost_events() {
                    Ok(events) => out.push((
                        id.clone(),
                        at,
                        CostRow::of_asset(id.as_str(), &title, events),
                    )),
                    Err(e) => tracing::warn!(doc = %id, error = %e, "cannot read its costs"),
                }
            }
            Err(e) => tracing::warn!(doc = %id, error = %e, "cannot read its costs"),
        }
        if n % 50 == 49 {
            progress(n + 1);
        }
    }
    out
}
