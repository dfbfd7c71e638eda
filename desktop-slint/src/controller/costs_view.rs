//! The cost dashboard's state: whether it is shown, the filter, the costs
//! read from every asset (`CostBook`), and the CSV export of what the
//! filter lets through.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use core_sync::ids::DocId;
use core_sync::model::Millis;
use core_sync::now_millis;
use core_sync::store::AssetListing;

use super::costbook::{AssetCosts, CostBook};
use super::ports::with_extension;
use super::protocol::ViewUpdate;
use crate::dashboard::{self, DashboardFilterForm, DashboardVm};
use crate::format;
use crate::tools::Tools;

pub struct CostsView {
    pub shown: bool,
    book: CostBook,
    reading: bool,
    /// Export once the costs are read (asked for before they were).
    export_when_read: bool,
    filter: DashboardFilterForm,
    labels: Arc<HashMap<String, String>>,
}

impl Default for CostsView {
    fn default() -> Self {
        CostsView {
            shown: false,
            book: CostBook::default(),
            reading: false,
            export_when_read: false,
            filter: DashboardFilterForm {
                preset: "30d".into(),
                ..Default::default()
            },
            labels: Arc::default(),
        }
    }
}

impl CostsView {
    fn vm(&self) -> DashboardVm {
        dashboard::build(
            self.book.rows(),
            self.book.models(),
            &self.labels,
            &self.filter,
            now_millis(),
            format::local_offset(),
        )
    }

    /// The dashboard as the filter now says (when shown).
    pub fn update(&mut self) -> Option<ViewUpdate> {
        if !self.shown {
            return None;
        }
        let started = std::time::Instant::now();
        let vm = self.vm();
        self.filter = vm.form.clone();
        tracing::debug!(elapsed = ?started.elapsed(), events = vm.table.len(), "dashboard computed");
        Some(ViewUpdate::Dashboard(Box::new(vm)))
    }

    pub fn set_filter(&mut self, form: DashboardFilterForm) -> Option<ViewUpdate> {
        self.filter = form;
        self.update()
    }

    /// The assets to read now (new or changed), unless a read runs.
    pub fn start_read(&mut self, listings: &[AssetListing]) -> Option<Vec<(DocId, Millis)>> {
        if self.reading {
            return None;
        }
        let stale = self.book.stale(listings);
        if stale.is_empty() {
            return None;
        }
        self.reading = true;
        Some(stale)
    }

    /// Takes what was read; the dashboard to show.
    pub fn finish_read(
        &mut self,
        read: Vec<AssetCosts>,
        listings: &[AssetListing],
        tools: &Tools,
    ) -> Option<ViewUpdate> {
        self.reading = false;
        if self.book.update(read, listings) {
            self.labels = Arc::new(
                self.book
                    .models()
                    .iter()
                    .map(|m| (m.clone(), tools.model_label(m)))
                    .collect(),
            );
        }
        self.update()
    }

    pub fn progress(&self, n: usize, total: usize) -> Option<ViewUpdate> {
        (self.shown && self.book.rows().is_empty()).then(|| {
            ViewUpdate::Dashboard(Box::new(DashboardVm {
                loading: format!("Reading costs: {n} of {total} assets…"),
                ..DashboardVm::default()
            }))
        })
    }

    /// Whether an export can go now (the dashboard shows the costs); if
    /// not, it goes once they are read.
    pub fn ready_to_export(&mut self) -> bool {
        let ready = self.shown && !self.reading;
        self.export_when_read = !ready;
        ready
    }

    /// An export waits and the costs are read.
    pub fn export_due(&mut self) -> bool {
        let due = self.export_when_read && !self.reading;
        if due {
            self.export_when_read = false;
        }
        due
    }

    /// "atelier-costs-2026-10-27-2026-11-25.csv".
    pub fn export_name(&self) -> String {
        let form = dashboard::resolve_preset(&self.filter, now_millis());
        format!(
            "atelier-costs-{}-{}.csv",
            if form.from.is_empty() {
                "start"
            } else {
                &form.from
            },
            if form.to.is_empty() {
                "today"
            } else {
                &form.to
            }
        )
    }

    /// Writes what the filter lets through to `path` (temp file, renamed);
    /// the sentence to show.
    pub fn write_csv(&self, path: PathBuf) -> Result<String, String> {
        let vm = self.vm();
        if !vm.error.is_empty() {
            return Err(vm.error);
        }
        let path = with_extension(&path, &["csv"]);
        let rows = self.book.rows();
        // The CSV lists events oldest first; the table newest first.
        let out: Vec<&core_sync::costs::CostRow> = vm
            .table
            .shown
            .iter()
            .rev()
            .map(|&i| &rows[i as usize])
            .collect();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".part");
        let tmp = PathBuf::from(tmp);
        let written = std::fs::File::create(&tmp)
            .and_then(|f| core_sync::costs::write_csv(std::io::BufWriter::new(f), out))
            .and_then(|n| std::fs::rename(&tmp, &path).map(|_| n))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                format!("Cannot write {}: {e}", path.display())
            })?;
        Ok(format!(
            "Exported {written} cost event{} to {}",
            if written == 1 { "" } else { "s" },
            path.display()
        ))
    }
}
