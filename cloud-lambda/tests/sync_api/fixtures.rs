//! What every test here shares: the one issuer key, users and their tokens,
//! a Router over a fresh embedded store, responses and their checks, sync
//! request builders, and a client device that applies what it pulls.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use automerge::ChangeHash;
use axum::Router;
use axum::body::{Body, Bytes as HttpBytes, to_bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use cloud_lambda::app::{AppState, router};
use cloud_lambda::auth::LocalIssuer;
use cloud_lambda::error::Problem;
use cloud_lambda::limits::{ApiConfig, ApiLimits};
pub(crate) use cloud_lambda::storage::conformance::noise;
use cloud_lambda::storage::embedded::EmbeddedStore;
use cloud_lambda::storage::{DocHead, DocStore, FeedEntry};
use core_sync::model::NewMessage;
use core_sync::sync::protocol::{
    Bytes, DocPush, DocUpdate, PushOutcome, PushStatus, SYNC_PATH, SyncRequest, SyncResponse,
    change_hashes, hashes,
};
use core_sync::{AssetDoc, DocId};
use serde_json::Value;
use tower::ServiceExt as _;

pub(crate) const ISS: &str = "atelier-sync-api-test";
pub(crate) const AUD: &str = "atelier-sync-api-client";

// ------------------------------------------------------------- fixtures

/// The one issuer of this binary, and its private key.
pub(crate) struct Keys {
    pub(crate) issuer: LocalIssuer,
    pub(crate) pem: String,
}

pub(crate) fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        // The directory only exists while the key is generated and read.
        let dir = tempfile::tempdir().unwrap();
        let issuer = LocalIssuer::load_or_create(dir.path(), ISS, AUD).unwrap();
        let pem = std::fs::read_to_string(dir.path().join(LocalIssuer::KEY_FILE_NAME)).unwrap();
        Keys { issuer, pem }
    })
}

pub(crate) struct User {
    /// The user id the server scopes everything by (the token's `sub`).
    pub(crate) sub: String,
    pub(crate) token: String,
}

pub(crate) fn user(name: &str) -> User {
    User {
        sub: LocalIssuer::user_id(name),
        token: keys().issuer.mint(name, Duration::from_secs(3600)),
    }
}

pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A Router over a fresh embedded store.
pub(crate) struct Server {
    pub(crate) app: Router,
    pub(crate) store: Arc<EmbeddedStore>,
    _dir: tempfile::TempDir,
}

/// What the store holds for one user: enough to see that nothing changed.
#[derive(Debug, PartialEq)]
pub(crate) struct Stored {
    pub(crate) user_head: u64,
    pub(crate) feed: Vec<FeedEntry>,
}

impl Stored {
    pub(crate) const NOTHING: Stored = Stored {
        user_head: 0,
        feed: Vec::new(),
    };
}

pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: HttpBytes,
}

impl Server {
    pub(crate) async fn new() -> Self {
        Server::with_limits(ApiConfig::default()).await
    }

    /// A server with these request bounds (long polls per user, …).
    pub(crate) async fn with_limits(limits: ApiConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
        let keys = keys();
        let blobs =
            Arc::new(cloud_lambda::storage::embedded::EmbeddedBlobs::open(dir.path()).unwrap());
        let state = AppState::new(
            store.clone(),
            blobs,
            store.clone(),
            keys.issuer.verifier(),
            Some(keys.issuer.jwks_json()),
        )
        .with_limits(ApiLimits::new(limits));
        Server {
            app: router(state),
            store,
            _dir: dir,
        }
    }

    pub(crate) async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// `POST /v1/sync` with exactly these headers.
    pub(crate) async fn post(&self, headers: &[(&str, &str)], body: impl Into<Body>) -> Resp {
        let mut req = Request::post(SYNC_PATH);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.send(req.body(body.into()).unwrap()).await
    }

    /// An authenticated, uncompressed JSON body.
    pub(crate) async fn post_json(&self, token: &str, body: impl Into<Body>) -> Resp {
        let auth = bearer(token);
        self.post(
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await
    }

    pub(crate) async fn sync(&self, token: &str, req: &SyncRequest) -> SyncResponse {
        self.post_json(token, json_body(req)).await.ok()
    }

    pub(crate) async fn head(&self, user: &User, doc: &DocId) -> Option<DocHead> {
        self.store.head(&user.sub, doc).await.unwrap()
    }

    pub(crate) async fn stored(&self, user: &User) -> Stored {
        Stored {
            user_head: self.store.user_head(&user.sub).await.unwrap(),
            feed: self.store.feed_since(&user.sub, 0, 10_000).await.unwrap(),
        }
    }
}

impl Resp {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A successful sync response.
    #[track_caller]
    pub(crate) fn ok(&self) -> SyncResponse {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.text());
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Checks the status and that the body is exactly an RFC 9457 problem
    /// (`application/problem+json`: type, title, status, code, detail)
    /// with this code; returns the detail.
    #[track_caller]
    pub(crate) fn error(&self, status: StatusCode, code: &str) -> String {
        assert_eq!(self.status, status, "body: {}", self.text());
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/problem+json"),
            "{status}: content-type {content_type:?}, body {:?}",
            self.text()
        );
        let value: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {:?}", self.text()));
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["code", "detail", "status", "title", "type"],
            "{value}"
        );
        let problem: Problem = serde_json::from_value(value).unwrap();
        assert_eq!(problem.code, code, "{:?}", problem.detail);
        assert_eq!(problem.status, status.as_u16());
        assert_eq!(problem.type_, format!("urn:atelier:problem:{code}"));
        assert!(!problem.detail.is_empty());
        problem.detail
    }
}

pub(crate) fn json_body(req: &SyncRequest) -> Vec<u8> {
    serde_json::to_vec(req).unwrap()
}

pub(crate) fn request(feed_cursor: u64, push: Vec<DocPush>) -> SyncRequest {
    SyncRequest {
        feed_cursor,
        push,
        resync: vec![],
        wait_ms: 0,
        epoch: 0,
    }
}

pub(crate) fn push(doc_id: &DocId, changes: Vec<u8>) -> DocPush {
    DocPush {
        doc_id: doc_id.clone(),
        changes: Bytes(changes),
    }
}

pub(crate) fn accepted(doc_id: &DocId, doc: &mut AssetDoc) -> PushOutcome {
    PushOutcome {
        doc_id: doc_id.clone(),
        status: PushStatus::Accepted,
        server_heads: hashes(&doc.heads()),
    }
}

/// A document with `messages` user messages, one change each.
pub(crate) fn new_doc(title: &str, messages: usize) -> AssetDoc {
    let mut doc = AssetDoc::create(title, 1_000);
    for i in 0..messages {
        doc.append_message(NewMessage::user(format!("{title} #{i}")), 2_000 + i as i64)
            .unwrap();
    }
    doc
}

pub(crate) fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads
}

/// A client device: a cursor and the documents it has applied.
pub(crate) struct Device {
    pub(crate) token: String,
    pub(crate) cursor: u64,
    pub(crate) docs: HashMap<DocId, AssetDoc>,
}

impl Device {
    pub(crate) fn new(user: &User) -> Self {
        Device {
            token: user.token.clone(),
            cursor: 0,
            docs: HashMap::new(),
        }
    }

    /// One round trip; applies what came back and moves the cursor.
    pub(crate) async fn sync(&mut self, srv: &Server, resync: Vec<DocId>) -> SyncResponse {
        let req = SyncRequest {
            feed_cursor: self.cursor,
            push: vec![],
            resync,
            wait_ms: 0,
            epoch: 0,
        };
        let resp = srv.sync(&self.token, &req).await;
        for update in &resp.docs {
            self.apply(update);
        }
        self.cursor = resp.feed_cursor;
        resp
    }

    pub(crate) fn apply(&mut self, update: &DocUpdate) {
        let chunks = update.chunks.iter().map(|c| c.0.as_slice());
        let doc = match self.docs.entry(update.doc_id.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let doc = e.into_mut();
                for chunk in chunks {
                    doc.apply_incremental(chunk).unwrap();
                }
                doc
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(AssetDoc::load_chunks(chunks).unwrap())
            }
        };
        assert_eq!(
            sorted(doc.heads()),
            sorted(change_hashes(&update.server_heads)),
            "after applying, the device is where the server said it is"
        );
    }

    pub(crate) fn doc(&mut self, id: &DocId) -> &mut AssetDoc {
        self.docs.get_mut(id).expect("the device has the document")
    }
}
