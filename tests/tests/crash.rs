//! Crash safety of the local store under SIGKILL.
//!
//! Each trial runs the `crash-child` binary against one store directory
//! shared by all trials (so the store grows and is reopened after every
//! crash), lets it write for a random 5..150 ms after it reports `ready`,
//! and kills it with SIGKILL. Then the test reopens the store and checks:
//!
//! - the store opens, lists, and every asset loads (nothing `Corrupt`), and
//!   SQLite's `integrity_check` passes;
//! - every write the child acknowledged, in this trial or an earlier one, is
//!   present exactly once, and nothing that was once seen after a reopen has
//!   disappeared;
//! - at most one unacknowledged write of the trial is present, and only the
//!   one that was in flight when the kill landed;
//! - the listing projection (title, message count) matches the loaded
//!   document, and each document has exactly one snapshot chunk.
//!
//! Every third trial runs the child in `compact-loop` mode (append one
//! message, compact, repeat) so that kills land inside compaction; the other
//! trials append round-robin with occasional explicit and automatic
//! compactions. The test asserts that some kills did land inside an explicit
//! compaction.
//!
//! The kill delays come from a seeded RNG. The seed is printed; rerun a
//! failure with `CRASH_SEED=<seed>`. `CRASH_TRIALS` overrides the number of
//! trials. On failure the store directory is kept and its path printed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use atelier_tests::crash::{ASSETS, Event, parse_text};
use core_sync::store::StoreError;
use core_sync::{DocId, Store, StoreOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use tempfile::TempDir;

const DEFAULT_TRIALS: u32 = 60;
/// Every this many trials, the child runs in `compact-loop` mode.
const COMPACT_LOOP_EVERY: u32 = 3;
/// How long the child may take to open the store and load its assets.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Trials that must kill the child inside an explicit compaction. With a
/// third of the trials in `compact-loop` mode, where compaction is most of
/// the work, far more than this do.
const MIN_KILLS_IN_COMPACTION: usize = 5;

#[test]
fn acknowledged_writes_survive_sigkill() {
    let started = Instant::now();
    let seed = env_number("CRASH_SEED").unwrap_or_else(rand::random);
    let trials = env_number("CRASH_TRIALS").map_or(DEFAULT_TRIALS, |n| n as u32);
    eprintln!("crash test: {trials} trials, seed {seed} (rerun with CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = KeepOnPanic(Some(
        tempfile::Builder::new()
            .prefix("atelier-crash-")
            .tempdir()
            .expect("create a temporary store directory"),
    ));
    let store_dir = dir.path();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a tokio runtime");

    let mut known = Known::default();
    let mut tally = Tally::default();
    for trial in 0..trials {
        let mode = if trial % COMPACT_LOOP_EVERY == COMPACT_LOOP_EVERY - 1 {
            Mode::CompactLoop
        } else {
            Mode::Append
        };
        let delay = Duration::from_millis(rng.random_range(5..=150));
        let run = run_child(store_dir, trial, mode, delay);
        let moment = run.kill_moment();
        let checked = runtime.block_on(verify(store_dir, trial, &run, &mut known));
        eprintln!(
            "trial {trial:>2} [{mode}] kill after {:>3} ms: {:>3} acks, {} in flight, {} messages stored, {moment}",
            delay.as_millis(),
            run.acks(),
            checked.in_flight,
            checked.messages,
        );
        tally.add(&run, moment);
    }

    eprintln!(
        "crash test: {} trials in {:.1?}; {tally}",
        trials,
        started.elapsed()
    );
    assert!(
        tally
            .moments
            .get(&KillMoment::InCompaction)
            .copied()
            .unwrap_or(0)
            >= MIN_KILLS_IN_COMPACTION.min(trials as usize / COMPACT_LOOP_EVERY as usize / 2),
        "too few kills landed inside a compaction: {tally}"
    );
}

// ------------------------------------------------------------- the child

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Append,
    CompactLoop,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Append => "append",
            Mode::CompactLoop => "compact-loop",
        })
    }
}

/// What one child process reported before it died.
struct ChildRun {
    events: Vec<Event>,
    /// Whether SIGKILL ended it (rather than it finishing on its own).
    killed: bool,
}

impl ChildRun {
    fn acks(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::Ack { .. } | Event::AckTitle { .. }))
            .count()
    }

    /// Where the child was when the kill landed, judged by its last line.
    fn kill_moment(&self) -> KillMoment {
        if !self.killed {
            return KillMoment::NotKilled;
        }
        match self.events.last() {
            Some(Event::Compacting(_)) => KillMoment::InCompaction,
            Some(Event::Compacted(_) | Event::AutoCompacted(_)) => KillMoment::AfterCompaction,
            Some(Event::Ack { .. } | Event::AckTitle { .. }) => KillMoment::InWrite,
            Some(Event::Ready | Event::Created(_)) | None => KillMoment::InStartup,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum KillMoment {
    /// Before the first write was acknowledged.
    InStartup,
    /// During a write (or between two): the last line was an ack.
    InWrite,
    /// Between `compacting` and `compacted`.
    InCompaction,
    /// Just after a compaction finished, explicit or inside `save`.
    AfterCompaction,
    /// The child finished before the kill.
    NotKilled,
}

impl fmt::Display for KillMoment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KillMoment::InStartup => "killed in startup",
            KillMoment::InWrite => "killed in a write",
            KillMoment::InCompaction => "killed in compaction",
            KillMoment::AfterCompaction => "killed right after compaction",
            KillMoment::NotKilled => "not killed",
        })
    }
}

/// Runs the child until `delay` after it reports `ready`, then SIGKILLs it
/// and collects every line it managed to print.
fn run_child(store_dir: &Path, trial: u32, mode: Mode, delay: Duration) -> ChildRun {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash-child"))
        .arg("--dir")
        .arg(store_dir)
        .args(["--trial", &trial.to_string(), "--mode", &mode.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn crash-child");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("child stdout is piped");
    let reader = thread::spawn(move || read_events(stdout, tx));
    let mut stderr = child.stderr.take().expect("child stderr is piped");
    let stderr_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut events = Vec::new();
    let ready = wait_for_ready(&rx, &mut events);
    if ready.is_ok() {
        thread::sleep(delay);
    }
    let status = kill(&mut child);
    reader.join().expect("stdout reader panicked");
    events.extend(rx.try_iter());
    let stderr = stderr_reader.join().expect("stderr reader panicked");

    let killed = status.signal() == Some(libc::SIGKILL);
    if let Err(why) = ready {
        panic!("trial {trial}: crash-child never got ready: {why} ({status}); stderr:\n{stderr}");
    }
    assert!(
        killed || status.success(),
        "trial {trial}: crash-child failed on its own ({status}); stderr:\n{stderr}"
    );
    ChildRun { events, killed }
}

/// Reads event lines until the pipe closes. A final line without its
/// newline (cut short by the kill) is dropped: it was never acknowledged.
fn read_events(stdout: ChildStdout, tx: Sender<Event>) {
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        match stdout.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Some(complete) = line.strip_suffix('\n') else {
            return;
        };
        let event = complete
            .parse::<Event>()
            .unwrap_or_else(|e| panic!("crash-child printed garbage: {e}"));
        if tx.send(event).is_err() {
            return;
        }
    }
}

/// Collects events up to and including `ready`.
fn wait_for_ready(rx: &Receiver<Event>, events: &mut Vec<Event>) -> Result<(), &'static str> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(event) => {
                let ready = event == Event::Ready;
                events.push(event);
                if ready {
                    return Ok(());
                }
            }
            Err(RecvTimeoutError::Timeout) => return Err("timed out"),
            Err(RecvTimeoutError::Disconnected) => return Err("its stdout closed"),
        }
    }
}

/// SIGKILLs the child (`Child::kill` sends SIGKILL on Unix) and reaps it.
fn kill(child: &mut Child) -> ExitStatus {
    // An error here means the child already exited; `wait` reports how.
    let _ = child.kill();
    child.wait().expect("wait for crash-child")
}

// ------------------------------------------------------------ the checks

/// What the test knows must be in the store: everything acknowledged, and
/// everything seen after an earlier reopen (it was durable then).
#[derive(Default)]
struct Known {
    docs: BTreeMap<DocId, KnownDoc>,
}

#[derive(Default)]
struct KnownDoc {
    texts: BTreeSet<String>,
    title: Option<String>,
}

/// What one trial acknowledged.
#[derive(Default)]
struct Acked {
    created: BTreeSet<DocId>,
    texts: HashMap<DocId, BTreeSet<String>>,
    last_title: HashMap<DocId, String>,
    /// The index of the trial's last acknowledged write.
    last_write: Option<u64>,
}

impl Acked {
    fn from_events(trial: u32, events: &[Event]) -> Self {
        let mut acked = Acked::default();
        let mut note_write = |text: &str| {
            let (t, n) = parse_text(text).unwrap_or_else(|| panic!("unexpected text {text:?}"));
            assert_eq!(t, trial, "the child wrote {text:?} in trial {trial}");
            assert!(
                acked.last_write.is_none_or(|last| n > last),
                "acks out of order at {text:?}"
            );
            acked.last_write = Some(n);
        };
        for event in events {
            match event {
                Event::Ack { doc, text } => {
                    note_write(text);
                    acked
                        .texts
                        .entry(doc.clone())
                        .or_default()
                        .insert(text.clone());
                }
                Event::AckTitle { doc, title } => {
                    note_write(title);
                    acked.last_title.insert(doc.clone(), title.clone());
                }
                Event::Created(doc) => {
                    acked.created.insert(doc.clone());
                }
                _ => {}
            }
        }
        acked
    }

    /// The index the in-flight write had when the kill landed.
    fn next_write(&self) -> u64 {
        self.last_write.map_or(0, |n| n + 1)
    }
}

/// What [`verify`] found.
struct Checked {
    /// Unacknowledged writes of the trial that made it to disk (0 or 1).
    in_flight: usize,
    /// Messages over all assets.
    messages: usize,
}

/// Reopens the store after a trial and checks everything the module doc
/// promises, then records what it found in `known`.
async fn verify(store_dir: &Path, trial: u32, run: &ChildRun, known: &mut Known) -> Checked {
    let acked = Acked::from_events(trial, &run.events);
    let ctx = |what: &str| format!("trial {trial}: {what}");

    let store = Store::open(store_dir, StoreOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", ctx("the store does not open after the kill")));
    let listing = store
        .list()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", ctx("the store does not list")));
    let listed: BTreeSet<&DocId> = listing.iter().map(|l| &l.id).collect();
    for id in known.docs.keys().chain(&acked.created) {
        assert!(
            listed.contains(id),
            "{}",
            ctx(&format!("asset {id} is gone"))
        );
    }
    assert!(
        listing.len() <= ASSETS,
        "{}",
        ctx(&format!(
            "{} assets, expected at most {ASSETS}",
            listing.len()
        ))
    );

    let next_write = acked.next_write();
    let mut in_flight = Vec::new();
    let mut messages = 0;
    for entry in &listing {
        let id = &entry.id;
        let mut asset = match store.load(id).await {
            Ok(asset) => asset,
            Err(e @ StoreError::Corrupt { .. }) => panic!("{}: {e}", ctx("corrupt asset")),
            Err(e) => panic!("{}: {e}", ctx(&format!("asset {id} does not load"))),
        };
        let doc_messages = asset
            .doc
            .messages()
            .unwrap_or_else(|e| panic!("{}: {e}", ctx(&format!("asset {id} has no timeline"))));
        let summary = asset
            .summary()
            .unwrap_or_else(|e| panic!("{}: {e}", ctx(&format!("asset {id} has no summary"))));
        messages += doc_messages.len();

        // The projection is written with the chunk, in one transaction.
        assert_eq!(
            entry.message_count,
            doc_messages.len() as u64,
            "{}",
            ctx(&format!("listed message count of {id} is stale"))
        );
        assert_eq!(
            entry.title,
            summary.title,
            "{}",
            ctx(&format!("listed title of {id} is stale"))
        );

        // Every message exactly once.
        let mut present = BTreeSet::new();
        for m in &doc_messages {
            let text = m.text.clone().unwrap_or_default();
            assert!(
                present.insert(text.clone()),
                "{}",
                ctx(&format!("{text:?} is stored twice in {id}"))
            );
        }

        // Nothing acknowledged or seen before is lost.
        let old = known.docs.get(id);
        let must_have = old
            .into_iter()
            .flat_map(|d| &d.texts)
            .chain(acked.texts.get(id).into_iter().flatten());
        for text in must_have {
            assert!(
                present.contains(text),
                "{}",
                ctx(&format!("acknowledged {text:?} is missing from {id}"))
            );
        }

        // Anything else is the write in flight at the kill.
        for text in &present {
            let is_old = old.is_some_and(|d| d.texts.contains(text));
            let is_acked = acked.texts.get(id).is_some_and(|t| t.contains(text));
            if !is_old && !is_acked {
                assert_eq!(
                    parse_text(text),
                    Some((trial, next_write)),
                    "{}",
                    ctx(&format!(
                        "{text:?} in {id} was never written or acknowledged"
                    ))
                );
                in_flight.push(text.clone());
            }
        }

        // The title is the last acknowledged one, or the one in flight.
        let expected_title = acked
            .last_title
            .get(id)
            .or(old.and_then(|d| d.title.as_ref()));
        if Some(&summary.title) != expected_title {
            let is_initial = expected_title.is_none() && summary.title.starts_with("asset-");
            if !is_initial {
                assert_eq!(
                    parse_text(&summary.title),
                    Some((trial, next_write)),
                    "{}",
                    ctx(&format!(
                        "title of {id} is {:?}, expected {expected_title:?}",
                        summary.title
                    ))
                );
                in_flight.push(summary.title.clone());
            }
        }

        known.docs.insert(
            id.clone(),
            KnownDoc {
                texts: present,
                title: Some(summary.title),
            },
        );
    }
    assert!(
        in_flight.len() <= 1,
        "{}",
        ctx(&format!(
            "several unacknowledged writes stored: {in_flight:?}"
        ))
    );
    store.close().await;

    check_database(&store_dir.join("atelier.db"), trial).await;
    Checked {
        in_flight: in_flight.len(),
        messages,
    }
}

/// Checks the SQLite file below the store API: the file is sound, and
/// compaction left exactly one snapshot per document and no orphan chunks.
async fn check_database(path: &Path, trial: u32) {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(path))
        .await
        .expect("open the database directly");
    let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&pool)
        .await
        .expect("run integrity_check");
    assert_eq!(integrity, ["ok"], "trial {trial}: integrity_check failed");
    let snapshots: Vec<(String, i64)> = sqlx::query_as(
        "SELECT d.doc_id, (SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.doc_id AND c.kind = 0)
         FROM documents d",
    )
    .fetch_all(&pool)
    .await
    .expect("count snapshots");
    for (doc, n) in snapshots {
        assert_eq!(n, 1, "trial {trial}: {doc} has {n} snapshot chunks");
    }
    let orphans: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM chunks WHERE doc_id NOT IN (SELECT doc_id FROM documents)",
    )
    .fetch_one(&pool)
    .await
    .expect("count orphan chunks");
    assert_eq!(orphans, 0, "trial {trial}: chunks without a document");
    pool.close().await;
}

// ----------------------------------------------------------------- misc

/// How the trials went.
#[derive(Default)]
struct Tally {
    moments: BTreeMap<KillMoment, usize>,
    acks: usize,
    explicit_compactions: usize,
    auto_compactions: usize,
}

impl Tally {
    fn add(&mut self, run: &ChildRun, moment: KillMoment) {
        *self.moments.entry(moment).or_default() += 1;
        self.acks += run.acks();
        for event in &run.events {
            match event {
                Event::Compacted(_) => self.explicit_compactions += 1,
                Event::AutoCompacted(_) => self.auto_compactions += 1,
                _ => {}
            }
        }
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} acks, {} explicit and {} automatic compactions completed;",
            self.acks, self.explicit_compactions, self.auto_compactions
        )?;
        for (moment, n) in &self.moments {
            write!(f, " {n} {moment},")?;
        }
        Ok(())
    }
}

/// A temporary directory that is kept, and its path printed, if the test
/// fails, so the store can be inspected.
struct KeepOnPanic(Option<TempDir>);

impl KeepOnPanic {
    fn path(&self) -> &Path {
        self.0
            .as_ref()
            .expect("directory present until drop")
            .path()
    }
}

impl Drop for KeepOnPanic {
    fn drop(&mut self) {
        if thread::panicking()
            && let Some(dir) = self.0.take()
        {
            let kept: PathBuf = dir.keep();
            eprintln!("crash test: store kept at {}", kept.display());
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}
