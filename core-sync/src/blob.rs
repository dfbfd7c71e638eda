//! The content-addressed blob store: image bytes on disk, named by SHA-256.
//!
//! Layout: `DIR/ab/cdef…` (the first two hex digits fan out directories).
//! Writes go to a temporary file in `DIR/tmp`, are fsynced, then renamed into
//! place, so a crash never leaves a partial blob under a real name. Every
//! read re-hashes the bytes: a blob whose bytes no longer match its name is an
//! error naming it, never silently returned.
//!
//! Directories are owner-only (0700) and so are blob files (0600): see
//! [`crate::private_fs`].
//!
//! The API is blocking (std::fs); async callers use `spawn_blocking`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::private_fs;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {sha256} is corrupt: its bytes hash to {actual}")]
    Corrupt { sha256: String, actual: String },
    #[error("blob {0} is not in the store")]
    NotFound(String),
    #[error("{0:?} is not a SHA-256 (64 lowercase hex characters)")]
    InvalidHash(String),
    #[error("bytes hash to {actual}, not the expected {expected}")]
    Mismatch { expected: String, actual: String },
    #[error("blob store IO error at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The largest image that syncs: what the desktop lets a user import, and
/// what the server takes in one upload.
pub const MAX_BLOB_BYTES: u64 = 64 * 1024 * 1024;

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The image type of `bytes` by their magic bytes (PNG, JPEG, WebP).
pub fn sniff_mime(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

pub fn is_valid_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A blob arriving in pieces (a download, an upload): written to a
/// temporary file and hashed as it comes, so nothing holds it whole in
/// memory; [`IncomingBlob::persist`] puts it under its name only if it
/// hashes to it.
pub struct IncomingBlob {
    tmp: tempfile::NamedTempFile,
    hasher: Sha256,
    len: u64,
    head: Vec<u8>,
}

impl IncomingBlob {
    /// A new empty blob in `tmp_dir` (on the file system of its final place,
    /// so the rename is atomic).
    pub fn new(tmp_dir: &Path) -> Result<Self, BlobError> {
        private_fs::create_dir(tmp_dir).map_err(io_err(tmp_dir))?;
        Ok(IncomingBlob {
            tmp: tempfile::NamedTempFile::new_in(tmp_dir).map_err(io_err(tmp_dir))?,
            hasher: Sha256::new(),
            len: 0,
            head: Vec::new(),
        })
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        self.hasher.update(bytes);
        if self.head.len() < 16 {
            let take = (16 - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
        }
        self.len += bytes.len() as u64;
        let path = self.tmp.path().to_owned();
        self.tmp.write_all(bytes).map_err(io_err(&path))
    }

    /// Bytes so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The image type by the first bytes (see [`sniff_mime`]).
    pub fn mime(&self) -> Option<&'static str> {
        sniff_mime(&self.head)
    }

    /// The SHA-256 of what arrived.
    pub fn sha256(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    /// Moves the blob to `dest` (fsynced first) if it hashes to `expected`;
    /// otherwise it is thrown away and nothing is stored.
    pub fn persist(self, expected: &str, dest: &Path) -> Result<(), BlobError> {
        let actual = self.sha256();
        if actual != expected {
            return Err(BlobError::Mismatch {
                expected: expected.to_owned(),
                actual,
            });
        }
        let dir = dest.parent().expect("blob paths have a parent");
        private_fs::create_dir(dir).map_err(io_err(dir))?;
        self.tmp.as_file().sync_all().map_err(io_err(dest))?;
        self.tmp.persist(dest).map_err(|e| BlobError::Io {
            path: dest.to_owned(),
            source: e.error,
        })?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_owned(),
        source,
    }
}

impl BlobStore {
    /// Opens (creating if needed) a blob directory, owner-only: it and the
    /// directories in it are tightened if loose.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        let tmp = root.join("tmp");
        private_fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        private_fs::tighten_tree_top(&root);
        Ok(BlobStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Starts receiving a blob for this store (see [`BlobStore::adopt`]).
    pub fn incoming(&self) -> Result<IncomingBlob, BlobError> {
        IncomingBlob::new(&self.root.join("tmp"))
    }

    /// Stores a received blob under `expected`, if it hashes to it.
    pub fn adopt(&self, blob: IncomingBlob, expected: &str) -> Result<(), BlobError> {
        let dest = self.path_of(expected)?;
        blob.persist(expected, &dest)
    }

    /// Where a blob lives (it may not exist).
    pub fn path_of(&self, sha256: &str) -> Result<PathBuf, BlobError> {
        if !is_valid_sha256(sha256) {
            return Err(BlobError::InvalidHash(sha256.chars().take(80).collect()));
        }
        Ok(self.root.join(&sha256[..2]).join(&sha256[2..]))
    }

    /// Stores `bytes` and returns their SHA-256. Storing the same bytes twice
    /// is harmless.
    pub fn put(&self, bytes: &[u8]) -> Result<String, BlobError> {
        let sha = sha256_hex(bytes);
        self.write(&sha, bytes)?;
        Ok(sha)
    }

    /// Stores `bytes` that must hash to `expected` (bytes from the network,
    /// say); a mismatch stores nothing.
    pub fn put_verified(&self, expected: &str, bytes: &[u8]) -> Result<(), BlobError> {
        self.path_of(expected)?;
        let actual = sha256_hex(bytes);
        if actual != expected {
            return Err(BlobError::Mismatch {
                expected: expected.to_owned(),
                actual,
            });
        }
        self.write(expected, bytes)
    }

    fn write(&self, sha: &str, bytes: &[u8]) -> Result<(), BlobError> {
        let dest = self.path_of(sha)?;
        if dest.exists() && self.verify(sha).is_ok() {
            return Ok(());
        }
        let dir = dest.parent().expect("blob paths have a parent");
        private_fs::create_dir(dir).map_err(io_err(dir))?;
        let tmp_dir = self.root.join("tmp");
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io_err(&tmp_dir))?;
        tmp.write_all(bytes).map_err(io_err(tmp.path()))?;
        tmp.as_file().sync_all().map_err(io_err(&dest))?;
        tmp.persist(&dest).map_err(|e| BlobError::Io {
            path: dest.clone(),
            source: e.error,
        })?;
        // The rename is durable once the directory entry is.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Reads a blob and checks its hash.
    pub fn get(&self, sha256: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.path_of(sha256)?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlobError::NotFound(sha256.to_owned()));
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let actual = sha256_hex(&bytes);
        if actual != sha256 {
            return Err(BlobError::Corrupt {
                sha256: sha256.to_owned(),
                actual,
            });
        }
        Ok(bytes)
    }

    pub fn contains(&self, sha256: &str) -> bool {
        self.path_of(sha256).map(|p| p.is_file()).unwrap_or(false)
    }

    /// Deletes a blob; returns the bytes it freed (0 if it was not there).
    /// Only the store's collection of unreferenced blobs calls this.
    pub fn remove(&self, sha256: &str) -> Result<u64, BlobError> {
        let path = self.path_of(sha256)?;
        let bytes = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err(&path)(e)),
        };
        match fs::remove_file(&path) {
            Ok(()) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Re-reads a blob and checks its hash without returning the bytes.
    pub fn verify(&self, sha256: &str) -> Result<(), BlobError> {
        self.get(sha256).map(|_| ())
    }

    /// Every blob's hash, in no particular order.
    pub fn list(&self) -> Result<Vec<String>, BlobError> {
        let mut out = Vec::new();
        for fan in fs::read_dir(&self.root).map_err(io_err(&self.root))? {
            let fan = fan.map_err(io_err(&self.root))?;
            let name = fan.file_name().to_string_lossy().into_owned();
            if name.len() != 2 || !fan.path().is_dir() {
                continue;
            }
            for entry in fs::read_dir(fan.path()).map_err(io_err(&fan.path()))? {
                let entry = entry.map_err(io_err(&fan.path()))?;
                let sha = format!("{name}{}", entry.file_name().to_string_lossy());
                if is_valid_sha256(&sha) {
                    out.push(sha);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_detect_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let sha = store.put(b"hello").unwrap();
        assert_eq!(sha, sha256_hex(b"hello"));
        assert_eq!(store.get(&sha).unwrap(), b"hello");
        assert_eq!(store.put(b"hello").unwrap(), sha, "idempotent");
        assert_eq!(store.list().unwrap(), vec![sha.clone()]);

        // Flip the bytes on disk: reads now fail naming the blob.
        fs::write(store.path_of(&sha).unwrap(), b"jello").unwrap();
        match store.get(&sha) {
            Err(BlobError::Corrupt { sha256, .. }) => assert_eq!(sha256, sha),
            other => panic!("expected corruption, got {other:?}"),
        }
        // Writing the right bytes again repairs it.
        store.put(b"hello").unwrap();
        assert_eq!(store.get(&sha).unwrap(), b"hello");
    }

    #[test]
    fn refuses_bad_names_and_mismatched_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        assert!(matches!(
            store.get("../../etc/passwd"),
            Err(BlobError::InvalidHash(_))
        ));
        let wrong = sha256_hex(b"other");
        assert!(matches!(
            store.put_verified(&wrong, b"bytes"),
            Err(BlobError::Mismatch { .. })
        ));
        assert!(!store.contains(&wrong));
        assert!(matches!(store.get(&wrong), Err(BlobError::NotFound(_))));
    }
}
