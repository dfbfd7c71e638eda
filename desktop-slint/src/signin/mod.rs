//! Signing in to a sync server: OAuth 2.0 with PKCE in the system browser
//! ([`oauth`]), tokens kept in the OS keyring or a private file
//! ([`vault`]), and a session that refreshes its access token silently
//! ([`session`]).

pub mod oauth;
pub mod session;
pub mod vault;
