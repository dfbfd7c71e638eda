//! End-to-end tests of the shipped binaries, process against process.
//!
//! - Every binary (`atelier-local`, `atelier-sync`, `atelier-cloud`,
//!   `crash-child`) answers `--help` with exit 0.
//! - Two replicas through one `atelier-cloud serve` (on the embedded
//!   backend, and on the AWS backend over moto): device A creates assets
//!   (messages, images, a rollback) with `atelier-local`,
//!   `atelier-sync once` carries them to device B, whose `list` and `show`
//!   match A's. Both sides then edit offline, sync twice, and converge (same
//!   `show` per asset, `status` says nothing is pending). Finally an
//!   `atelier-sync run` daemon on B picks up a change A pushes, within a
//!   polled deadline, and stops cleanly on SIGINT. A daemon also pushes
//!   edits another process (`atelier-local`) makes to its replica while it
//!   runs, at its next poll.
//! - Backups: `export` of a replica with a blob (a real PNG) passes
//!   `verify --export`; a corrupted or missing exported file makes it exit
//!   non-zero naming the file's document or blob, and `import` refuses it.
//! - Backups under SIGKILL: a replica of 300 assets (made in-process with
//!   `core_sync::Store`) is exported, and `atelier-sync export` is killed at
//!   random moments (after a random number of written documents, or after a
//!   random delay); afterwards `verify --export` either passes or says the
//!   export is incomplete (never a "complete" export whose files disagree),
//!   and rerunning the export makes it pass with the store's exact heads. A
//!   re-export over an older export, killed halfway, gets the same check.
//!   The same for `import` into fresh replicas: killed at random moments,
//!   rerun, then the store verifies, holds every asset, and every asset has
//!   the exported heads.
//!
//! The binaries of the other packages come from the target directory (see
//! `atelier_tests::procs::bin`); run `cargo build --workspace --bins` first.
//! The kill moments come from a seeded RNG; the seed is printed and
//! `BACKUP_SEED` overrides it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use atelier_tests::procs::{
    Replica, Server, bin, interrupt, output_within, png, poll_until, run_ok, wait_within,
    write_file,
};
use core_sync::backup::{self, Manifest};
use core_sync::blob::sha256_hex;
use core_sync::model::NewMessage;
use core_sync::{DocId, Store, StoreOptions, now_millis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tempfile::TempDir;

/// How long `atelier-sync run` may take to pull a change another device
/// pushed. Its idle poll starts at 2 s and doubles while nothing changes.
const DAEMON_PICKUP_TIMEOUT: Duration = Duration::from_secs(20);

fn tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temporary directory")
}

// ------------------------------------------------------------------ help

#[test]
fn every_binary_answers_help() {
    let binaries = [
        bin("atelier-local"),
        bin("atelier-sync"),
        bin("atelier-cloud"),
        PathBuf::from(env!("CARGO_BIN_EXE_crash-child")),
    ];
    for path in binaries {
        let out = output_within(Command::new(&path).arg("--help"), Duration::from_secs(20));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{} --help exited with {}; stderr:\n{}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("Usage:"),
            "{} --help printed no usage:\n{stdout}",
            path.display()
        );
    }
}

// ------------------------------------------------------------------ sync

/// A's and B's `show` output for every asset of A, which B must list too.
fn assert_same_assets(a: &Replica, b: &Replica, when: &str) -> Vec<String> {
    let ids = a.asset_ids();
    assert_eq!(ids, b.asset_ids(), "{when}: A and B list different assets");
    for id in &ids {
        let (on_a, on_b) = (a.local(["show", id]), b.local(["show", id]));
        assert_eq!(on_a, on_b, "{when}: `show {id}` differs between A and B");
    }
    ids
}

/// How often `text` occurs as a whole timeline line's text in `show`.
fn occurrences(show: &str, text: &str) -> usize {
    show.lines()
        .filter(|l| l.trim_end().ends_with(&format!(" {text}")))
        .count()
}

#[test]
fn two_replicas_converge_through_the_server() {
    let tmp = tempdir("atelier-e2e-");
    let server = Server::start(&tmp.path().join("server"));
    two_replicas_converge(&tmp, &server);
}

/// The same through `atelier-cloud serve --backend aws` on moto (tables and
/// buckets made by `atelier-cloud init-aws`).
#[test]
fn two_replicas_converge_through_the_server_on_aws() {
    let tmp = tempdir("atelier-e2e-aws-");
    let moto = atelier_fixtures::moto::Moto::start();
    let aws = [
        "--aws-endpoint".to_owned(),
        moto.url(),
        "--aws-prefix".to_owned(),
        "e2e-".to_owned(),
    ];
    let created = run_ok(
        Command::new(bin("atelier-cloud"))
            .arg("init-aws")
            .args(&aws),
    );
    assert!(created.contains("created table: e2e-log"), "{created}");
    let mut args = vec!["--backend".to_owned(), "aws".to_owned()];
    args.extend(aws);
    let server = Server::start_with(&tmp.path().join("server"), &args);
    two_replicas_converge(&tmp, &server);
}

/// Two replicas through `server`: see the module docs.
fn two_replicas_converge(tmp: &TempDir, server: &Server) {
    let token = tmp.path().join("token");
    server.token_file("alice", &token);
    let a = Replica::new(tmp.path().join("A"), server.url(), token.clone());
    let b = Replica::new(tmp.path().join("B"), server.url(), token);

    // Device A works offline: three assets, a timeline each, two images and
    // a rollback. (No tool requests: the server would run them and change
    // the documents on its own.)
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = a.local(["new", &format!("Asset {i}")]).trim().to_owned();
        for n in 0..3 {
            a.local(["say", &id, &format!("a-{i}-{n}")]);
        }
        ids.push(id);
    }
    let image = tmp.path().join("tiny.png");
    write_file(&image, &png(16, 8));
    let v1 = a.local(["add-image", &ids[1], image.to_str().unwrap()]);
    write_file(&image, &png(8, 16));
    a.local(["add-image", &ids[1], image.to_str().unwrap()]);
    a.local(["rollback", &ids[1], v1.trim()]);
    assert!(a.pending_push() >= 3, "A's new assets are pending");

    a.sync(["once"]);
    assert_eq!(a.pending_push(), 0, "A pushed everything");
    b.sync(["once"]);
    let listed = assert_same_assets(&a, &b, "after the first sync");
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
    let show = b.local(["show", &ids[0]]);
    for n in 0..3 {
        assert_eq!(occurrences(&show, &format!("a-0-{n}")), 1, "{show}");
    }
    assert!(b.local(["show", &ids[1]]).contains("← active"));

    // Both edit offline, the same assets included, and B makes a new one.
    for n in 0..3 {
        a.local(["say", &ids[0], &format!("offline-A-0-{n}")]);
        a.local(["say", &ids[1], &format!("offline-A-1-{n}")]);
        b.local(["say", &ids[0], &format!("offline-B-0-{n}")]);
        b.local(["say", &ids[2], &format!("offline-B-2-{n}")]);
    }
    let new_on_b = b.local(["new", "Made on B"]).trim().to_owned();
    b.local(["say", &new_on_b, "hello from B"]);
    for _ in 0..2 {
        a.sync(["once"]);
        b.sync(["once"]);
    }
    let listed = assert_same_assets(&a, &b, "after the offline edits");
    assert_eq!(listed.len(), 4);
    assert!(listed.contains(&new_on_b));
    assert_eq!(
        (a.pending_push(), b.pending_push()),
        (0, 0),
        "nothing pending"
    );
    let show = a.local(["show", &ids[0]]);
    for n in 0..3 {
        for text in [format!("offline-A-0-{n}"), format!("offline-B-0-{n}")] {
            assert_eq!(occurrences(&show, &text), 1, "{text} in:\n{show}");
        }
    }

    // The daemon on B picks up what A pushes.
    let log = tmp.path().join("daemon-b.log");
    let mut daemon = spawn_daemon(&b, &log);
    let mut guard = KillOnDrop(Some(&mut daemon));
    a.local(["say", &ids[2], "live from A"]);
    a.sync(["once"]);
    let started = Instant::now();
    poll_until(
        "the daemon on B to pull A's change",
        DAEMON_PICKUP_TIMEOUT,
        || {
            let show = b.local(["show", &ids[2]]);
            (occurrences(&show, "live from A") == 1).then_some(())
        },
    );
    eprintln!("daemon on B pulled A's change in {:.1?}", started.elapsed());
    stop_daemon(guard.0.take().expect("daemon running"), &log);
    assert_same_assets(&a, &b, "after the daemon ran");
    assert_eq!((a.pending_push(), b.pending_push()), (0, 0));
    // Sync state verifies on both sides.
    a.sync(["verify"]);
    b.sync(["verify"]);
}

/// Spawns `atelier-sync run` for `r`, logging to `log`.
fn spawn_daemon(r: &Replica, log: &Path) -> Child {
    r.sync_cmd(["run"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).expect("daemon log"))
        .spawn()
        .expect("spawn atelier-sync run")
}

/// Stops a daemon with SIGINT; it must exit 0 promptly.
fn stop_daemon(child: &mut Child, log: &Path) {
    interrupt(child);
    let status = wait_within(child, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("atelier-sync run ignored SIGINT"));
    assert!(
        status.success(),
        "atelier-sync run exited with {status}; log:\n{}",
        fs::read_to_string(log).unwrap_or_default()
    );
}

#[test]
fn daemon_pushes_edits_another_process_makes_to_its_replica() {
    let tmp = tempdir("atelier-e2e-daemon-");
    let server = Server::start(&tmp.path().join("server"));
    let token = tmp.path().join("token");
    server.token_file("bob", &token);
    let a = Replica::new(tmp.path().join("A"), server.url(), token.clone());
    let b = Replica::new(tmp.path().join("B"), server.url(), token);
    let id = a.local(["new", "Shared"]).trim().to_owned();
    a.sync(["once"]);

    // A's daemon runs; meanwhile the CLI edits A's replica, as a user
    // would. The daemon must push the edit at its next poll, not only
    // after a restart.
    let log = tmp.path().join("daemon-a.log");
    let mut daemon = spawn_daemon(&a, &log);
    let mut guard = KillOnDrop(Some(&mut daemon));
    a.local(["say", &id, "written by the CLI while the daemon runs"]);
    let new = a
        .local(["new", "Made while the daemon runs"])
        .trim()
        .to_owned();
    let started = Instant::now();
    poll_until(
        "the daemon on A to push the CLI's edits",
        DAEMON_PICKUP_TIMEOUT,
        || (a.pending_push() == 0).then_some(()),
    );
    eprintln!(
        "daemon on A pushed the CLI's edits in {:.1?}",
        started.elapsed()
    );
    stop_daemon(guard.0.take().expect("daemon running"), &log);

    b.sync(["once"]);
    assert!(
        b.asset_ids().contains(&new),
        "B got the asset made meanwhile"
    );
    let show = b.local(["show", &id]);
    assert_eq!(
        occurrences(&show, "written by the CLI while the daemon runs"),
        1,
        "{show}"
    );
    assert_same_assets(&a, &b, "after A's daemon pushed");
}

/// SIGKILLs a child on drop (when a test fails before stopping it).
struct KillOnDrop<'a>(Option<&'a mut Child>);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------- backup

/// A replica that never talks to a server (export, import and verify do
/// not need one).
fn offline_replica(dir: PathBuf) -> Replica {
    Replica::new(
        dir,
        "http://127.0.0.1:9".into(),
        PathBuf::from("/nonexistent-token"),
    )
}

fn verify_export(r: &Replica, dir: &Path) -> (i32, String, String) {
    let out = output_within(
        r.sync_cmd(["--quiet", "verify", "--export"]).arg(dir),
        Duration::from_secs(60),
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn flip_a_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

#[test]
fn export_verifies_and_names_a_corrupted_file() {
    let tmp = tempdir("atelier-backup-");
    let r = offline_replica(tmp.path().join("replica"));
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = r.local(["new", &format!("Backup {i}")]).trim().to_owned();
        r.local(["say", &id, &format!("note {i}")]);
        ids.push(id);
    }
    let image = tmp.path().join("pic.png");
    let png_bytes = png(24, 12);
    write_file(&image, &png_bytes);
    r.local(["add-image", &ids[0], image.to_str().unwrap()]);
    let sha = sha256_hex(&png_bytes);

    let out = tmp.path().join("export");
    r.sync(["--quiet", "export", out.to_str().unwrap()]);
    let manifest = backup::read_manifest(&out).expect("the export has a manifest");
    assert_eq!(manifest.docs.len(), 3);
    assert_eq!(
        manifest.blobs.iter().map(|b| &b.sha256).collect::<Vec<_>>(),
        [&sha],
        "the PNG is the one blob"
    );
    assert_eq!(fs::read(out.join("blobs").join(&sha)).unwrap(), png_bytes);
    let (code, stdout, stderr) = verify_export(&r, &out);
    assert_eq!(code, 0, "a fresh export verifies:\n{stdout}{stderr}");
    r.sync(["--quiet", "verify"]);

    // A corrupted document file is named.
    let doc_file = out.join("docs").join(format!("{}.automerge", ids[1]));
    let good = fs::read(&doc_file).unwrap();
    flip_a_byte(&doc_file);
    let (code, stdout, _) = verify_export(&r, &out);
    assert_ne!(code, 0, "a corrupted document file must fail verify");
    assert!(
        stdout.contains(&format!("MISMATCH document {}", ids[1])),
        "verify must name the document:\n{stdout}"
    );
    assert_eq!(
        stdout.lines().count(),
        1,
        "only that file is bad:\n{stdout}"
    );

    // Import refuses the damaged export and writes nothing.
    let fresh = offline_replica(tmp.path().join("fresh"));
    let refused = output_within(
        fresh.sync_cmd(["--quiet", "import"]).arg(&out),
        Duration::from_secs(60),
    );
    assert!(
        !refused.status.success(),
        "import of a damaged export must fail"
    );
    assert_eq!(fresh.document_count(), 0, "a refused import writes nothing");
    fs::write(&doc_file, &good).unwrap();

    // A corrupted blob is named.
    let blob_file = out.join("blobs").join(&sha);
    flip_a_byte(&blob_file);
    let (code, stdout, _) = verify_export(&r, &out);
    assert_ne!(code, 0, "a corrupted blob must fail verify");
    assert!(stdout.contains(&format!("MISMATCH blob {sha}")), "{stdout}");
    fs::write(&blob_file, &png_bytes).unwrap();

    // A missing document file is named.
    let gone = out.join("docs").join(format!("{}.automerge", ids[2]));
    fs::remove_file(&gone).unwrap();
    let (code, stdout, _) = verify_export(&r, &out);
    assert_ne!(code, 0, "a missing file must fail verify");
    assert!(
        stdout.contains(&format!("MISMATCH document {}", ids[2])),
        "{stdout}"
    );

    // Exporting again repairs it; the repaired export imports cleanly.
    r.sync(["--quiet", "export", out.to_str().unwrap()]);
    let (code, stdout, stderr) = verify_export(&r, &out);
    assert_eq!(code, 0, "a re-export verifies:\n{stdout}{stderr}");
    fresh.sync(["--quiet", "import", out.to_str().unwrap()]);
    fresh.sync(["--quiet", "verify"]);
    assert_eq!(fresh.document_count(), 3);
    for id in &ids {
        assert_eq!(r.local(["show", id]), fresh.local(["show", id]));
    }
}

// ------------------------------------------------------ backup under kill

/// Assets in the big replica.
const BIG_ASSETS: usize = 300;
/// Blobs in the big replica.
const BIG_BLOBS: usize = 12;
const EXPORT_TRIALS: u32 = 4;
const IMPORT_TRIALS: u32 = 4;
/// Re-exports over an older export, killed halfway.
const REEXPORT_TRIALS: u32 = 1;

/// Creates `BIG_ASSETS` assets with a short timeline each and `BIG_BLOBS`
/// blobs, in-process (far faster than one `atelier-local` per edit).
async fn fill_big_store(dir: &Path) {
    let store = Store::open(dir, StoreOptions::default())
        .await
        .expect("open the big store");
    let now = now_millis();
    for i in 0..BIG_ASSETS {
        let mut asset = store
            .create(&format!("bulk asset {i}"), now)
            .await
            .expect("create an asset");
        for n in 0..3 {
            asset
                .doc
                .append_message(
                    NewMessage::user(format!("bulk-{i}-{n} {}", "x".repeat(200))),
                    now,
                )
                .expect("append");
        }
        store.save(&mut asset).await.expect("save");
    }
    for i in 0..BIG_BLOBS {
        let mut bytes = png(64, 64);
        bytes.extend_from_slice(format!("blob {i}").as_bytes());
        bytes.resize(bytes.len() + 16 * 1024, i as u8);
        store
            .put_blob(bytes, "image/png", now)
            .await
            .expect("put a blob");
    }
    store.close().await;
}

/// Appends one message to every asset (so a re-export rewrites every file
/// with new bytes).
async fn touch_every_asset(dir: &Path, label: &str) {
    let store = Store::open(dir, StoreOptions::default())
        .await
        .expect("open the big store");
    for id in store.ids().await.expect("ids") {
        let mut asset = store.load(&id).await.expect("load");
        asset
            .doc
            .append_message(NewMessage::user(label), now_millis())
            .expect("append");
        store.save(&mut asset).await.expect("save");
    }
    store.close().await;
}

/// Every asset's heads as `verify` and the manifest write them: sorted hex.
async fn store_heads(dir: &Path) -> BTreeMap<DocId, Vec<String>> {
    let store = Store::open(dir, StoreOptions::default())
        .await
        .expect("open a store");
    let mut out = BTreeMap::new();
    for id in store.ids().await.expect("ids") {
        let mut asset = store.load(&id).await.expect("load");
        let mut heads: Vec<String> = asset.doc.heads().iter().map(|h| h.to_string()).collect();
        heads.sort();
        out.insert(id, heads);
    }
    store.close().await;
    out
}

fn manifest_heads(m: &Manifest) -> BTreeMap<DocId, Vec<String>> {
    m.docs
        .iter()
        .map(|d| (d.id.clone(), d.heads.clone()))
        .collect()
}

/// When to SIGKILL a backup process.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// Once this many documents are written (export: files; import: rows).
    Docs(usize),
    /// This long after the spawn.
    After(Duration),
}

/// What the kill found: whether the process had already finished, and how
/// far it got.
#[derive(Debug)]
struct Killed {
    finished: bool,
    progress: usize,
}

/// Spawns `cmd`, polls `progress` until `at` says to kill (or the process
/// exits), and SIGKILLs it.
fn run_and_kill(cmd: &mut Command, at: KillAt, mut progress: impl FnMut() -> usize) -> Killed {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn a backup process");
    let spawned = Instant::now();
    let deadline = spawned + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            assert!(
                status.success(),
                "the backup process failed on its own: {status}"
            );
            return Killed {
                finished: true,
                progress: progress(),
            };
        }
        let due = match at {
            KillAt::Docs(n) => progress() >= n,
            KillAt::After(d) => spawned.elapsed() >= d,
        };
        if due {
            let _ = child.kill();
            let status = child.wait().expect("reap the killed child");
            return Killed {
                finished: status.success(),
                progress: progress(),
            };
        }
        assert!(
            Instant::now() < deadline,
            "backup process ran over a minute"
        );
        thread::sleep(Duration::from_millis(2));
    }
}

/// How many `.automerge` files in `docs` were written at or after `since`.
fn written_docs(export: &Path, since: SystemTime) -> usize {
    let Ok(entries) = fs::read_dir(export.join("docs")) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".automerge"))
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
        })
        .count()
}

/// After a kill, `verify --export` passes (the export had finished or left
/// an older complete export intact) or refuses an incomplete export; it
/// never reports a complete-looking export with mismatching files.
fn check_killed_export(r: &Replica, out: &Path, trial: &str) -> &'static str {
    let (code, stdout, stderr) = verify_export(r, out);
    if code == 0 {
        return "verifies";
    }
    let first: Vec<&str> = stdout.lines().take(5).collect();
    assert!(
        stderr.contains("not a complete export") && !stdout.contains("MISMATCH"),
        "{trial}: after the kill, verify --export neither passes nor says the export is \
         incomplete (exit {code}); a manifest is present but does not match the files:\n\
         {}\n...\n{stderr}",
        first.join("\n")
    );
    "incomplete"
}

#[test]
fn backups_survive_sigkill_of_export_and_import() {
    let started = Instant::now();
    let seed = std::env::var("BACKUP_SEED")
        .ok()
        .map(|s| s.trim().parse().expect("BACKUP_SEED is a number"))
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("backup kill test: seed {seed} (rerun with BACKUP_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");

    let tmp = tempdir("atelier-backup-kill-");
    let big = offline_replica(tmp.path().join("big"));
    rt.block_on(fill_big_store(&big.data));
    let expected = rt.block_on(store_heads(&big.data));
    assert_eq!(expected.len(), BIG_ASSETS);

    // A clean export, timed, as the reference.
    let reference = tmp.path().join("reference");
    let t0 = Instant::now();
    big.sync(["--quiet", "export", reference.to_str().unwrap()]);
    let export_time = t0.elapsed();
    let m = backup::read_manifest(&reference).expect("reference manifest");
    assert_eq!(manifest_heads(&m), expected);
    assert_eq!(m.blobs.len(), BIG_BLOBS);
    eprintln!("full export of {BIG_ASSETS} assets: {export_time:.1?}");

    // Kill fresh exports at random moments, then rerun them.
    let mut mid_way = 0;
    for trial in 0..EXPORT_TRIALS {
        let out = tmp.path().join(format!("export-{trial}"));
        let at = if trial % 2 == 0 {
            KillAt::Docs(rng.random_range(1..BIG_ASSETS))
        } else {
            KillAt::After(export_time.mul_f64(rng.random_range(0.05..1.0)))
        };
        let since = SystemTime::UNIX_EPOCH;
        let killed = run_and_kill(big.sync_cmd(["--quiet", "export"]).arg(&out), at, || {
            written_docs(&out, since)
        });
        let name = format!("export trial {trial}");
        let verdict = check_killed_export(&big, &out, &name);
        if !killed.finished && killed.progress > 0 && killed.progress < BIG_ASSETS {
            mid_way += 1;
        }
        big.sync(["--quiet", "export", out.to_str().unwrap()]);
        let (code, stdout, stderr) = verify_export(&big, &out);
        assert_eq!(
            code, 0,
            "{name}: the rerun export verifies:\n{stdout}{stderr}"
        );
        let m = backup::read_manifest(&out).expect("manifest after the rerun");
        assert_eq!(manifest_heads(&m), expected, "{name}: heads");
        assert_eq!(m.blobs.len(), BIG_BLOBS, "{name}: blobs");
        eprintln!("{name}: kill at {at:?}: {killed:?}; then verify said {verdict}; rerun ok");
    }
    assert!(mid_way > 0, "no export was killed mid-way");

    // Re-export over an older export (the store changed since), killed
    // halfway: the old manifest must not vouch for the half-new files.
    for trial in 0..REEXPORT_TRIALS {
        let label = format!("touched-{trial}");
        rt.block_on(touch_every_asset(&big.data, &label));
        let expected = rt.block_on(store_heads(&big.data));
        let since = SystemTime::now();
        let k = rng.random_range(BIG_ASSETS / 10..BIG_ASSETS * 9 / 10);
        let killed = run_and_kill(
            big.sync_cmd(["--quiet", "export"]).arg(&reference),
            KillAt::Docs(k),
            || written_docs(&reference, since),
        );
        let name = format!("re-export trial {trial}");
        let verdict = check_killed_export(&big, &reference, &name);
        big.sync(["--quiet", "export", reference.to_str().unwrap()]);
        let (code, stdout, stderr) = verify_export(&big, &reference);
        assert_eq!(code, 0, "{name}: the rerun verifies:\n{stdout}{stderr}");
        let m = backup::read_manifest(&reference).expect("manifest");
        assert_eq!(manifest_heads(&m), expected, "{name}: heads");
        eprintln!("{name}: kill after {k} docs: {killed:?}; verify said {verdict}; rerun ok");
    }
    let expected = rt.block_on(store_heads(&big.data));
    let m = backup::read_manifest(&reference).expect("manifest");

    // A clean import, timed.
    let t0 = Instant::now();
    let clean = offline_replica(tmp.path().join("import-clean"));
    clean.sync(["--quiet", "import", reference.to_str().unwrap()]);
    let import_time = t0.elapsed();
    assert_eq!(rt.block_on(store_heads(&clean.data)), expected);
    eprintln!("full import of {BIG_ASSETS} assets: {import_time:.1?}");

    // Kill imports into fresh replicas at random moments, then rerun them.
    let mut mid_way = 0;
    for trial in 0..IMPORT_TRIALS {
        let r = offline_replica(tmp.path().join(format!("import-{trial}")));
        let at = if trial % 2 == 0 {
            KillAt::Docs(rng.random_range(1..BIG_ASSETS))
        } else {
            KillAt::After(import_time.mul_f64(rng.random_range(0.05..1.0)))
        };
        let db = r.data.join("atelier.db");
        let killed = run_and_kill(
            r.sync_cmd(["--quiet", "import"]).arg(&reference),
            at,
            || rt.block_on(count_documents(&db)),
        );
        if !killed.finished && killed.progress > 0 && killed.progress < BIG_ASSETS {
            mid_way += 1;
        }
        let name = format!("import trial {trial}");
        r.sync(["--quiet", "import", reference.to_str().unwrap()]);
        let verify = output_within(
            &mut r.sync_cmd(["--quiet", "verify"]),
            Duration::from_secs(60),
        );
        assert!(
            verify.status.success(),
            "{name}: the store does not verify after the rerun:\n{}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
        assert_eq!(r.document_count(), BIG_ASSETS as u64, "{name}: asset count");
        assert_eq!(
            rt.block_on(store_heads(&r.data)),
            manifest_heads(&m),
            "{name}: heads"
        );
        eprintln!("{name}: kill at {at:?}: {killed:?}; rerun ok");
    }
    assert!(mid_way > 0, "no import was killed mid-way");
    eprintln!("backup kill test: done in {:.1?}", started.elapsed());
}

/// Rows in a store's `documents` table, read beside a running writer; 0
/// while the database or its schema does not exist yet.
async fn count_documents(db: &Path) -> usize {
    use sqlx::ConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;
    if !db.exists() {
        return 0;
    }
    let Ok(mut conn) = SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .connect()
        .await
    else {
        return 0;
    };
    let n: Result<i64, _> = sqlx::query_scalar("SELECT COUNT(*) FROM documents")
        .fetch_one(&mut conn)
        .await;
    let _ = sqlx::Connection::close(conn).await;
    n.map_or(0, |n| n as usize)
}
