//! Percentiles of measured durations (nearest rank, as the other benches report them).
//! I/O-free.

use std::time::Duration;

/// The nearest-rank `p`-th percentile (0 < p <= 100) of `sorted` (ascending); `None`
/// when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Median and 99th percentile of `samples` (sorted in place), or zeros when empty.
pub fn median_p99(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort_unstable();
    (
        percentile(samples, 50.0).unwrap_or_default(),
        percentile(samples, 99.0).unwrap_or_default(),
    )
}

/// A duration for a table: microseconds below 10 ms, else milliseconds, else seconds.
pub fn human(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 10.0 {
        format!("{us:.1} µs")
    } else if us < 10_000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000_000.0 {
        format!("{:.0} ms", us / 1000.0)
    } else {
        format!("{:.1} s", us / 1e6)
    }
}

#[cfg(test)]
mod tests;
