//! Kubernetes' human-readable durations (`apimachinery/pkg/util/duration.HumanDuration`),
//! the AGE and DURATION cells kubectl users read: two or three significant figures, more
//! precision for young objects than for old ones.

use std::time::Duration;

use jiff::Timestamp;

const NANOS_PER_SECOND: i128 = 1_000_000_000;
const SECONDS_PER_MINUTE: i128 = 60;
const SECONDS_PER_HOUR: i128 = 60 * SECONDS_PER_MINUTE;
const HOURS_PER_DAY: i128 = 24;
const DAYS_PER_YEAR: i128 = 365;

/// Formats a duration the way `kubectl get` prints ages: `45s` and `119s` below two
/// minutes, `5m10s` below ten, `175m` below three hours, `7h30m` below eight, `36h` below
/// two days, `5d3h` below eight days, `300d` below two years, `3y40d` below eight years,
/// then whole years.
pub fn human_duration(d: Duration) -> String {
    human_duration_nanos(i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

/// The time from `from` to `to`. A `to` slightly before `from` (less than two seconds, clock
/// skew between machines) reads `0s`; further back reads `<invalid>`, as in Kubernetes.
pub(super) fn human_duration_between(from: Timestamp, to: Timestamp) -> String {
    human_duration_nanos(to.as_nanosecond() - from.as_nanosecond())
}

/// `HumanDuration` over a signed nanosecond count. Every division truncates toward zero,
/// as Go's integer conversions do.
fn human_duration_nanos(nanos: i128) -> String {
    let seconds = nanos / NANOS_PER_SECOND;
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 2 * SECONDS_PER_MINUTE {
        return format!("{seconds}s");
    }
    let minutes = seconds / SECONDS_PER_MINUTE;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % SECONDS_PER_MINUTE, "s");
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = seconds / SECONDS_PER_HOUR;
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 2 * HOURS_PER_DAY {
        return format!("{hours}h");
    }
    let days = hours / HOURS_PER_DAY;
    if hours < 8 * HOURS_PER_DAY {
        return with_remainder(days, "d", hours % HOURS_PER_DAY, "h");
    }
    if days < 2 * DAYS_PER_YEAR {
        return format!("{days}d");
    }
    let years = days / DAYS_PER_YEAR;
    if days < 8 * DAYS_PER_YEAR {
        return with_remainder(years, "y", days % DAYS_PER_YEAR, "d");
    }
    format!("{years}y")
}

/// `5m10s`, or just `5m` when the smaller unit is zero.
fn with_remainder(major: i128, major_unit: &str, minor: i128, minor_unit: &str) -> String {
    if minor == 0 {
        format!("{major}{major_unit}")
    } else {
        format!("{major}{major_unit}{minor}{minor_unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(seconds: i128, expected: &str) {
        assert_eq!(
            human_duration_nanos(seconds * NANOS_PER_SECOND),
            expected,
            "{seconds}s"
        );
    }

    #[test]
    fn follows_kubernetes_thresholds() {
        let minute = 60;
        let hour = 60 * minute;
        let day = 24 * hour;
        let year = 365 * day;
        for (seconds, expected) in [
            (0, "0s"),
            (1, "1s"),
            (59, "59s"),
            (60, "60s"),
            (119, "119s"),
            (2 * minute, "2m"),
            (2 * minute + 1, "2m1s"),
            (5 * minute + 10, "5m10s"),
            (9 * minute + 59, "9m59s"),
            (10 * minute, "10m"),
            (10 * minute + 59, "10m"),
            (175 * minute, "175m"),
            (3 * hour - 1, "179m"),
            (3 * hour, "3h"),
            (3 * hour + minute, "3h1m"),
            (7 * hour + 30 * minute, "7h30m"),
            (8 * hour - 1, "7h59m"),
            (8 * hour, "8h"),
            (36 * hour, "36h"),
            (48 * hour - 1, "47h"),
            (2 * day, "2d"),
            (2 * day + hour, "2d1h"),
            (8 * day - 1, "7d23h"),
            (8 * day, "8d"),
            (300 * day, "300d"),
            (2 * year - 1, "729d"),
            (2 * year, "2y"),
            (3 * year + 40 * day, "3y40d"),
            (8 * year - 1, "7y364d"),
            (8 * year, "8y"),
            (20 * year + 100 * day, "20y"),
        ] {
            check(seconds, expected);
        }
    }

    #[test]
    fn tolerates_small_clock_skew() {
        check(-1, "0s");
        assert_eq!(human_duration_nanos(-1_999_999_999), "0s");
        check(-2, "<invalid>");
        check(-3600, "<invalid>");
    }

    #[test]
    fn public_entry_point_takes_std_duration() {
        assert_eq!(human_duration(Duration::from_secs(310)), "5m10s");
        assert_eq!(human_duration(Duration::from_millis(1_999)), "1s");
        assert_eq!(
            human_duration(Duration::MAX),
            format!("{}y", u64::MAX / 31_536_000)
        );
    }
}
