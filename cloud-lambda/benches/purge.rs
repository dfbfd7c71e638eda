//! Purge throughput on the embedded backend, and the disk space returned on
//! both sides: a device creates N assets (each with its own image, plus one
//! image all of them share), syncs, deletes them all, syncs; the server
//! purges past the retention period (`purge::run` at a `now` 31 days on);
//! the device syncs again and drops its copies. Prints a table.
//!
//! `cargo bench -p cloud-lambda --bench purge` (1,000 assets; `-- --quick`
//! for 100).

use std::path::Path;
use std::time::{Duration, Instant};

use cloud_lambda::app::{AppState, router};
use cloud_lambda::auth::LocalIssuer;
use cloud_lambda::local::RouterTransport;
use cloud_lambda::purge;
use core_sync::model::{BlobRef, NewVersion};
use core_sync::store::{Store, StoreOptions};
use core_sync::sync::client::SyncClient;
use core_sync::sync::engine::EngineConfig;
use core_sync::{DocId, now_millis};

const DAY_MS: i64 = 86_400_000;

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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 100 } else { 1_000 };
    let server_dir = tempfile::tempdir().unwrap();
    let device_dir = tempfile::tempdir().unwrap();
    let key_dir = tempfile::tempdir().unwrap();
    let issuer = LocalIssuer::load_or_create(key_dir.path(), "bench", "bench").unwrap();
    let user = LocalIssuer::user_id("bench");
    let state = AppState::embedded(server_dir.path(), issuer.verifier(), None)
        .await
        .unwrap();
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
    let server_before = du(server_dir.path());
    let device_before = du(device_dir.path());

    let deleted_at = now_millis();
    for id in &ids {
        let mut a = store.load(id).await.unwrap();
        a.doc.delete("bench", deleted_at).unwrap();
        store.save(&mut a).await.unwrap();
        sync.local_change(id.clone());
    }
    sync.sync_until_idle().await.unwrap();

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
    let server_after = du(server_dir.path());
    let device_after = du(device_dir.path());

    println!("Purge of {n} deleted assets ({n} own images of 24 KiB, one shared image kept)");
    println!();
    println!("| side   | time     | assets/s | blobs/s | disk before | disk after | returned |");
    println!("|--------|----------|----------|---------|-------------|------------|----------|");
    let rate = |k: u64, t: Duration| k as f64 / t.as_secs_f64();
    println!(
        "| server | {:>6.2} s | {:>8.0} | {:>7.0} | {:>11} | {:>10} | {:>8} |",
        server_took.as_secs_f64(),
        rate(report.assets, server_took),
        rate(report.blobs, server_took),
        mib(server_before),
        mib(server_after),
        mib(server_before.saturating_sub(server_after)),
    );
    println!(
        "| device | {:>6.2} s | {:>8.0} | {:>7.0} | {:>11} | {:>10} | {:>8} |",
        device_took.as_secs_f64(),
        rate(n as u64, device_took),
        rate(n as u64, device_took),
        mib(device_before),
        mib(device_after),
        mib(device_before.saturating_sub(device_after)),
    );
    println!();
    println!(
        "server: {} blobs deleted ({}), {} kept because another asset uses them; \
         databases keep their freed pages for reuse (the server's file does not shrink)",
        report.blobs,
        mib(report.blob_bytes),
        report.blobs_kept
    );
}
