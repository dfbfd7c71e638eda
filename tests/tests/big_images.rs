//! Real-size images through the shipped binaries, process against process:
//!
//! - A 60 MB image added on device A reaches device B with A's other
//!   assets, through the server's transfer URLs, streamed: the server's
//!   peak memory grows by far less than the image while it moves.
//! - One image and one document the server refuses (an image over its
//!   `--max-image-bytes`, a document whose changes are over its request
//!   limit) leave every other asset syncing; `atelier-sync status` and
//!   `atelier-local show` say what was refused and why, and the refused
//!   ones stay pending, offered again later.

use std::path::Path;

use atelier_tests::procs::{Replica, Server, png, write_file};
use core_sync::blob::{MAX_BLOB_BYTES, sha256_hex};
use core_sync::model::NewMessage;
use core_sync::{Store, StoreOptions, now_millis};
use tempfile::TempDir;

fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("atelier-big-")
        .tempdir()
        .expect("create a temporary directory")
}

/// Two devices of one user on `server`.
fn devices(tmp: &Path, server: &Server) -> (Replica, Replica) {
    let token = tmp.join("token");
    server.token_file("alice", &token);
    (
        Replica::new(tmp.join("A"), server.url(), token.clone()),
        Replica::new(tmp.join("B"), server.url(), token),
    )
}

/// A new asset on `r` holding the image `bytes`; returns its id.
fn asset_with_image(r: &Replica, title: &str, bytes: &[u8]) -> String {
    let id = r.local(["new", title]).trim().to_owned();
    let file = r.data.join(format!("{title}.png"));
    write_file(&file, bytes);
    r.local(["add-image", &id, file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    id
}

/// Whether `r` holds the blob `sha`, whole.
fn holds_blob(r: &Replica, sha: &str) -> bool {
    let blobs = core_sync::blob::BlobStore::open(r.data.join("blobs")).unwrap();
    let path = blobs.path_of(sha).unwrap();
    path.is_file() && sha256_hex(&std::fs::read(path).unwrap()) == sha
}

#[test]
fn a_60_mb_image_reaches_the_second_device_with_the_others() {
    let tmp = tempdir();
    let server = Server::start(&tmp.path().join("server"));
    let (a, b) = devices(tmp.path(), &server);
    // Uncompressed rows: 4,500 x 4,500 RGB is 60.8 MB, under the 64 MiB a
    // device takes.
    let big = png(4500, 4500);
    assert!(big.len() > 60_000_000 && (big.len() as u64) < MAX_BLOB_BYTES);
    let sha = sha256_hex(&big);
    let big_id = asset_with_image(&a, "Big", &big);
    drop(big);
    let small_id = asset_with_image(&a, "Small", &png(32, 32));
    let note_id = a.local(["new", "Notes"]).trim().to_owned();
    a.local(["say", &note_id, "the rest comes along"]);

    let (rss_before, _) = server.rss_kib();
    a.sync(["once"]);
    assert_eq!(a.pending_push(), 0, "A pushed everything");
    b.sync(["once"]);
    let (_, peak) = server.rss_kib();
    let grew_kib = peak.saturating_sub(rss_before);
    eprintln!(
        "server RSS {rss_before} KiB before, peak {peak} KiB after moving the image up and down (+{grew_kib} KiB for a {} KiB image)",
        60_766_000 / 1024
    );
    assert!(
        grew_kib < 60_000 / 4,
        "the server buffered the image: peak grew by {grew_kib} KiB"
    );

    assert_eq!(b.asset_ids(), {
        let mut ids = vec![big_id.clone(), small_id, note_id.clone()];
        ids.sort();
        ids
    });
    assert!(b.local(["show", &big_id]).contains("4500x4500 image/png"));
    assert!(b.local(["show", &note_id]).contains("the rest comes along"));
    assert!(holds_blob(&b, &sha), "B holds the 60 MB image, whole");
    b.sync(["verify"]);
}

/// Makes, in `dir`'s store, an asset whose one message is `chars` long
/// (pseudo-random printable ASCII, which compresses poorly); returns its id.
fn asset_with_a_huge_note(dir: &Path, chars: usize) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(dir, StoreOptions::default()).await.unwrap();
        let mut asset = store.create("Huge note", now_millis()).await.unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let text: String = (0..chars)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (b'!' + (x % 94) as u8) as char
            })
            .collect();
        asset
            .doc
            .append_message(NewMessage::user(text), now_millis())
            .unwrap();
        store.save(&mut asset).await.unwrap();
        store.close().await;
        asset.id.to_string()
    })
}

#[test]
fn a_refused_image_and_a_refused_document_leave_the_others_syncing() {
    let tmp = tempdir();
    let server = Server::start_with(
        &tmp.path().join("server"),
        &["--max-image-bytes".into(), "1000000".into()],
    );
    let (a, b) = devices(tmp.path(), &server);
    // Over the server's image limit (1 MB) and over what one request may
    // push (16 MiB after base64: 20 M characters compress to about 16 MB),
    // so the client never sends it.
    let photo = png(700, 700);
    assert!(photo.len() > 1_000_000);
    let photo_id = asset_with_image(&a, "Photo", &photo);
    a.local(["list"]); // the store exists before it is opened in-process
    let huge_id = asset_with_a_huge_note(&a.data, 20_000_000);
    let mut others = Vec::new();
    for i in 0..5 {
        let id = asset_with_image(&a, &format!("Fine {i}"), &png(16 + i, 16));
        a.local(["say", &id, &format!("note {i}")]);
        others.push(id);
    }

    a.sync(["once"]);
    let status = a.sync(["status"]);
    assert!(
        status.contains(&format!(
            "refused document {huge_id}: the pushed changes are "
        )) && status.contains("one request may push at most"),
        "{status}"
    );
    assert!(
        status.contains(&format!("refused image {}: ", sha256_hex(&photo))),
        "{status}"
    );
    assert_eq!(a.pending_push(), 1, "only the refused document waits");
    let show = a.local(["show", &photo_id]);
    assert!(show.contains("[image not synced: "), "{show}");
    let show = a.local(["show", &huge_id]);
    assert!(show.contains("not synced: the server refused"), "{show}");

    // Everything else reached B, the photo's asset too (without its image).
    b.sync(["once"]);
    let mut expected: Vec<String> = others.clone();
    expected.push(photo_id.clone());
    expected.sort();
    assert_eq!(b.asset_ids(), expected);
    for (i, id) in others.iter().enumerate() {
        assert!(b.local(["show", id]).contains(&format!("note {i}")));
    }
    assert!(!holds_blob(&b, &sha256_hex(&photo)));

    // The next sync offers neither again (not before an hour), and still
    // succeeds: a later edit syncs as usual.
    a.local(["say", &others[0], "later"]);
    a.sync(["once"]);
    b.sync(["once"]);
    assert!(b.local(["show", &others[0]]).contains("later"));
    assert_eq!(a.pending_push(), 1);
}
