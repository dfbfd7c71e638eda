//! The shipped binaries through rename, delete and purge: two replicas
//! (`atelier-local`, `atelier-sync once`) and `atelier-cloud serve`. A
//! renames and deletes an asset while B, offline, edits it; after syncing,
//! the asset is in both trashes, marked as edited after its deletion.
//! `atelier-cloud purge` (retention 0 days) then removes it on the server,
//! both replicas drop it on their next sync, and `atelier-sync verify`
//! stays clean on both. Needs `cargo build --workspace --bins`.

use std::process::Command;

use atelier_tests::procs::{Replica, Server, bin, png, run_ok, write_file};

#[test]
fn rename_delete_and_purge_through_the_binaries() {
    let tmp = tempfile::Builder::new()
        .prefix("atelier-trash-e2e-")
        .tempdir()
        .unwrap();
    let server = Server::start(&tmp.path().join("server"));
    let token = tmp.path().join("token");
    server.token_file("alice", &token);
    let a = Replica::new(tmp.path().join("A"), server.url(), token.clone());
    let b = Replica::new(tmp.path().join("B"), server.url(), token);

    let id = a.local(["new", "Shoe"]).trim().to_owned();
    let keep = a.local(["new", "Boot"]).trim().to_owned();
    let image = tmp.path().join("shoe.png");
    write_file(&image, &png(20, 10));
    a.local(["add-image", &id, image.to_str().unwrap()]);
    a.sync(["once"]);
    b.sync(["once"]);
    assert_eq!(b.asset_ids().len(), 2);

    // A renames and deletes; B, offline, adds a note.
    a.local(["rename", &id, "Red shoe"]);
    let said = a.local(["delete", &id]);
    assert!(said.contains("restore"), "{said}");
    b.local(["say", &id, "note from B"]);
    let refused = a.local_cmd(["say", &id, "x"]).output().unwrap();
    assert!(!refused.status.success(), "edits to the trash are refused");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("in the trash"));
    a.sync(["once"]);
    b.sync(["once"]);
    a.sync(["once"]);
    for r in [&a, &b] {
        assert_eq!(r.asset_ids(), vec![keep.clone()], "gone from the list");
        let trash = r.local(["trash"]);
        assert!(trash.contains(&id) && trash.contains("Red shoe"), "{trash}");
        assert!(trash.contains("edited after it was deleted"), "{trash}");
        let show = r.local(["show", &id]);
        assert!(
            show.contains("IN THE TRASH") && show.contains("note from B"),
            "{show}"
        );
    }

    // The server purges (retention 0 days); devices drop it.
    let out = run_ok(
        Command::new(bin("atelier-cloud"))
            .args(["purge", "--trash-retention-days", "0", "--data"])
            .arg(server.data()),
    );
    assert!(out.starts_with("purged 1 asset(s) and "), "{out}");
    assert!(
        !out.contains(" and 0 blob(s)"),
        "the image only it used goes: {out}"
    );
    for r in [&a, &b] {
        r.sync(["once"]);
        assert_eq!(r.local(["trash"]).trim(), "", "dropped from the trash");
        assert_eq!(r.asset_ids(), vec![keep.clone()]);
        r.sync(["verify"]);
        assert_eq!(r.document_count(), 1);
    }
}
