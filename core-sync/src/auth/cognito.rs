//! The Cognito identity provider's `InitiateAuth` (the JSON API at
//! `https://cognito-idp.<region>.amazonaws.com/`, `X-Amz-Target:
//! AWSCognitoIdentityProviderService.InitiateAuth`, `Content-Type:
//! application/x-amz-json-1.1`): `USER_PASSWORD_AUTH` signs in (the app
//! client must allow that flow), `REFRESH_TOKEN_AUTH` refreshes (Cognito
//! returns no new refresh token). Unsigned: these calls need no AWS
//! credentials. The password goes in the request body only; it is never
//! logged or kept.

use std::time::Duration;

use serde_json::{Value, json};

/// Tokens from a successful `InitiateAuth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResult {
    pub access_token: String,
    pub id_token: Option<String>,
    /// Present on sign-in, absent on refresh.
    pub refresh_token: Option<String>,
    pub expires_in: i64,
}

/// Why Cognito said no, or could not be asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CognitoError {
    /// `NotAuthorizedException`: a wrong password, a bad, expired or
    /// revoked refresh token.
    #[error("not authorized: {0}")]
    NotAuthorized(String),
    /// `UserNotFoundException`.
    #[error("no such user: {0}")]
    UserNotFound(String),
    /// `UserNotConfirmedException`.
    #[error("the user is not confirmed yet: {0}")]
    UserNotConfirmed(String),
    /// Any other Cognito error (`InvalidParameterException`,
    /// `ResourceNotFoundException`, throttling, ...).
    #[error("{kind}: {message}")]
    Other { kind: String, message: String },
    #[error("cannot reach Cognito: {0}")]
    Network(String),
}

impl CognitoError {
    /// The credentials were refused: sign in again (as opposed to a
    /// failure worth retrying).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            CognitoError::NotAuthorized(_)
                | CognitoError::UserNotFound(_)
                | CognitoError::UserNotConfirmed(_)
        )
    }
}

/// One user pool app client.
#[derive(Debug, Clone)]
pub struct CognitoClient {
    http: reqwest::Client,
    endpoint: String,
    client_id: String,
}

impl CognitoClient {
    /// The endpoint of a region: `https://cognito-idp.<region>.amazonaws.com/`.
    pub fn regional_endpoint(region: &str) -> String {
        format!("https://cognito-idp.{region}.amazonaws.com/")
    }

    pub fn new(endpoint: &str, client_id: &str) -> Result<CognitoClient, CognitoError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| CognitoError::Network(e.to_string()))?;
        Ok(CognitoClient {
            http,
            endpoint: endpoint.to_owned(),
            client_id: client_id.to_owned(),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Signs in with a user name and password (`USER_PASSWORD_AUTH`).
    pub async fn password_auth(
        &self,
        username: &str,
        password: &str,
    ) -> Result<AuthResult, CognitoError> {
        self.initiate_auth(
            "USER_PASSWORD_AUTH",
            json!({"USERNAME": username, "PASSWORD": password}),
        )
        .await
    }

    /// New access and ID tokens for a refresh token (`REFRESH_TOKEN_AUTH`).
    pub async fn refresh(&self, refresh_token: &str) -> Result<AuthResult, CognitoError> {
        self.initiate_auth(
            "REFRESH_TOKEN_AUTH",
            json!({"REFRESH_TOKEN": refresh_token}),
        )
        .await
    }

    async fn initiate_auth(&self, flow: &str, params: Value) -> Result<AuthResult, CognitoError> {
        let body = json!({"AuthFlow": flow, "ClientId": self.client_id, "AuthParameters": params});
        let resp = self
            .http
            .post(&self.endpoint)
            .header(
                "x-amz-target",
                "AWSCognitoIdentityProviderService.InitiateAuth",
            )
            .header(reqwest::header::CONTENT_TYPE, "application/x-amz-json-1.1")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| CognitoError::Network(e.without_url().to_string()))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| CognitoError::Network(e.to_string()))?;
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(error_of(status.as_u16(), &answer));
        }
        let result = &answer["AuthenticationResult"];
        let Some(access_token) = result["AccessToken"].as_str() else {
            // A challenge (NEW_PASSWORD_REQUIRED, MFA, ...) instead of tokens.
            let challenge = answer["ChallengeName"].as_str().unwrap_or("no tokens");
            return Err(CognitoError::Other {
                kind: "ChallengeRequired".into(),
                message: format!(
                    "Cognito asks for {challenge}; finish the sign-in in the hosted UI first"
                ),
            });
        };
        Ok(AuthResult {
            access_token: access_token.to_owned(),
            id_token: result["IdToken"].as_str().map(str::to_owned),
            refresh_token: result["RefreshToken"].as_str().map(str::to_owned),
            expires_in: result["ExpiresIn"].as_i64().unwrap_or(3600),
        })
    }
}

/// Cognito's error body: `{"__type": "NotAuthorizedException", "message": "…"}`
/// (the type may carry a `prefix#`).
fn error_of(status: u16, answer: &Value) -> CognitoError {
    let kind = answer["__type"]
        .as_str()
        .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
        .unwrap_or_else(|| format!("HTTP {status}"));
    let message = answer["message"]
        .as_str()
        .or_else(|| answer["Message"].as_str())
        .unwrap_or("")
        .to_owned();
    match kind.as_str() {
        "NotAuthorizedException" => CognitoError::NotAuthorized(message),
        "UserNotFoundException" => CognitoError::UserNotFound(message),
        "UserNotConfirmedException" => CognitoError::UserNotConfirmed(message),
        _ => CognitoError::Other { kind, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cognito_error_bodies_become_typed_errors() {
        let cases = [
            (
                json!({"__type": "NotAuthorizedException", "message": "Incorrect username or password."}),
                CognitoError::NotAuthorized("Incorrect username or password.".into()),
            ),
            (
                json!({"__type": "com.amazonaws#UserNotFoundException", "message": "User does not exist."}),
                CognitoError::UserNotFound("User does not exist.".into()),
            ),
            (
                json!({"__type": "UserNotConfirmedException", "message": "User is not confirmed."}),
                CognitoError::UserNotConfirmed("User is not confirmed.".into()),
            ),
            (
                json!({"__type": "InvalidParameterException", "message": "USER_PASSWORD_AUTH flow not enabled for this client"}),
                CognitoError::Other {
                    kind: "InvalidParameterException".into(),
                    message: "USER_PASSWORD_AUTH flow not enabled for this client".into(),
                },
            ),
            (
                Value::Null,
                CognitoError::Other {
                    kind: "HTTP 502".into(),
                    message: String::new(),
                },
            ),
        ];
        for (body, want) in cases {
            let status = if body.is_null() { 502 } else { 400 };
            assert_eq!(error_of(status, &body), want);
        }
        assert!(CognitoError::NotAuthorized(String::new()).is_refusal());
        assert!(!CognitoError::Network(String::new()).is_refusal());
    }
}
