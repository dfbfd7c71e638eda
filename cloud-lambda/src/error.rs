//! The API's one error type and its one shape on the wire: RFC 9457
//! problem details (`application/problem+json`) with a machine-readable
//! `code` and a `detail` sentence a person can act on:
//!
//! ```json
//! {"type": "urn:atelier:problem:not_found", "title": "Not found", "status": 404,
//!  "code": "not_found", "detail": "There is no asset 3f…; it may belong to another account."}
//! ```
//!
//! Client errors say what was wrong; internal errors are logged with the
//! request's span and answered with a generic sentence, never leaked. Every
//! route answers this shape, including errors that arise outside handlers
//! (unknown routes, wrong methods, timeouts, body limits): [`problem_layer`]
//! turns any other error response into a problem.

use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, Response as HttpResponse, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::auth::AuthError;
use crate::storage::StorageError;

/// The `Content-Type` of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// A well-formed request that asks for something refused, with its own
    /// code (`unknown_field`, `model_retired`, `image_too_large`, …).
    #[error("{detail}")]
    Invalid { code: &'static str, detail: String },
    /// A well-formed request the resource's current state refuses (a tool
    /// that needs an image on an asset without one).
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    /// A webhook whose signature or timestamp does not verify.
    #[error("webhook refused: {0}")]
    BadSignature(String),
    /// Absent, or another user's: the two are indistinguishable on purpose.
    #[error("no document {0}")]
    NotFound(String),
    /// Like [`ApiError::NotFound`], with the whole sentence given.
    #[error("{0}")]
    Missing(String),
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// Bytes that are not an image this service takes.
    #[error("{0}")]
    UnsupportedImage(String),
    /// The body, after decompression, is over this many bytes.
    #[error("request body is larger than {0} bytes (after decompression)")]
    PayloadTooLarge(usize),
    /// A request over a bound its size in bytes does not show (documents
    /// named, work declared), with its own code.
    #[error("{detail}")]
    TooLarge { code: &'static str, detail: String },
    /// More at once than one user may have (long polls held), with its
    /// own code.
    #[error("{detail}")]
    TooMany {
        code: &'static str,
        detail: String,
        retry_after: Duration,
    },
    /// The per-user request rate was exceeded.
    #[error("too many requests; retry in {} s", retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration },
    #[error("{0}")]
    Unavailable(String),
    /// The server's storage is full or read-only: nothing was stored.
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// An RFC 9457 problem details body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"type": "urn:atelier:problem:not_found", "title": "Not Found",
    "status": 404, "code": "not_found", "detail": "There is no asset 3f2a…."}))]
pub struct Problem {
    /// `urn:atelier:problem:{code}`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The status's short, fixed summary.
    pub title: String,
    pub status: u16,
    /// Machine-readable and stable: `not_found`, `rate_limited`, `model_retired`, …
    pub code: String,
    /// What was wrong, for a person: what to change or when to retry.
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Problem {
        Problem {
            type_: format!("urn:atelier:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            code: code.to_owned(),
            detail: detail.into(),
        }
    }

    /// The response: this body with `Content-Type: application/problem+json`.
    pub fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).expect("a problem always serialises");
        (status, [(header::CONTENT_TYPE, PROBLEM_JSON)], body).into_response()
    }
}

impl ApiError {
    /// A refused request with its own code.
    pub fn invalid(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::Invalid {
            code,
            detail: detail.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unauthorized(_) | ApiError::BadSignature(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) | ApiError::Missing(_) => StatusCode::NOT_FOUND,
            ApiError::UnsupportedMediaType | ApiError::UnsupportedImage(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Invalid { code, .. } | ApiError::Conflict { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::BadSignature(_) => "bad_signature",
            ApiError::NotFound(_) | ApiError::Missing(_) => "not_found",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::UnsupportedImage(_) => "unsupported_image",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::TooLarge { code, .. } | ApiError::TooMany { code, .. } => code,
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::InsufficientStorage(_) => "insufficient_storage",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => ApiError::NotFound("document".into()),
            StorageError::Invalid(m) => ApiError::BadRequest(m),
            StorageError::Conflict => ApiError::Unavailable("a concurrent write won; retry".into()),
            StorageError::Unavailable(detail) => {
                // The detail names tables and endpoints: logged, not sent.
                tracing::warn!(error = %detail, "storage unavailable");
                ApiError::Unavailable("storage is busy or out of reach; retry shortly".into())
            }
            StorageError::Full(what) => {
                tracing::error!(%what, "storage is full or read-only");
                ApiError::InsufficientStorage(
                    "the server has no room to store this (its disk is full or read-only); \
                     nothing of this request was stored: retry later"
                        .into(),
                )
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    /// A write run to its end (`crate::write::to_the_end`) that did not end.
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::Internal(format!("the write did not finish: {e}"))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge(core_sync::sync::protocol::MAX_REQUEST_BYTES)
            }
            other => {
                let text = other.body_text();
                if text.contains("unknown field") {
                    ApiError::invalid("unknown_field", text)
                } else {
                    ApiError::BadRequest(text)
                }
            }
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "The server failed; the request can be retried.".to_string()
            }
            // The Display text is for logs (the verifier logged it); clients
            // get the short explanation, as `AuthError` documents.
            ApiError::Unauthorized(e) => e.client_message().to_string(),
            other => other.to_string(),
        };
        let mut response = Problem::new(self.status(), self.code(), detail).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthorized(e) => {
                if let Ok(value) = HeaderValue::from_str(&e.www_authenticate()) {
                    // RFC 7235: a 401 carries a challenge.
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            ApiError::RateLimited { retry_after } | ApiError::TooMany { retry_after, .. } => {
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(1u64));
            }
            ApiError::InsufficientStorage(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(60u64));
            }
            _ => {}
        }
        response
    }
}

/// Turns an error response that is not yet a problem (from axum itself or
/// a tower layer: unknown route, wrong method, timeout, body limit, bad
/// `Content-Encoding`) into one, keeping its status and headers (`Allow`).
pub async fn problem_layer(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON));
    if is_problem {
        return response;
    }
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => (
            "not_found",
            "There is no such resource; see /openapi.json for the routes.",
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "This route does not take that method; the Allow header lists those it takes.",
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "timeout",
            "The request took longer than the server allows; retry it.",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "The request body is too large."),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "The body's Content-Type or Content-Encoding is not supported (JSON; zstd or gzip).",
        ),
        s if s.is_server_error() => ("internal", "The server failed; the request can be retried."),
        _ => ("bad_request", "The request could not be read."),
    };
    let (mut parts, _) = response.into_parts();
    let problem = Problem::new(status, code, detail);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    let body = serde_json::to_vec(&problem).expect("a problem always serialises");
    HttpResponse::from_parts(parts, Body::from(body))
}
