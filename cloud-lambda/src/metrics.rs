//! Counters the infrastructure turns into alarms: requests by class, errors
//! (4xx, 5xx), throttles (429), provider job failures, jobs refused by a
//! spend limit, spend in nano-dollars, and projection failures.
//!
//! They are process-wide (one Lambda instance or one `serve` is one
//! process) and reach the outside two ways:
//!
//! - `GET /metrics`: the counters since start, in Prometheus text format
//!   ([`Metrics::prometheus`]).
//! - CloudWatch Embedded Metric Format: when turned on
//!   ([`enable_emf`]; `atelier-cloud serve --emf-metrics`, or on Lambda),
//!   each event is also one JSON line on stdout, which CloudWatch Logs turns
//!   into a metric in namespace [`NAMESPACE`] without any API call.

use std::io::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// The CloudWatch namespace of the EMF lines.
pub const NAMESPACE: &str = "Atelier";

/// Every counter, by its Prometheus name, help and EMF metric name.
const COUNTERS: [(&str, &str, &str); 8] = [
    (
        "atelier_http_requests_total",
        "HTTP requests answered",
        "Requests",
    ),
    (
        "atelier_http_client_errors_total",
        "HTTP answers 400-499 other than 429",
        "ClientErrors",
    ),
    (
        "atelier_http_server_errors_total",
        "HTTP answers 500-599",
        "ServerErrors",
    ),
    (
        "atelier_http_throttled_total",
        "Requests refused by the per-user rate limit (429)",
        "Throttles",
    ),
    (
        "atelier_job_failures_total",
        "Provider jobs that ended failed",
        "JobFailures",
    ),
    (
        "atelier_jobs_refused_total",
        "Provider jobs refused by a spend limit",
        "JobsRefused",
    ),
    (
        "atelier_spend_nano_usd_total",
        "Provider spend recorded, in billionths of a US dollar",
        "SpendNanoUsd",
    ),
    (
        "atelier_projection_failures_total",
        "Writes whose listing or cost projection failed",
        "ProjectionFailures",
    ),
];

#[derive(Clone, Copy)]
enum Counter {
    Requests = 0,
    ClientErrors,
    ServerErrors,
    Throttles,
    JobFailures,
    JobsRefused,
    Spend,
    ProjectionFailures,
}

/// The process's counters.
pub struct Metrics {
    values: [AtomicI64; COUNTERS.len()],
    emf: AtomicBool,
}

/// The process-wide counters.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics {
        values: Default::default(),
        emf: AtomicBool::new(false),
    })
}

/// Also write each event as a CloudWatch EMF line on stdout.
pub fn enable_emf() {
    global().emf.store(true, Ordering::Relaxed);
}

impl Metrics {
    fn add(&self, c: Counter, n: i64) {
        self.values[c as usize].fetch_add(n, Ordering::Relaxed);
        if !matches!(c, Counter::Requests) && self.emf.load(Ordering::Relaxed) {
            let line = emf_line(COUNTERS[c as usize].2, n, core_sync::now_millis());
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
    }

    /// One answered request with this status.
    pub fn response(&self, status: u16) {
        self.add(Counter::Requests, 1);
        match status {
            429 => self.add(Counter::Throttles, 1),
            400..=499 => self.add(Counter::ClientErrors, 1),
            500..=599 => self.add(Counter::ServerErrors, 1),
            _ => {}
        }
    }

    pub fn job_failed(&self) {
        self.add(Counter::JobFailures, 1);
    }

    pub fn job_refused(&self) {
        self.add(Counter::JobsRefused, 1);
    }

    pub fn spent(&self, nano_usd: i64) {
        if nano_usd != 0 {
            self.add(Counter::Spend, nano_usd);
        }
    }

    pub fn projection_failed(&self) {
        self.add(Counter::ProjectionFailures, 1);
    }

    /// A counter's value by its Prometheus name (tests, `GET /metrics`).
    pub fn value(&self, name: &str) -> Option<i64> {
        COUNTERS
            .iter()
            .position(|c| c.0 == name)
            .map(|i| self.values[i].load(Ordering::Relaxed))
    }

    /// Every counter in the Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        for (i, (name, help, _)) in COUNTERS.iter().enumerate() {
            let v = self.values[i].load(Ordering::Relaxed);
            out.push_str(&format!(
                "# HELP {name} {help}.\n# TYPE {name} counter\n{name} {v}\n"
            ));
        }
        out
    }
}

/// One EMF line (JSON, newline-terminated): metric `name` with `value`
/// (unit Count), no dimensions, at `ts` milliseconds.
pub fn emf_line(name: &str, value: i64, ts: i64) -> String {
    let doc = serde_json::json!({
        "_aws": {
            "Timestamp": ts,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[]],
                "Metrics": [{"Name": name, "Unit": "Count"}],
            }],
        },
        name: value,
    });
    format!("{doc}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_lines_follow_the_embedded_metric_format() {
        let line = emf_line("Throttles", 1, 1_795_608_000_000);
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 1_795_608_000_000i64);
        let m = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], NAMESPACE);
        assert_eq!(m["Dimensions"], serde_json::json!([[]]));
        assert_eq!(m["Metrics"][0]["Name"], "Throttles");
        assert_eq!(v["Throttles"], 1);
    }

    #[test]
    fn prometheus_text_names_every_counter_once() {
        let text = global().prometheus();
        for (name, _, _) in COUNTERS {
            assert_eq!(
                text.lines()
                    .filter(|l| l.split(' ').next() == Some(name))
                    .count(),
                1,
                "{text}"
            );
            assert!(text.contains(&format!("# TYPE {name} counter")));
        }
    }
}
