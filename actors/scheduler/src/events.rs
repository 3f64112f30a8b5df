//! The scheduler's Events (`Scheduled`, `FailedScheduling`, `Preempted`), written by a
//! background writer so no decision or bind waits for them: best effort, a full queue
//! drops the event (counted in [`crate::Stats`]). Identical events about one pod (same
//! reason and message) are aggregated into one Event whose `count` grows, as client-go's
//! recorder does.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use drover_store::{Store, StoreError};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use crate::scheduler::Stats;

/// `source.component` / `reportingComponent` of every scheduler Event.
pub const COMPONENT: &str = "default-scheduler";
/// Events queued for the writer before new ones are dropped.
pub const EVENT_QUEUE: usize = 4096;
/// Aggregation entries kept before the oldest knowledge is forgotten (a later
/// identical event then starts a new Event object instead of bumping a count).
const AGGREGATE_LIMIT: usize = 16_384;

/// One Event to write.
#[derive(Debug, Clone)]
pub struct EventWork {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod uid.
    pub uid: String,
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    /// `Scheduled`, `FailedScheduling`, `Preempted`.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
}

type Key = (String, &'static str, String);

struct Written {
    name: String,
    first: Value,
    count: i64,
    resource_version: String,
}

/// Starts the writer; `concurrency` writes at once.
pub fn start_writer(
    store: Store,
    concurrency: usize,
    stats: Arc<Stats>,
) -> (mpsc::Sender<EventWork>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<EventWork>(EVENT_QUEUE);
    let task = tokio::spawn(async move {
        // Aggregated events go through one task (they read-modify-write one object);
        // fresh ones are written concurrently.
        let written: Arc<tokio::sync::Mutex<HashMap<Key, Written>>> = Arc::default();
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut seq: u64 = 0;
        while let Some(work) = rx.recv().await {
            seq += 1;
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let store = store.clone();
            let written = written.clone();
            let stats = stats.clone();
            tokio::spawn(async move {
                let _permit = permit;
                if write(&store, &written, work, seq).await.is_ok() {
                    stats.events_written.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    (tx, task)
}

fn event_kind() -> &'static bus_schema::KindInfo {
    bus_schema::kinds::of::<k8s_openapi::api::core::v1::Event>()
}

async fn write(
    store: &Store,
    written: &tokio::sync::Mutex<HashMap<Key, Written>>,
    work: EventWork,
    seq: u64,
) -> Result<(), StoreError> {
    let now = Timestamp::now();
    let stamp = serde_json::to_value(Time(now)).unwrap_or(Value::Null);
    let key: Key = (work.uid.clone(), work.reason, work.message.clone());
    // Only events that can repeat (failures) are aggregated; a Scheduled event is
    // written once per pod and never remembered.
    let aggregate = work.type_ == "Warning";
    if aggregate {
        let previous = written.lock().await.remove(&key);
        if let Some(prev) = previous {
            let mut event = build(&work, &prev.name, &prev.first, &stamp, prev.count + 1);
            event["metadata"]["resourceVersion"] = json!(prev.resource_version);
            match store.update(event_kind(), event).await {
                Ok(stored) => {
                    remember(
                        written,
                        key,
                        Written {
                            resource_version: rv(&stored),
                            count: prev.count + 1,
                            ..prev
                        },
                    )
                    .await;
                    return Ok(());
                }
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let name = format!(
        "{}.{:x}{:04x}",
        work.name,
        now.as_nanosecond(),
        seq & 0xffff
    );
    let event = build(&work, &name, &stamp, &stamp, 1);
    match store.create(event_kind(), event).await {
        Ok(stored) => {
            if aggregate {
                remember(
                    written,
                    key,
                    Written {
                        name,
                        first: stamp,
                        count: 1,
                        resource_version: rv(&stored),
                    },
                )
                .await;
            }
            Ok(())
        }
        Err(error) => {
            tracing::debug!(message = "scheduler event write failed", %error);
            Err(error)
        }
    }
}

async fn remember(written: &tokio::sync::Mutex<HashMap<Key, Written>>, key: Key, value: Written) {
    let mut w = written.lock().await;
    if w.len() >= AGGREGATE_LIMIT {
        w.clear();
    }
    w.insert(key, value);
}

fn rv(stored: &Value) -> String {
    drover_store::object::meta_str(stored, "resourceVersion")
        .unwrap_or_default()
        .to_string()
}

/// The core/v1 Event object.
pub fn build(work: &EventWork, name: &str, first: &Value, last: &Value, count: i64) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": work.namespace},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": work.namespace,
            "name": work.name,
            "uid": work.uid,
        },
        "reason": work.reason,
        "message": work.message,
        "type": work.type_,
        "action": "Scheduling",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": first,
        "lastTimestamp": last,
        "count": count,
    })
}
