//! Change chunks from elsewhere: a device's push as the server takes it
//! apart (`chunks::split`, `chunks::changes`, the write core's decision),
//! and pulled chunks as the sync client applies them (a new document from
//! chunks, chunks applied to a known one), then read the way the app reads
//! (summary, timeline, versions, costs).
//!
//! Property: a document that was accepted saves and loads again with the
//! same heads.

use std::sync::OnceLock;

use cloud_lambda::write::core::{decide_push, queued_requests};
use core_sync::model::{AssetDoc, NewMessage, chunks};

/// The document pushes and pulls are applied to: a few messages long.
fn base() -> AssetDoc {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = BYTES.get_or_init(|| {
        let mut doc = AssetDoc::create("base", 1);
        doc.append_message(NewMessage::user("hello"), 2)
            .expect("a message");
        doc.save()
    });
    AssetDoc::load(bytes).expect("the base document loads")
}

pub fn run(data: &[u8]) {
    let split = chunks::split(data);
    if let Ok(changes) = chunks::changes(data) {
        assert!(split.is_ok(), "changes parsed from bytes that do not split");
        // The server's write core, for a document it has and one it lacks.
        let _ = decide_push(None, changes.clone());
        let mut doc = base();
        let before = doc.messages().map(|m| m.len() as u64).unwrap_or(0);
        let decision = decide_push(Some(&mut doc), changes);
        if decision.missing.is_empty() && doc.apply_changes(decision.new_changes).is_ok() {
            let _ = queued_requests(&doc, before);
            read_all(&mut doc);
        }
    }
    // The client: a document new to this device.
    if let Ok(mut doc) = AssetDoc::load_chunks([data]) {
        read_all(&mut doc);
    }
    // The client: chunks for a document it has.
    let mut doc = base();
    if doc.apply_incremental(data).is_ok() {
        read_all(&mut doc);
    }
}

/// Reads `doc` as the app would, then checks it saves and loads again.
fn read_all(doc: &mut AssetDoc) {
    let _ = doc.summary();
    let _ = doc.timeline();
    let _ = doc.versions();
    let _ = doc.cost_events();
    let _ = doc.unreadable();
    if !doc.missing_deps().is_empty() {
        return;
    }
    let heads = {
        let mut h = doc.heads();
        h.sort();
        h
    };
    let saved = doc.save();
    let mut again = AssetDoc::load_raw(&saved).expect("a saved document loads");
    let mut reloaded = again.get_heads();
    reloaded.sort();
    assert_eq!(reloaded, heads, "a saved document loads with other heads");
    let _ = again.save();
}
