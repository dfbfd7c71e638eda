//! Atelier and a real Automerge JS peer: the official `@automerge/automerge`
//! from npm (pinned in `tests/js/package-lock.json`, installed by
//! `tests/run.sh` with `npm ci`), driven through `tests/js/interop.mjs`.
//! Documents travel between the two as exports in temporary directories,
//! the way a JS tool would edit an `atelier-sync export` and hand it back.
//!
//! - The published TypeScript types (`core-sync/schema/asset.d.ts`) check,
//!   and the JS peer's writes type-check against them (`tsc --checkJs`).
//! - A whole asset written from scratch in JS, the natural way (strings
//!   become text objects), reads field for field as it was written, in the
//!   model, in `atelier-local show`, through `atelier-sync verify`, and on a
//!   second device after syncing through `atelier-cloud`.
//! - Natural JS edits to a document Atelier made (`d.title = …`,
//!   `d.messages.push(…)`, a status change) merge with concurrent edits
//!   made by Atelier, in both directions (import into Atelier, merge in JS).
//! - A document Atelier wrote with every field reads in JS with the
//!   documented types and the same values.
//! - Entries JS writes against the schema show as unreadable with their
//!   reason in `show` and `verify`; everything else still reads.
//!
//! Fails (never skips) when `node` or `tests/js/node_modules` is missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use atelier_tests::procs::{Replica, Server, output_within, png, run_ok, write_file};
use core_sync::AssetDoc;
use core_sync::model::*;
use serde_json::{Value, json};
use tempfile::TempDir;

const NODE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Fails with what to do when node or the npm packages are missing.
fn node_cmd() -> Command {
    let modules = js_dir().join("node_modules/@automerge/automerge/package.json");
    assert!(
        modules.is_file(),
        "{} is missing: install the JS peer with \
         `npm ci --cache ~/.cache/atelier/npm` in tests/js (tests/run.sh does)",
        modules.display()
    );
    let mut cmd = Command::new("node");
    cmd.current_dir(js_dir());
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => cmd,
        other => panic!("`node` does not run ({other:?}): install Node.js (tests/run.sh does)"),
    }
}

/// Runs `interop.mjs <args>` and parses the JSON it prints.
fn node(args: &[&Path]) -> Value {
    let mut cmd = node_cmd();
    cmd.arg("interop.mjs").args(args);
    let out = run_ok(&mut cmd);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("interop.mjs printed no JSON ({e}):\n{out}"))
}

fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("atelier-js-")
        .tempdir()
        .expect("create a temporary directory")
}

/// A replica for offline commands (`atelier-local`, `atelier-sync
/// export|import|verify`); the server is never contacted.
fn offline_replica(dir: &Path) -> Replica {
    Replica::new(
        dir.to_owned(),
        "http://127.0.0.1:9".into(),
        dir.join("no-token"),
    )
}

/// `atelier-sync verify` on a replica: exit code and stdout.
fn verify(r: &Replica) -> (i32, String) {
    let out = output_within(&mut r.sync_cmd(["verify"]), NODE_TIMEOUT);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn load_exported(dir: &Path, id: &str) -> AssetDoc {
    let bytes = fs::read(dir.join("docs").join(format!("{id}.automerge"))).unwrap();
    AssetDoc::load(&bytes).unwrap()
}

fn as_str(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

// ------------------------------------------------------------ comparison

/// Asserts that `ours` (a model view as JSON) says exactly what `theirs`
/// (the JS peer's plain JSON of the same thing) says: every field JS has is
/// read with the same value, and every field we read came from JS (absent
/// fields read as null, `updatedAt` as `createdAt`, id lists as empty).
fn assert_same(theirs: &Value, ours: &Value, at: &str) {
    let (Value::Object(t), Value::Object(o)) = (theirs, ours) else {
        panic!("{at}: {theirs} vs {ours}");
    };
    for (key, tv) in t {
        let ov = o.get(key).unwrap_or(&Value::Null);
        let tv = match (key.as_str(), tv) {
            // Params travel as a JSON string; the view holds the object.
            ("params", Value::String(s)) => serde_json::from_str(s).unwrap(),
            _ => tv.clone(),
        };
        match (&tv, ov) {
            (Value::Object(_), Value::Object(_)) if key != "params" => {
                assert_same(&tv, ov, &format!("{at}.{key}"))
            }
            (Value::Number(a), Value::Number(b)) => {
                assert_eq!(a.as_f64(), b.as_f64(), "{at}.{key}")
            }
            _ => assert_eq!(&tv, ov, "{at}.{key}"),
        }
    }
    for (key, ov) in o {
        let defaulted = match key.as_str() {
            "updatedAt" => Some(&o["createdAt"]),
            "inputVersionIds" | "outputVersionIds" => Some(&Value::Array(vec![])),
            _ => Some(&Value::Null),
        };
        if !t.contains_key(key) {
            assert_eq!(
                Some(ov),
                defaulted,
                "{at}.{key}: read a value JS never wrote"
            );
        }
    }
}

/// The whole document as the model reads it, in the schema's JSON shape.
fn model_json(doc: &mut AssetDoc) -> Value {
    let s = doc.summary().unwrap();
    let versions: serde_json::Map<String, Value> = doc
        .versions()
        .unwrap()
        .into_iter()
        .map(|v| (v.id.clone(), serde_json::to_value(v).unwrap()))
        .collect();
    json!({
        "title": s.title,
        "createdAt": s.created_at,
        "updatedAt": s.updated_at,
        "activeVersionId": s.active_version_id,
        "schema": s.schema_version,
        "versions": versions,
        "messages": doc.messages().unwrap(),
        "costEvents": doc.cost_events().unwrap(),
    })
}

/// Compares a JS document's content with the model's reading of it.
fn assert_reads_as_written(theirs: &Value, doc: &mut AssetDoc) {
    assert_eq!(doc.unreadable().unwrap(), vec![], "everything reads");
    let ours = model_json(doc);
    assert_eq!(theirs["title"], ours["title"], "title");
    assert_eq!(
        theirs["activeVersionId"], ours["activeVersionId"],
        "activeVersionId"
    );
    for key in ["createdAt", "schema"] {
        assert_eq!(theirs[key].as_f64(), ours[key].as_f64(), "{key}");
    }
    let (tv, ov) = (&theirs["versions"], &ours["versions"]);
    assert_eq!(
        tv.as_object().unwrap().len(),
        ov.as_object().unwrap().len(),
        "versions"
    );
    for (id, v) in tv.as_object().unwrap() {
        assert_same(v, &ov[id], &format!("versions.{id}"));
    }
    for list in ["messages", "costEvents"] {
        let (t, o) = (
            theirs[list].as_array().unwrap(),
            ours[list].as_array().unwrap(),
        );
        assert_eq!(t.len(), o.len(), "{list}");
        for (i, (t, o)) in t.iter().zip(o).enumerate() {
            assert_same(t, o, &format!("{list}[{i}]"));
        }
    }
}

// ----------------------------------------------------------------- tests

#[test]
fn the_published_types_check_and_the_js_peer_follows_them() {
    let mut cmd = node_cmd();
    cmd.args(["node_modules/typescript/bin/tsc", "-p", "tsconfig.json"]);
    run_ok(&mut cmd);
}

#[test]
fn an_asset_written_in_js_reads_as_our_own_everywhere() {
    let tmp = tempdir();
    let image = tmp.path().join("image.png");
    write_file(&image, &png(40, 30));
    let export = tmp.path().join("from-js");
    let (w, h) = (Path::new("40"), Path::new("30"));
    let out = node(&[Path::new("new"), &export, &image, w, h]);
    let id = as_str(&out["docId"]);
    let written = &out["written"];
    // The JS peer wrote text objects, as the field notes say.
    assert_eq!(out["stringKinds"]["title"], "text");
    assert_eq!(out["stringKinds"]["firstMessageId"], "text");

    // The model reads every field as written.
    assert_reads_as_written(written, &mut load_exported(&export, id));

    // The binaries: import, verify, show.
    let server_dir = tmp.path().join("server");
    let server = Server::start(&server_dir);
    let token = tmp.path().join("token");
    server.token_file("js-user", &token);
    let a = Replica::new(tmp.path().join("A"), server.url(), token.clone());
    let b = Replica::new(tmp.path().join("B"), server.url(), token);
    a.sync(["import".as_ref(), export.as_os_str()]);
    assert_eq!(verify(&a), (0, String::new()), "verify finds nothing wrong");
    let show = a.local(["show", id]);
    let active = as_str(&written["activeVersionId"]);
    for line in [
        format!("{id} — Lighthouse from JS"),
        "user        A lighthouse at dusk".into(),
        "toolRequest (upscale) Upscale it [failed: Out of credit]".into(),
        format!("{active}  40x30 image/png"),
        "cost: $0.0023 over 1 provider calls".into(),
    ] {
        assert!(show.contains(&line), "`show` lacks {line:?}:\n{show}");
    }
    assert!(!show.contains("unreadable"), "{show}");

    // The daemon carries it through the server to another device.
    a.sync(["once"]);
    b.sync(["once"]);
    assert_eq!(b.local(["show", id]), show, "B shows what A shows");
    assert_eq!(verify(&b), (0, String::new()));
    let exported_b = tmp.path().join("b-export");
    b.sync(["export".as_ref(), exported_b.as_os_str()]);
    assert!(
        exported_b
            .join("blobs")
            .join(as_str(&written["versions"][active]["blob"]["sha256"]))
            .is_file(),
        "the image travelled with the document"
    );
    assert_reads_as_written(written, &mut load_exported(&exported_b, id));
}

#[test]
fn js_edits_merge_with_concurrent_edits_made_by_atelier() {
    let tmp = tempdir();
    let r = offline_replica(&tmp.path().join("R"));
    let id = r.local(["new", "Sneaker"]).trim().to_owned();
    r.local(["say", &id, "first note"]);
    let request = r
        .local(["request", &id, "upscale", "Upscale 4x"])
        .trim()
        .to_owned();
    let image = tmp.path().join("a.png");
    write_file(&image, &png(32, 16));
    r.local(["add-image".as_ref(), id.as_ref(), image.as_os_str()]);
    let base = tmp.path().join("base");
    r.sync(["export".as_ref(), base.as_os_str()]);

    // JS edits the export; meanwhile Atelier edits its replica.
    let js_edited = tmp.path().join("js-edited");
    let edit = node(&[Path::new("edit"), &base, &js_edited]);
    let note = as_str(&edit["docs"][0]["note"]).to_owned();
    r.local(["say", &id, "Rust note"]);
    write_file(&image, &png(64, 32));
    r.local(["add-image".as_ref(), id.as_ref(), image.as_os_str()]);
    let ours = tmp.path().join("ours");
    r.sync(["export".as_ref(), ours.as_os_str()]);

    // JS merges Atelier's concurrent copy: it sees both sides, typed as documented.
    let merged_in_js = tmp.path().join("merged-in-js");
    let merged = node(&[Path::new("merge"), &js_edited, &ours, &merged_in_js]);
    let doc = &merged["docs"][0];
    assert_eq!(doc["typeProblems"], json!([]));
    let texts: Vec<&str> = doc["content"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert!(
        texts.contains(&"Hello from JS") && texts.contains(&"Rust note"),
        "{texts:?}"
    );
    assert_eq!(doc["content"]["versions"].as_object().unwrap().len(), 2);

    // Atelier imports the JS edit into its edited replica: both sides again.
    r.sync(["import".as_ref(), js_edited.as_os_str()]);
    let show = r.local(["show", &id]);
    for line in [
        "Sneaker (edited in JS)",
        "user        first note",
        "user        Hello from JS",
        "user        Rust note",
        "toolRequest (upscale) Upscale 4x [canceled]",
        "32x16 image/png",
        "64x32 image/png",
    ] {
        assert!(show.contains(line), "`show` lacks {line:?}:\n{show}");
    }
    assert_eq!(verify(&r), (0, String::new()));

    // Both merges are the same document, read the same.
    let after = tmp.path().join("after");
    r.sync(["export".as_ref(), after.as_os_str()]);
    let mut from_rust = load_exported(&after, &id);
    let mut from_js = load_exported(&merged_in_js, &id);
    let (mut heads_rust, mut heads_js) = (from_rust.heads(), from_js.heads());
    heads_rust.sort();
    heads_js.sort();
    assert_eq!(heads_rust, heads_js, "the same changes either way");
    assert_eq!(
        model_json(&mut from_rust)["messages"],
        model_json(&mut from_js)["messages"]
    );
    let mut ids: Vec<String> = from_rust
        .messages()
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    ids.retain(|m| *m == note || *m == request);
    assert_eq!(
        ids.len(),
        2,
        "the JS note and Atelier's request are both there"
    );
}

#[test]
fn documents_atelier_writes_read_in_js_with_the_documented_types() {
    let tmp = tempdir();
    let dir = tmp.path().join("store");
    let export = tmp.path().join("export");
    let mut doc = every_field_doc();
    let id = core_sync::DocId::random();
    let copy = AssetDoc::load(&doc.save()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = core_sync::Store::open(&dir, Default::default())
            .await
            .unwrap();
        store.insert(id.clone(), copy).await.unwrap();
        core_sync::backup::export(&store, &export, true)
            .await
            .unwrap();
        store.close().await;
    });
    let read = node(&[Path::new("read"), &export]);
    let js = &read["docs"][0];
    assert_eq!(js["id"], id.as_str());
    assert_eq!(
        js["typeProblems"],
        json!([]),
        "every field has its documented type"
    );
    // Atelier writes atoms and prose as scalar strings (ImmutableString in JS).
    assert_eq!(
        js["stringKinds"],
        json!({"title": "scalar", "firstMessageId": "scalar", "firstMessageKind": "scalar"})
    );
    assert_reads_as_written(&js["content"], &mut doc);
}

/// An asset with every field of the schema set by Atelier's own writes.
fn every_field_doc() -> AssetDoc {
    let blob = |n: u8, width, height| BlobRef {
        sha256: format!("{n:02x}").repeat(32),
        mime: "image/png".into(),
        width,
        height,
        bytes: 10_000 + n as u64,
    };
    let mut doc = AssetDoc::create("Written by Atelier", 1_000);
    let prompt = doc
        .append_message(NewMessage::user("a red sneaker"), 1_001)
        .unwrap();
    let v1 = doc
        .add_version(
            NewVersion {
                blob: blob(1, 640, 480),
                thumbnail: Some(blob(2, 256, 192)),
                parent_version_id: None,
                created_by_message_id: Some(prompt),
            },
            1_002,
        )
        .unwrap();
    let req = doc
        .append_message(
            NewMessage {
                input_version_ids: vec![v1.clone()],
                params: Some(json!({"scale": 4})),
                ..NewMessage::tool_request("upscale", "replicate", "nightmareai/real-esrgan", "4x")
            },
            1_003,
        )
        .unwrap();
    let update = |status, progress| MessageUpdate {
        status: Some(status),
        progress,
        operation_id: Some(req.clone()),
        ..Default::default()
    };
    doc.update_message(&req, update(MessageStatus::Running, Some(0.5)), 1_004)
        .unwrap();
    let v2 = doc
        .add_version(
            NewVersion {
                blob: blob(3, 2560, 1920),
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
            add_output_version_ids: vec![v2],
            ..update(MessageStatus::Succeeded, Some(1.0))
        },
        1_006,
    )
    .unwrap();
    doc.record_cost(
        NewCostEvent {
            provider: "replicate".into(),
            model: "nightmareai/real-esrgan".into(),
            units: 3.25,
            unit: "seconds".into(),
            cost_nano_usd: 7_475_000,
            message_id: Some(req.clone()),
        },
        1_007,
    )
    .unwrap();
    let failed = doc
        .append_message(
            NewMessage::tool_request("edit", "google", "gemini-2.5-flash-image", "make it blue"),
            1_008,
        )
        .unwrap();
    doc.update_message(
        &failed,
        MessageUpdate {
            status: Some(MessageStatus::Failed),
            error: Some(ErrorInfo {
                code: "safety_block".into(),
                message: "The request was blocked.".into(),
            }),
            ..Default::default()
        },
        1_009,
    )
    .unwrap();
    doc.set_active_version(&v1, 1_010).unwrap();
    doc
}

#[test]
fn entries_js_writes_against_the_schema_show_as_unreadable_and_the_rest_reads() {
    let tmp = tempdir();
    let r = offline_replica(&tmp.path().join("R"));
    let id = r.local(["new", "Sneaker"]).trim().to_owned();
    r.local(["say", &id, "before"]);
    let base = tmp.path().join("base");
    r.sync(["export".as_ref(), base.as_os_str()]);
    let bad = tmp.path().join("bad");
    let out = node(&[Path::new("malformed"), &base, &bad]);
    r.sync(["import".as_ref(), bad.as_os_str()]);

    let show = r.local(["show", &id]);
    let bad_version = as_str(&out["badVersion"]);
    for line in [
        "user        before",
        "unreadable  timeline entry 2: id is missing",
        "unreadable  timeline entry 3 (id ",
        "kind is the text \"note\", expected one of user, toolRequest, result, system",
        "user        Still readable",
        "unreadable (kept as they are):",
        &format!("version {bad_version:?} (id {bad_version:?}): blob.width is the text \"wide\""),
        "cost event 1 (id ",
        "costNanoUsd is the text \"free\"",
    ] {
        assert!(show.contains(line), "`show` lacks {line:?}:\n{show}");
    }

    let (code, stdout) = verify(&r);
    assert_eq!(
        code, 0,
        "unreadable parts are reported, not damage:\n{stdout}"
    );
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("UNREADABLE "))
        .collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines.iter().all(|l| l.contains(&format!("document {id}"))),
        "{stdout}"
    );

    // Writes build only on what they can read: the good note is still
    // there after another edit, and the unreadable entries are untouched.
    r.local(["say", &id, "after"]);
    let after = r.local(["show", &id]);
    assert_eq!(after.matches("unreadable  ").count(), 2, "{after}");
    assert!(after.contains("user        Still readable"), "{after}");
}
