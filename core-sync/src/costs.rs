//! Cost rollups and the cost CSV: what the desktop's cost dashboard shows
//! and exports, and what the server's `GET /costs` and `GET /costs.csv`
//! answer, from one piece of code so the two always agree. Pure: no IO, no
//! clock (the CSV writer takes any `io::Write`, the line iterator feeds a
//! streaming HTTP body).
//!
//! - [`CostFilter`]: a UTC time range and a set of models, parsed from the
//!   query parameters `from`, `to` and `model` ([`CostFilter::from_query`]).
//! - [`Rollup`]: total, per model, per provider and per UTC day, in integer
//!   nano-dollars (sums are exact); [`usd`] writes an amount as an exact
//!   decimal string.
//! - The CSV ([`CSV_COLUMNS`]): one row per cost event, RFC 4180 (CRLF line
//!   ends, fields with `,` `"` CR or LF quoted, quotes doubled), timestamps
//!   in UTC ISO 8601 with milliseconds, amounts as exact decimals. The
//!   columns are stable: new ones may only be appended.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io;
use std::sync::Arc;

use serde::Serialize;
use serde::ser::SerializeStruct as _;
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};

use crate::model::{CostEventView, Millis};

const DAY_MS: Millis = 86_400_000;

/// One cost event with the asset it belongs to: a row of the dashboard's
/// table and of the CSV. Asset id and title are shared between the rows of
/// one asset.
#[derive(Debug, Clone, PartialEq)]
pub struct CostRow {
    pub asset_id: Arc<str>,
    pub asset_title: Arc<str>,
    pub event: CostEventView,
}

impl CostRow {
    /// The rows of one asset's cost events.
    pub fn of_asset(
        asset_id: &str,
        asset_title: &str,
        events: impl IntoIterator<Item = CostEventView>,
    ) -> Vec<CostRow> {
        let (id, title): (Arc<str>, Arc<str>) = (asset_id.into(), asset_title.into());
        events
            .into_iter()
            .map(|event| CostRow {
                asset_id: id.clone(),
                asset_title: title.clone(),
                event,
            })
            .collect()
    }
}

/// Sorts rows the way the CSV lists them: by time, then event id.
pub fn sort_rows(rows: &mut [CostRow]) {
    rows.sort_by(|a, b| (a.event.ts, &a.event.id).cmp(&(b.event.ts, &b.event.id)));
}

/// Why a filter could not be read from query parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CostError {
    #[error(
        "{param}={value:?} is neither a date (2026-11-25) nor a UTC time (2026-11-25T12:00:00Z)"
    )]
    BadTime { param: &'static str, value: String },
    #[error("the range is empty: from ({from}) is not before to ({to})")]
    EmptyRange { from: String, to: String },
    #[error("model is empty")]
    EmptyModel,
}

/// Which cost events count: a UTC time range (`from` inclusive, `to`
/// exclusive, both optional) and a set of models (empty: every model).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CostFilter {
    /// Milliseconds since the epoch, inclusive.
    pub from: Option<Millis>,
    /// Milliseconds since the epoch, exclusive.
    pub to: Option<Millis>,
    pub models: BTreeSet<String>,
}

impl CostFilter {
    /// Every event.
    pub fn all() -> CostFilter {
        CostFilter::default()
    }

    /// The UTC days `from..=to` (either open).
    pub fn days(from: Option<Date>, to: Option<Date>) -> CostFilter {
        CostFilter {
            from: from.map(day_start),
            to: to.map(|d| day_start(d) + DAY_MS),
            models: BTreeSet::new(),
        }
    }

    /// Only these models (an empty list: every model).
    pub fn with_models<S: Into<String>>(mut self, models: impl IntoIterator<Item = S>) -> Self {
        self.models = models.into_iter().map(Into::into).collect();
        self
    }

    /// The filter of `GET /costs?from&to&model`: `from` and `to` are UTC
    /// dates (`2026-11-25`; `to` includes its whole day) or RFC 3339 times
    /// (`2026-11-25T12:00:00Z`; `to` excludes that instant); `model` may be
    /// given several times and/or as a comma-separated list.
    pub fn from_query(
        from: Option<&str>,
        to: Option<&str>,
        models: &[&str],
    ) -> Result<CostFilter, CostError> {
        let from_ms = from.map(|v| parse_bound("from", v, false)).transpose()?;
        let to_ms = to.map(|v| parse_bound("to", v, true)).transpose()?;
        if let (Some(f), Some(t)) = (from_ms, to_ms)
            && f >= t
        {
            return Err(CostError::EmptyRange {
                from: from.unwrap_or_default().to_owned(),
                to: to.unwrap_or_default().to_owned(),
            });
        }
        let mut set = BTreeSet::new();
        for m in models {
            for name in m.split(',').map(str::trim) {
                if name.is_empty() {
                    return Err(CostError::EmptyModel);
                }
                set.insert(name.to_owned());
            }
        }
        Ok(CostFilter {
            from: from_ms,
            to: to_ms,
            models: set,
        })
    }

    pub fn matches(&self, e: &CostEventView) -> bool {
        self.from.is_none_or(|f| e.ts >= f)
            && self.to.is_none_or(|t| e.ts < t)
            && (self.models.is_empty() || self.models.contains(&e.model))
    }
}

/// A date bound: a day's start (or, for `to`, the next day's start), or an
/// exact RFC 3339 instant.
fn parse_bound(param: &'static str, value: &str, end: bool) -> Result<Millis, CostError> {
    let bad = || CostError::BadTime {
        param,
        value: value.chars().take(64).collect(),
    };
    let v = value.trim();
    if let Some(date) = parse_date(v) {
        return Ok(day_start(date) + if end { DAY_MS } else { 0 });
    }
    let t = OffsetDateTime::parse(v, &Rfc3339).map_err(|_| bad())?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as Millis)
}

/// `YYYY-MM-DD`, a real calendar date.
pub fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = &s[r];
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let month = Month::try_from(num(5..7)? as u8).ok()?;
    Date::from_calendar_date(num(0..4)? as i32, month, num(8..10)? as u8).ok()
}

/// The UTC day `ts` falls in.
pub fn utc_day(ts: Millis) -> Date {
    let days = ts.div_euclid(DAY_MS);
    Date::from_julian_day(UNIX_EPOCH_JULIAN + days as i32).unwrap_or(Date::MIN)
}

const UNIX_EPOCH_JULIAN: i32 = 2_440_588;

/// Milliseconds at 00:00 UTC of `day`.
pub fn day_start(day: Date) -> Millis {
    (day.to_julian_day() - UNIX_EPOCH_JULIAN) as Millis * DAY_MS
}

/// Spend and count of one group (a model, a provider, a day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket<K> {
    pub key: K,
    pub nano_usd: i64,
    pub events: u64,
}

/// What the events of a filter add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollup {
    pub nano_usd: i64,
    pub events: u64,
    /// Most spent first (ties by name).
    pub by_model: Vec<Bucket<String>>,
    /// Most spent first (ties by name).
    pub by_provider: Vec<Bucket<String>>,
    /// Oldest first; only days with events (see [`Rollup::daily`]).
    pub by_day: Vec<Bucket<Date>>,
}

impl Rollup {
    /// Adds up `events` (already filtered).
    pub fn of<'a>(events: impl IntoIterator<Item = &'a CostEventView>) -> Rollup {
        let mut models: BTreeMap<&str, (i64, u64)> = BTreeMap::new();
        let mut providers: BTreeMap<&str, (i64, u64)> = BTreeMap::new();
        let mut days: BTreeMap<i64, (i64, u64)> = BTreeMap::new();
        let (mut total, mut count) = (0i64, 0u64);
        let add = |slot: &mut (i64, u64), n: i64| {
            slot.0 = slot.0.saturating_add(n);
            slot.1 += 1;
        };
        for e in events {
            let n = e.cost_nano_usd;
            total = total.saturating_add(n);
            count += 1;
            add(models.entry(&e.model).or_default(), n);
            add(providers.entry(&e.provider).or_default(), n);
            add(days.entry(e.ts.div_euclid(DAY_MS)).or_default(), n);
        }
        let ranked = |m: BTreeMap<&str, (i64, u64)>| {
            let mut v: Vec<Bucket<String>> = m
                .into_iter()
                .map(|(k, (n, c))| Bucket {
                    key: k.to_owned(),
                    nano_usd: n,
                    events: c,
                })
                .collect();
            // Stable: equal spends keep the name order of the map.
            v.sort_by_key(|b| std::cmp::Reverse(b.nano_usd));
            v
        };
        Rollup {
            nano_usd: total,
            events: count,
            by_model: ranked(models),
            by_provider: ranked(providers),
            by_day: days
                .into_iter()
                .map(|(d, (n, c))| Bucket {
                    key: utc_day(d * DAY_MS),
                    nano_usd: n,
                    events: c,
                })
                .collect(),
        }
    }

    /// The rows of `rows` that `filter` lets through, added up.
    pub fn of_rows<'a>(rows: impl IntoIterator<Item = &'a CostRow>, filter: &CostFilter) -> Self {
        Rollup::of(
            rows.into_iter()
                .map(|r| &r.event)
                .filter(|e| filter.matches(e)),
        )
    }

    /// One bucket per day `from..=to`, days without events at zero (for a
    /// chart).
    pub fn daily(&self, from: Date, to: Date) -> Vec<Bucket<Date>> {
        let mut out = Vec::new();
        let mut known = self.by_day.iter().peekable();
        let mut day = from;
        while day <= to {
            while known.next_if(|b| b.key < day).is_some() {}
            let (nano_usd, events) = match known.next_if(|b| b.key == day) {
                Some(b) => (b.nano_usd, b.events),
                None => (0, 0),
            };
            out.push(Bucket {
                key: day,
                nano_usd,
                events,
            });
            match day.next_day() {
                Some(d) => day = d,
                None => break,
            }
        }
        out
    }
}

/// An amount in nano-dollars as an exact decimal: at least two decimals,
/// no trailing zeros beyond them (`38_700_000` → `"0.0387"`, `1` →
/// `"0.000000001"`, `12_410_000_000` → `"12.41"`).
pub fn usd(nano: i64) -> String {
    let neg = nano < 0;
    let n = nano.unsigned_abs();
    let whole = n / 1_000_000_000;
    let frac = format!("{:09}", n % 1_000_000_000);
    let frac = frac.trim_end_matches('0');
    let frac = if frac.len() < 2 {
        format!("{frac:0<2}")
    } else {
        frac.to_owned()
    };
    format!("{}{whole}.{frac}", if neg { "-" } else { "" })
}

/// A time as the CSV writes it: `2026-11-25T12:00:00.000Z`.
pub fn iso_utc(ts: Millis) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(ts as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

// ---------------------------------------------------------------- the CSV

/// The CSV's columns, in order. Stable: a column is never renamed, moved or
/// removed; new ones are appended.
///
/// | column | value |
/// |---|---|
/// | `event_id` | the cost event's id |
/// | `timestamp_utc` | when it was recorded, `2026-11-25T12:00:00.000Z` |
/// | `asset_id` | the asset (document) id |
/// | `asset_title` | the asset's title when exported |
/// | `message_id` | the tool request it paid for (empty if none) |
/// | `provider` | `google`, `replicate` |
/// | `model` | the model id, e.g. `gemini-3.1-flash-image` |
/// | `units` | how many units were billed (decimal) |
/// | `unit` | `tokens`, `images`, `seconds` … |
/// | `cost_usd` | exact decimal US dollars, e.g. `0.0387` |
pub const CSV_COLUMNS: [&str; 10] = [
    "event_id",
    "timestamp_utc",
    "asset_id",
    "asset_title",
    "message_id",
    "provider",
    "model",
    "units",
    "unit",
    "cost_usd",
];

/// The `Content-Type` of the CSV (RFC 4180 §3, RFC 7111).
pub const CSV_CONTENT_TYPE: &str = "text/csv; charset=utf-8; header=present";

/// Appends `field` to `line`, quoted when it holds a comma, a quote, CR or
/// LF (quotes doubled).
fn push_field(line: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        line.push('"');
        line.push_str(&field.replace('"', "\"\""));
        line.push('"');
    } else {
        line.push_str(field);
    }
}

/// The header line, CRLF included.
pub fn csv_header() -> String {
    let mut line = CSV_COLUMNS.join(",");
    line.push_str("\r\n");
    line
}

/// One row's line, CRLF included.
pub fn csv_line(row: &CostRow) -> String {
    let e = &row.event;
    let mut line = String::with_capacity(160);
    let units = if e.units.is_finite() {
        format!("{}", e.units)
    } else {
        String::new()
    };
    let fields: [&str; 10] = [
        &e.id,
        &iso_utc(e.ts),
        &row.asset_id,
        &row.asset_title,
        e.message_id.as_deref().unwrap_or(""),
        &e.provider,
        &e.model,
        &units,
        &e.unit,
        &usd(e.cost_nano_usd),
    ];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        push_field(&mut line, f);
    }
    line.push_str("\r\n");
    line
}

/// The whole CSV as lines (header first), one at a time: for a streaming
/// HTTP body or a writer.
pub fn csv_lines<'a, I>(rows: I) -> impl Iterator<Item = String> + 'a
where
    I: IntoIterator<Item = &'a CostRow>,
    I::IntoIter: 'a,
{
    std::iter::once(csv_header()).chain(rows.into_iter().map(csv_line))
}

/// Writes the CSV (header and rows) to `out`; returns the number of rows.
pub fn write_csv<'a, W: io::Write>(
    mut out: W,
    rows: impl IntoIterator<Item = &'a CostRow>,
) -> io::Result<u64> {
    let mut n = 0u64;
    out.write_all(csv_header().as_bytes())?;
    for row in rows {
        out.write_all(csv_line(row).as_bytes())?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

// ---------------------------------------------------------------- JSON

/// Amounts serialize as `{"costUsd": "0.0387", "costNanoUsd": 38700000,
/// "events": 3}` plus the key (`model`, `provider` or `day`).
fn serialize_bucket<S: serde::Serializer>(
    s: S,
    key_name: &'static str,
    key: &str,
    nano: i64,
    events: u64,
) -> Result<S::Ok, S::Error> {
    let mut st = s.serialize_struct("Bucket", 4)?;
    st.serialize_field(key_name, key)?;
    st.serialize_field("costUsd", &usd(nano))?;
    st.serialize_field("costNanoUsd", &nano)?;
    st.serialize_field("events", &events)?;
    st.end()
}

struct Named<'a, K>(&'static str, &'a Bucket<K>);

impl Serialize for Named<'_, String> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_bucket(s, self.0, &self.1.key, self.1.nano_usd, self.1.events)
    }
}

impl Serialize for Named<'_, Date> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut day = String::new();
        let _ = write!(
            day,
            "{:04}-{:02}-{:02}",
            self.1.key.year(),
            self.1.key.month() as u8,
            self.1.key.day()
        );
        serialize_bucket(s, self.0, &day, self.1.nano_usd, self.1.events)
    }
}

fn named<'a>(name: &'static str, v: &'a [Bucket<String>]) -> Vec<Named<'a, String>> {
    v.iter().map(|b| Named(name, b)).collect()
}

/// `{"costUsd", "costNanoUsd", "events", "byModel": [{"model", …}],
/// "byProvider": [{"provider", …}], "byDay": [{"day": "2026-11-25", …}]}`.
impl Serialize for Rollup {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Rollup", 6)?;
        st.serialize_field("costUsd", &usd(self.nano_usd))?;
        st.serialize_field("costNanoUsd", &self.nano_usd)?;
        st.serialize_field("events", &self.events)?;
        st.serialize_field("byModel", &named("model", &self.by_model))?;
        st.serialize_field("byProvider", &named("provider", &self.by_provider))?;
        let days: Vec<Named<'_, Date>> = self.by_day.iter().map(|b| Named("day", b)).collect();
        st.serialize_field("byDay", &days)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-25 12:00:00 UTC
    const NOW: Millis = 1_795_608_000_000;

    fn ev(id: &str, ts: Millis, provider: &str, model: &str, nano: i64) -> CostEventView {
        CostEventView {
            id: id.into(),
            ts,
            provider: provider.into(),
            model: model.into(),
            units: 1290.0,
            unit: "tokens".into(),
            cost_nano_usd: nano,
            message_id: Some(format!("m-{id}")),
        }
    }

    fn date(s: &str) -> Date {
        parse_date(s).unwrap()
    }

    #[test]
    fn amounts_are_exact_decimals() {
        for (nano, text) in [
            (0, "0.00"),
            (1, "0.000000001"),
            (38_700_000, "0.0387"),
            (39_000_000, "0.039"),
            (500_000_000, "0.50"),
            (12_410_000_000, "12.41"),
            (3_000_000_000, "3.00"),
            (-1_250_000, "-0.00125"),
            (i64::MAX, "9223372036.854775807"),
        ] {
            assert_eq!(usd(nano), text, "{nano}");
        }
    }

    #[test]
    fn days_and_times_are_utc() {
        assert_eq!(utc_day(NOW), date("2026-11-25"));
        assert_eq!(
            utc_day(day_start(date("2026-11-25")) - 1),
            date("2026-11-24")
        );
        assert_eq!(utc_day(-1), date("1969-12-31"));
        assert_eq!(iso_utc(NOW + 7), "2026-11-25T12:00:00.007Z");
        assert_eq!(day_start(date("1970-01-02")), DAY_MS);
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "26-11-25",
            "2026-1-25",
            "２０２６-11-25",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn query_filters_take_dates_times_and_model_lists() {
        let f = CostFilter::from_query(
            Some("2026-11-24"),
            Some("2026-11-25"),
            &["gemini-3.1-flash-image,nightmareai/real-esrgan", "x"],
        )
        .unwrap();
        assert_eq!(f.from, Some(day_start(date("2026-11-24"))));
        assert_eq!(
            f.to,
            Some(day_start(date("2026-11-26"))),
            "to includes its day"
        );
        assert_eq!(f.models.len(), 3);
        let f = CostFilter::from_query(Some("2026-11-25T12:00:00Z"), None, &[]).unwrap();
        assert_eq!(f.from, Some(NOW));
        let f = CostFilter::from_query(None, Some("2026-11-25T13:00:00+01:00"), &[]).unwrap();
        assert_eq!(f.to, Some(NOW));
        assert!(f.matches(&ev("a", NOW - 1, "google", "g", 1)));
        assert!(
            !f.matches(&ev("a", NOW, "google", "g", 1)),
            "to is exclusive"
        );

        assert!(matches!(
            CostFilter::from_query(Some("yesterday"), None, &[]),
            Err(CostError::BadTime { param: "from", .. })
        ));
        assert!(matches!(
            CostFilter::from_query(Some("2026-11-25"), Some("2026-11-24"), &[]),
            Err(CostError::EmptyRange { .. })
        ));
        assert_eq!(
            CostFilter::from_query(None, None, &["a,,b"]),
            Err(CostError::EmptyModel)
        );
        let e = CostFilter::from_query(Some("2026-11-25"), Some("2026-11-24"), &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the range is empty: from (2026-11-25) is not before to (2026-11-24)"
        );
    }

    #[test]
    fn rollups_are_exact_per_model_provider_and_day() {
        let day = DAY_MS;
        let events = [
            ev("1", NOW - 2 * day, "google", "gemini", 38_700_000),
            ev("2", NOW - 2 * day + 1, "google", "gemini", 38_700_000),
            ev("3", NOW, "replicate", "esrgan", 2_300_000),
            ev("4", NOW, "google", "imagen", 40_000_000),
            ev("5", NOW + day, "replicate", "rembg", 1),
        ];
        let r = Rollup::of(&events);
        assert_eq!(r.nano_usd, 119_700_001);
        assert_eq!(r.events, 5);
        assert_eq!(usd(r.nano_usd), "0.119700001");
        assert_eq!(
            r.by_model
                .iter()
                .map(|b| (b.key.as_str(), b.nano_usd, b.events))
                .collect::<Vec<_>>(),
            vec![
                ("gemini", 77_400_000, 2),
                ("imagen", 40_000_000, 1),
                ("esrgan", 2_300_000, 1),
                ("rembg", 1, 1)
            ]
        );
        assert_eq!(r.by_provider[0].key, "google");
        assert_eq!(r.by_provider[0].nano_usd, 117_400_000);
        assert_eq!(r.by_provider[1].nano_usd, 2_300_001);
        assert_eq!(r.by_day.len(), 3);
        assert_eq!(r.by_day[0].key, date("2026-11-23"));
        assert_eq!(r.by_day[1].nano_usd, 42_300_000);

        let series = r.daily(date("2026-11-22"), date("2026-11-27"));
        assert_eq!(
            series.iter().map(|b| b.nano_usd).collect::<Vec<_>>(),
            vec![0, 77_400_000, 0, 42_300_000, 1, 0]
        );
        assert!(r.daily(date("2026-11-27"), date("2026-11-22")).is_empty());

        let rows: Vec<CostRow> = CostRow::of_asset("a1", "Harbour", events.clone());
        let only = CostFilter::days(Some(date("2026-11-25")), Some(date("2026-11-25")))
            .with_models(["esrgan", "imagen"]);
        let r = Rollup::of_rows(&rows, &only);
        assert_eq!((r.nano_usd, r.events), (42_300_000, 2));
        assert_eq!(Rollup::of_rows(&rows, &CostFilter::all()).events, 5);
    }

    #[test]
    fn rollups_serialize_with_exact_strings() {
        let r = Rollup::of(&[ev("1", NOW, "google", "gemini", 38_700_000)]);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["costUsd"], "0.0387");
        assert_eq!(json["costNanoUsd"], 38_700_000);
        assert_eq!(json["byModel"][0]["model"], "gemini");
        assert_eq!(json["byProvider"][0]["provider"], "google");
        assert_eq!(json["byDay"][0]["day"], "2026-11-25");
        assert_eq!(json["byDay"][0]["events"], 1);
    }

    #[test]
    fn csv_rows_quote_what_needs_quoting() {
        let cases: [(&str, &str); 6] = [
            ("Harbour", "Harbour"),
            ("Dusk, warm", "\"Dusk, warm\""),
            ("The \"big\" one", "\"The \"\"big\"\" one\""),
            ("two\nlines", "\"two\nlines\""),
            ("cr\rhere", "\"cr\rhere\""),
            ("", ""),
        ];
        for (title, field) in cases {
            let row = CostRow {
                asset_id: "a1".into(),
                asset_title: title.into(),
                event: ev("e1", NOW, "google", "gemini", 38_700_000),
            };
            assert_eq!(
                csv_line(&row),
                format!(
                    "e1,2026-11-25T12:00:00.000Z,a1,{field},m-e1,google,gemini,1290,tokens,0.0387\r\n"
                )
            );
        }
        let mut e = ev("e2", NOW, "replicate", "nightmareai/real-esrgan", 2_300_000);
        e.units = 2.5;
        e.unit = "seconds".into();
        e.message_id = None;
        let row = CostRow {
            asset_id: "a2".into(),
            asset_title: "x".into(),
            event: e,
        };
        assert_eq!(
            csv_line(&row),
            "e2,2026-11-25T12:00:00.000Z,a2,x,,replicate,nightmareai/real-esrgan,2.5,seconds,0.0023\r\n"
        );
        assert_eq!(
            csv_header(),
            "event_id,timestamp_utc,asset_id,asset_title,message_id,provider,model,units,unit,cost_usd\r\n"
        );
        let mut out = Vec::new();
        assert_eq!(write_csv(&mut out, [&row, &row]).unwrap(), 2);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, csv_lines([&row, &row]).collect::<String>());
        assert_eq!(text.matches("\r\n").count(), 3);
    }
}
