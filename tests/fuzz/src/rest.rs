//! The HTTP surface as a client reaches it: one request through the real
//! `Router` over the embedded backend (SQLite + files in a scratch
//! directory), authenticated as one user, with a fuzzed body or query.
//! Covers the REST bodies (`CreateAsset`, message bodies, upload-URL
//! requests), query parsing (cost ranges, pages, download URLs, transfer
//! tokens), the sync body as the server reads it (decompression, the body
//! limit, validation, the write path), and the error mapping.
//!
//! Input: the first byte picks the route (and for bodies, whether the bytes
//! are sent as `Content-Encoding: zstd` or `gzip`); the rest is the body or
//! the query string.
//!
//! Property: the server never answers 5xx (and never panics).

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, header};
use cloud_lambda::app::{AppState, router};
use tower::ServiceExt as _;

use crate::{NOW_SECS, bearer, runtime, scratch};

/// What a route takes from the input.
#[derive(Clone, Copy)]
pub enum Part {
    Body,
    Query,
}

/// Method, path (`{id}` is the one existing asset) and what varies.
pub const ROUTES: &[(&str, &str, Part)] = &[
    ("POST", "/v1/sync", Part::Body),
    ("POST", "/assets", Part::Body),
    ("POST", "/assets/{id}/messages", Part::Body),
    ("POST", "/upload-url", Part::Body),
    ("GET", "/costs", Part::Query),
    ("GET", "/costs.csv", Part::Query),
    ("GET", "/assets", Part::Query),
    ("GET", "/assets/{id}/messages", Part::Query),
    ("GET", "/download-url", Part::Query),
    ("GET", "/v1/blob-transfer", Part::Query),
];

/// The selector byte's bits above the route: the body's encoding.
pub const ZSTD: u8 = 0x40;
pub const GZIP: u8 = 0x80;

struct Server {
    router: Router,
    token: String,
    asset: String,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        runtime().block_on(async {
            let issuer = bearer::issuer();
            let dir = scratch("rest");
            let state = AppState::embedded(&dir, bearer::verifier(), Some(issuer.jwks_json()))
                .await
                .expect("the embedded backend opens");
            let router = router(state);
            let token = issuer.mint_at("fuzz", Duration::from_secs(3600), NOW_SECS);
            let created = send(
                &router,
                &token,
                Method::POST,
                "/assets",
                Body::from(r#"{"from": "prompt", "prompt": "a red shoe"}"#),
                None,
            )
            .await;
            assert_eq!(created.0, 201, "{}", String::from_utf8_lossy(&created.1));
            let body: serde_json::Value = serde_json::from_slice(&created.1).expect("JSON");
            let asset = body["asset"]["id"]
                .as_str()
                .expect("an asset id")
                .to_owned();
            Server {
                router,
                token,
                asset,
            }
        })
    })
}

async fn send(
    router: &Router,
    token: &str,
    method: Method,
    uri: &str,
    body: Body,
    encoding: Option<&str>,
) -> (u16, Vec<u8>) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(e) = encoding {
        req = req.header(header::CONTENT_ENCODING, e);
    }
    let resp = router
        .clone()
        .oneshot(req.body(body).expect("a request"))
        .await
        .expect("the router is infallible");
    let status = resp.status().as_u16();
    let body = to_bytes(resp.into_body(), 64 << 20)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    (status, body)
}

pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (method, path, part) = ROUTES[(selector & 0x3f) as usize % ROUTES.len()];
    let server = server();
    let path = path.replace("{id}", &server.asset);
    let (uri, body, encoding) = match part {
        Part::Query => {
            let uri = format!("{path}?{}", String::from_utf8_lossy(rest));
            if uri.parse::<axum::http::Uri>().is_err() {
                return; // no client can send it
            }
            (uri, Vec::new(), None)
        }
        Part::Body => {
            let encoding = if selector & GZIP != 0 {
                Some("gzip")
            } else if selector & ZSTD != 0 {
                Some("zstd")
            } else {
                None
            };
            (path, cap_wait(rest, encoding.is_none()), encoding)
        }
    };
    let method: Method = method.parse().expect("a method");
    let (status, body) = runtime().block_on(async {
        // Long polls hold at most `waitMs` (capped below for plain bodies);
        // anything slower than this is a finding of its own.
        tokio::time::timeout(
            Duration::from_secs(30),
            send(
                &server.router,
                &server.token,
                method,
                &uri,
                Body::from(body),
                encoding,
            ),
        )
        .await
        .expect("a request took more than 30 s")
    });
    assert!(
        status < 500,
        "{uri} answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
}

/// A sync body whose `waitMs` asks for a long poll, with the wait cut to
/// 50 ms: the same code path, without stalling the run for up to 25 s.
fn cap_wait(body: &[u8], plain: bool) -> Vec<u8> {
    if plain
        && let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(w) = v.get_mut("waitMs")
        && w.as_u64().is_some_and(|ms| ms > 50)
    {
        *w = 50.into();
        return serde_json::to_vec(&v).expect("JSON encodes");
    }
    body.to_vec()
}
