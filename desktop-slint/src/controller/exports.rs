//! Images going out: a version's original file saved where the user says
//! (the very bytes, in their format), or its pixels put on the clipboard.

use std::path::{Path, PathBuf};

use core_sync::blob::BlobStore;

use super::error::{ControllerError, Result};
use super::ports::with_extension;
use crate::images::Pixels;

/// File extensions of an image type, the usual one first.
pub fn extensions(mime: &str) -> &'static [&'static str] {
    match mime {
        "image/png" => &["png"],
        "image/jpeg" => &["jpg", "jpeg"],
        "image/webp" => &["webp"],
        _ => &["img"],
    }
}

/// "Harbour-v3.png": a file name for version `label` of `title`.
pub fn suggested_name(title: &str, label: &str, mime: &str) -> String {
    let clean: String = title
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == ' ' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = clean.trim();
    let base = if clean.is_empty() { "image" } else { clean };
    format!("{base}-{label}.{}", extensions(mime)[0])
}

/// Writes the blob's original bytes (checked against their hash) to
/// `path`, with the format's extension added if it lacks one; returns the
/// path written. A temp file beside it is renamed over it at the end.
pub fn save_blob(blobs: &BlobStore, sha256: &str, mime: &str, path: &Path) -> Result<PathBuf> {
    let bytes = blobs
        .get(sha256)
        .map_err(|e| ControllerError::Refused(format!("cannot read the image: {e}")))?;
    let path = with_extension(path, extensions(mime));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".part");
    let tmp = PathBuf::from(tmp);
    let write = |source| ControllerError::Write {
        path: path.clone(),
        source,
    };
    std::fs::write(&tmp, &bytes).map_err(write)?;
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        write(e)
    })?;
    Ok(path)
}

/// The blob's full-size pixels (for the clipboard).
pub fn full_pixels(blobs: &BlobStore, sha256: &str) -> Result<Pixels> {
    let bytes = blobs
        .get(sha256)
        .map_err(|e| ControllerError::Refused(format!("cannot read the image: {e}")))?;
    let img = image::load_from_memory(&bytes)
        .map_err(|e| ControllerError::Refused(format!("the image does not decode: {e}")))?
        .into_rgba8();
    let (width, height) = img.dimensions();
    Ok(Pixels {
        width,
        height,
        rgba: img.into_raw(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_the_format() {
        assert_eq!(
            suggested_name("Harbour / dusk", "v3", "image/jpeg"),
            "Harbour _ dusk-v3.jpg"
        );
        assert_eq!(suggested_name("", "v1", "image/png"), "image-v1.png");
        assert_eq!(
            with_extension(Path::new("/t/a"), extensions("image/png")),
            Path::new("/t/a.png")
        );
        assert_eq!(
            with_extension(Path::new("/t/a.JPEG"), extensions("image/jpeg")),
            Path::new("/t/a.JPEG")
        );
        assert_eq!(
            with_extension(Path::new("/t/a.jpg"), extensions("image/png")),
            Path::new("/t/a.jpg.png")
        );
    }
}
