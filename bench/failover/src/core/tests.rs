use super::*;
use serde_json::json;

fn pod(node: &str, running: bool, terminating: bool) -> PodState {
    PodState {
        node: node.into(),
        running,
        terminating,
    }
}

fn check(pods: &[(&str, PodState)], dead: &[&str], want: usize, expected: bool) {
    let pods: BTreeMap<String, PodState> = pods
        .iter()
        .map(|(n, p)| (n.to_string(), p.clone()))
        .collect();
    let dead: Vec<String> = dead.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        failed_over(&pods, &dead, want),
        expected,
        "{pods:?}, dead {dead:?}, want {want}"
    );
}

#[test]
fn failover_needs_want_serving_pods_off_dead_nodes() {
    // All running on live nodes.
    check(
        &[("a", pod("n1", true, false)), ("b", pod("n2", true, false))],
        &[],
        2,
        true,
    );
    // One still on the dead node (not yet evicted): not done.
    check(
        &[("a", pod("n1", true, false)), ("b", pod("n2", true, false))],
        &["n2"],
        2,
        false,
    );
    // Evicted (terminating) on the dead node, replacement not Running yet.
    check(
        &[
            ("a", pod("n1", true, false)),
            ("b", pod("n2", true, true)),
            ("c", pod("n3", false, false)),
        ],
        &["n2"],
        2,
        false,
    );
    // Replacement Running: done, the terminating leftover does not count.
    check(
        &[
            ("a", pod("n1", true, false)),
            ("b", pod("n2", true, true)),
            ("c", pod("n3", true, false)),
        ],
        &["n2"],
        2,
        true,
    );
    // A terminating pod on a live node does not count.
    check(
        &[("a", pod("n1", true, true)), ("b", pod("n3", true, false))],
        &["n2"],
        2,
        false,
    );
    // Unbound pods do not count.
    check(
        &[("a", pod("", false, false)), ("b", pod("n3", true, false))],
        &[],
        2,
        false,
    );
}

#[test]
fn pod_state_reads_the_deployments_pods_only() {
    let p = json!({"metadata": {"labels": {"app": "bench"}, "deletionTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
    assert_eq!(pod_state(&p, "bench"), Some(pod("n1", true, true)));
    let pending = json!({"metadata": {"labels": {"app": "bench"}}, "spec": {}});
    assert_eq!(pod_state(&pending, "bench"), Some(pod("", false, false)));
    let other = json!({"metadata": {"labels": {"app": "other"}}, "spec": {"nodeName": "n1"}});
    assert_eq!(pod_state(&other, "bench"), None);
}

#[test]
fn nodes_with_pods_counts_serving_pods_on_live_nodes() {
    let pods: BTreeMap<String, PodState> = [
        ("a", pod("n1", true, false)),
        ("b", pod("n1", true, false)),
        ("c", pod("n2", true, false)),
        ("d", pod("n3", false, false)),
        ("e", pod("n4", true, true)),
    ]
    .into_iter()
    .map(|(n, p)| (n.to_string(), p))
    .collect();
    let got = nodes_with_pods(&pods, &["n2".to_string()]);
    assert_eq!(got, BTreeMap::from([("n1".to_string(), 2)]));
}

#[test]
fn unreachable_taint_needs_the_noexecute_effect() {
    let key = drover_controllers::nodelifecycle::core::UNREACHABLE_TAINT_KEY;
    let tainted = json!({"spec": {"taints": [{"key": key, "effect": "NoSchedule"}, {"key": key, "effect": "NoExecute"}]}});
    assert!(has_unreachable_taint(&tainted));
    let no_schedule = json!({"spec": {"taints": [{"key": key, "effect": "NoSchedule"}]}});
    assert!(!has_unreachable_taint(&no_schedule));
    assert!(!has_unreachable_taint(&json!({"spec": {}})));
}
