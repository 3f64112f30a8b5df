//! Kubernetes Events about a pod, as the kubelet's recorder writes them: core/v1 Event
//! objects in the pod's namespace with `involvedObject` (and a `fieldPath` such as
//! `spec.containers{web}` for container events), `source.component`, and
//! first/last timestamps with a `count`.
//!
//! Two kubelet behaviours matter for a crash-looping pod: identical events (same object,
//! field path, type, reason and message) are *aggregated* into one Event whose `count`
//! grows, and every object has a token bucket (the kubelet's spam filter) so a loop
//! cannot flood the store. One recorder lives in each PodActor, so its memory goes with
//! the pod. Recording is best effort: a failed write is logged, never an error.

use std::collections::HashMap;
use std::time::Duration;

use drover_store::{Store, StoreError};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use tokio::time::Instant;

/// `source.component` of drover's node agent.
pub const COMPONENT: &str = "drover-node";
/// Events an object may record in a burst (kubelet spam filter: 25).
pub const EVENT_BURST: u32 = 25;
/// One more event is allowed per this interval once the burst is spent (kubelet: 5 min).
pub const EVENT_REFILL: Duration = Duration::from_secs(300);
/// Least time between two writes of the same state event (a container waiting in
/// `ImagePullBackOff` is seen on every sync; the kubelet reports it about once per its
/// 10 s sync, not on every relist).
pub const STATE_EVENT_INTERVAL: Duration = Duration::from_secs(10);

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

/// The pod the events are about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Involved {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod uid.
    pub uid: String,
}

/// A token bucket: `burst` tokens, one more per `refill`.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: u32,
    last_refill: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last_refill);
        let refills = (elapsed.as_secs_f64() / EVENT_REFILL.as_secs_f64()) as u32;
        if refills > 0 {
            self.tokens = (self.tokens + refills).min(EVENT_BURST);
            self.last_refill = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

type Key = (String, EventType, String, String);

/// An Event this recorder wrote.
#[derive(Debug, Clone)]
struct Written {
    name: String,
    first: Value,
    count: i64,
    resource_version: String,
    at: Instant,
}

/// Writes Events about one pod.
pub struct Recorder {
    store: Store,
    host: String,
    involved: Involved,
    bucket: Bucket,
    /// Aggregation: what was stored for each (fieldPath, type, reason, message); kept
    /// small (not the whole object) since every pod of a hollow fleet has a recorder.
    written: HashMap<Key, Written>,
    seq: u64,
}

/// core/v1 Event's kind.
pub fn event_kind() -> &'static bus_schema::KindInfo {
    bus_schema::kinds::of::<Event>()
}

impl Recorder {
    /// A recorder for the pod `involved` on node `host`.
    pub fn new(store: Store, host: &str, involved: Involved) -> Recorder {
        Recorder {
            store,
            host: host.to_string(),
            involved,
            bucket: Bucket {
                tokens: EVENT_BURST,
                last_refill: Instant::now(),
            },
            written: HashMap::new(),
            seq: 0,
        }
    }

    /// Records an event about the pod (`field_path` empty) or one of its containers
    /// (`spec.containers{name}`, see [`container_field_path`]).
    pub async fn record(
        &mut self,
        field_path: &str,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        self.record_at_most(field_path, type_, reason, message, Duration::ZERO)
            .await
    }

    /// As [`Recorder::record`], but an identical event written less than `interval`
    /// ago is not written again (for states observed on every sync).
    pub async fn record_at_most(
        &mut self,
        field_path: &str,
        type_: EventType,
        reason: &str,
        message: &str,
        interval: Duration,
    ) {
        if self.involved.uid.is_empty() {
            return;
        }
        let key: Key = (
            field_path.to_string(),
            type_,
            reason.to_string(),
            message.to_string(),
        );
        if !interval.is_zero()
            && self
                .written
                .get(&key)
                .is_some_and(|w| w.at.elapsed() < interval)
        {
            return;
        }
        if !self.bucket.take(Instant::now()) {
            tracing::debug!(message = "event rate-limited", reason, msg = message);
            return;
        }
        let now = Timestamp::now();
        let stamp = serde_json::to_value(Time(now)).unwrap_or(Value::Null);
        if let Some(previous) = self.written.get(&key).cloned() {
            let mut next = self.build(
                &key,
                &previous.name,
                &previous.first,
                &stamp,
                previous.count + 1,
            );
            next["metadata"]["resourceVersion"] = json!(previous.resource_version);
            match self.store.update(event_kind(), next).await {
                Ok(stored) => {
                    self.written.insert(
                        key,
                        Written {
                            count: previous.count + 1,
                            resource_version: resource_version(&stored),
                            at: Instant::now(),
                            ..previous
                        },
                    );
                    return;
                }
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {
                    // Someone else changed or removed it: start a fresh Event.
                    self.written.remove(&key);
                }
                Err(error) => {
                    tracing::warn!(message = "event update failed", %error);
                    return;
                }
            }
        }
        self.seq += 1;
        let name = format!(
            "{}.{:x}{:04x}",
            self.involved.name,
            now.as_nanosecond(),
            self.seq & 0xffff
        );
        let event = self.build(&key, &name, &stamp, &stamp, 1);
        match self.store.create(event_kind(), event).await {
            Ok(stored) => {
                self.written.insert(
                    key,
                    Written {
                        name,
                        first: stamp,
                        count: 1,
                        resource_version: resource_version(&stored),
                        at: Instant::now(),
                    },
                );
            }
            Err(error) => tracing::warn!(message = "event write failed", %error),
        }
    }

    /// The Event object for `key`.
    fn build(&self, key: &Key, name: &str, first: &Value, last: &Value, count: i64) -> Value {
        let (field_path, type_, reason, message) = key;
        let mut involved = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": self.involved.namespace,
            "name": self.involved.name,
            "uid": self.involved.uid,
        });
        if !field_path.is_empty() {
            involved["fieldPath"] = json!(field_path);
        }
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": self.involved.namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": type_.as_str(),
            "source": {"component": COMPONENT, "host": self.host},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.host,
            "firstTimestamp": first,
            "lastTimestamp": last,
            "count": count,
        })
    }
}

fn resource_version(stored: &Value) -> String {
    drover_store::object::meta_str(stored, "resourceVersion")
        .unwrap_or_default()
        .to_string()
}

/// `fieldPath` of a container: `spec.containers{name}` or `spec.initContainers{name}`.
pub fn container_field_path(init: bool, name: &str) -> String {
    if init {
        format!("spec.initContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_one_per_refill() {
        let t0 = Instant::now();
        let mut b = Bucket {
            tokens: EVENT_BURST,
            last_refill: t0,
        };
        for _ in 0..EVENT_BURST {
            assert!(b.take(t0));
        }
        assert!(!b.take(t0));
        assert!(!b.take(t0 + EVENT_REFILL / 2));
        assert!(b.take(t0 + EVENT_REFILL));
        assert!(!b.take(t0 + EVENT_REFILL));
        assert_eq!(container_field_path(true, "x"), "spec.initContainers{x}");
        assert_eq!(container_field_path(false, "x"), "spec.containers{x}");
    }
}
