//! Behaviour of the asset document model, one scenario per test.

use core_sync::model::*;

fn blob(n: u8) -> BlobRef {
    BlobRef {
        sha256: format!("{:064x}", n),
        mime: "image/png".into(),
        width: 640,
        height: 480,
        bytes: 1000 + n as u64,
    }
}

#[test]
fn a_timeline_from_prompt_to_rollback() {
    let mut doc = AssetDoc::create("Sneaker shot", 1_000);
    let prompt = doc
        .append_message(NewMessage::user("a red sneaker"), 1_001)
        .unwrap();
    let v1 = doc
        .add_version(
            NewVersion {
                blob: blob(1),
                thumbnail: Some(blob(2)),
                parent_version_id: None,
                created_by_message_id: Some(prompt.clone()),
            },
            1_002,
        )
        .unwrap();
    let req = doc
        .append_message(
            NewMessage {
                input_version_ids: vec![v1.clone()],
                params: Some(serde_json::json!({"scale": 4})),
                ..NewMessage::tool_request(
                    "upscale",
                    "replicate",
                    "nightmareai/real-esrgan",
                    "upscale 4x",
                )
            },
            1_003,
        )
        .unwrap();
    doc.update_message(
        &req,
        MessageUpdate {
            status: Some(MessageStatus::Running),
            progress: Some(0.5),
            ..Default::default()
        },
        1_004,
    )
    .unwrap();
    let v2 = doc
        .add_version(
            NewVersion {
                blob: blob(3),
                thumbnail: None,
                parent_version_id: Some(v1.clone()),
                created_by_message_id: Some(req.clone()),
            },
            1_005,
        )
        .unwrap();
    doc.update_message(
        &req,
        MessageUpdate {
            status: Some(MessageStatus::Succeeded),
            progress: Some(1.0),
            add_output_version_ids: vec![v2.clone()],
            ..Default::default()
        },
        1_006,
    )
    .unwrap();
    doc.record_cost(
        NewCostEvent {
            provider: "replicate".into(),
            model: "nightmareai/real-esrgan".into(),
            units: 2.5,
            unit: "seconds".into(),
            cost_nano_usd: 562_500,
            message_id: Some(req.clone()),
        },
        1_007,
    )
    .unwrap();
    let before_rollback = doc.heads();
    let sys = doc.set_active_version(&v1, 1_008).unwrap();

    let s = doc.summary().unwrap();
    assert_eq!(s.title, "Sneaker shot");
    assert_eq!(s.active_version_id.as_deref(), Some(v1.as_str()));
    assert_eq!(
        s.cover.unwrap().sha256,
        blob(2).sha256,
        "cover is the thumbnail"
    );
    assert_eq!(s.message_count, 3);
    assert_eq!(s.updated_at, 1_008);
    // The cached summary agrees with one computed from scratch.
    assert_eq!(doc.reader().summary().unwrap(), doc.summary().unwrap());

    let msgs = doc.messages().unwrap();
    assert_eq!(
        msgs.iter().map(|m| m.kind).collect::<Vec<_>>(),
        [
            MessageKind::User,
            MessageKind::ToolRequest,
            MessageKind::System
        ]
    );
    let r = &msgs[1];
    assert_eq!(r.status, Some(MessageStatus::Succeeded));
    assert_eq!(r.output_version_ids, vec![v2.clone()]);
    assert_eq!(r.params, Some(serde_json::json!({"scale": 4})));
    assert_eq!(r.updated_at, 1_006);
    assert_eq!(msgs[2].id, sys);
    assert_eq!(msgs[2].input_version_ids, vec![v1.clone()]);
    assert_eq!(doc.messages_range(1..2).unwrap(), msgs[1..2].to_vec());
    assert_eq!(doc.message(&req).unwrap(), msgs[1]);

    let versions = doc.versions().unwrap();
    assert_eq!(
        versions.iter().map(|v| v.id.clone()).collect::<Vec<_>>(),
        [v1.clone(), v2.clone()]
    );
    assert_eq!(versions[1].parent_version_id.as_deref(), Some(v1.as_str()));
    let costs = doc.cost_events().unwrap();
    assert_eq!(costs.len(), 1);
    assert!((costs[0].cost_usd() - 0.0005625).abs() < 1e-12);

    // History: the state before the rollback is still readable.
    let past = doc.reader_at(&before_rollback).summary().unwrap();
    assert_eq!(past.active_version_id.as_deref(), Some(v2.as_str()));
    assert_eq!(past.message_count, 2);
    assert_eq!(doc.history().len(), 9, "create + 8 writes, one change each");
}

#[test]
fn refused_writes_leave_the_document_unchanged() {
    let mut doc = AssetDoc::create("x", 0);
    let heads = doc.heads();
    let id = doc
        .append_message(
            NewMessage::tool_request("upscale", "replicate", "m", "p"),
            1,
        )
        .unwrap();
    let after = doc.heads();
    assert_ne!(heads, after);
    for bad in [
        MessageUpdate {
            progress: Some(1.5),
            ..Default::default()
        },
        MessageUpdate {
            add_output_version_ids: vec!["nope".into()],
            ..Default::default()
        },
    ] {
        assert!(matches!(
            doc.update_message(&id, bad, 2),
            Err(ModelError::Invalid(_) | ModelError::UnknownVersion(_))
        ));
    }
    assert!(matches!(
        doc.update_message("missing", MessageUpdate::default(), 2),
        Err(ModelError::UnknownMessage(_))
    ));
    doc.update_message(
        &id,
        MessageUpdate {
            status: Some(MessageStatus::Canceled),
            ..Default::default()
        },
        3,
    )
    .unwrap();
    let canceled = doc.heads();
    assert!(matches!(
        doc.update_message(
            &id,
            MessageUpdate {
                status: Some(MessageStatus::Running),
                ..Default::default()
            },
            4
        ),
        Err(ModelError::Invalid(_))
    ));
    assert!(matches!(
        doc.set_active_version("nope", 5),
        Err(ModelError::UnknownVersion(_))
    ));
    assert!(matches!(
        doc.append_message(
            NewMessage {
                params: Some(serde_json::json!([1])),
                ..NewMessage::user("x")
            },
            6
        ),
        Err(ModelError::Invalid(_))
    ));
    assert_eq!(doc.heads(), canceled, "no refused write left a change");
}

#[test]
fn message_lookup_survives_merges_and_long_timelines() {
    let mut a = AssetDoc::create("x", 0);
    let first = a
        .append_message(NewMessage::tool_request("t", "p", "m", "first"), 1)
        .unwrap();
    for i in 0..300 {
        a.append_message(NewMessage::user(format!("m{i}")), 2 + i)
            .unwrap();
    }
    let mut b = a.fork();
    let from_b = b
        .append_message(NewMessage::tool_request("t", "p", "m", "b"), 500)
        .unwrap();
    a.append_message(NewMessage::user("a"), 501).unwrap();
    a.merge(&mut b).unwrap();
    a.update_message(
        &first,
        MessageUpdate {
            progress: Some(0.1),
            ..Default::default()
        },
        600,
    )
    .unwrap();
    a.update_message(
        &from_b,
        MessageUpdate {
            progress: Some(0.2),
            ..Default::default()
        },
        601,
    )
    .unwrap();
    assert_eq!(a.message(&first).unwrap().progress, Some(0.1));
    assert_eq!(a.message(&from_b).unwrap().progress, Some(0.2));
    assert_eq!(a.summary().unwrap().message_count, 303);
}

#[test]
fn corrupt_and_truncated_bytes_are_errors() {
    let mut doc = AssetDoc::create("x", 0);
    doc.append_message(NewMessage::user("hello"), 1).unwrap();
    let bytes = doc.save();
    assert!(AssetDoc::load(&bytes).is_ok());
    assert!(AssetDoc::load(&bytes[..bytes.len() / 2]).is_err());
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    assert!(AssetDoc::load(&flipped).is_err());
    assert!(AssetDoc::load(b"").is_err());
    assert!(AssetDoc::load(b"not automerge at all").is_err());
}

#[test]
fn a_newer_schema_is_refused_by_name() {
    use automerge::transaction::Transactable;
    let mut doc = AssetDoc::create("x", 0);
    let mut raw = AssetDoc::load_raw(&doc.save()).unwrap();
    raw.put(automerge::ROOT, "schema", 99_i64).unwrap();
    raw.commit();
    match AssetDoc::load(&raw.save()) {
        Err(ModelError::UnsupportedSchema {
            found: 99,
            supported,
        }) => assert_eq!(supported, SCHEMA_VERSION),
        other => panic!("expected UnsupportedSchema, got {:?}", other.err()),
    }
}

/// An update that sets nothing, at the time already recorded, is no change
/// at all (Automerge skips a put of the value already there); at a later
/// time it records the time. Found by the store property test.
#[test]
fn an_empty_update_at_the_recorded_time_writes_nothing() {
    let mut doc = AssetDoc::create("t", 1000);
    let id = doc.append_message(NewMessage::user("x"), 1000).unwrap();
    let before = doc.heads();
    doc.update_message(&id, MessageUpdate::default(), 1000)
        .unwrap();
    assert_eq!(doc.heads(), before);
    doc.update_message(&id, MessageUpdate::default(), 2000)
        .unwrap();
    assert_ne!(doc.heads(), before);
    assert_eq!(doc.message(&id).unwrap().updated_at, 2000);
}
