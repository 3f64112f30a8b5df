use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// The next `n` times of `spec` after `after`, as RFC 3339 UTC strings.
fn check(spec: &str, after: &str, expected: &[&str]) {
    let schedule = Schedule::parse(spec, TimeZone::UTC).unwrap_or_else(|e| panic!("{spec}: {e}"));
    let mut t = ts(after);
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        let next = schedule
            .next_after(t)
            .unwrap_or_else(|| panic!("{spec}: no next after {t}"));
        got.push(next.to_string());
        t = next;
    }
    assert_eq!(got, expected, "schedule {spec:?} after {after}");
}

#[test]
fn next_times() {
    check(
        "* * * * *",
        "2026-01-01T10:00:30Z",
        &["2026-01-01T10:01:00Z", "2026-01-01T10:02:00Z"],
    );
    check(
        "* * * * *",
        "2026-01-01T10:00:00Z",
        &["2026-01-01T10:01:00Z"],
    );
    check(
        "*/15 * * * *",
        "2026-01-01T10:07:00Z",
        &["2026-01-01T10:15:00Z", "2026-01-01T10:30:00Z"],
    );
    check(
        "5 4 * * *",
        "2026-01-01T10:00:00Z",
        &["2026-01-02T04:05:00Z"],
    );
    check(
        "0 22 * * 1-5",
        "2026-01-02T23:00:00Z",
        &["2026-01-05T22:00:00Z", "2026-01-06T22:00:00Z"],
    );
    check(
        "0 0 1 jan,jul *",
        "2026-02-01T00:00:00Z",
        &["2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z"],
    );
    check(
        "0 9 * * MON",
        "2026-01-01T00:00:00Z",
        &["2026-01-05T09:00:00Z"],
    );
    check(
        "10-20/5 1 * * *",
        "2026-01-01T00:00:00Z",
        &[
            "2026-01-01T01:10:00Z",
            "2026-01-01T01:15:00Z",
            "2026-01-01T01:20:00Z",
            "2026-01-02T01:10:00Z",
        ],
    );
    check(
        "30/10 0 * * *",
        "2026-01-01T00:00:00Z",
        &["2026-01-01T00:30:00Z", "2026-01-01T00:40:00Z"],
    );
    check("@hourly", "2026-01-01T10:20:00Z", &["2026-01-01T11:00:00Z"]);
    check("@daily", "2026-01-01T10:20:00Z", &["2026-01-02T00:00:00Z"]);
    check("@weekly", "2026-01-01T10:20:00Z", &["2026-01-04T00:00:00Z"]);
    check(
        "@monthly",
        "2026-01-31T10:20:00Z",
        &["2026-02-01T00:00:00Z"],
    );
    check("@yearly", "2026-01-31T10:20:00Z", &["2027-01-01T00:00:00Z"]);
    check(
        "0 0 29 2 *",
        "2026-01-01T00:00:00Z",
        &["2028-02-29T00:00:00Z"],
    );
    // Both day fields restricted: either matches (13th, or any Friday).
    check(
        "0 0 13 * 5",
        "2026-02-01T00:00:00Z",
        &[
            "2026-02-06T00:00:00Z",
            "2026-02-13T00:00:00Z",
            "2026-02-20T00:00:00Z",
        ],
    );
    // A day field starting with `*` makes both required (Fridays in odd days).
    check(
        "0 0 */2 * 5",
        "2026-02-01T00:00:00Z",
        &["2026-02-13T00:00:00Z"],
    );
    // In a zone: 09:00 Berlin is 08:00 UTC in winter, 07:00 in summer.
    check(
        "CRON_TZ=Europe/Berlin 0 9 * * *",
        "2026-03-28T12:00:00Z",
        &["2026-03-29T07:00:00Z"],
    );
    check(
        "TZ=Europe/Berlin 0 9 * * *",
        "2026-01-01T12:00:00Z",
        &["2026-01-02T08:00:00Z"],
    );
    // 02:30 does not exist on the spring-forward day: it runs at 03:30 local (01:30 UTC).
    check(
        "CRON_TZ=Europe/Berlin 30 2 * * *",
        "2026-03-28T12:00:00Z",
        &["2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"],
    );
}

#[test]
fn bad_schedules_are_rejected() {
    for (spec, message) in [
        ("* * * *", "expected exactly 5 fields, found 4: * * * *"),
        ("60 * * * *", "end of range (60) above maximum (59): 60"),
        ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
        (
            "5-1 * * * *",
            "beginning of range (5) beyond end of range (1): 5-1",
        ),
        ("x * * * *", "failed to parse int from x: invalid syntax"),
        (
            "*/0 * * * *",
            "step of range should be a positive number: */0",
        ),
        ("@fortnightly", "unrecognized descriptor: @fortnightly"),
    ] {
        let err = Schedule::parse(spec, TimeZone::UTC).unwrap_err();
        assert_eq!(err.to_string(), message, "{spec}");
    }
    assert!(matches!(
        Schedule::parse("CRON_TZ=Mars/Olympus * * * * *", TimeZone::UTC),
        Err(ScheduleError::TimeZone(..))
    ));
}

#[test]
fn missed_runs() {
    let every_minute = Schedule::parse("* * * * *", TimeZone::UTC).unwrap();
    let runs = next_runs(
        &every_minute,
        ts("2026-01-01T10:00:00Z"),
        ts("2026-01-01T10:03:30Z"),
    );
    assert_eq!(
        runs,
        Runs {
            most_recent: Some(ts("2026-01-01T10:03:00Z")),
            missed: 3,
            next: Some(ts("2026-01-01T10:04:00Z")),
        }
    );
    let none = next_runs(
        &every_minute,
        ts("2026-01-01T10:00:00Z"),
        ts("2026-01-01T10:00:59Z"),
    );
    assert_eq!(none.most_recent, None);
    assert_eq!(none.missed, 0);
    // A day of minutes: counting stops past 100, the most recent is still found.
    let many = next_runs(
        &every_minute,
        ts("2026-01-01T00:00:00Z"),
        ts("2026-01-02T00:00:10Z"),
    );
    assert_eq!(many.missed, MAX_MISSED + 1);
    assert_eq!(many.most_recent, Some(ts("2026-01-02T00:00:00Z")));
    assert_eq!(many.next, Some(ts("2026-01-02T00:01:00Z")));
    let hourly = Schedule::parse("0 * * * *", TimeZone::UTC).unwrap();
    let old = next_runs(
        &hourly,
        ts("2025-01-01T00:00:00Z"),
        ts("2026-01-01T10:30:00Z"),
    );
    assert_eq!(old.most_recent, Some(ts("2026-01-01T10:00:00Z")));
}
