//! Signing in to a server that takes Cognito access tokens, and keeping
//! the token fresh: the transport side of sync, not the engine (which
//! stays free of IO and never sees a token's lifetime).
//!
//! - [`cognito`]: the Cognito identity provider's `InitiateAuth` API
//!   (`USER_PASSWORD_AUTH` to sign in, `REFRESH_TOKEN_AUTH` to refresh),
//!   with Cognito's errors as [`cognito::CognitoError`].
//! - [`tokens`]: what a sign-in leaves ([`tokens::StoredTokens`]) and the
//!   file it is kept in, readable by the user only ([`tokens::TokenFile`],
//!   0600).
//! - [`session`]: one place for the live access token: refreshed a minute
//!   before it expires and once more when the server still answers 401
//!   ([`session::Session`]), as a sync [`crate::sync::client::Transport`]
//!   ([`session::RefreshingTransport`]). Any refresher plugs in
//!   ([`session::Refresher`]): Cognito's `REFRESH_TOKEN_AUTH` here, an
//!   OAuth token endpoint elsewhere.

pub mod cognito;
pub mod session;
pub mod tokens;
