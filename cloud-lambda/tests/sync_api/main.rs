//! The sync endpoint, `POST /v1/sync`, end to end through the real Router
//! (every layer: request ids, request decompression, the body limit,
//! response compression, auth), called in-process with
//! `tower::ServiceExt::oneshot`, over a real
//! [`EmbeddedStore`](cloud_lambda::storage::embedded::EmbeddedStore) in a
//! temporary directory and a [`LocalIssuer`](cloud_lambda::auth::LocalIssuer).
//!
//! Every refusal is checked twice: the status and the JSON error body
//! (RFC 9457 problem details with a `code`) the client sees, and the store
//! itself (through the `DocStore` API), which must show that nothing was
//! written.
//!
//! RSA key generation is slow in debug builds, so the binary generates one
//! key, once ([`fixtures::keys`]); every other issuer in here reuses it.
//! Compressed bodies that must be exact (decompression bombs, a corrupt
//! block past the limit) are built by hand ([`encodings::zstd_frame`],
//! [`encodings::gzip`]) so their decompressed size is known without
//! compressing megabytes in a debug build.

mod bodies;
mod changes;
mod devices;
mod encodings;
mod fixtures;
mod http;
mod long_poll;
mod tokens;
