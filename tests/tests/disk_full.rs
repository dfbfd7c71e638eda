//! Full disks and read-only stores, on a real size-limited file system
//! (a tmpfs of a few MiB, `atelier_tests::small_disk`):
//!
//! - The local store: edits are acknowledged until the disk is full; the
//!   first one that cannot land is `StoreError::DiskFull` naming the store,
//!   and stays in memory; everything acknowledged still reads back; once
//!   space returns the same save succeeds, the store reopens, and nothing
//!   is lost or doubled.
//! - The blob store: an image larger than the free space is refused the
//!   same way, leaves no partial file behind, and stores once there is room.
//! - Export: an export onto a full disk fails naming the file and the
//!   cause, leaves no manifest (so it reads as incomplete), and a rerun
//!   once there is room verifies.
//! - A store whose file system turned read-only refuses to open with
//!   `StoreError::ReadOnly` naming it; writable again, it holds everything.
//! - The embedded server (`atelier-cloud serve` with its data on the small
//!   disk): a push that cannot land answers 507 with a sentence, the
//!   device keeps its edits pending, the server keeps serving reads while
//!   full (a restart then refuses to start, saying the storage is full),
//!   and once space returns it starts, the same sync succeeds and another
//!   device receives every edit exactly once.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use atelier_tests::procs::{
    Replica, Server, bin, free_port, output_within, png, poll_until, status_field, write_file,
};
use atelier_tests::small_disk::SmallDisk;
use core_sync::backup;
use core_sync::model::NewMessage;
use core_sync::store::StoreError;
use core_sync::{Store, StoreOptions};

/// Most edits a test makes before the disk must have filled.
const MAX_EDITS: usize = 20_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Texts found in an asset's timeline.
fn texts(asset: &core_sync::LocalAsset) -> Vec<String> {
    asset
        .doc
        .messages()
        .expect("messages")
        .into_iter()
        .filter_map(|m| m.text)
        .collect()
}

#[test]
fn local_store_refuses_what_does_not_fit_and_resumes_when_space_returns() {
    let Some(disk) = SmallDisk::enter(
        "local_store_refuses_what_does_not_fit_and_resumes_when_space_returns",
        "6M",
    ) else {
        return;
    };
    let dir = disk.path().join("store");
    runtime().block_on(async {
        let store = Store::open(&dir, StoreOptions::default()).await.unwrap();
        let mut asset = store.create("full disk", 1).await.unwrap();
        // Leave a little room, then edit until a save is refused.
        disk.fill_leaving(256 * 1024);
        let mut acked = Vec::new();
        let mut refused = None;
        for n in 0..MAX_EDITS {
            let text = format!("edit {n} {}", "x".repeat(200));
            asset
                .doc
                .append_message(NewMessage::user(text.clone()), n as i64)
                .unwrap();
            match store.save(&mut asset).await {
                Ok(()) => acked.push(text),
                Err(e) => {
                    refused = Some((text, e));
                    break;
                }
            }
        }
        let (pending, err) = refused.expect("the disk filled up");
        assert!(
            matches!(&err, StoreError::DiskFull { path: Some(p) } if p == &dir),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("no space left") && msg.contains(&dir.display().to_string()),
            "{msg}"
        );
        assert!(asset.doc.has_unsaved_changes(), "the refused edit is kept");

        // Everything acknowledged reads back from the open store.
        let loaded = store.load(&asset.id).await.unwrap();
        let got = texts(&loaded);
        for t in &acked {
            assert!(got.contains(t), "acknowledged edit lost: {}", &t[..12]);
        }
        assert!(!got.contains(&pending), "a refused edit was stored");

        // Space returns: the same save lands, once; so does a new edit.
        disk.free();
        store.save(&mut asset).await.unwrap();
        asset
            .doc
            .append_message(NewMessage::user("after"), 0)
            .unwrap();
        store.save(&mut asset).await.unwrap();
        store.close().await;
        let store = Store::open(&dir, StoreOptions::default()).await.unwrap();
        let got = texts(&store.load(&asset.id).await.unwrap());
        let mut want = acked.clone();
        want.push(pending);
        want.push("after".into());
        assert_eq!(got, want, "every edit once, in order");
        store.close().await;
    });
}

#[test]
fn blobs_and_exports_on_a_full_disk_fail_clearly_and_leave_nothing_half_written() {
    let Some(disk) = SmallDisk::enter(
        "blobs_and_exports_on_a_full_disk_fail_clearly_and_leave_nothing_half_written",
        "12M",
    ) else {
        return;
    };
    let dir = disk.path().join("store");
    let out = disk.path().join("export");
    runtime().block_on(async {
        let store = Store::open(&dir, StoreOptions::default()).await.unwrap();
        let mut asset = store.create("with an image", 1).await.unwrap();
        asset
            .doc
            .append_message(NewMessage::user("kept"), 2)
            .unwrap();
        store.save(&mut asset).await.unwrap();
        let small = png(64, 64);
        store.put_blob(small, "image/png", 3).await.unwrap();

        // An image bigger than what is left (about 1.5 MiB of room).
        let big = png(1024, 1024);
        assert!(big.len() > 2 << 20, "the image outweighs the room");
        disk.fill_leaving(1536 * 1024);
        let err = store
            .put_blob(big.clone(), "image/png", 4)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::DiskFull { path: Some(p) } if p == &dir),
            "{err:?}"
        );
        let tmp = dir.join("blobs").join("tmp");
        let leftovers = std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
        assert_eq!(leftovers, 0, "a refused blob left a temporary file");
        disk.free();
        store.put_blob(big, "image/png", 5).await.unwrap();

        // An export that does not fit (1 MiB of room, a 3 MiB image):
        // fails naming the file and the cause, and leaves no manifest.
        disk.fill_leaving(1024 * 1024);
        let err = backup::export(&store, &out, true).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("No space left on device") && msg.contains("export"),
            "{msg} ({err:?})"
        );
        assert!(
            matches!(
                backup::read_manifest(&out),
                Err(backup::BackupError::Incomplete(_))
            ),
            "a failed export must read as incomplete"
        );

        // Space returns: the export completes and verifies.
        disk.free();
        let manifest = backup::export(&store, &out, true).await.unwrap();
        assert_eq!(manifest.blobs.len(), 2);
        let check = backup::verify_export(&out, true).unwrap();
        assert!(check.mismatches.is_empty(), "{:?}", check.mismatches);
        store.close().await;
    });
}

#[test]
fn a_read_only_store_is_named_and_holds_everything_when_writable_again() {
    let Some(disk) = SmallDisk::enter(
        "a_read_only_store_is_named_and_holds_everything_when_writable_again",
        "8M",
    ) else {
        return;
    };
    let dir = disk.path().join("store");
    let id = runtime().block_on(async {
        let store = Store::open(&dir, StoreOptions::default()).await.unwrap();
        let mut asset = store.create("read-only", 1).await.unwrap();
        asset
            .doc
            .append_message(NewMessage::user("before"), 2)
            .unwrap();
        store.save(&mut asset).await.unwrap();
        store.close().await;
        asset.id
    });
    disk.set_read_only(true);
    runtime().block_on(async {
        let err = match Store::open(&dir, StoreOptions::default()).await {
            Ok(_) => panic!("a store on a read-only file system opened for writing"),
            Err(e) => e,
        };
        assert!(
            matches!(&err, StoreError::ReadOnly { path: Some(p) } if p == &dir),
            "{err:?}"
        );
        assert!(err.to_string().contains("cannot be written"), "{err}");
    });
    disk.set_read_only(false);
    runtime().block_on(async {
        let store = Store::open(&dir, StoreOptions::default()).await.unwrap();
        let mut asset = store.load(&id).await.unwrap();
        assert_eq!(texts(&asset), ["before"]);
        asset
            .doc
            .append_message(NewMessage::user("after"), 3)
            .unwrap();
        store.save(&mut asset).await.unwrap();
        store.close().await;
    });
}

/// Runs `atelier-sync once`; `Err(what it said)` when it fails.
fn sync_once(r: &Replica) -> Result<(), String> {
    let out = output_within(&mut r.sync_cmd(["once"]), Duration::from_secs(60));
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Starts `atelier-cloud serve` on `data` (a full disk): it either serves
/// (and is stopped) or exits saying the storage is full.
fn restart_while_full(data: &Path, log: &Path) {
    let port = free_port();
    let mut child = Command::new(bin("atelier-cloud"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("atelier-cloud runs");
    let said = poll_until(
        "the restarted server to serve or exit",
        Duration::from_secs(60),
        || {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(Some(status));
            }
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| None)
        },
    );
    let log = std::fs::read_to_string(log).unwrap_or_default();
    match said {
        Some(status) => assert!(
            !status.success() && log.contains("storage full"),
            "the server exited without saying the storage is full:\n{log}"
        ),
        None => {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a failed sync says the server had no room.
fn says_no_room(said: &str) -> bool {
    said.contains("507") || said.contains("no room")
}

#[test]
fn a_full_server_disk_answers_507_and_loses_nothing() {
    let Some(disk) = SmallDisk::enter("a_full_server_disk_answers_507_and_loses_nothing", "16M")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // The data directory is the disk itself, so the log (beside it) is not.
    let mut server = Server::start(disk.path());
    let token = tmp.path().join("token");
    server.token_file("dora", &token);
    let a = Replica::new(tmp.path().join("A"), server.url(), token.clone());
    let b = Replica::new(tmp.path().join("B"), server.url(), token);
    let id = a.local(["new", "Server disk"]).trim().to_owned();
    a.local(["say", &id, "first"]);
    a.sync(["once"]);

    // The server's disk fills; A keeps editing and syncing until a sync is
    // refused (a push may still fit in space the database already holds).
    disk.fill();
    let mut said = Vec::new();
    let mut refused = None;
    for n in 0..200 {
        let text = format!("while-full-{n}-{}", "y".repeat(4000));
        a.local(["say", &id, &text]);
        said.push(format!("while-full-{n}-"));
        if let Err(why) = sync_once(&a) {
            refused = Some(why);
            break;
        }
    }
    let why = refused.expect("a sync onto the full disk was refused");
    assert!(says_no_room(&why), "the failure says why:\n{why}");
    assert!(a.pending_push() >= 1, "A keeps its edits pending");
    // An image does not fit either.
    let image = tmp.path().join("photo.png");
    write_file(&image, &png(400, 300));
    a.local(["add-image", &id, image.to_str().unwrap()]);
    let why = sync_once(&a).expect_err("an image upload onto the full disk");
    assert!(says_no_room(&why), "the failure says why:\n{why}");

    // Reads still work. Restarted on the full disk, the server either
    // starts (if its database finds the room it needs to open) or refuses
    // to, saying the storage is full; never anything else.
    b.sync(["once"]);
    assert_eq!(b.asset_ids(), std::slice::from_ref(&id));
    server.stop();
    restart_while_full(disk.path(), &tmp.path().join("restart.log"));

    // Space returns: the server starts, the same sync succeeds, B gets
    // every edit once.
    disk.free();
    server.restart();
    a.sync(["once"]);
    assert_eq!(a.pending_push(), 0);
    b.sync(["once"]);
    let show = b.local(["show", &id]);
    for text in std::iter::once("first".to_owned()).chain(said) {
        assert_eq!(show.matches(&text).count(), 1, "{text} in:\n{show}");
    }
    assert!(
        show.contains("400x300 image/png"),
        "the image version arrived:\n{show}"
    );
    assert_eq!(status_field(&b.sync(["status"]), "pending push"), 0);
}
