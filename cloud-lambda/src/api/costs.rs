//! `GET /costs?from&to&model` (total, per UTC day, per model, per
//! provider) and `GET /costs.csv?from&to&model` (one row per cost event,
//! streamed page by page, so memory stays flat however long it is). Both
//! read the cost-event projection, never a document.
//!
//! `from` and `to` are UTC dates (`2026-11-25`; `to` includes its whole
//! day) or RFC 3339 times (`2026-11-25T12:00:00Z`; `to` excludes that
//! instant); `model` may be repeated and/or a comma-separated list.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Json, User, cost_csv, query_pairs, single, validate};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::DocStore;
use crate::storage::projection::{CostCursor, CostGroup, CostRange, DAY_MS, MAX_MODELS};

/// Cost events per storage read while streaming the CSV.
pub const CSV_PAGE: usize = 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(costs))
        .routes(routes!(costs_csv))
}

/// The filter of both routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct CostParams {
    /// First UTC day (`2026-11-01`) or instant (`2026-11-01T00:00:00Z`), inclusive.
    #[param(
        pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])([Tt]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))?$"
    )]
    from: Option<String>,
    /// Last UTC day (inclusive) or instant (exclusive); after `from`.
    #[param(
        pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])([Tt]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))?$"
    )]
    to: Option<String>,
    /// Only these models (repeat, or separate with commas).
    #[param(inline, value_type = Option<Vec<ModelName>>)]
    model: Option<Vec<String>>,
}

/// Model ids, comma-separated.
#[derive(ToSchema)]
#[schema(pattern = r"^[\s\u0085]*[^,\s\u0085][^,]*(,[\s\u0085]*[^,\s\u0085][^,]*)*$")]
#[allow(dead_code)]
struct ModelName(String);

/// What a filter adds up to.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostReport {
    /// Exact decimal US dollars, e.g. `"12.41"`.
    pub cost_usd: String,
    /// The same in billionths of a dollar.
    pub cost_nano_usd: i64,
    pub events: u64,
    /// Oldest first; only days with events.
    pub by_day: Vec<CostBucket>,
    /// Most spent first (ties by name).
    pub by_model: Vec<CostBucket>,
    /// Most spent first (ties by name).
    pub by_provider: Vec<CostBucket>,
}

/// One day's, model's or provider's share.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostBucket {
    /// The UTC day (`2026-11-25`), model id or provider.
    pub key: String,
    pub cost_usd: String,
    pub cost_nano_usd: i64,
    pub events: u64,
}

fn bucket(key: String, nano: i128, events: u64) -> CostBucket {
    CostBucket {
        key,
        cost_usd: cost_csv::usd(nano),
        cost_nano_usd: saturate(nano),
        events,
    }
}

fn saturate(n: i128) -> i64 {
    n.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Adds up the groups of a storage rollup.
pub fn report(groups: &[CostGroup]) -> CostReport {
    use std::collections::BTreeMap;
    let mut days: BTreeMap<i64, (i128, u64)> = BTreeMap::new();
    let mut models: BTreeMap<&str, (i128, u64)> = BTreeMap::new();
    let mut providers: BTreeMap<&str, (i128, u64)> = BTreeMap::new();
    let (mut total, mut events) = (0i128, 0u64);
    for g in groups {
        total += g.nano_usd;
        events += g.events;
        for slot in [
            days.entry(g.day).or_default(),
            models.entry(&g.model).or_default(),
            providers.entry(&g.provider).or_default(),
        ] {
            slot.0 += g.nano_usd;
            slot.1 += g.events;
        }
    }
    let ranked = |m: BTreeMap<&str, (i128, u64)>| {
        let mut v: Vec<CostBucket> = m
            .into_iter()
            .map(|(k, (n, c))| bucket(k.to_owned(), n, c))
            .collect();
        // Stable: equal spends keep the map's name order.
        v.sort_by_key(|b| std::cmp::Reverse(b.cost_nano_usd));
        v
    };
    CostReport {
        cost_usd: cost_csv::usd(total),
        cost_nano_usd: saturate(total),
        events,
        by_day: days
            .into_iter()
            .map(|(d, (n, c))| bucket(cost_csv::date(d), n, c))
            .collect(),
        by_model: ranked(models),
        by_provider: ranked(providers),
    }
}

/// Reads `from`, `to` and `model` (refusing anything else).
pub fn parse_range(query: Option<&str>) -> Result<CostRange, ApiError> {
    let pairs = query_pairs(query, &["from", "to", "model"])?;
    let from = single(&pairs, "from")?
        .map(|v| bound("from", v, false))
        .transpose()?;
    let to = single(&pairs, "to")?
        .map(|v| bound("to", v, true))
        .transpose()?;
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(ApiError::invalid(
            "empty_range",
            "the range is empty: from must come before to",
        ));
    }
    let mut models: Vec<String> = Vec::new();
    for (_, v) in pairs.iter().filter(|(n, _)| n == "model") {
        for m in v.split(',').map(|m| m.trim_matches(validate::is_blank)) {
            if m.is_empty() {
                return Err(ApiError::invalid(
                    "bad_model",
                    "model is empty; name a model id",
                ));
            }
            if !models.iter().any(|x| x == m) {
                models.push(m.to_owned());
            }
        }
    }
    if models.len() > MAX_MODELS {
        return Err(ApiError::invalid(
            "bad_model",
            format!("at most {MAX_MODELS} models per query"),
        ));
    }
    Ok(CostRange { from, to, models })
}

/// A date's start (for `to`, the next day's start) or an exact instant.
fn bound(param: &str, value: &str, end: bool) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::invalid(
            "bad_time",
            format!(
                "{param}={:?} is neither a date (2026-11-25) nor a UTC time (2026-11-25T12:00:00Z)",
                value.chars().take(64).collect::<String>()
            ),
        )
    };
    if let Some(day) = parse_date(value) {
        return Ok((day + i64::from(end)) * DAY_MS);
    }
    let t = time::OffsetDateTime::parse(value, &Rfc3339).map_err(|_| bad())?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| bad())
}

/// `YYYY-MM-DD`, a real calendar date, as days since the epoch.
fn parse_date(s: &str) -> Option<i64> {
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
    let month = time::Month::try_from(num(5..7)? as u8).ok()?;
    let date = time::Date::from_calendar_date(num(0..4)? as i32, month, num(8..10)? as u8).ok()?;
    Some(i64::from(date.to_julian_day()) - 2_440_588)
}

/// Spend in a UTC range: total, per day, per model and per provider.
#[utoipa::path(get, path = "/costs", tag = "costs", params(CostParams),
    responses((status = 200, description = "The rollup", body = CostReport)),
    security(("bearer" = [])))]
async fn costs(
    State(state): State<AppState>,
    User(user): User,
    RawQuery(query): RawQuery,
) -> Result<Json<CostReport>, ApiError> {
    let range = parse_range(query.as_deref())?;
    let groups = state.store.projections().cost_groups(&user, &range).await?;
    Ok(Json(report(&groups)))
}

/// Every cost event in a UTC range as CSV (RFC 4180), oldest first.
#[utoipa::path(get, path = "/costs.csv", tag = "costs", params(CostParams),
    responses((status = 200, description = "Columns: event_id, timestamp_utc, asset_id, asset_title, message_id, provider, model, units, unit, cost_usd",
        body = String, content_type = "text/csv")),
    security(("bearer" = [])))]
async fn costs_csv(
    State(state): State<AppState>,
    User(user): User,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let range = parse_range(query.as_deref())?;
    // Fail before the 200 if storage is down: read the first page now.
    let first = state
        .store
        .projections()
        .cost_events(&user, &range, None, CSV_PAGE)
        .await?;
    let stream = csv_stream(state.store.clone(), user, range, first);
    Ok((
        [
            (header::CONTENT_TYPE, cost_csv::CONTENT_TYPE),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"costs.csv\"",
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

struct CsvState {
    store: Arc<dyn DocStore>,
    user: String,
    range: CostRange,
    page: Option<Vec<crate::storage::projection::CostEventRow>>,
    header: bool,
}

/// The CSV body: the header, then one chunk per page of events.
fn csv_stream(
    store: Arc<dyn DocStore>,
    user: String,
    range: CostRange,
    first: Vec<crate::storage::projection::CostEventRow>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    use futures::StreamExt as _;
    let start = CsvState {
        store,
        user,
        range,
        page: Some(first),
        header: true,
    };
    futures::stream::unfold(start, |mut s| async move {
        if std::mem::take(&mut s.header) {
            return Some((Ok(Bytes::from(cost_csv::header())), s));
        }
        let page = s.page.take()?;
        if page.is_empty() {
            return None;
        }
        let mut chunk = String::with_capacity(page.len() * 160);
        for row in &page {
            chunk.push_str(&cost_csv::line(row));
        }
        if page.len() == CSV_PAGE {
            let after = CostCursor::from(&page[page.len() - 1].event);
            match s
                .store
                .projections()
                .cost_events(&s.user, &s.range, Some(&after), CSV_PAGE)
                .await
            {
                Ok(next) => s.page = Some(next),
                Err(e) => {
                    // The 200 is sent: cut the body short so the client
                    // sees a broken download, not a short file.
                    tracing::error!(error = %e, "cost CSV cut short");
                    return Some((Err(std::io::Error::other(e.to_string())), s));
                }
            }
        }
        Some((Ok(Bytes::from(chunk)), s))
    })
    // The body may be polled once more after its end.
    .fuse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_take_dates_times_and_model_lists() {
        let r = parse_range(Some("from=2026-11-24&to=2026-11-25&model=a,b&model=c")).unwrap();
        assert_eq!(r.from, Some(20_781 * DAY_MS));
        assert_eq!(r.to, Some(20_783 * DAY_MS), "to includes its day");
        assert_eq!(r.models, ["a", "b", "c"]);
        let r = parse_range(Some("to=2026-11-25T13:00:00%2B01:00")).unwrap();
        assert_eq!(r.to, Some(1_795_608_000_000));
        for (q, code) in [
            ("from=yesterday", "bad_time"),
            ("from=2026-02-30", "bad_time"),
            ("from=2026-11-25&to=2026-11-24", "empty_range"),
            ("model=a,,b", "bad_model"),
            ("form=2026-11-25", "unknown_parameter"),
            ("from=2026-11-25&from=2026-11-26", "repeated_parameter"),
        ] {
            assert_eq!(parse_range(Some(q)).unwrap_err().code(), code, "{q}");
        }
    }

    #[test]
    fn reports_add_up_groups_exactly() {
        let g = |day, provider: &str, model: &str, nano, events| CostGroup {
            day,
            provider: provider.into(),
            model: model.into(),
            nano_usd: nano,
            events,
        };
        let r = report(&[
            g(1, "google", "a", 38_700_000, 1),
            g(1, "replicate", "b", 1, 1),
            g(2, "google", "a", 38_700_000, 1),
        ]);
        assert_eq!((r.cost_usd.as_str(), r.events), ("0.077400001", 3));
        assert_eq!(r.by_day[0].key, "1970-01-02");
        assert_eq!(r.by_model[0].key, "a");
        assert_eq!(r.by_model[0].cost_nano_usd, 77_400_000);
        assert_eq!(r.by_provider[1].key, "replicate");
    }
}
