//! What an image is, from its header alone: its type by magic bytes and its
//! size in pixels, without decoding it. A path that adds a version from
//! bytes records these, and refuses an image whose header claims more than
//! [`MAX_PIXELS`] before anything decodes it: a decompression bomb is a few
//! kilobytes claiming gigapixels.

use crate::blob::sniff_mime;

/// The most pixels an image may claim: 100 megapixels (a 10,000 × 10,000
/// image; 400 MB once decoded to RGBA).
pub const MAX_PIXELS: u64 = 100_000_000;

/// Type and size of an image, as its header states them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    pub mime: &'static str,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageHeaderError {
    #[error("not a PNG, JPEG or WebP image")]
    UnknownType,
    #[error("the {mime} header does not give a size ({reason}); the file may be truncated")]
    NoSize { mime: &'static str, reason: String },
    #[error("the {mime} header claims an empty image ({width} × {height} pixels)")]
    Empty {
        mime: &'static str,
        width: u64,
        height: u64,
    },
    #[error(
        "the image claims {width} × {height} pixels, more than the limit of {} megapixels; refusing it before decoding",
        limit / 1_000_000
    )]
    TooLarge { width: u64, height: u64, limit: u64 },
}

/// Type and size of `bytes` with the default [`MAX_PIXELS`] limit.
pub fn inspect(bytes: &[u8]) -> Result<ImageHeader, ImageHeaderError> {
    inspect_with_limit(bytes, MAX_PIXELS)
}

/// Type and size of `bytes`, refusing more than `max_pixels`.
pub fn inspect_with_limit(bytes: &[u8], max_pixels: u64) -> Result<ImageHeader, ImageHeaderError> {
    let mime = sniff_mime(bytes).ok_or(ImageHeaderError::UnknownType)?;
    let size = imagesize::blob_size(bytes).map_err(|e| ImageHeaderError::NoSize {
        mime,
        reason: e.to_string(),
    })?;
    let (width, height) = (size.width as u64, size.height as u64);
    if width == 0 || height == 0 {
        return Err(ImageHeaderError::Empty {
            mime,
            width,
            height,
        });
    }
    if width.saturating_mul(height) > max_pixels {
        return Err(ImageHeaderError::TooLarge {
            width,
            height,
            limit: max_pixels,
        });
    }
    // Within the pixel limit, each side fits in a u32.
    Ok(ImageHeader {
        mime,
        width: width as u32,
        height: height as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG signature and IHDR chunk claiming `w` × `h` (the CRC is not
    /// checked by a header reader, so zeros do).
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        b.extend(w.to_be_bytes());
        b.extend(h.to_be_bytes());
        b.extend([8, 6, 0, 0, 0, 0, 0, 0, 0]);
        b
    }

    /// A JPEG with an APP0 segment, then a baseline SOF0 claiming `w` × `h`.
    fn jpeg_header(w: u16, h: u16) -> Vec<u8> {
        let mut b = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10];
        b.extend(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        b.extend([0xff, 0xc0, 0x00, 0x11, 0x08]);
        b.extend(h.to_be_bytes());
        b.extend(w.to_be_bytes());
        b.extend([3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        b.extend([0xff, 0xd9]);
        b
    }

    /// A lossless WebP (VP8L) header claiming `w` × `h`.
    fn webp_header(w: u32, h: u32) -> Vec<u8> {
        let bits = (w - 1) | ((h - 1) << 14);
        let mut chunk = vec![0x2f];
        chunk.extend(bits.to_le_bytes());
        let mut b = b"RIFF".to_vec();
        b.extend((4 + 8 + chunk.len() as u32).to_le_bytes());
        b.extend(b"WEBPVP8L");
        b.extend((chunk.len() as u32).to_le_bytes());
        b.extend(chunk);
        b
    }

    #[test]
    fn headers_give_type_and_size_and_bombs_are_refused() {
        let ok = |mime, width, height| {
            Ok(ImageHeader {
                mime,
                width,
                height,
            })
        };
        let cases: Vec<(&str, Vec<u8>, Result<ImageHeader, ImageHeaderError>)> = vec![
            ("png", png_header(640, 480), ok("image/png", 640, 480)),
            ("jpeg", jpeg_header(1024, 768), ok("image/jpeg", 1024, 768)),
            ("webp", webp_header(300, 200), ok("image/webp", 300, 200)),
            (
                "at the limit",
                png_header(10_000, 10_000),
                ok("image/png", 10_000, 10_000),
            ),
            (
                "a bomb",
                png_header(100_000, 100_000),
                Err(ImageHeaderError::TooLarge {
                    width: 100_000,
                    height: 100_000,
                    limit: MAX_PIXELS,
                }),
            ),
            (
                "one pixel over",
                png_header(10_001, 10_000),
                Err(ImageHeaderError::TooLarge {
                    width: 10_001,
                    height: 10_000,
                    limit: MAX_PIXELS,
                }),
            ),
            (
                "empty",
                png_header(0, 10),
                Err(ImageHeaderError::Empty {
                    mime: "image/png",
                    width: 0,
                    height: 10,
                }),
            ),
            (
                "gif",
                b"GIF89a\x01\x00\x01\x00".to_vec(),
                Err(ImageHeaderError::UnknownType),
            ),
            (
                "text",
                b"demo image".to_vec(),
                Err(ImageHeaderError::UnknownType),
            ),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(inspect(&bytes), want, "{name}");
        }
        let truncated = &png_header(640, 480)[..12];
        assert!(
            matches!(
                inspect(truncated),
                Err(ImageHeaderError::NoSize {
                    mime: "image/png",
                    ..
                })
            ),
            "truncated"
        );
        let msg = inspect(&png_header(100_000, 100_000))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("more than the limit of 100 megapixels"),
            "{msg}"
        );
    }
}
