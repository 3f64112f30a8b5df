use serde_json::{Value, json};

use super::*;
use crate::fixtures::{node, on, pod, snapshot};

/// Requests of a pod spec as (milli_cpu, memory, gpus, non-zero cpu, non-zero memory).
fn check(spec: Value, expected: (i64, i64, i64, i64, i64)) {
    let spec: k8s_openapi::api::core::v1::PodSpec = serde_json::from_value(spec).unwrap();
    let (r, nz) = pod_requests(&spec);
    let gpus = r.scalar.get("nvidia.com/gpu").copied().unwrap_or(0);
    assert_eq!((r.milli_cpu, r.memory, gpus, nz.0, nz.1), expected);
    assert_eq!(r.pods, 1);
}

fn c(name: &str, cpu: &str, mem: &str) -> Value {
    let mut req = serde_json::Map::new();
    if !cpu.is_empty() {
        req.insert("cpu".into(), json!(cpu));
    }
    if !mem.is_empty() {
        req.insert("memory".into(), json!(mem));
    }
    json!({"name": name, "image": "x", "resources": {"requests": req}})
}

#[test]
fn requests_sum_containers() {
    check(
        json!({"containers": [c("a", "100m", "1Mi"), c("b", "250m", "2Mi")]}),
        (350, 3 << 20, 0, 350, 3 << 20),
    );
}

#[test]
fn requests_take_the_larger_init_container() {
    check(
        json!({"containers": [c("a", "100m", "1Mi")], "initContainers": [c("i", "2", "1Mi")]}),
        (2000, 1 << 20, 0, 2000, 1 << 20),
    );
}

#[test]
fn requests_add_sidecars_to_containers_and_later_inits() {
    let mut sidecar = c("s", "500m", "");
    sidecar["restartPolicy"] = json!("Always");
    // sidecar 500m runs next to the app (100m) = 600m; the init after it peaks 500+300.
    check(
        json!({"containers": [c("a", "100m", "")],
               "initContainers": [sidecar, c("i", "300m", "")]}),
        (800, 0, 0, 800, 2 * DEFAULT_MEMORY_REQUEST),
    );
}

#[test]
fn requests_add_overhead() {
    check(
        json!({"containers": [c("a", "100m", "1Mi")], "overhead": {"cpu": "50m", "memory": "1Mi"}}),
        (150, 2 << 20, 0, 150, 2 << 20),
    );
}

#[test]
fn requests_count_extended_resources() {
    check(
        json!({"containers": [{"name": "a", "image": "x",
            "resources": {"requests": {"nvidia.com/gpu": "2"}}}]}),
        (0, 0, 2, DEFAULT_MILLI_CPU_REQUEST, DEFAULT_MEMORY_REQUEST),
    );
}

#[test]
fn placing_and_removing_pods_keeps_sums() {
    let mut s = snapshot(vec![node("n1", "4", "8Gi", json!({}))], vec![]);
    s.place_pod(on(pod("a", "1", "1Gi", json!({})), "n1"));
    s.place_pod(on(pod("b", "500m", "", json!({})), "n1"));
    let n = s.node("n1").unwrap();
    assert_eq!(n.requested.milli_cpu, 1500);
    assert_eq!(n.requested.memory, 1 << 30);
    assert_eq!(n.pods.len(), 2);
    // Replacing a pod (assumed -> confirmed) does not double count.
    s.place_pod(on(pod("a", "1", "1Gi", json!({})), "n1"));
    assert_eq!(s.node("n1").unwrap().requested.milli_cpu, 1500);
    s.remove_pod("default/a");
    assert_eq!(s.node("n1").unwrap().requested.milli_cpu, 500);
    // A finished pod leaves its node.
    let mut done = on(pod("b", "500m", "", json!({})), "n1");
    done.finished = true;
    s.place_pod(done);
    assert_eq!(s.node("n1").unwrap().requested, Resources::default());
}

#[test]
fn pods_on_unknown_nodes_wait_for_the_node() {
    let mut s = snapshot(vec![], vec![on(pod("a", "1", "", json!({})), "later")]);
    assert!(s.node_names().is_empty());
    s.upsert_node(node("later", "4", "8Gi", json!({})));
    assert_eq!(s.node_names(), ["later".to_string()]);
    assert_eq!(s.node("later").unwrap().requested.milli_cpu, 1000);
    s.remove_node("later");
    assert!(s.node_names().is_empty());
    assert_eq!(s.node_of("default/a"), Some("later"));
}

#[test]
fn not_ready_nodes_carry_the_not_ready_taint() {
    let n = node(
        "n1",
        "4",
        "8Gi",
        json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
    );
    assert_eq!(n.taints.len(), 1);
    assert_eq!(n.taints[0].key, TAINT_NOT_READY);
}
