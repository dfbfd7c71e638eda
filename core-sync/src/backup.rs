//! Backups: export a store to a directory, import one back (into a store,
//! from where sync can push it to a fresh account), and verify either.
//!
//! Export layout:
//! ```text
//! OUT/manifest.json          written last: its presence marks a complete export
//! OUT/docs/<id>.automerge    each document's compact save()
//! OUT/blobs/<sha256>         each blob, named by its hash
//! ```
//! The export is owner-only (directories 0700, files 0600), as the store
//! is. Every file is written to a temporary name and renamed, so an export
//! killed at any moment leaves only whole files; running it again resumes
//! (blobs already present and verified are skipped). Import merges into
//! documents that already exist, so it too can be rerun after a kill.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::blob::{BlobError, sha256_hex};
use crate::ids::DocId;
use crate::model::{AssetDoc, ModelError};
use crate::store::{Store, StoreError};

pub const MANIFEST: &str = "manifest.json";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: no manifest.json, so this is not a complete export (run export again)")]
    Incomplete(PathBuf),
    #[error("manifest {path}: {message}")]
    Manifest { path: PathBuf, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: u32,
    pub exported_at: i64,
    pub docs: Vec<DocEntry>,
    pub blobs: Vec<BlobEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocEntry {
    pub id: DocId,
    /// Sorted hex change hashes.
    pub heads: Vec<String>,
    /// SHA-256 of the `.automerge` file.
    pub sha256: String,
    pub bytes: u64,
    /// Set when the asset is in the trash: when and by which device it
    /// was deleted. Backups keep such assets until the server purges them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trashed: Option<crate::model::Deletion>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobEntry {
    pub sha256: String,
    pub bytes: u64,
}

/// One problem `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub what: String,
    pub problem: String,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// Damage: files or documents that differ from what was recorded, do
    /// not load, or blobs whose bytes do not match their hash.
    pub mismatches: Vec<Mismatch>,
    /// Parts of intact documents that do not follow the schema (written so
    /// by another client): kept as they are, shown with the reason.
    pub unreadable: Vec<Mismatch>,
}

/// Progress lines on stderr, at most a few per second.
pub struct Progress {
    label: &'static str,
    total: usize,
    done: usize,
    last: Instant,
    quiet: bool,
}

impl Progress {
    pub fn new(label: &'static str, total: usize, quiet: bool) -> Self {
        Progress {
            label,
            total,
            done: 0,
            last: Instant::now(),
            quiet,
        }
    }

    pub fn tick(&mut self) {
        self.done += 1;
        if !self.quiet
            && (self.done == self.total || self.last.elapsed() > Duration::from_millis(500))
        {
            eprintln!("{}: {}/{}", self.label, self.done, self.total);
            self.last = Instant::now();
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let dir = path.parent().expect("export paths have a parent");
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(path))?;
    tmp.as_file().sync_all().map_err(io(path))?;
    tmp.persist(path).map_err(|e| BackupError::Io {
        path: path.to_owned(),
        source: e.error,
    })?;
    Ok(())
}

fn hex_heads(heads: &[automerge::ChangeHash]) -> Vec<String> {
    let mut out: Vec<String> = heads.iter().map(|h| hex::encode(h.0)).collect();
    out.sort();
    out
}

/// Exports every document and blob of `store` into `out`.
pub async fn export(store: &Store, out: &Path, quiet: bool) -> Result<Manifest, BackupError> {
    // Owner-only, as the store is (files: `write_atomic`'s temporary files
    // are created 0600).
    for d in [out.to_owned(), out.join("docs"), out.join("blobs")] {
        crate::private_fs::create_dir(&d).map_err(io(&d))?;
    }
    // A manifest from an earlier export vouches for files this run is about
    // to overwrite: remove it (durably) first, so that an export killed
    // midway reads as incomplete, not as a complete export whose files
    // disagree with it.
    let manifest = out.join(MANIFEST);
    match std::fs::remove_file(&manifest) {
        Ok(()) => std::fs::File::open(out)
            .and_then(|d| d.sync_all())
            .map_err(io(out))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&manifest)(e)),
    }
    let ids = store.ids().await?;
    let mut progress = Progress::new("export documents", ids.len(), quiet);
    let mut docs = Vec::with_capacity(ids.len());
    for id in ids {
        let mut asset = store.load(&id).await?;
        let bytes = asset.doc.save();
        let path = out.join("docs").join(format!("{id}.automerge"));
        write_atomic(&path, &bytes)?;
        let trashed = asset.doc.deletion().map_err(|source| StoreError::Model {
            doc_id: id.clone(),
            source,
        })?;
        docs.push(DocEntry {
            trashed,
            heads: hex_heads(&asset.doc.heads()),
            sha256: sha256_hex(&bytes),
            bytes: bytes.len() as u64,
            id,
        });
        progress.tick();
    }
    let shas = store.blobs().list()?;
    let mut progress = Progress::new("export blobs", shas.len(), quiet);
    let mut blobs = Vec::with_capacity(shas.len());
    for sha in shas {
        let path = out.join("blobs").join(&sha);
        let bytes = store.get_blob(&sha).await?;
        let done = std::fs::read(&path).is_ok_and(|b| sha256_hex(&b) == sha);
        if !done {
            write_atomic(&path, &bytes)?;
        }
        blobs.push(BlobEntry {
            sha256: sha,
            bytes: bytes.len() as u64,
        });
        progress.tick();
    }
    blobs.sort_by(|a, b| a.sha256.cmp(&b.sha256));
    let manifest = Manifest {
        format: FORMAT_VERSION,
        exported_at: crate::now_millis(),
        docs,
        blobs,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
    write_atomic(&out.join(MANIFEST), &json)?;
    Ok(manifest)
}

pub fn read_manifest(dir: &Path) -> Result<Manifest, BackupError> {
    let path = dir.join(MANIFEST);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::Incomplete(dir.to_owned()));
        }
        Err(e) => return Err(io(&path)(e)),
    };
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| BackupError::Manifest {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if m.format != FORMAT_VERSION {
        return Err(BackupError::Manifest {
            path,
            message: format!("format {} is not {FORMAT_VERSION}", m.format),
        });
    }
    // A blob's name is a path under `blobs/`: only a SHA-256 in hex is one.
    if let Some(b) = m.blobs.iter().find(|b| !is_sha256_hex(&b.sha256)) {
        return Err(BackupError::Manifest {
            path,
            message: format!("blob {:?} is not named by a SHA-256 in hex", b.sha256),
        });
    }
    Ok(m)
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// Checks every file of an export against its manifest, and every document
/// against the schema.
pub fn verify_export(dir: &Path, quiet: bool) -> Result<Verification, BackupError> {
    let m = read_manifest(dir)?;
    let mut found = Verification::default();
    let bad = &mut found.mismatches;
    let mut progress = Progress::new("verify export", m.docs.len() + m.blobs.len(), quiet);
    for d in &m.docs {
        let what = format!("document {}", d.id);
        match std::fs::read(dir.join("docs").join(format!("{}.automerge", d.id))) {
            Err(e) => bad.push(Mismatch {
                what,
                problem: e.to_string(),
            }),
            Ok(bytes) if sha256_hex(&bytes) != d.sha256 => bad.push(Mismatch {
                what,
                problem: "file hash differs from the manifest".into(),
            }),
            Ok(bytes) => match AssetDoc::load_raw(&bytes) {
                Err(e) => bad.push(Mismatch {
                    what,
                    problem: format!("does not load: {e}"),
                }),
                Ok(mut doc) => {
                    if hex_heads(&doc.get_heads()) == d.heads {
                        // Read as the app would: migrated, in memory.
                        found
                            .unreadable
                            .extend(schema_check(&d.id, AssetDoc::load(&bytes)));
                    } else {
                        bad.push(Mismatch {
                            what,
                            problem: "heads differ from the manifest".into(),
                        });
                    }
                }
            },
        }
        progress.tick();
    }
    for b in &m.blobs {
        match std::fs::read(dir.join("blobs").join(&b.sha256)) {
            Err(e) => bad.push(Mismatch {
                what: format!("blob {}", b.sha256),
                problem: e.to_string(),
            }),
            Ok(bytes) if sha256_hex(&bytes) != b.sha256 => bad.push(Mismatch {
                what: format!("blob {}", b.sha256),
                problem: "bytes do not match their hash".into(),
            }),
            Ok(_) => {}
        }
        progress.tick();
    }
    Ok(found)
}

/// Imports an export into `store`: new documents are inserted, existing ones
/// merged; blobs are verified as they are stored. Refuses a damaged export
/// before writing anything.
pub async fn import(store: &Store, dir: &Path, quiet: bool) -> Result<Vec<DocId>, BackupError> {
    // Unreadable parts of documents are no reason to refuse: they are kept
    // as they are, and the documents merge like any other.
    let bad = verify_export(dir, true)?.mismatches;
    if let Some(first) = bad.first() {
        return Err(BackupError::Manifest {
            path: dir.join(MANIFEST),
            message: format!(
                "{} problem(s), first: {}: {}",
                bad.len(),
                first.what,
                first.problem
            ),
        });
    }
    let m = read_manifest(dir)?;
    let mut progress = Progress::new("import blobs", m.blobs.len(), quiet);
    for b in &m.blobs {
        let path = dir.join("blobs").join(&b.sha256);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        // Verified again on the way in, and indexed as not yet uploaded, so
        // a sync afterwards pushes it to the (possibly fresh) account.
        store.blobs().put_verified(&b.sha256, &bytes)?;
        store
            .index_blob(&b.sha256, bytes.len() as u64, crate::now_millis())
            .await?;
        progress.tick();
    }
    let mut progress = Progress::new("import documents", m.docs.len(), quiet);
    let mut touched = Vec::new();
    for d in &m.docs {
        let path = dir.join("docs").join(format!("{}.automerge", d.id));
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        if store.contains(&d.id).await? {
            let mut asset = store.load(&d.id).await?;
            asset
                .doc
                .apply_incremental(&bytes)
                .map_err(|source| StoreError::Corrupt {
                    doc_id: d.id.clone(),
                    source,
                })?;
            store.save(&mut asset).await?;
        } else {
            let doc = AssetDoc::load(&bytes).map_err(|source| StoreError::Corrupt {
                doc_id: d.id.clone(),
                source,
            })?;
            store.insert(d.id.clone(), doc).await?;
        }
        touched.push(d.id.clone());
        progress.tick();
    }
    Ok(touched)
}

/// Re-reads everything in a store: every document loads strictly and has
/// the heads its listing row recorded; every blob matches its hash. Parts
/// of documents that do not follow the schema are listed apart.
pub async fn verify_store(store: &Store, quiet: bool) -> Result<Verification, BackupError> {
    let mut found = Verification::default();
    let bad = &mut found.mismatches;
    let ids = store.ids().await?;
    let mut progress = Progress::new("verify documents", ids.len(), quiet);
    for id in ids {
        let what = format!("document {id}");
        match store.load(&id).await {
            Err(e) => bad.push(Mismatch {
                what,
                problem: e.to_string(),
            }),
            Ok(mut asset) => {
                let mut recorded = store.recorded_heads(&id).await?;
                recorded.sort();
                let mut heads = asset.doc.heads();
                heads.sort();
                if heads != recorded {
                    bad.push(Mismatch {
                        what,
                        problem: "heads differ from the recorded heads".into(),
                    });
                }
                found.unreadable.extend(schema_check(&id, Ok(asset.doc)));
            }
        }
        progress.tick();
    }
    // A document dropped half-way (after a purge) would leave rows behind.
    for row in store.orphan_rows().await? {
        bad.push(Mismatch {
            what: row,
            problem: "left behind by a document that is no longer in the store".into(),
        });
    }
    let shas = store.blobs().list()?;
    let mut progress = Progress::new("verify blobs", shas.len(), quiet);
    for sha in shas {
        if let Err(e) = store.blobs().verify(&sha) {
            bad.push(Mismatch {
                what: format!("blob {sha}"),
                problem: e.to_string(),
            });
        }
        progress.tick();
    }
    Ok(found)
}

/// What in a document does not follow the schema, one line each.
fn schema_check(id: &DocId, doc: Result<AssetDoc, ModelError>) -> Vec<Mismatch> {
    let what = || format!("document {id}");
    match doc.and_then(|doc| doc.unreadable()) {
        Ok(parts) => parts
            .into_iter()
            .map(|u| Mismatch {
                what: what(),
                problem: u.to_string(),
            })
            .collect(),
        Err(e) => vec![Mismatch {
            what: what(),
            problem: e.to_string(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `backup` fuzz target: a manifest naming a blob by
    /// something that is not a hash was read as valid.
    #[test]
    fn a_manifest_naming_a_blob_by_anything_but_its_hash_is_refused() {
        for name in [
            "1d6z3fdaafe8b1e75d11d1aa22bdc1f28e03f21cbb4083ef72b25b99a218dfbab",
            "../x",
            "",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let manifest = serde_json::json!({
                "format": FORMAT_VERSION, "exportedAt": 0, "docs": [],
                "blobs": [{"sha256": name, "bytes": 1}],
            });
            std::fs::write(dir.path().join(MANIFEST), manifest.to_string()).unwrap();
            let err = read_manifest(dir.path()).unwrap_err();
            assert!(err.to_string().contains("SHA-256"), "{name:?}: {err}");
        }
    }
}
