//! Provider keys on Lambda, read once at cold start from SSM Parameter
//! Store, where Amplify keeps its secrets (SecureString parameters).
//!
//! [`SECRET_PARAMETERS_ENV`] names, for each secret of [`SECRET_NAMES`],
//! the parameters that may hold it, in order (Amplify: the branch's own,
//! then the app-wide one):
//!
//! ```json
//! {"GEMINI_API_KEY": ["/amplify/app/main-branch-0123456789/GEMINI_API_KEY",
//!                     "/amplify/shared/app/GEMINI_API_KEY"]}
//! ```
//!
//! [`fetch`] reads them all in one `GetParameters` per ten names, with
//! decryption, and takes each secret from the first parameter that exists.
//! A secret none of whose parameters exists stops the function at start
//! with an error naming the parameters and how to set them; so does a
//! parameter store it cannot read. Values are never logged, and a
//! [`Secret`] prints as `***`.

use aws_smithy_types::error::display::DisplayErrorContext;
use std::collections::BTreeMap;
use std::fmt;

use crate::aws_sdk::SdkSettings;

/// The variable naming where each secret lives.
pub const SECRET_PARAMETERS_ENV: &str = "ATELIER_SECRET_PARAMETERS";

/// The secrets the function takes from the parameter store, by the names
/// of the variables that otherwise carry them (`ProviderConfig`).
pub const SECRET_NAMES: [&str; 3] = [
    "GEMINI_API_KEY",
    "REPLICATE_API_TOKEN",
    "REPLICATE_WEBHOOK_SECRET",
];

/// `GetParameters` takes at most this many names.
const NAMES_PER_REQUEST: usize = 10;

/// A secret's value. Neither `Debug` nor `Display` shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where each secret may be: parameter names, tried in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretParameters {
    pub by_secret: BTreeMap<String, Vec<String>>,
}

impl SecretParameters {
    /// Parses [`SECRET_PARAMETERS_ENV`]'s value: secrets of
    /// [`SECRET_NAMES`] only, each with one or more absolute parameter
    /// names.
    pub fn parse(json: &str) -> Result<SecretParameters, String> {
        let by_secret: BTreeMap<String, Vec<String>> = serde_json::from_str(json).map_err(|e| {
            format!("is not a JSON object of secret names to lists of SSM parameter names: {e}")
        })?;
        for (secret, paths) in &by_secret {
            if !SECRET_NAMES.contains(&secret.as_str()) {
                return Err(format!(
                    "names {secret:?}, which is not a secret this function reads ({})",
                    SECRET_NAMES.join(", ")
                ));
            }
            if paths.is_empty() {
                return Err(format!("gives {secret} no parameter"));
            }
            if let Some(bad) = paths
                .iter()
                .find(|p| !p.starts_with('/') || p.len() > 2048 || p.contains(char::is_whitespace))
            {
                return Err(format!(
                    "gives {secret} the parameter {bad:?}: parameter names start with `/` and hold no spaces"
                ));
            }
        }
        Ok(SecretParameters { by_secret })
    }

    /// Every parameter name, once.
    fn parameter_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_secret.values().flatten().cloned().collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Why the secrets could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// The parameter store did not answer, or refused.
    #[error("reading the provider secrets from SSM Parameter Store: {0}")]
    Unreadable(String),
    /// Secrets none of whose parameters exists.
    #[error(
        "provider secrets missing from SSM Parameter Store: {}. Set each as an Amplify secret \
         (Amplify console: Hosting > Secrets, or `npx ampx sandbox secret set NAME`), then \
         start the function again",
        .0.iter().map(|(s, p)| format!("{s} (none of {})", p.join(", "))).collect::<Vec<_>>().join("; ")
    )]
    Missing(Vec<(String, Vec<String>)>),
}

/// Where the parameter store is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SsmEndpoint {
    /// An emulator's URL; `None`: AWS.
    pub url: Option<String>,
    pub region: String,
    /// Fixed credentials (an emulator takes any); `None`: the default
    /// chain (on Lambda, the function's role).
    pub credentials: Option<(String, String)>,
}

/// An SSM client for `endpoint` (`crate::aws_sdk`). Sends nothing yet.
pub async fn client(endpoint: &SsmEndpoint) -> aws_sdk_ssm::Client {
    let config = crate::aws_sdk::load(&SdkSettings {
        endpoint: endpoint.url.clone(),
        credentials: endpoint.credentials.clone(),
        ..SdkSettings::new(endpoint.region.clone())
    })
    .await;
    aws_sdk_ssm::Client::new(&config)
}

/// Reads every secret `parameters` names, decrypted: each from the first
/// of its parameters that exists.
pub async fn fetch(
    client: &aws_sdk_ssm::Client,
    parameters: &SecretParameters,
) -> Result<BTreeMap<String, Secret>, SecretError> {
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    for names in parameters.parameter_names().chunks(NAMES_PER_REQUEST) {
        let out = client
            .get_parameters()
            .set_names(Some(names.to_vec()))
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| SecretError::Unreadable(DisplayErrorContext(e).to_string()))?;
        for p in out.parameters() {
            if let (Some(name), Some(value)) = (p.name(), p.value())
                && !value.trim().is_empty()
            {
                found.insert(name.to_owned(), value.trim().to_owned());
            }
        }
    }
    let mut secrets = BTreeMap::new();
    let mut missing = Vec::new();
    for (secret, paths) in &parameters.by_secret {
        match paths.iter().find_map(|p| found.get(p).map(|v| (p, v))) {
            Some((path, value)) => {
                tracing::info!(secret = %secret, parameter = %path, "provider secret read");
                secrets.insert(secret.clone(), Secret(value.clone()));
            }
            None => missing.push((secret.clone(), paths.clone())),
        }
    }
    if missing.is_empty() {
        Ok(secrets)
    } else {
        Err(SecretError::Missing(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse_and_bad_ones_are_refused_with_the_reason() {
        let ok = SecretParameters::parse(
            r#"{"GEMINI_API_KEY": ["/amplify/a/b/GEMINI_API_KEY", "/amplify/shared/a/GEMINI_API_KEY"],
                "REPLICATE_API_TOKEN": ["/x/REPLICATE_API_TOKEN"]}"#,
        )
        .unwrap();
        assert_eq!(ok.by_secret["GEMINI_API_KEY"].len(), 2);
        assert_eq!(ok.parameter_names().len(), 3);
        for (json, why) in [
            ("not json", "JSON object"),
            (r#"["GEMINI_API_KEY"]"#, "JSON object"),
            (
                r#"{"AWS_SECRET_ACCESS_KEY": ["/x"]}"#,
                "not a secret this function reads",
            ),
            (r#"{"GEMINI_API_KEY": []}"#, "no parameter"),
            (r#"{"GEMINI_API_KEY": ["relative"]}"#, "start with `/`"),
            (r#"{"GEMINI_API_KEY": ["/a b"]}"#, "start with `/`"),
        ] {
            let err = SecretParameters::parse(json).unwrap_err();
            assert!(err.contains(why), "{json}: {err}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret("AIza-very-secret".into());
        assert_eq!(format!("{s:?}"), "***");
        let missing = SecretError::Missing(vec![(
            "GEMINI_API_KEY".into(),
            vec![
                "/branch/GEMINI_API_KEY".into(),
                "/shared/GEMINI_API_KEY".into(),
            ],
        )]);
        let text = missing.to_string();
        assert!(
            text.contains(
                "GEMINI_API_KEY (none of /branch/GEMINI_API_KEY, /shared/GEMINI_API_KEY)"
            ) && text.contains("ampx sandbox secret set"),
            "{text}"
        );
    }
}
