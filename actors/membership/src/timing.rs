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
//! round trip is well under a millisecond, so the same protocol runs ten times faster:
//!
//! - `probe_period` 100 ms, `probe_rtt` 50 ms: a direct ping that is not acked within 50 ms
//!   (fifty LAN round trips; room for a loaded runtime) is retried through 5 other members,
//!   and only if none of them gets an ack before the period ends is the member suspected.
//!   memberlist asks 3; 5 cost a few datagrams only when a direct probe fails and make a
//!   false suspicion under loss about 30 times rarer (below).
//! - suspicion `max(600 ms, 3 x log10 n x probe_period)`: 600 ms up to 100 nodes, 900 ms
//!   at 1,000, 1.2 s at 10,000. A suspected member that is alive refutes it by gossiping a
//!   higher incarnation; the window must outlast the rumour reaching it and the refutation
//!   coming back to the one member that runs the timer (foca starts it only on the member
//!   whose probe failed), `log n` rounds each way of gossip every 100 ms to 3 plus every
//!   probe's piggyback. The 600 ms floor keeps small clusters where they were.
//! - gossip every 100 ms to 3 members, and each update sent `2 ln(n + 1) + 5` times (see
//!   [`retransmissions`]): at 5% loss an update is still heard by every member.
//!
//! # Why the period and not the multiplier (measured: BENCHMARKS.md "Membership")
//!
//! Detection is the wait until some member probes the dead one, plus one period for the
//! probe and its indirect round, plus the suspicion. Every member probes one other per
//! period (round-robin over a shuffled list), so a given member is probed by a Poisson(1)
//! number of members per period: the wait's p99 is about 4.6 periods, whatever n. With
//! 200 ms periods that is 0.9 s of wait before any suspicion, and the goal (p99 under
//! 1.5 s at 1,000) would leave 0.4 s of suspicion, less than a refutation needs at that
//! size. Halving the period halves the wait and the probe round and lets the suspicion
//! keep its `log n` scale: about 0.46 + 0.1 + 0.9 s at 1,000. The cost is twice the
//! probes (20 small datagrams a second per member).
//!
//! foca has no Lifeguard (suspicion that starts long and shrinks with independent
//! confirmations, and a member's own "health" stretching its timeouts): a fixed window is
//! a trade between detection time and false downs when a suspected member is slow to
//! refute (loss, a loaded host). At 5% loss a direct probe fails with probability about 0.1
//! (ping or ack lost) and each indirect one about 0.19 (four datagrams), so a probe fails
//! with probability `0.1 x 0.19^5`, about 2 in 100,000: a 1,000-member cluster (10,000
//! probes a second) raises a suspicion every few seconds, each to be refuted within the
//! window. With memberlist's 3 indirect probes it was six a second, and at 1,000 members
//! in one 2-core process their dissemination (every member gossiping every 100 ms while
//! it has updates) took the CPU the refutations needed. The bench counts false downs under
//! 5% loss; a larger window is the knob if a deployment sees any.
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
    /// drover's LAN timing: under a second to declare a dead member down on 100 members.
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
            let period = Duration::from_millis(100);
            let log_n = f64::max(1.0, f64::from(n.get()).log10());
            let mut config = Config::new_lan(n);
            config.probe_period = period;
            config.probe_rtt = Duration::from_millis(50);
            config.num_indirect_probes = NonZeroUsize::new(5).unwrap_or(NonZeroUsize::MIN);
            config.suspect_to_down_after =
                Duration::from_millis(f64::max(600.0, (3.0 * log_n * 100.0).round()) as u64);
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
