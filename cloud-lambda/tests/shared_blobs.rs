//! One copy of each image on a laptop: the desktop's own server shares its
//! blob files with the device's blob directory (hard links), so an image
//! the device uploads, a job's result the server stores and the device
//! then "downloads", are each one file on disk under two names.

mod support;

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use serde_json::json;
use support::{Options, asset_with_image, device_in, request, tool, wait_finished, world_with};

/// Every file under `dir`, by name, with its inode.
fn files(dir: &Path) -> Vec<(String, u64, PathBuf)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            let meta = std::fs::metadata(&p).unwrap();
            out.push((
                p.file_name().unwrap().to_string_lossy().into_owned(),
                meta.ino(),
                p,
            ));
        }
    }
    out
}

#[tokio::test]
async fn the_server_and_the_device_keep_one_file_per_image() {
    let device_dir = tempfile::tempdir().unwrap();
    let w = world_with(Options {
        shared_blobs: Some(device_dir.path().join("blobs")),
        ..Options::default()
    })
    .await;
    let mut d = device_in(&w.url, &w.token, device_dir).await;
    let (doc, v1) = asset_with_image(&mut d).await;
    let ids = vec![
        request(
            &mut d,
            &doc,
            tool(
                "remove-background",
                "replicate",
                "bria/remove-background",
                "Remove the background",
                Some(&v1),
                json!({}),
            ),
        )
        .await,
    ];
    d.sync.sync_until_idle().await.unwrap();
    wait_finished(&mut d, &doc, &ids).await;

    let asset = d.store.load(&doc).await.unwrap();
    let versions = asset.doc.versions().unwrap();
    assert_eq!(versions.len(), 2, "the original and the result");
    let device_blobs = d.store.blobs().clone();
    let server_files = files(&w.dir.path().join("blobs").join("users"));
    let mut shas: Vec<String> = Vec::new();
    for v in &versions {
        shas.push(v.blob.sha256.clone());
        shas.extend(v.thumbnail.iter().map(|t| t.sha256.clone()));
    }
    assert!(shas.len() >= 3, "images and thumbnails: {shas:?}");
    for sha in &shas {
        let mine = device_blobs.path_of(sha).unwrap();
        let mine =
            std::fs::metadata(&mine).unwrap_or_else(|e| panic!("the device holds {sha}: {e}"));
        let theirs: Vec<_> = server_files.iter().filter(|(n, _, _)| n == sha).collect();
        assert_eq!(theirs.len(), 1, "the server holds {sha}");
        assert_eq!(theirs[0].1, mine.ino(), "{sha} is one file, not two");
        assert_eq!(mine.nlink(), 2);
        // And it reads back whole on both sides.
        assert_eq!(
            core_sync::blob::sha256_hex(&device_blobs.get(sha).unwrap()),
            *sha
        );
    }
}
