//! Image bytes from outside (uploads, provider outputs, imported files):
//! type by magic bytes (`blob::sniff_mime`), the header's type and size
//! with its pixel limit (`image_header`), and the server's decoding into
//! facts and a thumbnail (`cloud_lambda::images`).
//!
//! The targets decode with a 4-megapixel limit (the production limit is
//! 100): the same code, a decode that stays fast. Properties: nothing
//! decodes whose header was refused, a decoded image is no larger than the
//! limit, and the decoder's allocations stay within what the header's
//! pixels need (libFuzzer's `-malloc_limit_mb`, set by `tests/fuzz.sh`,
//! catches any that do not).

use cloud_lambda::images;
use core_sync::blob::sniff_mime;
use core_sync::image_header::inspect_with_limit;

/// The pixel limit the target decodes with.
pub const MAX_PIXELS: u64 = 4_000_000;

pub fn run(data: &[u8]) {
    let sniffed = sniff_mime(data);
    let header = inspect_with_limit(data, MAX_PIXELS);
    if let Ok(h) = &header {
        assert_eq!(
            Some(h.mime),
            sniffed,
            "the header's type is not the sniffed one"
        );
    }
    if let Ok((mime, w, h)) = images::describe_within(data, MAX_PIXELS) {
        let header = header.expect("an image decoded whose header was refused");
        assert_eq!(mime, header.mime);
        assert!(
            u64::from(w) * u64::from(h) <= MAX_PIXELS,
            "decoded {w} x {h}, over the limit"
        );
        assert!(
            w <= header.width && h <= header.height,
            "decoded {w} x {h}, larger than the header's {} x {}",
            header.width,
            header.height
        );
        let (thumb, tw, th) =
            images::thumbnail_within(data, MAX_PIXELS).expect("a decodable image thumbnails");
        assert!(tw <= images::THUMBNAIL_SIZE && th <= images::THUMBNAIL_SIZE);
        assert_eq!(sniff_mime(&thumb), Some("image/png"));
    }
}
