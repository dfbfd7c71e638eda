//! Blob transfer for clients of the embedded server: `PUT /v1/blobs/{sha256}`
//! and `GET /v1/blobs/{sha256}`, scoped to the authenticated user. Uploads
//! are checked by content (the bytes must hash to the name and be a PNG,
//! JPEG or WebP by their magic bytes) before anything is stored. (On AWS,
//! clients use presigned S3 URLs that pin the checksum instead.)

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::ApiError;
use crate::images;
use crate::storage::validate_sha256;

pub async fn put_blob(
    State(state): State<AppState>,
    Path(sha): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let user = state.user(&headers).await?;
    validate_sha256(&sha).map_err(|_| ApiError::BadRequest(format!("{sha:?} is not a SHA-256")))?;
    if images::sniff(&body).is_none() {
        return Err(ApiError::UnsupportedMediaType);
    }
    let actual = core_sync::blob::sha256_hex(&body);
    if actual != sha {
        return Err(ApiError::BadRequest(format!(
            "the bytes hash to {actual}, not {sha}"
        )));
    }
    if state.blobs.exists(&user, &sha).await? {
        return Ok(StatusCode::OK);
    }
    state.blobs.put(&user, &sha, &body).await?;
    Ok(StatusCode::CREATED)
}

pub async fn get_blob(
    State(state): State<AppState>,
    Path(sha): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let user = state.user(&headers).await?;
    validate_sha256(&sha).map_err(|_| ApiError::BadRequest(format!("{sha:?} is not a SHA-256")))?;
    let bytes = state
        .blobs
        .get(&user, &sha)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("blob {sha}")))?;
    let mime = images::sniff(&bytes).unwrap_or("application/octet-stream");
    Ok((
        [
            (header::CONTENT_TYPE, mime),
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable",
            ),
        ],
        bytes,
    )
        .into_response())
}
