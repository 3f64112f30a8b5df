//! Events about controllers' objects (SuccessfulCreate, ScalingReplicaSet,
//! FailedScheduling, ...), written by one background task per recorder so a reconcile
//! never waits on an event write. Identical events (same object, type, reason, message)
//! within [`AGGREGATE_FOR`] are aggregated into one Event whose `count` grows, as
//! Kubernetes' recorder does. Best effort: a full queue or a failed write drops the
//! event with a log line, never an error.

use std::collections::HashMap;
use std::time::Duration;

use bus_schema::KindInfo;
use drover_store::{Store, StoreError};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::owner::api_version;

/// Events waiting to be written before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 8192;
/// An identical event within this time bumps the count of the existing Event.
pub const AGGREGATE_FOR: Duration = Duration::from_secs(600);
/// Aggregation entries kept (the oldest are forgotten first).
const MAX_REMEMBERED: usize = 4096;

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

struct Pending {
    involved: Value,
    namespace: String,
    type_: EventType,
    reason: String,
    message: String,
}

/// Writes Events in the background (cheap to clone).
#[derive(Clone)]
pub struct EventRecorder {
    tx: mpsc::Sender<Pending>,
}

impl EventRecorder {
    /// Starts the writer task; Events name `component` as their source. The task ends
    /// when every clone of the recorder is dropped.
    pub fn start(store: Store, component: &'static str) -> EventRecorder {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(writer(store, component, rx));
        EventRecorder { tx }
    }

    /// Records an event about `obj` (a stored object of `kind`).
    pub fn record(
        &self,
        kind: &KindInfo,
        obj: &Value,
        type_: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        let meta = |f: &str| drover_store::object::meta_str(obj, f).unwrap_or_default();
        let namespace = match meta("namespace") {
            "" => "default".to_string(),
            ns => ns.to_string(),
        };
        let mut involved = json!({
            "apiVersion": api_version(kind),
            "kind": kind.kind,
            "name": meta("name"),
            "uid": meta("uid"),
            "resourceVersion": meta("resourceVersion"),
        });
        if !meta("namespace").is_empty() {
            involved["namespace"] = json!(meta("namespace"));
        }
        let pending = Pending {
            involved,
            namespace,
            type_,
            reason: reason.to_string(),
            message: message.into(),
        };
        if self.tx.try_send(pending).is_err() {
            tracing::debug!(message = "event dropped: the writer is behind", reason);
        }
    }
}

type Key = (String, EventType, String, String);

struct Written {
    name: String,
    namespace: String,
    first: Value,
    count: i64,
    resource_version: String,
    at: Instant,
}

async fn writer(store: Store, component: &'static str, mut rx: mpsc::Receiver<Pending>) {
    let mut written: HashMap<Key, Written> = HashMap::new();
    let mut seq: u32 = 0;
    let kind = bus_schema::kinds::by_group_resource("", "events").expect("events are served");
    while let Some(p) = rx.recv().await {
        let uid = p.involved["uid"].as_str().unwrap_or_default().to_string();
        let key: Key = (uid, p.type_, p.reason.clone(), p.message.clone());
        let now = Timestamp::now();
        let stamp = serde_json::to_value(Time(now)).unwrap_or(Value::Null);
        let build = |name: &str, first: &Value, count: i64| {
            json!({
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": p.namespace},
                "involvedObject": p.involved,
                "reason": p.reason,
                "message": p.message,
                "type": p.type_.as_str(),
                "source": {"component": component},
                "reportingComponent": component,
                "firstTimestamp": first,
                "lastTimestamp": stamp,
                "count": count,
            })
        };
        if let Some(previous) = written.get(&key).filter(|w| w.at.elapsed() < AGGREGATE_FOR) {
            let mut next = build(&previous.name, &previous.first, previous.count + 1);
            next["metadata"]["namespace"] = json!(previous.namespace);
            next["metadata"]["resourceVersion"] = json!(previous.resource_version);
            match store.update(kind, next).await {
                Ok(stored) => {
                    if let Some(w) = written.get_mut(&key) {
                        w.count += 1;
                        w.resource_version = resource_version(&stored);
                        w.at = Instant::now();
                    }
                    continue;
                }
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {
                    written.remove(&key);
                }
                Err(error) => {
                    tracing::warn!(message = "event update failed", %error);
                    continue;
                }
            }
        }
        seq = seq.wrapping_add(1);
        let involved_name = p.involved["name"].as_str().unwrap_or("event");
        let name = format!(
            "{involved_name}.{:x}{:04x}",
            now.as_nanosecond(),
            seq & 0xffff
        );
        match store.create(kind, build(&name, &stamp, 1)).await {
            Ok(stored) => {
                if written.len() >= MAX_REMEMBERED {
                    let oldest = written
                        .iter()
                        .min_by_key(|(_, w)| w.at)
                        .map(|(k, _)| k.clone());
                    if let Some(oldest) = oldest {
                        written.remove(&oldest);
                    }
                }
                written.insert(
                    key,
                    Written {
                        name,
                        namespace: p.namespace.clone(),
                        first: stamp.clone(),
                        count: 1,
                        resource_version: resource_version(&stored),
                        at: Instant::now(),
                    },
                );
            }
            Err(error) => tracing::warn!(message = "event write failed", %error),
        }
    }
}

fn resource_version(stored: &Value) -> String {
    drover_store::object::meta_str(stored, "resourceVersion")
        .unwrap_or_default()
        .to_string()
}
