//! `BlobStore` on S3: one object per user and SHA-256 at
//! `users/{userId}/{raw|derivatives|thumbnails}/{sha256}` in the blob
//! bucket, written once (`If-None-Match: *`) with its SHA-256 as the
//! checksum S3 verifies, and re-hashed when read.
//!
//! The trait does not say what kind of image a blob is, so every blob it
//! stores is `raw` ([`BlobKind::Raw`]); [`AwsBlobs::key`] names the other
//! kinds for code that knows (presigned URLs). The S3 client and bucket
//! are reachable ([`AwsBlobs::client`], [`AwsBlobs::bucket`]) for
//! presigning.

use async_trait::async_trait;
use core_sync::blob::sha256_hex;

use super::objects;
use crate::storage::{BlobStore, StorageError, validate_sha256, validate_user};

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
