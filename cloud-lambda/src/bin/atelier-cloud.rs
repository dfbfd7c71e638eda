//! `atelier-cloud`: runs the cloud Router on the embedded backend (SQLite +
//! files under `--data`), its own token issuer included, and mints
//! development tokens. A thin shell over `cloud_lambda`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use cloud_lambda::embedded::{EmbeddedOptions, EmbeddedServer, dev_token};

#[derive(Parser)]
#[command(
    version,
    about = "Atelier's cloud on the embedded backend: the sync endpoint over SQLite and files."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Router on the embedded backend.
    Serve {
        #[arg(long, env = "ATELIER_CLOUD_ADDR", default_value = "127.0.0.1:8787")]
        addr: SocketAddr,
        /// Data directory: database, blobs and the token signing key.
        #[arg(long, env = "ATELIER_CLOUD_DATA")]
        data: PathBuf,
        /// Log as JSON lines (as on Lambda).
        #[arg(long)]
        json_logs: bool,
        /// This server's public base URL, for Replicate's webhook (without
        /// one, running predictions are polled).
        #[arg(long, env = "ATELIER_PUBLIC_URL")]
        public_url: Option<String>,
        /// Serve sync only: queued tool requests stay queued.
        #[arg(long)]
        no_jobs: bool,
    },
    /// Print a bearer token for USER, signed by the server's key in DATA.
    DevToken {
        #[arg(long, env = "ATELIER_CLOUD_DATA")]
        data: PathBuf,
        #[arg(long)]
        user: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 30 * 24 * 3600)]
        ttl: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs = matches!(
        cli.command,
        Command::Serve {
            json_logs: true,
            ..
        }
    );
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json_logs {
        fmt.json().init();
    } else {
        fmt.init();
    }
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Serve {
            addr,
            data,
            public_url,
            no_jobs,
            ..
        } => {
            let server = EmbeddedServer::start(EmbeddedOptions {
                addr,
                jobs: !no_jobs,
                public_url,
                ..EmbeddedOptions::new(data)
            })
            .await?;
            server.serve_until_ctrl_c().await;
        }
        Command::DevToken { data, user, ttl } => {
            println!("{}", dev_token(&data, &user, Duration::from_secs(ttl))?);
        }
    }
    Ok(())
}
