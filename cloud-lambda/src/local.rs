//! Running the Router without a socket: a [`Transport`] that hands each
//! sync request straight to the Router (same layers, same bytes on the
//! "wire", compression included). For simulations, benchmarks and tests
//! that want many devices in one process.

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, header};
use core_sync::sync::client::{SyncError, Transport, decode_response, encode_request};
use core_sync::sync::protocol::{SYNC_PATH, SyncRequest, SyncResponse};
use tower::ServiceExt;

/// A transport that calls a Router in-process.
#[derive(Clone)]
pub struct RouterTransport {
    router: Router,
}

impl RouterTransport {
    pub fn new(router: Router) -> Self {
        RouterTransport { router }
    }
}

#[async_trait::async_trait]
impl Transport for RouterTransport {
    async fn sync(
        &self,
        req: &SyncRequest,
        token: &str,
    ) -> Result<(SyncResponse, usize), SyncError> {
        let body = encode_request(req)?;
        let sent = body.len();
        let request = Request::post(SYNC_PATH)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_ENCODING, "zstd")
            .body(Body::from(body))
            .map_err(|e| SyncError::Protocol(e.to_string()))?;
        let resp = self
            .router
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| SyncError::Protocol(format!("router failed: {e}")))?;
        let status = resp.status().as_u16();
        let bytes = to_bytes(resp.into_body(), usize::MAX)
            .await
            .map_err(|e| SyncError::Protocol(e.to_string()))?;
        Ok((decode_response(status, &bytes)?, sent))
    }
}
