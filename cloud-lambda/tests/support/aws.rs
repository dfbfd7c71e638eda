//! The AWS backend against moto: a deployment with its own table and
//! bucket prefix (so tests sharing one moto never see each other's data),
//! created with `Aws::init`, and the conformance suite's view of it.

use std::sync::Arc;

use cloud_lambda::storage::aws::{Aws, AwsOptions};
use cloud_lambda::storage::conformance::Backend;

/// A prefix no other deployment in this moto uses.
pub fn fresh_prefix() -> String {
    format!("t{}-", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Options for a fresh deployment on the moto at `endpoint` (retries back
/// off from 10 ms, so throttling tests take no seconds).
pub fn options(endpoint: &str) -> AwsOptions {
    AwsOptions {
        region: Some("eu-central-1".into()),
        initial_backoff: std::time::Duration::from_millis(10),
        ..AwsOptions::emulator(fresh_prefix(), endpoint)
    }
}

/// A deployment made with `options`, its tables and buckets created.
pub async fn deployment_with(options: AwsOptions) -> Aws {
    let aws = Aws::connect(options).await.expect("AWS clients");
    aws.init()
        .await
        .expect("create the tables and buckets on moto");
    aws
}

/// A fresh deployment on the moto at `endpoint`.
pub async fn deployment(endpoint: &str) -> Aws {
    deployment_with(options(endpoint)).await
}

/// The conformance suite's view of a deployment.
pub fn backend(aws: &Aws) -> Backend {
    let store = Arc::new(aws.store());
    Backend {
        docs: store.clone(),
        blobs: Arc::new(aws.blobs()),
        ops: store,
        guard: Box::new(()),
    }
}

/// An error the [`ThrottlingProxy`] answers in a service's own wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// DynamoDB's `ThrottlingException` (400, JSON).
    Throttling,
    /// DynamoDB's `ProvisionedThroughputExceededException` (400, JSON).
    ThroughputExceeded,
    /// S3's `SlowDown` (503, XML; a `HEAD` has no body).
    SlowDown,
    /// S3's `InternalError` (500, XML).
    InternalError,
}

impl Fault {
    fn answer(self, method: &axum::http::Method) -> axum::response::Response {
        use axum::http::StatusCode;
        use axum::response::IntoResponse;
        let dynamodb = |kind: &str, message: &str| {
            (
                StatusCode::BAD_REQUEST,
                [("content-type", "application/x-amz-json-1.0")],
                format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{kind}","message":"{message}"}}"#),
            )
                .into_response()
        };
        let s3 = |status: StatusCode, code: &str, message: &str| {
            let body = if method == axum::http::Method::HEAD {
                String::new()
            } else {
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                     <Message>{message}</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>"
                )
            };
            (status, [("content-type", "application/xml")], body).into_response()
        };
        match self {
            Fault::Throttling => dynamodb(
                "ThrottlingException",
                "Rate of requests exceeds the allowed throughput.",
            ),
            Fault::ThroughputExceeded => dynamodb(
                "ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded.",
            ),
            Fault::SlowDown => s3(
                StatusCode::SERVICE_UNAVAILABLE,
                "SlowDown",
                "Please reduce your request rate.",
            ),
            Fault::InternalError => s3(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "We encountered an internal error. Please try again.",
            ),
        }
    }
}

/// Faults to answer: per request kind, which and how many more.
type Rules = Arc<std::sync::Mutex<std::collections::HashMap<String, (Fault, usize)>>>;

/// An HTTP proxy in front of moto that answers chosen DynamoDB and S3
/// requests itself with the service's own error (its real wire format:
/// throttling, exceeded throughput, S3's `SlowDown` and `InternalError`),
/// and forwards everything else. moto can provoke none of them.
pub struct ThrottlingProxy {
    pub url: String,
    /// Per request kind (`DynamoDB_20120810.TransactWriteItems`, `S3 PUT`):
    /// the fault and how many more requests get it (`usize::MAX`: all).
    rules: Rules,
    /// Requests answered with a fault so far.
    pub throttled: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ThrottlingProxy {
    pub async fn start(upstream: &str) -> ThrottlingProxy {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, Method, Uri};
        use axum::response::IntoResponse;

        let rules: Rules = Arc::default();
        let throttled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let client = reqwest::Client::new();
        let upstream = upstream.to_owned();
        let (t, n) = (rules.clone(), throttled.clone());
        let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (t, n, client, upstream) = (t.clone(), n.clone(), client.clone(), upstream.clone());
            async move {
                let kind = match headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
                    Some(target) => target.to_owned(),
                    None => format!("S3 {method}"),
                };
                let hit = {
                    let mut t = t.lock().unwrap();
                    match t.get_mut(&kind) {
                        Some((fault, left)) if *left > 0 => {
                            *left = left.saturating_sub(usize::from(*left != usize::MAX));
                            Some(*fault)
                        }
                        _ => None,
                    }
                };
                if let Some(fault) = hit {
                    n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    return fault.answer(&method);
                }
                let url = format!(
                    "{upstream}{}",
                    uri.path_and_query().map_or("/", |p| p.as_str())
                );
                let mut request = client.request(method, url).body(body);
                for (name, value) in &headers {
                    if name != "host" && name != "content-length" {
                        request = request.header(name, value);
                    }
                }
                let answer = request.send().await.unwrap();
                let status = answer.status();
                let headers = answer.headers().clone();
                let bytes = answer.bytes().await.unwrap();
                let mut response = (status, bytes).into_response();
                for (name, value) in &headers {
                    if name != "content-length" && name != "transfer-encoding" {
                        response.headers_mut().insert(name, value.clone());
                    }
                }
                response
            }
        };
        let app = axum::Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        ThrottlingProxy {
            url,
            rules,
            throttled,
            task,
        }
    }

    /// Throttles the next `times` requests of DynamoDB `operation` (e.g.
    /// `TransactWriteItems`; `usize::MAX`: until told otherwise).
    pub fn throttle(&self, operation: &str, times: usize) {
        self.fail(operation, Fault::Throttling, times);
    }

    /// Answers the next `times` requests of `what` with `fault`: a
    /// DynamoDB operation (`TransactWriteItems`) or an S3 method
    /// (`S3 PUT`, `S3 GET`, `S3 HEAD`).
    pub fn fail(&self, what: &str, fault: Fault, times: usize) {
        let kind = if what.starts_with("S3 ") {
            what.to_owned()
        } else {
            format!("DynamoDB_20120810.{what}")
        };
        self.rules.lock().unwrap().insert(kind, (fault, times));
    }

    pub fn throttled(&self) -> usize {
        self.throttled.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for ThrottlingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
