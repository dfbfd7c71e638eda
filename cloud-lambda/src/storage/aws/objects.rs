//! Content-addressed S3 objects: written once with `If-None-Match: *` (an
//! object already there under its hash is the same bytes, so a 412 is
//! success), carrying their SHA-256 as the checksum S3 verifies, and
//! checked against their name when read.
//!
//! In a versioned bucket (the documents' one) a deleted object stays as a
//! noncurrent version until the bucket's lifecycle expires it, and
//! [`get_any`] reads it: since a key names its bytes, every version of it
//! holds the same ones. That is what lets tables restored to an earlier
//! time read the snapshots and chunks later compactions deleted.

use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::errors::{code_of, sdk_error, status_of};
use crate::storage::StorageError;

/// Writes `bytes` under `key` (a content address) unless an object is
/// there already.
pub(super) async fn put_once(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    bytes: &[u8],
) -> Result<(), StorageError> {
    put_once_tagged(s3, bucket, key, bytes, None).await
}

/// [`put_once`] with object tags (`tagging`: `key=value&…`).
pub(super) async fn put_once_tagged(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    bytes: &[u8],
    tagging: Option<&str>,
) -> Result<(), StorageError> {
    let digest = Sha256::digest(bytes);
    let sent = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .if_none_match("*")
        .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(digest))
        .content_type("application/octet-stream")
        .set_tagging(tagging.map(str::to_owned))
        .body(ByteStream::from(bytes.to_vec()))
        .send()
        .await;
    match sent {
        Ok(_) => Ok(()),
        Err(e) if status_of(&e) == Some(412) || code_of(&e) == Some("PreconditionFailed") => Ok(()),
        // Another writer of the same object was in flight (S3 answers 409
        // to concurrent conditional writes): it writes the same bytes.
        Err(e) if code_of(&e) == Some("ConditionalRequestConflict") => Ok(()),
        Err(e) => Err(sdk_error(&format!("writing s3://{bucket}/{key}"), e)),
    }
}

/// The object's bytes, `None` if there is none. `sha256`: the hex digest
/// the bytes must have (a mismatch is an error naming the object).
pub(super) async fn get(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    sha256: Option<&str>,
) -> Result<Option<Vec<u8>>, StorageError> {
    let what = || format!("reading s3://{bucket}/{key}");
    let out = match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => out,
        Err(e) if matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_))) => {
            return Ok(None);
        }
        Err(e) if status_of(&e) == Some(404) && code_of(&e) != Some("NoSuchBucket") => {
            return Ok(None);
        }
        Err(e) => return Err(sdk_error(&what(), e)),
    };
    checked_body(out, &what(), bucket, key, sha256)
        .await
        .map(Some)
}

/// Like [`get`], but an object deleted in a versioned bucket is read from
/// its newest noncurrent version (see the module docs).
pub(super) async fn get_any(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    sha256: Option<&str>,
) -> Result<Option<Vec<u8>>, StorageError> {
    if let Some(bytes) = get(s3, bucket, key, sha256).await? {
        return Ok(Some(bytes));
    }
    let versions = s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(key)
        .max_keys(10)
        .send()
        .await
        .map_err(|e| sdk_error(&format!("listing versions of s3://{bucket}/{key}"), e))?;
    let newest = versions
        .versions()
        .iter()
        .filter(|v| v.key() == Some(key))
        .max_by_key(|v| v.last_modified().map(|t| t.as_nanos()))
        .and_then(|v| v.version_id().map(str::to_owned));
    let Some(version) = newest else {
        return Ok(None);
    };
    let what = || format!("reading s3://{bucket}/{key} version {version}");
    let out = match s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .version_id(&version)
        .send()
        .await
    {
        Ok(out) => out,
        // Expired meanwhile.
        Err(e) if status_of(&e) == Some(404) => return Ok(None),
        Err(e) => return Err(sdk_error(&what(), e)),
    };
    checked_body(out, &what(), bucket, key, sha256)
        .await
        .map(Some)
}

/// An object's bytes, which must hash to `sha256` (when given).
async fn checked_body(
    out: GetObjectOutput,
    what: &str,
    bucket: &str,
    key: &str,
    sha256: Option<&str>,
) -> Result<Vec<u8>, StorageError> {
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| StorageError::Unavailable(format!("{what}: the body broke off: {e}")))?
        .into_bytes()
        .to_vec();
    check(bucket, key, sha256, &bytes)?;
    Ok(bytes)
}

/// The bytes must hash to `sha256` (when given).
fn check(bucket: &str, key: &str, sha256: Option<&str>, bytes: &[u8]) -> Result<(), StorageError> {
    if let Some(expected) = sha256 {
        let actual = hex::encode(Sha256::digest(bytes));
        if actual != expected {
            return Err(StorageError::Backend(format!(
                "s3://{bucket}/{key} is corrupt: its bytes hash to {actual}"
            )));
        }
    }
    Ok(())
}

/// Whether the object exists.
pub(super) async fn exists(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<bool, StorageError> {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.as_service_error(), Some(HeadObjectError::NotFound(_))) => Ok(false),
        Err(e) => Err(sdk_error(&format!("looking up s3://{bucket}/{key}"), e)),
    }
}

/// The object's size, `None` if there is none.
pub(super) async fn size(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<u64>, StorageError> {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(out) => Ok(Some(
            out.content_length()
                .and_then(|l| u64::try_from(l).ok())
                .unwrap_or(0),
        )),
        Err(e) if matches!(e.as_service_error(), Some(HeadObjectError::NotFound(_))) => Ok(None),
        Err(e) => Err(sdk_error(&format!("looking up s3://{bucket}/{key}"), e)),
    }
}

/// Deletes the object (absent is fine).
pub(super) async fn delete(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<(), StorageError> {
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map(drop)
        .map_err(|e| sdk_error(&format!("deleting s3://{bucket}/{key}"), e))
}

/// The keys under `prefix` (every page).
pub(super) async fn list(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, StorageError> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("listing s3://{bucket}/{prefix}"), e))?;
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        token = out.next_continuation_token().map(str::to_owned);
        if token.is_none() || out.is_truncated() != Some(true) {
            return Ok(keys);
        }
    }
}
