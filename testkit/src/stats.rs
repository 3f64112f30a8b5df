//! Pure helpers for benchmark reports (bench/gossip, bench/failover): percentiles over
//! measured durations.

use std::time::Duration;

/// The `p`-th percentile (0..=100) of `samples` by nearest rank, or `None` when empty.
pub fn percentile(samples: &[Duration], p: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    // Nearest rank: ceil(p/100 * n), 1-based, clamped into the slice.
    let rank = (p.clamp(0.0, 100.0) / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Seconds with two decimals, or "-" when there is no value.
pub fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_string(), |d| format!("{:.2}", d.as_secs_f64()))
}

#[cfg(test)]
mod tests;
