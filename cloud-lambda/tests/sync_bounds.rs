//! The client side of what one sync request may carry
//! (`core_sync::sync::bounds`): a device never builds a request over the
//! bounds the server enforces. It splits its pushes across requests, and a
//! document no request could carry is set aside with the reason, never
//! sent, while the others sync. Real store, real Router (in-process, every
//! layer), and a transport that watches every request.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use automerge::transaction::Transactable as _;
use automerge::{ObjType, ROOT, ReadDoc as _};
use cloud_lambda::app::{AppState, router};
use cloud_lambda::local::RouterTransport;
use core_sync::model::AssetDoc;
use core_sync::store::{LocalAsset, Store, StoreOptions};
use core_sync::sync::bounds::MAX_REQUEST_DOCS;
use core_sync::sync::client::{SyncClient, SyncError, Transport};
use core_sync::sync::engine::EngineConfig;
use core_sync::sync::protocol::{SyncRequest, SyncResponse};
use core_sync::{DocId, now_millis};

/// Per request: the documents pushed and resynced.
type Seen = Vec<(Vec<DocId>, Vec<DocId>)>;

/// Hands requests to the Router, and remembers what each carried.
#[derive(Clone)]
struct Watched {
    inner: RouterTransport,
    /// Per request: the documents pushed and resynced.
    seen: Arc<Mutex<Seen>>,
}

#[async_trait::async_trait]
impl Transport for Watched {
    async fn sync(
        &self,
        req: &SyncRequest,
        token: &str,
    ) -> Result<(SyncResponse, usize), SyncError> {
        self.seen.lock().unwrap().push((
            req.push.iter().map(|p| p.doc_id.clone()).collect(),
            req.resync.clone(),
        ));
        self.inner.sync(req, token).await
    }
}

impl Watched {
    fn take(&self) -> Vec<(Vec<DocId>, Vec<DocId>)> {
        std::mem::take(&mut self.seen.lock().unwrap())
    }
}

/// A device pushing as many documents per request as the engine lets it.
async fn device(store: Store, transport: &Watched, token: &str) -> SyncClient {
    let config = EngineConfig {
        max_push_docs: usize::MAX,
        ..EngineConfig::default()
    };
    SyncClient::with_transport(store, Box::new(transport.clone()), token.into(), config)
        .await
        .unwrap()
}

/// Edits `asset` directly in Automerge (as another Automerge client may)
/// and saves it.
async fn edit_raw(
    store: &Store,
    asset: &mut LocalAsset,
    edit: impl FnOnce(&mut automerge::AutoCommit),
) {
    let before = asset.doc.heads();
    let mut raw = AssetDoc::load_raw(&asset.doc.save()).unwrap();
    edit(&mut raw);
    raw.commit();
    let changes = raw.save_after(&before);
    asset.doc.apply_incremental(&changes).unwrap();
    store.save(asset).await.unwrap();
}

#[tokio::test]
async fn a_device_splits_its_pushes_and_sets_aside_what_no_request_carries() {
    let server_dir = tempfile::tempdir().unwrap();
    let issuer = support::issuer();
    let state = AppState::embedded(server_dir.path(), issuer.verifier(), None)
        .await
        .unwrap();
    let server = state.store.clone();
    let user = support::user();
    let token = issuer.mint("alice", Duration::from_secs(3600));
    let transport = Watched {
        inner: RouterTransport::new(router(state)),
        seen: Arc::default(),
    };

    // More documents than one request may name, one with a long text.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default())
        .await
        .unwrap();
    let total = MAX_REQUEST_DOCS + 60;
    let mut ids = Vec::new();
    for i in 0..total {
        ids.push(
            store
                .create(&format!("Asset {i}"), now_millis())
                .await
                .unwrap()
                .id,
        );
    }
    let mut long = store.load(&ids[0]).await.unwrap();
    edit_raw(&store, &mut long, |d| {
        let text = d.put_object(ROOT, "draft", ObjType::Text).unwrap();
        d.splice_text(&text, 0, 0, &"x".repeat(40_000)).unwrap();
    })
    .await;

    let mut a = device(store, &transport, &token).await;
    a.sync_until_idle().await.unwrap();
    let requests = transport.take();
    assert!(requests.len() >= 2, "{} requests", requests.len());
    for (push, resync) in &requests {
        assert!(
            push.len() + resync.len() <= MAX_REQUEST_DOCS,
            "{}",
            push.len()
        );
    }
    assert_eq!(
        server.feed_since(&user, 0, 10_000).await.unwrap().len(),
        total
    );
    assert_eq!(a.status().pending, 0);

    // Deleting that text: 40,000 operations in a change of a few hundred
    // bytes, more than any request may declare for its size. Set aside
    // without being sent; other edits made meanwhile go.
    edit_raw(a.store(), &mut long, |d| {
        let (_, text) = d.get(ROOT, "draft").unwrap().unwrap();
        d.splice_text(&text, 0, 40_000, "").unwrap();
    })
    .await;
    let mut other = a.store().load(&ids[1]).await.unwrap();
    other.doc.set_title("Renamed", now_millis()).unwrap();
    a.store().save(&mut other).await.unwrap();
    a.pick_up_local_changes().await.unwrap();
    a.sync_until_idle().await.unwrap();
    let status = a.status();
    let reason = status.refused.get(&ids[0]).expect("set aside");
    assert!(reason.contains("rows of operations"), "{reason}");
    assert_eq!(status.pending, 1, "only the one set aside waits");
    for (push, _) in transport.take() {
        assert!(!push.contains(&ids[0]), "it is never sent");
    }
    let on_server = server.head(&user, &ids[1]).await.unwrap().unwrap();
    let mut heads = other.doc.heads();
    heads.sort();
    let mut server_heads = on_server.heads.clone();
    server_heads.sort();
    assert_eq!(server_heads, heads, "the other edit reached the server");
    let refused = a.store().refused_docs().await.unwrap();
    assert_eq!(refused.len(), 1, "recorded durably");
    assert_eq!(refused[0].doc_id, ids[0]);

    // A second device gets every document, a request at a time.
    let dir_b = tempfile::tempdir().unwrap();
    let store_b = Store::open(dir_b.path(), StoreOptions::default())
        .await
        .unwrap();
    let mut b = device(store_b, &transport, &token).await;
    b.sync_until_idle().await.unwrap();
    assert_eq!(b.store().ids().await.unwrap().len(), total);
    let mut renamed = b.store().load(&ids[1]).await.unwrap();
    assert_eq!(renamed.doc.summary().unwrap().title, "Renamed");
}
