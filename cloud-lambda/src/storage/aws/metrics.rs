//! Counts the DynamoDB and S3 requests this backend sends, per service and
//! operation, with an SDK interceptor: every HTTP attempt (retries
//! included) is counted when it is about to be transmitted, which is what
//! AWS bills. Tests and the `aws` bench read the counts to say what one
//! sync round costs (an idle poll, a push).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// The interceptor; clones share one count.
#[derive(Clone, Default, Debug)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<(String, String), u64>>>,
}

impl RequestCounter {
    /// The counts so far.
    pub fn snapshot(&self) -> RequestCounts {
        RequestCounts(self.counts.lock().expect("request counts").clone())
    }

    fn add(&self, service: &str, operation: &str) {
        *self
            .counts
            .lock()
            .expect("request counts")
            .entry((service.to_owned(), operation.to_owned()))
            .or_default() += 1;
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "atelier-request-counter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        match cfg.load::<Metadata>() {
            Some(m) => self.add(m.service(), m.name()),
            None => self.add("unknown", "unknown"),
        }
        Ok(())
    }
}

/// Requests per (service, operation), e.g. `("DynamoDB", "Query")`.
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct RequestCounts(pub BTreeMap<(String, String), u64>);

impl RequestCounts {
    /// Requests of one operation (`"Query"`, `"PutObject"`), any service.
    pub fn of(&self, operation: &str) -> u64 {
        self.0
            .iter()
            .filter(|((_, op), _)| op == operation)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// What was sent after `earlier` was taken.
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts(
            self.0
                .iter()
                .filter_map(|(k, n)| {
                    let d = n - earlier.0.get(k).copied().unwrap_or(0);
                    (d > 0).then(|| (k.clone(), d))
                })
                .collect(),
        )
    }
}

impl fmt::Display for RequestCounts {
    /// `DynamoDB.Query 1, S3.GetObject 2`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|((service, op), n)| format!("{service}.{op} {n}"))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_subtract_and_print() {
        let c = RequestCounter::default();
        c.add("DynamoDB", "Query");
        let before = c.snapshot();
        c.add("DynamoDB", "Query");
        c.add("S3", "GetObject");
        c.add("S3", "GetObject");
        let d = c.snapshot().since(&before);
        assert_eq!(d.of("Query"), 1);
        assert_eq!(d.of("GetObject"), 2);
        assert_eq!(d.total(), 3);
        assert_eq!(d.to_string(), "DynamoDB.Query 1, S3.GetObject 2");
        assert_eq!(RequestCounts::default().to_string(), "none");
    }
}
