//! Compressed bodies built by hand, so their decompressed size is exact and
//! known without compressing megabytes in a debug build: zstd frames of
//! raw and RLE blocks, gzip members of back-references; and decoding a
//! compressed response with tower-http's own decompression.

use axum::Router;
use axum::body::{Body, Bytes as HttpBytes, to_bytes};
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode, header};
use axum::routing::post;
use tower::ServiceExt as _;
use tower_http::decompression::RequestDecompressionLayer;

// ------------------------------------------------- hand-built encodings

/// One piece of a hand-built compressed body.
pub(crate) enum Seg<'a> {
    /// These bytes, verbatim.
    Raw(&'a [u8]),
    /// This many spaces (JSON whitespace).
    Spaces(usize),
    /// A block no decoder accepts (zstd only).
    Corrupt,
}

/// A zstd frame (RFC 8878) of raw and RLE blocks: 4 bytes per 128 KiB of
/// spaces, so a gigabyte costs 32 KiB on the wire.
pub(crate) fn zstd_frame(segs: &[Seg]) -> Vec<u8> {
    pub(crate) const BLOCK: usize = 128 * 1024;
    // (block type, size field, content)
    let mut blocks: Vec<(u32, usize, Vec<u8>)> = Vec::new();
    for seg in segs {
        match seg {
            Seg::Raw(bytes) => {
                for part in bytes.chunks(BLOCK) {
                    blocks.push((0, part.len(), part.to_vec()));
                }
            }
            Seg::Spaces(n) => {
                let mut n = *n;
                while n > 0 {
                    let size = n.min(BLOCK);
                    blocks.push((1, size, vec![b' ']));
                    n -= size;
                }
            }
            // Block type 3 is reserved: "Corruption detected".
            Seg::Corrupt => blocks.push((3, 0, vec![])),
        }
    }
    let mut out = vec![0x28, 0xB5, 0x2F, 0xFD]; // magic, little-endian
    out.push(0x00); // no content size, no checksum, no dictionary, not single-segment
    out.push(0x38); // window descriptor: 2^17 bytes = 128 KiB
    let count = blocks.len();
    for (i, (kind, size, content)) in blocks.into_iter().enumerate() {
        let last = u32::from(i + 1 == count);
        let header = last | (kind << 1) | ((size as u32) << 3);
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.extend_from_slice(&content);
    }
    out
}

/// Deflate's bit order: values LSB first, Huffman codes MSB first.
#[derive(Default)]
pub(crate) struct BitWriter {
    pub(crate) out: Vec<u8>,
    pub(crate) acc: u64,
    pub(crate) bits: u32,
}

impl BitWriter {
    pub(crate) fn value(&mut self, value: u64, bits: u32) {
        self.acc |= value << self.bits;
        self.bits += bits;
        while self.bits >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.bits -= 8;
        }
    }

    pub(crate) fn code(&mut self, code: u32, bits: u32) {
        for i in (0..bits).rev() {
            self.value(u64::from((code >> i) & 1), 1);
        }
    }

    /// A literal byte in the fixed Huffman code (RFC 1951 §3.2.6).
    pub(crate) fn literal(&mut self, b: u8) {
        if b <= 143 {
            self.code(0x30 + u32::from(b), 8);
        } else {
            self.code(0x190 + u32::from(b - 144), 9);
        }
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.bits > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

pub(crate) fn crc32(prefix: &[u8], spaces: usize) -> u32 {
    let table: Vec<u32> = (0..256u32)
        .map(|n| {
            (0..8).fold(n, |c, _| {
                if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                }
            })
        })
        .collect();
    let mut crc = !0u32;
    for b in prefix
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b' ', spaces))
    {
        crc = table[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// A gzip member (RFC 1952) of `prefix` then `spaces` spaces: one fixed
/// Huffman block, the spaces as length-258 back-references (13 bits each).
pub(crate) fn gzip(prefix: &[u8], spaces: usize) -> Vec<u8> {
    let mut w = BitWriter::default();
    w.value(1, 1); // BFINAL
    w.value(1, 2); // BTYPE = 01, fixed Huffman
    for &b in prefix {
        w.literal(b);
    }
    let mut left = spaces;
    if left > 0 {
        w.literal(b' ');
        left -= 1;
    }
    while left >= 258 {
        w.code(0xC5, 8); // length code 285: 258 bytes
        w.code(0, 5); // distance code 0: distance 1
        left -= 258;
    }
    for _ in 0..left {
        w.literal(b' ');
    }
    w.code(0, 7); // end of block
    let mut out = vec![0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0xFF];
    out.extend_from_slice(&w.finish());
    out.extend_from_slice(&crc32(prefix, spaces).to_le_bytes());
    out.extend_from_slice(&((prefix.len() + spaces) as u32).to_le_bytes());
    out
}

/// Decodes a compressed body with tower-http's own request decompression
/// (an echo service), for reading compressed responses.
pub(crate) async fn decompress(encoding: &str, bytes: HttpBytes) -> HttpBytes {
    let echo = Router::new()
        .route("/", post(|body: HttpBytes| async move { body }))
        .layer(DefaultBodyLimit::disable())
        .layer(RequestDecompressionLayer::new());
    let req = Request::post("/")
        .header(header::CONTENT_ENCODING, encoding)
        .body(Body::from(bytes))
        .unwrap();
    let resp = echo.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    to_bytes(resp.into_body(), usize::MAX).await.unwrap()
}
