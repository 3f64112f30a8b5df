//! Local health, Lifeguard's first idea in its simplest form: a member that runs late does
//! not blame its peers for it.
//!
//! SWIM suspects a peer whose ack did not arrive before a timer fired. When the timer fires
//! late, because this member's process was descheduled or too busy to run it, the ack may
//! be sitting unread in this member's socket, and a peer on the same busy host was probably
//! held up as well. The driver therefore reads its socket before it runs due timers, and
//! when the earliest due timer is more than [`LATE`] late it pushes every timer back by
//! twice the lateness (at most [`MAX_PUSH_BACK`]) instead of running them: the peers get
//! the time this member lost, and a member that keeps running late probes and suspects
//! more slowly. No timer ever runs early, so a healthy member's detection time is
//! unchanged.
//!
//! Without it, one stall of a few hundred milliseconds in `drover sim`'s process (a
//! thousand members on two cores) made every member suspect the peer it was probing at
//! that moment, and the storm of suspicions and refutations (each disseminated to every
//! member) cost more CPU than the host had: the cluster never recovered
//! (BENCHMARKS.md "Membership"). memberlist's Lifeguard goes further (a health score that
//! scales every timeout, suspicion that shrinks with independent confirmations); foca has
//! neither.

use std::time::Duration;

/// How late the earliest due timer may be before the member counts itself as running late:
/// a fifth of the Fast profile's 100 ms probe period, well above a healthy runtime's
/// wake-up delay.
pub const LATE: Duration = Duration::from_millis(20);

/// The most the timers are pushed back at once.
pub const MAX_PUSH_BACK: Duration = Duration::from_secs(1);

/// How far to push every timer back when the earliest due one fires `late`; `None` when it
/// is on time (run the due timers).
pub fn push_back(late: Duration) -> Option<Duration> {
    (late > LATE).then(|| late.saturating_mul(2).min(MAX_PUSH_BACK))
}

#[cfg(test)]
mod tests;
