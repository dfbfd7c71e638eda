//! Documents as other Automerge clients write them (see `core-sync/SCHEMA.md`):
//! strings as text objects, numbers of every Automerge type, `null` for an
//! absent field, and entries that break the schema. Each table row writes
//! one entry with the raw Automerge API beside readable ones; the rest of
//! the document must still read, and the broken entry must show as
//! unreadable with a reason naming the field, never vanish.

use std::collections::HashMap;

use automerge::hydrate::Value as H;
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc, ScalarValue, TextEncoding, Value};
use core_sync::model::*;

const V1: &str = "11111111111111111111111111111111";
const M1: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const M2: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
const C1: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";

fn text(s: &str) -> H {
    H::text(TextEncoding::UnicodeCodePoint, s)
}

fn sha(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn map(fields: Vec<(&str, H)>) -> H {
    fields.into_iter().collect::<HashMap<_, _>>().into()
}

fn blob(n: u8) -> Vec<(&'static str, H)> {
    vec![
        ("sha256", H::scalar(sha(n))),
        ("mime", H::scalar("image/png")),
        ("width", H::scalar(640_i64)),
        ("height", H::scalar(480_i64)),
        ("bytes", H::scalar(1000_i64)),
    ]
}

fn version(n: u8) -> Vec<(&'static str, H)> {
    vec![("blob", map(blob(n))), ("createdAt", H::scalar(1_000_i64))]
}

fn user_message(id: &str, words: &str) -> Vec<(&'static str, H)> {
    vec![
        ("id", H::scalar(id)),
        ("kind", H::scalar("user")),
        ("text", H::scalar(words)),
        ("createdAt", H::scalar(2_000_i64)),
    ]
}

fn cost(id: &str) -> Vec<(&'static str, H)> {
    vec![
        ("id", H::scalar(id)),
        ("ts", H::scalar(3_000_i64)),
        ("provider", H::scalar("google")),
        ("model", H::scalar("gemini-2.5-flash-image")),
        ("units", H::scalar(1.0)),
        ("unit", H::scalar("images")),
        ("costNanoUsd", H::scalar(39_000_000_i64)),
    ]
}

/// Sets (or, with `None`, removes) field `key` of a field list.
fn with(mut fields: Vec<(&'static str, H)>, key: &'static str, v: Option<H>) -> H {
    fields.retain(|(k, _)| *k != key);
    fields.extend(v.map(|v| (key, v)));
    map(fields)
}

/// An Atelier-made asset with one version, then `raw` written by "another
/// client" with the plain Automerge API, loaded back through the model.
fn foreign(raw: impl FnOnce(&mut AutoCommit)) -> AssetDoc {
    let mut doc = AssetDoc::create("Sneaker", 1_000);
    let mut am = AutoCommit::load(&doc.save()).unwrap();
    raw(&mut am);
    am.commit();
    AssetDoc::load(&am.save()).unwrap()
}

fn container(am: &AutoCommit, key: &str) -> automerge::ObjId {
    am.get(ROOT, key).unwrap().unwrap().1
}

fn push(am: &mut AutoCommit, list: &str, value: H) {
    let list = container(am, list);
    let at = am.length(&list);
    am.batch_create_object(&list, at, &value, true).unwrap();
}

fn put_version(am: &mut AutoCommit, key: &str, value: H) {
    let versions = container(am, "versions");
    match value {
        H::Scalar(s) => am.put(&versions, key, s).unwrap(),
        v => {
            am.batch_create_object(&versions, key, &v, false).unwrap();
        }
    }
}

// ------------------------------------------------------------ what reads

#[test]
fn strings_written_as_text_and_numbers_of_every_type_read_as_ours() {
    let doc = foreign(|am| {
        let title = am.put_object(ROOT, "title", ObjType::Text).unwrap();
        am.splice_text(&title, 0, 0, "Red sneaker").unwrap();
        am.put(ROOT, "createdAt", ScalarValue::Timestamp(1_000))
            .unwrap();
        put_version(
            am,
            V1,
            map(vec![
                ("id", text(V1)),
                (
                    "blob",
                    map(vec![
                        ("sha256", text(&sha(1))),
                        ("mime", text("image/png")),
                        ("width", H::scalar(640.0)),
                        ("height", H::scalar(ScalarValue::Uint(480))),
                        ("bytes", H::scalar(ScalarValue::counter(1000))),
                    ]),
                ),
                ("createdAt", H::scalar(ScalarValue::Timestamp(1_500))),
            ]),
        );
        let active = am
            .put_object(ROOT, "activeVersionId", ObjType::Text)
            .unwrap();
        am.splice_text(&active, 0, 0, V1).unwrap();
        push(
            am,
            "messages",
            map(vec![
                ("id", text(M1)),
                ("kind", text("toolRequest")),
                ("text", text("remove the background")),
                ("tool", text("remove-background")),
                ("provider", text("replicate")),
                ("model", text("851-labs/background-remover")),
                ("params", map(vec![("scale", H::scalar(4_i64))])),
                ("inputVersionIds", vec![text(V1)].into()),
                ("outputVersionIds", H::list()),
                ("status", text("running")),
                ("progress", H::scalar(1_i64)),
                ("error", H::scalar(ScalarValue::Null)),
                ("operationId", text("op-1")),
                ("createdAt", H::scalar(ScalarValue::Timestamp(2_000))),
                ("updatedAt", H::scalar(ScalarValue::Uint(2_500))),
            ]),
        );
        push(
            am,
            "costEvents",
            map(vec![
                ("id", text(C1)),
                ("ts", H::scalar(ScalarValue::Timestamp(3_000))),
                ("provider", text("replicate")),
                ("model", text("851-labs/background-remover")),
                ("units", H::scalar(ScalarValue::counter(2))),
                ("unit", text("seconds")),
                ("costNanoUsd", H::scalar(1_500.0)),
                ("messageId", text(M1)),
            ]),
        );
    });
    let r = doc.reader();
    assert_eq!(r.unreadable().unwrap(), vec![]);
    let s = r.summary().unwrap();
    assert_eq!(s.title, "Red sneaker");
    assert_eq!(s.created_at, 1_000);
    assert_eq!(s.active_version_id.as_deref(), Some(V1));
    assert_eq!(s.cover.as_ref().unwrap().sha256, sha(1));
    let v = &doc.versions().unwrap()[0];
    assert_eq!(
        (v.blob.width, v.blob.height, v.blob.bytes, v.created_at),
        (640, 480, 1000, 1_500)
    );
    let m = &doc.messages().unwrap()[0];
    assert_eq!(
        m,
        &MessageView {
            id: M1.into(),
            kind: MessageKind::ToolRequest,
            text: Some("remove the background".into()),
            tool: Some("remove-background".into()),
            provider: Some("replicate".into()),
            model: Some("851-labs/background-remover".into()),
            params: Some(serde_json::json!({"scale": 4})),
            input_version_ids: vec![V1.into()],
            output_version_ids: vec![],
            status: Some(MessageStatus::Running),
            progress: Some(1.0),
            error: None,
            operation_id: Some("op-1".into()),
            created_at: 2_000,
            updated_at: 2_500,
        }
    );
    let c = &doc.cost_events().unwrap()[0];
    assert_eq!((c.units, c.cost_nano_usd, c.ts), (2.0, 1_500, 3_000));
    assert_eq!(c.message_id.as_deref(), Some(M1));
}

#[test]
fn writes_work_on_text_ids_and_keep_a_text_title_text() {
    let mut doc = foreign(|am| {
        let title = am.put_object(ROOT, "title", ObjType::Text).unwrap();
        am.splice_text(&title, 0, 0, "Hello").unwrap();
        push(
            am,
            "messages",
            with(
                vec![
                    ("id", text(M1)),
                    ("kind", text("toolRequest")),
                    ("tool", text("upscale")),
                    ("createdAt", H::scalar(2_000_i64)),
                ],
                "status",
                Some(text("queued")),
            ),
        );
    });
    doc.update_message(
        M1,
        MessageUpdate {
            status: Some(MessageStatus::Running),
            ..Default::default()
        },
        4_000,
    )
    .unwrap();
    assert_eq!(
        doc.message(M1).unwrap().status,
        Some(MessageStatus::Running)
    );

    // Two devices edit the text title: a rename here, a splice there.
    let mut other = doc.fork();
    doc.set_title("Hello world", 5_000).unwrap();
    let mut raw = AutoCommit::load(&other.save()).unwrap();
    let title = container(&raw, "title");
    raw.splice_text(&title, 0, 0, "Oh, ").unwrap();
    raw.commit();
    other = AssetDoc::load(&raw.save()).unwrap();
    doc.merge(&mut other).unwrap();
    assert_eq!(doc.reader().summary().unwrap().title, "Oh, Hello world");
    assert!(matches!(
        doc.automerge().get(ROOT, "title").unwrap(),
        Some((Value::Object(ObjType::Text), _))
    ));
}

// ------------------------------------------------------- what does not read

struct Case {
    name: &'static str,
    write: fn(&mut AutoCommit),
    /// Where the unreadable part is and the start of its reason.
    place: Place,
    id: Option<&'static str>,
    reason: &'static str,
}

fn bad_message(value: H) -> impl FnOnce(&mut AutoCommit) {
    move |am| {
        push(am, "messages", value);
        push(am, "messages", map(user_message(M2, "after")));
    }
}

fn cases() -> Vec<Case> {
    let at1 = Place::Message { index: 1 };
    let in_timeline = |name, write, id, reason| Case {
        name,
        write,
        place: at1.clone(),
        id,
        reason,
    };
    let in_version = |name, write, reason| Case {
        name,
        write,
        place: Place::Version {
            key: "22222222222222222222222222222222".into(),
        },
        id: Some("22222222222222222222222222222222"),
        reason,
    };
    let in_costs = |name, write, id, reason| Case {
        name,
        write,
        place: Place::CostEvent { index: 0 },
        id,
        reason,
    };
    vec![
        in_timeline(
            "id missing",
            |am| bad_message(with(user_message(M1, "x"), "id", None))(am),
            None,
            "id is missing",
        ),
        in_timeline(
            "id of the wrong type",
            |am| bad_message(with(user_message(M1, "x"), "id", Some(H::scalar(5_i64))))(am),
            None,
            "id is the number 5, expected an id",
        ),
        in_timeline(
            "id not in the id form",
            |am| bad_message(with(user_message(M1, "x"), "id", Some(text("msg-1"))))(am),
            Some("msg-1"),
            "id is the text \"msg-1\", expected an id",
        ),
        in_timeline(
            "kind missing",
            |am| bad_message(with(user_message(M1, "x"), "kind", None))(am),
            Some(M1),
            "kind is missing",
        ),
        in_timeline(
            "kind unknown",
            |am| bad_message(with(user_message(M1, "x"), "kind", Some(text("note"))))(am),
            Some(M1),
            "kind is the text \"note\", expected one of user, toolRequest, result, system",
        ),
        in_timeline(
            "status unknown",
            |am| bad_message(with(user_message(M1, "x"), "status", Some(text("paused"))))(am),
            Some(M1),
            "status is the text \"paused\", expected one of queued",
        ),
        in_timeline(
            "text of the wrong type",
            |am| bad_message(with(user_message(M1, "x"), "text", Some(H::scalar(true))))(am),
            Some(M1),
            "text is the boolean true, expected a string",
        ),
        in_timeline(
            "progress a string",
            |am| bad_message(with(user_message(M1, "x"), "progress", Some(text("half"))))(am),
            Some(M1),
            "progress is the text \"half\", expected a number from 0 to 1",
        ),
        in_timeline(
            "progress out of range",
            |am| {
                bad_message(with(
                    user_message(M1, "x"),
                    "progress",
                    Some(H::scalar(1.5)),
                ))(am)
            },
            Some(M1),
            "progress is the number 1.5",
        ),
        in_timeline(
            "createdAt missing",
            |am| bad_message(with(user_message(M1, "x"), "createdAt", None))(am),
            Some(M1),
            "createdAt is missing",
        ),
        in_timeline(
            "createdAt a string",
            |am| {
                bad_message(with(
                    user_message(M1, "x"),
                    "createdAt",
                    Some(text("yesterday")),
                ))(am)
            },
            Some(M1),
            "createdAt is the text \"yesterday\", expected a time",
        ),
        in_timeline(
            "input ids not a list",
            |am| {
                bad_message(with(
                    user_message(M1, "x"),
                    "inputVersionIds",
                    Some(text(V1)),
                ))(am)
            },
            Some(M1),
            "inputVersionIds is the text",
        ),
        in_timeline(
            "an input id of the wrong type",
            |am| {
                bad_message(with(
                    user_message(M1, "x"),
                    "inputVersionIds",
                    Some(vec![text(V1), H::scalar(7_i64)].into()),
                ))(am)
            },
            Some(M1),
            "inputVersionIds[1] is the number 7, expected an id",
        ),
        in_timeline(
            "error without a code",
            |am| {
                bad_message(with(
                    user_message(M1, "x"),
                    "error",
                    Some(map(vec![("message", text("no"))])),
                ))(am)
            },
            Some(M1),
            "error.code is missing",
        ),
        in_timeline(
            "params not JSON",
            |am| {
                bad_message(with(
                    user_message(M1, "x"),
                    "params",
                    Some(H::scalar("{not json")),
                ))(am)
            },
            Some(M1),
            "params is the string \"{not json\", expected a JSON object",
        ),
        in_timeline(
            "the entry is not a map",
            |am| bad_message(text("hello"))(am),
            None,
            "the entry is the text \"hello\", expected a map",
        ),
        in_version(
            "blob missing",
            |am| {
                put_version(
                    am,
                    "22222222222222222222222222222222",
                    with(version(2), "blob", None),
                )
            },
            "blob is missing",
        ),
        in_version(
            "sha256 not a hash",
            |am| {
                let b = with(blob(2), "sha256", Some(text("abc")));
                put_version(
                    am,
                    "22222222222222222222222222222222",
                    with(version(2), "blob", Some(b)),
                )
            },
            "blob.sha256 is the text \"abc\", expected a SHA-256",
        ),
        in_version(
            "negative width",
            |am| {
                let b = with(blob(2), "width", Some(H::scalar(-3_i64)));
                put_version(
                    am,
                    "22222222222222222222222222222222",
                    with(version(2), "blob", Some(b)),
                )
            },
            "blob.width is the number -3, expected a whole number from 0 to 4294967295",
        ),
        in_version(
            "fractional height",
            |am| {
                let b = with(blob(2), "height", Some(H::scalar(2.5)));
                put_version(
                    am,
                    "22222222222222222222222222222222",
                    with(version(2), "blob", Some(b)),
                )
            },
            "blob.height is the number 2.5",
        ),
        in_version(
            "id differs from its key",
            |am| {
                put_version(
                    am,
                    "22222222222222222222222222222222",
                    with(version(2), "id", Some(text(V1))),
                )
            },
            "id \"11111111111111111111111111111111\" differs from its key",
        ),
        in_version(
            "the version is a number",
            |am| put_version(am, "22222222222222222222222222222222", H::scalar(3_i64)),
            "the version is the number 3, expected a map",
        ),
        Case {
            name: "a version key not in the id form",
            write: |am| put_version(am, "v2", map(version(2))),
            place: Place::Version { key: "v2".into() },
            id: Some("v2"),
            reason: "its key \"v2\" is not an id",
        },
        in_costs(
            "cost id missing",
            |am| push(am, "costEvents", with(cost(C1), "id", None)),
            None,
            "id is missing",
        ),
        in_costs(
            "cost a string",
            |am| {
                push(
                    am,
                    "costEvents",
                    with(cost(C1), "costNanoUsd", Some(text("free"))),
                )
            },
            Some(C1),
            "costNanoUsd is the text \"free\", expected a whole number",
        ),
        in_costs(
            "negative units",
            |am| {
                push(
                    am,
                    "costEvents",
                    with(cost(C1), "units", Some(H::scalar(-1.0))),
                )
            },
            Some(C1),
            "units is the number -1, expected a number of at least 0",
        ),
        in_costs(
            "ts missing",
            |am| push(am, "costEvents", with(cost(C1), "ts", None)),
            Some(C1),
            "ts is missing",
        ),
        Case {
            name: "title a number",
            write: |am| am.put(ROOT, "title", 3_i64).unwrap(),
            place: Place::Asset,
            id: None,
            reason: "title is the number 3, expected a string",
        },
        Case {
            name: "messages not a list",
            write: |am| {
                am.put_object(ROOT, "messages", ObjType::Map).unwrap();
            },
            place: Place::Asset,
            id: None,
            reason: "messages is a map, expected a list",
        },
    ]
}

#[test]
fn malformed_entries_show_as_unreadable_and_the_rest_still_reads() {
    for case in cases() {
        let name = case.name;
        let mut doc = foreign(|am| {
            // Readable neighbours on every side of the broken part.
            push(
                am,
                "messages",
                map(user_message(M2.replace('b', "d").as_str(), "before")),
            );
            put_version(am, V1, map(version(1)));
            (case.write)(am);
            push(am, "costEvents", map(cost(&C1.replace('c', "e"))));
        });
        let unreadable = doc.unreadable().unwrap();
        let [u] = unreadable.as_slice() else {
            panic!("{name}: expected one unreadable part, got {unreadable:#?}");
        };
        assert_eq!(u.place, case.place, "{name}");
        assert_eq!(u.id.as_deref(), case.id, "{name}");
        assert!(
            u.reason.starts_with(case.reason),
            "{name}: reason {:?} does not start with {:?}",
            u.reason,
            case.reason
        );

        // The rest still reads.
        let summary = doc.summary().unwrap();
        if case.name != "title a number" {
            assert_eq!(summary.title, "Sneaker", "{name}");
        }
        assert!(doc.versions().unwrap().iter().any(|v| v.id == V1), "{name}");
        assert!(!doc.cost_events().unwrap().is_empty(), "{name}");
        if case.name != "messages not a list" {
            let texts: Vec<_> = doc
                .messages()
                .unwrap()
                .into_iter()
                .filter_map(|m| m.text)
                .collect();
            assert!(texts.contains(&"before".to_owned()), "{name}: {texts:?}");
        }

        // The timeline keeps an unreadable entry where it stands.
        if let Place::Message { index } = &case.place {
            let timeline = doc.timeline().unwrap();
            assert_eq!(timeline[*index].unreadable(), Some(u), "{name}");
            assert_eq!(
                timeline[index + 1].as_read().map(|m| m.id.as_str()),
                Some(M2),
                "{name}: the entry after it"
            );
            let range = doc.reader().timeline_range(*index..index + 1).unwrap();
            assert_eq!(range[0].unreadable(), Some(u), "{name}: range");
        }

        // Writes refuse what they cannot read and change nothing.
        let heads = doc.heads();
        match (&case.place, &case.id) {
            (Place::Message { .. }, Some(id)) if ids_look_valid(id) => {
                let e = doc
                    .update_message(
                        id,
                        MessageUpdate {
                            progress: Some(0.5),
                            ..Default::default()
                        },
                        9_000,
                    )
                    .unwrap_err();
                assert!(matches!(e, ModelError::Unreadable(_)), "{name}: {e}");
                assert!(doc.message(id).is_err(), "{name}");
            }
            (Place::Version { key }, _) => {
                let e = doc.set_active_version(key, 9_000).unwrap_err();
                assert!(matches!(e, ModelError::Unreadable(_)), "{name}: {e}");
            }
            (Place::Asset, _) if case.name == "title a number" => {
                let e = doc.set_title("New", 9_000).unwrap_err();
                assert!(
                    e.to_string().contains("title is the number 3"),
                    "{name}: {e}"
                );
            }
            _ => {}
        }
        assert_eq!(
            doc.heads(),
            heads,
            "{name}: a refused write changed nothing"
        );
    }
}

fn ids_look_valid(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn a_document_without_the_schema_key_keeps_its_schema_1_fields() {
    // A writer that forgot `schema: 1` gets the schema-0 migration; it must
    // not overwrite what the writer did put there.
    let mut am = AutoCommit::new();
    let root = map(vec![
        ("title", text("No schema key")),
        ("createdAt", H::scalar(1_000_i64)),
        ("versions", map(vec![(V1, map(version(1)))])),
        (
            "messages",
            vec![map([
                user_message(M1, "hi"),
                vec![("inputVersionIds", vec![text(V1)].into())],
            ]
            .concat())]
            .into(),
        ),
        ("costEvents", H::list()),
    ]);
    let H::Map(root) = root else { unreachable!() };
    am.init_root_from_hydrate(&root).unwrap();
    am.commit();
    let doc = AssetDoc::load(&am.save()).unwrap();
    assert_eq!(doc.unreadable().unwrap(), vec![]);
    let m = &doc.messages().unwrap()[0];
    assert_eq!(
        (m.kind, m.input_version_ids.clone()),
        (MessageKind::User, vec![V1.to_owned()])
    );
}
