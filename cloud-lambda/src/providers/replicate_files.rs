//! Replicate's Files API: inputs too large for a data URL are uploaded and
//! the file's `urls.get` is passed as the model input, as the official
//! clients do.
//!
//! `POST {replicate_base}/v1/files` (multipart: the file in field `content`
//! with its filename and content type, optional `metadata` JSON) answers
//! 201 with a [`ReplicateFile`]; `GET /v1/files/{id}` reads one back;
//! `DELETE /v1/files/{id}` answers 204. Errors are Replicate's
//! problem JSON, classified like the predictions API's (401 →
//! [`codes::AUTH`], 413 → [`codes::INVALID_INPUT`], 429 and 5xx → transient);
//! every message says it was the upload that failed.

use std::collections::BTreeMap;

use axum::body::Bytes;
use reqwest::header::AUTHORIZATION;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::replicate::replicate_error;
use super::{ProviderConfig, ProviderError, bad_response, codes, transport_error, trim_base};

/// A file uploaded to Replicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicateFile {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub content_type: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub etag: Option<String>,
    /// By algorithm name (`sha256`, `md5`).
    #[serde(default)]
    pub checksums: BTreeMap<String, String>,
    #[serde(default)]
    pub metadata: Value,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub urls: FileUrls,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileUrls {
    /// The URL to pass as a model input.
    #[serde(default)]
    pub get: Option<String>,
}

impl ReplicateFile {
    /// The URL a prediction takes as its input.
    pub fn input_url(&self) -> Result<&str, ProviderError> {
        self.urls
            .get
            .as_deref()
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .ok_or_else(|| bad_response("Replicate's file upload"))
    }

    /// `expires_at` in unix milliseconds.
    pub fn expires_at_millis(&self) -> Option<i64> {
        super::rfc3339_millis(self.expires_at.as_deref()?)
    }
}

/// Uploads `bytes` as a file named `filename`. `metadata` is stored with it
/// (Replicate shows it back; we name the operation there).
pub async fn create_file(
    cfg: &ProviderConfig,
    bytes: Bytes,
    filename: &str,
    content_type: &str,
    metadata: Option<&Value>,
) -> Result<ReplicateFile, ProviderError> {
    let len = bytes.len() as u64;
    let part = Part::stream_with_length(reqwest::Body::from(bytes), len)
        .file_name(filename.to_owned())
        .mime_str(content_type)
        .map_err(|_| {
            ProviderError::permanent(
                codes::INVALID_INPUT,
                format!("{content_type:?} is not a content type."),
            )
        })?;
    let mut form = Form::new().part("content", part);
    if let Some(m) = metadata {
        form = form.text("metadata", m.to_string());
    }
    let url = format!("{}/v1/files", trim_base(&cfg.replicate_base));
    let (status, body) = call(cfg, Method::POST, &url, Some(form)).await?;
    if status != StatusCode::CREATED && status != StatusCode::OK {
        return Err(ProviderError::permanent(
            codes::BAD_RESPONSE,
            format!(
                "Uploading the input image to Replicate failed: it answered HTTP {}.",
                status.as_u16()
            ),
        ));
    }
    let file: ReplicateFile =
        serde_json::from_slice(&body).map_err(|_| bad_response("Replicate's file upload"))?;
    file.input_url()?;
    Ok(file)
}

/// The file, or `None` when Replicate no longer has it (deleted, expired).
pub async fn get_file(
    cfg: &ProviderConfig,
    id: &str,
) -> Result<Option<ReplicateFile>, ProviderError> {
    check_id(id)?;
    let url = format!("{}/v1/files/{id}", trim_base(&cfg.replicate_base));
    match call(cfg, Method::GET, &url, None).await {
        Ok((_, body)) => serde_json::from_slice(&body)
            .map(Some)
            .map_err(|_| bad_response("Replicate's file upload")),
        Err(ProviderError::Permanent { code, .. }) if code == codes::NOT_FOUND => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes the file; `false` when it was already gone.
pub async fn delete_file(cfg: &ProviderConfig, id: &str) -> Result<bool, ProviderError> {
    check_id(id)?;
    let url = format!("{}/v1/files/{id}", trim_base(&cfg.replicate_base));
    match call(cfg, Method::DELETE, &url, None).await {
        Ok(_) => Ok(true),
        Err(ProviderError::Permanent { code, .. }) if code == codes::NOT_FOUND => Ok(false),
        Err(e) => Err(e),
    }
}

fn check_id(id: &str) -> Result<(), ProviderError> {
    if !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        Ok(())
    } else {
        Err(ProviderError::permanent(
            codes::INVALID_INPUT,
            "That is not a Replicate file id.",
        ))
    }
}

/// One authenticated Files API call; a failure says it was the upload.
async fn call(
    cfg: &ProviderConfig,
    method: Method,
    url: &str,
    form: Option<Form>,
) -> Result<(StatusCode, Bytes), ProviderError> {
    let token = cfg.replicate_token.as_deref().ok_or_else(|| {
        ProviderError::permanent(
            codes::MISSING_KEY,
            "No Replicate API token is configured (REPLICATE_API_TOKEN).",
        )
    })?;
    let client = cfg.client()?;
    let timeout = if form.is_some() {
        cfg.upload_timeout
    } else {
        cfg.api_timeout
    };
    let mut req = client
        .request(method, url)
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .timeout(timeout);
    if let Some(form) = form {
        req = req.multipart(form);
    }
    let upload_failed = |e: ProviderError| match e {
        ProviderError::Transient {
            reason,
            retry_after,
        } => ProviderError::transient(
            format!("Uploading the input image to Replicate failed: {reason}"),
            retry_after,
        ),
        ProviderError::Permanent { code, message } => ProviderError::Permanent {
            code,
            message: format!("Uploading the input image to Replicate failed: {message}"),
        },
    };
    let resp = req
        .send()
        .await
        .map_err(|e| upload_failed(transport_error("Replicate", &e, timeout)))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .bytes()
        .await
        .map_err(|e| upload_failed(transport_error("Replicate", &e, timeout)))?;
    if status.is_success() {
        return Ok((status, body));
    }
    let e = replicate_error(cfg, status, &headers, &body, "the input file");
    Err(match e {
        // A missing file is an answer for get and delete, not a failure.
        ProviderError::Permanent { code, .. } if code == codes::NOT_FOUND => e,
        other => upload_failed(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_file_object_parses() {
        let body = r#"{"id":"MTQzODcyMDct0YjZkLWE1ZGYtMmRjZTViNWIwOGEyNjNhNS0","name":"photo.webp",
          "content_type":"image/webp","size":96936,"etag":"f211779ff7502705bbf42e9874a17ab3",
          "checksums":{"sha256":"7282eb6991fa4f38d80c312dc207d938c156d714c94681623aedac846488e7d3","md5":"f211779ff7502705bbf42e9874a17ab3"},
          "metadata":{"customer_reference_id":"123"},"created_at":"2024-06-28T10:16:04.062Z",
          "expires_at":"2024-06-29T10:16:04.062Z",
          "urls":{"get":"https://api.replicate.com/v1/files/MTQzODcyMDct0YjZkLWE1ZGYtMmRjZTViNWIwOGEyNjNhNS0"}}"#;
        let f: ReplicateFile = serde_json::from_str(body).unwrap();
        assert_eq!(f.size, 96_936);
        assert_eq!(f.checksums["md5"], "f211779ff7502705bbf42e9874a17ab3");
        assert_eq!(
            f.input_url().unwrap(),
            "https://api.replicate.com/v1/files/MTQzODcyMDct0YjZkLWE1ZGYtMmRjZTViNWIwOGEyNjNhNS0"
        );
        assert_eq!(f.expires_at_millis(), Some(1_719_656_164_062));
        let no_url: ReplicateFile = serde_json::from_str(r#"{"id":"x","urls":{}}"#).unwrap();
        assert_eq!(no_url.input_url().unwrap_err().code(), codes::BAD_RESPONSE);
    }

    #[tokio::test]
    async fn calls_are_refused_before_sending_when_they_cannot_work() {
        let cfg = ProviderConfig {
            replicate_base: "http://127.0.0.1:9".into(),
            ..ProviderConfig::default()
        };
        let e = create_file(
            &cfg,
            Bytes::from_static(b"png"),
            "in.png",
            "image/png",
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), codes::MISSING_KEY);
        assert_eq!(
            get_file(&cfg, "../x").await.unwrap_err().code(),
            codes::INVALID_INPUT
        );
        assert_eq!(
            delete_file(&cfg, "").await.unwrap_err().code(),
            codes::INVALID_INPUT
        );
    }
}
