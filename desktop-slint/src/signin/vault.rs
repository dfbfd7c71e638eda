//! Where sign-in tokens are kept: the OS keyring (Secret Service on Linux,
//! Keychain on macOS, Credential Manager on Windows) when there is one,
//! else `DATA/sign-in.json`, readable by the user only (0600). One entry
//! per data directory and server.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

const SERVICE: &str = "atelier";
const FILE_NAME: &str = "sign-in.json";

/// What a sign-in left to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredTokens {
    pub server: String,
    #[serde(alias = "token")]
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// When the access token expires, seconds since the epoch.
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("cannot keep the sign-in in {place}: {message}")]
    Write { place: String, message: String },
}

/// Where tokens go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultKind {
    Keyring,
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Vault {
    kind: VaultKind,
    /// The keyring entry's user: the data directory (two stores on one
    /// machine keep their own sign-ins).
    account: String,
    file: PathBuf,
}

impl Vault {
    /// The keyring when `keyring` asks for it and one answers, else the
    /// file in `data`.
    pub fn open(data: &Path, keyring: bool) -> Vault {
        let file = data.join(FILE_NAME);
        let account = format!("sign-in {}", data.display());
        let kind = if keyring && keyring_works(&account) {
            VaultKind::Keyring
        } else {
            VaultKind::File(file.clone())
        };
        tracing::info!(?kind, "sign-in tokens are kept here");
        Vault {
            kind,
            account,
            file,
        }
    }

    pub fn kind(&self) -> &VaultKind {
        &self.kind
    }

    /// The tokens kept for `server`, if any.
    pub fn load(&self, server: &str) -> Option<StoredTokens> {
        let text = match &self.kind {
            VaultKind::Keyring => on_thread({
                let account = self.account.clone();
                move || keyring::Entry::new(SERVICE, &account)?.get_password()
            })
            .ok()?,
            VaultKind::File(path) => std::fs::read_to_string(path).ok()?,
        };
        let t: StoredTokens = serde_json::from_str(&text).ok()?;
        (t.server == server).then_some(t)
    }

    pub fn save(&self, tokens: &StoredTokens) -> Result<(), VaultError> {
        let json = serde_json::to_string_pretty(tokens).expect("tokens serialize");
        match &self.kind {
            VaultKind::Keyring => on_thread({
                let account = self.account.clone();
                move || keyring::Entry::new(SERVICE, &account)?.set_password(&json)
            })
            .map_err(|e| VaultError::Write {
                place: "the system keyring".into(),
                message: e.to_string(),
            }),
            VaultKind::File(path) => {
                write_private(path, json.as_bytes()).map_err(|e| VaultError::Write {
                    place: path.display().to_string(),
                    message: e.to_string(),
                })
            }
        }
    }

    /// Forgets the tokens (sign-out). Also removes a file left from before
    /// a keyring was available.
    pub fn clear(&self) {
        if self.kind == VaultKind::Keyring {
            let account = self.account.clone();
            let _ = on_thread(move || keyring::Entry::new(SERVICE, &account)?.delete_credential());
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Runs a keyring call on a thread of its own (the Secret Service client
/// runs its own async executor, which must not nest in the app's runtime),
/// giving up after 5 s (a keyring daemon that hangs is no keyring).
fn on_thread<T: Send + 'static>(
    f: impl FnOnce() -> keyring::Result<T> + Send + 'static,
) -> keyring::Result<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .unwrap_or(Err(keyring::Error::NoStorageAccess(
            "the keyring did not answer within 5 s".into(),
        )))
}

/// Whether a keyring answers: reading a missing entry is fine, no access
/// (no Secret Service on the session bus, a locked keychain) is not.
fn keyring_works(account: &str) -> bool {
    let account = account.to_owned();
    match on_thread(move || keyring::Entry::new(SERVICE, &account)?.get_password()) {
        Ok(_) | Err(keyring::Error::NoEntry) => true,
        Err(e) => {
            tracing::info!(error = %e, "no usable system keyring; keeping tokens in a private file");
            false
        }
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
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
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
    fn the_file_vault_keeps_tokens_per_server_readable_by_the_user_only() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(dir.path(), false);
        assert_eq!(v.kind(), &VaultKind::File(dir.path().join(FILE_NAME)));
        assert_eq!(v.load("https://a"), None);
        let t = StoredTokens {
            server: "https://a".into(),
            access_token: "acc".into(),
            refresh_token: Some("ref".into()),
            expires_at: Some(1),
            user: Some("alice".into()),
        };
        v.save(&t).unwrap();
        assert_eq!(v.load("https://a"), Some(t));
        assert_eq!(v.load("https://b"), None, "another server's sign-in");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(FILE_NAME))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        v.clear();
        assert_eq!(v.load("https://a"), None);
        // The token-only file of earlier versions still reads.
        std::fs::write(
            dir.path().join(FILE_NAME),
            r#"{"server":"https://a","token":"old"}"#,
        )
        .unwrap();
        assert_eq!(v.load("https://a").unwrap().access_token, "old");
    }
}
