//! Identifiers: documents, messages, versions and cost events are named by
//! random 128-bit ids, minted offline by whichever device creates them.
//!
//! Ids are lowercase hex (32 characters). Parsing validates the form, so an id
//! that reaches SQL, a file name or an S3 key is always safe to embed.

use std::fmt;
use std::str::FromStr;

/// The id of one asset document.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocId(String);

impl DocId {
    /// A fresh random id.
    pub fn random() -> Self {
        DocId(new_id())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocId({})", self.0)
    }
}

/// A string that is not a well-formed id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid id {0:?}: expected 32 lowercase hex characters")]
pub struct InvalidId(pub String);

impl FromStr for DocId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_valid_id(s) {
            Ok(DocId(s.to_owned()))
        } else {
            Err(InvalidId(s.chars().take(80).collect()))
        }
    }
}

/// A fresh random id for a message, version or cost event.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Whether `s` has the form of an id minted by [`new_id`].
pub fn is_valid_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_junk() {
        let id = DocId::random();
        assert_eq!(id.as_str().parse::<DocId>().unwrap(), id);
        for bad in [
            "",
            "../etc/passwd",
            "ABCDEF0123456789ABCDEF0123456789",
            "0123",
        ] {
            assert!(bad.parse::<DocId>().is_err(), "{bad}");
        }
    }
}
