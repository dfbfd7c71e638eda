//! `atelier-cloud`: runs the cloud Router with its own token issuer, on the
//! embedded backend (SQLite + files under `--data`) or on the AWS backend
//! (DynamoDB + S3, `--backend aws`); creates the AWS backend's tables and
//! buckets on an emulator (`init-aws`); mints development tokens. A thin
//! shell over `cloud_lambda`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cloud_lambda::embedded::{EmbeddedOptions, EmbeddedServer, Storage, dev_token};
use cloud_lambda::storage::aws::{Aws, AwsOptions};

#[derive(Parser)]
#[command(
    version,
    about = "Atelier's cloud: the sync endpoint and provider jobs over the embedded backend \
             (SQLite and files) or the AWS backend (DynamoDB and S3)."
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
            ..
        } => {
            let storage = match backend {
                Backend::Embedded => Storage::Embedded,
                Backend::Aws => Storage::Aws(aws.options()),
            };
            let server = EmbeddedServer::start(EmbeddedOptions {
                addr,
                storage,
                jobs: !no_jobs,
                public_url,
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
        Command::DevToken { data, user, ttl } => {
            println!("{}", dev_token(&data, &user, Duration::from_secs(ttl))?);
        }
    }
    Ok(())
}
