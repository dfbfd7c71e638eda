//! Writes the seed corpus, `tests/fuzz/seeds/<target>/`, from real
//! things: documents made by the model, a sync request the client would
//! send, images encoded by `image`, a signed webhook delivery, tokens the
//! fuzz issuer minted, a real export. Run by `bash tests/fuzz.sh --seeds`
//! (the seeds are committed; rerun after a format changes).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use atelier_fuzz::{BACKUP_DOC_ID, NOW_SECS, bearer, join, rest, webhook};
use core_sync::DocId;
use core_sync::blob::sha256_hex;
use core_sync::model::{AssetDoc, BlobRef, NewCostEvent, NewMessage, NewVersion};
use core_sync::sync::protocol::{Bytes, DocPush, SyncRequest};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let seeds = Seeds { root };
    let (snapshot, incremental) = documents();
    let png = encode(image::ImageFormat::Png, 32, 24);
    let jpeg = encode(image::ImageFormat::Jpeg, 40, 30);
    let webp = encode(image::ImageFormat::WebP, 16, 16);

    // chunks: a snapshot, changes, both, a document from the original plan.
    let mut both = snapshot.clone();
    both.extend_from_slice(&incremental);
    seeds.put("chunks", "snapshot", &snapshot);
    seeds.put("chunks", "changes", &incremental);
    seeds.put("chunks", "snapshot-and-changes", &both);
    let v0 = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/docs/asset-v0.automerge"),
    )
    .expect("fixtures/docs/asset-v0.automerge");
    seeds.put("chunks", "asset-v0", &v0);

    // sync_request: a push, an idle long poll, a resync.
    let push = sync_body(&incremental, 0);
    seeds.put("sync_request", "push", &push);
    seeds.put("sync_request", "first-push", &sync_body(&both, 0));
    seeds.put(
        "sync_request",
        "idle",
        br#"{"feedCursor": 7, "waitMs": 1000}"#,
    );
    let resync = format!(r#"{{"feedCursor": 3, "resync": ["{}"]}}"#, DocId::random());
    seeds.put("sync_request", "resync", resync.as_bytes());

    // image: one of each type.
    seeds.put("image", "png", &png);
    seeds.put("image", "jpeg", &jpeg);
    seeds.put("image", "webp", &webp);

    // webhook: a delivery Replicate would send, signed.
    let body =
        br#"{"id": "p1", "status": "succeeded", "output": "https://replicate.delivery/x.png"}"#;
    let ts = NOW_SECS as i64;
    let sig = cloud_lambda::providers::webhook::sign(webhook::SECRET, "msg_1", ts, body).unwrap();
    let delivery = join(&[
        webhook::SECRET.as_bytes(),
        b"msg_1",
        ts.to_string().as_bytes(),
        sig.as_bytes(),
        body,
    ]);
    seeds.put("webhook", "signed", &delivery);
    let two = format!("v1,AAAA {sig}");
    seeds.put(
        "webhook",
        "two-signatures",
        &join(&[
            webhook::SECRET.as_bytes(),
            b"msg_2",
            ts.to_string().as_bytes(),
            two.as_bytes(),
            body,
        ]),
    );

    // bearer: a valid header, an expired token, the JWKS.
    let issuer = bearer::issuer();
    let token = issuer.mint_at("fuzz", Duration::from_secs(3600), NOW_SECS);
    seeds.put("bearer", "valid", format!("Bearer {token}").as_bytes());
    let expired = issuer.mint_at("fuzz", Duration::from_secs(60), NOW_SECS - 7200);
    seeds.put("bearer", "expired", format!("Bearer {expired}").as_bytes());
    seeds.put("bearer", "jwks", issuer.jwks_json().to_string().as_bytes());

    // backup: a real export's manifest with its document and blob.
    let (manifest, doc_bytes) = export(&png);
    seeds.put(
        "backup",
        "export",
        &join(&[b"raw", &manifest, &doc_bytes, &png]),
    );
    seeds.put(
        "backup",
        "export-fixed",
        &join(&[b"fix", &manifest, &doc_bytes, &png]),
    );

    // rest: one request per route, and the sync body compressed.
    let route = |method: &str, path: &str| {
        rest::ROUTES
            .iter()
            .position(|(m, p, _)| *m == method && *p == path)
            .expect("a route") as u8
    };
    let with = |selector: u8, rest: &[u8]| {
        let mut v = vec![selector];
        v.extend_from_slice(rest);
        v
    };
    let sync = route("POST", "/v1/sync");
    seeds.put("rest", "sync-push", &with(sync, &push));
    seeds.put(
        "rest",
        "sync-zstd",
        &with(sync | rest::ZSTD, &zstd::encode_all(&push[..], 3).unwrap()),
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&push).unwrap();
    seeds.put(
        "rest",
        "sync-gzip",
        &with(sync | rest::GZIP, &gz.finish().unwrap()),
    );
    let png_sha = sha256_hex(&png);
    for (name, method, path, rest) in [
        ("create-prompt", "POST", "/assets", r#"{"from": "prompt", "prompt": "a blue vase", "aspectRatio": "16:9", "imageSize": "2K", "title": "Vase"}"#.to_owned()),
        ("create-blob", "POST", "/assets", format!(r#"{{"from": "blob", "sha256": "{png_sha}", "title": "Shoe"}}"#)),
        ("note", "POST", "/assets/{id}/messages", r#"{"type": "note", "text": "looks good"}"#.to_owned()),
        ("edit", "POST", "/assets/{id}/messages", r#"{"type": "edit", "prompt": "make it red", "model": "gemini-3.1-flash-image"}"#.to_owned()),
        ("generate", "POST", "/assets/{id}/messages", r#"{"type": "generate", "prompt": "a cat", "aspectRatio": "1:1"}"#.to_owned()),
        ("remove-background", "POST", "/assets/{id}/messages", r#"{"type": "remove-background"}"#.to_owned()),
        ("upscale", "POST", "/assets/{id}/messages", r#"{"type": "upscale", "scale": 2}"#.to_owned()),
        ("upload-url", "POST", "/upload-url", format!(r#"{{"sha256": "{png_sha}", "bytes": {}, "contentType": "image/png"}}"#, png.len())),
        ("costs", "GET", "/costs", "from=2026-11-01&to=2026-11-30&model=gemini-3.1-flash-image".to_owned()),
        ("costs-csv", "GET", "/costs.csv", "from=2026-11-01T00:00:00Z".to_owned()),
        ("assets-page", "GET", "/assets", "limit=20&cursor=abc".to_owned()),
        ("messages-page", "GET", "/assets/{id}/messages", "limit=5".to_owned()),
        ("download-url", "GET", "/download-url", format!("sha256={png_sha}")),
        ("transfer", "GET", "/v1/blob-transfer", "t=abc.def".to_owned()),
    ] {
        seeds.put("rest", name, &with(route(method, path), rest.as_bytes()));
    }
}

struct Seeds {
    root: PathBuf,
}

impl Seeds {
    fn put(&self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// A document with every kind of entry: its snapshot, and the changes
/// made after it (one long enough to be stored compressed).
fn documents() -> (Vec<u8>, Vec<u8>) {
    let mut doc = AssetDoc::create("a shoe", 1_700_000_000_000);
    let blob = BlobRef {
        sha256: sha256_hex(b"image"),
        mime: "image/png".into(),
        width: 32,
        height: 24,
        bytes: 5,
    };
    let version = doc
        .add_version(
            NewVersion {
                blob,
                thumbnail: None,
                parent_version_id: None,
                created_by_message_id: None,
            },
            1_700_000_000_001,
        )
        .unwrap();
    doc.set_active_version(&version, 1_700_000_000_002).unwrap();
    let snapshot = doc.save();
    let base = doc.heads();
    doc.append_message(NewMessage::user("x".repeat(600)), 1_700_000_000_003)
        .unwrap();
    let request = doc
        .append_message(
            NewMessage::tool_request("edit", "gemini", "gemini-3.1-flash-image", "make it red"),
            1_700_000_000_004,
        )
        .unwrap();
    doc.record_cost(
        NewCostEvent {
            provider: "gemini".into(),
            model: "gemini-3.1-flash-image".into(),
            units: 1290.0,
            unit: "tokens".into(),
            cost_nano_usd: 39_000_000,
            message_id: Some(request),
        },
        1_700_000_000_005,
    )
    .unwrap();
    (snapshot, doc.changes_since(&base))
}

fn sync_body(changes: &[u8], cursor: u64) -> Vec<u8> {
    let req = SyncRequest {
        feed_cursor: cursor,
        push: vec![DocPush {
            doc_id: DocId::random(),
            changes: Bytes(changes.to_vec()),
        }],
        resync: Vec::new(),
        wait_ms: 0,
    };
    serde_json::to_vec(&req).unwrap()
}

fn encode(format: image::ImageFormat, w: u32, h: u32) -> Vec<u8> {
    let img =
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 8) as u8, (y * 8) as u8, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, format)
        .unwrap();
    out.into_inner()
}

/// A real export of one document and one blob: its manifest and the
/// document's file (renamed to the backup target's fixed id).
fn export(png: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = core_sync::Store::open(dir.path().join("store"), Default::default())
            .await
            .unwrap();
        let (snapshot, _) = documents();
        let id: DocId = BACKUP_DOC_ID.parse().unwrap();
        store
            .insert(id.clone(), AssetDoc::load(&snapshot).unwrap())
            .await
            .unwrap();
        store.blobs().put_verified(&sha256_hex(png), png).unwrap();
        let out = dir.path().join("export");
        core_sync::backup::export(&store, &out, true).await.unwrap();
        let manifest = std::fs::read(out.join("manifest.json")).unwrap();
        let doc = std::fs::read(out.join("docs").join(format!("{id}.automerge"))).unwrap();
        (manifest, doc)
    })
}
