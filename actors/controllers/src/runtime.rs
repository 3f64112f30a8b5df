//! The controller runtime every workload controller runs on, shaped like kube-runtime:
//! a shared [`Cache`] (one list + watch per kind, kept in memory and indexed by owner),
//! a [`Reconciler`] per controller (`reconcile(key, ctx) -> Result<Action, Error>` plus an
//! error policy that returns the requeue), and a [`run`] loop with a deduplicating work
//! queue that never reconciles one key twice at the same time.
//!
//! Reconcilers read from the cache, which may lag the store, and write to the store with
//! preconditions (resourceVersion CAS, uid on delete). After a write they call
//! [`Cache::wait_for_revision`] so their next reconcile sees what they wrote (read your
//! writes); that replaces kube-controller-manager's "expectations" bookkeeping: a
//! ReplicaSet that just created three pods cannot create them again because the
//! reconcile that created them returns only after the cache holds them.

pub mod cache;
pub mod controller;
pub mod events;
pub mod kinds;
pub mod owner;
pub mod queue;

use std::time::Duration;

pub use cache::{Cache, CacheEvent};
pub use controller::{Reconciler, Watch, run};
pub use events::{EventRecorder, EventType};

use drover_store::{Store, StoreError};

/// Which object a reconcile is about: namespace (None for cluster-scoped) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Namespace, `None` for a cluster-scoped object.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// The key of a namespaced object.
    pub fn namespaced(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            namespace: Some(namespace.to_string()),
            name: name.to_string(),
        }
    }

    /// The key of a cluster-scoped object.
    pub fn cluster(name: &str) -> ObjectKey {
        ObjectKey {
            namespace: None,
            name: name.to_string(),
        }
    }

    /// The key of a stored object (its metadata namespace and name).
    pub fn of(obj: &serde_json::Value) -> ObjectKey {
        ObjectKey {
            namespace: drover_store::object::namespace(obj).map(str::to_string),
            name: drover_store::object::name(obj).to_string(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// What to do after a reconcile: nothing until something changes, or look again after a delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Reconcile again after `after` even if nothing changes (a deadline, a timer, a poll).
    pub fn requeue(after: Duration) -> Action {
        Action {
            requeue_after: Some(after),
        }
    }

    /// Reconcile again only when the object or something it watches changes.
    pub fn await_change() -> Action {
        Action {
            requeue_after: None,
        }
    }

    /// The delay before the next reconcile, if one is wanted.
    pub fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }

    /// The earlier of two requeues (a reconcile with several timers keeps the soonest).
    pub fn min(self, other: Action) -> Action {
        match (self.requeue_after, other.requeue_after) {
            (Some(a), Some(b)) => Action::requeue(a.min(b)),
            (Some(_), None) => self,
            _ => other,
        }
    }
}

/// Why a reconcile failed. Every variant is retried by the error policy; none leaves
/// partial state that the next reconcile cannot see and finish.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The store failed or a precondition did not hold (retryable: the next reconcile
    /// reads the newer state).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored object could not be read as its type (retryable only after the object
    /// changes; logged).
    #[error("cannot read {kind} {key}: {message}")]
    Decode {
        /// Kind name.
        kind: &'static str,
        /// The object.
        key: ObjectKey,
        /// What was wrong.
        message: String,
    },
    /// The cache did not catch up with a write in time (retryable).
    #[error("the cache did not see revision {revision} of {kind} within {timeout:?}")]
    CacheLag {
        /// Kind plural.
        kind: &'static str,
        /// Revision waited for.
        revision: u64,
        /// How long it waited.
        timeout: Duration,
    },
    /// Anything else, with a message (retryable).
    #[error("{0}")]
    Other(String),
}

impl From<drover_admission::AdmissionError> for ReconcileError {
    /// A refusal is retried with backoff like any failure: what it depends on (a quota,
    /// a PriorityClass, a LimitRange) may change without the controller being told.
    fn from(e: drover_admission::AdmissionError) -> ReconcileError {
        match e {
            drover_admission::AdmissionError::Store { source, .. } => ReconcileError::Store(source),
            refused @ drover_admission::AdmissionError::Refused(_) => {
                ReconcileError::Other(refused.to_string())
            }
        }
    }
}

/// What every reconcile gets: the store to write to, the cache to read from, and the
/// event recorder.
#[derive(Clone)]
pub struct Context {
    /// The store (writes, and live reads where the cache is not enough).
    pub store: Store,
    /// The shared cache.
    pub cache: Cache,
    /// Events about the controller's objects.
    pub events: EventRecorder,
}

impl Context {
    /// A context over `store` and `cache` whose events name `component` as their source.
    pub fn new(store: Store, cache: Cache, component: &'static str) -> Context {
        Context {
            events: EventRecorder::start(store.clone(), component),
            store,
            cache,
        }
    }

    /// A copy whose events name `component` as their source (each controller has its own).
    pub fn for_component(&self, component: &'static str) -> Context {
        Context {
            events: EventRecorder::start(self.store.clone(), component),
            store: self.store.clone(),
            cache: self.cache.clone(),
        }
    }
}

/// Reads a stored object as its k8s-openapi type.
pub fn decode<K: serde::de::DeserializeOwned>(
    kind: &'static bus_schema::KindInfo,
    obj: &serde_json::Value,
) -> Result<K, ReconcileError> {
    K::deserialize(obj).map_err(|e| ReconcileError::Decode {
        kind: kind.kind,
        key: ObjectKey::of(obj),
        message: e.to_string(),
    })
}

/// The resourceVersion of a stored object as a revision number (0 when absent).
pub fn revision_of(obj: &serde_json::Value) -> u64 {
    drover_store::object::meta_str(obj, "resourceVersion")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
