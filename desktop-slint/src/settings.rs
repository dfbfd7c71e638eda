//! The user's settings, kept in the data directory (`DATA/settings.json`,
//! readable by the user only: it may hold provider keys): the sync server,
//! browser sign-in (the Cognito hosted UI and app client), provider keys
//! for the embedded server, and how often to poll. Flags and environment
//! variables win over the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub const FILE_NAME: &str = "settings.json";

/// Polling cadences offered (seconds between idle polls at most).
pub const CADENCES: [(u64, &str); 4] = [
    (5, "Every 5 s (fast, more requests)"),
    (25, "Every 25 s (default)"),
    (120, "Every 2 min"),
    (600, "Every 10 min (battery saver)"),
];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Settings {
    /// Sync with this server; `None`: the embedded one.
    pub server_url: Option<String>,
    /// The sign-in (OAuth) domain, e.g. `https://atelier.auth.eu-central-1.amazoncognito.com`.
    pub auth_url: Option<String>,
    pub client_id: Option<String>,
    pub gemini_api_key: Option<String>,
    pub replicate_api_token: Option<String>,
    /// Longest wait between idle polls, in seconds.
    pub idle_poll_secs: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("cannot save settings to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Settings {
    pub fn path(data: &Path) -> PathBuf {
        data.join(FILE_NAME)
    }

    /// The saved settings; none saved is the defaults. A file that does not
    /// parse is an error (the app says so and starts with the defaults).
    pub fn load(data: &Path) -> Result<Settings, SettingsError> {
        let path = Self::path(data);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| SettingsError::Read {
                path,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(SettingsError::Read {
                path,
                message: e.to_string(),
            }),
        }
    }

    /// Writes the settings (0600, temp file then rename).
    pub fn save(&self, data: &Path) -> Result<(), SettingsError> {
        let path = Self::path(data);
        let json = serde_json::to_vec_pretty(self).expect("settings serialize");
        crate::signin::vault::write_private(&path, &json)
            .map_err(|source| SettingsError::Write { path, source })
    }

    pub fn idle_poll(&self) -> Option<Duration> {
        self.idle_poll_secs.map(Duration::from_secs)
    }
}

/// The settings sheet's fields, as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsForm {
    pub server_url: String,
    pub auth_url: String,
    pub client_id: String,
    pub gemini_api_key: String,
    pub replicate_api_token: String,
    /// Index into [`CADENCES`].
    pub cadence: usize,
    /// Said under the fields (what applies when).
    pub note: String,
}

impl SettingsForm {
    pub fn of(s: &Settings) -> SettingsForm {
        let secs = s.idle_poll_secs.unwrap_or(25);
        SettingsForm {
            server_url: s.server_url.clone().unwrap_or_default(),
            auth_url: s.auth_url.clone().unwrap_or_default(),
            client_id: s.client_id.clone().unwrap_or_default(),
            gemini_api_key: s.gemini_api_key.clone().unwrap_or_default(),
            replicate_api_token: s.replicate_api_token.clone().unwrap_or_default(),
            cadence: CADENCES.iter().position(|(c, _)| *c == secs).unwrap_or(1),
            note: String::new(),
        }
    }

    /// Checks the fields and keeps them in `data`; returns the settings and
    /// the form to show (saying what applies only at the next start).
    pub fn save(&self, data: &Path) -> Result<(Settings, SettingsForm), SettingsError> {
        let settings = self.parse()?;
        let old = Settings::load(data).unwrap_or_default();
        settings.save(data)?;
        let mut form = SettingsForm::of(&settings);
        let restart = old.server_url != settings.server_url
            || old.auth_url != settings.auth_url
            || old.client_id != settings.client_id;
        form.note = if restart {
            "Saved. The server and sign-in apply when Atelier starts again.".into()
        } else {
            "Saved.".into()
        };
        Ok((settings, form))
    }

    /// Checks the fields and makes settings of them; errors are sentences.
    pub fn parse(&self) -> Result<Settings, SettingsError> {
        let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let url = |name: &str, s: &str| -> Result<Option<String>, SettingsError> {
            match text(s) {
                None => Ok(None),
                Some(u) => match reqwest::Url::parse(&u) {
                    Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => {
                        Ok(Some(u.trim_end_matches('/').to_owned()))
                    }
                    _ => Err(SettingsError::Invalid(format!(
                        "{name} {u:?} is not an http(s) URL"
                    ))),
                },
            }
        };
        let server_url = url("The server", &self.server_url)?;
        let auth_url = url("The sign-in URL", &self.auth_url)?;
        let client_id = text(&self.client_id);
        if auth_url.is_some() != client_id.is_some() {
            return Err(SettingsError::Invalid(
                "Browser sign-in needs both the sign-in URL and the app client id.".into(),
            ));
        }
        for (name, key) in [
            ("The Gemini key", &self.gemini_api_key),
            ("The Replicate token", &self.replicate_api_token),
        ] {
            if key.trim().contains(char::is_whitespace) {
                return Err(SettingsError::Invalid(format!(
                    "{name} has spaces in it: paste the key alone."
                )));
            }
        }
        Ok(Settings {
            server_url,
            auth_url,
            client_id,
            gemini_api_key: text(&self.gemini_api_key),
            replicate_api_token: text(&self.replicate_api_token),
            idle_poll_secs: Some(CADENCES.get(self.cadence).map_or(25, |c| c.0)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_through_the_form_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Settings::load(dir.path()).unwrap(), Settings::default());
        let form = SettingsForm {
            server_url: " https://sync.example.com/ ".into(),
            gemini_api_key: "AIza-key".into(),
            cadence: 2,
            ..SettingsForm::default()
        };
        let s = form.parse().unwrap();
        assert_eq!(s.server_url.as_deref(), Some("https://sync.example.com"));
        assert_eq!(s.idle_poll(), Some(Duration::from_secs(120)));
        s.save(dir.path()).unwrap();
        assert_eq!(Settings::load(dir.path()).unwrap(), s);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(Settings::path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(SettingsForm::of(&s).cadence, 2);
    }

    #[test]
    fn bad_fields_are_said_plainly() {
        let bad = |f: SettingsForm| f.parse().unwrap_err().to_string();
        assert!(
            bad(SettingsForm {
                server_url: "sync.example.com".into(),
                ..Default::default()
            })
            .contains("is not an http(s) URL")
        );
        assert!(
            bad(SettingsForm {
                auth_url: "https://auth.example.com".into(),
                ..Default::default()
            })
            .contains("needs both")
        );
        assert!(
            bad(SettingsForm {
                gemini_api_key: "two words".into(),
                ..Default::default()
            })
            .contains("spaces")
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(Settings::path(dir.path()), "{ nope").unwrap();
        assert!(
            Settings::load(dir.path())
                .unwrap_err()
                .to_string()
                .contains("cannot read")
        );
    }
}
