//! Builders for the unit tests: nodes and pods from compact JSON.

use serde_json::{Value, json};

use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

/// A Ready node with `cpu` (e.g. "4") and `memory` (e.g. "8Gi"), 110 pods, and `extra`
/// merged into the object (labels, taints, ...).
pub fn node(name: &str, cpu: &str, memory: &str, extra: Value) -> NodeInfo {
    let mut obj = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "100Gi"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    });
    merge(&mut obj, extra);
    NodeInfo::from_value(&obj).expect("node")
}

/// A pod in `default` requesting `cpu`/`memory` ("" for none) with `extra` merged.
pub fn pod(name: &str, cpu: &str, memory: &str, extra: Value) -> PodInfo {
    let mut requests = serde_json::Map::new();
    if !cpu.is_empty() {
        requests.insert("cpu".into(), json!(cpu));
    }
    if !memory.is_empty() {
        requests.insert("memory".into(), json!(memory));
    }
    let mut obj = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": requests}}]}
    });
    merge(&mut obj, extra);
    PodInfo::from_value(&obj).expect("pod")
}

/// The same pod bound to `node`.
pub fn on(mut p: PodInfo, node: &str) -> PodInfo {
    p.node_name = node.to_string();
    p
}

/// A snapshot of `nodes` and placed `pods`.
pub fn snapshot(nodes: Vec<NodeInfo>, pods: Vec<PodInfo>) -> Snapshot {
    let mut s = Snapshot::default();
    for n in nodes {
        s.upsert_node(n);
    }
    for p in pods {
        s.place_pod(p);
    }
    s
}

/// Deep-merges `patch` into `base` (objects merge, everything else replaces).
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}
