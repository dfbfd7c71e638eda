//! The cost CSV read by another implementation: Python's `csv` module (the
//! reader spreadsheets and scripts use) parses what `costs::write_csv`
//! writes, field for field, and the exact decimal sum of `cost_usd` is the
//! rollup's total.

use std::process::Command;

use core_sync::costs::{self, CostFilter, CostRow, Rollup};
use core_sync::model::CostEventView;

const NOW: i64 = 1_795_608_000_000;

/// Titles that need quoting, and some that do not.
const TITLES: [&str; 7] = [
    "Harbour at dusk",
    "Commas, and more, commas",
    "She said \"warmer\"",
    "two\nlines",
    "windows\r\nline end",
    "  leading and trailing spaces  ",
    "ünïcødé ✓ 漢字",
];

fn rows() -> Vec<CostRow> {
    let mut rows = Vec::new();
    for (a, title) in TITLES.iter().enumerate() {
        let events = (0..40).map(|i| CostEventView {
            id: format!("e{a}-{i}"),
            ts: NOW - (i as i64) * 3_600_000 * 7,
            provider: if i % 3 == 0 { "replicate" } else { "google" }.into(),
            model: match i % 3 {
                0 => "nightmareai/real-esrgan",
                1 => "gemini-3.1-flash-image",
                _ => "gemini-2.5-flash-image",
            }
            .into(),
            units: if i % 3 == 0 {
                2.5 + i as f64 / 8.0
            } else {
                1290.0
            },
            unit: if i % 3 == 0 { "seconds" } else { "tokens" }.into(),
            // Odd nano amounts: a float sum would drift, an exact one not.
            cost_nano_usd: 38_700_000 + i as i64 * 1_000_003 + a as i64,
            message_id: (i % 5 != 0).then(|| format!("m{a}-{i}")),
        });
        rows.extend(CostRow::of_asset(&format!("asset{a}"), title, events));
    }
    costs::sort_rows(&mut rows);
    rows
}

const READER: &str = r#"
import csv, json, sys
from decimal import Decimal
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    r = csv.DictReader(f)
    header = r.fieldnames
    out = [row for row in r]
total = sum((Decimal(row["cost_usd"]) for row in out), Decimal(0))
print(json.dumps({
    "header": header,
    "rows": len(out),
    "total": str(total),
    "titles": sorted(set(row["asset_title"] for row in out)),
    "first": out[0],
}))
"#;

#[test]
fn python_reads_the_csv_and_the_sum_matches() {
    let rows = rows();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("costs.csv");
    let filter = CostFilter::all();
    let file = std::fs::File::create(&path).unwrap();
    let written = costs::write_csv(
        std::io::BufWriter::new(file),
        rows.iter().filter(|r| filter.matches(&r.event)),
    )
    .unwrap();
    assert_eq!(written as usize, rows.len());

    let out = Command::new("python3")
        .arg("-c")
        .arg(READER)
        .arg(&path)
        .output()
        .expect("python3 runs (Debian's python3 package)");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["header"], serde_json::json!(costs::CSV_COLUMNS));
    assert_eq!(got["rows"], rows.len());
    let rollup = Rollup::of_rows(&rows, &filter);
    // Decimal's str() keeps the scale; compare as numbers of nano-dollars.
    let total: String = got["total"].as_str().unwrap().to_owned();
    assert_eq!(
        nano_of(&total),
        rollup.nano_usd,
        "python {total} vs {}",
        costs::usd(rollup.nano_usd)
    );
    let mut titles: Vec<&str> = TITLES.to_vec();
    titles.sort();
    assert_eq!(got["titles"], serde_json::json!(titles));
    let first = &got["first"];
    let r = &rows[0];
    assert_eq!(first["event_id"], r.event.id);
    assert_eq!(first["timestamp_utc"], costs::iso_utc(r.event.ts));
    assert_eq!(first["asset_id"], *r.asset_id);
    assert_eq!(first["model"], r.event.model);
    assert_eq!(first["units"], format!("{}", r.event.units));
    assert_eq!(
        first["message_id"],
        r.event.message_id.clone().unwrap_or_default()
    );
}

/// "1.234" → 1_234_000_000.
fn nano_of(decimal: &str) -> i64 {
    let (whole, frac) = decimal.split_once('.').unwrap_or((decimal, ""));
    assert!(frac.len() <= 9, "{decimal} has more than 9 decimals");
    whole.parse::<i64>().unwrap() * 1_000_000_000 + format!("{frac:0<9}").parse::<i64>().unwrap()
}
