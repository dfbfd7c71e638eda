//! Secrets never reach logs: a real `atelier-cloud serve` at debug level,
//! on each backend (embedded; AWS on moto), with provider keys, the
//! webhook secret and AWS credentials set to values found nowhere else,
//! serves every route (sync with a long poll, REST, transfer URLs,
//! provider jobs against the fake providers, their signed webhooks, and
//! refusals: a forged token, a token in a query or a path, a bad
//! signature); then not one of those values, nor a bearer token, a
//! transfer URL's token or signature, or the server's signing keys,
//! appears in anything it wrote (stdout and stderr).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use atelier_fixtures::fakes::{self, FakeConfig};
use atelier_tests::procs::{Replica, Server, bin, png, run_ok, write_file};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use core_sync::sync::protocol::TransferUrl;
use serde_json::{Value, json};

/// Random hex, so a secret is found nowhere it was not put.
fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// Calls the server as a client would.
struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.url)
        };
        let mut req = self.http.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Value {
        let (status, value) = self.call(method, path, Some(token), body).await;
        assert!((200..300).contains(&status), "{path}: {status} {value}");
        value
    }

    /// Follows a transfer URL (`PUT` with `body`, or `GET`); its status.
    async fn transfer(&self, url: &TransferUrl, body: Option<Vec<u8>>) -> u16 {
        let full = if url.url.starts_with('/') {
            format!("{}{}", self.url, url.url)
        } else {
            url.url.clone()
        };
        let mut req = match body {
            Some(b) => self.http.put(full).body(b),
            None => self.http.get(full),
        };
        for (name, value) in &url.headers {
            if !name.eq_ignore_ascii_case("content-length") {
                req = req.header(name, value);
            }
        }
        req.send().await.unwrap().status().as_u16()
    }
}

/// What makes a transfer URL the permission: the embedded server's token
/// (`t=`) or S3's signature (`X-Amz-Signature=`).
fn transfer_token(url: &TransferUrl) -> String {
    let query = url.url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    query
        .split('&')
        .find_map(|kv| {
            kv.strip_prefix("t=")
                .or_else(|| kv.strip_prefix("X-Amz-Signature="))
        })
        .unwrap_or_else(|| panic!("no token or signature in {}", url.url))
        .to_owned()
}

/// Waits until every tool request of `asset` has ended; their statuses.
async fn jobs_ended(c: &Client, token: &str, asset: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = c
            .ok(
                reqwest::Method::GET,
                &format!("/assets/{asset}/messages"),
                token,
                None,
            )
            .await;
        let statuses: Vec<String> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["status"].as_str().map(str::to_owned))
            .collect();
        if !statuses.is_empty()
            && statuses
                .iter()
                .all(|s| ["succeeded", "failed", "canceled"].contains(&s.as_str()))
        {
            return statuses;
        }
        assert!(
            Instant::now() < deadline,
            "jobs of {asset} never ended: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The log without terminal colour sequences.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The ways `key` (raw bytes of a signing key) could be written out.
fn encodings(key: &[u8]) -> Vec<String> {
    vec![
        key.iter().map(|b| format!("{b:02x}")).collect(),
        STANDARD.encode(key),
        URL_SAFE_NO_PAD.encode(key),
    ]
}

/// The base64 lines of a PEM file (each a piece of the key).
fn pem_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_owned)
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Embedded,
    Aws,
}

#[test]
fn no_secret_reaches_the_logs_of_the_embedded_server() {
    no_secret_reaches_the_logs(Backend::Embedded);
}

#[test]
fn no_secret_reaches_the_logs_of_the_server_on_aws() {
    no_secret_reaches_the_logs(Backend::Aws);
}

fn no_secret_reaches_the_logs(backend: Backend) {
    let tmp = tempfile::Builder::new()
        .prefix("atelier-secrets-")
        .tempdir()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let gemini_key = format!("AIzaSyGeminiSecret{}", random_hex(12));
    let replicate_token = format!("r8_ReplicateSecret{}", random_hex(12));
    let webhook_key = STANDARD.encode(random_hex(24));
    let webhook_secret = format!("whsec_{webhook_key}");
    let fakes = rt
        .block_on(fakes::spawn(FakeConfig {
            api_key: gemini_key.clone(),
            replicate_token: replicate_token.clone(),
            webhook_secret: webhook_secret.clone(),
            step: Duration::from_millis(100),
            ..FakeConfig::default()
        }))
        .unwrap();

    let data = tmp.path().join("server");
    let port = atelier_tests::procs::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let aws_secret = format!("AwsSecretKey{}", random_hex(14));
    let mut env: Vec<(String, String)> = [
        ("RUST_LOG", "debug"),
        ("GEMINI_API_KEY", &gemini_key),
        ("REPLICATE_API_TOKEN", &replicate_token),
        ("REPLICATE_WEBHOOK_SECRET", &webhook_secret),
        ("ATELIER_GEMINI_BASE_URL", fakes.base_url()),
        ("ATELIER_REPLICATE_BASE_URL", fakes.base_url()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut args = vec!["--public-url".to_owned(), url.clone()];
    let moto = (backend == Backend::Aws).then(atelier_fixtures::moto::Moto::start);
    if let Some(moto) = &moto {
        let aws = [
            "--aws-endpoint".to_owned(),
            moto.url(),
            "--aws-prefix".to_owned(),
            "secrets-".to_owned(),
        ];
        run_ok(
            Command::new(bin("atelier-cloud"))
                .arg("init-aws")
                .args(&aws),
        );
        args.extend(["--backend".to_owned(), "aws".to_owned()]);
        args.extend(aws);
        for (k, v) in [
            (
                "AWS_ACCESS_KEY_ID",
                format!("AKIA{}", random_hex(8).to_uppercase()),
            ),
            ("AWS_SECRET_ACCESS_KEY", aws_secret.clone()),
            ("AWS_REGION", "eu-central-1".to_owned()),
        ] {
            env.push((k.to_owned(), v));
        }
    }
    let mut server = Server::start_on_with_env(&data, port, &args, &env);
    let token_file = tmp.path().join("token");
    let token = server.token_file("alice", &token_file);
    let c = Client {
        http: reqwest::Client::new(),
        url: url.clone(),
    };
    let mut secrets: BTreeMap<String, String> = BTreeMap::new();
    secrets.insert("GEMINI_API_KEY".into(), gemini_key.clone());
    secrets.insert("REPLICATE_API_TOKEN".into(), replicate_token.clone());
    secrets.insert("REPLICATE_WEBHOOK_SECRET".into(), webhook_key.clone());
    secrets.insert("bearer token".into(), token.clone());
    if backend == Backend::Aws {
        secrets.insert("AWS_SECRET_ACCESS_KEY".into(), aws_secret.clone());
    }
    let signature = token.rsplit('.').next().unwrap().to_owned();
    secrets.insert("bearer token's signature".into(), signature.clone());

    rt.block_on(async {
        use reqwest::Method;
        // Service routes.
        for path in [
            "/healthz",
            "/.well-known/jwks.json",
            "/openapi.json",
            "/metrics",
        ] {
            let (status, _) = c.call(Method::GET, path, None, None).await;
            assert_eq!(status, 200, "{path}");
        }
        // An image up and down through transfer URLs.
        let image = png(64, 48);
        let sha = core_sync::blob::sha256_hex(&image);
        let up: TransferUrl = serde_json::from_value(
            c.ok(
                Method::POST,
                "/upload-url",
                &token,
                Some(json!({"sha256": sha, "bytes": image.len(), "contentType": "image/png"})),
            )
            .await,
        )
        .unwrap();
        secrets.insert("upload URL token".into(), transfer_token(&up));
        let put = c.transfer(&up, Some(image.clone())).await;
        assert!((200..300).contains(&put), "{put}");
        let down: TransferUrl = serde_json::from_value(
            c.ok(
                Method::GET,
                &format!("/download-url?sha256={sha}"),
                &token,
                None,
            )
            .await,
        )
        .unwrap();
        secrets.insert("download URL token".into(), transfer_token(&down));
        assert_eq!(c.transfer(&down, None).await, 200);

        // Assets, messages and provider jobs (Gemini, Replicate with its
        // signed webhook).
        let asset = c
            .ok(
                Method::POST,
                "/assets",
                &token,
                Some(json!({"from": "blob", "sha256": sha, "title": "Shoe"})),
            )
            .await["asset"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let generated = c
            .ok(
                Method::POST,
                "/assets",
                &token,
                Some(json!({"from": "prompt", "prompt": "a red shoe"})),
            )
            .await["asset"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for body in [
            json!({"type": "note", "text": "make it pop"}),
            json!({"type": "remove-background"}),
            json!({"type": "edit", "prompt": "on a white background"}),
        ] {
            c.ok(
                Method::POST,
                &format!("/assets/{asset}/messages"),
                &token,
                Some(body),
            )
            .await;
        }
        for id in [&asset, &generated] {
            let statuses = jobs_ended(&c, &token, id).await;
            assert!(
                statuses.iter().all(|s| s == "succeeded"),
                "{id}: {statuses:?}"
            );
        }
        let delivered = fakes.deliveries().iter().filter(|d| d.delivered()).count();
        assert!(delivered > 0, "the webhook was delivered and accepted");
        for path in [
            "/assets".to_owned(),
            format!("/assets/{asset}"),
            "/costs".to_owned(),
            "/costs.csv".to_owned(),
        ] {
            let (status, _) = c.call(Method::GET, &path, Some(&token), None).await;
            assert_eq!(status, 200, "{path}");
        }
        // A long poll, held to its end.
        let cursor = c
            .ok(
                Method::POST,
                "/v1/sync",
                &token,
                Some(json!({"feedCursor": 0})),
            )
            .await["feedCursor"]
            .clone();
        c.ok(
            Method::POST,
            "/v1/sync",
            &token,
            Some(json!({"feedCursor": cursor, "waitMs": 300})),
        )
        .await;

        // Refusals: a forged token, a token where a query goes, a token in
        // a path, a webhook with a bad signature.
        let forged = format!(
            "{}.{}",
            token.rsplit_once('.').unwrap().0,
            URL_SAFE_NO_PAD.encode(random_hex(32))
        );
        secrets.insert("forged token".into(), forged.clone());
        let (status, _) = c.call(Method::GET, "/assets", Some(&forged), None).await;
        assert_eq!(status, 401);
        let (status, _) = c
            .call(
                Method::GET,
                &format!("/assets?access_token={token}"),
                None,
                None,
            )
            .await;
        assert!(status == 400 || status == 401, "{status}");
        let (status, _) = c
            .call(Method::GET, &format!("/v1/{token}"), Some(&token), None)
            .await;
        assert_eq!(status, 404);
        let resp = c
            .http
            .post(format!("{url}/replicate/webhook"))
            .header("webhook-id", "msg_forged")
            .header(
                "webhook-timestamp",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    .to_string(),
            )
            .header(
                "webhook-signature",
                format!("v1,{}", STANDARD.encode(random_hex(32))),
            )
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
    });

    // A device syncing: pushes its own image and asset, pulls the REST
    // assets and the jobs' results (images through download URLs).
    let device = Replica::new(tmp.path().join("device"), url.clone(), token_file);
    let id = device.local(["new", "Boot"]).trim().to_owned();
    let file = tmp.path().join("boot.png");
    write_file(&file, &png(32, 32));
    device.local(["add-image", &id, file.to_str().unwrap()]);
    device.sync(["once"]);
    assert_eq!(device.asset_ids().len(), 3);

    // The signing keys: of tokens, and of transfer URLs.
    for (i, line) in pem_lines(&data.join("jwt-key.pem")).into_iter().enumerate() {
        secrets.insert(format!("token signing key, line {i}"), line);
    }
    if backend == Backend::Embedded {
        let transfer_key = std::fs::read(data.join("blobs").join("transfer-key")).unwrap();
        for (i, enc) in encodings(&transfer_key).into_iter().enumerate() {
            secrets.insert(format!("transfer signing key, encoding {i}"), enc);
        }
    }

    server.stop();
    let log = plain(&server.log());
    // Debug logging was on, and every kind of route was served.
    assert!(
        log.contains(" DEBUG "),
        "not at debug level:\n{}",
        &log[..log.len().min(2000)]
    );
    let mut routes = vec![
        "route=/v1/sync",
        "route=/upload-url",
        "route=/download-url",
        "route=/assets",
        "route=/assets/{id}/messages",
        "route=/costs.csv",
        "route=/replicate/webhook",
        "route=/.well-known/jwks.json",
    ];
    if backend == Backend::Embedded {
        // On AWS, images go to and from S3 directly.
        routes.push("route=/v1/blob-transfer");
    }
    for route in routes {
        assert!(log.contains(route), "no request to {route} logged");
    }
    let leaks: Vec<String> = secrets
        .iter()
        .filter(|(_, value)| log.contains(value.as_str()))
        .map(|(name, value)| {
            let line = log.lines().find(|l| l.contains(value.as_str())).unwrap();
            format!("{name} in: {line}")
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets in the server's log:\n{}",
        leaks.join("\n")
    );
    drop((fakes, moto));
}
