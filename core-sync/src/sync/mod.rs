//! Sync: the wire protocol shared with the server and the bounds of one
//! request, the client engine (pure decisions), the transport, and the
//! adapter that runs it all against the local store.

pub mod bounds;
pub mod client;
pub mod engine;
pub mod protocol;
pub mod transport;
pub mod warm;
