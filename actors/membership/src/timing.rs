//! How fast members probe, suspect and declare each other down: a pure function from the
//! cluster size and a profile to foca's [`Config`].
//!
//! # The numbers ([`Profile::Fast`], drover's default)
//!
//! memberlist's LAN defaults (what Serf and Consul use) probe every 1 s with a 500 ms
//! timeout and keep a member suspect for `4 x max(1, log10 n) x 1 s` (4 s at 10 nodes, 12 s
//! at 1,000) before declaring it dead; Lifeguard then stretches that up to 6x while
//! confirmations are missing, hence the 8-48 s quoted for 100 nodes. foca's
//! [`Config::new_lan`] is the same without Lifeguard. drover's nodes sit on one LAN where a
//! round trip is well under a millisecond, so the same protocol runs five times faster:
//!
//! - `probe_period` 200 ms, `probe_rtt` 100 ms: a direct ping that is not acked within 100 ms
//!   (a hundred LAN round trips; room for a loaded runtime) is retried through 3 other
//!   members, and only if none of them gets an ack before the period ends is the member
//!   suspected. With n members each probing one per period, some member probes a dead one
//!   within about one period.
//! - suspicion `3 x max(1, log10 n) x probe_period`: 600 ms up to 10 nodes, 1.2 s at 100,
//!   1.8 s at 1,000. A suspected member that is alive refutes it by gossiping a higher
//!   incarnation; the suspicion window must outlast the time the rumour takes to reach it
//!   and its refutation to come back, which grows with `log n` gossip rounds of 100 ms.
//! - gossip every 100 ms to 3 members, and updates retransmitted `max(6, 4 x log10(n + 1))`
//!   times (memberlist's retransmit multiplier is 4): at 5% loss an update is still heard.
//!
//! So a dead member of a small cluster is declared down after about one probe period, the
//! suspicion and one gossip round: 0.2 + 0.6 + 0.1, about a second. Under 5% independent
//! loss a probe fails (direct and all three indirect paths lost) with probability about
//! `0.1 x 0.19^3`, under 1 in 1,000, and the suspicion is refuted well within its window,
//! so loss alone does not declare members down.
//!
//! Down members are remembered for 10 minutes (stale rumours cannot resurrect them, and
//! `members()` still shows them); a member that comes back under a larger `bump` replaces
//! its down entry at once. Members announce themselves to one random member every 5 s and to
//! two down members every 10 s, which rejoins the halves of a healed partition.

use std::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use std::time::Duration;

/// foca's configuration, what [`timing()`] returns (re-exported so callers can name it).
pub use foca::Config;
use foca::PeriodicParams;

/// Which timing to run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Profile {
    /// drover's LAN timing: about a second to declare a dead member down on small clusters.
    #[default]
    Fast,
    /// foca's own LAN defaults ([`Config::new_lan`], memberlist-like: 1 s probes, suspicion
    /// `4 x log10 n` seconds), for comparison.
    Lan,
}

/// Largest packet drover sends: below a 1,500-byte Ethernet MTU with IP and UDP headers.
pub const MAX_PACKET: usize = 1400;

/// The foca configuration for `cluster_size` members (0 is taken as 1) under `profile`.
pub fn timing(cluster_size: u32, profile: Profile) -> Config {
    let n = NonZeroU32::new(cluster_size).unwrap_or(NonZeroU32::MIN);
    match profile {
        Profile::Lan => Config::new_lan(n),
        Profile::Fast => {
            let period = Duration::from_millis(200);
            let log_n = f64::max(1.0, f64::from(n.get()).log10());
            let mut config = Config::new_lan(n);
            config.probe_period = period;
            config.probe_rtt = Duration::from_millis(100);
            config.num_indirect_probes = NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN);
            config.suspect_to_down_after =
                Duration::from_millis((3.0 * log_n * 200.0).round() as u64);
            config.max_transmissions = retransmissions(n.get());
            config.remove_down_after = Some(Duration::from_secs(600));
            config.max_packet_size = NonZeroUsize::new(MAX_PACKET).unwrap_or(NonZeroUsize::MIN);
            config.notify_down_members = true;
            config.periodic_gossip = Some(PeriodicParams {
                frequency: Duration::from_millis(100),
                num_members: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
            });
            config.periodic_announce = Some(PeriodicParams {
                frequency: Duration::from_secs(5),
                num_members: NonZeroUsize::MIN,
            });
            config.periodic_announce_to_down_members = Some(PeriodicParams {
                frequency: Duration::from_secs(10),
                num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
            });
            config
        }
    }
}

/// How many times each member piggybacks an update: `2 ln(n + 1) + 5`, rounded up.
///
/// Every member that learns an update sends it this many times to random members, so a
/// given member misses it with probability about `e^-tx`. memberlist's `4 x log10(n + 1)`
/// (12 at 1,000) leaves `e^-12`, six in a million: while 1,000 members join, a million
/// (update, member) pairs make several misses, and a member that missed one learns it only
/// when probing reaches it (n probe periods round-robin: 200 s at 1,000). `2 ln(n + 1) + 5`
/// keeps `n^2 x e^-tx` (every member learning of every other) near `e^-5`, under 1%.
fn retransmissions(n: u32) -> NonZeroU8 {
    let tx = (2.0 * f64::from(n.saturating_add(1)).ln() + 5.0)
        .ceil()
        .clamp(6.0, 255.0);
    NonZeroU8::new(tx as u8).unwrap_or(NonZeroU8::MIN)
}

#[cfg(test)]
mod tests;
