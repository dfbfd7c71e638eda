//! The provider clients against the fake providers (`atelier_fixtures::fakes`):
//! every success and error scenario of Gemini, Imagen 4 and Replicate ends as
//! the right result or `ProviderError`, usage prices to the expected
//! nano-dollars, and Replicate predictions run to real output images whose
//! webhooks verify.

mod fixtures;
mod gemini;
mod imagen;
mod replicate;
