//! The API's one error type. Client errors say what was wrong; internal
//! errors are logged with the request's span and answered with a generic
//! message, never leaked.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use core_sync::sync::protocol::{ErrorBody, ErrorDetail};

use crate::auth::AuthError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    /// A webhook whose signature or timestamp does not verify.
    #[error("webhook refused: {0}")]
    BadSignature(String),
    /// Absent, or another user's: the two are indistinguishable on purpose.
    #[error("no document {0}")]
    NotFound(String),
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// The body, after decompression, is over this many bytes.
    #[error("request body is larger than {0} bytes (after decompression)")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) | ApiError::BadSignature(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::BadSignature(_) => "bad_signature",
            ApiError::NotFound(_) => "not_found",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Unavailable(_) => "unavailable",
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
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "the server failed; the request can be retried".to_string()
            }
            // The Display text is for logs (the verifier logged it); clients
            // get the short explanation, as `AuthError` documents.
            ApiError::Unauthorized(e) => e.client_message().to_string(),
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().into(),
                message,
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let ApiError::Unauthorized(e) = &self
            && let Ok(value) = HeaderValue::from_str(&e.www_authenticate())
        {
            // RFC 7235: a 401 carries a challenge.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}
