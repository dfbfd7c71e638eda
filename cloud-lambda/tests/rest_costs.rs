//! `GET /costs` and `GET /costs.csv` against cost events that devices
//! recorded in their documents and synced (so the projection is derived
//! the way it is in use), across UTC days, models and users; and the spend
//! limits, which refuse a job over REST and over sync alike.

#[path = "support/rest.rs"]
mod rest;

use std::collections::BTreeMap;
use std::process::Command;

use cloud_lambda::limits::SpendLimits;
use core_sync::model::{CostEventView, MessageStatus, NewCostEvent, NewMessage};
use rest::{Backend, Device, Options, User, World, device, world};
use serde_json::{Value, json};

const DAY: i64 = 86_400_000;
/// 2026-11-24 00:00 UTC.
const DAY1: i64 = 20_781 * DAY;

/// Records `(ts, provider, model, nano)` cost events in a new asset of the
/// device's store, and syncs it.
async fn asset_with_costs(d: &mut Device, title: &str, events: &[(i64, &str, &str, i64)]) {
    let mut a = d.store.create(title, DAY1).await.unwrap();
    for (ts, provider, model, nano) in events {
        a.doc
            .record_cost(
                NewCostEvent {
                    provider: (*provider).into(),
                    model: (*model).into(),
                    units: 1290.0,
                    unit: "tokens".into(),
                    cost_nano_usd: *nano,
                    message_id: None,
                },
                *ts,
            )
            .unwrap();
    }
    d.store.save(&mut a).await.unwrap();
    d.sync.local_change(a.id.clone());
    d.sync.sync_until_idle().await.unwrap();
}

/// Every cost event in the device's own store (what the desktop shows).
async fn local_events(d: &Device) -> Vec<CostEventView> {
    let mut out = Vec::new();
    for listing in d.store.list().await.unwrap() {
        let a = d.store.load(&listing.id).await.unwrap();
        out.extend(a.doc.cost_events().unwrap());
    }
    out
}

fn usd(nano: i64) -> String {
    let frac = format!("{:09}", nano % 1_000_000_000);
    let mut frac = frac.trim_end_matches('0').to_owned();
    while frac.len() < 2 {
        frac.push('0');
    }
    format!("{}.{frac}", nano / 1_000_000_000)
}

/// `GET /costs?{query}` as `user`.
async fn costs(w: &World, user: &User, query: &str) -> Value {
    w.get(user, &format!("/costs?{query}")).await.json(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_are_exact_across_days_models_and_users_and_match_the_devices_store_on_the_embedded_backend()
 {
    rollups_are_exact_across_days_models_and_users_and_match_the_devices_store(Backend::Embedded)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_are_exact_across_days_models_and_users_and_match_the_devices_store_on_the_aws_backend()
 {
    rollups_are_exact_across_days_models_and_users_and_match_the_devices_store(Backend::Aws).await;
}

async fn rollups_are_exact_across_days_models_and_users_and_match_the_devices_store(
    backend: Backend,
) {
    let w = world(Options {
        backend,
        ..Options::default()
    })
    .await;
    let mut alice = device(&w, &w.alice).await;
    let mut bob = device(&w, &w.bob).await;
    asset_with_costs(
        &mut alice,
        "Shoe, \"red\"\nsecond line",
        &[
            (DAY1 + 1, "google", "gemini-3.1-flash-image", 38_779_200),
            (DAY1 + DAY - 1, "google", "gemini-3.1-flash-image", 1),
            (
                DAY1 + DAY,
                "replicate",
                "nightmareai/real-esrgan",
                2_250_000,
            ),
        ],
    )
    .await;
    asset_with_costs(
        &mut alice,
        "Lighthouse",
        &[
            (DAY1 + DAY + 7, "google", "gemini-3-pro-image", 154_800_000),
            (
                DAY1 + 2 * DAY,
                "replicate",
                "bria/remove-background",
                18_000_000,
            ),
        ],
    )
    .await;
    asset_with_costs(
        &mut bob,
        "Bob's",
        &[(DAY1 + 5, "google", "gemini-3.1-flash-image", 999)],
    )
    .await;

    let mine = local_events(&alice).await;
    assert_eq!(mine.len(), 5);
    let total: i64 = mine.iter().map(|e| e.cost_nano_usd).sum();
    let all = costs(&w, &w.alice, "").await;
    assert_eq!(
        all["costNanoUsd"], total,
        "the server agrees with the device's own store"
    );
    assert_eq!(all["costUsd"], usd(total));
    assert_eq!(all["events"], 5);
    let by = |key: &str| -> BTreeMap<String, i64> {
        all[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["key"].as_str().unwrap().to_owned(),
                    b["costNanoUsd"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        by("byDay"),
        BTreeMap::from([
            ("2026-11-24".into(), 38_779_201),
            ("2026-11-25".into(), 157_050_000),
            ("2026-11-26".into(), 18_000_000),
        ])
    );
    assert_eq!(
        by("byProvider"),
        BTreeMap::from([
            ("google".into(), 193_579_201),
            ("replicate".into(), 20_250_000)
        ])
    );
    assert_eq!(by("byModel").len(), 4);
    assert_eq!(
        all["byModel"][0]["key"], "gemini-3-pro-image",
        "most spent first"
    );

    // Ranges: `to` as a date includes its day; as a time it excludes it.
    let day2 = costs(&w, &w.alice, "from=2026-11-25&to=2026-11-25").await;
    assert_eq!(day2["costNanoUsd"], 157_050_000);
    let upto = costs(&w, &w.alice, "to=2026-11-25T00:00:00Z").await;
    assert_eq!(upto["costNanoUsd"], 38_779_201);
    let models = costs(
        &w,
        &w.alice,
        "model=gemini-3-pro-image,bria/remove-background",
    )
    .await;
    assert_eq!(models["costNanoUsd"], 172_800_000);
    let repeated = costs(
        &w,
        &w.alice,
        "model=gemini-3-pro-image&model=bria%2Fremove-background",
    )
    .await;
    assert_eq!(repeated["costNanoUsd"], 172_800_000);
    let none = costs(&w, &w.alice, "from=2030-01-01").await;
    assert_eq!(
        (none["costUsd"].as_str(), none["events"].as_u64()),
        (Some("0.00"), Some(0))
    );
    let bobs = costs(&w, &w.bob, "").await;
    assert_eq!(
        (bobs["costNanoUsd"].as_i64(), bobs["events"].as_u64()),
        (Some(999), Some(1))
    );
    for (q, code) in [
        ("from=2026-11-26&to=2026-11-25", "empty_range"),
        ("from=tuesday", "bad_time"),
        ("sort=desc", "unknown_parameter"),
    ] {
        w.get(&w.alice, &format!("/costs?{q}"))
            .await
            .problem(400, code);
        w.get(&w.alice, &format!("/costs.csv?{q}"))
            .await
            .problem(400, code);
    }

    // The CSV: Python's csv module reads it; its Decimal sum is the total.
    for (query, want_rows, want_total) in [
        ("", 5, all["costUsd"].clone()),
        ("from=2026-11-25&to=2026-11-25", 2, day2["costUsd"].clone()),
    ] {
        let r = w.get(&w.alice, &format!("/costs.csv?{query}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("text/csv; charset=utf-8; header=present")
        );
        let path = w.dir.path().join("costs.csv");
        std::fs::write(&path, &r.body).unwrap();
        let script = r#"
import csv, decimal, json, sys
with open(sys.argv[1], newline='') as f:
    rows = list(csv.reader(f, strict=True))
header, body = rows[0], rows[1:]
print(json.dumps({"header": header, "rows": len(body),
    "total": str(sum(decimal.Decimal(r[header.index("cost_usd")]) for r in body)),
    "titles": sorted({r[header.index("asset_title")] for r in body}),
    "times": [r[header.index("timestamp_utc")] for r in body]}))
"#;
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            got["header"],
            json!([
                "event_id",
                "timestamp_utc",
                "asset_id",
                "asset_title",
                "message_id",
                "provider",
                "model",
                "units",
                "unit",
                "cost_usd"
            ])
        );
        assert_eq!(got["rows"], want_rows);
        // Decimal normalises trailing zeros: compare as numbers.
        let sum: f64 = got["total"].as_str().unwrap().parse().unwrap();
        let want: f64 = want_total.as_str().unwrap().parse().unwrap();
        assert!(
            (sum - want).abs() < 1e-12
                && got["total"].as_str().unwrap().trim_end_matches('0')
                    == want_total.as_str().unwrap().trim_end_matches('0'),
            "{got} vs {want_total}"
        );
        let times: Vec<&str> = got["times"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let mut sorted = times.clone();
        sorted.sort();
        assert_eq!(times, sorted, "oldest first");
        assert!(
            times.iter().all(|t| t.ends_with('Z') && t.len() == 24),
            "{times:?}"
        );
        if query.is_empty() {
            assert_eq!(
                got["titles"],
                json!(["Lighthouse", "Shoe, \"red\"\nsecond line"])
            );
            assert_eq!(times[0], "2026-11-24T00:00:00.001Z");
        }
    }
}

/// A tool request on `asset` over REST; returns the posted message.
async fn edit(w: &World, asset: &str) -> Value {
    w.post(
        &w.alice,
        &format!("/assets/{asset}/messages"),
        json!({"type": "edit", "prompt": "make it blue"}),
    )
    .await
    .json(202)["message"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_over_the_hourly_limit_fail_with_the_reason_over_rest_and_sync_on_the_embedded_backend()
 {
    jobs_over_the_hourly_limit_fail_with_the_reason_over_rest_and_sync(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_over_the_hourly_limit_fail_with_the_reason_over_rest_and_sync_on_the_aws_backend() {
    jobs_over_the_hourly_limit_fail_with_the_reason_over_rest_and_sync(Backend::Aws).await;
}

async fn jobs_over_the_hourly_limit_fail_with_the_reason_over_rest_and_sync(backend: Backend) {
    let w = world(Options {
        backend,
        jobs: true,
        spend: Some(SpendLimits {
            jobs_per_hour: Some(2),
            daily_cap_nano_usd: None,
        }),
        ..Options::default()
    })
    .await;
    let asset = w.asset_with_image(&w.alice, "Shoe").await;
    for _ in 0..2 {
        let m = edit(&w, &asset).await;
        let id = m["id"].as_str().unwrap();
        assert_eq!(
            format!("{:?}", w.job_ended(&w.alice, id).await),
            "Succeeded"
        );
    }
    let posted = w
        .post(
            &w.alice,
            &format!("/assets/{asset}/messages"),
            json!({"type": "edit", "prompt": "again"}),
        )
        .await
        .json(202);
    assert_eq!(posted["message"]["status"], "failed");
    assert_eq!(posted["message"]["error"]["code"], "job_limit");
    assert!(
        posted["message"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 an hour")
    );
    assert_eq!(posted["operation"]["status"], "failed");

    // A device's request meets the same limit.
    let mut d = device(&w, &w.alice).await;
    d.sync.sync_until_idle().await.unwrap();
    let doc: core_sync::DocId = asset.parse().unwrap();
    let mut a = d.store.load(&doc).await.unwrap();
    let id = a
        .doc
        .append_message(
            NewMessage::tool_request("edit", "google", "gemini-3.1-flash-image", "green"),
            DAY1,
        )
        .unwrap();
    d.store.save(&mut a).await.unwrap();
    d.sync.local_change(doc.clone());
    d.sync.sync_until_idle().await.unwrap();
    w.job_ended(&w.alice, &id).await;
    d.sync.sync_until_idle().await.unwrap();
    let m = d.store.load(&doc).await.unwrap().doc.message(&id).unwrap();
    assert_eq!(m.status, Some(MessageStatus::Failed));
    assert_eq!(m.error.unwrap().code, "job_limit");
    // Two jobs reached the provider, no more.
    let calls = w
        .fakes
        .as_ref()
        .unwrap()
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(":generateContent"))
        .count();
    assert_eq!(calls, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_over_the_daily_spend_cap_fail_with_the_reason() {
    let w = world(Options {
        jobs: true,
        spend: Some(SpendLimits {
            jobs_per_hour: None,
            daily_cap_nano_usd: Some(10_000_000),
        }),
        ..Options::default()
    })
    .await;
    let asset = w.asset_with_image(&w.alice, "Shoe").await;
    let first = edit(&w, &asset).await;
    w.job_ended(&w.alice, first["id"].as_str().unwrap()).await;
    let spent = costs(&w, &w.alice, "").await;
    assert!(
        spent["costNanoUsd"].as_i64().unwrap() >= 10_000_000,
        "{spent}"
    );
    let second = edit(&w, &asset).await;
    assert_eq!(second["status"], "failed");
    assert_eq!(second["error"]["code"], "spend_cap");
    let text = second["error"]["message"].as_str().unwrap();
    assert!(
        text.contains("$0.01") && text.contains("00:00 UTC"),
        "{text}"
    );
    // The counters the alarms watch saw the spend and the refusal.
    let metrics = w
        .call(None, reqwest::Method::GET, "/metrics", None)
        .await
        .text();
    let counter = |name: &str| -> i64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(counter("atelier_jobs_refused_total") >= 1, "{metrics}");
    assert!(
        counter("atelier_spend_nano_usd_total") >= 10_000_000,
        "{metrics}"
    );
    // Bob has his own cap.
    let bobs = w.asset_with_image(&w.bob, "Bob's").await;
    let m = w
        .post(
            &w.bob,
            &format!("/assets/{bobs}/messages"),
            json!({"type": "edit", "prompt": "x"}),
        )
        .await
        .json(202);
    assert_ne!(m["message"]["status"], "failed", "{m}");
}
