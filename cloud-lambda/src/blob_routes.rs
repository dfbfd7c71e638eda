//! Images move beside the API, never through it: `POST /upload-url` and
//! `GET /download-url` hand an authenticated user a short-lived URL for one
//! of their blobs (pinned to its SHA-256, size and content type), and the
//! client moves the bytes there directly — S3 on AWS, or, on the embedded
//! backend, `PUT`/`GET /v1/blob-transfer?t=…`, whose signed token is the
//! permission (no bearer token), streamed to and from disk.

use axum::body::Body;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use core_sync::blob::MAX_BLOB_BYTES;
use serde::Deserialize;

use crate::api::{Json, User, query_pairs, single};
use crate::error::{ApiError, Problem};
use crate::state::AppState;
use crate::storage::embedded::TransferError;
use crate::storage::{StorageError, TransferUrl, validate_sha256};
use core_sync::sync::protocol::UploadUrlRequest;

/// The image types the server takes.
const IMAGE_TYPES: [&str; 3] = ["image/png", "image/jpeg", "image/webp"];

/// Where to upload one image: a short-lived URL pinned to its SHA-256, size
/// and content type. `PUT` the bytes there with exactly the headers given
/// (no bearer token: the URL is the permission).
#[utoipa::path(post, path = "/upload-url", tag = "blobs",
    request_body = crate::api::openapi::UploadUrlRequestDoc,
    responses((status = 200, description = "Where to PUT the bytes", body = crate::api::openapi::TransferUrlDoc)),
    security(("bearer" = [])))]
pub async fn upload_url(
    State(state): State<AppState>,
    User(user): User,
    Json(req): Json<UploadUrlRequest>,
) -> Result<Json<TransferUrl>, ApiError> {
    check_sha(&req.sha256)?;
    let max = MAX_BLOB_BYTES.min(state.limits.config.max_image_bytes as u64);
    if req.bytes > max {
        return Err(ApiError::invalid(
            "image_too_large",
            format!(
                "The image is {} bytes; images up to {max} bytes are taken.",
                req.bytes
            ),
        ));
    }
    if req.bytes == 0 {
        return Err(ApiError::invalid("empty_image", "An image of 0 bytes."));
    }
    if !IMAGE_TYPES.contains(&req.content_type.as_str()) {
        return Err(ApiError::UnsupportedImage(format!(
            "{:?} is not an image type this service takes (PNG, JPEG or WebP).",
            req.content_type
        )));
    }
    let url = state
        .blobs
        .upload_url(&user, &req.sha256, req.bytes, &req.content_type)
        .await?;
    Ok(Json(url))
}

/// The query of `GET /download-url` (for the document).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct DownloadUrlQuery {
    /// SHA-256 of the image's bytes.
    #[param(pattern = "^[0-9a-f]{64}$")]
    sha256: String,
}

/// Where to download one of the user's images: a short-lived URL.
#[utoipa::path(get, path = "/download-url", tag = "blobs",
    params(DownloadUrlQuery),
    responses((status = 200, description = "Where to GET the bytes", body = crate::api::openapi::TransferUrlDoc),
        (status = 404, description = "The user has no such image", body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn download_url(
    State(state): State<AppState>,
    User(user): User,
    RawQuery(query): RawQuery,
) -> Result<Json<TransferUrl>, ApiError> {
    let pairs = query_pairs(query.as_deref(), &["sha256"])?;
    let sha = single(&pairs, "sha256")?
        .ok_or_else(|| ApiError::invalid("missing_parameter", "sha256 is required"))?;
    check_sha(sha)?;
    match state.blobs.download_url(&user, sha).await? {
        Some(url) => Ok(Json(url)),
        None => Err(ApiError::Missing(format!(
            "There is no uploaded image {}; it may belong to another account.",
            sha
        ))),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransferQuery {
    /// The signed grant the transfer URL carries.
    pub t: String,
}

/// Receives an upload an upload URL allows (embedded backend; the URL is
/// the permission, no bearer token).
#[utoipa::path(put, path = "/v1/blob-transfer", tag = "blobs", params(TransferQuery),
    request_body(content = Vec<u8>, content_type = "image/*",
        description = "The image, with the Content-Type its upload URL names"),
    responses((status = 201, description = "Stored"),
        (status = 403, description = "The URL is not valid or has expired", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn transfer_put(
    State(state): State<AppState>,
    Query(q): Query<TransferQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(local) = &state.local_blobs else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let grant = match local.check(&q.t, "put", now_secs()) {
        Ok(g) => g,
        Err(e) => return transfer_error(e),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    match local
        .receive(&grant, content_type, body.into_data_stream())
        .await
    {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(e) => transfer_error(e),
    }
}

/// Streams the download a download URL allows (embedded backend).
#[utoipa::path(get, path = "/v1/blob-transfer", tag = "blobs", params(TransferQuery),
    responses((status = 200, description = "The image's bytes", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 403, description = "The URL is not valid or has expired", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn transfer_get(
    State(state): State<AppState>,
    Query(q): Query<TransferQuery>,
) -> Response {
    let Some(local) = &state.local_blobs else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let path = match local
        .check(&q.t, "get", now_secs())
        .and_then(|g| local.file_for(&g))
    {
        Ok(p) => p,
        Err(e) => return transfer_error(e),
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) => return transfer_error(TransferError::NotFound),
    };
    let len = file.metadata().await.map(|m| m.len()).ok();
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(file)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(len) = len {
        h.insert(header::CONTENT_LENGTH, len.into());
    }
    response
}

/// Transfer refusals, shaped like the object store's: the URL is the
/// permission, so a bad or expired one is 403.
fn transfer_error(e: TransferError) -> Response {
    if let TransferError::Storage(full @ StorageError::Full(_)) = e {
        // No room for the image: the API's own answer (507, retry later).
        return ApiError::from(full).into_response();
    }
    let status = match &e {
        TransferError::BadSignature(_) | TransferError::Expired => StatusCode::FORBIDDEN,
        TransferError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        TransferError::WrongType { .. } | TransferError::NotAnImage => {
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        }
        TransferError::Mismatch { .. } => StatusCode::BAD_REQUEST,
        TransferError::NotFound => StatusCode::NOT_FOUND,
        TransferError::Storage(e) => {
            tracing::error!(error = %e, "blob transfer failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    let (code, detail) = match &e {
        TransferError::Storage(_) => (
            "internal",
            "The image could not be stored; try again.".to_owned(),
        ),
        TransferError::BadSignature(_) => ("bad_transfer_url", e.to_string()),
        TransferError::Expired => ("transfer_url_expired", e.to_string()),
        TransferError::TooLarge(_) => ("image_too_large", e.to_string()),
        TransferError::WrongType { .. } | TransferError::NotAnImage => {
            ("unsupported_image", e.to_string())
        }
        TransferError::Mismatch { .. } => ("image_mismatch", e.to_string()),
        TransferError::NotFound => ("not_found", e.to_string()),
    };
    Problem::new(status, code, detail).into_response()
}

fn check_sha(sha: &str) -> Result<(), ApiError> {
    validate_sha256(sha).map_err(|_| {
        ApiError::invalid(
            "bad_sha256",
            format!(
                "{:?} is not a SHA-256 (64 lowercase hex characters)",
                sha.chars().take(80).collect::<String>()
            ),
        )
    })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
