//! `atelier-local`: the local store from a terminal. Creates assets, appends
//! to their timelines, rolls back, and prints timelines, all offline.
//! A thin shell over `core_sync::store` and `core_sync::model`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use core_sync::image_header;
use core_sync::model::{BlobRef, Entry, MessageStatus, NewMessage, NewVersion, Place};
use core_sync::store::{Durability, Store, StoreOptions};
use core_sync::{DocId, LocalAsset, now_millis};

#[derive(Parser)]
#[command(
    version,
    about = "Atelier's local store from the terminal: assets and their timelines, offline."
)]
struct Cli {
    /// Store directory (default: the platform data directory, e.g. ~/.local/share/atelier).
    #[arg(long, env = "ATELIER_DATA", global = true)]
    data: Option<PathBuf>,
    /// Skip the fsync after each commit: faster, but the last edits may be
    /// lost if the machine loses power (a crash of this program loses
    /// nothing either way).
    #[arg(long, global = true)]
    no_fsync: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a sample asset with a short timeline and print it.
    Demo,
    /// Create an asset; prints its id.
    New { title: String },
    /// List assets, most recently updated first.
    List,
    /// Append a note to an asset's timeline.
    Say { id: DocId, text: String },
    /// Queue a tool request (it runs when the asset reaches the cloud).
    Request {
        id: DocId,
        /// Tool: edit, generate, remove-background, upscale.
        tool: String,
        prompt: String,
    },
    /// Add an image file (PNG, JPEG, WebP) as a new version of an asset,
    /// with the size its header states; more than 100 megapixels is refused.
    AddImage { id: DocId, file: PathBuf },
    /// Make an earlier version the active one (a new change; history is kept).
    Rollback { id: DocId, version: String },
    /// Print an asset's timeline, versions and costs, and anything in it
    /// that does not follow the schema (shown, never skipped).
    Show { id: DocId },
    /// Rename an asset.
    Rename { id: DocId, title: String },
    /// Move an asset to the trash (a change that syncs; `restore` undoes
    /// it until the server purges it after the retention period).
    Delete { id: DocId },
    /// Take an asset out of the trash.
    Restore { id: DocId },
    /// List the assets in the trash, most recently deleted first.
    Trash,
    /// Fold every asset's chunks into one snapshot each.
    Compact,
}

fn default_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "atelier")
        .map(|d| d.data_dir().to_owned())
        .unwrap_or_else(|| PathBuf::from(".atelier"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

async fn run(cli: Cli) -> Result<()> {
    let dir = cli.data.unwrap_or_else(default_dir);
    let options = StoreOptions {
        durability: if cli.no_fsync {
            Durability::Normal
        } else {
            Durability::Full
        },
        ..Default::default()
    };
    let store = Store::open(&dir, options).await?;
    match cli.command {
        Command::Demo => demo(&store).await?,
        Command::New { title } => {
            let asset = store.create(&title, now_millis()).await?;
            println!("{}", asset.id);
        }
        Command::List => {
            for a in store.list().await? {
                println!(
                    "{}  {:>4} msgs  updated {}  {}",
                    a.id,
                    a.message_count,
                    format_time(a.updated_at),
                    a.title
                );
            }
        }
        Command::Say { id, text } => {
            let mut asset = store.load(&id).await?;
            refuse_trashed(&mut asset)?;
            asset
                .doc
                .append_message(NewMessage::user(text), now_millis())?;
            store.save(&mut asset).await?;
        }
        Command::Request { id, tool, prompt } => {
            let mut asset = store.load(&id).await?;
            refuse_trashed(&mut asset)?;
            let inputs = asset.summary()?.active_version_id.into_iter().collect();
            let msg = NewMessage {
                input_version_ids: inputs,
                ..NewMessage::tool_request(tool, "", "", prompt)
            };
            let mid = asset.doc.append_message(msg, now_millis())?;
            store.save(&mut asset).await?;
            println!("{mid}");
        }
        Command::AddImage { id, file } => {
            let mut asset = store.load(&id).await?;
            refuse_trashed(&mut asset)?;
            let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let vid = add_image(&store, &mut asset, bytes, None, now_millis())
                .await
                .map_err(|e| format!("{}: {e}", file.display()))?;
            store.save(&mut asset).await?;
            println!("{vid}");
        }
        Command::Rollback { id, version } => {
            let mut asset = store.load(&id).await?;
            refuse_trashed(&mut asset)?;
            asset.doc.set_active_version(&version, now_millis())?;
            store.save(&mut asset).await?;
        }
        Command::Show { id } => {
            let mut asset = store.load(&id).await?;
            let refusals = Refusals::of(&store).await?;
            print_asset(&mut asset, &refusals)?;
        }
        Command::Rename { id, title } => {
            let mut asset = store.load(&id).await?;
            refuse_trashed(&mut asset)?;
            if asset.doc.rename(&title, now_millis())? {
                store.save(&mut asset).await?;
            }
        }
        Command::Delete { id } => {
            let mut asset = store.load(&id).await?;
            asset.doc.delete(&core_sync::device_name(), now_millis())?;
            store.save(&mut asset).await?;
            println!("Moved {id} to the trash; `atelier-local restore {id}` brings it back.");
        }
        Command::Restore { id } => {
            let mut asset = store.load(&id).await?;
            asset.doc.restore(now_millis())?;
            store.save(&mut asset).await?;
        }
        Command::Trash => {
            for t in store.list_trash().await? {
                let edited = if t.edited_after {
                    "  (edited after it was deleted)"
                } else {
                    ""
                };
                println!(
                    "{}  deleted {} on {}  {}{edited}",
                    t.id,
                    format_time(t.deleted_at),
                    t.deleted_by,
                    t.title
                );
            }
        }
        Command::Compact => {
            for id in store.ids().await? {
                let mut asset = store.load(&id).await?;
                store.compact(&mut asset).await?;
            }
        }
    }
    store.close().await;
    Ok(())
}

/// Edits go to live assets: one in the trash is restored first.
fn refuse_trashed(asset: &mut LocalAsset) -> Result<()> {
    if asset.summary()?.deleted.is_some() {
        return Err(format!(
            "asset {} is in the trash; `atelier-local restore {}` first",
            asset.id, asset.id
        )
        .into());
    }
    Ok(())
}

async fn demo(store: &Store) -> Result<()> {
    let now = now_millis();
    let mut asset = store.create("Red sneaker, studio shot", now).await?;
    let prompt = asset.doc.append_message(
        NewMessage::user("A red sneaker on a white studio background"),
        now,
    )?;
    store.save(&mut asset).await?;
    // Two small real images, so the demo has versions to roll between.
    let mut versions = Vec::new();
    for (i, bytes) in [DEMO_ORIGINAL, DEMO_BACKGROUND_REMOVED].iter().enumerate() {
        let v = add_image(
            store,
            &mut asset,
            bytes.to_vec(),
            Some(prompt.clone()),
            now + 1 + i as i64,
        )
        .await?;
        versions.push(v);
        store.save(&mut asset).await?;
    }
    asset.doc.append_message(
        NewMessage {
            input_version_ids: vec![versions[1].clone()],
            ..NewMessage::tool_request(
                "upscale",
                "replicate",
                "nightmareai/real-esrgan",
                "Upscale 4x",
            )
        },
        now + 3,
    )?;
    store.save(&mut asset).await?;
    asset.doc.set_active_version(&versions[0], now + 4)?;
    store.save(&mut asset).await?;
    println!("Created asset {} in {}", asset.id, store.dir().display());
    println!();
    print_asset(&mut asset, &Refusals::of(store).await?)?;
    println!();
    println!(
        "Try: atelier-local show {}   (or: list, say, request, rollback)",
        asset.id
    );
    Ok(())
}

const DEMO_ORIGINAL: &[u8] = include_bytes!("../../demo/original.png");
const DEMO_BACKGROUND_REMOVED: &[u8] = include_bytes!("../../demo/background-removed.png");

/// Stores `bytes` as a blob and adds them as the asset's new active version,
/// with the type and size their header states (read without decoding; an
/// image claiming more than `image_header::MAX_PIXELS` is refused and
/// nothing is stored). Returns the version id.
async fn add_image(
    store: &Store,
    asset: &mut LocalAsset,
    bytes: Vec<u8>,
    created_by_message_id: Option<String>,
    now: i64,
) -> Result<String> {
    let header = image_header::inspect(&bytes)?;
    let len = bytes.len() as u64;
    let sha = store.put_blob(bytes, header.mime, now).await?;
    let parent = asset.summary()?.active_version_id;
    Ok(asset.doc.add_version(
        NewVersion {
            blob: BlobRef {
                sha256: sha,
                mime: header.mime.into(),
                width: header.width,
                height: header.height,
                bytes: len,
            },
            thumbnail: None,
            parent_version_id: parent,
            created_by_message_id,
        },
        now,
    )?)
}

/// What the sync server refused (documents and images), with its reasons.
struct Refusals {
    docs: std::collections::BTreeMap<DocId, String>,
    blobs: std::collections::BTreeMap<String, String>,
}

impl Refusals {
    async fn of(store: &Store) -> Result<Refusals> {
        Ok(Refusals {
            docs: store
                .refused_docs()
                .await?
                .into_iter()
                .map(|r| (r.doc_id, r.reason))
                .collect(),
            blobs: store
                .refused_blobs()
                .await?
                .into_iter()
                .map(|r| (r.sha256, r.reason))
                .collect(),
        })
    }
}

fn print_asset(asset: &mut LocalAsset, refusals: &Refusals) -> Result<()> {
    let s = asset.summary()?;
    println!("{} — {}", asset.id, s.title);
    println!(
        "created {}, updated {}",
        format_time(s.created_at),
        format_time(s.updated_at)
    );
    if let Some(reason) = refusals.docs.get(&asset.id) {
        println!("not synced: the server refused this asset's changes: {reason}");
    }
    if let Some(d) = &s.deleted {
        println!(
            "IN THE TRASH: deleted {} on {}{}",
            format_time(d.at),
            d.by,
            if d.edited_after {
                "; edited after it was deleted (the deletion wins; restore to keep the edits)"
            } else {
                ""
            }
        );
    }
    println!();
    for entry in asset.doc.timeline()? {
        let m = match entry {
            Entry::Read(m) => m,
            Entry::Unreadable(u) => {
                println!("  {:16}  {:<11} {u}", "?", "unreadable");
                continue;
            }
        };
        let status = match m.status {
            Some(MessageStatus::Failed) => format!(
                " [failed: {}]",
                m.error
                    .as_ref()
                    .map(|e| e.message.as_str())
                    .unwrap_or("no reason given")
            ),
            Some(st) => format!(" [{}]", st.as_str()),
            None => String::new(),
        };
        let tool = m
            .tool
            .as_deref()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default();
        println!(
            "  {}  {:<11}{tool} {}{status}",
            format_time(m.created_at),
            m.kind.as_str(),
            m.text.as_deref().unwrap_or("")
        );
    }
    println!();
    println!("versions:");
    for v in asset.doc.versions()? {
        let active = if Some(&v.id) == s.active_version_id.as_ref() {
            "  ← active"
        } else {
            ""
        };
        let refused = refusals
            .blobs
            .get(&v.blob.sha256)
            .map(|r| format!("  [image not synced: {r}]"))
            .unwrap_or_default();
        println!(
            "  {}  {}x{} {} {} B{active}{refused}",
            v.id, v.blob.width, v.blob.height, v.blob.mime, v.blob.bytes
        );
    }
    let costs = asset.doc.cost_events()?;
    let total: i64 = costs.iter().map(|c| c.cost_nano_usd).sum();
    println!(
        "cost: ${:.4} over {} provider calls",
        total as f64 / 1e9,
        costs.len()
    );
    // Everything else that does not read (the timeline's entries are shown
    // in place above), kept in the document as it is.
    let others: Vec<_> = asset
        .doc
        .unreadable()?
        .into_iter()
        .filter(|u| !matches!(u.place, Place::Message { .. }))
        .collect();
    if !others.is_empty() {
        println!();
        println!("unreadable (kept as they are):");
        for u in others {
            println!("  {u}");
        }
    }
    Ok(())
}

/// UTC `YYYY-MM-DD HH:MM`.
fn format_time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]"
            ))
            .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}
