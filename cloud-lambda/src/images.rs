//! Image facts and thumbnails for blobs the server stores: type by magic
//! bytes (never by name or header), dimensions, and a 256-pixel PNG
//! thumbnail. Decoding is CPU work: callers run it on a blocking thread.

use image::{GenericImageView, ImageFormat};

/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_SIZE: u32 = 256;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("not a PNG, JPEG or WebP image")]
    UnknownType,
    #[error("the image does not decode: {0}")]
    Decode(String),
}

/// The MIME type of an image, by its magic bytes.
pub use core_sync::blob::sniff_mime as sniff;

/// Type, width and height, decoding the image to be sure it is whole.
pub fn describe(bytes: &[u8]) -> Result<(&'static str, u32, u32), ImageError> {
    let mime = sniff(bytes).ok_or(ImageError::UnknownType)?;
    let img = image::load_from_memory(bytes).map_err(|e| ImageError::Decode(e.to_string()))?;
    let (w, h) = img.dimensions();
    Ok((mime, w, h))
}

/// A PNG no larger than [`THUMBNAIL_SIZE`] on its longest side, with its
/// dimensions.
pub fn thumbnail(bytes: &[u8]) -> Result<(Vec<u8>, u32, u32), ImageError> {
    let img = image::load_from_memory(bytes).map_err(|e| ImageError::Decode(e.to_string()))?;
    let thumb = img.thumbnail(THUMBNAIL_SIZE, THUMBNAIL_SIZE);
    let mut out = std::io::Cursor::new(Vec::new());
    thumb
        .write_to(&mut out, ImageFormat::Png)
        .map_err(|e| ImageError::Decode(e.to_string()))?;
    let (w, h) = thumb.dimensions();
    Ok((out.into_inner(), w, h))
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
}
