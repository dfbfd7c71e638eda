//! Sync: the wire protocol shared with the server, the client engine (pure
//! decisions) and its HTTP + SQLite adapter.

pub mod client;
pub mod engine;
pub mod protocol;
