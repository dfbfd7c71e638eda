//! Purge throughput and the space returned on both sides, on the embedded
//! backend and on the AWS backend (DynamoDB + S3 on moto) in one run: a
//! device creates N assets (each with its own image, plus one image all of
//! them share), syncs, deletes them all, syncs; the server purges past the
//! retention period (`purge::run` at a `now` 31 days on); the device syncs
//! again and drops its copies. Prints a table.
//!
//! On AWS the server's space is the bytes in its two buckets, and the
//! table adds the DynamoDB and S3 requests per purged asset; times are
//! moto's (a Python server answering one request at a time), so compare
//! request counts with AWS and times only with each other.
//!
//! `cargo bench -p cloud-lambda --bench purge` (1,000 assets on the
//! embedded backend, 200 on moto; `-- --quick`: 100 and 50).

use std::path::Path;
use std::time::{Duration, Instant};

use atelier_fixtures::moto::Moto;
use cloud_lambda::app::{AppState, router};
use cloud_lambda::auth::LocalIssuer;
use cloud_lambda::local::RouterTransport;
use cloud_lambda::purge;
use cloud_lambda::storage::aws::{Aws, AwsOptions};
use core_sync::model::{BlobRef, NewVersion};
use core_sync::store::{Store, StoreOptions};
use core_sync::sync::client::SyncClient;
use core_sync::sync::engine::EngineConfig;
use core_sync::{DocId, now_millis};

const DAY_MS: i64 = 86_400_000;

/// Assets changed between two syncs of the device.
const BATCH: usize = 25;

/// Bytes of every file under `dir`.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            du(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// A 24 KiB "image" unique to `n` (the stores check hashes, not pixels).
fn image(n: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut x = n as u64 ^ 0x9E37_79B9_7F4A_7C15;
    while bytes.len() < 24 * 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// Bytes of every object in `bucket` (current versions).
async fn bucket_bytes(aws: &Aws, bucket: &str) -> u64 {
    let mut total = 0;
    let mut token = None;
    loop {
        let out = aws
            .s3()
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        total += out
            .contents()
            .iter()
            .map(|o| o.size().unwrap_or(0) as u64)
            .sum::<u64>();
        token = out.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            return total;
        }
    }
}

/// Where the server keeps its data.
enum Server {
    Embedded(tempfile::TempDir),
    Aws(Box<Aws>),
}

impl Server {
    async fn space(&self) -> u64 {
        match self {
            Server::Embedded(dir) => du(dir.path()),
            Server::Aws(aws) => {
                bucket_bytes(aws, &aws.names.blob_bucket).await
                    + bucket_bytes(aws, &aws.names.doc_bucket).await
            }
        }
    }

    fn requests(&self) -> u64 {
        match self {
            Server::Embedded(_) => 0,
            Server::Aws(aws) => aws.requests().snapshot().total(),
        }
    }
}

/// One backend's measurements.
struct Measured {
    server: String,
    n: usize,
    report: purge::PurgeReport,
    server_took: Duration,
    device_took: Duration,
    server_space: (u64, u64),
    device_space: (u64, u64),
    requests: u64,
}

async fn measure(name: &str, server: Server, n: usize) -> Measured {
    let device_dir = tempfile::tempdir().unwrap();
    let key_dir = tempfile::tempdir().unwrap();
    let issuer = LocalIssuer::load_or_create(key_dir.path(), "bench", "bench").unwrap();
    let user = LocalIssuer::user_id("bench");
    let state = match &server {
        Server::Embedded(dir) => AppState::embedded(dir.path(), issuer.verifier(), None)
            .await
            .unwrap(),
        Server::Aws(aws) => AppState::aws(aws, issuer.verifier(), None),
    };
    let transport = RouterTransport::new(router(state.clone()));
    let store = Store::open(device_dir.path(), StoreOptions::default())
        .await
        .unwrap();
    let mut sync = SyncClient::with_transport(
        store.clone(),
        Box::new(transport),
        issuer.mint("bench", Duration::from_secs(3600)),
        EngineConfig::default(),
    )
    .await
    .unwrap();
    // N assets, each with its own image and the shared one.
    let shared = image(usize::MAX);
    let mut ids: Vec<DocId> = Vec::with_capacity(n);
    for i in 0..n {
        let mut asset = store
            .create(&format!("asset {i}"), now_millis())
            .await
            .unwrap();
        for bytes in [image(i), shared.clone()] {
            let sha = store
                .put_blob(bytes.clone(), "image/png", now_millis())
                .await
                .unwrap();
            state.blobs.put(&user, &sha, &bytes).await.unwrap();
            asset
                .doc
                .add_version(
                    NewVersion {
                        blob: BlobRef {
                            sha256: sha,
                            mime: "image/png".into(),
                            width: 64,
                            height: 64,
                            bytes: bytes.len() as u64,
                        },
                        thumbnail: None,
                        parent_version_id: None,
                        created_by_message_id: None,
                    },
                    now_millis(),
                )
                .unwrap();
        }
        store.save(&mut asset).await.unwrap();
        sync.local_change(asset.id.clone());
        ids.push(asset.id);
        // Pushes in rounds a slow server (moto) answers within its timeout.
        if i % BATCH == BATCH - 1 {
            sync.sync_until_idle().await.unwrap();
        }
    }
    // One asset stays and uses the shared image, which must survive.
    let mut keep = store.create("kept", now_millis()).await.unwrap();
    let shared_sha = core_sync::blob::sha256_hex(&shared);
    keep.doc
        .add_version(
            NewVersion {
                blob: BlobRef {
                    sha256: shared_sha.clone(),
                    mime: "image/png".into(),
                    width: 64,
                    height: 64,
                    bytes: shared.len() as u64,
                },
                thumbnail: None,
                parent_version_id: None,
                created_by_message_id: None,
            },
            now_millis(),
        )
        .unwrap();
    store.save(&mut keep).await.unwrap();
    sync.local_change(keep.id.clone());
    sync.sync_until_idle().await.unwrap();
    let server_before = server.space().await;
    let device_before = du(device_dir.path());

    let deleted_at = now_millis();
    for (i, id) in ids.iter().enumerate() {
        let mut a = store.load(id).await.unwrap();
        a.doc.delete("bench", deleted_at).unwrap();
        store.save(&mut a).await.unwrap();
        sync.local_change(id.clone());
        if i % BATCH == BATCH - 1 {
            sync.sync_until_idle().await.unwrap();
        }
    }
    sync.sync_until_idle().await.unwrap();

    let requests_before = server.requests();
    let started = Instant::now();
    let report = purge::run(
        state.store.as_ref(),
        state.blobs.as_ref(),
        deleted_at + 31 * DAY_MS,
        purge::DEFAULT_RETENTION,
    )
    .await
    .unwrap();
    let server_took = started.elapsed();
    let requests = server.requests() - requests_before;
    assert_eq!(report.assets as usize, n);

    let started = Instant::now();
    sync.sync_until_idle().await.unwrap();
    let device_took = started.elapsed();
    assert_eq!(store.ids().await.unwrap().len(), 1);
    assert!(
        store.blobs().contains(&shared_sha),
        "the shared image stays"
    );
    assert!(state.blobs.exists(&user, &shared_sha).await.unwrap());
    let server_after = server.space().await;
    let device_after = du(device_dir.path());
    Measured {
        server: name.to_owned(),
        n,
        report,
        server_took,
        device_took,
        server_space: (server_before, server_after),
        device_space: (device_before, device_after),
        requests,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n, n_aws) = if quick { (100, 50) } else { (1_000, 200) };
    let embedded = measure(
        "embedded",
        Server::Embedded(tempfile::tempdir().unwrap()),
        n,
    )
    .await;
    let moto = Moto::start();
    let aws = Aws::connect(AwsOptions::emulator("bench-purge-", moto.url()))
        .await
        .unwrap();
    aws.init().await.unwrap();
    let on_aws = measure("aws (moto)", Server::Aws(Box::new(aws)), n_aws).await;

    println!("Purge of N deleted assets (each with its own 24 KiB image; one shared image kept)");
    println!();
    println!(
        "| server     | side   |     N | time     | assets/s | blobs/s | space before | space after | returned | requests/asset |"
    );
    println!(
        "|------------|--------|-------|----------|----------|---------|--------------|-------------|----------|----------------|"
    );
    let rate = |k: u64, t: Duration| k as f64 / t.as_secs_f64();
    for m in [&embedded, &on_aws] {
        let per_asset = if m.requests > 0 {
            format!("{:.1}", m.requests as f64 / m.report.assets.max(1) as f64)
        } else {
            "-".to_owned()
        };
        println!(
            "| {:<10} | server | {:>5} | {:>6.2} s | {:>8.0} | {:>7.0} | {:>12} | {:>11} | {:>8} | {:>14} |",
            m.server,
            m.n,
            m.server_took.as_secs_f64(),
            rate(m.report.assets, m.server_took),
            rate(m.report.blobs, m.server_took),
            mib(m.server_space.0),
            mib(m.server_space.1),
            mib(m.server_space.0.saturating_sub(m.server_space.1)),
            per_asset,
        );
        println!(
            "| {:<10} | device | {:>5} | {:>6.2} s | {:>8.0} | {:>7.0} | {:>12} | {:>11} | {:>8} | {:>14} |",
            m.server,
            m.n,
            m.device_took.as_secs_f64(),
            rate(m.n as u64, m.device_took),
            rate(m.n as u64, m.device_took),
            mib(m.device_space.0),
            mib(m.device_space.1),
            mib(m.device_space.0.saturating_sub(m.device_space.1)),
            "-",
        );
    }
    println!();
    for m in [&embedded, &on_aws] {
        println!(
            "{}: {} blobs deleted ({}), {} kept because another asset uses them",
            m.server,
            m.report.blobs,
            mib(m.report.blob_bytes),
            m.report.blobs_kept
        );
    }
    println!(
        "The embedded server's database keeps its freed pages for reuse (its file does not \
         shrink); on AWS the space is the buckets' current objects: deleted ones stay as \
         noncurrent versions until the lifecycle expires them (35 days)."
    );
}
