//! `atelier-sync`: the headless sync daemon. Keeps a complete local replica
//! of a user's documents and blobs in sync with a server, and exports,
//! imports and verifies backups; `login` signs in to a Cognito user pool
//! (`USER_PASSWORD_AUTH`) and keeps the tokens in `DATA/sync-tokens.json`
//! (0600), refreshed before they expire. A thin shell over
//! `core_sync::sync`, `core_sync::auth` and `core_sync::backup`.

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use core_sync::auth::cognito::CognitoClient;
use core_sync::auth::session::{CognitoRefresher, RefreshingTransport, Session, system_clock};
use core_sync::auth::tokens::{StoredTokens, TokenFile, TokenVault as _};
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
    /// File holding a bearer token (re-read each run). Without it, the
    /// tokens `login` kept in DATA are used and refreshed.
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
    /// Sign in to the server's Cognito user pool with a user name and
    /// password (USER_PASSWORD_AUTH); the tokens are kept in
    /// DATA/sync-tokens.json (0600) and refreshed before they expire. The
    /// password comes from ATELIER_PASSWORD or is asked for, never a flag.
    Login(LoginArgs),
    /// Forget the tokens `login` kept.
    Logout,
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

#[derive(Args)]
struct LoginArgs {
    /// The user pool's app client id (it must allow USER_PASSWORD_AUTH).
    #[arg(long, env = "ATELIER_COGNITO_CLIENT_ID")]
    client_id: String,
    #[arg(long, env = "ATELIER_USERNAME")]
    username: String,
    /// The Cognito identity provider endpoint (default: the region's).
    #[arg(long, env = "ATELIER_COGNITO_ENDPOINT")]
    cognito_endpoint: Option<String>,
    #[arg(long, env = "AWS_REGION", default_value = "eu-central-1")]
    region: String,
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
    if let Some(file) = &cli.token_file {
        let token = std::fs::read_to_string(file)
            .map_err(|e| format!("{}: {e}", file.display()))?
            .trim()
            .to_owned();
        return Ok(SyncClient::new(store, server, token, EngineConfig::default()).await?);
    }
    let file = TokenFile::in_dir(&cli.data);
    let tokens = file
        .load()?
        .ok_or("not signed in: run `atelier-sync login` (or pass --token-file)")?;
    if tokens.server != server {
        return Err(format!(
            "the kept sign-in is for {}, not {server}: run `atelier-sync login` again",
            tokens.server
        )
        .into());
    }
    let (Some(endpoint), Some(client_id)) = (&tokens.cognito_endpoint, &tokens.client_id) else {
        return Err(format!(
            "{}: no Cognito client to refresh with",
            file.path().display()
        )
        .into());
    };
    let refresher = CognitoRefresher(CognitoClient::new(endpoint, client_id)?);
    let session = Arc::new(Session::new(refresher, file, tokens, system_clock()));
    let transport = RefreshingTransport::new(server, session)?;
    // The transport sends the session's token; the client's own is unused.
    Ok(SyncClient::with_transport(
        store,
        Box::new(transport),
        String::new(),
        EngineConfig::default(),
    )
    .await?)
}

/// `login`: signs in and keeps the tokens.
async fn login(cli: &Cli, args: &LoginArgs) -> Result<()> {
    let server = cli
        .server
        .as_deref()
        .ok_or("--server (or ATELIER_SERVER) is required: the tokens are kept for it")?;
    let endpoint = args
        .cognito_endpoint
        .clone()
        .unwrap_or_else(|| CognitoClient::regional_endpoint(&args.region));
    let password = match std::env::var("ATELIER_PASSWORD") {
        Ok(p) if !p.is_empty() => p,
        _ => rpassword::prompt_password(format!("Password for {}: ", args.username))
            .map_err(|e| format!("cannot read the password: {e} (or set ATELIER_PASSWORD)"))?,
    };
    let cognito = CognitoClient::new(&endpoint, &args.client_id)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let result = cognito
        .password_auth(&args.username, &password)
        .await
        .map_err(|e| format!("sign-in refused: {e}"))?;
    drop(password);
    let tokens = StoredTokens {
        server: server.to_owned(),
        access_token: result.access_token,
        refresh_token: result.refresh_token,
        expires_at: Some(now + result.expires_in),
        user: Some(args.username.clone()),
        cognito_endpoint: Some(endpoint),
        client_id: Some(args.client_id.clone()),
    };
    let file = TokenFile::in_dir(&cli.data);
    file.save(&tokens)?;
    eprintln!(
        "signed in as {}; tokens kept in {} (readable by you only)",
        args.username,
        file.path().display()
    );
    Ok(())
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
    match &cli.command {
        Command::Login(args) => {
            login(&cli, args).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Logout => {
            TokenFile::in_dir(&cli.data).clear();
            eprintln!("signed out");
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let store = Store::open(&cli.data, StoreOptions::default()).await?;
    match &cli.command {
        Command::Login(_) | Command::Logout => unreachable!("handled above"),
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
