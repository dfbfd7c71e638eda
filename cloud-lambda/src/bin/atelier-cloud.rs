//! `atelier-cloud`: runs the cloud Router on the embedded backend (SQLite +
//! files under `--data`), its own token issuer included, and mints
//! development tokens. A thin shell over `cloud_lambda`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::num::NonZeroU32;

use clap::{Args, Parser, Subcommand};
use cloud_lambda::embedded::{EmbeddedOptions, EmbeddedServer, dev_token};
use cloud_lambda::jobs::JobConfig;
use cloud_lambda::limits::{ApiConfig, SpendLimits, parse_usd};

#[derive(Parser)]
#[command(
    version,
    about = "Atelier's cloud on the embedded backend: the sync endpoint and the REST API over SQLite and files."
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
        /// Also write each metric event as a CloudWatch Embedded Metric
        /// Format line on stdout.
        #[arg(long, env = "ATELIER_EMF_METRICS")]
        emf_metrics: bool,
        #[command(flatten)]
        limits: LimitArgs,
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

/// Limits on requests and spend (`off` turns one off).
#[derive(Args)]
struct LimitArgs {
    /// Requests per minute per user (429 with Retry-After beyond it), or `off`.
    #[arg(long, env = "ATELIER_REQUESTS_PER_MINUTE", default_value = "600", value_parser = count_or_off)]
    requests_per_minute: OrOff<u32>,
    /// Requests a user may make at once before the per-minute rate applies.
    #[arg(long, env = "ATELIER_REQUEST_BURST", default_value_t = NonZeroU32::new(120).unwrap())]
    request_burst: NonZeroU32,
    /// Largest image accepted, in bytes (at most 64 MiB, what a client stores).
    #[arg(long, env = "ATELIER_MAX_IMAGE_BYTES", default_value_t = core_sync::blob::MAX_BLOB_BYTES as usize)]
    max_image_bytes: usize,
    /// Most megapixels an image header may claim (checked before decoding).
    #[arg(long, env = "ATELIER_MAX_IMAGE_MEGAPIXELS", default_value_t = 100)]
    max_image_megapixels: u64,
    /// Longest prompt or note, in characters.
    #[arg(long, env = "ATELIER_MAX_PROMPT_CHARS", default_value_t = 4000)]
    max_prompt_chars: usize,
    /// Provider jobs a user may start per hour, or `off`.
    #[arg(long, env = "ATELIER_JOBS_PER_HOUR", default_value = "120", value_parser = count_or_off)]
    jobs_per_hour: OrOff<u32>,
    /// What a user may spend on providers per UTC day, in US dollars, or `off`.
    #[arg(long, env = "ATELIER_DAILY_SPEND_CAP_USD", default_value = "25", value_parser = usd_or_off)]
    daily_spend_cap_usd: OrOff<i64>,
}

/// A limit, or none (`off`).
#[derive(Clone, Copy)]
struct OrOff<T>(Option<T>);

fn count_or_off(s: &str) -> Result<OrOff<u32>, String> {
    if s == "off" {
        return Ok(OrOff(None));
    }
    match s.parse::<u32>() {
        Ok(n) if n > 0 => Ok(OrOff(Some(n))),
        _ => Err(format!(
            "{s:?} is neither a positive whole number nor `off`"
        )),
    }
}

fn usd_or_off(s: &str) -> Result<OrOff<i64>, String> {
    if s == "off" {
        Ok(OrOff(None))
    } else {
        parse_usd(s).map(|n| OrOff(Some(n)))
    }
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
            emf_metrics,
            limits,
            ..
        } => {
            if emf_metrics {
                cloud_lambda::metrics::enable_emf();
            }
            let server = EmbeddedServer::start(EmbeddedOptions {
                addr,
                jobs: !no_jobs,
                public_url,
                api: ApiConfig {
                    requests_per_minute: limits.requests_per_minute.0.and_then(NonZeroU32::new),
                    request_burst: limits.request_burst,
                    max_image_bytes: limits.max_image_bytes,
                    max_image_pixels: limits.max_image_megapixels.saturating_mul(1_000_000),
                    max_prompt_chars: limits.max_prompt_chars,
                    ..ApiConfig::default()
                },
                job_config: JobConfig {
                    limits: SpendLimits {
                        jobs_per_hour: limits.jobs_per_hour.0,
                        daily_cap_nano_usd: limits.daily_spend_cap_usd.0,
                    },
                    ..JobConfig::default()
                },
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
