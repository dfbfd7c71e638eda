//! Command line and environment: where the store lives and whom to sync
//! with. Parsed once at start-up into a [`Config`].

use std::path::PathBuf;

use clap::Parser;

use crate::settings::Settings;
use crate::signin::oauth::OAuthConfig;

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
    /// Sign in to `--server` in the browser through this OAuth 2.0 server
    /// (the Cognito hosted UI's domain, e.g.
    /// `https://atelier.auth.eu-central-1.amazoncognito.com`).
    #[arg(long, env = "ATELIER_AUTH_URL", requires = "client_id")]
    pub auth_url: Option<String>,
    /// The app client id for `--auth-url`.
    #[arg(long, env = "ATELIER_CLIENT_ID")]
    pub client_id: Option<String>,
    /// The loopback port registered as the sign-in callback
    /// (`http://localhost:PORT/callback`); 0 picks any free port.
    #[arg(long, env = "ATELIER_REDIRECT_PORT", default_value_t = crate::signin::oauth::DEFAULT_REDIRECT_PORT)]
    pub redirect_port: u16,
    /// Keep sign-in tokens in a private file in the data directory even
    /// when an OS keyring is available.
    #[arg(long, env = "ATELIER_NO_KEYRING")]
    pub no_keyring: bool,
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
    /// Days a deleted asset stays in the Trash (restorable) before the
    /// server purges it: the embedded server purges after this many, and
    /// the Trash counts down to it (set it to the server's with `--server`).
    #[arg(long, env = "ATELIER_TRASH_RETENTION_DAYS", default_value_t = 30)]
    pub trash_retention_days: u32,
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
        /// Browser sign-in (OAuth with PKCE); `None`: a pasted token.
        auth: Option<OAuthConfig>,
    },
    Offline,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub data: PathBuf,
    pub mode: Mode,
    /// The settings file's content (flags and environment win over it).
    pub settings: Settings,
    /// Keep tokens in the OS keyring when there is one.
    pub keyring: bool,
    /// Days a deleted asset stays in the Trash.
    pub trash_retention_days: u32,
}

impl Config {
    /// Flags and environment over the settings kept in the data directory
    /// (a settings file that does not read is reported and ignored).
    pub fn from_args(args: &Args) -> Config {
        let data = args.data.clone().unwrap_or_else(default_data_dir);
        let settings = Settings::load(&data).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ignoring the settings file");
            Settings::default()
        });
        Config::resolve(args, data, settings)
    }

    pub fn resolve(args: &Args, data: PathBuf, settings: Settings) -> Config {
        let server = args.server.clone().or(settings.server_url.clone());
        let auth = match (&args.auth_url, &args.client_id) {
            (Some(u), Some(c)) => Some((u.clone(), c.clone())),
            _ => settings.auth_url.clone().zip(settings.client_id.clone()),
        }
        .map(|(u, c)| OAuthConfig {
            redirect_port: args.redirect_port,
            ..OAuthConfig::new(&u, &c)
        });
        let mode = match (server, args.offline) {
            (_, true) => Mode::Offline,
            (Some(url), false) => Mode::Remote {
                url: url.trim_end_matches('/').to_owned(),
                token: args.token.clone().filter(|t| !t.trim().is_empty()),
                auth,
            },
            (None, false) => Mode::Embedded,
        };
        Config {
            data,
            mode,
            settings,
            keyring: !args.no_keyring,
            trash_retention_days: args.trash_retention_days,
        }
    }

    /// A config with no settings file and no keyring (tests, benchmarks).
    pub fn plain(data: PathBuf, mode: Mode) -> Config {
        Config {
            data,
            mode,
            settings: Settings::default(),
            keyring: false,
            trash_retention_days: 30,
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
        let data = args.data.clone().unwrap_or_default();
        Config::resolve(&args, data, Settings::default())
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
                token: Some("t".into()),
                auth: None,
            }
        );
        let with_auth = parse(&[
            "--server",
            "https://sync.example.com",
            "--auth-url",
            "https://auth.example.com",
            "--client-id",
            "cid",
        ]);
        match with_auth.mode {
            Mode::Remote { auth: Some(a), .. } => {
                assert_eq!(a.client_id, "cid");
                assert_eq!(a.redirect_port, crate::signin::oauth::DEFAULT_REDIRECT_PORT);
            }
            m => panic!("{m:?}"),
        }
        // The settings file names the server when no flag does.
        let args = Args::try_parse_from(["atelier"]).unwrap();
        let settings = Settings {
            server_url: Some("https://s.example.com/".into()),
            ..Settings::default()
        };
        let c = Config::resolve(&args, PathBuf::from("/d"), settings);
        assert!(matches!(c.mode, Mode::Remote { ref url, .. } if url == "https://s.example.com"));
        assert!(
            Args::try_parse_from(["atelier", "--offline", "--server", "http://x"]).is_err(),
            "offline and a server contradict each other"
        );
    }
}
