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
//!    [`AuthConfig::token_use`], and the audience matches
//!    [`AuthConfig::audience`] (the app client id): access tokens carry it
//!    in `client_id` (they have no `aud`), ID tokens in `aud`;
//! 6. `sub` is present; it is the user id everything is scoped by.
//!
//! Failures are [`AuthError`]s, all answered with HTTP 401. Neither error
//! messages nor logs ever contain the token.
//!
//! Keys come from a [`KeySource`]: [`StaticKeys`] for a fixed JWKS; the
//! HTTP fetcher for Cognito's `/.well-known/jwks.json` plugs in later through
//! the same trait (keep the issuer and the JWKS URL separate settings: the
//! token's `iss` is the real AWS URL even when the JWKS is served locally).
//!
//! The embedded server is its own issuer: [`LocalIssuer`] keeps an RSA-2048
//! key pair in `<data dir>/jwt-key.pem`, serves the public half as a JWKS,
//! mints Cognito-shaped access tokens (for the dev-token CLI command) and
//! hands out a [`Verifier`] running the very same checks.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use rsa::traits::PublicKeyParts as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

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
    /// Expected audience: the Cognito app client id (`client_id` of access
    /// tokens, `aud` of ID tokens).
    pub audience: String,
    /// Expected `token_use`.
    pub token_use: TokenUse,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

impl AuthConfig {
    /// Default clock-skew allowance.
    pub const DEFAULT_LEEWAY_SECS: u64 = 60;

    /// A config accepting access tokens with the default leeway.
    pub fn access(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        AuthConfig {
            issuer: issuer.into(),
            audience: audience.into(),
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
            AuthError::KeyFile { .. } | AuthError::InvalidSigningKey(_) => {
                "authentication is not available"
            }
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

/// A JWKS document: `{"keys":[{"kty":"RSA","kid":..,"n":..,"e":..,"alg":"RS256","use":"sig"}]}`.
///
/// Only public-key members are modelled; anything else in the input
/// (private members included) is dropped on deserialisation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwksJson {
    /// The keys.
    pub keys: Vec<JwkJson>,
}

/// One JWK of a [`JwksJson`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkJson {
    /// Key type; only `"RSA"` keys are used.
    pub kty: String,
    /// Key id; keys without one are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// RSA modulus, base64url big-endian.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent, base64url big-endian.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// Intended algorithm; if present it must be `"RS256"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Intended use; if present it must be `"sig"`.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

/// Decoding keys by `kid`, built from a [`JwksJson`].
#[derive(Clone, Default)]
pub struct Jwks {
    keys: HashMap<String, Arc<DecodingKey>>,
}

impl Jwks {
    /// Keeps the RS256-capable RSA signing keys that have a `kid`; others
    /// (EC keys, `use: "enc"`, `alg: "RS512"`, bad `n`/`e`) are skipped.
    pub fn from_json(json: &JwksJson) -> Self {
        let mut keys = HashMap::new();
        for jwk in &json.keys {
            let usable = jwk.kty == "RSA"
                && jwk.alg.as_deref().is_none_or(|a| a == "RS256")
                && jwk.use_.as_deref().is_none_or(|u| u == "sig");
            let (Some(kid), Some(n), Some(e), true) = (&jwk.kid, &jwk.n, &jwk.e, usable) else {
                tracing::debug!(kid = ?jwk.kid.as_deref().map(sanitize), "skipping unusable JWK");
                continue;
            };
            match DecodingKey::from_rsa_components(n, e) {
                Ok(key) => {
                    keys.entry(kid.clone()).or_insert_with(|| Arc::new(key));
                }
                Err(err) => {
                    tracing::warn!(kid = %sanitize(kid), %err, "skipping JWK with invalid n/e");
                }
            }
        }
        Jwks { keys }
    }

    /// Parses a JWKS JSON document.
    pub fn parse(json: &str) -> Result<Self, AuthError> {
        let json: JwksJson = serde_json::from_str(json)
            .map_err(|e| AuthError::KeysUnavailable(format!("invalid JWKS JSON: {e}")))?;
        Ok(Self::from_json(&json))
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.get(kid).map(|k| &**k)
    }

    /// Whether a key with this `kid` is present.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The key ids, in no particular order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwks")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Where a [`JwksSource`] gets its JWKS from (a fixed set, Cognito's JWKS
/// URL over HTTP, ...).
#[async_trait]
pub trait KeySource: Send + Sync {
    /// Fetches the current JWKS. Failures should be
    /// [`AuthError::KeysUnavailable`].
    async fn fetch(&self) -> Result<JwksJson, AuthError>;
}

/// A fixed JWKS (the local issuer's, or a test's).
#[derive(Debug, Clone)]
pub struct StaticKeys(JwksJson);

impl StaticKeys {
    /// Serves this JWKS.
    pub fn new(jwks: JwksJson) -> Self {
        StaticKeys(jwks)
    }
}

#[async_trait]
impl KeySource for StaticKeys {
    async fn fetch(&self) -> Result<JwksJson, AuthError> {
        Ok(self.0.clone())
    }
}

#[derive(Default)]
struct CacheState {
    jwks: Jwks,
    last_fetch: Option<Instant>,
    last_fetch_failed: bool,
}

/// A [`KeySource`] behind a key cache.
///
/// Known `kid`s are answered from the cache. An unknown `kid` triggers one
/// refetch, unless the last fetch was less than
/// [`JwksSource::min_refetch_interval`] ago; concurrent misses wait for the
/// same fetch instead of starting their own. So forged `kid`s cost at most
/// one fetch per interval. A fetch replaces the whole set (rotated-out keys
/// disappear). The first lookup fetches; [`JwksSource::refresh`] warms up.
pub struct JwksSource {
    source: Box<dyn KeySource>,
    state: RwLock<CacheState>,
    fetch_lock: tokio::sync::Mutex<()>,
    min_refetch_interval: Duration,
    fetch_timeout: Duration,
}

impl JwksSource {
    /// Default minimum time between two fetches.
    pub const DEFAULT_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
    /// Default bound on one fetch.
    pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

    /// An empty cache over `source`, with the default intervals.
    pub fn new(source: impl KeySource + 'static) -> Self {
        JwksSource {
            source: Box::new(source),
            state: RwLock::new(CacheState::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
            min_refetch_interval: Self::DEFAULT_MIN_REFETCH_INTERVAL,
            fetch_timeout: Self::DEFAULT_FETCH_TIMEOUT,
        }
    }

    /// Sets the minimum time between two fetches.
    pub fn with_min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// Sets the bound on one fetch.
    pub fn with_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// The minimum time between two fetches.
    pub fn min_refetch_interval(&self) -> Duration {
        self.min_refetch_interval
    }

    /// The key for `kid`, refetching once if it is unknown (and the last fetch
    /// is old enough).
    pub async fn key_for(&self, kid: &str) -> Result<Arc<DecodingKey>, AuthError> {
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        let _fetching = self.fetch_lock.lock().await;
        // Another task may have fetched while we waited.
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(at) = state.last_fetch
                && at.elapsed() < self.min_refetch_interval
            {
                return Err(if state.last_fetch_failed {
                    AuthError::KeysUnavailable("recent JWKS fetch failed".to_owned())
                } else {
                    AuthError::UnknownKey(sanitize(kid))
                });
            }
        }
        self.fetch_now().await?;
        self.cached(kid)
            .ok_or_else(|| AuthError::UnknownKey(sanitize(kid)))
    }

    /// Fetches now, regardless of the interval (e.g. to warm up at start).
    pub async fn refresh(&self) -> Result<(), AuthError> {
        let _fetching = self.fetch_lock.lock().await;
        self.fetch_now().await
    }

    /// The cached key ids, in no particular order.
    pub fn cached_kids(&self) -> Vec<String> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.jwks.kids().map(str::to_owned).collect()
    }

    /// Caller holds `fetch_lock`.
    async fn fetch_now(&self) -> Result<(), AuthError> {
        let result = match tokio::time::timeout(self.fetch_timeout, self.source.fetch()).await {
            Ok(result) => result,
            Err(_) => Err(AuthError::KeysUnavailable(format!(
                "JWKS fetch timed out after {:?}",
                self.fetch_timeout
            ))),
        };
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.last_fetch = Some(Instant::now());
        match result {
            Ok(json) => {
                state.jwks = Jwks::from_json(&json);
                state.last_fetch_failed = false;
                tracing::debug!(keys = state.jwks.len(), "fetched JWKS");
                Ok(())
            }
            Err(err) => {
                // Keep the old keys: a failed fetch must not log everyone out.
                state.last_fetch_failed = true;
                tracing::warn!(%err, "JWKS fetch failed");
                Err(match err {
                    AuthError::KeysUnavailable(_) => err,
                    other => AuthError::KeysUnavailable(other.to_string()),
                })
            }
        }
    }

    fn cached(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.jwks.keys.get(kid).cloned()
    }
}

impl fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksSource")
            .field("cached_kids", &self.cached_kids())
            .field("min_refetch_interval", &self.min_refetch_interval)
            .finish_non_exhaustive()
    }
}

/// Wall-clock time in whole seconds since the Unix epoch: what `exp`, `nbf`
/// and `iat` are compared with. [`SystemClock`] in production; tests pass
/// their own to expire tokens without waiting.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now_secs(&self) -> u64;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_secs(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// Checks bearer tokens against an [`AuthConfig`] and a [`JwksSource`].
/// Cheap to clone (shared state).
#[derive(Clone, Debug)]
pub struct Verifier {
    config: Arc<AuthConfig>,
    keys: Arc<JwksSource>,
    clock: Arc<dyn Clock>,
    /// Tokens that passed every check, by SHA-256, until they expire: a
    /// device sends the same token with every request, and an RS256 check
    /// costs more than the rest of an idle poll.
    accepted: Arc<std::sync::Mutex<HashMap<[u8; 32], (Claims, String)>>>,
}

/// Most tokens remembered as accepted (then the memory starts over).
const ACCEPTED_TOKENS: usize = 4096;

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<Value>,
    kid: Option<Value>,
    crit: Option<Value>,
}

impl Verifier {
    /// A verifier for `config` with keys from `keys`.
    pub fn new(config: AuthConfig, keys: JwksSource) -> Self {
        Verifier {
            config: Arc::new(config),
            keys: Arc::new(keys),
            clock: Arc::new(SystemClock),
            accepted: Arc::default(),
        }
    }

    /// The same verifier, reading time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// A verifier for `config` with keys from `source` behind a default cache.
    pub fn with_source(config: AuthConfig, source: impl KeySource + 'static) -> Self {
        Self::new(config, JwksSource::new(source))
    }

    /// What tokens must say.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// The key cache.
    pub fn keys(&self) -> &JwksSource {
        &self.keys
    }

    /// Checks the value of an `Authorization` header (`None` when absent).
    pub async fn verify(&self, authorization_header: Option<&str>) -> Result<Claims, AuthError> {
        let result = match authorization_header {
            None => Err(AuthError::MissingHeader),
            Some(value) => match bearer_token(value) {
                Ok(token) => self.verify_token(token).await,
                Err(err) => Err(err),
            },
        };
        if let Err(err) = &result {
            tracing::debug!(%err, "bearer token rejected");
        }
        result
    }

    /// Checks a bare token (without the `Bearer ` prefix).
    pub async fn verify_token(&self, token: &str) -> Result<Claims, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let remembered = self
            .accepted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&digest)
            .cloned();
        // Everything but time was checked when it was first accepted; its
        // key must still be one the JWKS names (a rotated-out key's tokens
        // go through the whole check again, and fail it).
        if let Some((claims, kid)) = remembered
            && self.keys.cached(&kid).is_some()
        {
            let now = self.clock.now_secs();
            if claims.expires_at >= now.saturating_sub(self.config.leeway_secs) {
                return Ok(claims);
            }
            return Err(AuthError::Expired);
        }
        let (claims, kid) = self.verify_fully(token).await?;
        let mut accepted = self.accepted.lock().unwrap_or_else(PoisonError::into_inner);
        if accepted.len() >= ACCEPTED_TOKENS {
            accepted.clear();
        }
        accepted.insert(digest, (claims.clone(), kid));
        Ok(claims)
    }

    /// Every check, and the key id that signed the token.
    async fn verify_fully(&self, token: &str) -> Result<(Claims, String), AuthError> {
        let kid = check_header(token)?;
        let key = self.keys.key_for(&kid).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        // Times are checked below against the verifier's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false; // checked below, per token_use
        validation.set_required_spec_claims(&["exp"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(map_jwt_error)?;
        self.check_times(&data.claims)?;
        Ok((self.check_claims(&data.claims)?, kid))
    }

    /// `exp` is a number not past, `nbf` (if any) a number not in the
    /// future, both with the configured leeway.
    fn check_times(&self, claims: &Map<String, Value>) -> Result<(), AuthError> {
        let seconds = |name: &'static str| match claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| f.is_finite() && *f >= 0.0)
                        .map(|f| f as u64)
                })
                .map(Some)
                .ok_or(AuthError::InvalidClaim(name)),
        };
        let now = self.clock.now_secs();
        let leeway = self.config.leeway_secs;
        let exp = seconds("exp")?.ok_or(AuthError::MissingClaim("exp"))?;
        if exp < now.saturating_sub(leeway) {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = seconds("nbf")?
            && nbf > now.saturating_add(leeway)
        {
            return Err(AuthError::NotYetValid);
        }
        Ok(())
    }

    fn check_claims(&self, claims: &Map<String, Value>) -> Result<Claims, AuthError> {
        let config = &*self.config;
        let str_claim = |name: &str| claims.get(name).and_then(Value::as_str);

        match claims.get("iss") {
            None => return Err(AuthError::MissingClaim("iss")),
            Some(Value::String(iss)) if *iss == config.issuer => {}
            Some(other) => {
                return Err(AuthError::WrongIssuer {
                    found: sanitize(&value_text(other)),
                });
            }
        }

        let token_use = str_claim("token_use");
        if token_use != Some(config.token_use.as_str()) {
            return Err(AuthError::WrongTokenUse {
                expected: config.token_use,
                found: claims.get("token_use").map(|v| sanitize(&value_text(v))),
            });
        }

        let audience_ok = match config.token_use {
            TokenUse::Access => str_claim("client_id") == Some(config.audience.as_str()),
            TokenUse::Id => match claims.get("aud") {
                Some(Value::String(aud)) => *aud == config.audience,
                Some(Value::Array(auds)) => auds
                    .iter()
                    .any(|a| a.as_str() == Some(config.audience.as_str())),
                _ => false,
            },
        };
        if !audience_ok {
            let field = match config.token_use {
                TokenUse::Access => "client_id",
                TokenUse::Id => "aud",
            };
            return Err(AuthError::WrongAudience {
                found: claims.get(field).map(|v| sanitize(&value_text(v))),
            });
        }

        let sub = match str_claim("sub") {
            Some(sub) if !sub.is_empty() => sub.to_owned(),
            _ => return Err(AuthError::MissingSubject),
        };
        let (primary, secondary) = match config.token_use {
            TokenUse::Access => ("username", "cognito:username"),
            TokenUse::Id => ("cognito:username", "username"),
        };
        let username = str_claim(primary)
            .or_else(|| str_claim(secondary))
            .filter(|u| !u.is_empty())
            .unwrap_or(&sub)
            .to_owned();
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(AuthError::InvalidClaim("exp"))?;
        Ok(Claims {
            sub,
            username,
            token_use: config.token_use,
            expires_at,
        })
    }
}

/// The token of a `Bearer` credential (scheme case-insensitive, RFC 7235).
fn bearer_token(header_value: &str) -> Result<&str, AuthError> {
    let value = header_value.trim();
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::NotBearer);
    }
    let token = rest.trim_start();
    if token.is_empty() {
        return Err(AuthError::MalformedToken("no token after Bearer"));
    }
    if token.contains(char::is_whitespace) {
        return Err(AuthError::MalformedToken("token contains whitespace"));
    }
    Ok(token)
}

/// Shape and header checks done before any key is looked at; returns the `kid`.
fn check_header(token: &str) -> Result<String, AuthError> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(AuthError::MalformedToken(
            "expected three dot-separated parts",
        ));
    }
    let base64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if parts[0].is_empty() || parts[1].is_empty() || !parts.iter().all(|p| base64url(p)) {
        return Err(AuthError::MalformedToken("parts are not base64url"));
    }
    let header_json = URL_SAFE_NO_PAD
        .decode(parts[0])
        .map_err(|_| AuthError::MalformedToken("header is not base64url"))?;
    let header: RawHeader = serde_json::from_slice(&header_json)
        .map_err(|_| AuthError::MalformedToken("header is not a JSON object"))?;
    let alg = match header.alg {
        Some(Value::String(alg)) => alg,
        Some(other) => {
            return Err(AuthError::UnsupportedAlgorithm(sanitize(
                &other.to_string(),
            )));
        }
        None => return Err(AuthError::MalformedToken("header has no alg")),
    };
    if alg != "RS256" {
        return Err(AuthError::UnsupportedAlgorithm(sanitize(&alg)));
    }
    if header.crit.is_some() {
        return Err(AuthError::MalformedToken(
            "header has critical extensions (crit)",
        ));
    }
    match header.kid {
        Some(Value::String(kid)) if !kid.is_empty() => Ok(kid),
        Some(Value::String(_)) | None => Err(AuthError::MissingKeyId),
        Some(_) => Err(AuthError::MalformedToken("kid is not a string")),
    }
}

fn map_jwt_error(err: jsonwebtoken::errors::Error) -> AuthError {
    match err.kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer {
            found: String::new(),
        },
        ErrorKind::InvalidAudience => AuthError::WrongAudience { found: None },
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "sub" => AuthError::MissingSubject,
            "iss" => AuthError::MissingClaim("iss"),
            _ => AuthError::MissingClaim("exp"),
        },
        ErrorKind::InvalidClaimFormat(claim) => match claim.as_str() {
            "nbf" => AuthError::InvalidClaim("nbf"),
            _ => AuthError::InvalidClaim("exp"),
        },
        ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
            AuthError::UnsupportedAlgorithm("(rejected by verifier)".to_owned())
        }
        ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            AuthError::KeysUnavailable("JWKS key is not a valid RSA key".to_owned())
        }
        ErrorKind::Base64(_) => AuthError::MalformedToken("invalid base64url"),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            AuthError::MalformedToken("claims are not a JSON object")
        }
        _ => AuthError::MalformedToken("token could not be decoded"),
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
