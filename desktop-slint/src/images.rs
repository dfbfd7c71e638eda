//! Images for the views: keys naming a blob at a display size, decoding and
//! downscaling (CPU work, run on blocking threads, never the UI thread),
//! and a memory-bounded cache that says which images it let go, so the view
//! can drop them too. Pixels are plain RGBA bytes: the UI adapter makes
//! Slint images from them on the UI thread.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use image::GenericImageView;

/// How large an image is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageSize {
    /// List and version thumbnails (48 px, shown sharp on 2x screens).
    Small,
    /// Timeline cards and the inspector preview.
    Large,
}

impl ImageSize {
    /// Longest side after downscaling, in pixels.
    pub fn max_side(self) -> u32 {
        match self {
            ImageSize::Small => 96,
            ImageSize::Large => 640,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            ImageSize::Small => "s",
            ImageSize::Large => "l",
        }
    }
}

/// A blob at a display size, written `sha@s` or `sha@l` in rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageKey {
    pub sha256: String,
    pub size: ImageSize,
}

impl ImageKey {
    pub fn new(sha256: &str, size: ImageSize) -> Self {
        ImageKey {
            sha256: sha256.to_owned(),
            size,
        }
    }

    pub fn parse(s: &str) -> Option<ImageKey> {
        let (sha, size) = s.rsplit_once('@')?;
        let size = match size {
            "s" => ImageSize::Small,
            "l" => ImageSize::Large,
            _ => return None,
        };
        core_sync::blob::is_valid_sha256(sha).then(|| ImageKey::new(sha, size))
    }
}

impl fmt::Display for ImageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.sha256, self.size.suffix())
    }
}

/// Decoded RGBA8 pixels.
#[derive(Clone, PartialEq, Eq)]
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

impl fmt::Debug for Pixels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pixels({}×{})", self.width, self.height)
    }
}

impl Pixels {
    pub fn byte_len(&self) -> usize {
        self.rgba.len()
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("the image does not decode: {0}")]
pub struct DecodeError(String);

/// Decodes `bytes` and scales it down (never up) to fit `size`.
pub fn decode(bytes: &[u8], size: ImageSize) -> Result<Pixels, DecodeError> {
    let img = image::load_from_memory(bytes).map_err(|e| DecodeError(e.to_string()))?;
    let side = size.max_side();
    let (w, h) = img.dimensions();
    let img = if w > side || h > side {
        img.thumbnail(side, side)
    } else {
        img
    };
    let rgba = img.into_rgba8();
    let (width, height) = rgba.dimensions();
    Ok(Pixels {
        width,
        height,
        rgba: rgba.into_raw(),
    })
}

/// Decoded images under a byte budget, least recently used out first.
pub struct ImageCache {
    budget: usize,
    used: usize,
    images: HashMap<String, Arc<Pixels>>,
    /// Keys, least recently used first (may hold stale duplicates; the
    /// `images` map is the truth).
    order: VecDeque<String>,
}

impl ImageCache {
    pub fn new(budget_bytes: usize) -> Self {
        ImageCache {
            budget: budget_bytes,
            used: 0,
            images: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.images.contains_key(key)
    }

    pub fn used_bytes(&self) -> usize {
        self.used
    }

    /// Marks `key` as just used; returns its pixels if cached.
    pub fn touch(&mut self, key: &str) -> Option<Arc<Pixels>> {
        let p = self.images.get(key)?.clone();
        self.order.push_back(key.to_owned());
        self.compact_order();
        Some(p)
    }

    /// Adds an image; returns the keys evicted to stay in budget (never
    /// the one just added).
    pub fn insert(&mut self, key: String, pixels: Arc<Pixels>) -> Vec<String> {
        if let Some(old) = self.images.insert(key.clone(), pixels.clone()) {
            self.used -= old.byte_len();
        }
        self.used += pixels.byte_len();
        self.order.push_back(key.clone());
        let mut evicted = Vec::new();
        while self.used > self.budget {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if oldest == key {
                // Only the newest is left: keep it even over budget.
                if self.order.iter().all(|k| k == &key) {
                    self.order.push_front(oldest);
                    break;
                }
                self.order.push_back(oldest);
                continue;
            }
            // A stale duplicate: the key was used again later.
            if self.order.contains(&oldest) {
                continue;
            }
            if let Some(p) = self.images.remove(&oldest) {
                self.used -= p.byte_len();
                evicted.push(oldest);
            }
        }
        self.compact_order();
        evicted
    }

    /// Keeps the order queue from growing without bound under repeated
    /// touches of the same keys.
    fn compact_order(&mut self) {
        if self.order.len() > 4 * self.images.len() + 64 {
            let mut seen = std::collections::HashSet::new();
            let mut fresh: Vec<String> = Vec::with_capacity(self.images.len());
            for k in self.order.iter().rev() {
                if self.images.contains_key(k) && seen.insert(k.clone()) {
                    fresh.push(k.clone());
                }
            }
            fresh.reverse();
            self.order = fresh.into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbaImage::from_pixel(w, h, image::Rgba([10, 20, 30, 255]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn px(n: usize) -> Arc<Pixels> {
        Arc::new(Pixels {
            width: 1,
            height: 1,
            rgba: vec![0; n],
        })
    }

    #[test]
    fn keys_round_trip() {
        let sha = "a".repeat(64);
        let k = ImageKey::new(&sha, ImageSize::Large);
        assert_eq!(ImageKey::parse(&k.to_string()), Some(k));
        assert_eq!(ImageKey::parse("nonsense"), None);
        assert_eq!(ImageKey::parse(&format!("{sha}@x")), None);
    }

    #[test]
    fn decoding_downscales_keeping_aspect_and_refuses_garbage() {
        let p = decode(&png(1000, 500), ImageSize::Small).unwrap();
        assert_eq!((p.width, p.height), (96, 48));
        assert_eq!(p.rgba.len(), 96 * 48 * 4);
        let p = decode(&png(40, 30), ImageSize::Large).unwrap();
        assert_eq!((p.width, p.height), (40, 30), "never upscaled");
        assert!(decode(b"not an image", ImageSize::Small).is_err());
        let mut cut = png(64, 64);
        cut.truncate(cut.len() / 2);
        assert!(decode(&cut, ImageSize::Small).is_err());
    }

    #[test]
    fn the_cache_evicts_least_recently_used_within_budget() {
        let mut c = ImageCache::new(300);
        assert!(c.insert("a".into(), px(100)).is_empty());
        assert!(c.insert("b".into(), px(100)).is_empty());
        assert!(c.insert("c".into(), px(100)).is_empty());
        c.touch("a");
        assert_eq!(c.insert("d".into(), px(100)), vec!["b".to_owned()]);
        assert!(c.contains("a") && c.contains("c") && c.contains("d"));
        assert_eq!(c.used_bytes(), 300);
        // One image over budget on its own is kept (and everything else goes).
        let evicted = c.insert("huge".into(), px(1000));
        assert_eq!(evicted.len(), 3);
        assert!(c.contains("huge"));
        for _ in 0..1000 {
            c.touch("huge");
        }
        assert!(c.order.len() < 100, "order queue stays bounded");
    }
}
