//! Start-up and memory of the real `atelier` binary in a real X window
//! (Xvfb): launch to first frame and to a filled asset list with 1,000
//! assets in the store, and memory after opening an asset of 5,000
//! messages. Goals: under 500 ms, under 250 MB RSS. Prints a table.
//!
//! `cargo bench -p desktop-slint --bench startup [-- --quick] [--keep DIR]`

#[path = "../tests/support/xvfb.rs"]
mod xvfb;

use std::process::Command;
use std::time::Instant;

use core_sync::ids::DocId;
use core_sync::model::{
    AssetDoc, BlobRef, ErrorInfo, MessageStatus, MessageUpdate, NewCostEvent, NewMessage,
    NewVersion,
};
use core_sync::store::{Store, StoreOptions};

const ASSETS: usize = 1000;
const MESSAGES: usize = 5000;

fn png(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            ((x * 7 + seed * 13) % 256) as u8,
            ((y * 5 + seed * 29) % 256) as u8,
            ((x + y + seed * 3) % 256) as u8,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn blob(store: &Store, bytes: Vec<u8>, w: u32, h: u32) -> BlobRef {
    let len = bytes.len() as u64;
    let sha256 = store.put_blob(bytes, "image/png", 0).await.unwrap();
    BlobRef {
        sha256,
        mime: "image/png".into(),
        width: w,
        height: h,
        bytes: len,
    }
}

/// 1,000 assets with an image and a few messages each, plus one asset of
/// 5,000 messages (notes, finished and failed requests with results and
/// costs, rollbacks). Returns the big asset's id.
async fn seed(dir: &std::path::Path) -> DocId {
    let store = Store::open(dir, StoreOptions::default()).await.unwrap();
    let now = core_sync::now_millis();
    let mut images = Vec::new();
    for i in 0..24 {
        images.push(blob(&store, png(768, 512, i), 768, 512).await);
    }
    for i in 0..ASSETS {
        let image = images[i % images.len()].clone();
        let thumb = blob(&store, png(96, 64, 1000 + i as u32), 96, 64).await;
        let mut doc = AssetDoc::create(
            &format!("Asset {i:04} — harbour study"),
            now - i as i64 * 60_000,
        );
        let note = doc
            .append_message(NewMessage::user("Uploaded harbour.png"), now)
            .unwrap();
        doc.add_version(
            NewVersion {
                blob: image,
                thumbnail: Some(thumb),
                parent_version_id: None,
                created_by_message_id: Some(note),
            },
            now,
        )
        .unwrap();
        doc.append_message(NewMessage::user("warmer, please"), now)
            .unwrap();
        store.insert(DocId::random(), doc).await.unwrap();
    }

    let mut doc = AssetDoc::create("Five thousand messages", now);
    let mut versions = Vec::new();
    let mut i = 0;
    while i < MESSAGES {
        match i % 5 {
            0 | 3 => {
                doc.append_message(NewMessage::user(format!("note {i}: a little warmer")), now)
                    .unwrap();
                i += 1;
            }
            1 => {
                let id = doc
                    .append_message(
                        NewMessage {
                            input_version_ids: versions.last().cloned().into_iter().collect(),
                            ..NewMessage::tool_request(
                                "edit",
                                "google",
                                "gemini-3.1-flash-image",
                                format!("edit {i}"),
                            )
                        },
                        now,
                    )
                    .unwrap();
                let v = doc
                    .add_version(
                        NewVersion {
                            blob: images[i % images.len()].clone(),
                            thumbnail: None,
                            parent_version_id: versions.last().cloned(),
                            created_by_message_id: Some(id.clone()),
                        },
                        now,
                    )
                    .unwrap();
                doc.update_message(
                    &id,
                    MessageUpdate {
                        status: Some(MessageStatus::Succeeded),
                        progress: Some(1.0),
                        add_output_version_ids: vec![v.clone()],
                        ..Default::default()
                    },
                    now,
                )
                .unwrap();
                doc.record_cost(
                    NewCostEvent {
                        provider: "google".into(),
                        model: "gemini-3.1-flash-image".into(),
                        units: 1290.0,
                        unit: "tokens".into(),
                        cost_nano_usd: 38_700_000,
                        message_id: Some(id),
                    },
                    now,
                )
                .unwrap();
                versions.push(v);
                i += 1;
            }
            2 => {
                let id = doc
                    .append_message(
                        NewMessage::tool_request(
                            "upscale",
                            "replicate",
                            "nightmareai/real-esrgan",
                            "",
                        ),
                        now,
                    )
                    .unwrap();
                doc.update_message(
                    &id,
                    MessageUpdate {
                        status: Some(MessageStatus::Failed),
                        error: Some(ErrorInfo {
                            code: "unavailable".into(),
                            message: "The provider stayed unavailable after 4 tries.".into(),
                        }),
                        ..Default::default()
                    },
                    now,
                )
                .unwrap();
                i += 1;
            }
            _ => {
                // A rollback writes a system note.
                let back = versions[versions.len().saturating_sub(2)].clone();
                doc.set_active_version(&back, now).unwrap();
                i += 1;
            }
        }
    }
    let big = store.insert(DocId::random(), doc).await.unwrap();
    store.close().await;
    big.id
}

#[derive(Default, Clone, Copy)]
struct Run {
    first_frame: Option<f64>,
    window: Option<f64>,
    assets: Option<f64>,
    timeline: Option<f64>,
    rss_mb: f64,
    peak_mb: f64,
}

fn run_app(
    display: &str,
    renderer: &str,
    data: &std::path::Path,
    offline: bool,
    open: Option<&DocId>,
) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atelier"));
    cmd.arg("--data")
        .arg(data)
        .arg("--exit-after-startup")
        .env("DISPLAY", display)
        .env("SLINT_BACKEND", renderer)
        .env("RUST_LOG", "error")
        .env_remove("ATELIER_SERVER");
    if offline {
        cmd.arg("--offline");
    }
    if let Some(id) = open {
        cmd.arg("--open").arg(id.as_str());
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "atelier failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
    let f = |k: &str| v[k].as_f64();
    Run {
        first_frame: f("first_frame_ms"),
        window: f("window_shown_ms"),
        assets: f("assets_shown_ms"),
        timeline: f("timeline_shown_ms"),
        rss_mb: f("rss_kib").unwrap_or(0.0) / 1024.0,
        peak_mb: f("peak_rss_kib").unwrap_or(0.0) / 1024.0,
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

fn cell(v: Option<f64>, unit: &str) -> String {
    v.map(|v| format!("{v:.0} {unit}"))
        .unwrap_or_else(|| "n/a".into())
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 3 } else { 7 };
    // `--keep DIR`: seed into DIR and leave it there (to profile by hand).
    let args: Vec<String> = std::env::args().collect();
    let keep = args
        .iter()
        .position(|a| a == "--keep")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from);
    let dir = tempfile::tempdir().unwrap();
    let data = keep.clone().unwrap_or_else(|| dir.path().join("store"));
    let t = Instant::now();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let big = rt.block_on(seed(&data));
    if keep.is_some() {
        eprintln!("kept {} (open {big})", data.display());
    }
    eprintln!(
        "seeded {ASSETS} assets and one of {MESSAGES} messages in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let x = xvfb::Xvfb::start();

    println!(
        "\n`atelier` start-up under Xvfb, {ASSETS} assets in the store, median of {runs} launches\n"
    );
    println!(
        "| renderer | sync | opens | first frame | asset list shown | timeline shown | RSS at end | peak RSS |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    for renderer in ["winit-femtovg", "winit-software"] {
        for (offline, open) in [(false, None), (true, None), (false, Some(&big))] {
            // One unmeasured launch warms the page cache.
            let _ = run_app(&x.display, renderer, &data, offline, open);
            let rs: Vec<Run> = (0..runs)
                .map(|_| run_app(&x.display, renderer, &data, offline, open))
                .collect();
            let m = |f: fn(&Run) -> Option<f64>| median(rs.iter().filter_map(f).collect());
            println!(
                "| {renderer} | {} | {} | {} | {} | {} | {} | {} |",
                if offline { "off" } else { "embedded server" },
                if open.is_some() {
                    "5,000-message asset"
                } else {
                    "—"
                },
                cell(m(|r| r.first_frame).or(m(|r| r.window)), "ms")
                    + if m(|r| r.first_frame).is_none() {
                        " (loop up)"
                    } else {
                        ""
                    },
                cell(m(|r| r.assets), "ms"),
                cell(
                    if open.is_some() {
                        m(|r| r.timeline)
                    } else {
                        None
                    },
                    "ms"
                ),
                cell(m(|r| Some(r.rss_mb)), "MB"),
                cell(m(|r| Some(r.peak_mb)), "MB"),
            );
        }
    }
    println!(
        "\nGoals: first frame under 500 ms; under 250 MB RSS after opening the 5,000-message asset."
    );
}
