//! The cost CSV's format and the exact money and time strings of the cost
//! endpoints, in one place.
//!
//! MERGE NOTE: `core_sync::costs` (branch `desktop2`) defines the same
//! columns, amounts and timestamps for the desktop's export; when both are
//! on main, this module gives way to it (same column names and formats, so
//! the CSV does not change).
//!
//! The CSV (RFC 4180): a header line, then one line per cost event; CRLF
//! line ends; a field holding `,` `"` CR or LF is quoted, quotes doubled.
//! The columns are stable: new ones may only be appended.

use crate::storage::projection::CostEventRow;

/// The columns, in order.
///
/// | column | value |
/// |---|---|
/// | `event_id` | the cost event's id |
/// | `timestamp_utc` | when it was recorded, `2026-11-25T12:00:00.000Z` |
/// | `asset_id` | the asset (document) id |
/// | `asset_title` | the asset's title now |
/// | `message_id` | the tool request it paid for (empty if none) |
/// | `provider` | `google`, `replicate` |
/// | `model` | the model id |
/// | `units` | how many units were billed (decimal) |
/// | `unit` | `tokens`, `images`, `seconds`, `outputs` |
/// | `cost_usd` | exact decimal US dollars, e.g. `0.0387` |
pub const COLUMNS: [&str; 10] = [
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

/// The `Content-Type` of the CSV (RFC 4180 §3).
pub const CONTENT_TYPE: &str = "text/csv; charset=utf-8; header=present";

/// An amount in nano-dollars as an exact decimal: at least two decimals,
/// no trailing zeros beyond them (`38_700_000` → `0.0387`, `1` →
/// `0.000000001`, `12_410_000_000` → `12.41`).
pub fn usd(nano: i128) -> String {
    let sign = if nano < 0 { "-" } else { "" };
    let n = nano.unsigned_abs();
    let frac = format!("{:09}", n % 1_000_000_000);
    let mut frac = frac.trim_end_matches('0').to_owned();
    while frac.len() < 2 {
        frac.push('0');
    }
    format!("{sign}{}.{frac}", n / 1_000_000_000)
}

/// Year, month and day of a day number (days since 1970-01-01), for any
/// day (Howard Hinnant's civil-from-days).
fn civil(day: i64) -> (i64, u32, u32) {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A day number as `2026-11-25`.
pub fn date(day: i64) -> String {
    let (y, m, d) = civil(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Milliseconds since the epoch as `2026-11-25T12:00:00.007Z`.
pub fn iso_utc(ts: i64) -> String {
    let day = ts.div_euclid(86_400_000);
    let ms = ts.rem_euclid(86_400_000);
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        date(day),
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

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
pub fn header() -> String {
    let mut line = COLUMNS.join(",");
    line.push_str("\r\n");
    line
}

/// One event's line, CRLF included.
pub fn line(row: &CostEventRow) -> String {
    let e = &row.event;
    let units = if e.units.is_finite() {
        e.units.to_string()
    } else {
        String::new()
    };
    let fields: [&str; 10] = [
        &e.event_id,
        &iso_utc(e.ts),
        e.doc_id.as_str(),
        &row.asset_title,
        e.message_id.as_deref().unwrap_or(""),
        &e.provider,
        &e.model,
        &units,
        &e.unit,
        &usd(i128::from(e.cost_nano_usd)),
    ];
    let mut line = String::with_capacity(160);
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        push_field(&mut line, f);
    }
    line.push_str("\r\n");
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::projection::CostEvent;

    #[test]
    fn amounts_are_exact_decimals() {
        for (nano, text) in [
            (0, "0.00"),
            (1, "0.000000001"),
            (38_700_000, "0.0387"),
            (500_000_000, "0.50"),
            (12_410_000_000, "12.41"),
            (-1_250_000, "-0.00125"),
            (i64::MAX as i128, "9223372036.854775807"),
        ] {
            assert_eq!(usd(nano), text, "{nano}");
        }
    }

    #[test]
    fn times_are_utc_iso_8601_with_milliseconds() {
        // 2026-11-25 12:00:00 UTC
        assert_eq!(iso_utc(1_795_608_000_007), "2026-11-25T12:00:00.007Z");
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_utc(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(date(19_417), "2023-03-01");
        assert_eq!(date(-719_468), "0000-03-01");
    }

    #[test]
    fn fields_are_quoted_as_rfc_4180_says() {
        let row = CostEventRow {
            event: CostEvent {
                event_id: "e1".into(),
                doc_id: "0123456789abcdef0123456789abcdef".parse().unwrap(),
                ts: 0,
                provider: "google".into(),
                model: "m".into(),
                units: 1290.0,
                unit: "tokens".into(),
                cost_nano_usd: 38_700_000,
                message_id: None,
            },
            asset_title: "Shoe, \"red\"\r\nv2".into(),
        };
        assert_eq!(
            line(&row),
            "e1,1970-01-01T00:00:00.000Z,0123456789abcdef0123456789abcdef,\"Shoe, \"\"red\"\"\r\nv2\",,google,m,1290,tokens,0.0387\r\n"
        );
        assert_eq!(header().trim_end().split(',').count(), COLUMNS.len());
    }
}
