//! A purge killed with SIGKILL at arbitrary moments (`atelier-cloud purge`
//! as a child process) loses nothing live and leaves nothing half-deleted:
//! after every kill, each trashed document is whole or purged, every live
//! document loads with all its images, and a last run finishes the job.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use cloud_lambda::storage::embedded::{EmbeddedBlobs, EmbeddedStore};
use cloud_lambda::storage::{BlobStore, DocStore};
use core_sync::DocId;
use core_sync::model::{AssetDoc, BlobRef, NewVersion};

const USER: &str = "crash-user";

/// A distinct small "image" per `n` (the store checks hashes only).
fn image(n: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend(format!("image number {n} ").repeat(64).into_bytes());
    bytes
}

struct Asset {
    id: DocId,
    blobs: BTreeSet<String>,
    trashed: bool,
}

/// `live` assets and `trashed` ones; every trashed asset shares one image
/// with a live asset and has one of its own.
async fn fill(
    store: &EmbeddedStore,
    blobs: &EmbeddedBlobs,
    live: usize,
    trashed: usize,
) -> Vec<Asset> {
    let mut out = Vec::new();
    for i in 0..live + trashed {
        let is_trashed = i >= live;
        let images = if is_trashed {
            vec![image(i % live), image(1_000 + i)]
        } else {
            vec![image(i)]
        };
        let mut doc = AssetDoc::create(&format!("asset {i}"), 1_000);
        let mut names = BTreeSet::new();
        for bytes in images {
            let sha = core_sync::blob::sha256_hex(&bytes);
            blobs.put(USER, &sha, &bytes).await.unwrap();
            doc.add_version(
                NewVersion {
                    blob: BlobRef {
                        sha256: sha.clone(),
                        mime: "image/png".into(),
                        width: 1,
                        height: 1,
                        bytes: bytes.len() as u64,
                    },
                    thumbnail: None,
                    parent_version_id: None,
                    created_by_message_id: None,
                },
                1_001,
            )
            .unwrap();
            names.insert(sha);
        }
        if is_trashed {
            doc.delete("laptop", 2_000).unwrap();
        }
        let id = DocId::random();
        let bytes = doc.save();
        let heads = doc.heads();
        let useq = store.append(USER, &id, 0, &bytes, &heads).await.unwrap();
        cloud_lambda::projection::after_write(store, USER, &id, useq, doc.automerge()).await;
        out.push(Asset {
            id,
            blobs: names,
            trashed: is_trashed,
        });
    }
    out
}

/// What must hold after any kill. Returns how many trashed assets are
/// purged.
async fn check(store: &EmbeddedStore, blobs: &EmbeddedBlobs, assets: &[Asset]) -> usize {
    let leftovers = store.purge_leftovers().await.unwrap();
    assert!(leftovers.is_empty(), "half-deleted: {leftovers:?}");
    let purges = store.purges().unwrap();
    let mut purged = 0;
    for a in assets {
        if purges.is_purged(USER, &a.id).await.unwrap() {
            assert!(a.trashed, "a live asset was purged");
            assert!(store.head(USER, &a.id).await.unwrap().is_none());
            purged += 1;
            continue;
        }
        // Whole: it loads, it is listed, and its images are there.
        let chunks = store.read_all(USER, &a.id).await.unwrap();
        let doc = AssetDoc::load_chunks(chunks.iter().map(|c| c.bytes.as_slice())).unwrap();
        assert_eq!(doc.blob_refs().unwrap(), a.blobs);
        assert!(
            store
                .projections()
                .get_listing(USER, &a.id)
                .await
                .unwrap()
                .is_some(),
            "asset {} lost its listing",
            a.id
        );
        for sha in &a.blobs {
            assert!(
                blobs.exists(USER, sha).await.unwrap(),
                "asset {} lost image {sha}",
                a.id
            );
        }
    }
    purged
}

#[tokio::test]
async fn a_purge_killed_at_any_moment_leaves_nothing_half_done() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    let blobs = EmbeddedBlobs::open(dir.path()).unwrap();
    let assets = fill(&store, &blobs, 40, 160).await;
    let trashed = assets.iter().filter(|a| a.trashed).count();
    let bin = env!("CARGO_BIN_EXE_atelier-cloud");
    let mut kills = 0;
    // Kill points spread over the run, in a fixed pseudo-random order.
    for delay_ms in [40u64, 260, 90, 520, 150, 330, 700, 60] {
        let mut child = Command::new(bin)
            .args(["purge", "--trash-retention-days", "0", "--data"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            // SIGKILL: no destructor, no rollback handler runs.
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
        let purged = check(&store, &blobs, &assets).await;
        eprintln!("killed after {delay_ms} ms: {purged} of {trashed} purged");
        if purged == trashed {
            break;
        }
    }
    assert!(kills > 0, "no run was ever cut short");
    // A last, whole run finishes whatever the kills left.
    let status = Command::new(bin)
        .args(["purge", "--trash-retention-days", "0", "--data"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(check(&store, &blobs, &assets).await, trashed);
    assert!(
        store
            .purges()
            .unwrap()
            .queued_blobs(10)
            .await
            .unwrap()
            .is_empty()
    );
    // Each trashed asset's own image is gone; the shared ones stay.
    for a in assets.iter().filter(|a| a.trashed) {
        let own: Vec<_> = a
            .blobs
            .iter()
            .filter(|sha| !assets.iter().any(|l| !l.trashed && l.blobs.contains(*sha)))
            .collect();
        assert_eq!(own.len(), 1);
        assert!(!blobs.exists(USER, own[0]).await.unwrap());
    }
}
