//! Image facts and thumbnails for blobs the server stores: type by magic
//! bytes (never by name or header), dimensions, and a 256-pixel PNG
//! thumbnail. Decoding is CPU work: callers run it on a blocking thread.
//!
//! Nothing is decoded before its header was read and its pixels counted
//! against a limit (`core_sync::image_header`, 100 megapixels unless a
//! caller asks for less), and the decoder is held to the header's size: a
//! decompression bomb (a small file claiming gigapixels) is refused with a
//! sentence, never decoded.

use core_sync::image_header::{self, ImageHeader, ImageHeaderError};
use image::{DynamicImage, GenericImageView, ImageFormat, ImageReader, Limits};

/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_SIZE: u32 = 256;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("not a PNG, JPEG or WebP image")]
    UnknownType,
    #[error("the image does not decode: {0}")]
    Decode(String),
    /// The header gives no size, an empty one, or more pixels than allowed.
    #[error(transparent)]
    Header(ImageHeaderError),
}

impl From<ImageHeaderError> for ImageError {
    fn from(e: ImageHeaderError) -> Self {
        match e {
            ImageHeaderError::UnknownType => ImageError::UnknownType,
            other => ImageError::Header(other),
        }
    }
}

/// The MIME type of an image, by its magic bytes.
pub use core_sync::blob::sniff_mime as sniff;

/// Type, width and height, decoding the image to be sure it is whole
/// (at most [`image_header::MAX_PIXELS`]).
pub fn describe(bytes: &[u8]) -> Result<(&'static str, u32, u32), ImageError> {
    describe_within(bytes, image_header::MAX_PIXELS)
}

/// [`describe`], refusing more than `max_pixels` before decoding.
pub fn describe_within(
    bytes: &[u8],
    max_pixels: u64,
) -> Result<(&'static str, u32, u32), ImageError> {
    let header = image_header::inspect_with_limit(bytes, max_pixels)?;
    let img = decode(bytes, &header)?;
    let (w, h) = img.dimensions();
    Ok((header.mime, w, h))
}

/// A PNG no larger than [`THUMBNAIL_SIZE`] on its longest side, with its
/// dimensions (of an image of at most [`image_header::MAX_PIXELS`]).
pub fn thumbnail(bytes: &[u8]) -> Result<(Vec<u8>, u32, u32), ImageError> {
    thumbnail_within(bytes, image_header::MAX_PIXELS)
}

/// [`thumbnail`], refusing more than `max_pixels` before decoding.
pub fn thumbnail_within(bytes: &[u8], max_pixels: u64) -> Result<(Vec<u8>, u32, u32), ImageError> {
    let header = image_header::inspect_with_limit(bytes, max_pixels)?;
    let img = decode(bytes, &header)?;
    let thumb = img.thumbnail(THUMBNAIL_SIZE, THUMBNAIL_SIZE);
    let mut out = std::io::Cursor::new(Vec::new());
    thumb
        .write_to(&mut out, ImageFormat::Png)
        .map_err(|e| ImageError::Decode(e.to_string()))?;
    let (w, h) = thumb.dimensions();
    Ok((out.into_inner(), w, h))
}

/// Decodes `bytes`, whose header said `header`: the decoder may allocate
/// no more than that many pixels take at 16 bytes each (the widest
/// format), nor produce an image larger than the header claimed.
fn decode(bytes: &[u8], header: &ImageHeader) -> Result<DynamicImage, ImageError> {
    let bad = |e: image::ImageError| ImageError::Decode(e.to_string());
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageError::Decode(e.to_string()))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(header.width);
    limits.max_image_height = Some(header.height);
    let pixels = u64::from(header.width) * u64::from(header.height);
    limits.max_alloc = Some(pixels.saturating_mul(16).saturating_add(1 << 20));
    reader.limits(limits);
    reader.decode().map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbaImage::from_fn(w, h, |x, y| image::Rgba([x as u8, y as u8, 128, 255]));
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgba8(img)
            .write_to(&mut out, ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn describes_and_thumbnails_real_images_and_refuses_others() {
        let bytes = png(600, 300);
        assert_eq!(describe(&bytes).unwrap(), ("image/png", 600, 300));
        let (thumb, w, h) = thumbnail(&bytes).unwrap();
        assert_eq!((w, h), (256, 128));
        assert_eq!(describe(&thumb).unwrap(), ("image/png", 256, 128));
        assert!(matches!(
            describe(b"GIF89a...."),
            Err(ImageError::UnknownType)
        ));
        assert!(matches!(
            describe(&bytes[..bytes.len() / 2]),
            Err(ImageError::Decode(_))
        ));
    }

    #[test]
    fn a_decompression_bomb_is_refused_before_decoding() {
        // A real 1 x 1 PNG whose header then claims 20,000 x 20,000 pixels
        // (1.6 GB of RGBA): refused by its header, naming the limit.
        let mut bomb = png(1, 1);
        bomb[16..20].copy_from_slice(&20_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&20_000u32.to_be_bytes());
        for result in [describe(&bomb).map(|_| ()), thumbnail(&bomb).map(|_| ())] {
            let err = result.unwrap_err();
            assert!(
                matches!(err, ImageError::Header(ImageHeaderError::TooLarge { .. })),
                "{err:?}"
            );
            assert!(err.to_string().contains("megapixels"), "{err}");
        }
        // A caller's own lower limit applies the same way.
        let ok = png(40, 30);
        assert!(describe_within(&ok, 1_200).is_ok());
        assert!(matches!(
            describe_within(&ok, 1_199),
            Err(ImageError::Header(ImageHeaderError::TooLarge { .. }))
        ));
    }
}
