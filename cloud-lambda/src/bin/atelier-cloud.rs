//! `atelier-cloud`: runs the cloud Router with its own token issuer, on the
//! embedded backend (SQLite + files under `--data`) or on the AWS backend
//! (DynamoDB + S3, `--backend aws`); creates the AWS backend's tables and
//! buckets on an emulator (`init-aws`); mints development tokens; purges
//! the trash past its retention period (`purge`). A thin shell over
//! `cloud_lambda`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::num::NonZeroU32;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cloud_lambda::embedded::{EmbeddedOptions, EmbeddedServer, Storage, dev_token};
use cloud_lambda::jobs::JobConfig;
use cloud_lambda::limits::{ApiConfig, SpendLimits, parse_count_or_off, parse_usd_or_off};
use cloud_lambda::purge::PurgeSchedule;
use cloud_lambda::storage::aws::{Aws, AwsOptions};
use cloud_lambda::storage::embedded::{EmbeddedBlobs, EmbeddedStore};

#[derive(Parser)]
#[command(
    version,
    about = "Atelier's cloud: the sync endpoint, the REST API and provider jobs over the \
             embedded backend (SQLite and files) or the AWS backend (DynamoDB and S3)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Router.
    Serve {
        #[arg(long, env = "ATELIER_CLOUD_ADDR", default_value = "127.0.0.1:8787")]
        addr: SocketAddr,
        /// Data directory: the token signing key, and with the embedded
        /// backend the database and blobs.
        #[arg(long, env = "ATELIER_CLOUD_DATA")]
        data: PathBuf,
        /// Where documents, blobs and jobs live.
        #[arg(long, env = "ATELIER_BACKEND", value_enum, default_value_t = Backend::Embedded)]
        backend: Backend,
        #[command(flatten)]
        aws: AwsArgs,
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
        /// Format line on stdout (dimension `Deployment`: the AWS prefix).
        #[arg(long, env = "ATELIER_EMF_METRICS")]
        emf_metrics: bool,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        trash: TrashArgs,
        /// How often to purge the trash, in minutes (`off`: never).
        #[arg(long, env = "ATELIER_PURGE_INTERVAL_MINUTES", default_value = "60", value_parser = count_or_off)]
        purge_interval_minutes: OrOff<u32>,
    },
    /// Purge once: every asset in the trash longer than the retention
    /// period, and every blob no other asset uses. Prints what it removed.
    Purge {
        /// The embedded backend's data directory.
        #[arg(long, env = "ATELIER_CLOUD_DATA")]
        data: Option<PathBuf>,
        /// Where documents and blobs live.
        #[arg(long, env = "ATELIER_BACKEND", value_enum, default_value_t = Backend::Embedded)]
        backend: Backend,
        #[command(flatten)]
        aws: AwsArgs,
        #[command(flatten)]
        trash: TrashArgs,
    },
    /// Create the AWS backend's tables and buckets (those missing) on an
    /// emulator such as moto; on AWS the infrastructure creates them from
    /// the same schema (cloud-lambda/aws-schema.json).
    InitAws {
        #[command(flatten)]
        aws: AwsArgs,
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

/// The trash.
#[derive(Args)]
struct TrashArgs {
    /// Days an asset stays in the trash (restorable) before it is purged.
    #[arg(long, env = "ATELIER_TRASH_RETENTION_DAYS", default_value_t = 30)]
    trash_retention_days: u32,
}

impl TrashArgs {
    fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.trash_retention_days) * 86_400)
    }
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
    /// Long polls one user may have held at once (429 beyond it); each
    /// syncing device holds one.
    #[arg(long, env = "ATELIER_LONG_POLLS_PER_USER", default_value_t = ApiConfig::default().long_polls_per_user)]
    long_polls_per_user: usize,
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
    parse_count_or_off(s).map(OrOff)
}

fn usd_or_off(s: &str) -> Result<OrOff<i64>, String> {
    parse_usd_or_off(s).map(OrOff)
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// SQLite and files in the data directory.
    Embedded,
    /// DynamoDB and S3.
    Aws,
}

/// Where the AWS backend is. Region and credentials come from the usual
/// AWS environment (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, profiles, roles).
#[derive(Args, Clone)]
struct AwsArgs {
    /// Put in front of every table and bucket name.
    #[arg(long, env = "ATELIER_AWS_PREFIX", default_value = "atelier-dev-")]
    aws_prefix: String,
    /// An emulator's URL (e.g. moto's); AWS_ENDPOINT_URL works too. With an
    /// endpoint and no AWS_ACCESS_KEY_ID, dummy credentials are used (an
    /// emulator takes any).
    #[arg(long)]
    aws_endpoint: Option<String>,
}

impl AwsArgs {
    fn options(&self) -> AwsOptions {
        let endpoint = self
            .aws_endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        let emulated = endpoint.is_some() && std::env::var_os("AWS_ACCESS_KEY_ID").is_none();
        AwsOptions {
            endpoint,
            credentials: emulated.then(|| ("test".to_owned(), "test".to_owned())),
            ..AwsOptions::new(self.aws_prefix.clone())
        }
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
            backend,
            aws,
            public_url,
            no_jobs,
            emf_metrics,
            limits,
            trash,
            purge_interval_minutes,
            ..
        } => {
            if emf_metrics {
                cloud_lambda::metrics::enable_emf(cloud_lambda::metrics::EmfConfig {
                    deployment: aws.aws_prefix.clone(),
                    each_event: true,
                });
            }
            let storage = match backend {
                Backend::Embedded => Storage::Embedded,
                Backend::Aws => Storage::Aws(aws.options()),
            };
            let server = EmbeddedServer::start(EmbeddedOptions {
                addr,
                storage,
                jobs: !no_jobs,
                public_url,
                api: ApiConfig {
                    requests_per_minute: limits.requests_per_minute.0.and_then(NonZeroU32::new),
                    request_burst: limits.request_burst,
                    max_image_bytes: limits.max_image_bytes,
                    max_image_pixels: limits.max_image_megapixels.saturating_mul(1_000_000),
                    max_prompt_chars: limits.max_prompt_chars,
                    long_polls_per_user: limits.long_polls_per_user,
                    ..ApiConfig::default()
                },
                job_config: JobConfig {
                    limits: SpendLimits {
                        jobs_per_hour: limits.jobs_per_hour.0,
                        daily_cap_nano_usd: limits.daily_spend_cap_usd.0,
                    },
                    ..JobConfig::default()
                },
                purge: purge_interval_minutes.0.map(|minutes| PurgeSchedule {
                    retention: trash.retention(),
                    interval: Duration::from_secs(u64::from(minutes.max(1)) * 60),
                    ..PurgeSchedule::default()
                }),
                ..EmbeddedOptions::new(data)
            })
            .await?;
            server.serve_until_ctrl_c().await;
        }
        Command::InitAws { aws } => {
            let aws = Aws::connect(aws.options()).await?;
            let report = aws.init().await?;
            for (what, names) in [
                ("created table", &report.created_tables),
                ("table exists", &report.existing_tables),
                ("created bucket", &report.created_buckets),
                ("bucket exists", &report.existing_buckets),
            ] {
                for name in names {
                    println!("{what}: {name}");
                }
            }
        }
        Command::Purge {
            data,
            backend,
            aws,
            trash,
        } => {
            // Milliseconds: `auth::Clock` counts whole seconds, and an asset
            // deleted a moment ago must be due with a retention of 0 days.
            let now = core_sync::now_millis();
            let started = std::time::Instant::now();
            let retention = trash.retention();
            let r = match backend {
                Backend::Embedded => {
                    let data = data.ok_or("--data is required with the embedded backend")?;
                    let store = EmbeddedStore::open(&data).await?;
                    let blobs = EmbeddedBlobs::open(&data)?;
                    let r = cloud_lambda::purge::run(&store, &blobs, now, retention).await;
                    store.close().await;
                    r?
                }
                Backend::Aws => {
                    let aws = Aws::connect(aws.options()).await?;
                    cloud_lambda::purge::run(&aws.store(), &aws.blobs(), now, retention).await?
                }
            };
            println!(
                "purged {} asset(s) and {} blob(s) ({} bytes) in {:.2} s",
                r.assets,
                r.blobs,
                r.blob_bytes,
                started.elapsed().as_secs_f64()
            );
        }
        Command::DevToken { data, user, ttl } => {
            println!("{}", dev_token(&data, &user, Duration::from_secs(ttl))?);
        }
    }
    Ok(())
}
