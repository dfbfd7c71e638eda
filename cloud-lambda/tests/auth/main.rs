//! Bearer JWT verification and the local issuer (`cloud_lambda::auth`).
//!
//! RSA-2048 key generation is slow in debug builds, so the binary generates
//! exactly two keys, once: the local issuer's (through `load_or_create`, which
//! is itself under test) and an unrelated "attacker" key.

mod claims;
mod expiry;
mod fixtures;
mod jwks;
mod local_issuer;
mod verify;
