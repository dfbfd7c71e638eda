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

/// An HTTP proxy in front of moto that answers chosen DynamoDB requests
/// itself with DynamoDB's own throttling error (its real wire format), and
/// forwards everything else. Throttling cannot be provoked in moto.
pub struct ThrottlingProxy {
    pub url: String,
    /// Per `X-Amz-Target` (e.g. `DynamoDB_20120810.TransactWriteItems`):
    /// how many more requests to throttle (`usize::MAX`: all).
    pub throttle: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    /// Requests answered with a throttling error so far.
    pub throttled: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ThrottlingProxy {
    pub async fn start(upstream: &str) -> ThrottlingProxy {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, Method, StatusCode, Uri};
        use axum::response::IntoResponse;

        let throttle = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
            String,
            usize,
        >::new()));
        let throttled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let client = reqwest::Client::new();
        let upstream = upstream.to_owned();
        let (t, n) = (throttle.clone(), throttled.clone());
        let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (t, n, client, upstream) = (t.clone(), n.clone(), client.clone(), upstream.clone());
            async move {
                let target = headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let hit = {
                    let mut t = t.lock().unwrap();
                    match t.get_mut(&target) {
                        Some(left) if *left > 0 => {
                            *left = left.saturating_sub(usize::from(*left != usize::MAX));
                            true
                        }
                        _ => false,
                    }
                };
                if hit {
                    n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#;
                    return (
                        StatusCode::BAD_REQUEST,
                        [("content-type", "application/x-amz-json-1.0")],
                        body,
                    )
                        .into_response();
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
            throttle,
            throttled,
            task,
        }
    }

    /// Throttles the next `times` requests of `operation` (e.g.
    /// `TransactWriteItems`; `usize::MAX`: until told otherwise).
    pub fn throttle(&self, operation: &str, times: usize) {
        self.throttle
            .lock()
            .unwrap()
            .insert(format!("DynamoDB_20120810.{operation}"), times);
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
