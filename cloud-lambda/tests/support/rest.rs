//! The REST tests' one set-up: a real Router on the embedded backend, or on
//! the AWS backend over a moto of its own ([`Backend`]), served on loopback
//! (optionally with provider jobs against the fake providers in
//! `fixtures/`), two users with tokens, an HTTP client, and helpers to
//! call routes, check problem details, upload images and wait for jobs.
//! The signing key, provider settings and test images come from the job
//! tests' support module (`support/mod.rs`).
//!
//! Included by each REST test file with
//! `#[path = "support/rest.rs"] mod rest;`.

#![allow(dead_code)]

#[path = "mod.rs"]
mod shared;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use atelier_fixtures::fakes::{self, FakeConfig, RunningFakes};
use cloud_lambda::app::{AppState, router};
use cloud_lambda::auth::LocalIssuer;
use cloud_lambda::jobs::JobConfig;
use cloud_lambda::limits::{ApiConfig, ApiLimits, SpendLimits};
use cloud_lambda::registry::{BUILTIN, Registry};
use cloud_lambda::storage::DocStore;
use cloud_lambda::storage::jobs::{JobStore, OpStatus};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;

/// The signing key of the whole test binary (RSA keygen is slow).
pub fn issuer() -> &'static LocalIssuer {
    static ISSUER: OnceLock<LocalIssuer> = OnceLock::new();
    ISSUER.get_or_init(shared::issuer)
}

pub use shared::png;

/// A user of the server under test.
#[derive(Clone)]
pub struct User {
    pub name: &'static str,
    /// What storage scopes by (the token's `sub`).
    pub sub: String,
    pub token: String,
}

pub fn user(name: &'static str) -> User {
    User {
        name,
        sub: LocalIssuer::user_id(name),
        token: issuer().mint(name, Duration::from_secs(3600)),
    }
}

/// Which storage the server runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    /// SQLite and files in a temporary directory.
    #[default]
    Embedded,
    /// DynamoDB and S3 on a moto started for the world.
    Aws,
}

/// How to set the server up.
#[derive(Default)]
pub struct Options {
    /// Run provider jobs against the fake providers.
    pub jobs: bool,
    pub api: ApiConfig,
    pub spend: Option<SpendLimits>,
    pub backend: Backend,
}

pub struct World {
    pub url: String,
    pub http: reqwest::Client,
    pub store: Arc<dyn DocStore>,
    pub ops: Arc<dyn JobStore>,
    pub alice: User,
    pub bob: User,
    pub fakes: Option<RunningFakes>,
    pub dir: TempDir,
    /// The AWS backend's emulator, while the world lives.
    pub moto: Option<atelier_fixtures::moto::Moto>,
}

/// An answer: status, headers and body.
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub async fn of(resp: reqwest::Response) -> Resp {
        Resp {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.bytes().await.unwrap().to_vec(),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The JSON body of a success with `status`.
    #[track_caller]
    pub fn json(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    /// Checks an RFC 9457 problem with `status` and `code`; returns its
    /// detail.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.text()
        );
        let p: Value = serde_json::from_slice(&self.body).unwrap();
        assert_eq!(p["code"], code, "{p}");
        assert_eq!(p["status"], status, "{p}");
        assert_eq!(p["type"], format!("urn:atelier:problem:{code}"), "{p}");
        let detail = p["detail"].as_str().unwrap().to_owned();
        assert!(!detail.is_empty());
        detail
    }
}

pub async fn world(options: Options) -> World {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (state, moto) = match options.backend {
        Backend::Embedded => (
            AppState::embedded(dir.path(), issuer().verifier(), None)
                .await
                .unwrap(),
            None,
        ),
        Backend::Aws => {
            let moto = atelier_fixtures::moto::Moto::start();
            let aws = shared::aws::deployment(&moto.url()).await;
            (AppState::aws(&aws, issuer().verifier(), None), Some(moto))
        }
    };
    let mut state = state.with_limits(ApiLimits::new(options.api));
    let mut running = None;
    if options.jobs {
        let f = fakes::spawn(FakeConfig {
            step: Duration::from_millis(50),
            ..FakeConfig::default()
        })
        .await
        .unwrap();
        let providers = shared::providers(&f);
        let config = JobConfig {
            retry_base: Duration::from_millis(50),
            poll_interval: Duration::from_millis(200),
            public_url: Some(url.clone()),
            limits: options.spend.unwrap_or_default(),
            ..JobConfig::default()
        };
        state = state.with_jobs(Registry::parse(BUILTIN).unwrap(), providers, config);
        running = Some(f);
    }
    let (store, ops) = (state.store.clone(), state.ops.clone());
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    World {
        url,
        http: reqwest::Client::new(),
        store,
        ops,
        alice: user("alice"),
        bob: user("bob"),
        fakes: running,
        dir,
        moto,
    }
}

impl World {
    /// Sends `method path` as `user` (`None`: no token) with a JSON body.
    pub async fn call(
        &self,
        user: Option<&User>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(u) = user {
            req = req.bearer_auth(&u.token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Resp::of(req.send().await.unwrap()).await
    }

    pub async fn get(&self, user: &User, path: &str) -> Resp {
        self.call(Some(user), Method::GET, path, None).await
    }

    pub async fn post(&self, user: &User, path: &str, body: Value) -> Resp {
        self.call(Some(user), Method::POST, path, Some(body)).await
    }

    /// Uploads `bytes` as `user`'s blob; returns its SHA-256.
    pub async fn upload(&self, user: &User, bytes: &[u8]) -> String {
        let r = self.try_upload(user, bytes, "image/png").await;
        assert!(r.status.is_success(), "{}", r.text());
        core_sync::blob::sha256_hex(bytes)
    }

    /// Asks for an upload URL for `bytes` as `content_type`, then makes the
    /// upload it describes; the first refusal, or the upload's answer.
    pub async fn try_upload(&self, user: &User, bytes: &[u8], content_type: &str) -> Resp {
        let sha = core_sync::blob::sha256_hex(bytes);
        let grant = self
            .post(
                user,
                "/upload-url",
                serde_json::json!({"sha256": sha, "bytes": bytes.len(), "contentType": content_type}),
            )
            .await;
        if !grant.status.is_success() {
            return grant;
        }
        let url: core_sync::sync::protocol::TransferUrl =
            serde_json::from_slice(&grant.body).unwrap();
        let mut req = self.http.put(self.absolute(&url.url)).body(bytes.to_vec());
        for (name, value) in &url.headers {
            // reqwest sets the length of a body it holds whole.
            if !name.eq_ignore_ascii_case("content-length") {
                req = req.header(name, value);
            }
        }
        Resp::of(req.send().await.unwrap()).await
    }

    /// Downloads `user`'s blob `sha` through its download URL: the
    /// refusal of `GET /download-url`, or the download's answer.
    pub async fn download(&self, user: &User, sha: &str) -> Resp {
        let grant = self.get(user, &format!("/download-url?sha256={sha}")).await;
        if !grant.status.is_success() {
            return grant;
        }
        let url: core_sync::sync::protocol::TransferUrl =
            serde_json::from_slice(&grant.body).unwrap();
        Resp::of(self.http.get(self.absolute(&url.url)).send().await.unwrap()).await
    }

    fn absolute(&self, url: &str) -> String {
        if url.starts_with('/') {
            format!("{}{url}", self.url)
        } else {
            url.to_owned()
        }
    }

    /// A new asset of `user` from an uploaded image; returns its id.
    pub async fn asset_with_image(&self, user: &User, title: &str) -> String {
        let sha = self.upload(user, &png(64, 48)).await;
        let created = self
            .post(
                user,
                "/assets",
                serde_json::json!({"from": "blob", "sha256": sha, "title": title}),
            )
            .await
            .json(201);
        created["asset"]["id"].as_str().unwrap().to_owned()
    }

    /// Waits until the job of request `id` has ended (every write of a job
    /// comes before its operation turns terminal).
    pub async fn job_ended(&self, user: &User, id: &str) -> OpStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(op) = self.ops.get_operation(&user.sub, id).await.unwrap()
                && op.status.is_terminal()
            {
                return op.status;
            }
            assert!(Instant::now() < deadline, "the job of {id} never ended");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How many documents `user` has in storage (to see nothing was stored).
    pub async fn doc_count(&self, user: &User) -> usize {
        self.store
            .feed_since(&user.sub, 0, 100_000)
            .await
            .unwrap()
            .len()
    }
}

/// A device of `user`: a local store synced with the server over HTTP.
pub struct Device {
    pub store: core_sync::Store,
    pub sync: core_sync::sync::client::SyncClient,
    pub dir: TempDir,
}

pub async fn device(w: &World, user: &User) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let store = core_sync::Store::open(dir.path(), core_sync::StoreOptions::default())
        .await
        .unwrap();
    let sync = core_sync::sync::client::SyncClient::new(
        store.clone(),
        &w.url,
        user.token.clone(),
        core_sync::sync::engine::EngineConfig::default(),
    )
    .await
    .unwrap();
    Device { store, sync, dir }
}
