//! Property tests of the asset document model and the local store.
//!
//! Random sequences of model operations (appends, status updates, versions,
//! rollbacks, cost events, title changes, and writes the model must refuse)
//! are applied to documents and checked against what the model promises:
//!
//! - every accepted write is exactly one change, every refused write leaves
//!   the heads and views as they were, and the cached summary always equals
//!   one computed from scratch;
//! - a document saved to the store after every write, compacted and reloaded
//!   at random points, reloads with the same heads and views, and the asset
//!   list's projection row stays in step with the document;
//! - two forks edited apart (concurrent rollbacks included) converge to the
//!   same state whichever way they are merged, and lose or duplicate nothing;
//! - every past state is readable through `reader_at` with the heads
//!   recorded at the time.
//!
//! Operations name existing messages and versions by an index taken modulo
//! the current count, so shrinking keeps them meaningful.

use std::collections::HashMap;
use std::fmt::Debug;

use automerge::ChangeHash;
use core_sync::model::*;
use core_sync::store::{CompactionPolicy, Store, StoreOptions};
use core_sync::{DocId, LocalAsset};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// A well-formed id that no document contains.
const UNKNOWN: &str = "ffffffffffffffffffffffffffffffff";
/// The time every generated document is created at.
const T0: Millis = 1_700_000_000_000;

// ------------------------------------------------------------ operations

/// One call of the model's write API, with existing messages and versions
/// chosen by index modulo their count.
#[derive(Debug, Clone)]
enum Op {
    AppendUser {
        text: String,
    },
    AppendToolRequest {
        tool: String,
        input: Option<usize>,
        scale: Option<u32>,
    },
    Update {
        msg: usize,
        status: Option<MessageStatus>,
        progress: Option<f64>,
        error: Option<(String, String)>,
        operation_id: Option<String>,
        output: Option<usize>,
    },
    AddVersion {
        blob: BlobRef,
        thumbnail: Option<BlobRef>,
        parent: Option<usize>,
        by_message: Option<usize>,
    },
    /// `set_active_version` to an existing version (unknown when there is none).
    Rollback {
        version: usize,
    },
    RecordCost {
        units: f64,
        cost_nano_usd: i64,
        message: Option<usize>,
    },
    SetTitle {
        title: String,
    },
    /// A write the model must refuse whatever the document holds.
    Refused(Bad),
}

#[derive(Debug, Clone)]
enum Bad {
    UpdateUnknownMessage,
    UnknownOutputVersion { msg: usize },
    RollbackToUnknownVersion,
    MalformedBlobSha,
    MalformedThumbnailSha,
    UnknownParentVersion,
    UnknownCreatingMessage,
    NegativeCost,
    NonFiniteUnits,
    ParamsNotAnObject,
    ToolRequestWithoutTool,
    MessageWithoutKind,
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[a-z ]{0,12}", 1 => "\\PC{0,8}"]
}

fn status() -> impl Strategy<Value = MessageStatus> {
    prop::sample::select(MessageStatus::ALL.to_vec())
}

/// Mostly valid progress values, some the model must refuse.
fn progress() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => 0.0..=1.0f64,
        1 => Just(1.0),
        1 => prop::sample::select(vec![-0.25, 1.5, f64::NAN, f64::INFINITY]),
    ]
}

fn blob() -> impl Strategy<Value = BlobRef> {
    (
        any::<[u8; 32]>(),
        prop::sample::select(vec!["image/png", "image/jpeg", "image/webp"]),
        any::<u32>(),
        any::<u32>(),
        0u64..(1 << 40),
    )
        .prop_map(|(sha, mime, width, height, bytes)| BlobRef {
            sha256: sha.iter().map(|b| format!("{b:02x}")).collect(),
            mime: mime.into(),
            width,
            height,
            bytes,
        })
}

fn bad() -> impl Strategy<Value = Bad> {
    prop_oneof![
        Just(Bad::UpdateUnknownMessage),
        any::<usize>().prop_map(|msg| Bad::UnknownOutputVersion { msg }),
        Just(Bad::RollbackToUnknownVersion),
        Just(Bad::MalformedBlobSha),
        Just(Bad::MalformedThumbnailSha),
        Just(Bad::UnknownParentVersion),
        Just(Bad::UnknownCreatingMessage),
        Just(Bad::NegativeCost),
        Just(Bad::NonFiniteUnits),
        Just(Bad::ParamsNotAnObject),
        Just(Bad::ToolRequestWithoutTool),
        Just(Bad::MessageWithoutKind),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    use proptest::option::of;
    prop_oneof![
        4 => text().prop_map(|text| Op::AppendUser { text }),
        3 => (
            prop::sample::select(vec!["upscale", "edit", "generate"]),
            of(any::<usize>()),
            of(1u32..8),
        )
            .prop_map(|(tool, input, scale)| Op::AppendToolRequest {
                tool: tool.into(),
                input,
                scale,
            }),
        6 => (
            any::<usize>(),
            of(status()),
            of(progress()),
            of(("[a-z_]{1,8}", text())),
            of("[a-z0-9]{1,8}"),
            of(any::<usize>()),
        )
            .prop_map(|(msg, status, progress, error, operation_id, output)| Op::Update {
                msg,
                status,
                progress,
                error,
                operation_id,
                output,
            }),
        3 => (blob(), of(blob()), of(any::<usize>()), of(any::<usize>())).prop_map(
            |(blob, thumbnail, parent, by_message)| Op::AddVersion {
                blob,
                thumbnail,
                parent,
                by_message,
            }
        ),
        2 => any::<usize>().prop_map(|version| Op::Rollback { version }),
        2 => (0.0..1000.0f64, 0i64..1_000_000_000_000, of(any::<usize>())).prop_map(
            |(units, cost_nano_usd, message)| Op::RecordCost {
                units,
                cost_nano_usd,
                message,
            }
        ),
        1 => text().prop_map(|title| Op::SetTitle { title }),
        1 => bad().prop_map(Op::Refused),
    ]
}

/// An operation and how far the caller's clock moved before it (sometimes
/// backwards: clocks of devices are not to be trusted).
fn timed_ops(max: usize) -> impl Strategy<Value = Vec<(Op, i64)>> {
    prop::collection::vec((op(), -3i64..60), 0..=max)
}

// ---------------------------------------------------------------- helpers

trait OrFail<T> {
    fn or_fail(self) -> Result<T, TestCaseError>;
}

impl<T, E: Debug> OrFail<T> for Result<T, E> {
    fn or_fail(self) -> Result<T, TestCaseError> {
        self.map_err(|e| TestCaseError::fail(format!("{e:?}")))
    }
}

/// Everything a document shows.
#[derive(Debug, Clone, PartialEq)]
struct Views {
    summary: AssetSummary,
    messages: Vec<MessageView>,
    versions: Vec<VersionView>,
    cost_events: Vec<CostEventView>,
}

fn views_of(r: Reader<'_>) -> Result<Views, TestCaseError> {
    Ok(Views {
        summary: r.summary().or_fail()?,
        messages: r.messages().or_fail()?,
        versions: r.versions().or_fail()?,
        cost_events: r.cost_events().or_fail()?,
    })
}

fn views(doc: &AssetDoc) -> Result<Views, TestCaseError> {
    views_of(doc.reader())
}

fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads
}

/// What one applied operation did.
#[derive(Debug, Default)]
struct Applied {
    refused: bool,
    /// The timeline entry it appended (a rollback appends a system message).
    appended: Option<String>,
    /// For an accepted rollback: its system message and the version.
    rollback: Option<(String, String)>,
}

/// Applies `op` at time `now` and checks what the model promises about it:
/// refused exactly when the documented rules say so, a refusal changes
/// nothing, an accepted write is one change with the expected effect, and the
/// cached summary equals the one read from the document.
fn apply(doc: &mut AssetDoc, op: &Op, now: Millis) -> Result<Applied, TestCaseError> {
    let before_heads = doc.heads();
    let before = views(doc)?;
    let msgs = &before.messages;
    let vers = &before.versions;
    let msg_at = |i: usize| (!msgs.is_empty()).then(|| &msgs[i % msgs.len()]);
    let ver_at = |i: usize| (!vers.is_empty()).then(|| vers[i % vers.len()].id.clone());

    let (result, expect_refused): (ModelResult<Option<String>>, bool) = match op {
        Op::AppendUser { text } => (
            doc.append_message(NewMessage::user(text.clone()), now)
                .map(Some),
            false,
        ),
        Op::AppendToolRequest { tool, input, scale } => {
            let msg = NewMessage {
                input_version_ids: input.and_then(ver_at).into_iter().collect(),
                params: scale.map(|s| serde_json::json!({ "scale": s })),
                ..NewMessage::tool_request(tool.clone(), "replicate", "some/model", "do it")
            };
            (doc.append_message(msg, now).map(Some), false)
        }
        Op::Update {
            msg,
            status,
            progress,
            error,
            operation_id,
            output,
        } => {
            let target = msg_at(*msg);
            let bad_progress = progress.is_some_and(|p| !(0.0..=1.0).contains(&p));
            let bad_status = match (target.and_then(|m| m.status), status) {
                (Some(cur), Some(next)) => cur.is_terminal() && cur != *next,
                _ => false,
            };
            let update = MessageUpdate {
                status: *status,
                progress: *progress,
                error: error
                    .clone()
                    .map(|(code, message)| ErrorInfo { code, message }),
                operation_id: operation_id.clone(),
                add_output_version_ids: output.and_then(ver_at).into_iter().collect(),
            };
            let id = target.map_or(UNKNOWN, |m| m.id.as_str());
            (
                doc.update_message(id, update, now).map(|()| None),
                target.is_none() || bad_progress || bad_status,
            )
        }
        Op::AddVersion {
            blob,
            thumbnail,
            parent,
            by_message,
        } => {
            let v = NewVersion {
                blob: blob.clone(),
                thumbnail: thumbnail.clone(),
                parent_version_id: parent.and_then(ver_at),
                created_by_message_id: by_message.and_then(msg_at).map(|m| m.id.clone()),
            };
            (doc.add_version(v, now).map(Some), false)
        }
        Op::Rollback { version } => {
            let v = ver_at(*version);
            let refused = v.is_none();
            let v = v.unwrap_or_else(|| UNKNOWN.to_owned());
            (doc.set_active_version(&v, now).map(Some), refused)
        }
        Op::RecordCost {
            units,
            cost_nano_usd,
            message,
        } => {
            let ev = NewCostEvent {
                provider: "replicate".into(),
                model: "some/model".into(),
                units: *units,
                unit: "seconds".into(),
                cost_nano_usd: *cost_nano_usd,
                message_id: message.and_then(msg_at).map(|m| m.id.clone()),
            };
            (doc.record_cost(ev, now).map(Some), false)
        }
        Op::SetTitle { title } => (doc.set_title(title, now).map(|()| None), false),
        Op::Refused(bad) => (apply_bad(doc, bad, msgs, now), true),
    };

    let refused = result.is_err();
    prop_assert_eq!(
        refused,
        expect_refused,
        "{:?} on a document with {} messages and {} versions gave {:?}",
        op,
        msgs.len(),
        vers.len(),
        result
    );
    let after_heads = doc.heads();
    let after = views(doc)?;
    let cached = doc.summary().or_fail()?;
    prop_assert_eq!(&cached, &after.summary, "cached summary after {:?}", op);

    let mut applied = Applied {
        refused,
        ..Applied::default()
    };
    if refused {
        prop_assert_eq!(
            &after_heads,
            &before_heads,
            "refused {:?} left a change",
            op
        );
        prop_assert_eq!(&after, &before, "refused {:?} changed a view", op);
        return Ok(applied);
    }
    // An update that sets nothing, at the timestamps already recorded,
    // writes nothing: Automerge skips a put of the value already there.
    if after_heads == before_heads
        && let Op::Update {
            status: None,
            progress: None,
            error: None,
            operation_id: None,
            ..
        } = op
    {
        prop_assert_eq!(&after, &before, "{:?} changed a view without a change", op);
        return Ok(applied);
    }
    prop_assert_ne!(&after_heads, &before_heads, "{:?} made no change", op);
    prop_assert_eq!(
        after_heads.len(),
        1,
        "a local change has every head as a dependency"
    );
    prop_assert_eq!(after.summary.updated_at, now);
    let returned = result.or_fail()?;

    // The effect each accepted write documents.
    let appended_count = match op {
        Op::AppendUser { .. } | Op::AppendToolRequest { .. } | Op::Rollback { .. } => 1,
        _ => 0,
    };
    prop_assert_eq!(after.messages.len(), msgs.len() + appended_count);
    prop_assert_eq!(after.summary.message_count, after.messages.len() as u64);
    match op {
        Op::AppendUser { text } => {
            let last = after.messages.last().unwrap();
            prop_assert_eq!(Some(&last.id), returned.as_ref());
            prop_assert_eq!(last.kind, MessageKind::User);
            prop_assert_eq!(last.text.as_ref(), Some(text));
            prop_assert_eq!(last.created_at, now);
            applied.appended = returned;
        }
        Op::AppendToolRequest { tool, scale, .. } => {
            let last = after.messages.last().unwrap();
            prop_assert_eq!(Some(&last.id), returned.as_ref());
            prop_assert_eq!(last.kind, MessageKind::ToolRequest);
            prop_assert_eq!(last.tool.as_ref(), Some(tool));
            prop_assert_eq!(last.status, Some(MessageStatus::Queued));
            prop_assert_eq!(
                &last.params,
                &scale.map(|s| serde_json::json!({ "scale": s }))
            );
            applied.appended = returned;
        }
        Op::Update {
            msg,
            status,
            progress,
            error,
            operation_id,
            output,
        } => {
            let old = msg_at(*msg).unwrap();
            let new = after.messages.iter().find(|m| m.id == old.id).unwrap();
            prop_assert_eq!(new.status, status.or(old.status));
            prop_assert_eq!(new.progress, progress.or(old.progress));
            let error = error
                .clone()
                .map(|(code, message)| ErrorInfo { code, message });
            prop_assert_eq!(&new.error, &error.or(old.error.clone()));
            prop_assert_eq!(
                &new.operation_id,
                &operation_id.clone().or(old.operation_id.clone())
            );
            let mut outputs = old.output_version_ids.clone();
            outputs.extend(output.and_then(ver_at));
            prop_assert_eq!(&new.output_version_ids, &outputs);
            prop_assert_eq!(new.updated_at, now);
            // The id lookup (an index kept across writes) finds it too.
            prop_assert_eq!(&doc.message(&old.id).or_fail()?, new);
        }
        Op::AddVersion {
            blob, thumbnail, ..
        } => {
            let id = returned.unwrap();
            prop_assert_eq!(after.versions.len(), vers.len() + 1);
            prop_assert!(after.versions.iter().any(|v| v.id == id));
            prop_assert_eq!(after.summary.active_version_id.as_ref(), Some(&id));
            prop_assert_eq!(
                after.summary.cover.as_ref(),
                Some(thumbnail.as_ref().unwrap_or(blob))
            );
        }
        Op::Rollback { version } => {
            let v = ver_at(*version).unwrap();
            let last = after.messages.last().unwrap();
            prop_assert_eq!(Some(&last.id), returned.as_ref());
            prop_assert_eq!(last.kind, MessageKind::System);
            prop_assert_eq!(&last.input_version_ids, &vec![v.clone()]);
            prop_assert_eq!(after.summary.active_version_id.as_ref(), Some(&v));
            prop_assert_eq!(&after.versions, vers, "a rollback keeps every version");
            applied.appended = returned.clone();
            applied.rollback = Some((returned.unwrap(), v));
        }
        Op::RecordCost { .. } => {
            let id = returned.unwrap();
            prop_assert_eq!(after.cost_events.len(), before.cost_events.len() + 1);
            prop_assert!(after.cost_events.iter().any(|c| c.id == id && c.ts == now));
        }
        Op::SetTitle { title } => prop_assert_eq!(&after.summary.title, title),
        Op::Refused(_) => unreachable!("checked above"),
    }
    Ok(applied)
}

fn apply_bad(
    doc: &mut AssetDoc,
    bad: &Bad,
    msgs: &[MessageView],
    now: Millis,
) -> ModelResult<Option<String>> {
    let good_blob = BlobRef {
        sha256: "ab".repeat(32),
        mime: "image/png".into(),
        width: 1,
        height: 1,
        bytes: 1,
    };
    let version = |blob: BlobRef, thumbnail: Option<BlobRef>| NewVersion {
        blob,
        thumbnail,
        parent_version_id: None,
        created_by_message_id: None,
    };
    let cost = |units: f64, cost_nano_usd: i64| NewCostEvent {
        provider: "p".into(),
        model: "m".into(),
        units,
        unit: "images".into(),
        cost_nano_usd,
        message_id: None,
    };
    match bad {
        Bad::UpdateUnknownMessage => doc
            .update_message(UNKNOWN, MessageUpdate::default(), now)
            .map(|()| None),
        Bad::UnknownOutputVersion { msg } => {
            let id = match msgs.len() {
                0 => UNKNOWN,
                n => msgs[msg % n].id.as_str(),
            };
            let update = MessageUpdate {
                add_output_version_ids: vec![UNKNOWN.into()],
                ..Default::default()
            };
            doc.update_message(id, update, now).map(|()| None)
        }
        Bad::RollbackToUnknownVersion => doc.set_active_version(UNKNOWN, now).map(Some),
        Bad::MalformedBlobSha => {
            let blob = BlobRef {
                sha256: "not a hash".into(),
                ..good_blob
            };
            doc.add_version(version(blob, None), now).map(Some)
        }
        Bad::MalformedThumbnailSha => {
            let thumb = BlobRef {
                sha256: "AB".repeat(32),
                ..good_blob.clone()
            };
            doc.add_version(version(good_blob, Some(thumb)), now)
                .map(Some)
        }
        Bad::UnknownParentVersion => {
            let v = NewVersion {
                parent_version_id: Some(UNKNOWN.into()),
                ..version(good_blob, None)
            };
            doc.add_version(v, now).map(Some)
        }
        Bad::UnknownCreatingMessage => {
            let v = NewVersion {
                created_by_message_id: Some(UNKNOWN.into()),
                ..version(good_blob, None)
            };
            doc.add_version(v, now).map(Some)
        }
        Bad::NegativeCost => doc.record_cost(cost(1.0, -1), now).map(Some),
        Bad::NonFiniteUnits => doc.record_cost(cost(f64::NAN, 1), now).map(Some),
        Bad::ParamsNotAnObject => {
            let m = NewMessage {
                params: Some(serde_json::json!([1, 2])),
                ..NewMessage::user("x")
            };
            doc.append_message(m, now).map(Some)
        }
        Bad::ToolRequestWithoutTool => {
            let m = NewMessage {
                tool: None,
                ..NewMessage::tool_request("t", "p", "m", "x")
            };
            doc.append_message(m, now).map(Some)
        }
        Bad::MessageWithoutKind => doc.append_message(NewMessage::default(), now).map(Some),
    }
}

/// Applies timed operations from `now`, returning the new time and what each
/// did.
fn apply_all(
    doc: &mut AssetDoc,
    ops: &[(Op, i64)],
    mut now: Millis,
) -> Result<(Millis, Vec<Applied>), TestCaseError> {
    let mut out = Vec::with_capacity(ops.len());
    for (op, dt) in ops {
        now += dt;
        out.push(apply(doc, op, now)?);
    }
    Ok((now, out))
}

// ------------------------------------------------------------------ store

/// One step of the store-backed property: an operation, then a save, then
/// maybe a compaction, then maybe dropping the asset and loading it again.
#[derive(Debug, Clone)]
struct StoreStep {
    op: Op,
    dt: i64,
    compact: bool,
    reload: bool,
}

fn store_steps(max: usize) -> impl Strategy<Value = Vec<StoreStep>> {
    prop::collection::vec(
        (
            op(),
            -3i64..60,
            prop::bool::weighted(0.15),
            prop::bool::weighted(0.15),
        )
            .prop_map(|(op, dt, compact, reload)| StoreStep {
                op,
                dt,
                compact,
                reload,
            }),
        0..=max,
    )
}

fn policy() -> impl Strategy<Value = CompactionPolicy> {
    prop_oneof![
        Just(CompactionPolicy::default()),
        Just(CompactionPolicy::NEVER),
        // Compacts on nearly every save.
        Just(CompactionPolicy {
            min_incremental_bytes: 0,
            ratio_percent: 0,
            max_chunks: u64::MAX,
        }),
    ]
}

/// Runs `body` against a fresh store in a temporary directory.
fn with_store<F>(policy: CompactionPolicy, body: F) -> Result<(), TestCaseError>
where
    F: AsyncFnOnce(&Store) -> Result<(), TestCaseError>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .or_fail()?;
    let dir = tempfile::tempdir().or_fail()?;
    rt.block_on(async {
        let options = StoreOptions {
            compaction: policy,
            ..Default::default()
        };
        let store = Store::open(dir.path(), options).await.or_fail()?;
        let result = body(&store).await;
        store.close().await;
        result
    })
}

/// The store's listing row for `id` agrees with the document's summary.
async fn check_listing(store: &Store, id: &DocId, doc: &AssetDoc) -> Result<(), TestCaseError> {
    let s = doc.reader().summary().or_fail()?;
    let listing = store.list().await.or_fail()?;
    let rows: Vec<_> = listing.iter().filter(|l| &l.id == id).collect();
    prop_assert_eq!(rows.len(), 1, "one listing row per asset");
    let row = rows[0];
    prop_assert_eq!(&row.title, &s.title, "listing title");
    prop_assert_eq!(row.message_count, s.message_count, "listing message count");
    prop_assert_eq!(row.updated_at, s.updated_at, "listing updated_at");
    prop_assert_eq!(row.created_at, s.created_at, "listing created_at");
    prop_assert_eq!(
        row.cover_sha256.as_deref(),
        s.cover.as_ref().map(|c| c.sha256.as_str()),
        "listing cover"
    );
    Ok(())
}

/// Drops `asset` and loads it again, checking nothing was lost.
async fn reload(store: &Store, asset: LocalAsset) -> Result<LocalAsset, TestCaseError> {
    let mut asset = asset;
    let heads = sorted(asset.doc.heads());
    let expected = views(&asset.doc)?;
    let id = asset.id.clone();
    drop(asset);
    let mut asset = store.load(&id).await.or_fail()?;
    prop_assert_eq!(sorted(asset.doc.heads()), heads, "heads after reload");
    prop_assert_eq!(views(&asset.doc)?, expected, "views after reload");
    prop_assert!(
        !asset.doc.has_unsaved_changes(),
        "a reload has nothing to save"
    );
    let stored = store.stored_size(&id).await.or_fail()?;
    prop_assert_eq!(
        stored.chunks,
        asset.chunk_count() as u64,
        "a load reads every chunk"
    );
    Ok(asset)
}

/// Property 1: the document and its stored copy agree whatever happens
/// between writes.
async fn store_round_trip(
    store: &Store,
    title: &str,
    steps: &[StoreStep],
) -> Result<(), TestCaseError> {
    let mut now = T0;
    let mut asset = store.create(title, now).await.or_fail()?;
    let id = asset.id.clone();
    check_listing(store, &id, &asset.doc).await?;
    for step in steps {
        now += step.dt;
        apply(&mut asset.doc, &step.op, now)?;
        store.save(&mut asset).await.or_fail()?;
        prop_assert!(!asset.doc.has_unsaved_changes(), "saved");
        check_listing(store, &id, &asset.doc).await?;
        if step.compact {
            let heads = asset.doc.heads();
            store.compact(&mut asset).await.or_fail()?;
            prop_assert_eq!(asset.doc.heads(), heads, "compaction changes no document");
            prop_assert_eq!(asset.chunk_count(), 1);
            prop_assert_eq!(store.stored_size(&id).await.or_fail()?.chunks, 1);
            check_listing(store, &id, &asset.doc).await?;
        }
        if step.reload {
            asset = reload(store, asset).await?;
            check_listing(store, &id, &asset.doc).await?;
        }
    }

    let heads = sorted(asset.doc.heads());
    let expected = views(&asset.doc)?;
    prop_assert_eq!(&asset.doc.summary().or_fail()?, &expected.summary);

    let mut loaded = store.load(&id).await.or_fail()?;
    prop_assert_eq!(
        sorted(loaded.doc.heads()),
        heads.clone(),
        "heads from the store"
    );
    prop_assert_eq!(&views(&loaded.doc)?, &expected, "views from the store");
    prop_assert_eq!(&loaded.doc.summary().or_fail()?, &expected.summary);

    let mut saved = AssetDoc::load(&asset.doc.save()).or_fail()?;
    prop_assert_eq!(sorted(saved.heads()), heads, "heads from save()");
    prop_assert_eq!(&views(&saved)?, &expected, "views from save()");

    check_listing(store, &id, &loaded.doc).await?;
    let listing = store.list().await.or_fail()?;
    prop_assert_eq!(listing.len(), 1);
    Ok(())
}

/// The bug this property finds: like [`store_round_trip`], but compaction
/// may also come *before* the save of a write. `Store::compact` stores
/// unsaved changes as a chunk without updating the listing row, and the save
/// that follows then has nothing to write, so the listing stays stale.
async fn store_compact_before_save(
    store: &Store,
    steps: &[StoreStep],
) -> Result<(), TestCaseError> {
    let mut now = T0;
    let mut asset = store.create("untitled", now).await.or_fail()?;
    let id = asset.id.clone();
    for step in steps {
        now += step.dt;
        apply(&mut asset.doc, &step.op, now)?;
        if step.compact {
            store.compact(&mut asset).await.or_fail()?;
        }
        store.save(&mut asset).await.or_fail()?;
        check_listing(store, &id, &asset.doc).await?;
        if step.reload {
            asset = reload(store, asset).await?;
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ merge

#[derive(Debug, Clone)]
struct MergeCase {
    prefix: Vec<(Op, i64)>,
    left: Vec<(Op, i64)>,
    right: Vec<(Op, i64)>,
    /// Where each side's forced rollback goes, and to which version.
    left_rollback: (usize, usize),
    right_rollback: (usize, usize),
}

fn merge_case() -> impl Strategy<Value = MergeCase> {
    (
        timed_ops(12),
        timed_ops(15),
        timed_ops(15),
        any::<(usize, usize)>(),
        any::<(usize, usize)>(),
    )
        .prop_map(
            |(prefix, left, right, left_rollback, right_rollback)| MergeCase {
                prefix,
                left,
                right,
                left_rollback,
                right_rollback,
            },
        )
}

/// `ops` with a rollback to version `version` (by index) inserted at `at`
/// (modulo the length).
fn with_rollback(ops: &[(Op, i64)], (at, version): (usize, usize)) -> Vec<(Op, i64)> {
    let mut ops = ops.to_vec();
    ops.insert(at % (ops.len() + 1), (Op::Rollback { version }, 1));
    ops
}

/// What one fork's edits added: its timeline entries, and its rollbacks as
/// (system message, version).
struct ForkEdits {
    appended: Vec<String>,
    rollbacks: Vec<(String, String)>,
}

fn edit_fork(
    doc: &mut AssetDoc,
    ops: &[(Op, i64)],
    now: Millis,
) -> Result<ForkEdits, TestCaseError> {
    let (_, applied) = apply_all(doc, ops, now)?;
    Ok(ForkEdits {
        appended: applied.iter().filter_map(|a| a.appended.clone()).collect(),
        rollbacks: applied.iter().filter_map(|a| a.rollback.clone()).collect(),
    })
}

fn check_merge(case: &MergeCase) -> Result<(), TestCaseError> {
    let mut base = AssetDoc::create("base", T0);
    let (mut now, _) = apply_all(&mut base, &case.prefix, T0)?;
    if base.versions().or_fail()?.is_empty() {
        now += 1;
        let v = NewVersion {
            blob: BlobRef {
                sha256: "0".repeat(64),
                mime: "image/png".into(),
                width: 1,
                height: 1,
                bytes: 1,
            },
            thumbnail: None,
            parent_version_id: None,
            created_by_message_id: None,
        };
        base.add_version(v, now).or_fail()?;
    }
    let base_ids: Vec<String> = base
        .messages()
        .or_fail()?
        .into_iter()
        .map(|m| m.id)
        .collect();

    let mut a = base.fork();
    let mut b = base.fork();
    prop_assert_eq!(
        sorted(a.heads()),
        sorted(base.heads()),
        "a fork has its origin's heads"
    );
    let left = with_rollback(&case.left, case.left_rollback);
    let right = with_rollback(&case.right, case.right_rollback);
    let ForkEdits {
        appended: a_appended,
        rollbacks: a_rollbacks,
    } = edit_fork(&mut a, &left, now)?;
    let ForkEdits {
        appended: b_appended,
        rollbacks: b_rollbacks,
    } = edit_fork(&mut b, &right, now)?;
    prop_assert!(!a_rollbacks.is_empty() && !b_rollbacks.is_empty());
    let a_heads = a.heads();
    let b_heads = b.heads();
    let a_views = views(&a)?;
    let b_views = views(&b)?;

    let mut ab = a.fork();
    ab.merge(&mut b.fork()).or_fail()?;
    let mut ba = b.fork();
    ba.merge(&mut a.fork()).or_fail()?;

    prop_assert_eq!(
        sorted(ab.heads()),
        sorted(ba.heads()),
        "heads in either merge order"
    );
    let merged = views(&ab)?;
    prop_assert_eq!(&merged, &views(&ba)?, "views in either merge order");
    prop_assert_eq!(
        &ab.summary().or_fail()?,
        &merged.summary,
        "cached summary after merge"
    );
    prop_assert_eq!(&ba.summary().or_fail()?, &merged.summary);

    // Nothing lost, nothing doubled.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for m in &merged.messages {
        *seen.entry(m.id.as_str()).or_default() += 1;
    }
    for id in base_ids.iter().chain(&a_appended).chain(&b_appended) {
        prop_assert_eq!(
            seen.get(id.as_str()).copied(),
            Some(1),
            "message {} once",
            id
        );
    }
    prop_assert_eq!(
        merged.messages.len(),
        base_ids.len() + a_appended.len() + b_appended.len()
    );
    prop_assert_eq!(merged.summary.message_count, merged.messages.len() as u64);
    for (msg, version) in a_rollbacks.iter().chain(&b_rollbacks) {
        let m = merged.messages.iter().find(|m| &m.id == msg);
        prop_assert!(m.is_some(), "rollback message {} is kept", msg);
        let m = m.unwrap();
        prop_assert_eq!(m.kind, MessageKind::System);
        prop_assert_eq!(&m.input_version_ids, &vec![version.clone()]);
    }
    for side in [&a_views, &b_views] {
        for v in &side.versions {
            prop_assert!(merged.versions.contains(v), "version {} is kept", v.id);
        }
        for c in &side.cost_events {
            prop_assert!(
                merged.cost_events.contains(c),
                "cost event {} is kept",
                c.id
            );
        }
    }
    prop_assert_eq!(
        merged.cost_events.len(),
        a_views.cost_events.len() + b_views.cost_events.len() - views(&base)?.cost_events.len()
    );
    // Both sides rolled back concurrently: one of their choices wins.
    prop_assert!(
        merged.summary.active_version_id == a_views.summary.active_version_id
            || merged.summary.active_version_id == b_views.summary.active_version_id,
        "active version {:?} is one side's",
        merged.summary.active_version_id
    );

    // Each side's state is still readable in the merged history.
    prop_assert_eq!(
        &views_of(ab.reader_at(&a_heads))?,
        &a_views,
        "a's state after merge"
    );
    prop_assert_eq!(
        &views_of(ab.reader_at(&b_heads))?,
        &b_views,
        "b's state after merge"
    );

    // Lookups by id work across the merge; merging again changes nothing.
    for m in &merged.messages {
        prop_assert_eq!(&ab.message(&m.id).or_fail()?, m);
    }
    let heads = sorted(ab.heads());
    ab.merge(&mut b.fork()).or_fail()?;
    ab.merge(&mut a.fork()).or_fail()?;
    prop_assert_eq!(sorted(ab.heads()), heads.clone(), "merging is idempotent");

    let reloaded = AssetDoc::load(&ab.save()).or_fail()?;
    prop_assert_eq!(
        &views(&reloaded)?,
        &merged,
        "merged views survive save and load"
    );
    Ok(())
}

// ---------------------------------------------------------------- history

fn check_history(ops: &[(Op, i64)], range: (usize, usize)) -> Result<(), TestCaseError> {
    let mut doc = AssetDoc::create("history", T0);
    let mut now = T0;
    let mut past = vec![(doc.heads(), views(&doc)?)];
    let mut accepted = 0;
    for (op, dt) in ops {
        now += dt;
        if !apply(&mut doc, op, now)?.refused {
            accepted += 1;
        }
        past.push((doc.heads(), views(&doc)?));
    }
    for (i, (heads, then)) in past.iter().enumerate() {
        let r = doc.reader_at(heads);
        prop_assert_eq!(
            &r.messages().or_fail()?,
            &then.messages,
            "messages after op {}",
            i
        );
        prop_assert_eq!(&views_of(r)?, then, "views after op {}", i);
        let (lo, hi) = range;
        let end = hi.min(then.messages.len());
        let expected = if lo < end {
            &then.messages[lo..end]
        } else {
            &[][..]
        };
        prop_assert_eq!(
            &r.messages_range(lo..hi).or_fail()?[..],
            expected,
            "range after op {}",
            i
        );
    }
    let history = doc.history();
    prop_assert_eq!(history.len(), 1 + accepted, "one change per accepted write");
    for (heads, _) in &past {
        for h in heads {
            prop_assert!(
                history.iter().any(|c| &c.hash == h),
                "head {} is in history",
                h
            );
        }
    }
    Ok(())
}

// ------------------------------------------------------------- properties

/// `cases` cases, shrinking far enough to reach small counterexamples, and
/// no regression files written next to the tests.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 4096,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(24))]

    /// Property 1: saved and reloaded, with compaction in between, a
    /// document keeps its heads and views, and the listing follows it.
    #[test]
    fn store_round_trips_heads_views_and_listing(
        title in text(),
        steps in store_steps(30),
        policy in policy(),
    ) {
        with_store(policy, async |store| store_round_trip(store, &title, &steps).await)?;
    }

    /// Compaction of changes not yet saved must leave the listing current.
    #[test]
    fn compacting_unsaved_changes_keeps_the_listing_current(
        steps in store_steps(12),
    ) {
        with_store(CompactionPolicy::NEVER, async |store| {
            store_compact_before_save(store, &steps).await
        })?;
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// Property 2: forks edited apart (each rolling back at least once)
    /// converge in either merge order, keeping every entry exactly once.
    #[test]
    fn forks_converge_in_either_merge_order(case in merge_case()) {
        check_merge(&case)?;
    }

    /// Property 3: the state after every write is readable at its heads.
    #[test]
    fn every_past_state_is_readable_at_its_heads(
        ops in timed_ops(30),
        range in (0usize..40, 0usize..40),
    ) {
        check_history(&ops, range)?;
    }

    /// Any blob reference the model accepts reads back as written, and the
    /// cached summary agrees with the document; an impossible size (above
    /// `i64::MAX`, which the document could not store) is refused unchanged.
    #[test]
    fn blob_refs_round_trip(
        width in any::<u32>(),
        height in any::<u32>(),
        bytes in any::<u64>(),
    ) {
        let mut doc = AssetDoc::create("blobs", T0);
        let heads = doc.heads();
        let blob = BlobRef { sha256: "ab".repeat(32), mime: "image/png".into(), width, height, bytes };
        let v = NewVersion {
            blob: blob.clone(),
            thumbnail: None,
            parent_version_id: None,
            created_by_message_id: None,
        };
        if bytes > i64::MAX as u64 {
            prop_assert!(matches!(doc.add_version(v, T0 + 1), Err(ModelError::Invalid(_))));
            prop_assert_eq!(doc.heads(), heads);
            return Ok(());
        }
        let id = doc.add_version(v, T0 + 1).or_fail()?;
        prop_assert_eq!(&doc.versions().or_fail()?[0].blob, &blob, "version {}", id);
        prop_assert_eq!(&doc.reader().summary().or_fail()?, &doc.summary().or_fail()?);
    }
}
