//! Sync: the wire protocol shared with the server, and (later) the client
//! engine.

pub mod protocol;
