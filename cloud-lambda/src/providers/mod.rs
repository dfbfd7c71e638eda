//! Provider clients: Gemini image models (`generateContent`), Imagen 4
//! (`:predict`) and Replicate predictions, plus verification of Replicate's
//! webhooks. Wire formats are those of `providers.md`; base URLs come from
//! [`ProviderConfig`] so tests point the clients at the fakes in `fixtures/`.
//!
//! Every failure ends as a [`ProviderError`]: [`ProviderError::Transient`]
//! (rate limits, overload, timeouts, broken connections: retry with backoff,
//! honouring `retry_after`) or [`ProviderError::Permanent`] (safety blocks,
//! bad input, bad keys, no credit, failed predictions: retrying cannot help).
//! Both carry a sentence written for the person reading the job's timeline;
//! none of them ever contains a key, a token or image data.
//!
//! - [`gemini`]: `generate_content`, edit or text-to-image.
//! - [`imagen`]: `predict`, text-to-image on Imagen 4.
//! - [`replicate`]: create, poll, cancel predictions; download outputs;
//!   usage for pricing.
//! - [`webhook`]: Standard Webhooks signature verification.
//! - [`replicate_files`], [`gemini_files`]: the providers' Files APIs, for
//!   inputs too large to send inside a request.
//! - [`inputs`]: how an input image reaches the provider (inline, a
//!   presigned URL of our own storage, or an upload), decided in one place.

pub mod gemini;
pub mod gemini_files;
pub mod imagen;
pub mod inputs;
pub mod replicate;
pub mod replicate_files;
pub mod webhook;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Where the providers are and how to authenticate with them.
///
/// `Debug` never shows the keys. Build it with [`ProviderConfig::from_env`],
/// or with `ProviderConfig { gemini_base: .., ..ProviderConfig::default() }`.
#[derive(Clone)]
pub struct ProviderConfig {
    /// Default `https://generativelanguage.googleapis.com`
    /// (env `ATELIER_GEMINI_BASE_URL`).
    pub gemini_base: String,
    /// Env `GEMINI_API_KEY`; also used for Imagen.
    pub gemini_key: Option<String>,
    /// Default `https://api.replicate.com` (env `ATELIER_REPLICATE_BASE_URL`);
    /// the clients add `/v1/...`.
    pub replicate_base: String,
    /// Env `REPLICATE_API_TOKEN`.
    pub replicate_token: Option<String>,
    /// The `whsec_...` secret Replicate signs webhooks with
    /// (env `REPLICATE_WEBHOOK_SECRET`).
    pub replicate_webhook_secret: Option<String>,
    /// Time allowed to open a connection (default 10 s).
    pub connect_timeout: Duration,
    /// Time allowed for a Gemini or Imagen call, which renders images while
    /// the request is open (default 300 s).
    pub generate_timeout: Duration,
    /// Time allowed for a Replicate API call (default 30 s).
    pub api_timeout: Duration,
    /// Time allowed to download one output (default 120 s).
    pub download_timeout: Duration,
    /// Time allowed to upload one input file, or one 8 MiB chunk of it
    /// (default 300 s).
    pub upload_timeout: Duration,
    /// The connection pool, shared by clones and built on first use (with
    /// `connect_timeout` as it is then).
    pub http: HttpClient,
}

pub const DEFAULT_GEMINI_BASE: &str = "https://generativelanguage.googleapis.com";
pub const DEFAULT_REPLICATE_BASE: &str = "https://api.replicate.com";

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            gemini_base: DEFAULT_GEMINI_BASE.to_owned(),
            gemini_key: None,
            replicate_base: DEFAULT_REPLICATE_BASE.to_owned(),
            replicate_token: None,
            replicate_webhook_secret: None,
            connect_timeout: Duration::from_secs(10),
            generate_timeout: Duration::from_secs(300),
            api_timeout: Duration::from_secs(30),
            download_timeout: Duration::from_secs(120),
            upload_timeout: Duration::from_secs(300),
            http: HttpClient::default(),
        }
    }
}

impl ProviderConfig {
    /// Reads `GEMINI_API_KEY`, `REPLICATE_API_TOKEN`,
    /// `REPLICATE_WEBHOOK_SECRET`, `ATELIER_GEMINI_BASE_URL` and
    /// `ATELIER_REPLICATE_BASE_URL`; empty values count as unset.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`ProviderConfig::from_env`] over any source of variables.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let d = ProviderConfig::default();
        ProviderConfig {
            gemini_base: get("ATELIER_GEMINI_BASE_URL").unwrap_or(d.gemini_base),
            gemini_key: get("GEMINI_API_KEY"),
            replicate_base: get("ATELIER_REPLICATE_BASE_URL").unwrap_or(d.replicate_base),
            replicate_token: get("REPLICATE_API_TOKEN"),
            replicate_webhook_secret: get("REPLICATE_WEBHOOK_SECRET"),
            ..ProviderConfig::default()
        }
    }

    /// The shared HTTP client, built on first use.
    pub(crate) fn client(&self) -> Result<reqwest::Client, ProviderError> {
        if let Some(c) = self.http.0.get() {
            return Ok(c.clone());
        }
        // Never follow a redirect away from Google: `x-goog-api-key` is not
        // a header reqwest strips on a cross-host redirect.
        let gemini_host = reqwest::Url::parse(&self.gemini_base)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            let from_google = attempt
                .previous()
                .first()
                .is_some_and(|u| u.host_str().map(str::to_owned) == gemini_host);
            if from_google || attempt.previous().len() >= 5 {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .redirect(policy)
            .user_agent(concat!("atelier-cloud/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| {
                ProviderError::permanent(
                    codes::CONFIG,
                    "The HTTP client for the providers could not be set up.",
                )
            })?;
        Ok(self.http.0.get_or_init(|| client).clone())
    }

    /// Removes the configured secrets from text a provider sent back, in
    /// case one echoes them.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in [
            &self.gemini_key,
            &self.replicate_token,
            &self.replicate_webhook_secret,
        ]
        .into_iter()
        .flatten()
        {
            if secret.len() >= 4 {
                out = out.replace(secret.as_str(), "[redacted]");
            }
        }
        out
    }
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "[redacted]");
        f.debug_struct("ProviderConfig")
            .field("gemini_base", &self.gemini_base)
            .field("gemini_key", &redact(&self.gemini_key))
            .field("replicate_base", &self.replicate_base)
            .field("replicate_token", &redact(&self.replicate_token))
            .field(
                "replicate_webhook_secret",
                &redact(&self.replicate_webhook_secret),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("generate_timeout", &self.generate_timeout)
            .field("api_timeout", &self.api_timeout)
            .field("download_timeout", &self.download_timeout)
            .field("upload_timeout", &self.upload_timeout)
            .finish_non_exhaustive()
    }
}

/// A lazily built `reqwest::Client`, shared by clones of a
/// [`ProviderConfig`]. A fresh one (the default) builds its own pool.
#[derive(Clone, Default)]
pub struct HttpClient(Arc<OnceLock<reqwest::Client>>);

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HttpClient")
    }
}

/// The `code` of a [`ProviderError::Permanent`].
pub mod codes {
    /// The provider refused the prompt or withheld the image (safety,
    /// prohibited content, recitation).
    pub const SAFETY_BLOCK: &str = "safety_block";
    /// The request was refused as malformed: bad parameters, bad image, bad
    /// version.
    pub const INVALID_INPUT: &str = "invalid_input";
    /// The key or token is invalid, or not allowed to do this.
    pub const AUTH: &str = "auth";
    /// Replicate: the account is out of credit.
    pub const NO_CREDIT: &str = "no_credit";
    /// The model (or prediction) does not exist or is no longer served.
    pub const NOT_FOUND: &str = "not_found";
    /// The provider answered without an image.
    pub const NO_IMAGE: &str = "no_image";
    /// A Replicate prediction failed.
    pub const PREDICTION_FAILED: &str = "prediction_failed";
    /// A Replicate prediction was canceled or aborted.
    pub const CANCELED: &str = "canceled";
    /// Replicate already deleted the prediction's output.
    pub const OUTPUT_EXPIRED: &str = "output_expired";
    /// No key or token is configured for the provider.
    pub const MISSING_KEY: &str = "missing_key";
    /// The provider answered something we cannot read.
    pub const BAD_RESPONSE: &str = "bad_response";
    /// The provider refused the request for another reason.
    pub const REJECTED: &str = "rejected";
    /// Our own configuration is unusable (e.g. a base URL that is no URL).
    pub const CONFIG: &str = "config";
}

/// Why a provider call did not produce a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// Worth retrying with backoff; wait at least `retry_after` if the
    /// provider said how long.
    #[error("{reason}")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help. `code` is one of [`codes`]; `message` is what a
    /// person reads in the timeline.
    #[error("{message}")]
    Permanent { code: &'static str, message: String },
}

impl ProviderError {
    pub(crate) fn permanent(code: &'static str, message: impl Into<String>) -> Self {
        ProviderError::Permanent {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn transient(reason: impl Into<String>, retry_after: Option<Duration>) -> Self {
        ProviderError::Transient {
            reason: reason.into(),
            retry_after,
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, ProviderError::Transient { .. })
    }

    /// The permanent error's code, or `"transient"`.
    pub fn code(&self) -> &'static str {
        match self {
            ProviderError::Transient { .. } => "transient",
            ProviderError::Permanent { code, .. } => code,
        }
    }

    /// The sentence for the timeline.
    pub fn message(&self) -> &str {
        match self {
            ProviderError::Transient { reason, .. } => reason,
            ProviderError::Permanent { message, .. } => message,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Transient { retry_after, .. } => *retry_after,
            ProviderError::Permanent { .. } => None,
        }
    }
}

/// A failure to talk to `service` at all (no HTTP status).
pub(crate) fn transport_error(
    service: &str,
    e: &reqwest::Error,
    timeout: Duration,
) -> ProviderError {
    if e.is_timeout() {
        ProviderError::transient(
            format!(
                "{service} did not answer within {}.",
                human_duration(timeout)
            ),
            None,
        )
    } else if e.is_builder() {
        ProviderError::permanent(
            codes::CONFIG,
            format!("The request to {service} could not be built; check its base URL and key."),
        )
    } else if e.is_connect() {
        ProviderError::transient(format!("Could not connect to {service}."), None)
    } else {
        ProviderError::transient(
            format!("The connection to {service} broke off before its answer arrived."),
            None,
        )
    }
}

/// An answer that is not the JSON we expect.
pub(crate) fn bad_response(service: &str) -> ProviderError {
    ProviderError::permanent(
        codes::BAD_RESPONSE,
        format!("{service} sent an answer that could not be read."),
    )
}

/// `Retry-After`: delay-seconds (fractions tolerated) or an HTTP-date.
pub(crate) fn retry_after_header(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = parse_http_date(v)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_http_date(s: &str) -> Option<SystemTime> {
    let mut it = s.split_whitespace();
    let (_weekday, day, month, year, clock, zone) = (
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
    );
    if zone != "GMT" || it.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as u8 + 1;
    let month = time::Month::try_from(month).ok()?;
    let date = time::Date::from_calendar_date(year.parse().ok()?, month, day.parse().ok()?).ok()?;
    let mut hms = clock.split(':').map(|p| p.parse::<u8>().ok());
    let t = time::Time::from_hms(hms.next()??, hms.next()??, hms.next()??).ok()?;
    let unix = time::PrimitiveDateTime::new(date, t)
        .assume_utc()
        .unix_timestamp();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).ok()?))
}

/// An RFC 3339 time (`2024-06-29T10:16:04.062Z`) in unix milliseconds.
pub(crate) fn rfc3339_millis(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// A protobuf `Duration` in JSON: `"41s"`, `"0.5s"`.
pub(crate) fn parse_proto_duration(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// The delay in a sentence like "…Please retry in 49.1s." or "Expected
/// available in 1 second.": the first number after `marker`, with its unit.
pub(crate) fn delay_after(text: &str, marker: &str) -> Option<Duration> {
    let lower = text.to_ascii_lowercase();
    let rest = &lower[lower.find(marker)? + marker.len()..];
    let rest = rest.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let n: f64 = rest[..end].trim_end_matches('.').parse().ok()?;
    let unit = rest[end..].trim_start();
    let secs = if unit.starts_with("ms") || unit.starts_with("millisecond") {
        n / 1000.0
    } else if unit.starts_with("min") || (unit.starts_with('m') && !unit.starts_with("ms")) {
        n * 60.0
    } else if unit.starts_with('h') {
        n * 3600.0
    } else {
        n
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// "41 s", "49.1 s", "2 min".
pub(crate) fn human_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 120.0 && d.as_secs().is_multiple_of(60) {
        format!("{} min", d.as_secs() / 60)
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{s:.1} s")
    }
}

/// Provider text fit for a sentence: one line, at most `max` characters,
/// ending with punctuation. Words longer than 64 characters (base64 echoed
/// back, long tokens) are cut to their first 16.
pub(crate) fn sentence(text: &str, max: usize) -> String {
    let one_line = text
        .split_whitespace()
        .map(|w| {
            if w.chars().count() > 64 {
                w.chars().take(16).chain(['…']).collect()
            } else {
                w.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut out: String = one_line.chars().take(max).collect();
    if out.chars().count() < one_line.chars().count() {
        out.push('…');
    } else if !out.ends_with(['.', '!', '?', '…']) && !out.is_empty() {
        out.push('.');
    }
    out
}

/// The image type from its first bytes, for answers that do not say.
pub(crate) fn sniff_mime(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        "image/webp"
    } else {
        "application/octet-stream"
    }
}

/// Base64 as Google sends it (standard alphabet; URL-safe tolerated).
pub(crate) fn decode_base64(data: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    STANDARD
        .decode(data.trim())
        .or_else(|_| URL_SAFE.decode(data.trim()))
        .ok()
}

pub(crate) fn trim_base(base: &str) -> &str {
    base.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn debug_never_shows_secrets() {
        let cfg = ProviderConfig {
            gemini_key: Some("AIzaSECRET".into()),
            replicate_token: Some("r8_SECRET".into()),
            replicate_webhook_secret: Some("whsec_SECRET".into()),
            ..ProviderConfig::default()
        };
        let shown = format!("{cfg:?} {cfg:#?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("[redacted]"));
        assert!(shown.contains(DEFAULT_GEMINI_BASE));
        assert_eq!(
            cfg.scrub("key AIzaSECRET and r8_SECRET"),
            "key [redacted] and [redacted]"
        );
    }

    #[test]
    fn config_comes_from_the_environment_with_defaults() {
        let env = |name: &str| match name {
            "GEMINI_API_KEY" => Some("k1".to_owned()),
            "REPLICATE_API_TOKEN" => Some("  ".to_owned()),
            "ATELIER_REPLICATE_BASE_URL" => Some("http://127.0.0.1:9/".to_owned()),
            _ => None,
        };
        let cfg = ProviderConfig::from_lookup(env);
        assert_eq!(cfg.gemini_key.as_deref(), Some("k1"));
        assert_eq!(cfg.replicate_token, None, "blank counts as unset");
        assert_eq!(cfg.gemini_base, DEFAULT_GEMINI_BASE);
        assert_eq!(cfg.replicate_base, "http://127.0.0.1:9/");
        assert_eq!(trim_base(&cfg.replicate_base), "http://127.0.0.1:9");
        assert_eq!(cfg.generate_timeout, Duration::from_secs(300));
    }

    #[test]
    fn retry_delays_are_read_in_every_form() {
        let mut h = HeaderMap::new();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(retry_after_header(&h, now), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after_header(&h, now), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(
            retry_after_header(&h, now - Duration::from_secs(30)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after_header(&h, now + Duration::from_secs(30)),
            Some(Duration::ZERO)
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after_header(&h, now), None);

        assert_eq!(parse_proto_duration("41s"), Some(Duration::from_secs(41)));
        assert_eq!(
            parse_proto_duration("0.5s"),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_proto_duration("41"), None);

        let msg = "You exceeded your current quota, please check your plan and billing details. Please retry in 49.1s.";
        assert_eq!(
            delay_after(msg, "retry in"),
            Some(Duration::from_secs_f64(49.1))
        );
        assert_eq!(
            delay_after("Please retry in 250ms.", "retry in"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            delay_after("Please retry in 2m.", "retry in"),
            Some(Duration::from_secs(120))
        );
        let throttled = "Request was throttled. Expected available in 1 second.";
        assert_eq!(
            delay_after(throttled, "available in"),
            Some(Duration::from_secs(1))
        );
        assert_eq!(delay_after("no delay here", "retry in"), None);
    }

    #[test]
    fn helpers_make_readable_sentences() {
        assert_eq!(human_duration(Duration::from_secs(41)), "41 s");
        assert_eq!(human_duration(Duration::from_secs_f64(49.1)), "49.1 s");
        assert_eq!(human_duration(Duration::from_secs(300)), "5 min");
        assert_eq!(
            sentence("  line one\nline two  ", 100),
            "line one line two."
        );
        assert_eq!(sentence("Done!", 100), "Done!");
        assert_eq!(sentence("abcdef", 3), "abc…");
        let echoed = format!("Bad data {} here", "QUJD".repeat(40));
        assert_eq!(sentence(&echoed, 300), "Bad data QUJDQUJDQUJDQUJD… here.");
        assert_eq!(sniff_mime(b"\x89PNG\r\n\x1a\nrest"), "image/png");
        assert_eq!(sniff_mime(&[0xFF, 0xD8, 0xFF, 0xE0]), "image/jpeg");
        assert_eq!(decode_base64("aGk="), Some(b"hi".to_vec()));
        assert_eq!(decode_base64("not base64!"), None);
    }

    #[test]
    fn errors_expose_code_message_and_delay() {
        let t = ProviderError::transient("Gemini is overloaded.", Some(Duration::from_secs(3)));
        assert!(t.is_transient());
        assert_eq!(
            (t.code(), t.message(), t.retry_after()),
            (
                "transient",
                "Gemini is overloaded.",
                Some(Duration::from_secs(3))
            )
        );
        let p = ProviderError::permanent(codes::AUTH, "The Gemini API key is invalid.");
        assert_eq!(
            (p.code(), p.to_string(), p.retry_after()),
            ("auth", "The Gemini API key is invalid.".to_owned(), None)
        );
    }
}
