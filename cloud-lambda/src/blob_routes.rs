//! Images move beside the API, never through it: `POST /upload-url` and
//! `GET /download-url` hand an authenticated user a short-lived URL for one
//! of their blobs (pinned to its SHA-256, size and content type), and the
//! client moves the bytes there directly — S3 on AWS, or, on the embedded
//! backend, `PUT`/`GET /v1/blob-transfer?t=…`, whose signed token is the
//! permission (no bearer token), streamed to and from disk.

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use core_sync::blob::MAX_BLOB_BYTES;
use serde::Deserialize;

use crate::app::AppState;
use crate::error::ApiError;
use crate::storage::embedded::TransferError;
use crate::storage::{TransferUrl, validate_sha256};
use core_sync::sync::protocol::UploadUrlRequest;

/// The image types the server takes.
const IMAGE_TYPES: [&str; 3] = ["image/png", "image/jpeg", "image/webp"];

/// `POST /upload-url`: where to upload one image.
pub async fn upload_url(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<UploadUrlRequest>,
) -> Result<Json<TransferUrl>, ApiError> {
    let user = state.user(&headers).await?;
    check_sha(&req.sha256)?;
    if req.bytes > MAX_BLOB_BYTES {
        return Err(ApiError::PayloadTooLarge(MAX_BLOB_BYTES as usize));
    }
    if req.bytes == 0 {
        return Err(ApiError::BadRequest("an image of 0 bytes".into()));
    }
    if !IMAGE_TYPES.contains(&req.content_type.as_str()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let url = state
        .blobs
        .upload_url(&user, &req.sha256, req.bytes, &req.content_type)
        .await?;
    Ok(Json(url))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadUrlQuery {
    pub sha256: String,
}

/// `GET /download-url?sha256=…`: where to download one of the user's images.
pub async fn download_url(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<DownloadUrlQuery>,
) -> Result<Json<TransferUrl>, ApiError> {
    let user = state.user(&headers).await?;
    check_sha(&q.sha256)?;
    match state.blobs.download_url(&user, &q.sha256).await? {
        Some(url) => Ok(Json(url)),
        None => Err(ApiError::NotFound(format!("blob {}", q.sha256))),
    }
}

#[derive(Debug, Deserialize)]
pub struct TransferQuery {
    pub t: String,
}

/// `PUT /v1/blob-transfer?t=…` (embedded backend): receives an upload.
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

/// `GET /v1/blob-transfer?t=…` (embedded backend): streams a download.
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
    let message = match &e {
        TransferError::Storage(_) => "the blob could not be stored; try again".to_owned(),
        e => e.to_string(),
    };
    (
        status,
        Json(serde_json::json!({"error": {"code": "blob_transfer", "message": message}})),
    )
        .into_response()
}

fn check_sha(sha: &str) -> Result<(), ApiError> {
    validate_sha256(sha).map_err(|_| ApiError::BadRequest(format!("{sha:?} is not a SHA-256")))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
