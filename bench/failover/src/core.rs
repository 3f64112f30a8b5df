//! The bench's decisions without I/O: what a pod event means for the trial, when the
//! failover is complete.

use std::collections::BTreeMap;

use serde_json::Value;

/// What the bench tracks of one pod of the Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodState {
    /// `spec.nodeName` ("" while unbound).
    pub node: String,
    /// `status.phase` is Running.
    pub running: bool,
    /// It has a `deletionTimestamp`.
    pub terminating: bool,
}

/// The tracked state of a pod object, or `None` when it is not the Deployment's (no
/// `app=<app>` label).
pub fn pod_state(pod: &Value, app: &str) -> Option<PodState> {
    if pod.pointer("/metadata/labels/app").and_then(Value::as_str) != Some(app) {
        return None;
    }
    Some(PodState {
        node: pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        running: pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running"),
        terminating: pod.pointer("/metadata/deletionTimestamp").is_some(),
    })
}

/// The failover is complete when `want` pods are Running, not terminating and on live
/// nodes. Pods evicted from a dead node stay terminating there (no agent finishes them),
/// as in Kubernetes, so they are not counted either way.
pub fn failed_over(pods: &BTreeMap<String, PodState>, dead: &[String], want: usize) -> bool {
    let serving = pods
        .values()
        .filter(|p| p.running && !p.terminating && !dead.contains(&p.node))
        .count();
    serving >= want
}

/// The live nodes running at least one serving pod of the Deployment, with how many.
pub fn nodes_with_pods(
    pods: &BTreeMap<String, PodState>,
    dead: &[String],
) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for p in pods.values() {
        if p.running && !p.terminating && !p.node.is_empty() && !dead.contains(&p.node) {
            *out.entry(p.node.clone()).or_insert(0) += 1;
        }
    }
    out
}

/// Whether a Node object carries the unreachable NoExecute taint.
pub fn has_unreachable_taint(node: &Value) -> bool {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|t| {
            t.get("key").and_then(Value::as_str)
                == Some(drover_controllers::nodelifecycle::core::UNREACHABLE_TAINT_KEY)
                && t.get("effect").and_then(Value::as_str) == Some("NoExecute")
        })
}

#[cfg(test)]
mod tests;
