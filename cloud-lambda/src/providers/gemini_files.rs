//! Gemini's Files API (media upload): inputs too large to send inline are
//! uploaded once and referenced as `file_data {mime_type, file_uri}` in
//! `generateContent`, as the official `google-genai` SDKs do.
//!
//! The resumable protocol: `POST {base}/upload/v1beta/files` with
//! `X-Goog-Upload-Protocol: resumable`, `X-Goog-Upload-Command: start` and
//! the size and type in `X-Goog-Upload-Header-Content-{Length,Type}` answers
//! with the session's `X-Goog-Upload-URL`; the bytes follow in 8 MiB chunks
//! (`X-Goog-Upload-Command: upload`, the last `upload, finalize`, each with
//! its `X-Goog-Upload-Offset`), each answered with `X-Goog-Upload-Status`
//! `active`, the last `final` and the [`GeminiFile`]. Files live 48 hours;
//! `GET /v1beta/files/{id}` reads one, `DELETE` removes it. Google answers
//! 403 PERMISSION_DENIED for a file that does not exist (or is not yours).

use axum::body::Bytes;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::gemini::{Google, google_error};
use super::{ProviderConfig, ProviderError, bad_response, codes, transport_error, trim_base};

/// Bytes per upload request (the SDKs' chunk size).
pub const CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// A file uploaded to Gemini.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GeminiFile {
    /// `files/{id}`.
    pub name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub mime_type: Option<String>,
    /// An int64 as a string, as proto JSON writes it.
    #[serde(default)]
    pub size_bytes: Option<String>,
    #[serde(default)]
    pub create_time: Option<String>,
    #[serde(default)]
    pub expiration_time: Option<String>,
    /// Base64 of the SHA-256 of the bytes.
    #[serde(default)]
    pub sha256_hash: Option<String>,
    /// What `file_data.file_uri` takes.
    #[serde(default)]
    pub uri: String,
    /// `PROCESSING`, `ACTIVE` or `FAILED`.
    #[serde(default)]
    pub state: Option<String>,
}

impl GeminiFile {
    pub fn expires_at_millis(&self) -> Option<i64> {
        super::rfc3339_millis(self.expiration_time.as_deref()?)
    }

    pub fn is_active(&self) -> bool {
        self.state.as_deref().is_none_or(|s| s == "ACTIVE")
    }
}

#[derive(Deserialize)]
struct Wrapped {
    file: GeminiFile,
}

/// Uploads `bytes` (of type `mime`) and answers the file once it is final.
pub async fn upload(
    cfg: &ProviderConfig,
    bytes: Bytes,
    mime: &str,
    display_name: &str,
) -> Result<GeminiFile, ProviderError> {
    let key = key(cfg)?;
    let client = cfg.client()?;
    let timeout = cfg.upload_timeout;
    let start_url = format!("{}/upload/v1beta/files", trim_base(&cfg.gemini_base));
    let resp = client
        .post(&start_url)
        .header("x-goog-api-key", key)
        .header("X-Goog-Upload-Protocol", "resumable")
        .header("X-Goog-Upload-Command", "start")
        .header(
            "X-Goog-Upload-Header-Content-Length",
            bytes.len().to_string(),
        )
        .header("X-Goog-Upload-Header-Content-Type", mime)
        .json(&json!({ "file": { "display_name": display_name } }))
        .timeout(cfg.api_timeout)
        .send()
        .await
        .map_err(|e| failed(transport_error("Gemini", &e, cfg.api_timeout)))?;
    let status = resp.status();
    let session = resp
        .headers()
        .get("x-goog-upload-url")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let headers = resp.headers().clone();
    let body = resp
        .bytes()
        .await
        .map_err(|e| failed(transport_error("Gemini", &e, cfg.api_timeout)))?;
    if !status.is_success() {
        return Err(failed(files_error(cfg, status, &headers, &body)));
    }
    let session = session.ok_or_else(|| failed(bad_response("Gemini")))?;

    let total = bytes.len();
    let mut offset = 0usize;
    loop {
        let end = (offset + CHUNK_BYTES).min(total);
        let last = end == total;
        let resp = client
            .post(&session)
            .header("x-goog-api-key", key)
            .header(
                "X-Goog-Upload-Command",
                if last { "upload, finalize" } else { "upload" },
            )
            .header("X-Goog-Upload-Offset", offset.to_string())
            .body(bytes.slice(offset..end))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| failed(transport_error("Gemini", &e, timeout)))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let upload_status = headers
            .get("x-goog-upload-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = resp
            .bytes()
            .await
            .map_err(|e| failed(transport_error("Gemini", &e, timeout)))?;
        if !status.is_success() {
            return Err(failed(files_error(cfg, status, &headers, &body)));
        }
        offset = end;
        match (upload_status.as_str(), last) {
            ("active", false) => continue,
            ("final", true) => {
                let file = serde_json::from_slice::<Wrapped>(&body)
                    .map_err(|_| failed(bad_response("Gemini")))?
                    .file;
                if file.uri.is_empty() {
                    return Err(failed(bad_response("Gemini")));
                }
                return Ok(file);
            }
            _ => {
                return Err(failed(ProviderError::transient(
                    format!(
                        "Gemini ended the upload session unexpectedly (status {:?} after {offset} of {total} bytes).",
                        upload_status
                    ),
                    None,
                )));
            }
        }
    }
}

/// The file, or `None` when Gemini no longer has it.
pub async fn get(cfg: &ProviderConfig, name: &str) -> Result<Option<GeminiFile>, ProviderError> {
    match call(cfg, Method::GET, name).await {
        Ok(body) => serde_json::from_slice(&body)
            .map(Some)
            .map_err(|_| bad_response("Gemini")),
        Err(ProviderError::Permanent { code, .. }) if code == codes::NOT_FOUND => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes the file; `false` when it was already gone.
pub async fn delete(cfg: &ProviderConfig, name: &str) -> Result<bool, ProviderError> {
    match call(cfg, Method::DELETE, name).await {
        Ok(_) => Ok(true),
        Err(ProviderError::Permanent { code, .. }) if code == codes::NOT_FOUND => Ok(false),
        Err(e) => Err(e),
    }
}

fn key(cfg: &ProviderConfig) -> Result<&str, ProviderError> {
    cfg.gemini_key.as_deref().ok_or_else(|| {
        ProviderError::permanent(
            codes::MISSING_KEY,
            "No Gemini API key is configured (GEMINI_API_KEY).",
        )
    })
}

/// `files/{id}` with an id of lowercase letters, digits and dashes.
fn check_name(name: &str) -> Result<&str, ProviderError> {
    name.strip_prefix("files/")
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 40
                && id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
        .map(|_| name)
        .ok_or_else(|| {
            ProviderError::permanent(codes::INVALID_INPUT, "That is not a Gemini file name.")
        })
}

async fn call(cfg: &ProviderConfig, method: Method, name: &str) -> Result<Bytes, ProviderError> {
    let name = check_name(name)?;
    let key = key(cfg)?;
    let client = cfg.client()?;
    let url = format!("{}/v1beta/{name}", trim_base(&cfg.gemini_base));
    let resp = client
        .request(method, url)
        .header("x-goog-api-key", key)
        .timeout(cfg.api_timeout)
        .send()
        .await
        .map_err(|e| failed(transport_error("Gemini", &e, cfg.api_timeout)))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .bytes()
        .await
        .map_err(|e| failed(transport_error("Gemini", &e, cfg.api_timeout)))?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(match files_error(cfg, status, &headers, &body) {
            e @ ProviderError::Permanent {
                code: codes::NOT_FOUND,
                ..
            } => e,
            other => failed(other),
        })
    }
}

/// Google's error, read for the Files API: 403 and 404 mean "no such file".
fn files_error(
    cfg: &ProviderConfig,
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> ProviderError {
    match status {
        StatusCode::NOT_FOUND => {
            ProviderError::permanent(codes::NOT_FOUND, "Gemini no longer has the uploaded file.")
        }
        StatusCode::FORBIDDEN
            if String::from_utf8_lossy(body).contains("permission to access the File") =>
        {
            ProviderError::permanent(codes::NOT_FOUND, "Gemini no longer has the uploaded file.")
        }
        _ => google_error(cfg, Google::Gemini, "the Files API", status, headers, body),
    }
}

fn failed(e: ProviderError) -> ProviderError {
    const WHAT: &str = "Uploading the input image to Gemini failed";
    match e {
        ProviderError::Transient {
            reason,
            retry_after,
        } => ProviderError::transient(format!("{WHAT}: {reason}"), retry_after),
        ProviderError::Permanent { code, message } => ProviderError::Permanent {
            code,
            message: format!("{WHAT}: {message}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_file_parses() {
        let body = r#"{"file":{"name":"files/abc-123","displayName":"in.png","mimeType":"image/png",
          "sizeBytes":"20971520","createTime":"2026-11-29T10:00:00.123456Z","updateTime":"2026-11-29T10:00:00.123456Z",
          "expirationTime":"2026-12-01T10:00:00.123456Z","sha256Hash":"ZmFrZQ==",
          "uri":"https://generativelanguage.googleapis.com/v1beta/files/abc-123","state":"ACTIVE","source":"UPLOADED"}}"#;
        let f = serde_json::from_str::<Wrapped>(body).unwrap().file;
        assert_eq!(f.name, "files/abc-123");
        assert_eq!(f.size_bytes.as_deref(), Some("20971520"));
        assert!(f.is_active());
        assert_eq!(f.expires_at_millis(), Some(1_796_119_200_123));
    }

    #[test]
    fn only_file_names_are_accepted() {
        assert!(check_name("files/abc-123").is_ok());
        for bad in ["abc", "files/", "files/../models", "files/ABC", "models/x"] {
            assert_eq!(
                check_name(bad).unwrap_err().code(),
                codes::INVALID_INPUT,
                "{bad}"
            );
        }
    }
}
