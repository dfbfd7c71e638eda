//! The checks every bearer token goes through (see the [`crate::auth`]
//! docs for the list), and the clock they read.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::jwks::{JwksSource, KeySource};
use super::{AuthConfig, AuthError, Claims, TokenUse, sanitize, value_text};

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
    accepted: Arc<std::sync::Mutex<Accepted>>,
}

/// Accepted tokens by SHA-256: their claims and the `kid` that signed them.
type Accepted = HashMap<[u8; 32], (Claims, String)>;

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

        let accepted =
            |aud: Option<&str>| aud.is_some_and(|a| config.audiences.iter().any(|c| c == a));
        let audience_ok = match config.token_use {
            TokenUse::Access => accepted(str_claim("client_id")),
            TokenUse::Id => match claims.get("aud") {
                Some(Value::String(aud)) => accepted(Some(aud)),
                Some(Value::Array(auds)) => auds.iter().any(|a| accepted(a.as_str())),
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
