//! The weighted slot table of one service: which backend each slot names. The BPF
//! program picks a slot uniformly at random, so a backend's share of new connections is
//! its share of the slots. I/O-free, so the layout is tested on its own.

/// The most slots one service has; the C program refuses larger counts.
pub const MAX_SLOTS: usize = 1024;

/// Lays out `weights` (one per backend, in order) over at most `max_slots` slots and
/// returns, per slot, the index of its backend. Weights are reduced by their greatest
/// common divisor (90/10 takes 10 slots: nine and one); when they still need more than
/// `max_slots`, each backend gets its share rounded by largest remainder, at least one
/// slot while slots remain. Zero-weight backends get no slot; no positive weight gives
/// an empty table (the service refuses connections).
pub fn layout(weights: &[u32], max_slots: usize) -> Vec<usize> {
    let live: Vec<(usize, u64)> = weights
        .iter()
        .enumerate()
        .filter(|(_, w)| **w > 0)
        .map(|(i, w)| (i, u64::from(*w)))
        .take(max_slots)
        .collect();
    if live.is_empty() || max_slots == 0 {
        return Vec::new();
    }
    let g = live.iter().fold(0, |g, (_, w)| gcd(g, *w));
    let reduced: Vec<u64> = live.iter().map(|(_, w)| w / g).collect();
    let total: u64 = reduced.iter().sum();
    let max = max_slots as u64;
    let counts: Vec<u64> = if total <= max {
        reduced
    } else {
        apportion(&reduced, total, max)
    };
    live.iter()
        .zip(counts)
        .flat_map(|((i, _), n)| std::iter::repeat_n(*i, n as usize))
        .collect()
}

/// Splits `max` slots in proportion to `weights` (summing to `total` > `max`, with at
/// most `max` entries): floors first, at least one each, then the slots left over to the
/// largest remainders (ties to the earlier backend), then any excess taken back from the
/// largest counts.
fn apportion(weights: &[u64], total: u64, max: u64) -> Vec<u64> {
    let mut counts: Vec<u64> = weights.iter().map(|w| (w * max / total).max(1)).collect();
    let mut assigned: u64 = counts.iter().sum();
    let mut by_remainder: Vec<usize> = (0..weights.len()).collect();
    by_remainder.sort_by_key(|&i| std::cmp::Reverse((weights[i] * max) % total));
    for &i in by_remainder.iter().cycle().take(weights.len() * 2) {
        if assigned >= max {
            break;
        }
        counts[i] += 1;
        assigned += 1;
    }
    while assigned > max {
        let (i, _) = counts
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
            .expect("weights is not empty");
        counts[i] -= 1;
        assigned -= 1;
    }
    counts
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests;
