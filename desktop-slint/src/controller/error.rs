//! `ControllerError`: what went wrong with a user's action, as a sentence
//! for the notice bar.

use std::path::PathBuf;

use core_sync::model::ModelError;
use core_sync::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{name} is {size}, more than the {limit} an upload may be")]
    TooLarge {
        name: String,
        size: String,
        limit: String,
    },
    #[error("{name} is not a PNG, JPEG or WebP image")]
    NotAnImage { name: String },
    #[error("{name}: {message}")]
    BadImage { name: String, message: String },
    #[error("open an asset first")]
    NoAsset,
    #[error("{0}")]
    Refused(String),
}

pub type Result<T, E = ControllerError> = std::result::Result<T, E>;
