//! How a sync request reaches the server: the [`Transport`] trait (HTTP in
//! production, [`HttpTransport`]; an in-process Router or a faulty network
//! in tests), the body encoding both ends agree on, and [`SyncError`].
//!
//! A transfer URL is a permission (its token or signature lets anyone
//! holding it move the image): errors of transfers never carry it, so it
//! reaches no log, status line or stored refusal.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::blob::{BlobStore, MAX_BLOB_BYTES};
use crate::store::StoreError;
use crate::sync::protocol::{
    DOWNLOAD_URL_PATH, ErrorBody, ProblemBody, SYNC_PATH, SyncRequest, SyncResponse, TransferUrl,
    UPLOAD_URL_PATH, UploadUrlRequest,
};

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
    async fn put_blob(&self, _blob: &OutgoingBlob<'_>, _token: &str) -> Result<(), SyncError> {
        Err(SyncError::Protocol(
            "this transport does not move blobs".into(),
        ))
    }

    /// Downloads a blob into `into` (streamed, checked by its hash); `false`
    /// if the server does not have it (yet).
    async fn get_blob(
        &self,
        _sha256: &str,
        _into: &BlobStore,
        _token: &str,
    ) -> Result<bool, SyncError> {
        Err(SyncError::Protocol(
            "this transport does not move blobs".into(),
        ))
    }

    /// Whether `put_blob`/`get_blob` work.
    fn moves_blobs(&self) -> bool {
        false
    }
}

/// An image to upload: its name, type, and the file it is in.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingBlob<'a> {
    pub sha256: &'a str,
    pub mime: &'a str,
    pub path: &'a Path,
    pub bytes: u64,
}

/// `POST {server}/v1/sync` with a zstd-compressed JSON body; images through
/// the transfer URLs the server hands out (`/upload-url`, `/download-url`),
/// streamed from and to files.
pub struct HttpTransport {
    http: reqwest::Client,
    /// For image bytes: no overall deadline (a large image on a slow link
    /// takes what it takes), but a stalled connection is given up.
    transfers: reqwest::Client,
    base: reqwest::Url,
    url: String,
}

impl HttpTransport {
    pub fn new(server: &str) -> Result<Self, SyncError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()?;
        let transfers = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(30))
            .build()?;
        let trimmed = server.trim_end_matches('/');
        let base = reqwest::Url::parse(&format!("{trimmed}/"))
            .map_err(|e| SyncError::Protocol(format!("{server:?} is not a server URL: {e}")))?;
        Ok(HttpTransport {
            http,
            transfers,
            base,
            url: format!("{trimmed}{SYNC_PATH}"),
        })
    }

    /// Asks the server (authenticated) for a transfer URL.
    async fn transfer_url(
        &self,
        request: reqwest::RequestBuilder,
        token: &str,
    ) -> Result<Option<TransferUrl>, SyncError> {
        let resp = request.bearer_auth(token).send().await?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await?;
        match status {
            200 => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| SyncError::Protocol(format!("unreadable transfer URL: {e}"))),
            404 => Ok(None),
            _ => decode_response(status, &body).map(|_| None),
        }
    }

    /// The request a transfer URL describes (relative ones are on the server).
    fn transfer_request(&self, t: &TransferUrl) -> Result<reqwest::RequestBuilder, SyncError> {
        let url = self
            .base
            .join(&t.url)
            .map_err(|e| SyncError::Protocol(format!("the server sent a bad transfer URL: {e}")))?;
        let method = reqwest::Method::from_bytes(t.method.as_bytes())
            .map_err(|_| SyncError::Protocol(format!("bad transfer method {:?}", t.method)))?;
        let mut req = self.transfers.request(method, url);
        for (k, v) in &t.headers {
            req = req.header(k, v);
        }
        Ok(req)
    }
}

/// A transfer that did not get an answer, without its URL.
fn transfer_error(e: reqwest::Error) -> SyncError {
    SyncError::Network(e.without_url())
}

/// The error a transfer answered (object stores answer XML or nothing).
async fn transfer_failed(resp: reqwest::Response) -> SyncError {
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap_or_default();
    match decode_response(status, &body) {
        Err(e) => e,
        Ok(_) => SyncError::Server {
            status,
            message: "the image transfer failed".into(),
        },
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

    async fn put_blob(&self, blob: &OutgoingBlob<'_>, token: &str) -> Result<(), SyncError> {
        let ask = self
            .http
            .post(self.base.join(&UPLOAD_URL_PATH[1..]).expect("a path joins"))
            .json(&UploadUrlRequest {
                sha256: blob.sha256.to_owned(),
                bytes: blob.bytes,
                content_type: blob.mime.to_owned(),
            });
        let Some(target) = self.transfer_url(ask, token).await? else {
            return Err(SyncError::Protocol("the server has no upload URL".into()));
        };
        let file = tokio::fs::File::open(blob.path)
            .await
            .map_err(|e| SyncError::Protocol(format!("{}: {e}", blob.path.display())))?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let mut request = self.transfer_request(&target)?;
        // An S3 upload URL signs the length among its headers; others
        // leave it to the client. Sent once either way.
        if !target
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            request = request.header(reqwest::header::CONTENT_LENGTH, blob.bytes);
        }
        let resp = request.body(body).send().await.map_err(transfer_error)?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(transfer_failed(resp).await)
        }
    }

    async fn get_blob(
        &self,
        sha256: &str,
        into: &BlobStore,
        token: &str,
    ) -> Result<bool, SyncError> {
        use futures::StreamExt as _;
        let mut ask_url = self
            .base
            .join(&DOWNLOAD_URL_PATH[1..])
            .expect("a path joins");
        ask_url.query_pairs_mut().append_pair("sha256", sha256);
        let Some(source) = self.transfer_url(self.http.get(ask_url), token).await? else {
            return Ok(false);
        };
        let resp = self
            .transfer_request(&source)?
            .send()
            .await
            .map_err(transfer_error)?;
        if !resp.status().is_success() {
            return Err(transfer_failed(resp).await);
        }
        let store_err = |e: crate::blob::BlobError| SyncError::Protocol(e.to_string());
        let mut incoming = into.incoming().map_err(store_err)?;
        let mut body = resp.bytes_stream();
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(transfer_error)?;
            if incoming.len() + piece.len() as u64 > MAX_BLOB_BYTES {
                return Err(SyncError::Protocol(format!(
                    "image {sha256} is larger than the {MAX_BLOB_BYTES} bytes an image may be"
                )));
            }
            incoming.write(&piece).map_err(store_err)?;
        }
        let (store, sha) = (into.clone(), sha256.to_owned());
        tokio::task::spawn_blocking(move || store.adopt(incoming, &sha))
            .await
            .map_err(|e| SyncError::Protocol(format!("image write failed: {e}")))?
            .map_err(store_err)?;
        Ok(true)
    }

    fn moves_blobs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers every request on its port with `answer`.
    fn answering(answer: String) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut buf = [0u8; 4096];
                let _ = std::io::Read::read(&mut stream, &mut buf);
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        url
    }

    #[tokio::test]
    async fn a_failed_transfer_never_tells_its_url() {
        // Transfer URLs to a port nothing listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let grant = serde_json::json!({
            "url": format!("{dead}/v1/blob-transfer?t=SECRET-TRANSFER-TOKEN"),
            "method": "PUT",
            "headers": {},
            "expiresAt": 4_000_000_000u64,
        })
        .to_string();
        let server = answering(format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{grant}",
            grant.len()
        ));
        let transport = HttpTransport::new(&server).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path().join("blobs")).unwrap();
        let sha = blobs.put(b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let path = blobs.path_of(&sha).unwrap();
        let blob = OutgoingBlob {
            sha256: &sha,
            mime: "image/png",
            path: &path,
            bytes: 18,
        };
        let up = transport.put_blob(&blob, "token").await.unwrap_err();
        let down = transport.get_blob(&sha, &blobs, "token").await.unwrap_err();
        for e in [up, down] {
            assert!(matches!(e, SyncError::Network(_)), "{e:?}");
            let text = format!("{e} {e:?}");
            assert!(!text.contains("SECRET-TRANSFER-TOKEN"), "{text}");
        }
    }

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
