//! The scheduling queue, I/O-free (time is passed in): an active queue ordered by
//! priority (highest first) then age (oldest first); pods that failed wait as
//! *unschedulable* until a cluster event (node added or changed, pod deleted or
//! finished, volume changes) might let them fit, and then sit out the rest of their
//! backoff (1 s doubling to 10 s, kube-scheduler's defaults) before going active again.
//! A pod left unschedulable for [`UNSCHEDULABLE_FLUSH`] is retried anyway, so a missed
//! event cannot strand it.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::time::Duration;

use crate::snapshot::PodKey;

/// First backoff after a failed attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods are retried after this long even without an event
/// (kube-scheduler: 5 minutes).
pub const UNSCHEDULABLE_FLUSH: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    priority: i32,
    /// When the pod first entered the queue (its age).
    since: Duration,
    seq: u64,
    key: PodKey,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.since.cmp(&self.since))
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Where a queued pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Waiting to be scheduled.
    Active,
    /// Waiting for its backoff to end.
    Backoff,
    /// Failed; waiting for a cluster event.
    Unschedulable,
    /// Popped, being scheduled or bound.
    InFlight,
}

#[derive(Debug, Clone)]
struct Queued {
    priority: i32,
    since: Duration,
    attempts: u32,
    /// When its backoff ends.
    backoff_until: Duration,
    /// When it became unschedulable.
    unschedulable_at: Duration,
    place: Place,
    /// The heap entry that is current (older ones are skipped).
    seq: u64,
}

/// The queue.
#[derive(Debug, Default)]
pub struct SchedulingQueue {
    active: BinaryHeap<Entry>,
    /// (backoff end, seq, key)
    backoff: BTreeSet<(Duration, u64, PodKey)>,
    pods: HashMap<PodKey, Queued>,
    seq: u64,
}

/// Backoff after `attempts` failed attempts.
pub fn backoff_for(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(16);
    (INITIAL_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF)
}

impl SchedulingQueue {
    /// Adds a pod, or notes that it changed: a new pod goes active; a changed
    /// unschedulable pod is retried (after its backoff), as the change may let it fit.
    pub fn add(&mut self, key: &str, priority: i32, now: Duration) {
        match self.pods.get(key).map(|q| q.place) {
            None => {
                self.pods.insert(
                    key.to_string(),
                    Queued {
                        priority,
                        since: now,
                        attempts: 0,
                        backoff_until: now,
                        unschedulable_at: now,
                        place: Place::Active,
                        seq: 0,
                    },
                );
                self.push_active(key);
            }
            Some(Place::Unschedulable) => {
                if let Some(q) = self.pods.get_mut(key) {
                    q.priority = priority;
                }
                self.wake(key, now);
            }
            Some(Place::Active) => {
                let q = self.pods.get_mut(key).expect("present");
                if q.priority != priority {
                    q.priority = priority;
                    self.push_active(key);
                }
            }
            Some(Place::Backoff | Place::InFlight) => {
                if let Some(q) = self.pods.get_mut(key) {
                    q.priority = priority;
                }
            }
        }
    }

    /// Forgets a pod (bound elsewhere, deleted, no longer ours).
    pub fn remove(&mut self, key: &str) {
        if let Some(q) = self.pods.remove(key)
            && q.place == Place::Backoff
        {
            self.backoff
                .remove(&(q.backoff_until, q.seq, key.to_string()));
        }
    }

    /// Where a pod is.
    pub fn place(&self, key: &str) -> Option<Place> {
        self.pods.get(key).map(|q| q.place)
    }

    /// Number of pods the queue holds, in any place.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether the queue holds nothing.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// The next pod to schedule (moving expired backoffs to active first); it is in
    /// flight until [`SchedulingQueue::done`], [`SchedulingQueue::unschedulable`] or
    /// [`SchedulingQueue::retry`].
    pub fn pop(&mut self, now: Duration) -> Option<PodKey> {
        self.flush_backoff(now);
        while let Some(e) = self.active.pop() {
            match self.pods.get_mut(&e.key) {
                Some(q) if q.place == Place::Active && q.seq == e.seq => {
                    q.place = Place::InFlight;
                    return Some(e.key);
                }
                _ => continue,
            }
        }
        None
    }

    /// The pod was bound: forget it.
    pub fn done(&mut self, key: &str) {
        self.remove(key);
    }

    /// The pod fits nowhere: it waits for a cluster event, then its backoff.
    pub fn unschedulable(&mut self, key: &str, now: Duration) {
        if let Some(q) = self.pods.get_mut(key) {
            q.attempts += 1;
            q.backoff_until = now + backoff_for(q.attempts);
            q.unschedulable_at = now;
            q.place = Place::Unschedulable;
        }
    }

    /// The attempt failed for a reason other than fit (a conflict, a store error, a
    /// preemption that needs its victims gone): retry after the backoff.
    pub fn retry(&mut self, key: &str, now: Duration) {
        if let Some(q) = self.pods.get_mut(key) {
            q.attempts += 1;
            q.backoff_until = now + backoff_for(q.attempts);
        }
        self.park_in_backoff(key, now);
    }

    /// A cluster event happened: every unschedulable pod may fit now.
    pub fn on_cluster_event(&mut self, now: Duration) {
        let keys: Vec<PodKey> = self
            .pods
            .iter()
            .filter(|(_, q)| q.place == Place::Unschedulable)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.wake(&k, now);
        }
    }

    /// Moves unschedulable pods that waited [`UNSCHEDULABLE_FLUSH`] back (the periodic
    /// safety net), and expired backoffs to active.
    pub fn flush(&mut self, now: Duration) {
        let keys: Vec<PodKey> = self
            .pods
            .iter()
            .filter(|(_, q)| {
                q.place == Place::Unschedulable && now >= q.unschedulable_at + UNSCHEDULABLE_FLUSH
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.wake(&k, now);
        }
        self.flush_backoff(now);
    }

    /// When the earliest backoff ends (to sleep until then).
    pub fn next_backoff_end(&self) -> Option<Duration> {
        self.backoff.first().map(|(t, _, _)| *t)
    }

    /// Whether some pod is ready to pop now.
    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    fn wake(&mut self, key: &str, now: Duration) {
        let Some(q) = self.pods.get(key) else { return };
        if q.backoff_until > now {
            self.park_in_backoff(key, now);
        } else {
            self.push_active(key);
        }
    }

    fn park_in_backoff(&mut self, key: &str, now: Duration) {
        let Some(q) = self.pods.get(key) else { return };
        if q.backoff_until <= now {
            self.push_active(key);
            return;
        }
        if q.place == Place::Backoff {
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        let q = self.pods.get_mut(key).expect("present");
        q.place = Place::Backoff;
        q.seq = seq;
        self.backoff.insert((q.backoff_until, seq, key.to_string()));
    }

    fn push_active(&mut self, key: &str) {
        self.seq += 1;
        let seq = self.seq;
        let Some(q) = self.pods.get_mut(key) else {
            return;
        };
        if q.place == Place::Backoff {
            self.backoff
                .remove(&(q.backoff_until, q.seq, key.to_string()));
        }
        q.place = Place::Active;
        q.seq = seq;
        self.active.push(Entry {
            priority: q.priority,
            since: q.since,
            seq,
            key: key.to_string(),
        });
    }

    fn flush_backoff(&mut self, now: Duration) {
        while let Some((t, _, _)) = self.backoff.first() {
            if *t > now {
                break;
            }
            let (_, _, key) = self.backoff.pop_first().expect("present");
            if let Some(q) = self.pods.get_mut(&key) {
                q.place = Place::Unschedulable; // so push_active does not look in backoff
            }
            self.push_active(&key);
        }
    }
}

#[cfg(test)]
mod tests;
