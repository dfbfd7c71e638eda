//! An export directory from outside (`atelier-sync import IN`, `verify
//! --export`): the manifest, a document file and a blob, as
//! `backup::verify_export` and `backup::import` read them.
//!
//! Input: a mode line, the manifest, the document's bytes and the blob's
//! bytes, split by [`crate::fields`]. The document is written as
//! `docs/<BACKUP_DOC_ID>.automerge` and the blob under its own SHA-256. In
//! mode `fix` the target first makes the manifest agree with the files
//! (hashes, sizes, heads), so that mutated documents get past the checks
//! into the import; otherwise the manifest is used as it comes.
//!
//! Properties: an export that verifies clean imports; an import refused
//! before writing leaves the store as it was (empty); a manifest that parses names only
//! files inside the export.

use std::path::Path;

use core_sync::backup::{self, MANIFEST};
use core_sync::blob::sha256_hex;
use core_sync::model::AssetDoc;
use core_sync::{Store, StoreOptions};
use serde_json::Value;

use crate::{BACKUP_DOC_ID, fields, runtime, scratch};

pub fn run(data: &[u8]) {
    let parts = fields(data, 4);
    let (mode, manifest, doc, blob) = (parts[0], parts[1], parts[2], parts[3]);
    let dir = tempfile::tempdir_in(scratch_root()).expect("a directory");
    let out = dir.path();
    std::fs::create_dir_all(out.join("docs")).unwrap();
    std::fs::create_dir_all(out.join("blobs")).unwrap();
    std::fs::write(
        out.join("docs").join(format!("{BACKUP_DOC_ID}.automerge")),
        doc,
    )
    .unwrap();
    std::fs::write(out.join("blobs").join(sha256_hex(blob)), blob).unwrap();
    let manifest = if mode == b"fix" {
        fix(manifest, doc, blob)
    } else {
        manifest.to_vec()
    };
    std::fs::write(out.join(MANIFEST), &manifest).unwrap();

    if let Ok(m) = backup::read_manifest(out) {
        for b in &m.blobs {
            assert!(
                b.sha256.len() == 64 && b.sha256.bytes().all(|c| c.is_ascii_hexdigit()),
                "a manifest naming blob {:?} was accepted",
                b.sha256
            );
        }
    }
    let clean = matches!(backup::verify_export(out, true), Ok(v) if v.mismatches.is_empty());
    runtime().block_on(async {
        if !clean {
            // Refused before anything is written: the shared store stays empty.
            let store = shared_store().await;
            assert!(backup::import(store, out, true).await.is_err());
            assert!(
                store.ids().await.expect("ids").is_empty(),
                "a refused import wrote documents"
            );
            return;
        }
        let store_dir = tempfile::tempdir_in(scratch_root()).expect("a directory");
        let store = Store::open(store_dir.path(), StoreOptions::default())
            .await
            .expect("a store");
        // A document that loads but that the store refuses (a schema newer
        // than this build) is the one reason a clean export may not import.
        if let Err(e) = backup::import(&store, out, true).await {
            assert!(
                matches!(e, backup::BackupError::Store(_)),
                "a clean export did not import: {e}"
            );
        }
        store.close().await;
    });
}

/// The store refused imports go to.
async fn shared_store() -> &'static Store {
    static STORE: tokio::sync::OnceCell<Store> = tokio::sync::OnceCell::const_new();
    STORE
        .get_or_init(|| async {
            Store::open(scratch_root().join("refused"), StoreOptions::default())
                .await
                .expect("a store")
        })
        .await
}

fn scratch_root() -> &'static Path {
    static ROOT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| scratch("backup"))
}

/// The manifest, with its first document and blob entries made to agree
/// with the files (or the manifest unchanged if it is not JSON).
fn fix(manifest: &[u8], doc: &[u8], blob: &[u8]) -> Vec<u8> {
    let Ok(mut m) = serde_json::from_slice::<Value>(manifest) else {
        return manifest.to_vec();
    };
    if let Some(d) = m.get_mut("docs").and_then(|d| d.get_mut(0)) {
        d["id"] = BACKUP_DOC_ID.into();
        d["sha256"] = sha256_hex(doc).into();
        d["bytes"] = doc.len().into();
        if let Ok(mut raw) = AssetDoc::load_raw(doc) {
            let mut heads: Vec<String> = raw.get_heads().iter().map(|h| hex::encode(h.0)).collect();
            heads.sort();
            d["heads"] = heads.into();
        }
    }
    if let Some(b) = m.get_mut("blobs").and_then(|b| b.get_mut(0)) {
        b["sha256"] = sha256_hex(blob).into();
        b["bytes"] = blob.len().into();
    }
    serde_json::to_vec(&m).expect("JSON encodes")
}
