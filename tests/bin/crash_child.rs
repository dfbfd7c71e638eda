//! `crash-child`: the process the crash-safety test kills.
//!
//! It opens the store in `--dir` with an aggressive compaction policy, makes
//! sure [`ASSETS`] assets exist (creating the missing ones, loading the
//! rest, so successive trials grow the same store), prints `ready`, and then
//! writes until it is killed. Every write that `Store::save` acknowledged is
//! reported on stdout as one line of the [`Event`] protocol; the test checks
//! that each of them survived the kill.
//!
//! Modes:
//! - `append`: round-robin over the assets, appending user messages, setting
//!   a title every 7th write, and compacting explicitly every
//!   `--compact-every` writes (automatic compaction in `save` happens too).
//! - `compact-loop`: on one asset, append one message and compact, over and
//!   over, so that a kill almost surely lands inside a compaction.

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use atelier_tests::crash::{AGGRESSIVE_COMPACTION, ASSETS, Event, message_text, title_text};
use clap::{Parser, ValueEnum};
use core_sync::model::NewMessage;
use core_sync::store::Durability;
use core_sync::{LocalAsset, Store, StoreOptions, now_millis};

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

/// Appends to a local store until killed, printing one line per acknowledged
/// write.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The store directory (created if missing).
    #[arg(long)]
    dir: PathBuf,

    /// Trial number, embedded in every text written.
    #[arg(long, default_value_t = 0)]
    trial: u32,

    /// What to write.
    #[arg(long, value_enum, default_value_t = Mode::Append)]
    mode: Mode,

    /// In `append` mode, compact explicitly after every this many writes.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    compact_every: u64,

    /// Stop after this many writes (a safety net: the test kills sooner).
    #[arg(long, default_value_t = 100_000)]
    max_writes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Messages and titles round-robin over the assets, with compactions.
    Append,
    /// One message then one compaction, in a tight loop, on one asset.
    CompactLoop,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crash-child: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<()> {
    let options = StoreOptions {
        durability: Durability::Normal,
        compaction: AGGRESSIVE_COMPACTION,
    };
    let store = Store::open(&args.dir, options).await?;
    let mut assets = open_assets(&store).await?;
    emit(&Event::Ready)?;
    match args.mode {
        Mode::Append => append(&store, &mut assets, args).await,
        Mode::CompactLoop => {
            let which = args.trial as usize % assets.len();
            compact_loop(&store, &mut assets[which], args).await
        }
    }
}

/// Loads every stored asset and creates the missing ones, up to [`ASSETS`].
async fn open_assets(store: &Store) -> Result<Vec<LocalAsset>> {
    let mut assets = Vec::with_capacity(ASSETS);
    for id in store.ids().await? {
        assets.push(store.load(&id).await?);
    }
    while assets.len() < ASSETS {
        let asset = store
            .create(&format!("asset-{}", assets.len()), now_millis())
            .await?;
        emit(&Event::Created(asset.id.clone()))?;
        assets.push(asset);
    }
    Ok(assets)
}

async fn append(store: &Store, assets: &mut [LocalAsset], args: &Args) -> Result<()> {
    for n in 0..args.max_writes {
        let len = assets.len();
        let asset = &mut assets[n as usize % len];
        let event = if n % 7 == 6 {
            let title = title_text(args.trial, n);
            asset.doc.set_title(&title, now_millis())?;
            store.save(asset).await?;
            Event::AckTitle {
                doc: asset.id.clone(),
                title,
            }
        } else {
            append_one(store, asset, args.trial, n).await?
        };
        emit(&event)?;
        if asset.chunk_count() == 1 {
            emit(&Event::AutoCompacted(asset.id.clone()))?;
        }
        if n % args.compact_every == args.compact_every - 1 {
            compact(store, asset).await?;
        }
    }
    Ok(())
}

async fn compact_loop(store: &Store, asset: &mut LocalAsset, args: &Args) -> Result<()> {
    for n in 0..args.max_writes {
        let event = append_one(store, asset, args.trial, n).await?;
        emit(&event)?;
        compact(store, asset).await?;
    }
    Ok(())
}

/// Appends message `n` of this trial and saves it; returns its ack.
async fn append_one(store: &Store, asset: &mut LocalAsset, trial: u32, n: u64) -> Result<Event> {
    let text = message_text(trial, n);
    asset
        .doc
        .append_message(NewMessage::user(text.as_str()), now_millis())?;
    store.save(asset).await?;
    Ok(Event::Ack {
        doc: asset.id.clone(),
        text,
    })
}

/// An explicit compaction, bracketed by `compacting` / `compacted` lines.
async fn compact(store: &Store, asset: &mut LocalAsset) -> Result<()> {
    emit(&Event::Compacting(asset.id.clone()))?;
    store.compact(asset).await?;
    emit(&Event::Compacted(asset.id.clone()))
}

/// Prints one event line with a single `write` and flushes it, so the line is
/// in the pipe before the next write to the store starts.
fn emit(event: &Event) -> Result<()> {
    let line = format!("{event}\n");
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.flush()?;
    Ok(())
}
