//! `atelier-sync`: the headless sync daemon. Keeps a complete local replica
//! of a user's documents and blobs in sync with a server, and exports,
//! imports and verifies backups. A thin shell over `core_sync::sync` and
//! `core_sync::backup`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use core_sync::backup::{self, Verification};
use core_sync::store::{Store, StoreOptions};
use core_sync::sync::client::SyncClient;
use core_sync::sync::engine::EngineConfig;

#[derive(Parser)]
#[command(
    version,
    about = "Atelier's sync daemon: a verifiable replica of your documents and blobs."
)]
struct Cli {
    /// Sync server base URL, e.g. http://127.0.0.1:8787.
    #[arg(long, env = "ATELIER_SERVER", global = true)]
    server: Option<String>,
    /// File holding the bearer token (refreshed tokens are re-read each run).
    #[arg(long, env = "ATELIER_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// Replica directory (a local store).
    #[arg(long, env = "ATELIER_DATA")]
    data: PathBuf,
    /// No progress lines on stderr.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sync continuously until interrupted (Ctrl-C).
    Run,
    /// Sync until nothing is left to push or pull, then exit.
    Once,
    /// Print the replica's sync status.
    Status,
    /// Write every document (.automerge), every blob and a manifest to OUT.
    Export { out: PathBuf },
    /// Restore an export into the replica (push it with `once` afterwards).
    Import { input: PathBuf },
    /// Re-read the replica (or, with --export, an export directory) and check
    /// every hash and head; exits non-zero on any mismatch. Also lists, as
    /// UNREADABLE lines, parts of documents that do not follow the schema.
    Verify {
        #[arg(long)]
        export: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

async fn client(cli: &Cli, store: Store) -> Result<SyncClient> {
    let server = cli
        .server
        .as_deref()
        .ok_or("--server (or ATELIER_SERVER) is required")?;
    let file = cli
        .token_file
        .as_ref()
        .ok_or("--token-file (or ATELIER_TOKEN_FILE) is required")?;
    let token = std::fs::read_to_string(file)
        .map_err(|e| format!("{}: {e}", file.display()))?
        .trim()
        .to_owned();
    Ok(SyncClient::new(store, server, token, EngineConfig::default()).await?)
}

/// Prints what `verify` found. Damage fails (exit 2); parts of documents
/// that do not follow the schema are listed but kept, so they do not.
fn report(found: &Verification) -> ExitCode {
    for m in &found.unreadable {
        println!("UNREADABLE {}: {}", m.what, m.problem);
    }
    let unreadable = match found.unreadable.len() {
        0 => String::new(),
        n => format!("; {n} unreadable part(s) of documents, kept as they are"),
    };
    if found.mismatches.is_empty() {
        eprintln!("verify: everything matches{unreadable}");
        return ExitCode::SUCCESS;
    }
    for m in &found.mismatches {
        println!("MISMATCH {}: {}", m.what, m.problem);
    }
    eprintln!(
        "verify: {} mismatch(es){unreadable}",
        found.mismatches.len()
    );
    ExitCode::from(2)
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let store = Store::open(&cli.data, StoreOptions::default()).await?;
    match &cli.command {
        Command::Run => {
            let mut c = client(&cli, store.clone()).await?;
            c.run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await;
        }
        Command::Once => {
            let mut c = client(&cli, store.clone()).await?;
            let r = c.sync_until_idle().await?;
            eprintln!(
                "synced: {} request(s), {} document(s) pushed, {} pulled, {} bytes sent",
                r.requests, r.pushed_docs, r.pulled_docs, r.bytes_sent
            );
        }
        Command::Status => {
            let pending = store.pending_sync().await?;
            let docs = store.ids().await?.len();
            let cursor = store.meta("feed_cursor").await?.unwrap_or(0);
            println!("documents: {docs}");
            println!("pending push: {}", pending.len());
            println!("feed cursor: {cursor}");
            // Set aside so the rest syncs; offered again an hour after.
            for r in store.refused_docs().await? {
                println!("refused document {}: {}", r.doc_id, r.reason);
            }
            for r in store.refused_blobs().await? {
                println!("refused image {}: {}", r.sha256, r.reason);
            }
        }
        Command::Export { out } => {
            let m = backup::export(&store, out, cli.quiet).await?;
            eprintln!(
                "exported {} document(s) and {} blob(s) to {}",
                m.docs.len(),
                m.blobs.len(),
                out.display()
            );
        }
        Command::Import { input } => {
            let ids = backup::import(&store, input, cli.quiet).await?;
            eprintln!(
                "imported {} document(s) from {}",
                ids.len(),
                input.display()
            );
        }
        Command::Verify { export } => {
            let found = match export {
                Some(dir) => backup::verify_export(dir, cli.quiet)?,
                None => backup::verify_store(&store, cli.quiet).await?,
            };
            store.close().await;
            return Ok(report(&found));
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
