//! Blob transfer for clients of the embedded server: `PUT /v1/blobs/{sha256}`
//! and `GET /v1/blobs/{sha256}`, scoped to the authenticated user. Uploads
//! are checked by content (the bytes must hash to the name and be a PNG,
//! JPEG or WebP by their magic bytes) before anything is stored. (On AWS,
//! clients use presigned S3 URLs that pin the checksum instead.)

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::ApiError;
use crate::images;
use crate::storage::validate_sha256;

/// Uploads an image, named by the SHA-256 of its bytes.
#[utoipa::path(put, path = "/v1/blobs/{sha256}", tag = "blobs",
    params(("sha256" = String, Path, pattern = "^[0-9a-f]{64}$", description = "SHA-256 of the bytes")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "A PNG, JPEG or WebP image within the size and pixel limits"),
    responses((status = 201, description = "Stored"), (status = 200, description = "Already stored")),
    security(("bearer" = [])))]
pub async fn put_blob(
    State(state): State<AppState>,
    Path(sha): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let user = state.user(&headers).await?;
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(core_sync::sync::protocol::MAX_REQUEST_BYTES)
        } else {
            ApiError::BadRequest(r.body_text())
        }
    })?;
    validate_sha256(&sha).map_err(|_| ApiError::BadRequest(format!("{sha:?} is not a SHA-256")))?;
    // By content: type, size, and the pixels its header claims.
    crate::api::validate::image(&body, &state.limits.config)?;
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

/// Downloads an image the user stored.
#[utoipa::path(get, path = "/v1/blobs/{sha256}", tag = "blobs",
    params(("sha256" = String, Path, pattern = "^[0-9a-f]{64}$", description = "SHA-256 of the bytes")),
    responses((status = 200, description = "The image", body = Vec<u8>, content_type = "image/*"),
        (status = 404, description = "The user has no such image", body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_blob(
    State(state): State<AppState>,
    Path(sha): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let user = state.user(&headers).await?;
    validate_sha256(&sha).map_err(|_| ApiError::BadRequest(format!("{sha:?} is not a SHA-256")))?;
    let bytes =
        state.blobs.get(&user, &sha).await?.ok_or_else(|| {
            ApiError::Missing(format!("There is no image {sha} in this account."))
        })?;
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
