//! Command line and environment: where the store lives and whom to sync
//! with. Parsed once at start-up into a [`Config`].

use std::path::PathBuf;

use clap::Parser;

/// Atelier: every image asset with its chat timeline of edits, local-first.
///
/// With no options the app keeps its data in the platform data directory and
/// syncs with an embedded server running inside the app on loopback, which
/// also runs provider jobs with the keys in the environment
/// (GEMINI_API_KEY, REPLICATE_API_TOKEN).
#[derive(Debug, Clone, Parser)]
#[command(name = "atelier", version)]
pub struct Args {
    /// The local store (database and images).
    #[arg(long, env = "ATELIER_DATA")]
    pub data: Option<PathBuf>,
    /// Sync with this server (e.g. `https://…/` or `http://127.0.0.1:8787`)
    /// instead of the embedded one.
    #[arg(long, env = "ATELIER_SERVER", conflicts_with = "offline")]
    pub server: Option<String>,
    /// The bearer token to sign in to `--server` with (`atelier-cloud
    /// dev-token` prints one for a local server).
    #[arg(long, env = "ATELIER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Never sync: everything stays on this computer and tool requests wait
    /// in the queue.
    #[arg(long)]
    pub offline: bool,
    /// Log as JSON lines.
    #[arg(long)]
    pub json_logs: bool,
    /// Open this asset at start.
    #[arg(long, value_name = "ASSET_ID")]
    pub open: Option<String>,
    /// Quit once the asset list is shown, printing start-up timings as JSON
    /// (for the start-up benchmark).
    #[arg(long, hide = true)]
    pub exit_after_startup: bool,
}

/// Whom the app syncs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The embedded server, in-process on loopback, data under `DATA/cloud`.
    Embedded,
    Remote {
        url: String,
        token: Option<String>,
    },
    Offline,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub data: PathBuf,
    pub mode: Mode,
}

impl Config {
    pub fn from_args(args: &Args) -> Config {
        let mode = match (&args.server, args.offline) {
            (_, true) => Mode::Offline,
            (Some(url), false) => Mode::Remote {
                url: url.trim_end_matches('/').to_owned(),
                token: args.token.clone().filter(|t| !t.trim().is_empty()),
            },
            (None, false) => Mode::Embedded,
        };
        Config {
            data: args.data.clone().unwrap_or_else(default_data_dir),
            mode,
        }
    }
}

/// The platform data directory (`~/.local/share/atelier` on Linux).
pub fn default_data_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "atelier")
        .map(|d| d.data_dir().to_owned())
        .unwrap_or_else(|| PathBuf::from(".atelier"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let args =
            Args::try_parse_from(std::iter::once("atelier").chain(args.iter().copied())).unwrap();
        Config::from_args(&args)
    }

    #[test]
    fn modes_from_flags() {
        assert_eq!(parse(&["--data", "/tmp/x"]).mode, Mode::Embedded);
        assert_eq!(parse(&["--data", "/tmp/x"]).data, PathBuf::from("/tmp/x"));
        assert_eq!(parse(&["--offline"]).mode, Mode::Offline);
        assert_eq!(
            parse(&["--server", "http://127.0.0.1:9/", "--token", "t"]).mode,
            Mode::Remote {
                url: "http://127.0.0.1:9".into(),
                token: Some("t".into())
            }
        );
        assert!(
            Args::try_parse_from(["atelier", "--offline", "--server", "http://x"]).is_err(),
            "offline and a server contradict each other"
        );
    }
}
