//! The model's one error type: everything that can go wrong reading or
//! changing an asset document, without any IO.

use automerge::AutomergeError;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The bytes are not an Automerge document (corrupt or truncated).
    #[error("not a valid Automerge document or change: {0}")]
    Automerge(Box<AutomergeError>),

    /// Written by a newer Atelier: refusing beats silently mangling it.
    #[error(
        "schema version {found} is newer than this build understands (up to {supported}); update Atelier"
    )]
    UnsupportedSchema { found: u64, supported: u64 },

    /// The document parsed but does not have the shape of an asset.
    #[error("malformed asset document: {0}")]
    Malformed(String),

    #[error("no message with id {0}")]
    UnknownMessage(String),

    #[error("no version with id {0}")]
    UnknownVersion(String),

    /// The entry (or field) a read or write needs does not follow the
    /// schema. Writes refuse rather than overwrite what they cannot read.
    #[error("{0}; it cannot be read, so Atelier leaves it as it is")]
    Unreadable(Box<super::types::Unreadable>),

    /// A caller asked for something the model refuses (bad progress value,
    /// moving a finished message, …). The document is unchanged.
    #[error("invalid change: {0}")]
    Invalid(String),
}

impl From<AutomergeError> for ModelError {
    fn from(e: AutomergeError) -> Self {
        ModelError::Automerge(Box::new(e))
    }
}

pub type ModelResult<T> = Result<T, ModelError>;
