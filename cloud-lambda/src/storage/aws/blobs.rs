//! `BlobStore` on S3: one object per user, kind and SHA-256 at
//! `users/{userId}/{raw|derivatives|thumbnails}/{sha256}` in the blob
//! bucket, tagged `atelier-kind=<kind>` (`aws-schema.json`'s `kindTag`,
//! which the bucket's lifecycle rules select on), written once
//! (`If-None-Match: *`) with its SHA-256 as the checksum S3 verifies, and
//! re-hashed when read.
//!
//! Uploads through transfer URLs are `raw`; the server stores provider
//! outputs as `derivatives` and its previews as `thumbnails`
//! ([`BlobStore::put_as`]). A blob is found by its hash alone: a read
//! looks under each kind ([`BlobKind::ALL`], in that order; the existence
//! checks of a download run at once), so callers never need to know what
//! an image was made as.
//!
//! Transfer URLs are S3 presigned requests ([`TRANSFER_URL_TTL`]): the
//! upload a `PUT` whose signed headers pin the SHA-256 checksum
//! (`x-amz-checksum-sha256`, which S3 checks against the bytes), the
//! content type, the length and the kind tag; the download a `GET`, only
//! for a blob the user has.

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use base64::Engine as _;
use core_sync::blob::sha256_hex;

use super::errors::sdk_error;
use super::objects;
pub use crate::storage::BlobKind;
use crate::storage::{
    BlobStore, StorageError, TRANSFER_URL_TTL, TransferUrl, validate_sha256, validate_user,
};

/// The tag naming an object's kind, from `aws-schema.json`.
pub fn kind_tag() -> &'static str {
    super::schema::schema()
        .bucket("blobs")
        .kind_tag
        .as_deref()
        .expect("aws-schema.json gives the blobs bucket a kindTag (checked by a unit test)")
}

/// The `x-amz-tagging` value of an object of `kind`.
pub fn tagging(kind: BlobKind) -> String {
    format!("{}={}", kind_tag(), kind.segment())
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

    fn check(user: &str, sha256: &str) -> Result<(), StorageError> {
        validate_user(user)?;
        validate_sha256(sha256)
    }

    /// The key `user`'s blob `sha256` is stored under, looked up under
    /// every kind at once; the first kind of [`BlobKind::ALL`] that has it.
    async fn locate(&self, user: &str, sha256: &str) -> Result<Option<String>, StorageError> {
        Self::check(user, sha256)?;
        let keys = BlobKind::ALL.map(|kind| self.key(user, kind, sha256));
        let found = futures::future::join_all(
            keys.iter()
                .map(|key| objects::exists(&self.s3, &self.bucket, key)),
        )
        .await;
        for (key, found) in keys.into_iter().zip(found) {
            if found? {
                return Ok(Some(key));
            }
        }
        Ok(None)
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
        self.put_as(user, sha256, bytes, BlobKind::Raw).await
    }

    async fn put_as(
        &self,
        user: &str,
        sha256: &str,
        bytes: &[u8],
        kind: BlobKind,
    ) -> Result<(), StorageError> {
        Self::check(user, sha256)?;
        let actual = sha256_hex(bytes);
        if actual != sha256 {
            return Err(StorageError::Invalid(format!(
                "bytes hash to {actual}, not the expected {sha256}"
            )));
        }
        let key = self.key(user, kind, sha256);
        objects::put_once_tagged(&self.s3, &self.bucket, &key, bytes, Some(&tagging(kind))).await
    }

    async fn get(&self, user: &str, sha256: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Self::check(user, sha256)?;
        for kind in BlobKind::ALL {
            let key = self.key(user, kind, sha256);
            if let Some(bytes) = objects::get(&self.s3, &self.bucket, &key, Some(sha256)).await? {
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }

    async fn exists(&self, user: &str, sha256: &str) -> Result<bool, StorageError> {
        Ok(self.locate(user, sha256).await?.is_some())
    }

    async fn delete(&self, user: &str, sha256: &str) -> Result<u64, StorageError> {
        Self::check(user, sha256)?;
        // Under every kind it was stored as (one image may be two kinds).
        let mut freed = 0;
        for kind in BlobKind::ALL {
            let key = self.key(user, kind, sha256);
            if let Some(size) = objects::size(&self.s3, &self.bucket, &key).await? {
                objects::delete(&self.s3, &self.bucket, &key).await?;
                freed += size;
            }
        }
        Ok(freed)
    }

    async fn upload_url(
        &self,
        user: &str,
        sha256: &str,
        bytes: u64,
        content_type: &str,
    ) -> Result<TransferUrl, StorageError> {
        Self::check(user, sha256)?;
        let key = self.key(user, BlobKind::Raw, sha256);
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
            .tagging(tagging(BlobKind::Raw))
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
        let Some(key) = self.locate(user, sha256).await? else {
            return Ok(None);
        };
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
        // Every kind the code writes is a kind of the schema, and back.
        let mut kinds: Vec<&str> = BlobKind::ALL.iter().map(|k| k.segment()).collect();
        kinds.sort();
        assert_eq!(
            kinds,
            layouts.keys().map(String::as_str).collect::<Vec<_>>()
        );
        assert_eq!(tagging(BlobKind::Derivative), "atelier-kind=derivatives");
    }
}
