//! The oracle: applies one operation to a document and checks it against
//! what the model promises (refused exactly when the documented rules say
//! so, a refusal changes nothing, an accepted write is one change with its
//! documented effect), plus the readings of a document the properties
//! compare.

use std::fmt::Debug;

use automerge::ChangeHash;
use core_sync::model::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::strategies::{Bad, Op};

/// A well-formed id that no document contains.
const UNKNOWN: &str = "ffffffffffffffffffffffffffffffff";

pub(crate) trait OrFail<T> {
    fn or_fail(self) -> Result<T, TestCaseError>;
}

impl<T, E: Debug> OrFail<T> for Result<T, E> {
    fn or_fail(self) -> Result<T, TestCaseError> {
        self.map_err(|e| TestCaseError::fail(format!("{e:?}")))
    }
}

/// Everything a document shows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Views {
    pub(crate) summary: AssetSummary,
    pub(crate) messages: Vec<MessageView>,
    pub(crate) versions: Vec<VersionView>,
    pub(crate) cost_events: Vec<CostEventView>,
}

pub(crate) fn views_of(r: Reader<'_>) -> Result<Views, TestCaseError> {
    Ok(Views {
        summary: r.summary().or_fail()?,
        messages: r.messages().or_fail()?,
        versions: r.versions().or_fail()?,
        cost_events: r.cost_events().or_fail()?,
    })
}

pub(crate) fn views(doc: &AssetDoc) -> Result<Views, TestCaseError> {
    views_of(doc.reader())
}

pub(crate) fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads
}

/// What one applied operation did.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// Whether it wrote a change: not for a refusal, nor for an op that
    /// sets nothing new (an update to what its message holds, the title
    /// the asset has).
    pub(crate) wrote: bool,
    /// The timeline entry it appended (a rollback appends a system message).
    pub(crate) appended: Option<String>,
    /// For an accepted rollback: its system message and the version.
    pub(crate) rollback: Option<(String, String)>,
}

/// Applies `op` at time `now` and checks what the model promises about it:
/// refused exactly when the documented rules say so, a refusal changes
/// nothing, an accepted write is one change with the expected effect, and the
/// cached summary equals the one read from the document.
pub(crate) fn apply(doc: &mut AssetDoc, op: &Op, now: Millis) -> Result<Applied, TestCaseError> {
    let before_heads = doc.heads();
    let before = views(doc)?;
    let msgs = &before.messages;
    let vers = &before.versions;
    let msg_at = |i: usize| (!msgs.is_empty()).then(|| &msgs[i % msgs.len()]);
    let ver_at = |i: usize| (!vers.is_empty()).then(|| vers[i % vers.len()].id.clone());

    let holds_already = match op {
        Op::Update {
            msg,
            status,
            progress,
            error: None,
            operation_id,
            output,
        } => msg_at(*msg).is_some_and(|m| {
            status.is_none_or(|s| m.status == Some(s))
                && progress.is_none_or(|p| m.progress == Some(p))
                && operation_id
                    .as_ref()
                    .is_none_or(|o| m.operation_id.as_ref() == Some(o))
                && output.and_then(ver_at).is_none()
        }),
        Op::SetTitle { title } => before.summary.title == *title,
        _ => false,
    };
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

    let mut applied = Applied::default();
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
    // An update that sets only what its message already holds, or the title
    // the asset has (at the millisecond already recorded), writes nothing:
    // Automerge skips a put of the value already there. An error or an
    // output is always written.
    if after_heads == before_heads && holds_already {
        prop_assert_eq!(&after, &before, "{:?} changed a view without a change", op);
        return Ok(applied);
    }
    prop_assert_ne!(&after_heads, &before_heads, "{:?} made no change", op);
    applied.wrote = true;
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
pub(crate) fn apply_all(
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
