//! What a sign-in leaves, and where it is kept: a JSON file readable by the
//! user only (0600, written to a temp file and renamed over the old one).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The tokens of one server, and how to refresh them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredTokens {
    /// The sync server they are for.
    pub server: String,
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// When the access token expires, seconds since the epoch.
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub user: Option<String>,
    /// Where to refresh: the Cognito IdP endpoint and app client.
    #[serde(default)]
    pub cognito_endpoint: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
}

/// Where tokens are kept.
pub trait TokenVault: Send + Sync {
    fn save(&self, tokens: &StoredTokens) -> Result<(), String>;
    /// Forgets the tokens.
    fn clear(&self);
}

/// Tokens in one file, mode 0600.
#[derive(Debug, Clone)]
pub struct TokenFile {
    path: PathBuf,
}

impl TokenFile {
    /// The daemon's file in a replica directory.
    pub const NAME: &'static str = "sync-tokens.json";

    pub fn new(path: impl Into<PathBuf>) -> TokenFile {
        TokenFile { path: path.into() }
    }

    /// `DATA/sync-tokens.json`.
    pub fn in_dir(data: &Path) -> TokenFile {
        TokenFile::new(data.join(Self::NAME))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The kept tokens; `Ok(None)` when there are none.
    pub fn load(&self) -> Result<Option<StoredTokens>, String> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| format!("{}: not a token file: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }
}

impl TokenVault for TokenFile {
    fn save(&self, tokens: &StoredTokens) -> Result<(), String> {
        let json = serde_json::to_vec_pretty(tokens).expect("tokens serialize");
        write_private(&self.path, &json).map_err(|e| format!("{}: {e}", self.path.display()))
    }

    fn clear(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes `bytes` to `path`, readable by the user only: a temp file (0600)
/// beside it, fsynced, then renamed over `path`.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut f = options.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_file_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::in_dir(dir.path());
        assert_eq!(file.load().unwrap(), None);
        let t = StoredTokens {
            server: "https://api".into(),
            access_token: "a".into(),
            refresh_token: Some("r".into()),
            expires_at: Some(10),
            user: Some("alice".into()),
            cognito_endpoint: Some("https://idp".into()),
            client_id: Some("c".into()),
        };
        file.save(&t).unwrap();
        file.save(&t).unwrap();
        assert_eq!(file.load().unwrap(), Some(t));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        file.clear();
        assert_eq!(file.load().unwrap(), None);
        std::fs::write(file.path(), "{").unwrap();
        assert!(file.load().unwrap_err().contains("not a token file"));
    }
}
