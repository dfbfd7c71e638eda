//! The sync endpoint's body, `POST /v1/sync`, as the server decodes and
//! checks it before writing anything (`SyncRequest` from JSON, then
//! `cloud_lambda::sync::validate`: wait, duplicates, every push's changes
//! parsed strictly), and the bodies a client decodes from a server (a
//! response, a problem).
//!
//! Property: a request the server accepts re-encodes to a request it
//! accepts with the same changes.

use core_sync::sync::protocol::{ProblemBody, SyncRequest, SyncResponse};

pub fn run(data: &[u8]) {
    let _ = serde_json::from_slice::<SyncResponse>(data);
    let _ = serde_json::from_slice::<ProblemBody>(data);
    let Ok(req) = serde_json::from_slice::<SyncRequest>(data) else {
        return;
    };
    let Ok(parsed) = cloud_lambda::sync::validate(&req) else {
        return;
    };
    let again: SyncRequest =
        serde_json::from_slice(&serde_json::to_vec(&req).expect("a request encodes"))
            .expect("an encoded request decodes");
    assert_eq!(again, req);
    let reparsed = cloud_lambda::sync::validate(&again).expect("still valid");
    let hashes = |p: &[Vec<automerge::Change>]| -> Vec<Vec<automerge::ChangeHash>> {
        p.iter()
            .map(|cs| cs.iter().map(|c| c.hash()).collect())
            .collect()
    };
    assert_eq!(hashes(&parsed), hashes(&reparsed));
}
