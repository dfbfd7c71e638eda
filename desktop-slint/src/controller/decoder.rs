//! Decoding images for the view on blocking threads, newest request first,
//! a few at a time, into a byte-budgeted cache; images whose blob is not
//! here yet are retried when sync brings documents.

use std::collections::HashSet;
use std::sync::Arc;

use core_sync::blob::{BlobError, BlobStore};

use crate::images::{self, ImageCache, ImageKey, Pixels};

/// Why an image could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeFailure {
    /// The blob is not here (yet): sync may bring it.
    Missing,
    Broken(String),
}

pub type Decoded = Result<Pixels, DecodeFailure>;

pub struct Decoder {
    cache: ImageCache,
    decoding: HashSet<String>,
    /// Requested, not yet started: newest request last (decoded first).
    wanted: Vec<String>,
    missing: HashSet<String>,
    parallelism: usize,
}

/// What to do after a request.
pub enum Want {
    /// Cached: show it.
    Ready(Arc<Pixels>),
    /// Queued or already decoding.
    Later,
}

impl Decoder {
    pub fn new(budget_bytes: usize, parallelism: usize) -> Decoder {
        Decoder {
            cache: ImageCache::new(budget_bytes),
            decoding: HashSet::new(),
            wanted: Vec::new(),
            missing: HashSet::new(),
            parallelism: parallelism.max(1),
        }
    }

    pub fn want(&mut self, key: String) -> Want {
        if let Some(p) = self.cache.touch(&key) {
            return Want::Ready(p);
        }
        if !self.decoding.contains(&key) && ImageKey::parse(&key).is_some() {
            self.wanted.retain(|k| k != &key);
            self.wanted.push(key);
        }
        Want::Later
    }

    /// Starts decodes up to the parallelism; `done` is called (on a
    /// blocking thread) with each result.
    pub fn pump(
        &mut self,
        blobs: &BlobStore,
        done: impl Fn(String, Decoded) + Clone + Send + 'static,
    ) {
        while self.decoding.len() < self.parallelism {
            let Some(key) = self.wanted.pop() else { return };
            let Some(parsed) = ImageKey::parse(&key) else {
                continue;
            };
            self.decoding.insert(key.clone());
            let blobs = blobs.clone();
            let done = done.clone();
            tokio::task::spawn_blocking(move || {
                let result = match blobs.get(&parsed.sha256) {
                    Ok(bytes) => images::decode(&bytes, parsed.size)
                        .map_err(|e| DecodeFailure::Broken(e.to_string())),
                    Err(BlobError::NotFound(_)) => Err(DecodeFailure::Missing),
                    Err(e) => Err(DecodeFailure::Broken(e.to_string())),
                };
                done(key, result);
            });
        }
    }

    /// Takes a finished decode; returns the pixels to show (if it worked)
    /// and the keys the cache let go of.
    pub fn finished(&mut self, key: &str, result: Decoded) -> (Option<Arc<Pixels>>, Vec<String>) {
        self.decoding.remove(key);
        match result {
            Ok(pixels) => {
                let pixels = Arc::new(pixels);
                let evicted = self.cache.insert(key.to_owned(), pixels.clone());
                (Some(pixels), evicted)
            }
            Err(DecodeFailure::Missing) => {
                self.missing.insert(key.to_owned());
                (None, Vec::new())
            }
            Err(DecodeFailure::Broken(e)) => {
                tracing::warn!(%key, error = %e, "image does not decode");
                (None, Vec::new())
            }
        }
    }

    /// Images whose blob was missing: ask again (sync brought documents).
    pub fn take_missing(&mut self) -> Vec<String> {
        self.missing.drain().collect()
    }
}
