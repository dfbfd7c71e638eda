//! Private by default on disk: a device's store (`atelier.db` with its
//! `-wal` and `-shm`), its blob directory, an export, and the embedded
//! server's data directory (`cloud.db`, its blobs, its keys) are created
//! owner-only (directories 0700, files 0600), and ones left readable by
//! others (an older version, a copy, a lax umask) are tightened when they
//! are opened, so that nothing in them is within other users' reach.
//!
//! The tests run with umask 0: anything created without an explicit
//! owner-only mode would come out readable and writable by everyone, so
//! nothing slips through on a machine whose umask happens to be strict.
//! (The umask is the process's: every test in this binary wants it, and
//! the binaries they start inherit it.)

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Once;

use atelier_tests::procs::{Replica, Server, png, write_file};
use core_sync::backup;
use core_sync::model::NewMessage;
use core_sync::{Store, StoreOptions, now_millis};

fn no_umask() {
    static ONCE: Once = Once::new();
    // SAFETY: umask(2) only sets the process's file mode creation mask.
    ONCE.call_once(|| unsafe {
        libc::umask(0);
    });
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("atelier-private-")
        .tempdir()
        .expect("create a temporary directory")
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `root` and everything below it.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_owned()];
    let mut at = 0;
    while at < out.len() {
        let path = out[at].clone();
        at += 1;
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            for entry in std::fs::read_dir(&path).unwrap() {
                out.push(entry.unwrap().path());
            }
        }
    }
    out
}

/// Entries of `root` that others may read, write or enter, with their mode.
fn loose(root: &Path) -> Vec<(PathBuf, String)> {
    walk(root)
        .into_iter()
        .filter(|p| mode(p) & 0o077 != 0)
        .map(|p| {
            let m = format!("{:o}", mode(&p));
            (p, m)
        })
        .collect()
}

/// Entries of `root` others can get at: loose themselves, and every
/// directory from `root` down to them loose too.
fn exposed(root: &Path) -> Vec<(PathBuf, String)> {
    loose(root)
        .into_iter()
        .filter(|(p, _)| {
            p.ancestors()
                .skip(1)
                .take_while(|a| a.starts_with(root))
                .all(|a| mode(a) & 0o077 != 0)
        })
        .collect()
}

/// Makes every entry of `root` readable by all, as a careless copy would.
fn loosen(root: &Path) {
    for path in walk(root) {
        let m = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
    }
    assert!(!exposed(root).is_empty());
}

#[tokio::test]
async fn a_device_store_its_blobs_and_an_export_are_owner_only() {
    no_umask();
    let tmp = tempdir();
    let data = tmp.path().join("device");
    let out = tmp.path().join("export");
    let store = Store::open(&data, StoreOptions::default()).await.unwrap();
    let mut asset = store.create("Private", now_millis()).await.unwrap();
    asset
        .doc
        .append_message(NewMessage::user("a prompt of mine"), now_millis())
        .unwrap();
    store.save(&mut asset).await.unwrap();
    let sha = store
        .put_blob(png(8, 8), "image/png", now_millis())
        .await
        .unwrap();
    backup::export(&store, &out, true).await.unwrap();

    let db = data.join("atelier.db");
    let wal = data.join("atelier.db-wal");
    let shm = data.join("atelier.db-shm");
    let blob = store.blobs().path_of(&sha).unwrap();
    for (path, want) in [
        (&data, 0o700),
        (&db, 0o600),
        (&wal, 0o600),
        (&shm, 0o600),
        (&data.join("blobs"), 0o700),
        (&blob.parent().unwrap().to_owned(), 0o700),
        (&blob, 0o600),
        (&out, 0o700),
        (&out.join("manifest.json"), 0o600),
    ] {
        assert_eq!(
            format!("{:o}", mode(path)),
            format!("{want:o}"),
            "{}",
            path.display()
        );
    }
    for tree in [&data, &out] {
        assert_eq!(loose(tree), vec![], "created owner-only");
    }

    // Loosened while the store is open, then opened again (as a second
    // process sharing the store would) and exported again: tightened.
    loosen(&data);
    loosen(&out);
    let again = Store::open(&data, StoreOptions::default()).await.unwrap();
    backup::export(&again, &out, true).await.unwrap();
    for (path, want) in [
        (&data, 0o700),
        (&db, 0o600),
        (&wal, 0o600),
        (&shm, 0o600),
        (&data.join("blobs"), 0o700),
        (&blob.parent().unwrap().to_owned(), 0o700),
        (&out, 0o700),
        (&out.join("manifest.json"), 0o600),
    ] {
        assert_eq!(
            format!("{:o}", mode(path)),
            format!("{want:o}"),
            "tightened: {}",
            path.display()
        );
    }
    for tree in [&data, &out] {
        assert_eq!(exposed(tree), vec![], "nothing within others' reach");
    }
    again.close().await;
    store.close().await;
}

#[test]
fn the_embedded_servers_data_is_owner_only() {
    no_umask();
    let tmp = tempdir();
    let data = tmp.path().join("server");
    let mut server = Server::start(&data);
    let token = tmp.path().join("token");
    server.token_file("alice", &token);
    let device = Replica::new(tmp.path().join("device"), server.url(), token);
    let id = device.local(["new", "Shoe"]).trim().to_owned();
    let file = tmp.path().join("shoe.png");
    write_file(&file, &png(16, 16));
    device.local(["add-image", &id, file.to_str().unwrap()]);
    device.sync(["once"]);

    // While it runs: the database with its WAL, the blobs it received, the
    // keys that sign tokens and transfer URLs.
    let db = data.join("cloud.db");
    let stored: Vec<PathBuf> = walk(&data.join("blobs").join("users"))
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(stored.len(), 1, "the uploaded image");
    for path in [db.clone(), db.with_extension("db-wal"), stored[0].clone()] {
        assert!(path.exists(), "{}", path.display());
    }
    assert_eq!(loose(&data), vec![], "created owner-only");
    assert_eq!(loose(&device.data), vec![], "the device's, through the CLI");

    server.stop();
    loosen(&data);
    server.restart();
    for (path, want) in [
        (&data, 0o700),
        (&db, 0o600),
        (&db.with_extension("db-wal"), 0o600),
        (&data.join("blobs"), 0o700),
        (&data.join("blobs").join("users"), 0o700),
        (&data.join("blobs").join("tmp"), 0o700),
    ] {
        assert_eq!(
            format!("{:o}", mode(path)),
            format!("{want:o}"),
            "tightened: {}",
            path.display()
        );
    }
    assert_eq!(exposed(&data), vec![], "nothing within others' reach");
}
