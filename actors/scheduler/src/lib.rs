//! drover's pod scheduler, shaped like kube-scheduler: filters, scores, preemption and a
//! priority queue with backoff, over a cache of the cluster kept by ONE list+watch of
//! nodes, pods, PVCs and PVs (nothing is re-listed per pod).
//!
//! The decisions are I/O-free and deterministic given the seeded RNG:
//! [`snapshot`] (the cache), [`filter`], [`score`], [`cycle`] (one pod's decision),
//! [`preempt`], [`queue`] and [`message`] (the FailedScheduling text). The shell
//! ([`scheduler`], [`informer`], [`events`]) applies watch events, pops the queue, binds
//! with one compare-and-swap write per pod (spec.nodeName and PodScheduled=True
//! together, like the binding subresource), assumes the pod on its node before the
//! write returns so the next decision sees it, keeps several binds in flight, and
//! writes Events off the critical path.

pub mod cycle;
pub mod events;
pub mod filter;
pub mod informer;
pub mod message;
pub mod preempt;
pub mod queue;
pub mod scheduler;
pub mod score;
pub mod snapshot;

pub use scheduler::{Scheduler, SchedulerConfig, Stats, run, start};

#[cfg(test)]
pub(crate) mod fixtures;
