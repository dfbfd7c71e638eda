//! The cost dashboard's view-model: the filter form, totals per model and
//! provider, daily bars and the event table, computed with
//! `core_sync::costs` (the same rollup and CSV as the server's
//! `GET /costs`). Pure: rows, time and the local offset are passed in.

use std::collections::HashMap;
use std::sync::Arc;

use core_sync::costs::{self, CostFilter, CostRow, Rollup};
use core_sync::model::Millis;
use time::{Date, UtcOffset};

use crate::format;

/// Days a chart shows one bar each at most; longer ranges group days.
const MAX_BARS: usize = 92;

/// The filter as the form holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DashboardFilterForm {
    /// UTC dates `YYYY-MM-DD`, empty for open ends.
    pub from: String,
    pub to: String,
    /// Index into the model choices (0: every model).
    pub model: usize,
    /// "7d", "30d", "month", "all": sets `from` and `to`; "" keeps them.
    pub preset: String,
}

/// One line of a per-model or per-provider table.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendRow {
    pub label: String,
    pub amount: String,
    pub events: String,
    /// Share of the total, 0..1 (a bar behind the line).
    pub share: f32,
}

/// One bar of the daily chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// "25 Nov" (or "25 Nov–1 Dec" for a group of days).
    pub label: String,
    pub amount: String,
    /// Height relative to the highest bar, 0..1.
    pub height: f32,
}

/// One row of the event table, formatted when the table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub time: String,
    pub asset: String,
    pub model: String,
    pub provider: String,
    pub units: String,
    pub cost: String,
}

/// The events the filter lets through, formatted on demand (a table of
/// 100,000 rows formats only the rows on screen).
#[derive(Debug, Clone, Default)]
pub struct EventTable {
    /// Every cost event, newest first.
    pub rows: Arc<Vec<CostRow>>,
    /// Positions in `rows` shown, in order.
    pub shown: Arc<Vec<u32>>,
    pub labels: Arc<HashMap<String, String>>,
    pub now: Millis,
    pub offset: Option<UtcOffset>,
}

impl PartialEq for EventTable {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.rows, &other.rows) && self.shown == other.shown
    }
}

impl EventTable {
    pub fn len(&self) -> usize {
        self.shown.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shown.is_empty()
    }

    pub fn row(&self, i: usize) -> Option<EventRow> {
        let r = self.rows.get(*self.shown.get(i)? as usize)?;
        let e = &r.event;
        Some(EventRow {
            time: format::clock(e.ts, self.now, self.offset.unwrap_or(UtcOffset::UTC)),
            asset: if r.asset_title.is_empty() {
                "Untitled".into()
            } else {
                r.asset_title.to_string()
            },
            model: self
                .labels
                .get(&e.model)
                .cloned()
                .unwrap_or(e.model.clone()),
            provider: provider_label(&e.provider),
            units: format!("{} {}", format_units(e.units), e.unit),
            cost: format!("${}", costs::usd(e.cost_nano_usd)),
        })
    }
}

/// Everything the dashboard shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DashboardVm {
    pub form: DashboardFilterForm,
    /// "All models", then each model seen in the events.
    pub model_choices: Vec<String>,
    /// A filter that does not parse, said plainly ("" when fine).
    pub error: String,
    pub total: String,
    pub events: String,
    pub by_model: Vec<SpendRow>,
    pub by_provider: Vec<SpendRow>,
    pub bars: Vec<Bar>,
    /// "Daily spend, 27 Oct – 25 Nov (UTC)".
    pub chart_caption: String,
    pub table: EventTable,
    /// "Reading 340 of 1,000 assets…" while costs are gathered.
    pub loading: String,
}

pub fn provider_label(p: &str) -> String {
    match p {
        "google" => "Google".into(),
        "replicate" => "Replicate".into(),
        other => other.to_owned(),
    }
}

fn format_units(u: f64) -> String {
    if u.fract() == 0.0 && u.abs() < 1e15 {
        format!("{}", u as i64)
    } else {
        format!("{u:.2}")
    }
}

fn count(n: u64, one: &str, many: &str) -> String {
    let digits = n.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{grouped} {}", if n == 1 { one } else { many })
}

fn ymd(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

fn short_day(d: Date) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!("{} {}", d.day(), MONTHS[d.month() as usize - 1])
}

/// Resolves a preset against today (UTC) into `from`/`to` dates.
pub fn resolve_preset(form: &DashboardFilterForm, now: Millis) -> DashboardFilterForm {
    let today = costs::utc_day(now);
    let back = |days: i64| today - time::Duration::days(days);
    let (from, to) = match form.preset.as_str() {
        "7d" => (ymd(back(6)), ymd(today)),
        "30d" => (ymd(back(29)), ymd(today)),
        "month" => (ymd(today.replace_day(1).expect("day 1 exists")), ymd(today)),
        "all" => (String::new(), String::new()),
        _ => (form.from.clone(), form.to.clone()),
    };
    DashboardFilterForm {
        from,
        to,
        model: form.model,
        preset: String::new(),
    }
}

/// The model ids the choices list, in order (after "All models").
pub fn model_ids(rows: &[CostRow]) -> Vec<String> {
    let mut ids: Vec<String> = rows.iter().map(|r| r.event.model.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The dashboard for `rows` (newest first) filtered by `form`.
pub fn build(
    rows: &Arc<Vec<CostRow>>,
    models: &[String],
    labels: &Arc<HashMap<String, String>>,
    form: &DashboardFilterForm,
    now: Millis,
    offset: UtcOffset,
) -> DashboardVm {
    let form = resolve_preset(form, now);
    let model = form
        .model
        .checked_sub(1)
        .and_then(|i| models.get(i))
        .cloned();
    fn blank(s: &str) -> Option<&str> {
        Some(s.trim()).filter(|s| !s.is_empty())
    }
    let filter = CostFilter::from_query(
        blank(&form.from),
        blank(&form.to),
        &model.as_deref().into_iter().collect::<Vec<_>>(),
    );
    let mut vm = DashboardVm {
        model_choices: std::iter::once("All models".to_owned())
            .chain(
                models
                    .iter()
                    .map(|m| labels.get(m).cloned().unwrap_or(m.clone())),
            )
            .collect(),
        ..DashboardVm::default()
    };
    let filter = match filter {
        Ok(f) => f,
        Err(e) => {
            vm.error = format!("{e}. Dates are UTC days, like 2026-11-25.");
            vm.form = form.clone();
            CostFilter::from_query(Some("9999-12-31"), None, &[]).expect("a valid filter")
        }
    };
    let shown: Vec<u32> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| filter.matches(&r.event))
        .map(|(i, _)| i as u32)
        .collect();
    let rollup = Rollup::of(shown.iter().map(|&i| &rows[i as usize].event));
    let spend = |b: &costs::Bucket<String>, label: String| SpendRow {
        label,
        amount: format!("${}", costs::usd(b.nano_usd)),
        events: count(b.events, "event", "events"),
        share: if rollup.nano_usd > 0 {
            b.nano_usd as f32 / rollup.nano_usd as f32
        } else {
            0.0
        },
    };
    vm.total = format!("${}", costs::usd(rollup.nano_usd));
    vm.events = count(rollup.events, "provider call", "provider calls");
    vm.by_model = rollup
        .by_model
        .iter()
        .map(|b| spend(b, labels.get(&b.key).cloned().unwrap_or(b.key.clone())))
        .collect();
    vm.by_provider = rollup
        .by_provider
        .iter()
        .map(|b| spend(b, provider_label(&b.key)))
        .collect();
    // The chart spans the filter's days, or the events' when it is open.
    let first = filter
        .from
        .map(costs::utc_day)
        .or(rollup.by_day.first().map(|b| b.key));
    let last = filter
        .to
        .map(|t| costs::utc_day(t - 1))
        .or(rollup.by_day.last().map(|b| b.key))
        .map(|d| d.min(costs::utc_day(now)).max(first.unwrap_or(d)));
    if let (Some(first), Some(last)) = (first, last) {
        let days = rollup.daily(first, last);
        let group = days.len().div_ceil(MAX_BARS).max(1);
        let grouped: Vec<(String, i64)> = days
            .chunks(group)
            .map(|c| {
                let label = if c.len() == 1 {
                    short_day(c[0].key)
                } else {
                    format!("{}–{}", short_day(c[0].key), short_day(c[c.len() - 1].key))
                };
                (label, c.iter().map(|b| b.nano_usd).sum())
            })
            .collect();
        let max = grouped.iter().map(|g| g.1).max().unwrap_or(0).max(1);
        vm.bars = grouped
            .into_iter()
            .map(|(label, n)| Bar {
                label,
                amount: format!("${}", costs::usd(n)),
                height: n as f32 / max as f32,
            })
            .collect();
        vm.chart_caption = format!(
            "{} spend, {} – {} (UTC)",
            if group == 1 { "Daily" } else { "Grouped" },
            short_day(first),
            short_day(last)
        );
    }
    vm.table = EventTable {
        rows: rows.clone(),
        shown: Arc::new(shown),
        labels: labels.clone(),
        now,
        offset: Some(offset),
    };
    if vm.error.is_empty() {
        vm.form = form;
    }
    vm
}

#[cfg(test)]
mod tests {
    use super::*;
    use core_sync::model::CostEventView;

    // 2026-11-25 12:00:00 UTC
    const NOW: Millis = 1_795_608_000_000;
    const DAY: Millis = 86_400_000;

    fn rows() -> Arc<Vec<CostRow>> {
        let ev = |i: i64, model: &str, provider: &str, nano: i64| CostEventView {
            id: format!("e{i}"),
            ts: NOW - i * DAY,
            provider: provider.into(),
            model: model.into(),
            units: 1.0,
            unit: "images".into(),
            cost_nano_usd: nano,
            message_id: None,
        };
        let mut r = CostRow::of_asset(
            "a1",
            "Harbour",
            vec![
                ev(0, "gemini", "google", 39_000_000),
                ev(1, "esrgan", "replicate", 2_300_000),
                ev(10, "gemini", "google", 39_000_000),
                ev(40, "gemini", "google", 1_000_000_000),
            ],
        );
        r.sort_by_key(|x| std::cmp::Reverse(x.event.ts));
        Arc::new(r)
    }

    #[test]
    fn filters_totals_bars_and_table() {
        let rows = rows();
        let models = model_ids(&rows);
        let labels = Arc::new(HashMap::from([("gemini".to_owned(), "Gemini".to_owned())]));
        let vm = build(
            &rows,
            &models,
            &labels,
            &DashboardFilterForm::default(),
            NOW,
            UtcOffset::UTC,
        );
        assert_eq!(vm.total, "$1.0803");
        assert_eq!(vm.events, "4 provider calls");
        assert_eq!(vm.model_choices, vec!["All models", "esrgan", "Gemini"]);
        assert_eq!(vm.by_model[0].label, "Gemini");
        assert_eq!(vm.by_provider[1].label, "Replicate");
        assert_eq!(vm.bars.len(), 41);
        assert_eq!(vm.table.len(), 4);
        let first = vm.table.row(0).unwrap();
        assert_eq!(
            (
                first.time.as_str(),
                first.model.as_str(),
                first.cost.as_str(),
                first.units.as_str()
            ),
            ("12:00", "Gemini", "$0.039", "1 images")
        );

        let week = DashboardFilterForm {
            preset: "7d".into(),
            model: 2,
            ..Default::default()
        };
        let vm = build(&rows, &models, &labels, &week, NOW, UtcOffset::UTC);
        assert_eq!(
            (vm.form.from.as_str(), vm.form.to.as_str()),
            ("2026-11-19", "2026-11-25")
        );
        assert_eq!(vm.total, "$0.039");
        assert_eq!(vm.table.len(), 1);
        assert_eq!(vm.bars.len(), 7);
        assert!((vm.bars[6].height - 1.0).abs() < 1e-6);
        assert_eq!(vm.chart_caption, "Daily spend, 19 Nov – 25 Nov (UTC)");

        let bad = DashboardFilterForm {
            from: "last week".into(),
            ..Default::default()
        };
        let vm = build(&rows, &models, &labels, &bad, NOW, UtcOffset::UTC);
        assert!(vm.error.contains("from=\"last week\""), "{}", vm.error);
        assert!(vm.table.is_empty());
        assert_eq!(count(1234567, "x", "xs"), "1,234,567 xs");
    }
}
