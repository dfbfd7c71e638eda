//! `atelier`: the desktop app. A thin shell over `desktop_slint::app`.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use desktop_slint::app::{self, RunOptions};
use desktop_slint::config::{Args, Config};

fn main() -> ExitCode {
    let started = Instant::now();
    // Before any thread starts: the platform refuses the lookup afterwards.
    desktop_slint::format::init_local_offset();
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,desktop_slint=info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.json_logs {
        fmt.json().init();
    } else {
        fmt.init();
    }
    let options = RunOptions {
        started: Some(started),
        exit_after_startup: args.exit_after_startup,
        open: args.open.clone(),
    };
    match app::run(Config::from_args(&args), options) {
        Ok(()) => ExitCode::SUCCESS,
        // Not an error: the running app came forward.
        Err(app::AppError::Instance(e @ desktop_slint::instance::InstanceError::Raised { .. })) => {
            eprintln!("{e}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
