//! The bodies of Atelier's fuzz targets, one module per target (each
//! `fuzz_targets/<name>.rs` calls `<name>::run`), and what they share.
//!
//! Every target feeds bytes from outside to the code that decodes them
//! where it really runs (the same functions the server, the sync client,
//! the importer call), and checks more than "no panic" where a property
//! is cheap to state: a document that was accepted saves and loads again,
//! a signature made with the secret verifies, the REST API never answers
//! 5xx. Inputs that need several parts (a webhook's headers and body, an
//! export's manifest and files) are split by [`fields`], so seeds stay
//! readable and `make-seeds` can write them.

pub mod backup;
pub mod bearer;
pub mod chunks;
pub mod image;
pub mod rest;
pub mod sync_request;
pub mod webhook;

use std::sync::OnceLock;

/// The separator of [`fields`]: a line holding `--8<--`.
pub const SEPARATOR: &[u8] = b"\n--8<--\n";

/// Splits `data` into at most `n` parts at [`SEPARATOR`]; missing parts
/// are empty.
pub fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    let mut rest = data;
    while out.len() + 1 < n {
        match rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(at) => {
                out.push(&rest[..at]);
                rest = &rest[at + SEPARATOR.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out.resize(n, &[]);
    out
}

/// Joins parts with [`SEPARATOR`] (the seed writer's side of [`fields`]).
pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(SEPARATOR)
}

/// One single-threaded runtime per fuzzing process for the async code
/// (the store, the verifier, the Router).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// A scratch directory for a target's files, on a memory file system when
/// there is one (fsyncs there cost nothing), kept for the process.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let base = std::path::Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_owned()
    } else {
        std::env::temp_dir()
    };
    tempfile::Builder::new()
        .prefix(&format!("atelier-fuzz-{name}-"))
        .tempdir_in(base)
        .expect("a scratch directory")
        .keep()
}

/// The fixed time every target runs at (Unix seconds): tokens and webhook
/// timestamps in the seeds are minted for it.
pub const NOW_SECS: u64 = 1_800_000_000;

/// The test-only RSA key the bearer and REST targets' issuer signs with
/// (the seeds' tokens are signed by it). Not a secret: generated for the
/// fuzz seeds, used nowhere else.
pub const ISSUER_KEY_PEM: &str = include_str!("../seeds/issuer-key.pem");
pub const ISSUER: &str = "atelier-fuzz";
pub const AUDIENCE: &str = "atelier-fuzz-client";

/// The fixed document id the backup target writes documents under.
pub const BACKUP_DOC_ID: &str = "0123456789abcdef0123456789abcdef";
