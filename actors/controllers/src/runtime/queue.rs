//! The work queue (I/O-free): each key is queued at most once, a key is never handed
//! out while it is being reconciled, and a key that changes during its reconcile is
//! queued again when that reconcile is done, so the last change is always looked at.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::Duration;

/// First retry delay after a failed reconcile.
pub const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// See the module doc.
#[derive(Debug)]
pub struct WorkQueue<K> {
    queued: VecDeque<K>,
    queued_set: HashSet<K>,
    active: HashSet<K>,
    dirty: HashSet<K>,
    failures: HashMap<K, u32>,
}

impl<K> Default for WorkQueue<K> {
    fn default() -> Self {
        WorkQueue {
            queued: VecDeque::new(),
            queued_set: HashSet::new(),
            active: HashSet::new(),
            dirty: HashSet::new(),
            failures: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + Hash> WorkQueue<K> {
    /// Asks for `key` to be reconciled.
    pub fn push(&mut self, key: K) {
        if self.active.contains(&key) {
            self.dirty.insert(key);
        } else if self.queued_set.insert(key.clone()) {
            self.queued.push_back(key);
        }
    }

    /// The next key to reconcile; it is active until [`WorkQueue::done`].
    pub fn pop(&mut self) -> Option<K> {
        let key = self.queued.pop_front()?;
        self.queued_set.remove(&key);
        self.active.insert(key.clone());
        Some(key)
    }

    /// The reconcile of `key` finished (`ok` = it succeeded); returns how many times in a
    /// row it has now failed (0 after a success).
    pub fn done(&mut self, key: &K, ok: bool) -> u32 {
        self.active.remove(key);
        let failures = if ok {
            self.failures.remove(key);
            0
        } else {
            let n = self.failures.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        if self.dirty.remove(key) {
            self.push(key.clone());
        }
        failures
    }

    /// Keys being reconciled now.
    pub fn n_active(&self) -> usize {
        self.active.len()
    }

    /// Keys waiting.
    pub fn n_queued(&self) -> usize {
        self.queued.len()
    }
}

/// The retry delay after `failures` failures in a row: doubling from [`BACKOFF_BASE`]
/// up to [`BACKOFF_MAX`].
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1 << exp).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_queued_once() {
        let mut q = WorkQueue::default();
        q.push("a");
        q.push("b");
        q.push("a");
        assert_eq!(q.pop(), Some("a"));
        assert_eq!(q.pop(), Some("b"));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn a_change_during_a_reconcile_queues_the_key_again_after_it() {
        let mut q = WorkQueue::default();
        q.push("a");
        assert_eq!(q.pop(), Some("a"));
        q.push("a");
        assert_eq!(q.pop(), None, "never handed out twice at once");
        assert_eq!(q.done(&"a", true), 0);
        assert_eq!(q.pop(), Some("a"));
        assert_eq!(q.done(&"a", true), 0);
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn failures_count_until_a_success() {
        let mut q = WorkQueue::default();
        for want in 1..=3 {
            q.push("a");
            q.pop();
            assert_eq!(q.done(&"a", false), want);
        }
        q.push("a");
        q.pop();
        assert_eq!(q.done(&"a", true), 0);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        for (failures, want_ms) in [(1, 200), (2, 400), (3, 800), (30, 60_000)] {
            assert_eq!(
                backoff(failures),
                Duration::from_millis(want_ms),
                "{failures}"
            );
        }
    }
}
