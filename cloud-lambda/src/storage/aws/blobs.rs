//! `BlobStore` on S3: one object per user and SHA-256 at
//! `users/{userId}/{raw|derivatives|thumbnails}/{sha256}` in the blob
//! bucket, written once (`If-None-Match: *`) with its SHA-256 as the
//! checksum S3 verifies, and re-hashed when read.
//!
//! The trait does not say what kind of image a blob is, so every blob it
//! stores or hands a URL for is `raw` ([`BlobKind::Raw`]): uploads, provider
//! outputs and thumbnails alike (a blob is named by its hash, so one image
//! is stored once whatever it is used as); [`AwsBlobs::key`] names the
//! other kinds for code that knows.
//!
//! Transfer URLs are S3 presigned requests ([`TRANSFER_URL_TTL`]): the
//! upload a `PUT` whose signed headers pin the SHA-256 checksum
//! (`x-amz-checksum-sha256`, which S3 checks against the bytes), the
//! content type and the length; the download a `GET`, only for a blob the
//! user has.

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use base64::Engine as _;
use core_sync::blob::sha256_hex;

use super::errors::sdk_error;
use super::objects;
use crate::storage::{
    BlobStore, StorageError, TRANSFER_URL_TTL, TransferUrl, validate_sha256, validate_user,
};

/// Which prefix of a user's blobs an object lives under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// Images as the user added them or a provider returned them.
    Raw,
    /// Images the server derived (resized, converted).
    Derivative,
    /// Small previews for lists.
    Thumbnail,
}

impl BlobKind {
    /// The prefix segment, as `aws-schema.json` names it.
    pub fn segment(self) -> &'static str {
        match self {
            BlobKind::Raw => "raw",
            BlobKind::Derivative => "derivatives",
            BlobKind::Thumbnail => "thumbnails",
        }
    }
}

/// A user id as a key segment: itself when it is made of ASCII letters,
/// digits, `-` and `_` (Cognito subs, the local issuer's ids), else `~` and
/// its hex SHA-256, so no id can reach another's prefix or form `..`.
pub fn user_segment(user: &str) -> String {
    let plain = !user.is_empty()
        && user
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if plain {
        user.to_owned()
    } else {
        format!("~{}", sha256_hex(user.as_bytes()))
    }
}

/// Blobs in S3. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AwsBlobs {
    s3: aws_sdk_s3::Client,
    bucket: String,
}

impl AwsBlobs {
    pub(super) fn new(s3: aws_sdk_s3::Client, bucket: String) -> AwsBlobs {
        AwsBlobs { s3, bucket }
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.s3
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object key of `user`'s blob `sha256` of `kind` (both validated
    /// by the caller).
    pub fn key(&self, user: &str, kind: BlobKind, sha256: &str) -> String {
        format!("users/{}/{}/{sha256}", user_segment(user), kind.segment())
    }

    fn checked_key(&self, user: &str, sha256: &str) -> Result<String, StorageError> {
        validate_user(user)?;
        validate_sha256(sha256)?;
        Ok(self.key(user, BlobKind::Raw, sha256))
    }
}

/// How long transfer URLs live, and when one made now expires.
fn presigning() -> Result<(PresigningConfig, u64), StorageError> {
    let config = PresigningConfig::expires_in(TRANSFER_URL_TTL)
        .map_err(|e| StorageError::Backend(format!("presigning: {e}")))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok((config, now + TRANSFER_URL_TTL.as_secs()))
}

/// A presigned request as the client makes it: URL, method, and the
/// headers it must send exactly (they are signed).
fn transfer(presigned: &PresignedRequest, expires_at: u64) -> TransferUrl {
    TransferUrl {
        url: presigned.uri().to_owned(),
        method: presigned.method().to_owned(),
        headers: presigned
            .headers()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
            .collect(),
        expires_at,
    }
}

#[async_trait]
impl BlobStore for AwsBlobs {
    async fn put(&self, user: &str, sha256: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let key = self.checked_key(user, sha256)?;
        let actual = sha256_hex(bytes);
        if actual != sha256 {
            return Err(StorageError::Invalid(format!(
                "bytes hash to {actual}, not the expected {sha256}"
            )));
        }
        objects::put_once(&self.s3, &self.bucket, &key, bytes).await
    }

    async fn get(&self, user: &str, sha256: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let key = self.checked_key(user, sha256)?;
        objects::get(&self.s3, &self.bucket, &key, Some(sha256)).await
    }

    async fn exists(&self, user: &str, sha256: &str) -> Result<bool, StorageError> {
        let key = self.checked_key(user, sha256)?;
        objects::exists(&self.s3, &self.bucket, &key).await
    }

    async fn upload_url(
        &self,
        user: &str,
        sha256: &str,
        bytes: u64,
        content_type: &str,
    ) -> Result<TransferUrl, StorageError> {
        let key = self.checked_key(user, sha256)?;
        let length = i64::try_from(bytes)
            .map_err(|_| StorageError::Invalid(format!("{bytes} bytes is too large")))?;
        let digest = hex::decode(sha256).expect("a validated SHA-256 is hex");
        let (config, expires_at) = presigning()?;
        let presigned = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type(content_type)
            .content_length(length)
            .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(digest))
            .presigned(config)
            .await
            .map_err(|e| sdk_error(&format!("presigning an upload to {key}"), e))?;
        Ok(transfer(&presigned, expires_at))
    }

    async fn download_url(
        &self,
        user: &str,
        sha256: &str,
    ) -> Result<Option<TransferUrl>, StorageError> {
        let key = self.checked_key(user, sha256)?;
        if !objects::exists(&self.s3, &self.bucket, &key).await? {
            return Ok(None);
        }
        let (config, expires_at) = presigning()?;
        let presigned = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .presigned(config)
            .await
            .map_err(|e| sdk_error(&format!("presigning a download of {key}"), e))?;
        Ok(Some(transfer(&presigned, expires_at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_schema_and_odd_user_ids_are_hashed() {
        let layouts = &super::super::schema::schema().bucket("blobs").keys;
        let sha = sha256_hex(b"pixels");
        let sub = "0f3c2a9e-6f1b-4d7a-9a51-2b8c7d9e1f00";
        for (kind, name) in [
            (BlobKind::Raw, "raw"),
            (BlobKind::Derivative, "derivatives"),
            (BlobKind::Thumbnail, "thumbnails"),
        ] {
            let expected = layouts[name]
                .replace("{userId}", sub)
                .replace("{sha256}", &sha);
            let key = format!("users/{}/{}/{sha}", user_segment(sub), kind.segment());
            assert_eq!(key, expected);
        }
        for odd in ["../../evil user", "a/b", "..", "ü", "x y", "~abc"] {
            let seg = user_segment(odd);
            assert_eq!(seg, format!("~{}", sha256_hex(odd.as_bytes())), "{odd}");
        }
        assert_eq!(user_segment("alice_01-x"), "alice_01-x");
    }
}
