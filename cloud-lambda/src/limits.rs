//! What a user may ask of the server, from configuration (flags and
//! environment of `atelier-cloud serve`):
//!
//! - [`ApiLimits`]: the per-user request rate (GCRA via `governor`, keyed
//!   by the authenticated user, checked in `AppState::user` so every
//!   authenticated route counts; over it, 429 with `Retry-After`), the
//!   long polls a user may have held at once ([`LongPolls`], per process:
//!   over it, 429 at once), and the bounds input validation applies (image
//!   bytes and pixels, prompt and title length). What one sync request may
//!   carry is the protocol's (`core_sync::sync::bounds`), checked in
//!   `crate::sync`.
//! - [`SpendLimits`]: provider jobs per user per hour and a daily spend
//!   cap per user (UTC day), checked by [`admit`] where an operation is
//!   created (`Jobs::start`), so a device's push, a REST call and a retry
//!   all meet the same check. A refused job ends `failed` with the reason.
//!
//! The spend cap compares what was already spent (cost events recorded by
//! finished jobs) with the cap, so the job that crosses it still runs; jobs
//! still running are not counted in advance.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::storage::DocStore;
use crate::storage::jobs::JobStore;
use crate::storage::projection::CostRange;

/// Limits on requests and their contents.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Requests per minute per user; `None` turns rate limiting off (the
    /// desktop's in-process server).
    pub requests_per_minute: Option<NonZeroU32>,
    /// Requests a user may make at once before the rate applies.
    pub request_burst: NonZeroU32,
    /// Largest image accepted, in bytes.
    pub max_image_bytes: usize,
    /// Most pixels an image's header may claim (checked before decoding).
    pub max_image_pixels: u64,
    /// Longest prompt or note, in characters.
    pub max_prompt_chars: usize,
    /// Longest title, in characters.
    pub max_title_chars: usize,
    /// Longest a long poll is held, in milliseconds (a request asking for
    /// more is held this long). On Lambda every held second is billed.
    pub long_poll_max_ms: u64,
    /// Long polls one user may have held at once (a device holds one).
    pub long_polls_per_user: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            requests_per_minute: None,
            request_burst: NonZeroU32::new(120).expect("non-zero"),
            max_image_bytes: core_sync::blob::MAX_BLOB_BYTES as usize,
            max_image_pixels: core_sync::image_header::MAX_PIXELS,
            max_prompt_chars: 4_000,
            max_title_chars: 200,
            long_poll_max_ms: core_sync::sync::protocol::MAX_WAIT_MS,
            long_polls_per_user: 8,
        }
    }
}

/// [`ApiConfig`] with its rate limiter and the long polls held.
pub struct ApiLimits {
    pub config: ApiConfig,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    checks: AtomicU64,
    pub long_polls: LongPolls,
}

impl std::fmt::Debug for ApiLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiLimits")
            .field("config", &self.config)
            .finish()
    }
}

impl ApiLimits {
    pub fn new(config: ApiConfig) -> ApiLimits {
        let limiter = config.requests_per_minute.map(|rpm| {
            DefaultKeyedRateLimiter::keyed(Quota::per_minute(rpm).allow_burst(config.request_burst))
        });
        ApiLimits {
            long_polls: LongPolls::new(config.long_polls_per_user),
            config,
            limiter,
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one request of `user`; `Err(wait)` when over the rate.
    pub fn check(&self, user: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        // Forget users idle long enough to be back at a full burst, now
        // and then, so the map stays as small as the set of active users.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter
            .check_key(&user.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits::new(ApiConfig::default())
    }
}

/// The long polls each user has held in this process, up to a bound: a
/// held poll costs a task and a connection (on Lambda, a billed second
/// per second), and one user's devices need one each.
#[derive(Debug)]
pub struct LongPolls {
    max: usize,
    held: Mutex<HashMap<String, usize>>,
}

/// One held long poll; dropping it lets it go.
#[derive(Debug)]
pub struct HeldPoll<'a> {
    polls: &'a LongPolls,
    user: String,
}

impl LongPolls {
    pub fn new(max: usize) -> LongPolls {
        LongPolls {
            max,
            held: Mutex::default(),
        }
    }

    /// The most one user may hold at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Holds one more poll of `user`; `None` if they hold the most already.
    pub fn hold(&self, user: &str) -> Option<HeldPoll<'_>> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(user.to_owned()).or_default();
        if *n >= self.max {
            if *n == 0 {
                held.remove(user);
            }
            return None;
        }
        *n += 1;
        Some(HeldPoll {
            polls: self,
            user: user.to_owned(),
        })
    }

    /// Polls `user` holds now.
    pub fn held(&self, user: &str) -> usize {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(user).copied().unwrap_or(0)
    }
}

impl Drop for HeldPoll<'_> {
    fn drop(&mut self) {
        let mut held = self.polls.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.user);
            }
        }
    }
}

/// Limits on what costs money.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendLimits {
    /// Provider jobs a user may start per rolling hour; `None`: no limit.
    pub jobs_per_hour: Option<u32>,
    /// What a user may spend per UTC day, in nano-dollars; `None`: no cap.
    pub daily_cap_nano_usd: Option<i64>,
}

impl Default for SpendLimits {
    fn default() -> Self {
        SpendLimits {
            jobs_per_hour: Some(120),
            daily_cap_nano_usd: Some(25_000_000_000),
        }
    }
}

/// Why a job was not started: the code and sentence its message shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

const HOUR_MS: i64 = 3_600_000;

/// Whether `user` may start one more provider job at `now` (milliseconds).
/// Storage errors admit the job (logged): a failing projection must not
/// stop work the user asked for.
pub async fn admit(
    limits: &SpendLimits,
    ops: &dyn JobStore,
    docs: &dyn DocStore,
    user: &str,
    now: i64,
) -> Result<(), Refusal> {
    if let Some(max) = limits.jobs_per_hour {
        match ops.count_started_since(user, now - HOUR_MS).await {
            Ok(n) if n >= u64::from(max) => {
                return Err(Refusal {
                    code: "job_limit",
                    message: format!(
                        "You have started {n} provider jobs in the past hour, the most this \
                         server allows ({max} an hour). Retry this request later."
                    ),
                });
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot count recent jobs; admitting"),
        }
    }
    if let Some(cap) = limits.daily_cap_nano_usd {
        let day_start = now - now.rem_euclid(crate::storage::projection::DAY_MS);
        let range = CostRange {
            from: Some(day_start),
            to: None,
            models: Vec::new(),
        };
        match docs.projections().cost_groups(user, &range).await {
            Ok(groups) => {
                let spent: i128 = groups.iter().map(|g| g.nano_usd).sum();
                if spent >= i128::from(cap) {
                    return Err(Refusal {
                        code: "spend_cap",
                        message: format!(
                            "Today's provider spend (${}) has reached the daily cap of ${}. \
                             Jobs start again at 00:00 UTC.",
                            core_sync::costs::usd(i64::try_from(spent).unwrap_or(i64::MAX)),
                            core_sync::costs::usd(cap)
                        ),
                    });
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read today's spend; admitting"),
        }
    }
    Ok(())
}

/// Parses a dollar amount (`25`, `0.50`, `12.345678901`) into nano-dollars,
/// exactly: for flags such as `--daily-spend-cap-usd`.
pub fn parse_usd(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not an amount of dollars such as 25 or 12.50");
    let (whole, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let frac: i64 = format!("{frac:0<9}").parse().map_err(|_| bad())?;
    whole
        .checked_mul(1_000_000_000)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)
}

/// A positive count, or `off` (`None`), as flags and variables give limits.
pub fn parse_count_or_off(s: &str) -> Result<Option<u32>, String> {
    if s == "off" {
        return Ok(None);
    }
    match s.parse::<u32>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(format!(
            "{s:?} is neither a positive whole number nor `off`"
        )),
    }
}

/// An amount of dollars in nano-dollars ([`parse_usd`]), or `off` (`None`).
pub fn parse_usd_or_off(s: &str) -> Result<Option<i64>, String> {
    if s == "off" {
        Ok(None)
    } else {
        parse_usd(s).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_flags_parse_exactly() {
        for (text, nano) in [
            ("25", 25_000_000_000),
            ("0.5", 500_000_000),
            ("12.345678901", 12_345_678_901),
            ("0", 0),
        ] {
            assert_eq!(parse_usd(text), Ok(nano), "{text}");
        }
        for bad in ["", "-1", "1.2345678901", "1e3", "$5", "abc"] {
            assert!(parse_usd(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_rate_limit_is_per_user_and_says_when_to_retry() {
        let limits = ApiLimits::new(ApiConfig {
            requests_per_minute: NonZeroU32::new(1),
            request_burst: NonZeroU32::new(2).unwrap(),
            ..ApiConfig::default()
        });
        assert!(limits.check("a").is_ok());
        assert!(limits.check("a").is_ok());
        let wait = limits.check("a").unwrap_err();
        assert!(
            wait > Duration::from_secs(1) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        assert!(
            limits.check("b").is_ok(),
            "another user has their own budget"
        );
        assert!(ApiLimits::default().check("a").is_ok());
    }

    #[test]
    fn long_polls_are_bounded_per_user_and_let_go_when_dropped() {
        let polls = LongPolls::new(2);
        let a1 = polls.hold("a").unwrap();
        let a2 = polls.hold("a").unwrap();
        assert!(polls.hold("a").is_none(), "a third is refused");
        let b = polls.hold("b").expect("another user has their own");
        assert_eq!((polls.held("a"), polls.held("b")), (2, 1));
        drop(a1);
        let a3 = polls.hold("a").expect("room again once one ends");
        drop((a2, a3, b));
        assert_eq!((polls.held("a"), polls.held("b")), (0, 0));
        assert!(
            polls.held.lock().unwrap().is_empty(),
            "no one is remembered"
        );
        assert!(LongPolls::new(0).hold("a").is_none());
    }
}
