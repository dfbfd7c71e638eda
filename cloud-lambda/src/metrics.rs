//! Counters the infrastructure turns into alarms: requests by class, errors
//! (4xx, 5xx), throttles (429), provider jobs finished and failed, jobs
//! refused by a spend limit, spend in nano-dollars, and projection
//! failures.
//!
//! They are process-wide (one Lambda instance or one `serve` is one
//! process) and reach the outside two ways:
//!
//! - `GET /metrics`: the counters since start, in Prometheus text format
//!   ([`Metrics::prometheus`]).
//! - CloudWatch Embedded Metric Format, when turned on ([`enable_emf`]):
//!   what was counted since the last line is written as one JSON line on
//!   stdout ([`Metrics::flush_emf`]), which CloudWatch Logs turns into
//!   metrics in namespace [`NAMESPACE`] with the one dimension
//!   [`DIMENSION`] (the deployment), without any API call. `serve
//!   --emf-metrics` writes a line per event; on Lambda one line closes each
//!   invocation that counted something (`lambda::LambdaApp::handle`).
//!   Requests are left out of EMF (API Gateway counts them).

use std::io::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{OnceLock, RwLock};

/// The CloudWatch namespace of the EMF lines.
pub const NAMESPACE: &str = "Atelier";

/// The dimension every EMF metric carries: which deployment wrote it (on
/// AWS its table and bucket prefix), so alarms of one environment never
/// count another's.
pub const DIMENSION: &str = "Deployment";

/// Every counter, by its Prometheus name, help and EMF metric name.
const COUNTERS: [(&str, &str, &str); 9] = [
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
        "atelier_jobs_finished_total",
        "Provider jobs that ended (succeeded, failed or canceled)",
        "JobsFinished",
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Counter {
    Requests = 0,
    ClientErrors,
    ServerErrors,
    Throttles,
    JobsFinished,
    JobFailures,
    JobsRefused,
    Spend,
    ProjectionFailures,
}

/// How EMF lines are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmfConfig {
    /// The [`DIMENSION`]'s value.
    pub deployment: String,
    /// Write a line after every event (`serve`); otherwise only when
    /// [`Metrics::flush_emf`] is called (once per Lambda invocation).
    pub each_event: bool,
}

/// A set of counters: the process's ([`global`]), or a test's own.
#[derive(Default)]
pub struct Metrics {
    values: [AtomicI64; COUNTERS.len()],
    /// Counted but not yet written as EMF.
    pending: [AtomicI64; COUNTERS.len()],
    emf: RwLock<Option<EmfConfig>>,
}

/// The process-wide counters.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

/// Also write the process's counters as CloudWatch EMF lines on stdout.
pub fn enable_emf(config: EmfConfig) {
    global().set_emf(config);
}

impl Metrics {
    pub fn set_emf(&self, config: EmfConfig) {
        *self.emf.write().expect("emf config") = Some(config);
    }

    fn add(&self, c: Counter, n: i64) {
        self.values[c as usize].fetch_add(n, Ordering::Relaxed);
        if c == Counter::Requests {
            return;
        }
        let each_event = match &*self.emf.read().expect("emf config") {
            None => return,
            Some(config) => config.each_event,
        };
        self.pending[c as usize].fetch_add(n, Ordering::Relaxed);
        if each_event {
            self.flush_emf();
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

    /// A provider job ended, however it ended.
    pub fn job_finished(&self) {
        self.add(Counter::JobsFinished, 1);
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

    /// What was counted since the last line, as one EMF line at `ts`
    /// milliseconds (and forgotten); `None` when nothing was, or EMF is off.
    pub fn take_emf(&self, ts: i64) -> Option<String> {
        let config = self.emf.read().expect("emf config").clone()?;
        let values: Vec<(&str, i64)> = COUNTERS
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let v = self.pending[i].swap(0, Ordering::Relaxed);
                (v != 0).then_some((c.2, v))
            })
            .collect();
        (!values.is_empty()).then(|| emf_line(&values, &config.deployment, ts))
    }

    /// Writes [`Metrics::take_emf`]'s line, if any, to stdout in one write.
    pub fn flush_emf(&self) {
        if let Some(line) = self.take_emf(core_sync::now_millis()) {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
    }
}

/// One EMF line (JSON, newline-terminated): each metric with its value
/// (unit `Count`; spend `None`), dimension [`DIMENSION`] = `deployment`,
/// at `ts` milliseconds.
pub fn emf_line(values: &[(&str, i64)], deployment: &str, ts: i64) -> String {
    let mut doc = serde_json::json!({
        "_aws": {
            "Timestamp": ts,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[DIMENSION]],
                "Metrics": values.iter().map(|(name, _)| serde_json::json!({
                    "Name": name,
                    "Unit": if *name == "SpendNanoUsd" { "None" } else { "Count" },
                })).collect::<Vec<_>>(),
            }],
        },
        DIMENSION: deployment,
    });
    for (name, value) in values {
        doc[*name] = serde_json::json!(value);
    }
    format!("{doc}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_lines_follow_the_embedded_metric_format() {
        let line = emf_line(
            &[("Throttles", 1), ("SpendNanoUsd", 38_700_000)],
            "atelier-prod-",
            1_795_608_000_000,
        );
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 1_795_608_000_000i64);
        let m = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], NAMESPACE);
        // Every dimension key names a string member of the root.
        assert_eq!(m["Dimensions"], serde_json::json!([[DIMENSION]]));
        assert_eq!(v[DIMENSION], "atelier-prod-");
        assert_eq!(
            m["Metrics"][0],
            serde_json::json!({"Name": "Throttles", "Unit": "Count"})
        );
        assert_eq!(
            m["Metrics"][1],
            serde_json::json!({"Name": "SpendNanoUsd", "Unit": "None"})
        );
        assert_eq!(v["Throttles"], 1);
        assert_eq!(v["SpendNanoUsd"], 38_700_000);
    }

    #[test]
    fn emf_sums_what_was_counted_since_the_last_line_and_leaves_requests_out() {
        let m = Metrics::default();
        m.job_failed();
        assert_eq!(m.take_emf(1), None, "EMF off: nothing kept for it");
        m.set_emf(EmfConfig {
            deployment: "d-".into(),
            each_event: false,
        });
        m.response(200);
        assert_eq!(m.take_emf(2), None, "requests are not EMF metrics");
        m.job_finished();
        m.job_failed();
        m.job_finished();
        m.spent(1_500);
        m.response(503);
        let v: serde_json::Value = serde_json::from_str(&m.take_emf(3).unwrap()).unwrap();
        assert_eq!(
            (
                v["JobsFinished"].as_i64(),
                v["JobFailures"].as_i64(),
                v["SpendNanoUsd"].as_i64(),
                v["ServerErrors"].as_i64()
            ),
            (Some(2), Some(1), Some(1_500), Some(1))
        );
        let names: Vec<&str> = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "ServerErrors",
                "JobsFinished",
                "JobFailures",
                "SpendNanoUsd"
            ]
        );
        assert_eq!(m.take_emf(4), None, "each count is written once");
        assert_eq!(m.value("atelier_job_failures_total"), Some(2));
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
