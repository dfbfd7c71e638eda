//! Images coming in (a picked or dropped file, the clipboard): checked by
//! their content (PNG, JPEG or WebP magic bytes, a decodable image, a size
//! limit) with errors naming the file, and turned into a new asset or a new
//! version of the open one. Nothing is stored until the image is known good.

use std::path::Path;

use core_sync::blob::sniff_mime;
use core_sync::model::{AssetDoc, BlobRef, Millis, NewMessage, NewVersion};

use super::error::{ControllerError, Result};
use super::ports::{AssetStore, Clipboard, ClipboardContent};
use crate::format;
use crate::images::Pixels;

/// A checked image, ready to store.
#[derive(Debug, Clone)]
pub struct IncomingImage {
    /// "harbour.jpg", or "Pasted image".
    pub name: String,
    /// The asset title it would get: the file name without extension.
    pub title: String,
    pub bytes: Vec<u8>,
    pub mime: &'static str,
    pub width: u32,
    pub height: u32,
    pub thumbnail: (Vec<u8>, u32, u32),
}

impl IncomingImage {
    /// "harbour.jpg (800 × 600)".
    pub fn describe(&self) -> String {
        format!(
            "{} ({})",
            self.name,
            format::dimensions(self.width, self.height)
        )
    }
}

/// Checks `bytes` (named `name` in errors) and makes its thumbnail; CPU
/// work, run it on a blocking thread.
pub fn check(name: &str, title: &str, bytes: Vec<u8>, max_bytes: u64) -> Result<IncomingImage> {
    if bytes.len() as u64 > max_bytes {
        return Err(ControllerError::TooLarge {
            name: name.to_owned(),
            size: format::bytes(bytes.len() as u64),
            limit: format::bytes(max_bytes),
        });
    }
    let mime = sniff_mime(&bytes).ok_or_else(|| ControllerError::NotAnImage {
        name: name.to_owned(),
    })?;
    let bad = |e: cloud_lambda::images::ImageError| ControllerError::BadImage {
        name: name.to_owned(),
        message: e.to_string(),
    };
    let (_, width, height) = cloud_lambda::images::describe(&bytes).map_err(bad)?;
    let thumbnail = cloud_lambda::images::thumbnail(&bytes).map_err(bad)?;
    Ok(IncomingImage {
        name: name.to_owned(),
        title: title.to_owned(),
        bytes,
        mime,
        width,
        height,
        thumbnail,
    })
}

/// Reads and checks an image file.
pub async fn read_file(path: &Path, max_bytes: u64) -> Result<IncomingImage> {
    let read_err = |source| ControllerError::Read {
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let title = path
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Untitled".into());
    let meta = tokio::fs::metadata(path).await.map_err(read_err)?;
    if meta.len() > max_bytes {
        return Err(ControllerError::TooLarge {
            name,
            size: format::bytes(meta.len()),
            limit: format::bytes(max_bytes),
        });
    }
    let bytes = tokio::fs::read(path).await.map_err(read_err)?;
    tokio::task::spawn_blocking(move || check(&name, &title, bytes, max_bytes))
        .await
        .expect("image checks do not panic")
}

/// Reads and checks each file.
pub async fn read_paths(
    paths: Vec<std::path::PathBuf>,
    max_bytes: u64,
) -> Vec<Result<IncomingImage>> {
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        out.push(read_file(&p, max_bytes).await);
    }
    out
}

/// What the clipboard holds, checked: an image, or image files; `None`
/// when it holds neither. Errors are the clipboard's own.
pub async fn read_clipboard(
    clipboard: std::sync::Arc<dyn Clipboard>,
    max_bytes: u64,
) -> std::result::Result<Option<Vec<Result<IncomingImage>>>, String> {
    let content = tokio::task::spawn_blocking(move || clipboard.read())
        .await
        .map_err(|e| e.to_string())??;
    Ok(match content {
        ClipboardContent::Image(px) => Some(vec![
            tokio::task::spawn_blocking(move || from_pixels(&px, max_bytes))
                .await
                .expect("image checks do not panic"),
        ]),
        ClipboardContent::Files(paths) => Some(read_paths(paths, max_bytes).await),
        ClipboardContent::Other => None,
    })
}

/// A clipboard image (RGBA pixels) as a PNG file's bytes, checked.
pub fn from_pixels(pixels: &Pixels, max_bytes: u64) -> Result<IncomingImage> {
    let name = "Pasted image";
    let img = image::RgbaImage::from_raw(pixels.width, pixels.height, pixels.rgba.clone())
        .ok_or_else(|| ControllerError::BadImage {
            name: name.into(),
            message: "the clipboard's image has the wrong number of pixels".into(),
        })?;
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| ControllerError::BadImage {
            name: name.into(),
            message: e.to_string(),
        })?;
    check(name, name, png.into_inner(), max_bytes)
}

/// Stores the image and its thumbnail; returns their references.
pub async fn store_blobs(
    store: &dyn AssetStore,
    img: &IncomingImage,
    now: Millis,
) -> Result<(BlobRef, BlobRef)> {
    let sha = store.put_blob(img.bytes.clone(), img.mime, now).await?;
    let (thumb, tw, th) = &img.thumbnail;
    let thumb_sha = store.put_blob(thumb.clone(), "image/png", now).await?;
    Ok((
        BlobRef {
            sha256: sha,
            mime: img.mime.into(),
            width: img.width,
            height: img.height,
            bytes: img.bytes.len() as u64,
        },
        BlobRef {
            sha256: thumb_sha,
            mime: "image/png".into(),
            width: *tw,
            height: *th,
            bytes: thumb.len() as u64,
        },
    ))
}

/// Adds the image to `doc` as a new (active) version, with a note saying
/// where it came from.
pub fn add_version(
    doc: &mut AssetDoc,
    img: &IncomingImage,
    blobs: (BlobRef, BlobRef),
    parent: Option<String>,
    now: Millis,
) -> Result<String> {
    let note = doc.append_message(NewMessage::user(format!("Uploaded {}", img.name)), now)?;
    Ok(doc.add_version(
        NewVersion {
            blob: blobs.0,
            thumbnail: Some(blobs.1),
            parent_version_id: parent,
            created_by_message_id: Some(note),
        },
        now,
    )?)
}

/// A new asset whose first version is the image.
pub fn new_asset(img: &IncomingImage, blobs: (BlobRef, BlobRef), now: Millis) -> Result<AssetDoc> {
    let mut doc = AssetDoc::create(&img.title, now);
    add_version(&mut doc, img, blobs, None, now)?;
    Ok(doc)
}
