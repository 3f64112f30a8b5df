//! Restart policy: a budget of restarts per window plus exponential backoff between
//! them, reset after a run that lasted long enough to count as healthy.
//!
//! actix's `Supervisor` restarts an actor immediately and forever; drover wraps every
//! supervised thing (actors, the nats-server child) in this policy instead, so a crash
//! loop slows down and finally gives up loudly rather than spinning a core. The policy
//! is pure (the caller passes `now`), so its behaviour is tested without a clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Default number of restarts allowed inside [`DEFAULT_WINDOW`].
pub const DEFAULT_MAX_RESTARTS: usize = 10;
/// Default window over which restarts are counted.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// Default delay before the first restart.
pub const DEFAULT_BASE_BACKOFF: Duration = Duration::from_millis(100);
/// Default ceiling of the backoff.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A run at least this long resets the backoff to its base.
pub const DEFAULT_STABLE_AFTER: Duration = Duration::from_secs(30);

/// What to do after the supervised thing stopped unexpectedly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after this delay.
    RestartAfter(Duration),
    /// The budget is spent: stop trying and report the failure.
    GiveUp,
}

/// Restart budget and backoff state.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    max_restarts: usize,
    window: Duration,
    base_backoff: Duration,
    max_backoff: Duration,
    stable_after: Duration,
    restarts: VecDeque<Instant>,
    next_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy::new(
            DEFAULT_MAX_RESTARTS,
            DEFAULT_WINDOW,
            DEFAULT_BASE_BACKOFF,
            DEFAULT_MAX_BACKOFF,
            DEFAULT_STABLE_AFTER,
        )
    }
}

impl RestartPolicy {
    /// A policy allowing `max_restarts` per `window`, backing off from `base_backoff`
    /// (doubling) up to `max_backoff`; a run of `stable_after` resets the backoff.
    pub fn new(
        max_restarts: usize,
        window: Duration,
        base_backoff: Duration,
        max_backoff: Duration,
        stable_after: Duration,
    ) -> Self {
        RestartPolicy {
            max_restarts,
            window,
            base_backoff,
            max_backoff,
            stable_after,
            restarts: VecDeque::new(),
            next_backoff: base_backoff,
        }
    }

    /// Records that the thing started at `started` stopped at `now`, and decides.
    pub fn on_exit(&mut self, started: Instant, now: Instant) -> Decision {
        if now.saturating_duration_since(started) >= self.stable_after {
            self.next_backoff = self.base_backoff;
        }
        while let Some(first) = self.restarts.front() {
            if now.saturating_duration_since(*first) > self.window {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        if self.restarts.len() >= self.max_restarts {
            return Decision::GiveUp;
        }
        self.restarts.push_back(now);
        let delay = self.next_backoff;
        self.next_backoff = (self.next_backoff * 2).min(self.max_backoff);
        Decision::RestartAfter(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> RestartPolicy {
        RestartPolicy::new(3, 1000 * MS, 10 * MS, 40 * MS, 500 * MS)
    }

    #[test]
    fn backs_off_exponentially_then_gives_up() {
        let t0 = Instant::now();
        let mut p = policy();
        let got: Vec<Decision> = (0..4)
            .map(|i| p.on_exit(t0 + i * MS, t0 + (i + 1) * MS))
            .collect();
        assert_eq!(
            got,
            vec![
                Decision::RestartAfter(10 * MS),
                Decision::RestartAfter(20 * MS),
                Decision::RestartAfter(40 * MS),
                Decision::GiveUp
            ]
        );
    }

    #[test]
    fn backoff_is_capped() {
        let t0 = Instant::now();
        let mut p = RestartPolicy::new(100, 1000 * MS, 10 * MS, 40 * MS, 500 * MS);
        let last = (0..6).map(|i| p.on_exit(t0, t0 + i * MS)).last().unwrap();
        assert_eq!(last, Decision::RestartAfter(40 * MS));
    }

    #[test]
    fn budget_refills_after_window_and_stable_run_resets_backoff() {
        let t0 = Instant::now();
        let mut p = policy();
        for i in 0..3 {
            p.on_exit(t0, t0 + i * MS);
        }
        // 2 s later the old restarts left the window, and the run was long: base delay.
        let later = t0 + 2000 * MS;
        assert_eq!(
            p.on_exit(t0 + 1000 * MS, later),
            Decision::RestartAfter(10 * MS)
        );
    }
}
