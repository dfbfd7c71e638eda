//! How numbers and times read in the UI: relative ages, clock times, sizes,
//! dollars. Pure functions of their inputs (the caller passes `now` and the
//! local UTC offset), so they are tested without a clock.

use std::sync::OnceLock;

use core_sync::model::Millis;
use time::{OffsetDateTime, UtcOffset};

static LOCAL_OFFSET: OnceLock<UtcOffset> = OnceLock::new();

/// Reads the local UTC offset. Call once at start-up, before threads start
/// (the platform lookup is refused in multi-threaded processes); UTC if it
/// cannot be read.
pub fn init_local_offset() {
    let offset = UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC);
    let _ = LOCAL_OFFSET.set(offset);
}

/// The local offset read at start-up (UTC before [`init_local_offset`]).
pub fn local_offset() -> UtcOffset {
    LOCAL_OFFSET.get().copied().unwrap_or(UtcOffset::UTC)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn local(ts: Millis, offset: UtcOffset) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ts as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset)
}

/// "14:03" today, "24 Nov 14:03" this year, "24 Nov 2025" before.
pub fn clock(ts: Millis, now: Millis, offset: UtcOffset) -> String {
    let t = local(ts, offset);
    let n = local(now, offset);
    let hm = format!("{:02}:{:02}", t.hour(), t.minute());
    let month = MONTHS[t.month() as usize - 1];
    if t.date() == n.date() {
        hm
    } else if t.year() == n.year() {
        format!("{} {month} {hm}", t.day())
    } else {
        format!("{} {month} {}", t.day(), t.year())
    }
}

/// "just now", "5 min ago", "3 h ago", "yesterday", else a date.
pub fn age(ts: Millis, now: Millis, offset: UtcOffset) -> String {
    let secs = (now - ts).max(0) / 1000;
    match secs {
        0..=44 => "just now".into(),
        45..=3599 => format!("{} min ago", (secs + 30) / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        86_400..=172_799 => "yesterday".into(),
        _ => {
            let t = local(ts, offset);
            let month = MONTHS[t.month() as usize - 1];
            if t.year() == local(now, offset).year() {
                format!("{} {month}", t.day())
            } else {
                format!("{} {month} {}", t.day(), t.year())
            }
        }
    }
}

/// "812 B", "14.2 KB", "3.4 MB" (decimal units, as file managers show).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if v < 10.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

/// Dollars from nano-dollars: "$0.0390" under a dollar (provider calls
/// cost cents), "$12.41" above, "$0" for nothing.
pub fn usd(nano: i64) -> String {
    if nano == 0 {
        return "$0".into();
    }
    let usd = nano as f64 / 1e9;
    if usd.abs() < 1.0 {
        format!("${usd:.4}")
    } else {
        format!("${usd:.2}")
    }
}

/// "1024 × 768", or "unknown" when a dimension is missing.
pub fn dimensions(width: u32, height: u32) -> String {
    if width == 0 || height == 0 {
        "unknown".into()
    } else {
        format!("{width} × {height}")
    }
}

/// The first line of `text`, cut to `max` characters with an ellipsis.
pub fn headline(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    if line.chars().count() <= max {
        line.to_owned()
    } else {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{}…", cut.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Millis = 86_400_000;
    // 2026-11-25 12:00:00 UTC
    const NOW: Millis = 1_795_608_000_000;

    #[test]
    fn clock_shows_time_today_and_dates_otherwise() {
        assert_eq!(clock(NOW, NOW, UtcOffset::UTC), "12:00");
        assert_eq!(clock(NOW - DAY, NOW, UtcOffset::UTC), "24 Nov 12:00");
        assert_eq!(clock(NOW - 400 * DAY, NOW, UtcOffset::UTC), "21 Oct 2025");
        let cet = UtcOffset::from_hms(1, 0, 0).unwrap();
        assert_eq!(clock(NOW, NOW, cet), "13:00");
    }

    #[test]
    fn ages_read_naturally() {
        let utc = UtcOffset::UTC;
        assert_eq!(age(NOW, NOW, utc), "just now");
        assert_eq!(
            age(NOW + 5000, NOW, utc),
            "just now",
            "clock skew is not negative"
        );
        assert_eq!(age(NOW - 5 * 60_000, NOW, utc), "5 min ago");
        assert_eq!(age(NOW - 3 * 3_600_000, NOW, utc), "3 h ago");
        assert_eq!(age(NOW - DAY - 1000, NOW, utc), "yesterday");
        assert_eq!(age(NOW - 10 * DAY, NOW, utc), "15 Nov");
        assert_eq!(age(NOW - 400 * DAY, NOW, utc), "21 Oct 2025");
    }

    #[test]
    fn sizes_money_and_dimensions() {
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(14_200), "14 KB");
        assert_eq!(bytes(3_400_000), "3.4 MB");
        assert_eq!(usd(0), "$0");
        assert_eq!(usd(39_000_000), "$0.0390");
        assert_eq!(usd(12_410_000_000), "$12.41");
        assert_eq!(dimensions(1024, 768), "1024 × 768");
        assert_eq!(dimensions(0, 768), "unknown");
        assert_eq!(headline("a lighthouse\nsecond line", 60), "a lighthouse");
        assert_eq!(headline("abcdefghij", 5), "abcd…");
    }
}
