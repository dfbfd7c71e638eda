//! A Cognito user pool as the API's identity provider: its issuer, the URL
//! of its JWKS and the app client ids whose access tokens are accepted,
//! as three separate settings (an emulator or a proxy may serve the JWKS
//! at another address than the issuer the tokens name), and the
//! [`Verifier`] they make: RS256 access tokens (`token_use: "access"`,
//! `client_id` one of the ids) checked against keys fetched over HTTP,
//! cached, refetched on an unknown `kid` at most once per interval.

use std::time::Duration;

use super::jwks::{HttpKeys, JwksSource};
use super::verifier::Verifier;
use super::{AuthConfig, AuthError, TokenUse};

/// Environment variable: the pool's issuer URL.
pub const ENV_ISSUER: &str = "ATELIER_COGNITO_ISSUER";
/// Environment variable: the JWKS URL (default: the issuer's
/// `/.well-known/jwks.json`).
pub const ENV_JWKS_URL: &str = "ATELIER_COGNITO_JWKS_URL";
/// Environment variable: accepted app client ids, separated by commas.
pub const ENV_CLIENT_IDS: &str = "ATELIER_COGNITO_CLIENT_IDS";

/// Where a user pool's tokens come from and who they are for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CognitoSettings {
    /// `https://cognito-idp.<region>.amazonaws.com/<pool id>`: the `iss`
    /// of the pool's tokens.
    pub issuer: String,
    /// Where the pool's signing keys are; `None` means the issuer's
    /// `/.well-known/jwks.json`, as on AWS.
    pub jwks_url: Option<String>,
    /// App clients whose access tokens are accepted (the desktop's, the
    /// daemon's, ...).
    pub client_ids: Vec<String>,
    /// Shortest time between two JWKS fetches (forged `kid`s cost at most
    /// one fetch per interval).
    pub min_refetch_interval: Duration,
}

impl CognitoSettings {
    /// A pool on AWS: issuer and JWKS URL from the region and pool id.
    pub fn for_pool(region: &str, pool_id: &str, client_ids: Vec<String>) -> Self {
        CognitoSettings {
            issuer: format!("https://cognito-idp.{region}.amazonaws.com/{pool_id}"),
            jwks_url: None,
            client_ids,
            min_refetch_interval: JwksSource::DEFAULT_MIN_REFETCH_INTERVAL,
        }
    }

    /// The settings in the environment ([`ENV_ISSUER`], [`ENV_JWKS_URL`],
    /// [`ENV_CLIENT_IDS`]); `None` without an issuer.
    pub fn from_env() -> Result<Option<Self>, AuthError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`CognitoSettings::from_env`] over any lookup (tests pass a map).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, AuthError> {
        let set = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let Some(issuer) = set(ENV_ISSUER) else {
            if set(ENV_CLIENT_IDS).is_some() || set(ENV_JWKS_URL).is_some() {
                return Err(AuthError::Settings(format!(
                    "{ENV_CLIENT_IDS} or {ENV_JWKS_URL} is set but {ENV_ISSUER} is not"
                )));
            }
            return Ok(None);
        };
        let client_ids: Vec<String> = set(ENV_CLIENT_IDS)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        let settings = CognitoSettings {
            issuer: issuer.trim_end_matches('/').to_owned(),
            jwks_url: set(ENV_JWKS_URL),
            client_ids,
            min_refetch_interval: JwksSource::DEFAULT_MIN_REFETCH_INTERVAL,
        };
        settings.check()?;
        Ok(Some(settings))
    }

    /// Where the keys are fetched from.
    pub fn jwks_url(&self) -> String {
        self.jwks_url
            .clone()
            .unwrap_or_else(|| format!("{}/.well-known/jwks.json", self.issuer))
    }

    fn check(&self) -> Result<(), AuthError> {
        if self.client_ids.is_empty() {
            return Err(AuthError::Settings(format!(
                "no app client id: set {ENV_CLIENT_IDS} (comma-separated)"
            )));
        }
        if !self.issuer.starts_with("https://") && !self.issuer.starts_with("http://") {
            return Err(AuthError::Settings(format!(
                "{ENV_ISSUER} {:?} is not a URL",
                self.issuer
            )));
        }
        Ok(())
    }

    /// What accepted tokens say: this issuer, one of these clients, access
    /// tokens only (an ID token is refused), the default leeway.
    pub fn auth_config(&self) -> AuthConfig {
        AuthConfig {
            issuer: self.issuer.clone(),
            audiences: self.client_ids.clone(),
            token_use: TokenUse::Access,
            leeway_secs: AuthConfig::DEFAULT_LEEWAY_SECS,
        }
    }

    /// The verifier for this pool, its keys fetched over HTTP on first use.
    pub fn verifier(&self) -> Result<Verifier, AuthError> {
        self.check()?;
        let keys = JwksSource::new(HttpKeys::new(&self.jwks_url())?)
            .with_min_refetch_interval(self.min_refetch_interval);
        Ok(Verifier::new(self.auth_config(), keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn settings_come_from_the_environment() {
        let s = CognitoSettings::from_lookup(lookup(&[
            (
                ENV_ISSUER,
                "https://cognito-idp.eu-central-1.amazonaws.com/eu-central-1_X/",
            ),
            (ENV_CLIENT_IDS, " desktop , daemon,"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            s.issuer,
            "https://cognito-idp.eu-central-1.amazonaws.com/eu-central-1_X"
        );
        assert_eq!(s.client_ids, ["desktop", "daemon"]);
        assert_eq!(
            s.jwks_url(),
            "https://cognito-idp.eu-central-1.amazonaws.com/eu-central-1_X/.well-known/jwks.json"
        );
        let with_jwks = CognitoSettings::from_lookup(lookup(&[
            (
                ENV_ISSUER,
                "https://cognito-idp.eu-central-1.amazonaws.com/p",
            ),
            (ENV_JWKS_URL, "http://127.0.0.1:9/p/.well-known/jwks.json"),
            (ENV_CLIENT_IDS, "c"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            with_jwks.jwks_url(),
            "http://127.0.0.1:9/p/.well-known/jwks.json"
        );
        assert_eq!(with_jwks.auth_config().token_use, TokenUse::Access);
    }

    #[test]
    fn incomplete_settings_are_refused_with_what_is_missing() {
        assert_eq!(CognitoSettings::from_lookup(lookup(&[])).unwrap(), None);
        let cases: &[&[(&str, &str)]] = &[
            &[(ENV_ISSUER, "https://x/p")],
            &[(ENV_ISSUER, "https://x/p"), (ENV_CLIENT_IDS, " , ")],
            &[(ENV_CLIENT_IDS, "c")],
            &[(ENV_ISSUER, "cognito"), (ENV_CLIENT_IDS, "c")],
        ];
        for vars in cases {
            let err = CognitoSettings::from_lookup(lookup(vars)).unwrap_err();
            assert!(matches!(err, AuthError::Settings(_)), "{vars:?}: {err}");
        }
        let bad_url = CognitoSettings {
            jwks_url: Some("file:///etc/passwd".into()),
            ..CognitoSettings::for_pool("eu-central-1", "p", vec!["c".into()])
        };
        assert!(matches!(
            bad_url.verifier(),
            Err(AuthError::KeysUnavailable(_))
        ));
    }
}
