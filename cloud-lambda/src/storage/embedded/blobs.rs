//! Blobs of the embedded backend: files, one directory per user, moved by
//! the server's own signed, expiring transfer URLs (the embedded stand-in
//! for S3's presigned URLs). A URL names one user, one blob, its size and
//! content type, the direction and an expiry, signed with HMAC-SHA256
//! under a key kept in the data directory (0600); a tampered, expired or
//! other-direction URL is refused. Uploads stream to a temporary file,
//! hashed as they come, and are checked (size, hash, image type) before the
//! blob takes its name: nothing is held whole in memory.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use core_sync::blob::{IncomingBlob, sha256_hex};
use core_sync::private_fs;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{blob_storage_error, blocking, io_err};
use crate::storage::{
    BlobStore, StorageError, TRANSFER_URL_TTL, TransferUrl, validate_sha256, validate_user,
};

/// The path transfer URLs point at.
pub const TRANSFER_PATH: &str = "/v1/blob-transfer";

/// The key file, beside the blobs.
const KEY_FILE: &str = "transfer-key";

/// Blobs as files, one directory per user.
#[derive(Clone)]
pub struct EmbeddedBlobs {
    /// `DIR/blobs`.
    root: PathBuf,
    key: [u8; 32],
    /// A device's content-addressed blob directory on the same disk (the
    /// desktop's own server): every blob is one file, hard-linked under
    /// both names, so a laptop keeps one copy of each image.
    shared: Option<PathBuf>,
}

impl std::fmt::Debug for EmbeddedBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBlobs")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// Why a transfer was refused.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("the transfer URL is not valid: {0}")]
    BadSignature(&'static str),
    #[error("the transfer URL expired")]
    Expired,
    #[error("the upload is larger than the {0} bytes its URL allows")]
    TooLarge(u64),
    #[error("the upload's content type {found:?} is not the {signed:?} its URL allows")]
    WrongType { found: String, signed: String },
    #[error("the upload is not a PNG, JPEG or WebP image")]
    NotAnImage,
    #[error("the uploaded bytes hash to {actual}, not {expected}")]
    Mismatch { expected: String, actual: String },
    #[error("blob not found")]
    NotFound,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What a transfer URL allows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    /// "put" or "get".
    pub op: String,
    pub user: String,
    pub sha256: String,
    pub bytes: u64,
    pub content_type: String,
    pub expires_at: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl EmbeddedBlobs {
    /// Opens (creating if needed) the blob tree at `dir/blobs` and its
    /// signing key.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let root = dir.join("blobs");
        // Owner-only, and tightened if loose (see `core_sync::private_fs`).
        for sub in [root.join("tmp"), root.join("users")] {
            private_fs::create_dir(&sub).map_err(io_err(&sub))?;
        }
        private_fs::tighten_tree_top(&root);
        let key = load_or_create_key(&root.join(KEY_FILE))?;
        Ok(EmbeddedBlobs {
            root,
            key,
            shared: None,
        })
    }

    /// Shares blobs with the device blob directory `dir` (a
    /// `core_sync::blob::BlobStore` root: `dir/ab/cdef…`): each blob stored
    /// here is linked with the device's file of the same hash, whichever
    /// came first. Where links cannot be made (another filesystem), the
    /// copies stay apart.
    pub fn sharing_with(mut self, dir: impl Into<PathBuf>) -> Self {
        self.shared = Some(dir.into());
        self
    }

    /// Makes `dest` (a blob just stored) and the shared directory's file of
    /// the same hash one file.
    fn share(&self, sha256: &str, dest: &Path) {
        let Some(shared) = &self.shared else {
            return;
        };
        let theirs = shared.join(&sha256[..2]).join(&sha256[2..]);
        if let Err(e) = link_as_one(&self.root.join("tmp"), dest, &theirs) {
            tracing::warn!(blob = sha256, error = %e, "cannot share a blob with the device's copy");
        }
    }

    /// Where `user`'s blob `sha256` lives (both already validated).
    fn path_of(&self, user: &str, sha256: &str) -> PathBuf {
        self.root
            .join("users")
            .join(sha256_hex(user.as_bytes()))
            .join(sha256)
    }

    fn checked_path(&self, user: &str, sha256: &str) -> Result<PathBuf, StorageError> {
        validate_user(user)?;
        validate_sha256(sha256)?;
        Ok(self.path_of(user, sha256))
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// A signed token for `grant`.
    pub fn sign(&self, grant: &Grant) -> String {
        let payload = serde_json::to_vec(grant).expect("a grant serialises");
        let mut mac = self.mac();
        mac.update(&payload);
        let sig = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    /// The grant a token carries, if its signature is ours and it has not
    /// expired at `now`.
    pub fn check(&self, token: &str, op: &str, now: u64) -> Result<Grant, TransferError> {
        let (payload, sig) = token
            .split_once('.')
            .ok_or(TransferError::BadSignature("malformed"))?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TransferError::BadSignature("malformed"))?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| TransferError::BadSignature("malformed"))?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&sig)
            .map_err(|_| TransferError::BadSignature("signature does not match"))?;
        let grant: Grant = serde_json::from_slice(&payload)
            .map_err(|_| TransferError::BadSignature("malformed"))?;
        if grant.op != op {
            return Err(TransferError::BadSignature("made for another operation"));
        }
        if grant.expires_at < now {
            return Err(TransferError::Expired);
        }
        Ok(grant)
    }

    /// Receives an upload a grant allows, piece by piece, and stores it once
    /// it checks out (size, type, hash); otherwise nothing is stored.
    ///
    /// A refused upload is still read to its end (no further than the
    /// grant allows): a server that answers before the body has arrived
    /// closes the connection under the client's writes, and the client
    /// sees a reset instead of the answer, such as 507 on a full disk. Only
    /// a body over its allowed size is cut off.
    pub async fn receive<E: std::fmt::Display>(
        &self,
        grant: &Grant,
        content_type: Option<&str>,
        mut body: impl futures::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    ) -> Result<(), TransferError> {
        let mut received = 0;
        let result = self
            .take_upload(grant, content_type, &mut body, &mut received)
            .await;
        if let Err(e) = &result
            && !matches!(e, TransferError::TooLarge(_))
        {
            drain(&mut body, grant.bytes.saturating_sub(received)).await;
        }
        result
    }

    /// What [`Self::receive`] does but read a refused upload's rest:
    /// checks and stores, counting the bytes taken off `body` in
    /// `received`.
    async fn take_upload<E: std::fmt::Display>(
        &self,
        grant: &Grant,
        content_type: Option<&str>,
        body: &mut (impl futures::Stream<Item = Result<axum::body::Bytes, E>> + Unpin),
        received: &mut u64,
    ) -> Result<(), TransferError> {
        use futures::StreamExt as _;
        if content_type != Some(grant.content_type.as_str()) {
            return Err(TransferError::WrongType {
                found: content_type.unwrap_or("").to_owned(),
                signed: grant.content_type.clone(),
            });
        }
        let dest = self.checked_path(&grant.user, &grant.sha256)?;
        let tmp_dir = self.root.join("tmp");
        let mut incoming = IncomingBlob::new(&tmp_dir).map_err(blob_storage_error)?;
        while let Some(piece) = body.next().await {
            let piece =
                piece.map_err(|e| StorageError::Invalid(format!("the upload broke off: {e}")))?;
            *received += piece.len() as u64;
            if *received > grant.bytes {
                return Err(TransferError::TooLarge(grant.bytes));
            }
            incoming.write(&piece).map_err(blob_storage_error)?;
        }
        if incoming.mime().is_none() {
            return Err(TransferError::NotAnImage);
        }
        let actual = incoming.sha256();
        if actual != grant.sha256 {
            return Err(TransferError::Mismatch {
                expected: grant.sha256.clone(),
                actual,
            });
        }
        let sha = grant.sha256.clone();
        let this = self.clone();
        blocking(move || {
            incoming.persist(&sha, &dest).map_err(blob_storage_error)?;
            this.share(&sha, &dest);
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// The file of a blob a grant allows downloading.
    pub fn file_for(&self, grant: &Grant) -> Result<PathBuf, TransferError> {
        let path = self.checked_path(&grant.user, &grant.sha256)?;
        if !path.is_file() {
            return Err(TransferError::NotFound);
        }
        Ok(path)
    }

    fn transfer(&self, grant: Grant, headers: BTreeMap<String, String>) -> TransferUrl {
        let expires_at = grant.expires_at;
        let method = if grant.op == "put" { "PUT" } else { "GET" };
        TransferUrl {
            url: format!("{TRANSFER_PATH}?t={}", self.sign(&grant)),
            method: method.into(),
            headers,
            expires_at,
        }
    }
}

#[async_trait]
impl BlobStore for EmbeddedBlobs {
    async fn put(&self, user: &str, sha256: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let dest = self.checked_path(user, sha256)?;
        let actual = sha256_hex(bytes);
        if actual != sha256 {
            return Err(StorageError::Invalid(format!(
                "bytes hash to {actual}, not the expected {sha256}"
            )));
        }
        let (tmp_dir, bytes) = (self.root.join("tmp"), bytes.to_vec());
        let this = self.clone();
        let sha = sha256.to_owned();
        blocking(move || {
            write_atomically(&tmp_dir, &dest, &bytes)?;
            this.share(&sha, &dest);
            Ok(())
        })
        .await
    }

    async fn get(&self, user: &str, sha256: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.checked_path(user, sha256)?;
        let sha256 = sha256.to_owned();
        blocking(move || {
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_err(&path)(e)),
            };
            let actual = sha256_hex(&bytes);
            if actual != sha256 {
                return Err(StorageError::Backend(format!(
                    "blob {sha256} is corrupt on disk: its bytes hash to {actual}"
                )));
            }
            Ok(Some(bytes))
        })
        .await
    }

    async fn exists(&self, user: &str, sha256: &str) -> Result<bool, StorageError> {
        let path = self.checked_path(user, sha256)?;
        blocking(move || match fs::metadata(&path) {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&path)(e)),
        })
        .await
    }

    async fn delete(&self, user: &str, sha256: &str) -> Result<u64, StorageError> {
        let path = self.checked_path(user, sha256)?;
        blocking(move || {
            let bytes = match fs::metadata(&path) {
                Ok(meta) => meta.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(io_err(&path)(e)),
            };
            match fs::remove_file(&path) {
                Ok(()) => Ok(bytes),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
                Err(e) => Err(io_err(&path)(e)),
            }
        })
        .await
    }

    async fn upload_url(
        &self,
        user: &str,
        sha256: &str,
        bytes: u64,
        content_type: &str,
    ) -> Result<TransferUrl, StorageError> {
        self.checked_path(user, sha256)?;
        let grant = Grant {
            op: "put".into(),
            user: user.to_owned(),
            sha256: sha256.to_owned(),
            bytes,
            content_type: content_type.to_owned(),
            expires_at: now_secs() + TRANSFER_URL_TTL.as_secs(),
        };
        Ok(self.transfer(
            grant,
            BTreeMap::from([("content-type".into(), content_type.to_owned())]),
        ))
    }

    async fn download_url(
        &self,
        user: &str,
        sha256: &str,
    ) -> Result<Option<TransferUrl>, StorageError> {
        if !self.exists(user, sha256).await? {
            return Ok(None);
        }
        let grant = Grant {
            op: "get".into(),
            user: user.to_owned(),
            sha256: sha256.to_owned(),
            bytes: 0,
            content_type: String::new(),
            expires_at: now_secs() + TRANSFER_URL_TTL.as_secs(),
        };
        Ok(Some(self.transfer(grant, BTreeMap::new())))
    }
}

/// Reads and drops the rest of an upload, up to `left` bytes more: to its
/// end for a client that keeps to its grant.
async fn drain<E>(
    body: &mut (impl futures::Stream<Item = Result<axum::body::Bytes, E>> + Unpin),
    mut left: u64,
) {
    use futures::StreamExt as _;
    while let Some(Ok(piece)) = body.next().await {
        match left.checked_sub(piece.len() as u64) {
            Some(rest) => left = rest,
            None => break,
        }
    }
}

/// The signing key: 32 random bytes in a 0600 file, made on first use.
fn load_or_create_key(path: &Path) -> Result<[u8; 32], StorageError> {
    match fs::read(path) {
        Ok(bytes) => bytes.try_into().map_err(|_| {
            StorageError::Backend(format!(
                "{}: not a transfer signing key (expected 32 bytes)",
                path.display()
            ))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand08::random();
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(io_err(path))?;
            file.write_all(&key).map_err(io_err(path))?;
            file.sync_all().map_err(io_err(path))?;
            Ok(key)
        }
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Makes `ours` and `theirs` (two names for blobs of one hash) one file:
/// `theirs` if it exists (ours is replaced by a link to it, atomically),
/// else a new link to `ours`. Either way no reader ever sees a missing or
/// partial file. Same-file pairs are left alone.
fn link_as_one(tmp_dir: &Path, ours: &Path, theirs: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let mine = fs::metadata(ours)?;
    match fs::metadata(theirs) {
        Ok(t) if t.ino() == mine.ino() && t.dev() == mine.dev() => Ok(()),
        Ok(t) if t.len() == mine.len() => {
            let tmp = tmp_dir.join(format!("{}.link", uuid::Uuid::new_v4().simple()));
            fs::hard_link(theirs, &tmp)?;
            fs::rename(&tmp, ours).inspect_err(|_| {
                let _ = fs::remove_file(&tmp);
            })
        }
        Ok(_) => Err(io::Error::other(format!(
            "{} has another size than the blob of its name",
            theirs.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dir = theirs.parent().expect("blob paths have a parent");
            private_fs::create_dir(dir)?;
            match fs::hard_link(ours, theirs) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                other => other,
            }
        }
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to `dest` via a fsynced temporary file in `tmp_dir` and a
/// rename. A blob already in place (its name is its hash) is kept.
fn write_atomically(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    if let Ok(existing) = fs::read(dest)
        && existing == bytes
    {
        return Ok(());
    }
    let dir = dest.parent().expect("blob paths have a parent");
    private_fs::create_dir(dir).map_err(io_err(dir))?;
    let tmp = tmp_dir.join(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut file = private_fs::options()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, dest)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(dest)(e));
    }
    // The rename is durable once the directory entry is.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use axum::body::Bytes;
    use futures::StreamExt as _;

    use super::*;

    const PIECE: usize = 1_000;

    /// A put grant for `pieces` pieces of PNG-typed bytes.
    fn grant(pieces: usize) -> Grant {
        Grant {
            op: "put".into(),
            user: "alice".into(),
            sha256: "ab".repeat(32),
            bytes: (pieces * PIECE) as u64,
            content_type: "image/png".into(),
            expires_at: u64::MAX,
        }
    }

    /// A client's upload of `pieces` pieces that fails the checks (zero
    /// bytes: not an image); returns what `receive` answered and how many
    /// pieces it took off the body.
    async fn upload(
        blobs: &EmbeddedBlobs,
        grant: &Grant,
        content_type: &str,
        pieces: usize,
    ) -> (Result<(), TransferError>, usize) {
        let taken = Cell::new(0);
        let body = futures::stream::iter(0..pieces).map(|_| {
            taken.set(taken.get() + 1);
            Ok::<_, std::convert::Infallible>(Bytes::from(vec![0u8; PIECE]))
        });
        let answer = blobs.receive(grant, Some(content_type), body).await;
        (answer, taken.get())
    }

    /// The kind of a refusal, for a table.
    fn kind(e: &TransferError) -> &'static str {
        match e {
            TransferError::NotAnImage => "not an image",
            TransferError::WrongType { .. } => "wrong type",
            TransferError::Storage(_) => "storage",
            TransferError::TooLarge(_) => "too large",
            _ => "other",
        }
    }

    #[tokio::test]
    async fn a_refused_upload_is_read_to_its_end_unless_it_is_too_large() {
        // (content type sent, pieces sent (8 allowed), break the temp
        // directory, refusal, pieces read)
        let cases = [
            ("image/png", 8, false, "not an image", 8),
            ("image/jpeg", 8, false, "wrong type", 8),
            ("image/png", 8, true, "storage", 8),
            // Over the grant: cut off at the first piece past it.
            ("image/png", 12, false, "too large", 9),
        ];
        for (content_type, pieces, broken, case, taken) in cases {
            let dir = tempfile::tempdir().unwrap();
            let blobs = EmbeddedBlobs::open(dir.path()).unwrap();
            if broken {
                // Temporary files cannot be made: a file where the
                // directory should be.
                let tmp = dir.path().join("blobs/tmp");
                fs::remove_dir(&tmp).unwrap();
                fs::write(&tmp, b"not a directory").unwrap();
            }
            let (answer, took) = upload(&blobs, &grant(8), content_type, pieces).await;
            let e = answer.expect_err(case);
            assert_eq!(kind(&e), case, "{e:?}");
            assert_eq!(took, taken, "{case}: pieces read");
            assert!(
                !blobs.root.join("users").read_dir().unwrap().any(|_| true),
                "{case}: stored"
            );
        }
    }
}
