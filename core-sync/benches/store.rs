//! Local store benchmark: prints a table; run with
//! `cargo bench -p core-sync --bench store` (add `-- --quick` for a smoke run).
//!
//! Every number is measured next to its peer in the same run:
//! - a durable append (model change + SQLite commit) against the bare
//!   Automerge change of the same message, on timelines of 10, 1,000 and
//!   10,000 messages, at both durability levels (`Durability::Full`, the
//!   default: an fsync per commit; `Durability::Normal`);
//! - opening the store and listing 1,000 assets;
//! - loading a 10,000-message asset against a bare `AutoCommit::load` of the
//!   same bytes;
//! - bytes on disk per asset after compaction against `save()`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use automerge::hydrate::Value as H;
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc};
use core_sync::model::{AssetDoc, NewMessage};
use core_sync::store::{CompactionPolicy, Durability, Store, StoreOptions};

struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        max: *samples.last().unwrap(),
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The same message the model writes, as a raw Automerge value.
fn raw_message(i: usize, now: i64) -> H {
    let id = format!("{:032x}", i);
    HashMap::from([
        ("id", H::scalar(id.as_str())),
        ("kind", H::scalar("user")),
        ("text", H::scalar(format!("message number {i}"))),
        ("inputVersionIds", H::list()),
        ("outputVersionIds", H::list()),
        ("createdAt", H::scalar(now)),
        ("updatedAt", H::scalar(now)),
    ])
    .into()
}

fn bare_append(doc: &mut AutoCommit, list: &automerge::ObjId, i: usize) {
    let len = doc.length(list);
    doc.batch_create_object(list, len, &raw_message(i, i as i64), true)
        .unwrap();
    doc.put(ROOT, "updatedAt", i as i64).unwrap();
    doc.commit();
}

fn timeline(n: usize) -> AssetDoc {
    let mut doc = AssetDoc::create("bench", 0);
    for i in 0..n {
        doc.append_message(NewMessage::user(format!("message number {i}")), i as i64)
            .unwrap();
    }
    doc
}

async fn append_row(
    n: usize,
    samples: usize,
    dir: &std::path::Path,
    durability: Durability,
) -> (Stats, Stats) {
    // Bare Automerge on a document of the same content.
    let mut seed = timeline(n);
    let mut bare = AutoCommit::load(&seed.save()).unwrap();
    let (_, list) = bare.get(ROOT, "messages").unwrap().unwrap();
    assert_eq!(bare.object_type(&list).unwrap(), ObjType::List);
    let mut bare_t = Vec::with_capacity(samples);
    for i in 0..samples {
        let t = Instant::now();
        bare_append(&mut bare, &list, n + i);
        bare_t.push(t.elapsed());
    }

    // Durable append through the model and the store.
    let store = Store::open(
        dir.join(format!("append-{n}-{durability:?}")),
        StoreOptions {
            durability,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut asset = store
        .insert(core_sync::DocId::random(), seed)
        .await
        .unwrap();
    let mut ours = Vec::with_capacity(samples);
    for i in 0..samples {
        let t = Instant::now();
        asset
            .doc
            .append_message(
                NewMessage::user(format!("message number {}", n + i)),
                (n + i) as i64,
            )
            .unwrap();
        store.save(&mut asset).await.unwrap();
        ours.push(t.elapsed());
    }
    // Where the time goes (diagnostic, printed when ATELIER_BENCH_BREAKDOWN is set).
    if std::env::var_os("ATELIER_BENCH_BREAKDOWN").is_some() {
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..samples {
            let t = Instant::now();
            asset
                .doc
                .append_message(
                    NewMessage::user(format!("message number {}", n + i)),
                    (n + i) as i64,
                )
                .unwrap();
            a.push(t.elapsed());
            let t = Instant::now();
            let (bytes, _) = asset.doc.unsaved_changes();
            b.push(t.elapsed());
            assert!(!bytes.is_empty());
            let t = Instant::now();
            store.save(&mut asset).await.unwrap();
            c.push(t.elapsed());
        }
        let (a, b, c) = (stats(a), stats(b), stats(c));
        println!(
            "breakdown n={n}: model append p50 {}, unsaved_changes p50 {}, save p50 {}",
            us(a.p50),
            us(b.p50),
            us(c.p50)
        );
    }
    store.close().await;
    (stats(bare_t), stats(ours))
}

/// What sqlx + SQLite alone cost for the same durable write: one INSERT of
/// a chunk-sized row on a dedicated connection, as the store does.
async fn sqlite_floor(dir: &std::path::Path, samples: usize, sync: &str) -> Stats {
    use sqlx::Connection;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    let opts = SqliteConnectOptions::new()
        .filename(dir.join(format!("floor-{sync}.db")))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(sync.parse::<SqliteSynchronous>().unwrap());
    let mut conn = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
    sqlx::query("CREATE TABLE c (id INTEGER PRIMARY KEY, doc TEXT, bytes BLOB)")
        .execute(&mut conn)
        .await
        .unwrap();
    let chunk = vec![7u8; 220];
    let mut t_all = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        sqlx::query("INSERT INTO c (doc, bytes) VALUES (?, ?)")
            .bind("x")
            .bind(&chunk)
            .execute(&mut conn)
            .await
            .unwrap();
        t_all.push(t.elapsed());
    }
    stats(t_all)
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("atelier.db"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let samples = if quick { 200 } else { 2_000 };
    let sizes: &[usize] = if quick {
        &[10, 1_000]
    } else {
        &[10, 1_000, 10_000]
    };

    println!("## Durable append (model change + SQLite commit) vs bare Automerge change");
    println!();
    println!(
        "| timeline | durability | bare p50 | bare p99 | durable p50 | durable p99 | durable max | ratio p50 | ratio p99 |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for (&n, durability) in sizes
        .iter()
        .flat_map(|n| [(n, Durability::Full), (n, Durability::Normal)])
    {
        let (bare, ours) = append_row(n, samples, dir, durability).await;
        let level = match durability {
            Durability::Full => "FULL (default)",
            Durability::Normal => "NORMAL",
        };
        println!(
            "| {n} | {level} | {} | {} | {} | {} | {} | {:.2}x | {:.2}x |",
            us(bare.p50),
            us(bare.p99),
            us(ours.p50),
            us(ours.p99),
            ms(ours.max),
            ours.p50.as_secs_f64() / bare.p50.as_secs_f64(),
            ours.p99.as_secs_f64() / bare.p99.as_secs_f64(),
        );
    }

    println!();
    for sync in ["full", "normal"] {
        let floor = sqlite_floor(dir, samples, sync).await;
        println!(
            "Floor: one sqlx INSERT of a 220-byte row (WAL, synchronous={}): p50 {}, p99 {}.",
            sync.to_uppercase(),
            us(floor.p50),
            us(floor.p99)
        );
    }

    // ---------------------------------------------------------------- listing
    let assets = 1_000;
    let list_dir = dir.join("list");
    let mut save_sizes = 0u64;
    {
        let store = Store::open(&list_dir, StoreOptions::default())
            .await
            .unwrap();
        for a in 0..assets {
            let mut asset = store.create(&format!("asset {a}"), a as i64).await.unwrap();
            for m in 0..20 {
                asset
                    .doc
                    .append_message(NewMessage::user(format!("note {m}")), (a * 100 + m) as i64)
                    .unwrap();
                store.save(&mut asset).await.unwrap();
            }
            store.compact(&mut asset).await.unwrap();
            save_sizes += asset.doc.save().len() as u64;
        }
        store.close().await;
    }
    let mut open_list = Vec::new();
    for _ in 0..if quick { 3 } else { 10 } {
        let t = Instant::now();
        let store = Store::open(&list_dir, StoreOptions::default())
            .await
            .unwrap();
        let listed = store.list().await.unwrap();
        open_list.push(t.elapsed());
        assert_eq!(listed.len(), assets);
        store.close().await;
    }
    let open_list = stats(open_list);
    let disk = dir_bytes(&list_dir);

    // ------------------------------------------------------------- big load
    let big = if quick { 2_000 } else { 10_000 };
    let load_dir = dir.join("load");
    let (bytes, id, stored) = {
        let store = Store::open(
            &load_dir,
            StoreOptions {
                compaction: CompactionPolicy::NEVER,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let mut doc = timeline(big);
        let bytes = doc.save();
        let mut asset = store.insert(core_sync::DocId::random(), doc).await.unwrap();
        store.compact(&mut asset).await.unwrap();
        let stored = store.stored_size(&asset.id).await.unwrap();
        store.close().await;
        (bytes, asset.id, stored)
    };
    let store = Store::open(&load_dir, StoreOptions::default())
        .await
        .unwrap();
    let (mut bare_load, mut our_load) = (Vec::new(), Vec::new());
    for _ in 0..if quick { 3 } else { 10 } {
        let t = Instant::now();
        let d = AutoCommit::load(&bytes).unwrap();
        bare_load.push(t.elapsed());
        drop(d);
        let t = Instant::now();
        let a = store.load(&id).await.unwrap();
        our_load.push(t.elapsed());
        drop(a);
    }
    let (bare_load, our_load) = (stats(bare_load), stats(our_load));

    println!();
    println!("## Open, list, load, bytes on disk");
    println!();
    println!("| measure | ours | peer | ratio | goal |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| open store + list {assets} assets (p50 / max) | {} / {} | — | — | < 50 ms |",
        ms(open_list.p50),
        ms(open_list.max)
    );
    println!(
        "| load one asset of {big} messages (p50) | {} | {} (bare load) | {:.2}x | ≤ 1.3x |",
        ms(our_load.p50),
        ms(bare_load.p50),
        our_load.p50.as_secs_f64() / bare_load.p50.as_secs_f64()
    );
    println!(
        "| chunk bytes of that asset after compaction | {} B | {} B (save) | {:.2}x | ≤ 1.2x |",
        stored.bytes,
        bytes.len(),
        stored.bytes as f64 / bytes.len() as f64
    );
    println!(
        "| database file per asset ({assets} assets x 20 messages, compacted) | {} B | {} B (save) | {:.2}x | ≤ 1.2x |",
        disk / assets as u64,
        save_sizes / assets as u64,
        disk as f64 / save_sizes as f64
    );
}
