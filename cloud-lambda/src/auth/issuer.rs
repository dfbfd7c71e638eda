//! The embedded server's own issuer: an RSA key in its data directory,
//! its JWKS, and Cognito-shaped access tokens for it.

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use rsa::traits::PublicKeyParts as _;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::jwks::{JwkJson, JwksJson, StaticKeys};
use super::verifier::{Clock as _, SystemClock, Verifier};
use super::{AuthConfig, AuthError, TokenUse};

/// The embedded server's own token issuer: an RSA-2048 key pair kept in
/// `<dir>/jwt-key.pem`.
pub struct LocalIssuer {
    issuer: String,
    audience: String,
    kid: String,
    encoding_key: EncodingKey,
    public_jwk: JwkJson,
    key_path: Option<PathBuf>,
}

#[derive(Serialize)]
struct AccessTokenClaims<'a> {
    sub: String,
    username: &'a str,
    iss: &'a str,
    client_id: &'a str,
    token_use: &'static str,
    auth_time: u64,
    iat: u64,
    exp: u64,
    jti: String,
}

impl LocalIssuer {
    /// File name of the private key inside the data dir.
    pub const KEY_FILE_NAME: &'static str = "jwt-key.pem";
    /// Size of a generated key.
    pub const KEY_BITS: usize = 2048;

    /// Loads `dir/jwt-key.pem` (PKCS#8 PEM), or generates a 2048-bit key and
    /// writes it there (mode 0600, temp file then atomic link/rename; if
    /// another process created the file meanwhile, that key is used).
    /// An existing file readable by others is tightened to 0600.
    pub fn load_or_create(dir: &Path, issuer: &str, audience: &str) -> Result<Self, AuthError> {
        let path = dir.join(Self::KEY_FILE_NAME);
        if let Some(issuer) = Self::load_existing(&path, issuer, audience)? {
            return Ok(issuer);
        }
        create_private_dir(dir)?;
        let key = RsaPrivateKey::new(&mut rand08::rngs::OsRng, Self::KEY_BITS)
            .map_err(|e| AuthError::InvalidSigningKey(format!("key generation failed: {e}")))?;
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| AuthError::InvalidSigningKey(format!("PEM encoding failed: {e}")))?;
        if write_new_private_file(dir, &path, pem.as_bytes())? {
            tracing::info!(path = %path.display(), "generated a new JWT signing key");
            Self::from_key(&key, issuer, audience, Some(path))
        } else {
            // Lost a creation race: use the key that is on disk.
            Self::load_existing(&path, issuer, audience)?.ok_or_else(|| AuthError::KeyFile {
                path,
                message: "key file vanished after creation".to_owned(),
            })
        }
    }

    /// An issuer for a PKCS#8 PEM private key held in memory.
    pub fn from_pkcs8_pem(pem: &str, issuer: &str, audience: &str) -> Result<Self, AuthError> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem)
            .map_err(|e| AuthError::InvalidSigningKey(format!("not a PKCS#8 RSA key: {e}")))?;
        Self::from_key(&key, issuer, audience, None)
    }

    fn load_existing(path: &Path, issuer: &str, audience: &str) -> Result<Option<Self>, AuthError> {
        let pem = match fs::read_to_string(path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(key_file_error(path, "cannot read", &e)),
        };
        tighten_permissions(path)?;
        let key = RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|e| AuthError::KeyFile {
            path: path.to_owned(),
            message: format!("not a PKCS#8 RSA private key: {e}"),
        })?;
        Self::from_key(&key, issuer, audience, Some(path.to_owned())).map(Some)
    }

    fn from_key(
        key: &RsaPrivateKey,
        issuer: &str,
        audience: &str,
        key_path: Option<PathBuf>,
    ) -> Result<Self, AuthError> {
        if key.size() * 8 < Self::KEY_BITS {
            return Err(AuthError::InvalidSigningKey(format!(
                "RSA key has {} bits, at least {} required",
                key.size() * 8,
                Self::KEY_BITS
            )));
        }
        let der = key
            .to_pkcs1_der()
            .map_err(|e| AuthError::InvalidSigningKey(format!("DER encoding failed: {e}")))?;
        let encoding_key = EncodingKey::from_rsa_der(der.as_bytes());
        let n = key.n().to_bytes_be();
        let e = key.e().to_bytes_be();
        let kid: String = URL_SAFE_NO_PAD
            .encode(Sha256::digest(&n))
            .chars()
            .take(16)
            .collect();
        let public_jwk = JwkJson {
            kty: "RSA".to_owned(),
            kid: Some(kid.clone()),
            n: Some(URL_SAFE_NO_PAD.encode(&n)),
            e: Some(URL_SAFE_NO_PAD.encode(&e)),
            alg: Some("RS256".to_owned()),
            use_: Some("sig".to_owned()),
        };
        Ok(LocalIssuer {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            kid,
            encoding_key,
            public_jwk,
            key_path,
        })
    }

    /// The key id: base64url(sha256(modulus)), first 16 characters.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key file, when loaded from or written to disk.
    pub fn key_path(&self) -> Option<&Path> {
        self.key_path.as_deref()
    }

    /// The public JWKS (one RS256 signing key; no private members).
    pub fn jwks(&self) -> JwksJson {
        JwksJson {
            keys: vec![self.public_jwk.clone()],
        }
    }

    /// [`LocalIssuer::jwks`] as JSON, to serve at the JWKS URL.
    pub fn jwks_json(&self) -> Value {
        serde_json::to_value(self.jwks()).expect("a JWKS always serialises")
    }

    /// The stable user id (`sub`) the local issuer gives `user`: a UUID
    /// (version 8) derived from the user name, so the same name always maps
    /// to the same data, across restarts and key changes.
    pub fn user_id(user: &str) -> String {
        let digest = Sha256::digest(format!("atelier-local-user\0{user}").as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_custom_bytes(bytes)
            .into_uuid()
            .to_string()
    }

    /// A Cognito-shaped access token for `user`, valid for `ttl`: header
    /// `alg: RS256`, `kid`; claims `sub` ([`LocalIssuer::user_id`]),
    /// `username`, `iss`, `client_id`, `token_use: "access"`, `auth_time`,
    /// `iat`, `exp`, `jti`.
    pub fn mint(&self, user: &str, ttl: Duration) -> String {
        self.mint_at(user, ttl, SystemClock.now_secs())
    }

    /// [`LocalIssuer::mint`] as if the time were `now` (seconds since the
    /// Unix epoch).
    pub fn mint_at(&self, user: &str, ttl: Duration, now: u64) -> String {
        let claims = AccessTokenClaims {
            sub: Self::user_id(user),
            username: user,
            iss: &self.issuer,
            client_id: &self.audience,
            token_use: TokenUse::Access.as_str(),
            auth_time: now,
            iat: now,
            exp: now.saturating_add(ttl.as_secs()),
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding_key)
            .expect("RS256 signing with a validated RSA key does not fail")
    }

    /// What the local issuer's tokens say: its issuer, its client id,
    /// access tokens, default leeway.
    pub fn auth_config(&self) -> AuthConfig {
        AuthConfig::access(self.issuer.clone(), self.audience.clone())
    }

    /// A verifier for this issuer's tokens: the same checks as for Cognito,
    /// with [`StaticKeys`] of [`LocalIssuer::jwks`].
    pub fn verifier(&self) -> Verifier {
        Verifier::with_source(self.auth_config(), StaticKeys::new(self.jwks()))
    }
}

impl fmt::Debug for LocalIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalIssuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("kid", &self.kid)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

fn key_file_error(path: &Path, what: &str, err: &io::Error) -> AuthError {
    AuthError::KeyFile {
        path: path.to_owned(),
        message: format!("{what}: {err}"),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), AuthError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| key_file_error(dir, "cannot create directory", &e))
}

/// Makes an existing key file owner-only (0600) if it is not.
fn tighten_permissions(path: &Path) -> Result<(), AuthError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = fs::metadata(path).map_err(|e| key_file_error(path, "cannot stat", &e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "JWT key file was accessible to others; setting mode 0600");
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                .map_err(|e| key_file_error(path, "cannot chmod 0600", &e))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Writes `bytes` to `path` unless it exists: temp file (0600) in the same
/// dir, fsync, then a hard link (fails if `path` exists, so a concurrent
/// creator's key is never replaced) or, where links are unsupported, a
/// rename. Returns whether this call created `path`.
fn write_new_private_file(dir: &Path, path: &Path, bytes: &[u8]) -> Result<bool, AuthError> {
    let tmp = dir.join(format!(
        ".{}.{}-{:016x}.tmp",
        LocalIssuer::KEY_FILE_NAME,
        std::process::id(),
        rand08::random::<u64>()
    ));
    let result = (|| -> io::Result<bool> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        let created = match fs::hard_link(&tmp, path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(_) => {
                fs::rename(&tmp, path)?;
                true
            }
        };
        #[cfg(unix)]
        if created {
            // Make the new directory entry durable.
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(created)
    })();
    let _ = fs::remove_file(&tmp);
    result.map_err(|e| key_file_error(path, "cannot write", &e))
}
