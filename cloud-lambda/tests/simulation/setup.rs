//! The set-up every run shares: the test user and its token issuer, the
//! environment overrides (`SIM_SEED`, `SIM_STEPS`, `SIM_TRACE`), the seeded
//! RNG streams, and [`SimConfig`], what one run is asked to do.

use std::sync::OnceLock;

use cloud_lambda::auth::LocalIssuer;
use rand08::SeedableRng;
use rand08::rngs::StdRng;
use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};

pub(crate) const USER: &str = "sim-user";
const ISSUER: &str = "atelier-sim";
const AUDIENCE: &str = "atelier-sim-desktop";
/// The simulated clock starts here and advances one second per step.
pub(crate) const EPOCH_MILLIS: i64 = 1_700_000_000_000;

/// One RSA key per test binary: generating it is the slowest thing here.
pub(crate) fn issuer() -> &'static LocalIssuer {
    static ISSUER_KEY: OnceLock<LocalIssuer> = OnceLock::new();
    ISSUER_KEY.get_or_init(|| {
        let key = rsa::RsaPrivateKey::new(&mut rand08::rngs::OsRng, LocalIssuer::KEY_BITS)
            .expect("RSA key generation");
        let pem = key.to_pkcs8_pem(LineEnding::LF).expect("PEM encoding");
        LocalIssuer::from_pkcs8_pem(&pem, ISSUER, AUDIENCE).expect("issuer")
    })
}

pub(crate) fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={v:?} is not a number"),
    }
}

pub(crate) fn trace_enabled() -> bool {
    std::env::var_os("SIM_TRACE").is_some_and(|v| v != "0")
}

/// The RNG of one part of the simulation, derived from the test seed.
pub(crate) fn rng_for(seed: u64, stream: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct SimConfig {
    pub(crate) seed: u64,
    pub(crate) devices: usize,
    pub(crate) steps: u64,
    /// Most documents a device pushes per request (small values page pushes).
    pub(crate) max_push_docs: usize,
    /// Some steps sync every device at once (interleaved at the server, in
    /// an order the seed decides: see `support/gate.rs`).
    pub(crate) concurrent: bool,
    /// Clean server restarts sometimes save a copy of the server's
    /// database, and later ones sometimes put it back: the server loses its
    /// latest commits (power loss under `synchronous=NORMAL`, a restored
    /// backup).
    pub(crate) rollback: bool,
}

impl SimConfig {
    /// `SIM_SEED` and `SIM_STEPS` override the test's own values.
    pub(crate) fn new(seed: u64, devices: usize, steps: u64, max_push_docs: usize) -> Self {
        SimConfig {
            seed: env_u64("SIM_SEED").unwrap_or(seed),
            devices,
            steps: env_u64("SIM_STEPS").unwrap_or(steps),
            max_push_docs,
            concurrent: false,
            rollback: false,
        }
    }
}
