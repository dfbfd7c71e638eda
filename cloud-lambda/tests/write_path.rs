//! The server's one write path (`cloud_lambda::write`) over the embedded
//! store: pushes and job writes racing on one document, the document cache
//! under a budget smaller than a document, a restart with a cold cache, job
//! writes compacting, and a push retried after a server died between the
//! append and starting the job it queued.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use automerge::Change;
use cloud_lambda::storage::DocStore;
use cloud_lambda::storage::embedded::EmbeddedStore;
use cloud_lambda::write::{DocWriter, Pushed, RequestLauncher};
use core_sync::DocId;
use core_sync::model::{AssetDoc, MessageUpdate, NewMessage, chunks};

const USER: &str = "alice";

/// Records the tool requests the write path asks to start.
#[derive(Default)]
struct Started(Mutex<Vec<String>>);

#[async_trait]
impl RequestLauncher for Started {
    async fn queued(&self, _user: &str, _doc: &DocId, ids: Vec<String>) {
        self.0.lock().unwrap().extend(ids);
    }
}

fn parsed(bytes: &[u8]) -> Vec<Change> {
    chunks::changes(bytes).unwrap()
}

/// The document as the store's log has it.
async fn stored(store: &EmbeddedStore, doc: &DocId) -> AssetDoc {
    let chunks = store.read_all(USER, doc).await.unwrap();
    AssetDoc::load_chunks(chunks.iter().map(|c| c.bytes.as_slice())).unwrap()
}

fn texts(doc: &AssetDoc) -> Vec<String> {
    let mut t: Vec<String> = doc
        .messages()
        .unwrap()
        .into_iter()
        .filter_map(|m| m.text)
        .collect();
    t.sort();
    t
}

async fn store() -> (tempfile::TempDir, Arc<EmbeddedStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
    (dir, store)
}

/// A device's document with a few messages, pushed to `writer`.
async fn seeded(writer: &DocWriter, messages: usize) -> (DocId, AssetDoc) {
    let id = DocId::random();
    let mut device = AssetDoc::create("Harbour", 1);
    for i in 0..messages {
        device
            .append_message(NewMessage::user(format!("m{i}")), 2)
            .unwrap();
    }
    let pushed = writer
        .push(USER, &id, parsed(&device.changes_since(&[])))
        .await
        .unwrap();
    assert!(matches!(
        pushed,
        Pushed::Accepted {
            appended: Some(_),
            ..
        }
    ));
    (id, device)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_and_job_writes_racing_on_one_document_all_land_once() {
    // Two writers over one store, as two server processes would be: each
    // with its own cache, so each one's copy falls behind the other's
    // appends; budgets from roomy to smaller than the document.
    for budget in [64 << 20, 300] {
        let (_dir, store) = store().await;
        let a = Arc::new(DocWriter::new(store.clone(), budget));
        let b = Arc::new(DocWriter::new(store.clone(), budget));
        let (id, mut device) = seeded(&a, 20).await;
        let request = device
            .append_message(NewMessage::tool_request("edit", "gemini", "m", "job"), 3)
            .unwrap();
        a.push(USER, &id, parsed(&device.changes_since(&[])))
            .await
            .unwrap();

        let mut tasks = tokio::task::JoinSet::new();
        for round in 0..10 {
            // A device pushes a message...
            let mut copy = device.fork();
            let base = copy.heads();
            copy.append_message(NewMessage::user(format!("push {round}")), 4)
                .unwrap();
            let changes = parsed(&copy.changes_since(&base));
            let writer = if round % 2 == 0 { a.clone() } else { b.clone() };
            let id2 = id.clone();
            tasks.spawn(async move { writer.push(USER, &id2, changes).await.map(|_| ()) });
            // ...while the job writes its progress through the other writer.
            let writer = if round % 2 == 0 { b.clone() } else { a.clone() };
            let (id2, req) = (id.clone(), request.clone());
            tasks.spawn(async move {
                writer
                    .write(USER, &id2, |d| {
                        d.update_message(
                            &req,
                            MessageUpdate {
                                progress: Some(round as f64 / 10.0),
                                ..Default::default()
                            },
                            5,
                        )
                    })
                    .await
                    .map(|_| ())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        let doc = stored(&store, &id).await;
        let mut want: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
        want.extend((0..10).map(|r| format!("push {r}")));
        want.push("job".into());
        want.sort();
        assert_eq!(texts(&doc), want, "budget {budget}: every push, once");
        // Both writers now read what the log holds (neither serves a copy
        // that fell behind).
        for w in [&a, &b] {
            let seen = w.read(USER, &id, |d| texts(d)).await.unwrap();
            assert_eq!(seen, want, "budget {budget}");
        }
        assert!(a.cache().weight() <= budget && b.cache().weight() <= budget);
    }
}

#[tokio::test]
async fn a_restarted_server_starts_cold_and_reads_the_log() {
    let (dir, store) = store().await;
    let writer = DocWriter::new(store.clone(), 64 << 20);
    let (id, mut device) = seeded(&writer, 5).await;
    let base = device.heads();
    device.append_message(NewMessage::user("later"), 3).unwrap();
    drop(writer);
    drop(store);
    // A new process: empty cache, same data.
    let store = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
    let writer = DocWriter::new(store.clone(), 64 << 20);
    assert_eq!(writer.cache().weight(), 0);
    writer
        .push(USER, &id, parsed(&device.changes_since(&base)))
        .await
        .unwrap();
    assert!(writer.cache().weight() > 0, "the document is warm now");
    assert!(texts(&stored(&store, &id).await).contains(&"later".to_owned()));
}

#[tokio::test]
async fn job_writes_compact_the_log_like_pushes() {
    let (_dir, store) = store().await;
    let writer = DocWriter::new(store.clone(), 64 << 20);
    let (id, _) = seeded(&writer, 3).await;
    for i in 0..100 {
        writer
            .write(USER, &id, |d| {
                d.append_message(NewMessage::system(format!("progress {i}")), 10)
            })
            .await
            .unwrap();
    }
    let head = store.head(USER, &id).await.unwrap().unwrap();
    let entries = store.read_all(USER, &id).await.unwrap().len();
    assert!(head.snapshot_upto > 1, "job writes compacted: {head:?}");
    assert!(entries <= 33, "{entries} chunks: the log stays short");
    assert_eq!(stored(&store, &id).await.messages().unwrap().len(), 103);
}

#[tokio::test]
async fn a_retried_push_starts_the_request_a_dead_server_never_started() {
    let (_dir, store) = store().await;
    // The first server appends the request and dies before starting it (no
    // launcher stands in for "died before the job was created").
    let dead = DocWriter::new(store.clone(), 64 << 20);
    let (id, mut device) = seeded(&dead, 2).await;
    let base = device.heads();
    let request = device
        .append_message(
            NewMessage::tool_request("upscale", "replicate", "m", "x4"),
            3,
        )
        .unwrap();
    let push = parsed(&device.changes_since(&base));
    dead.push(USER, &id, push.clone()).await.unwrap();
    drop(dead);

    // The device never got its answer, so it pushes again, to a new server.
    let started = Arc::new(Started::default());
    let writer = DocWriter::new(store.clone(), 64 << 20);
    writer.set_launcher(started.clone());
    let again = writer.push(USER, &id, push).await.unwrap();
    assert!(
        matches!(again, Pushed::Accepted { appended: None, .. }),
        "nothing is stored twice"
    );
    assert_eq!(*started.0.lock().unwrap(), vec![request]);
}
