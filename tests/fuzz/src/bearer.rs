//! Bearer tokens as every authenticated route checks them
//! (`auth::Verifier::verify` of the `Authorization` header's value:
//! scheme, JWT header, RS256 signature by `kid`, issuer, audience,
//! `token_use`, times), and a JWKS document as fetched from Cognito
//! (`auth::Jwks::parse`).
//!
//! The verifier trusts the fuzz issuer's key ([`crate::ISSUER_KEY_PEM`]) at
//! the fixed time [`crate::NOW_SECS`]; the seeds hold tokens it minted.

use std::sync::{Arc, OnceLock};

use cloud_lambda::auth::{Clock, Jwks, LocalIssuer, Verifier};

use crate::{AUDIENCE, ISSUER, ISSUER_KEY_PEM, NOW_SECS, runtime};

#[derive(Debug)]
struct Fixed;

impl Clock for Fixed {
    fn now_secs(&self) -> u64 {
        NOW_SECS
    }
}

/// The fuzz issuer (also mints the seeds' tokens).
pub fn issuer() -> LocalIssuer {
    LocalIssuer::from_pkcs8_pem(ISSUER_KEY_PEM, ISSUER, AUDIENCE).expect("the fuzz issuer's key")
}

/// A verifier trusting [`issuer`] at [`NOW_SECS`].
pub fn verifier() -> Verifier {
    issuer().verifier().with_clock(Arc::new(Fixed))
}

pub fn run(data: &[u8]) {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    let verifier = VERIFIER.get_or_init(verifier);
    let text = String::from_utf8_lossy(data);
    let _ = Jwks::parse(&text);
    let claims = runtime().block_on(verifier.verify(Some(&text)));
    if let Ok(claims) = claims {
        // Only the issuer's own tokens pass, each for its user.
        assert!(!claims.sub.is_empty(), "a token without a subject passed");
    }
}
