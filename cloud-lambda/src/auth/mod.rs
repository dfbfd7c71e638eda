//! Bearer JWT (RS256) authentication.
//!
//! Every request carries `Authorization: Bearer <jwt>`. [`Verifier::verify`]
//! checks it exactly the way an Amazon Cognito user-pool token is checked,
//! whoever issued it:
//!
//! 1. the header is present and uses the `Bearer` scheme;
//! 2. the token is a compact JWS (three base64url parts) whose header says
//!    `alg: "RS256"` (anything else, `none` and `HS256` included, is
//!    refused before any key is looked at) and names a `kid`;
//! 3. the signature verifies with the key of that `kid` from a JWKS
//!    ([`JwksSource`], which refetches once on an unknown `kid`, at most once
//!    per [`JwksSource::DEFAULT_MIN_REFETCH_INTERVAL`]);
//! 4. `exp` is present and not past, `nbf` (if any) is not in the future,
//!    both with [`AuthConfig::leeway_secs`] of clock skew;
//! 5. `iss` equals [`AuthConfig::issuer`], `token_use` equals
//!    [`AuthConfig::token_use`], and the audience is one of
//!    [`AuthConfig::audiences`] (the app client ids): access tokens carry
//!    it in `client_id` (they have no `aud`), ID tokens in `aud`;
//! 6. `sub` is present; it is the user id everything is scoped by.
//!
//! Failures are [`AuthError`]s, all answered with HTTP 401. Neither error
//! messages nor logs ever contain the token.
//!
//! Keys come from a [`KeySource`]: [`StaticKeys`] for a fixed JWKS,
//! [`HttpKeys`] for a Cognito user pool's `/.well-known/jwks.json` fetched
//! over HTTP. [`CognitoSettings`] holds a pool's issuer, JWKS URL and app
//! client ids as separate settings (the token's `iss` is the real AWS URL
//! even when the JWKS is served elsewhere, e.g. by an emulator) and builds
//! the [`Verifier`] for it.
//!
//! The embedded server is its own issuer: [`LocalIssuer`] keeps an RSA-2048
//! key pair in `<data dir>/jwt-key.pem`, serves the public half as a JWKS,
//! mints Cognito-shaped access tokens (for the dev-token CLI command) and
//! hands out a [`Verifier`] running the very same checks.
//!
//! Modules: [`jwks`] (JWKS documents, key sources, the key cache; the
//! HTTP source for Cognito), [`verifier`] (the checks), [`issuer`] (the
//! local issuer), [`cognito`] (settings for a Cognito user pool).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod cognito;
pub mod issuer;
pub mod jwks;
pub mod verifier;

pub use cognito::CognitoSettings;
pub use issuer::LocalIssuer;
pub use jwks::{HttpKeys, JwkJson, Jwks, JwksJson, JwksSource, KeySource, StaticKeys};
pub use verifier::{Clock, SystemClock, Verifier};

/// Which kind of Cognito token the API accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenUse {
    /// `token_use: "access"`; the app client id is in `client_id`.
    Access,
    /// `token_use: "id"`; the app client id is in `aud`.
    Id,
}

impl TokenUse {
    /// The claim value: `"access"` or `"id"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenUse::Access => "access",
            TokenUse::Id => "id",
        }
    }
}

impl fmt::Display for TokenUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a token must say to be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Expected `iss`, e.g. `https://cognito-idp.<region>.amazonaws.com/<pool id>`.
    pub issuer: String,
    /// Accepted audiences: the Cognito app client ids (`client_id` of
    /// access tokens, `aud` of ID tokens); a token naming any one passes.
    pub audiences: Vec<String>,
    /// Expected `token_use`.
    pub token_use: TokenUse,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

impl AuthConfig {
    /// Default clock-skew allowance.
    pub const DEFAULT_LEEWAY_SECS: u64 = 60;

    /// A config accepting access tokens for one app client with the default
    /// leeway.
    pub fn access(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        AuthConfig {
            issuer: issuer.into(),
            audiences: vec![audience.into()],
            token_use: TokenUse::Access,
            leeway_secs: Self::DEFAULT_LEEWAY_SECS,
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The user id (`sub`): every key and query is scoped by it.
    pub sub: String,
    /// The user name (`username` of access tokens, `cognito:username` of ID
    /// tokens); `sub` when the token has neither.
    pub username: String,
    /// The kind of token that was presented.
    pub token_use: TokenUse,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: u64,
}

/// Why a request was not authenticated (or, for [`AuthError::KeyFile`] and
/// [`AuthError::InvalidSigningKey`], why the local issuer could not start).
///
/// `Display` is meant for logs and names what was wrong; it may quote header
/// fields (`alg`, `kid`) or claims (`iss`) in sanitised, truncated form, but
/// never the token. Clients get [`AuthError::client_message`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("no Authorization header")]
    MissingHeader,
    /// The `Authorization` header uses another scheme than `Bearer`.
    #[error("Authorization header does not use the Bearer scheme")]
    NotBearer,
    /// Not a compact JWS: wrong number of parts, bad base64url, bad JSON.
    #[error("malformed token: {0}")]
    MalformedToken(&'static str),
    /// The header's `alg` is not `RS256` (`none`, `HS256`, `RS512`, ...).
    #[error("token algorithm {0:?} is not accepted (only RS256)")]
    UnsupportedAlgorithm(String),
    /// The header has no `kid`.
    #[error("token header has no key id (kid)")]
    MissingKeyId,
    /// No key with this `kid`, even after refetching the JWKS.
    #[error("token signed with unknown key id {0:?}")]
    UnknownKey(String),
    /// The key source could not be read (fetch failed or timed out).
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
    /// The signature does not verify (other key, or a tampered token).
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` is past (beyond the leeway).
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token is not valid yet (nbf in the future)")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("token issuer {found:?} is not the expected issuer")]
    WrongIssuer {
        /// The token's `iss` (sanitised, truncated).
        found: String,
    },
    /// `client_id` (access token) or `aud` (ID token) is missing or is not
    /// the configured app client id.
    #[error("token audience/client id {found:?} does not match")]
    WrongAudience {
        /// The token's `client_id` or `aud` (sanitised, truncated), if any.
        found: Option<String>,
    },
    /// `token_use` is missing or not the configured one.
    #[error("token_use is {found:?}, expected {expected:?}")]
    WrongTokenUse {
        /// The configured kind.
        expected: TokenUse,
        /// The token's `token_use` (sanitised, truncated), if any.
        found: Option<String>,
    },
    /// No (string, non-empty) `sub`.
    #[error("token has no subject (sub)")]
    MissingSubject,
    /// Another required claim is missing (`exp`, `iss`).
    #[error("token is missing required claim {0:?}")]
    MissingClaim(&'static str),
    /// A claim has the wrong type (e.g. `exp` is not a number).
    #[error("token claim {0:?} has an invalid format")]
    InvalidClaim(&'static str),
    /// The local issuer's key file could not be read or written.
    #[error("signing key file {path}: {message}")]
    KeyFile {
        /// The key file (or its directory).
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The local issuer's private key is unusable (bad PEM, too small).
    #[error("invalid signing key: {0}")]
    InvalidSigningKey(String),
    /// The identity provider's settings are incomplete or wrong (start-up
    /// only).
    #[error("identity provider settings: {0}")]
    Settings(String),
}

impl AuthError {
    /// The HTTP status the router answers with: always 401.
    ///
    /// (This includes [`AuthError::KeysUnavailable`]; the two key-file
    /// variants only occur at start-up and never reach a client.)
    pub fn status(&self) -> u16 {
        401
    }

    /// A short, clear explanation for the client. Contains no token data and
    /// no double quotes (it is safe inside `WWW-Authenticate`).
    pub fn client_message(&self) -> &'static str {
        match self {
            AuthError::MissingHeader => {
                "authentication required: send an Authorization: Bearer <token> header"
            }
            AuthError::NotBearer => "the Authorization header must use the Bearer scheme",
            AuthError::MalformedToken(_) => "the bearer token is malformed",
            AuthError::UnsupportedAlgorithm(_) => "the bearer token must be signed with RS256",
            AuthError::MissingKeyId | AuthError::UnknownKey(_) => {
                "the bearer token was signed with an unknown key"
            }
            AuthError::KeysUnavailable(_) => {
                "the token signing keys could not be loaded; try again later"
            }
            AuthError::BadSignature => "the bearer token signature is invalid",
            AuthError::Expired => "the bearer token has expired",
            AuthError::NotYetValid => "the bearer token is not valid yet",
            AuthError::WrongIssuer { .. } => "the bearer token was not issued by a trusted issuer",
            AuthError::WrongAudience { .. } => "the bearer token was issued for another client",
            AuthError::WrongTokenUse {
                expected: TokenUse::Access,
                ..
            } => "an access token is required",
            AuthError::WrongTokenUse {
                expected: TokenUse::Id,
                ..
            } => "an ID token is required",
            AuthError::MissingSubject | AuthError::MissingClaim(_) => {
                "the bearer token lacks required claims"
            }
            AuthError::InvalidClaim(_) => "the bearer token has invalid claims",
            AuthError::KeyFile { .. }
            | AuthError::InvalidSigningKey(_)
            | AuthError::Settings(_) => "authentication is not available",
        }
    }

    /// A `WWW-Authenticate` value for the 401 (RFC 6750 §3): no error code
    /// when no credentials were sent, `invalid_token` otherwise.
    pub fn www_authenticate(&self) -> String {
        match self {
            AuthError::MissingHeader | AuthError::NotBearer => "Bearer".to_owned(),
            other => format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                other.client_message()
            ),
        }
    }
}

/// Printable ASCII, at most 64 characters: attacker-supplied header fields
/// and claims can be quoted in logs without flooding them.
fn sanitize(s: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = s
        .chars()
        .take(MAX)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if s.chars().count() > MAX {
        out.push('…');
    }
    out
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
