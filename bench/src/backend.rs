//! The operations the workload runs, implemented once per system. Both sides decode
//! what they read into a `serde_json::Value` (what an API server would hand on), so
//! neither skips work the other does.

use std::future::Future;
use std::pin::Pin;

use anyhow::Result;
use futures::Stream;
use serde_json::Value;

pub mod drover;
pub mod etcd;

/// Decoded objects seen by one watcher, in order.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Value>> + Send>>;

/// One system under test. Objects are pods in a namespace; revisions are the system's
/// own (JetStream stream sequence, etcd mod revision).
pub trait Backend: Clone + Send + Sync + 'static {
    /// Creates an object that must not exist yet; returns its revision.
    fn create(&self, obj: Value) -> impl Future<Output = Result<u64>> + Send;

    /// Reads one object.
    fn get(&self, namespace: &str, name: &str) -> impl Future<Output = Result<Value>> + Send;

    /// Replaces an object if its revision is still `revision` (compare-and-swap);
    /// returns the new revision.
    fn update(&self, obj: Value, revision: u64) -> impl Future<Output = Result<u64>> + Send;

    /// Lists (and decodes) every object of a namespace; returns how many there were.
    fn list(&self, namespace: &str) -> impl Future<Output = Result<usize>> + Send;

    /// Opens `n` watches on a namespace that see every change after `after_revision`;
    /// returns once the system has confirmed all of them.
    fn watch_many(
        &self,
        namespace: &str,
        after_revision: u64,
        n: usize,
    ) -> impl Future<Output = Result<Vec<EventStream>>> + Send;
}
