//! Cron schedules as Kubernetes' CronJob controller reads them (robfig/cron's standard
//! parser): five fields `minute hour day-of-month month day-of-week`, each `*`, `?`,
//! a value, a range `a-b`, a step `*/n`, `a-b/n` or `a/n` (from `a` to the end), or a
//! comma list of those; month and weekday names (`jan`, `mon`); the descriptors
//! `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly`; and a
//! `CRON_TZ=<zone>` or `TZ=<zone>` prefix. When both day fields are restricted a day
//! matches either (cron's OR rule); when one starts with `*` both must match.
//!
//! Times are evaluated in the schedule's zone (`CRON_TZ`, else the CronJob's
//! `spec.timeZone`, else UTC, the controller's zone). A local time that a DST change
//! skips runs at the first instant after the gap; one that repeats runs once.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// Why a schedule was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Wrong number of fields.
    #[error("expected exactly 5 fields, found {0}: {1}")]
    Fields(usize, String),
    /// A field that does not parse or is out of range.
    #[error("{0}")]
    Field(String),
    /// An unknown `@` descriptor.
    #[error("unrecognized descriptor: {0}")]
    Descriptor(String),
    /// An unknown time zone.
    #[error("provided bad location {0}: {1}")]
    TimeZone(String, String),
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether day-of-month or day-of-week started with `*` or `?` (then both must match).
    day_star: bool,
    tz: TimeZone,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

fn number(s: &str, b: &Bounds) -> Result<u32, ScheduleError> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + if b.min == 1 { 1 } else { 0 });
    }
    s.parse::<u32>()
        .map_err(|_| ScheduleError::Field(format!("failed to parse int from {s}: invalid syntax")))
}

/// One field as a bit set; whether it started with `*`/`?`.
fn field(expr: &str, b: &Bounds) -> Result<(u64, bool), ScheduleError> {
    let mut bits = 0u64;
    let mut star = false;
    for part in expr.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step = s.parse::<u32>().map_err(|_| {
                    ScheduleError::Field(format!("failed to parse int from {s}: invalid syntax"))
                })?;
                (r, Some(step))
            }
            None => (part, None),
        };
        let (start, end) = if range == "*" || range == "?" {
            star = true;
            (b.min, b.max)
        } else if let Some((a, z)) = range.split_once('-') {
            (number(a, b)?, number(z, b)?)
        } else {
            let a = number(range, b)?;
            // `a/n` runs from a to the end of the range.
            (a, if step.is_some() { b.max } else { a })
        };
        if start < b.min {
            return Err(ScheduleError::Field(format!(
                "beginning of range ({start}) below minimum ({}): {part}",
                b.min
            )));
        }
        if end > b.max {
            return Err(ScheduleError::Field(format!(
                "end of range ({end}) above maximum ({}): {part}",
                b.max
            )));
        }
        if start > end {
            return Err(ScheduleError::Field(format!(
                "beginning of range ({start}) beyond end of range ({end}): {part}"
            )));
        }
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(ScheduleError::Field(format!(
                "step of range should be a positive number: {part}"
            )));
        }
        let mut v = start;
        while v <= end {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

/// Resolves a zone name (`Europe/Berlin`, `UTC`, `Local` = the controller's zone, UTC).
pub fn time_zone(name: &str) -> Result<TimeZone, ScheduleError> {
    match name {
        "" | "UTC" | "Local" => Ok(TimeZone::UTC),
        _ => TimeZone::get(name).map_err(|e| ScheduleError::TimeZone(name.into(), e.to_string())),
    }
}

impl Schedule {
    /// Parses `spec` in zone `tz` (a `CRON_TZ=`/`TZ=` prefix overrides it).
    pub fn parse(spec: &str, tz: TimeZone) -> Result<Schedule, ScheduleError> {
        let mut spec = spec.trim();
        let mut tz = tz;
        for prefix in ["CRON_TZ=", "TZ="] {
            if let Some(rest) = spec.strip_prefix(prefix) {
                let (zone, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                tz = time_zone(zone)?;
                spec = rest.trim();
            }
        }
        let expanded = if let Some(d) = spec.strip_prefix('@') {
            match d {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => return Err(ScheduleError::Descriptor(spec.to_string())),
            }
        } else {
            spec
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(ScheduleError::Fields(fields.len(), spec.to_string()));
        }
        let (minutes, _) = field(fields[0], &MINUTE)?;
        let (hours, _) = field(fields[1], &HOUR)?;
        let (days, dom_star) = field(fields[2], &DOM)?;
        let (months, _) = field(fields[3], &MONTH)?;
        let (weekdays, dow_star) = field(fields[4], &DOW)?;
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            day_star: dom_star || dow_star,
            tz,
        })
    }

    /// The zone the schedule is evaluated in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// `t` in the schedule's zone as RFC 3339 (`Z` for UTC), as Kubernetes writes the
    /// scheduled-timestamp annotation.
    pub fn rfc3339(&self, t: Timestamp) -> String {
        let zoned = t.to_zoned(self.tz.clone());
        if zoned.offset().seconds() == 0 {
            t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
        } else {
            zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
        }
    }

    fn day_matches(&self, d: Date) -> bool {
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if self.day_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first scheduled time strictly after `after`; None when there is none within
    /// five years (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let local = after.to_zoned(self.tz.clone()).datetime();
        // The next whole minute.
        let mut t = local
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = local.year() + 5;
        while t.year() <= limit {
            if self.months & (1 << t.month()) == 0 {
                t = first_of_next_month(t)?;
                continue;
            }
            if !self.day_matches(t.date()) {
                t = t
                    .date()
                    .tomorrow()
                    .ok()?
                    .to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            let at = self.tz.to_ambiguous_zoned(t).compatible().ok()?.timestamp();
            if at > after {
                return Some(at);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }
}

fn first_of_next_month(t: DateTime) -> Option<DateTime> {
    let first = t.date().first_of_month().checked_add(1.month()).ok()?;
    Some(first.to_datetime(jiff::civil::Time::midnight()))
}

/// The scheduled times a CronJob missed, as Kubernetes computes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runs {
    /// The most recent scheduled time in `(earliest, now]`, if any.
    pub most_recent: Option<Timestamp>,
    /// How many scheduled times fell in `(earliest, now]` (counting stops past
    /// [`MAX_MISSED`] + 1).
    pub missed: usize,
    /// The first scheduled time after `now`.
    pub next: Option<Timestamp>,
}

/// More missed start times than this are reported (event `TooManyMissedTimes`).
pub const MAX_MISSED: usize = 100;

/// The scheduled times after `last` (the last schedule, or the CronJob's creation) up to
/// `now`, and the next one. Counting stops early past [`MAX_MISSED`] and then jumps
/// to the most recent time by walking backwards a minute at a time (bounded).
pub fn next_runs(schedule: &Schedule, last: Timestamp, now: Timestamp) -> Runs {
    let mut missed = 0;
    let mut most_recent = None;
    let mut t = last;
    while let Some(at) = schedule.next_after(t) {
        if at > now {
            return Runs {
                most_recent,
                missed,
                next: Some(at),
            };
        }
        missed += 1;
        most_recent = Some(at);
        t = at;
        if missed > MAX_MISSED {
            break;
        }
    }
    if missed <= MAX_MISSED {
        return Runs {
            most_recent,
            missed,
            next: None,
        };
    }
    // Many missed: look back from now over windows doubling in size until one holds a
    // scheduled time, then walk that window forward to the last one.
    let next = schedule.next_after(now);
    let counted_to = most_recent;
    most_recent = None;
    let mut minutes: i64 = 1;
    while minutes < 20 * 366 * 24 * 60 {
        let Ok(from) = now.checked_sub(jiff::SignedDuration::from_mins(minutes)) else {
            break;
        };
        let mut t = from;
        while let Some(at) = schedule.next_after(t).filter(|at| *at <= now) {
            most_recent = Some(at);
            t = at;
        }
        if most_recent.is_some() {
            break;
        }
        minutes *= 2;
    }
    let most_recent = most_recent.or(counted_to);
    Runs {
        most_recent,
        missed,
        next,
    }
}

#[cfg(test)]
mod tests;
