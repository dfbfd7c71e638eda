//! How a sync request reaches the server: the [`Transport`] trait (HTTP in
//! production, [`HttpTransport`]; an in-process Router or a faulty network
//! in tests), the body encoding both ends agree on, and [`SyncError`].

use std::io::Write as _;
use std::time::Duration;

use crate::store::StoreError;
use crate::sync::protocol::{ErrorBody, ProblemBody, SYNC_PATH, SyncRequest, SyncResponse};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot reach the sync server: {0}")]
    Network(#[from] reqwest::Error),
    /// The server answered with an error status.
    #[error("sync server answered {status}: {message}")]
    Server { status: u16, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("sync protocol error: {0}")]
    Protocol(String),
}

impl SyncError {
    /// The server refused this request for what it is (too large, wrong
    /// type, invalid): sending it again unchanged gets the same answer.
    /// Authentication and throttling are not refusals of the request.
    pub fn is_refusal(&self) -> bool {
        matches!(self, SyncError::Server { status, .. }
            if (400..500).contains(status) && !matches!(status, 401 | 403 | 408 | 429))
    }

    /// Worth retrying with backoff (as opposed to a request the server will
    /// refuse again).
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Network(_) => true,
            SyncError::Server { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            SyncError::Store(_) | SyncError::Protocol(_) => false,
        }
    }
}

/// How a sync request reaches the server: HTTP in production
/// ([`HttpTransport`]); tests plug in an in-process Router or a faulty
/// network.
#[async_trait::async_trait]
pub trait Transport: Send + Sync {
    /// Sends one request with the bearer token; returns the parsed response
    /// and the bytes put on the wire, or the error the server or network
    /// produced.
    async fn sync(
        &self,
        req: &SyncRequest,
        token: &str,
    ) -> Result<(SyncResponse, usize), SyncError>;

    /// Uploads a blob (`PUT /v1/blobs/{sha256}`). Transports without blob
    /// support (some test doubles) refuse.
    async fn put_blob(
        &self,
        _sha256: &str,
        _bytes: Vec<u8>,
        _token: &str,
    ) -> Result<(), SyncError> {
        Err(SyncError::Protocol(
            "this transport does not move blobs".into(),
        ))
    }

    /// Downloads a blob; `None` if the server does not have it (yet).
    async fn get_blob(&self, _sha256: &str, _token: &str) -> Result<Option<Vec<u8>>, SyncError> {
        Err(SyncError::Protocol(
            "this transport does not move blobs".into(),
        ))
    }

    /// Whether `put_blob`/`get_blob` work.
    fn moves_blobs(&self) -> bool {
        false
    }
}

/// `POST {server}/v1/sync` with a zstd-compressed JSON body; blobs via
/// `PUT`/`GET {server}/v1/blobs/{sha256}`.
pub struct HttpTransport {
    http: reqwest::Client,
    url: String,
    blobs_url: String,
}

impl HttpTransport {
    pub fn new(server: &str) -> Result<Self, SyncError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()?;
        let base = server.trim_end_matches('/');
        Ok(HttpTransport {
            http,
            url: format!("{base}{SYNC_PATH}"),
            blobs_url: format!("{base}/v1/blobs"),
        })
    }
}

/// Encodes a request body as the server expects it: JSON, zstd-compressed.
pub fn encode_request(req: &SyncRequest) -> Result<Vec<u8>, SyncError> {
    let json = serde_json::to_vec(req).map_err(|e| SyncError::Protocol(e.to_string()))?;
    let mut enc = zstd::Encoder::new(Vec::with_capacity(json.len() / 3), 3)
        .map_err(|e| SyncError::Protocol(e.to_string()))?;
    enc.write_all(&json)
        .map_err(|e| SyncError::Protocol(e.to_string()))?;
    enc.finish().map_err(|e| SyncError::Protocol(e.to_string()))
}

/// Turns a status and body into a response or the server's error.
pub fn decode_response(status: u16, bytes: &[u8]) -> Result<SyncResponse, SyncError> {
    if !(200..300).contains(&status) {
        let message = serde_json::from_slice::<ProblemBody>(bytes)
            .map(|p| p.detail)
            .or_else(|_| serde_json::from_slice::<ErrorBody>(bytes).map(|b| b.error.message))
            .unwrap_or_else(|_| String::from_utf8_lossy(bytes).chars().take(300).collect());
        return Err(SyncError::Server { status, message });
    }
    serde_json::from_slice(bytes)
        .map_err(|e| SyncError::Protocol(format!("unreadable sync response: {e}")))
}

#[async_trait::async_trait]
impl Transport for HttpTransport {
    async fn sync(
        &self,
        req: &SyncRequest,
        token: &str,
    ) -> Result<(SyncResponse, usize), SyncError> {
        let body = encode_request(req)?;
        let sent = body.len();
        let resp = self
            .http
            .post(&self.url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::CONTENT_ENCODING, "zstd")
            .body(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        Ok((decode_response(status, &bytes)?, sent))
    }

    async fn put_blob(&self, sha256: &str, bytes: Vec<u8>, token: &str) -> Result<(), SyncError> {
        let resp = self
            .http
            .put(format!("{}/{sha256}", self.blobs_url))
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .send()
            .await?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let body = resp.bytes().await?;
        decode_response(status, &body).map(|_| ())
    }

    async fn get_blob(&self, sha256: &str, token: &str) -> Result<Option<Vec<u8>>, SyncError> {
        let resp = self
            .http
            .get(format!("{}/{sha256}", self.blobs_url))
            .bearer_auth(token)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await?;
        match status {
            200 => Ok(Some(body.to_vec())),
            404 => Ok(None),
            _ => decode_response(status, &body).map(|_| None),
        }
    }

    fn moves_blobs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod error_body_tests {
    use super::*;

    #[test]
    fn server_errors_read_as_problems_or_the_older_shape() {
        let cases: [(&[u8], &str); 3] = [
            (
                br#"{"type":"urn:atelier:problem:rate_limited","title":"Too Many Requests","status":429,"code":"rate_limited","detail":"too many requests; retry in 3 s"}"#,
                "too many requests; retry in 3 s",
            ),
            (
                br#"{"error":{"code":"injected","message":"injected by the proxy"}}"#,
                "injected by the proxy",
            ),
            (b"Bad Gateway", "Bad Gateway"),
        ];
        for (body, want) in cases {
            match decode_response(429, body) {
                Err(SyncError::Server { status, message }) => {
                    assert_eq!((status, message.as_str()), (429, want));
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
