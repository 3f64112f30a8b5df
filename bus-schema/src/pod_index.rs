//! Wire types of the pod index: the control-plane service that lets a node agent see only
//! the pods bound to it (`spec.nodeName`), instead of every pod change in the cluster.
//!
//! Why not a JetStream consumer per node: the pods bucket is keyed by `<namespace>.<name>`,
//! so a consumer cannot filter on the node, and a second, node-keyed bucket would cost a
//! second fsynced write per binding. The index instead follows the pods bucket once (one
//! consumer for the whole cluster) and fans changes out per node over core NATS:
//!
//! - `drover.podindex.<node>.events` carries [`PodIndexEvent`]s. Each node's events are
//!   numbered `1, 2, 3…` within an *epoch* (a random id the index picks whenever it
//!   (re)builds its state). A receiver that sees a gap or a new epoch re-lists.
//! - `drover.podindex.<node>.list` answers a [`PodIndexListRequest`] with a
//!   [`PodIndexPage`] (paged by key; `limit: 0` returns only the epoch and sequence, a
//!   cheap check that nothing was missed).
//! - `drover.podindex.resync` is broadcast when the index starts: agents re-list, so pods
//!   bound while no index ran are not missed.
//!
//! Every event carries the full object, whose `resourceVersion` lets a receiver that
//! merges a paged list with concurrent events keep the newest state of each pod.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Pods per list page unless the request asks for fewer.
pub const DEFAULT_PAGE: u32 = 256;

/// A request for one page of a node's pods.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodIndexListRequest {
    /// Resume after this key (`<namespace>/<name>`), from the previous page's `next`.
    pub after: Option<String>,
    /// Pods per page; 0 returns no pods, only the epoch and sequence.
    pub limit: u32,
}

/// One page of a node's pods.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodIndexPage {
    /// The index's current epoch.
    pub epoch: String,
    /// The node's last event sequence number when this page was taken.
    pub seq: u64,
    /// The pods, ordered by key.
    pub items: Vec<Value>,
    /// Key to pass as `after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// One change of a pod bound to the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodIndexEvent {
    /// The index's epoch.
    pub epoch: String,
    /// This event's number within the node and epoch (the first is 1).
    pub seq: u64,
    /// What changed.
    pub change: PodIndexChange,
}

/// What happened to a pod, from the node's point of view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PodIndexChange {
    /// The pod is bound to the node and this is its newest state.
    Upsert(Value),
    /// The pod is no longer the node's: deleted, or (never in Kubernetes, but possible
    /// with a raw store write) bound elsewhere. This is its last state.
    Removed(Value),
}

/// The index key of a pod: `<namespace>/<name>`.
pub fn pod_key(pod: &Value) -> String {
    let meta = pod.get("metadata");
    let field = |f: &str| {
        meta.and_then(|m| m.get(f))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    format!("{}/{}", field("namespace"), field("name"))
}

/// `spec.nodeName` of a pod, when it is bound.
pub fn node_name(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope;
    use serde_json::json;

    #[test]
    fn events_round_trip_through_messagepack() {
        let pod = json!({"metadata": {"name": "a", "namespace": "ns", "resourceVersion": "7",
            "labels": {"x": "1"}}, "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "ratio": 0.5, "n": -3}});
        for change in [
            PodIndexChange::Upsert(pod.clone()),
            PodIndexChange::Removed(pod.clone()),
        ] {
            let event = PodIndexEvent {
                epoch: "e".into(),
                seq: 3,
                change,
            };
            let bytes = envelope::encode_body(&event).unwrap();
            let back: PodIndexEvent = envelope::decode_body(&bytes).unwrap();
            assert_eq!(back, event);
        }
        let page = PodIndexPage {
            epoch: "e".into(),
            seq: 9,
            items: vec![pod.clone()],
            next: Some("ns/a".into()),
        };
        let bytes = envelope::encode_body(&page).unwrap();
        assert_eq!(envelope::decode_body::<PodIndexPage>(&bytes).unwrap(), page);
        assert_eq!(pod_key(&pod), "ns/a");
        assert_eq!(node_name(&pod), Some("n1"));
        assert_eq!(node_name(&json!({"spec": {"nodeName": ""}})), None);
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(envelope::decode_body::<PodIndexEvent>(b"\xc1\x00garbage").is_err());
        assert!(envelope::decode_body::<PodIndexPage>(&[]).is_err());
    }
}
