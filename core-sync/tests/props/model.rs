//! Properties of documents alone (no store): forks edited apart converge in
//! either merge order, every past state is readable at its heads, and blob
//! references round-trip.

use std::collections::HashMap;

use core_sync::model::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::oracle::{OrFail, apply, apply_all, sorted, views, views_of};
use crate::strategies::{Op, T0, config, timed_ops};

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

fn check_history(ops: &[(Op, i64)], range: (usize, usize)) -> Result<(), TestCaseError> {
    let mut doc = AssetDoc::create("history", T0);
    let mut now = T0;
    let mut past = vec![(doc.heads(), views(&doc)?)];
    let mut writes = 0;
    for (op, dt) in ops {
        now += dt;
        if apply(&mut doc, op, now)?.wrote {
            writes += 1;
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
    prop_assert_eq!(history.len(), 1 + writes, "one change per write");
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

/// Found by the properties in CI: an update that sets only what its message
/// already holds (or the title the asset has), at the same millisecond,
/// writes no change, and neither the oracle nor the history may expect one.
#[test]
fn an_update_that_sets_nothing_new_is_not_a_change() {
    let update = |status: Option<MessageStatus>| Op::Update {
        msg: 0,
        status,
        progress: None,
        error: None,
        operation_id: None,
        output: None,
    };
    let append = || Op::AppendUser {
        text: String::new(),
    };
    let cases = [
        ("nothing set", vec![append(), update(None)]),
        (
            "the status it has",
            vec![
                append(),
                update(Some(MessageStatus::Running)),
                update(Some(MessageStatus::Running)),
            ],
        ),
        (
            "the title it has",
            vec![
                Op::SetTitle { title: "t".into() },
                Op::SetTitle { title: "t".into() },
            ],
        ),
    ];
    for (name, ops) in cases {
        let ops: Vec<(Op, i64)> = ops.into_iter().map(|op| (op, 0)).collect();
        if let Err(e) = check_history(&ops, (0, 0)) {
            panic!("{name}: {e}");
        }
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
