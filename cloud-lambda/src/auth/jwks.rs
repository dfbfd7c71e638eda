//! Signing keys: JWKS documents ([`JwksJson`], [`Jwks`]), where they come
//! from ([`KeySource`]: a fixed set, or Cognito's JWKS URL over HTTP,
//! [`HttpKeys`]) and the cache in front of them ([`JwksSource`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Serialize};

use super::{AuthError, sanitize};

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

/// A JWKS fetched over HTTP: a Cognito user pool's
/// `https://cognito-idp.<region>.amazonaws.com/<pool id>/.well-known/jwks.json`,
/// or wherever [`super::CognitoSettings::jwks_url`] points. Put it behind a
/// [`JwksSource`], which caches the keys and limits how often it is asked.
pub struct HttpKeys {
    http: reqwest::Client,
    url: reqwest::Url,
}

impl HttpKeys {
    /// Largest JWKS document read (Cognito's is about 1 KB).
    pub const MAX_BYTES: usize = 256 * 1024;

    /// Fetches from `url` (`http` or `https`).
    pub fn new(url: &str) -> Result<Self, AuthError> {
        let parsed = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                AuthError::KeysUnavailable(format!(
                    "{:?} is not an http(s) JWKS URL",
                    sanitize(url)
                ))
            })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AuthError::KeysUnavailable(format!("HTTP client: {e}")))?;
        Ok(HttpKeys { http, url: parsed })
    }

    /// Where the keys come from.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }
}

#[async_trait]
impl KeySource for HttpKeys {
    async fn fetch(&self) -> Result<JwksJson, AuthError> {
        let unavailable =
            |what: String| AuthError::KeysUnavailable(format!("JWKS {}: {what}", self.url));
        let mut resp = self
            .http
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("answered HTTP {}", resp.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| unavailable(e.to_string()))? {
            if body.len() + chunk.len() > Self::MAX_BYTES {
                return Err(unavailable(format!(
                    "larger than {} bytes",
                    Self::MAX_BYTES
                )));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| unavailable(format!("not a JWKS: {e}")))
    }
}

impl fmt::Debug for HttpKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpKeys")
            .field("url", &self.url.as_str())
            .finish()
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

    pub(super) fn cached(&self, kid: &str) -> Option<Arc<DecodingKey>> {
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
