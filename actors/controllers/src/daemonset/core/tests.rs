use super::*;
use serde_json::json;

fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        taints: taints
            .iter()
            .map(|(k, e)| Taint {
                key: k.to_string(),
                effect: e.to_string(),
                ..Taint::default()
            })
            .collect(),
    }
}

fn spec(v: serde_json::Value) -> PodSpec {
    serde_json::from_value(v).unwrap()
}

fn check_fit(spec: &PodSpec, node: &NodeInfo, should_run: bool, should_continue: bool) {
    assert_eq!(
        fit(spec, node),
        Fit {
            should_run,
            should_continue
        },
        "{spec:?} on {node:?}"
    );
}

#[test]
fn which_nodes_run_a_daemon_pod() {
    let plain = spec(json!({"containers": []}));
    let ssd = spec(json!({"containers": [], "nodeSelector": {"disk": "ssd"}}));
    let tolerant = spec(
        json!({"containers": [], "tolerations": [{"key": "dedicated", "operator": "Exists"}]}),
    );
    let affinity = spec(json!({"containers": [], "affinity": {"nodeAffinity": {
    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]}
    ]}}}}));
    check_fit(&plain, &node("n", &[], &[]), true, true);
    check_fit(&ssd, &node("n", &[("disk", "ssd")], &[]), true, true);
    check_fit(&ssd, &node("n", &[("disk", "hdd")], &[]), false, false);
    check_fit(
        &plain,
        &node("n", &[], &[("dedicated", "NoSchedule")]),
        false,
        true,
    );
    check_fit(
        &plain,
        &node("n", &[], &[("dedicated", "NoExecute")]),
        false,
        false,
    );
    check_fit(
        &plain,
        &node("n", &[], &[("dedicated", "PreferNoSchedule")]),
        true,
        true,
    );
    check_fit(
        &tolerant,
        &node("n", &[], &[("dedicated", "NoExecute")]),
        true,
        true,
    );
    // The default daemon tolerations.
    check_fit(
        &plain,
        &node("n", &[], &[("node.kubernetes.io/not-ready", "NoExecute")]),
        true,
        true,
    );
    check_fit(
        &plain,
        &node(
            "n",
            &[],
            &[("node.kubernetes.io/unschedulable", "NoSchedule")],
        ),
        true,
        true,
    );
    check_fit(
        &plain,
        &node(
            "n",
            &[],
            &[("node.kubernetes.io/disk-pressure", "NoSchedule")],
        ),
        true,
        true,
    );
    check_fit(
        &plain,
        &node(
            "n",
            &[],
            &[("node.kubernetes.io/network-unavailable", "NoSchedule")],
        ),
        false,
        true,
    );
    check_fit(&affinity, &node("n", &[("zone", "b")], &[]), true, true);
    check_fit(&affinity, &node("n", &[("zone", "c")], &[]), false, false);
    check_fit(&affinity, &node("special", &[], &[]), true, true);
}

fn pod(name: &str, node: &str, hash: &str, state: &str) -> DaemonPod {
    DaemonPod {
        name: name.into(),
        node: node.into(),
        hash: hash.into(),
        terminating: state == "T",
        failed: state == "F",
        ready: state == "R",
        available: state == "R",
        created: name.into(),
    }
}

fn nodes(spec: &[(&str, bool, bool)]) -> BTreeMap<String, Fit> {
    spec.iter()
        .map(|(n, r, c)| {
            (
                n.to_string(),
                Fit {
                    should_run: *r,
                    should_continue: *c,
                },
            )
        })
        .collect()
}

fn check(
    nodes: BTreeMap<String, Fit>,
    pods: &[DaemonPod],
    strategy: Strategy,
    create: &[&str],
    delete: &[&str],
) {
    let p = plan(&nodes, pods, "new", strategy);
    assert_eq!(p.create, create, "create, pods {pods:?}");
    assert_eq!(p.delete, delete, "delete, pods {pods:?}");
}

const RU1: Strategy = Strategy::RollingUpdate { max_unavailable: 1 };

#[test]
fn creates_and_deletes() {
    let three = nodes(&[("a", true, true), ("b", true, true), ("c", false, false)]);
    check(three.clone(), &[], RU1, &["a", "b"], &[]);
    check(
        three.clone(),
        &[pod("p1", "a", "new", "R")],
        RU1,
        &["b"],
        &[],
    );
    // Misscheduled (selector no longer matches) and vanished nodes lose their pod.
    check(
        three.clone(),
        &[
            pod("p1", "a", "new", "R"),
            pod("p2", "b", "new", "R"),
            pod("p3", "c", "new", "R"),
            pod("p4", "gone", "new", "R"),
        ],
        RU1,
        &[],
        &["p4", "p3"],
    );
    // Failed pods are replaced; a terminating one is waited for.
    check(
        three.clone(),
        &[pod("p1", "a", "new", "F"), pod("p2", "b", "new", "T")],
        RU1,
        &[],
        &["p1"],
    );
    // Two on one node: the younger goes.
    check(
        three.clone(),
        &[
            pod("p1", "a", "new", "R"),
            pod("p2", "a", "new", "R"),
            pod("p3", "b", "new", "R"),
        ],
        RU1,
        &[],
        &["p2"],
    );
    // A NoSchedule taint keeps the pod that runs, without creating one.
    check(
        nodes(&[("a", false, true)]),
        &[pod("p1", "a", "new", "R")],
        RU1,
        &[],
        &[],
    );
    check(nodes(&[("a", false, true)]), &[], RU1, &[], &[]);
}

#[test]
fn rolling_update_respects_max_unavailable() {
    let three = nodes(&[("a", true, true), ("b", true, true), ("c", true, true)]);
    let old = |n: &str, node: &str| pod(n, node, "old", "R");
    check(
        three.clone(),
        &[old("p1", "a"), old("p2", "b"), old("p3", "c")],
        RU1,
        &[],
        &["p1"],
    );
    // One node already lacks an available pod: no budget left.
    check(
        three.clone(),
        &[old("p2", "b"), old("p3", "c")],
        RU1,
        &["a"],
        &[],
    );
    check(
        three.clone(),
        &[pod("p1", "a", "new", "P"), old("p2", "b"), old("p3", "c")],
        RU1,
        &[],
        &[],
    );
    check(
        three.clone(),
        &[pod("p1", "a", "new", "R"), old("p2", "b"), old("p3", "c")],
        RU1,
        &[],
        &["p2"],
    );
    check(
        three.clone(),
        &[old("p1", "a"), old("p2", "b"), old("p3", "c")],
        Strategy::RollingUpdate { max_unavailable: 2 },
        &[],
        &["p1", "p2"],
    );
    // An old pod that is not available is replaced at no cost.
    check(
        three.clone(),
        &[pod("p1", "a", "old", "P"), old("p2", "b"), old("p3", "c")],
        RU1,
        &[],
        &["p1"],
    );
    check(
        three,
        &[old("p1", "a"), old("p2", "b"), old("p3", "c")],
        Strategy::OnDelete,
        &[],
        &[],
    );
}

#[test]
fn status_counts() {
    let n = nodes(&[("a", true, true), ("b", true, true), ("c", false, true)]);
    let c = counts(
        &n,
        &[
            pod("p1", "a", "new", "R"),
            pod("p2", "b", "old", "P"),
            pod("p3", "c", "new", "R"),
        ],
        "new",
    );
    assert_eq!(
        c,
        Counts {
            desired: 2,
            current: 2,
            misscheduled: 1,
            ready: 1,
            updated: 1,
            available: 1,
            unavailable: 1
        }
    );
}

#[test]
fn max_unavailable_values() {
    assert_eq!(resolve_max_unavailable(None, 10), Some(1));
    assert_eq!(resolve_max_unavailable(Some(&json!(3)), 10), Some(3));
    assert_eq!(resolve_max_unavailable(Some(&json!("25%")), 10), Some(3));
    assert_eq!(resolve_max_unavailable(Some(&json!("x")), 10), None);
    assert_eq!(resolve_max_unavailable(Some(&json!(-1)), 10), None);
}
