//! What the cloud's tests share: [`aws`], deployments of the AWS backend
//! on moto; [`stores`], one store several servers open, backed up and
//! restored; and for the job tests: the embedded server with jobs on, pointed at
//! the fake providers (restartable on the same data directory), devices
//! syncing with it over HTTP on loopback, test images, tool requests, and
//! waiting on their results.

#![allow(dead_code)]

pub mod aws;
pub mod stores;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use atelier_fixtures::fakes::{self, FakeConfig, RunningFakes};
use cloud_lambda::app::{AppState, router};
use cloud_lambda::auth::LocalIssuer;
use cloud_lambda::jobs::JobConfig;
use cloud_lambda::providers::ProviderConfig;
use cloud_lambda::registry::{BUILTIN, Registry};
use core_sync::model::{BlobRef, MessageStatus, MessageView, NewMessage, NewVersion};
use core_sync::store::{Store, StoreOptions};
use core_sync::sync::client::SyncClient;
use core_sync::sync::engine::EngineConfig;
use core_sync::{DocId, now_millis};
use tempfile::TempDir;
use tokio::task::JoinHandle;

/// One signing key for the whole test binary (RSA keygen is slow).
fn key_dir() -> &'static TempDir {
    static DIR: OnceLock<TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        LocalIssuer::load_or_create(d.path(), "atelier-local", "atelier-desktop").unwrap();
        d
    })
}

pub fn issuer() -> LocalIssuer {
    LocalIssuer::load_or_create(key_dir().path(), "atelier-local", "atelier-desktop").unwrap()
}

/// The user the world's token belongs to, as the server names it.
pub fn user() -> String {
    LocalIssuer::user_id("alice")
}

/// How a [`World`] runs.
#[derive(Clone)]
pub struct Options {
    pub fakes: FakeConfig,
    /// Provider jobs on (otherwise queued requests stay queued).
    pub jobs: bool,
    /// `public_url` is set to the server's own address.
    pub job_config: JobConfig,
    /// A device blob directory the server shares its files with.
    pub shared_blobs: Option<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fakes: FakeConfig {
                step: Duration::from_millis(100),
                ..FakeConfig::default()
            },
            jobs: true,
            job_config: JobConfig {
                retry_base: Duration::from_millis(50),
                retry_max: Duration::from_secs(2),
                poll_interval: Duration::from_millis(300),
                ..JobConfig::default()
            },
            shared_blobs: None,
        }
    }
}

/// The fakes and a server on one data directory.
pub struct World {
    pub fakes: RunningFakes,
    pub url: String,
    pub token: String,
    /// The running server's state (its stores and jobs).
    pub state: AppState,
    pub options: Options,
    server: JoinHandle<()>,
    pub dir: TempDir,
}

pub async fn world() -> World {
    world_with(Options::default()).await
}

pub async fn world_with(options: Options) -> World {
    let fakes = fakes::spawn(options.fakes.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (url, state, server) = serve(&fakes, &dir, &options).await;
    World {
        fakes,
        url,
        token: issuer().mint("alice", Duration::from_secs(3600)),
        state,
        options,
        server,
        dir,
    }
}

/// The providers as the fakes serve them.
pub fn providers(fakes: &RunningFakes) -> ProviderConfig {
    ProviderConfig {
        gemini_base: fakes.base_url().into(),
        gemini_key: Some(fakes::DEFAULT_API_KEY.into()),
        replicate_base: fakes.base_url().into(),
        replicate_token: Some(fakes::DEFAULT_REPLICATE_TOKEN.into()),
        replicate_webhook_secret: Some(fakes::DEFAULT_WEBHOOK_SECRET.into()),
        ..ProviderConfig::default()
    }
}

async fn serve(
    fakes: &RunningFakes,
    dir: &TempDir,
    options: &Options,
) -> (String, AppState, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut state = AppState::embedded(dir.path(), issuer().verifier(), None)
        .await
        .unwrap();
    if let Some(dir) = &options.shared_blobs {
        state = state.sharing_blobs_with(dir.clone());
    }
    if options.jobs {
        let config = JobConfig {
            public_url: Some(url.clone()),
            ..options.job_config.clone()
        };
        state = state.with_jobs(Registry::parse(BUILTIN).unwrap(), providers(fakes), config);
    }
    let app = router(state.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state, server)
}

impl World {
    /// Waits until the server has ended the job of request `id` (every
    /// write of a job comes before its operation turns terminal).
    pub async fn job_ended(&self, id: &str) -> cloud_lambda::storage::jobs::OpStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(op) = self.state.ops.get_operation(&user(), id).await.unwrap()
                && op.status.is_terminal()
            {
                return op.status;
            }
            assert!(Instant::now() < deadline, "the job of {id} never ended");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server and starts another on the same data directory (a
    /// new address), with jobs as `options` say. Unfinished jobs are not
    /// resumed until the test calls `resume_all`.
    pub async fn restart(&mut self, options: Options) {
        self.server.abort();
        let (url, state, server) = serve(&self.fakes, &self.dir, &options).await;
        (self.url, self.state, self.server, self.options) = (url, state, server, options);
    }
}

pub struct Device {
    pub store: Store,
    pub sync: SyncClient,
    _dir: TempDir,
}

pub async fn device(w: &World) -> Device {
    device_at(&w.url, &w.token).await
}

/// A device with an empty store syncing with the server at `url`.
pub async fn device_at(url: &str, token: &str) -> Device {
    device_in(url, token, tempfile::tempdir().unwrap()).await
}

/// A device whose store is in `dir`, syncing with the server at `url`.
pub async fn device_in(url: &str, token: &str, dir: TempDir) -> Device {
    let store = Store::open(dir.path(), StoreOptions::default())
        .await
        .unwrap();
    let sync = SyncClient::new(
        store.clone(),
        url,
        token.to_owned(),
        EngineConfig::default(),
    )
    .await
    .unwrap();
    Device {
        store,
        sync,
        _dir: dir,
    }
}

/// A small gradient PNG.
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(w, h, |x, y| {
        image::Rgba([(x * 4) as u8, (y * 4) as u8, 200, 255])
    });
    encode(image::DynamicImage::ImageRgba8(img))
}

/// A photo-sized PNG: a gradient under pseudo-random noise, which PNG
/// cannot squeeze (about 3 bytes per pixel).
pub fn noisy_png(w: u32, h: u32) -> Vec<u8> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let n = seed.to_le_bytes();
        image::Rgb([
            ((x * 255 / w.max(1)) as u8).wrapping_add(n[0] >> 1),
            ((y * 255 / h.max(1)) as u8).wrapping_add(n[1] >> 1),
            n[2],
        ])
    });
    encode(image::DynamicImage::ImageRgb8(img))
}

fn encode(img: image::DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// An asset with one 64x48 image, created offline. Returns (doc, version).
pub async fn asset_with_image(d: &mut Device) -> (DocId, String) {
    asset_with(d, png(64, 48), 64, 48, true).await
}

/// An asset whose one version is `bytes` (`w`x`h` PNG), created offline;
/// with `keep_local: false` the device does not hold the image (it reached
/// the cloud another way). Returns (doc, version).
pub async fn asset_with(
    d: &mut Device,
    bytes: Vec<u8>,
    w: u32,
    h: u32,
    keep_local: bool,
) -> (DocId, String) {
    let len = bytes.len() as u64;
    let sha = if keep_local {
        d.store
            .put_blob(bytes, "image/png", now_millis())
            .await
            .unwrap()
    } else {
        core_sync::blob::sha256_hex(&bytes)
    };
    let mut a = d.store.create("Photo", now_millis()).await.unwrap();
    let v = a
        .doc
        .add_version(
            NewVersion {
                blob: BlobRef {
                    sha256: sha,
                    mime: "image/png".into(),
                    width: w,
                    height: h,
                    bytes: len,
                },
                thumbnail: None,
                parent_version_id: None,
                created_by_message_id: None,
            },
            now_millis(),
        )
        .unwrap();
    d.store.save(&mut a).await.unwrap();
    d.sync.local_change(a.id.clone());
    (a.id, v)
}

pub async fn request(d: &mut Device, doc: &DocId, msg: NewMessage) -> String {
    let mut a = d.store.load(doc).await.unwrap();
    let id = a.doc.append_message(msg, now_millis()).unwrap();
    d.store.save(&mut a).await.unwrap();
    d.sync.local_change(doc.clone());
    id
}

pub fn tool(
    tool: &str,
    provider: &str,
    model: &str,
    prompt: &str,
    input: Option<&str>,
    params: serde_json::Value,
) -> NewMessage {
    NewMessage {
        input_version_ids: input.into_iter().map(str::to_owned).collect(),
        params: Some(params),
        ..NewMessage::tool_request(tool, provider, model, prompt)
    }
}

/// Syncs `d` until every message in `ids` is finished (or the deadline).
pub async fn wait_finished(d: &mut Device, doc: &DocId, ids: &[String]) -> Vec<MessageView> {
    wait_finished_within(d, doc, ids, Duration::from_secs(30)).await
}

pub async fn wait_finished_within(
    d: &mut Device,
    doc: &DocId,
    ids: &[String],
    limit: Duration,
) -> Vec<MessageView> {
    let deadline = Instant::now() + limit;
    loop {
        d.sync.sync_until_idle().await.unwrap();
        if d.store.contains(doc).await.unwrap() {
            let mut a = d.store.load(doc).await.unwrap();
            let msgs: Vec<MessageView> = ids.iter().map(|id| a.doc.message(id).unwrap()).collect();
            if msgs
                .iter()
                .all(|m| m.status.is_some_and(|s| s.is_terminal()))
            {
                return msgs;
            }
            assert!(
                Instant::now() < deadline,
                "jobs did not finish: {:?}",
                msgs.iter().map(|m| m.status).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// An asset on `d` with a slow Replicate upscale of its image, synced and
/// running on the server. Returns (doc, request).
pub async fn running_slow_upscale(d: &mut Device) -> (DocId, String) {
    let (doc, v1) = asset_with_image(d).await;
    let msg = tool(
        "upscale",
        "replicate",
        "nightmareai/real-esrgan",
        "slow upscale",
        Some(&v1),
        serde_json::json!({"_fake_scenario": "slow"}),
    );
    let id = request(d, &doc, msg).await;
    d.sync.sync_until_idle().await.unwrap();
    wait_running(d, &doc, &id).await;
    (doc, id)
}

/// Syncs `d` until the server has set request `id` of `doc` running.
pub async fn wait_running(d: &mut Device, doc: &DocId, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        d.sync.sync_until_idle().await.unwrap();
        let mut asset = d.store.load(doc).await.unwrap();
        if asset.doc.message(id).unwrap().status == Some(MessageStatus::Running) {
            return;
        }
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until a prediction's cancel reached the fake Replicate.
pub async fn wait_cancel_reached(fakes: &RunningFakes) {
    until(
        "a cancel reaching Replicate",
        Duration::from_secs(20),
        || async { fakes.requests().iter().any(|r| r.path.ends_with("/cancel")) },
    )
    .await;
}

/// Waits for `check` to hold, asking every 10 ms; fails the test with
/// `what` after `limit`.
pub async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Appends a user note to `doc` on `d`, saved and marked for sync.
pub async fn note(d: &mut Device, doc: &DocId, text: &str) {
    let mut a = d.store.load(doc).await.unwrap();
    a.doc
        .append_message(NewMessage::user(text), now_millis())
        .unwrap();
    d.store.save(&mut a).await.unwrap();
    d.sync.local_change(doc.clone());
}

/// The texts of `doc`'s messages on `d`, sorted.
pub async fn texts(d: &Device, doc: &DocId) -> Vec<String> {
    let a = d.store.load(doc).await.unwrap();
    let mut texts: Vec<String> = a
        .doc
        .messages()
        .unwrap()
        .into_iter()
        .filter_map(|m| m.text)
        .collect();
    texts.sort();
    texts
}

/// `doc`'s heads on `d`, sorted.
pub async fn heads(d: &Device, doc: &DocId) -> Vec<automerge::ChangeHash> {
    let mut heads = d.store.load(doc).await.unwrap().doc.heads();
    heads.sort();
    heads
}
