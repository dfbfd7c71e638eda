//! Identifiers: documents, messages, versions and cost events are named by
//! random 128-bit ids, minted offline by whichever device creates them.
//!
//! Ids are lowercase hex (32 characters). Parsing validates the form, so an id
//! that reaches SQL, a file name or an S3 key is always safe to embed.

use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

use rand::{Rng as _, SeedableRng as _};

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
    uuid::Builder::from_random_bytes(random_16())
        .into_uuid()
        .simple()
        .to_string()
}

/// A fresh random Automerge actor id (every load of a document takes one:
/// see the model's invariants).
pub fn new_actor_id() -> automerge::ActorId {
    automerge::ActorId::from(random_16())
}

thread_local! {
    /// Set only by deterministic simulations: [`seed_ids_on_this_thread`].
    static SEEDED: RefCell<Option<rand::rngs::StdRng>> = const { RefCell::new(None) };
}

/// Makes the ids and actor ids minted on this thread come from a generator
/// seeded with `seed` (`None` returns to the system's randomness), so a
/// simulation run on one thread replays byte for byte from its seed.
///
/// Only for simulations and tests: ids and actor ids must never repeat
/// between devices or processes, which only fresh randomness guarantees.
pub fn seed_ids_on_this_thread(seed: Option<u64>) {
    SEEDED.with(|s| *s.borrow_mut() = seed.map(rand::rngs::StdRng::seed_from_u64));
}

fn random_16() -> [u8; 16] {
    SEEDED.with(|s| match s.borrow_mut().as_mut() {
        Some(rng) => rng.random(),
        None => rand::random(),
    })
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
