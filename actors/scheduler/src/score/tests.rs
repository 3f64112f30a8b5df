use serde_json::json;

use super::*;
use crate::fixtures::{node, on, pod, snapshot};

/// Scores `p` on every node of a snapshot of `nodes`/`pods`; compares `name -> score`.
fn check(nodes: Vec<NodeInfo>, pods: Vec<PodInfo>, p: PodInfo, expected: &[(&str, i64)]) {
    let snap = snapshot(nodes, pods);
    let pre = pre_score(&p, &snap);
    let list: Vec<&NodeInfo> = snap
        .node_names()
        .iter()
        .map(|n| snap.node(n).unwrap())
        .collect();
    let got: Vec<(String, i64)> = list
        .iter()
        .map(|n| n.name.clone())
        .zip(score(&p, &pre, &list))
        .collect();
    let want: Vec<(String, i64)> = expected.iter().map(|(n, s)| (n.to_string(), *s)).collect();
    assert_eq!(got, want);
}

#[test]
fn least_allocated_and_balanced() {
    let n = node("n", "4", "4Gi", json!({}));
    // Pod of 1 cpu / 1Gi on an empty 4/4Gi node: 75% free each, perfectly balanced.
    let p = pod("p", "1", "1Gi", json!({}));
    assert_eq!(least_allocated(&p, &n), 75);
    assert_eq!(balanced(&p, &n), 100);
    // 2 cpu / 1Gi: cpu 50%, memory 25% used -> std 0.125.
    let p = pod("p", "2", "1Gi", json!({}));
    assert_eq!(least_allocated(&p, &n), (50 + 75) / 2);
    assert_eq!(balanced(&p, &n), 87);
    // The emptier node wins.
    check(
        vec![
            node("a", "4", "4Gi", json!({})),
            node("b", "4", "4Gi", json!({})),
        ],
        vec![on(pod("x", "2", "2Gi", json!({})), "a")],
        pod("p", "1", "1Gi", json!({})),
        &[("a", 25 + 100), ("b", 75 + 100)],
    );
}

#[test]
fn preferred_node_affinity() {
    let p = pod(
        "p",
        "1",
        "1Gi",
        json!({"spec": {"affinity": {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
            {"weight": 30, "preference": {"matchExpressions": [{"key": "gen", "operator": "Exists"}]}}]}}}}),
    );
    let base = 75 + 100;
    check(
        vec![
            node(
                "a",
                "4",
                "4Gi",
                json!({"metadata": {"labels": {"disk": "ssd"}}}),
            ),
            node(
                "b",
                "4",
                "4Gi",
                json!({"metadata": {"labels": {"disk": "ssd", "gen": "1"}}}),
            ),
            node("c", "4", "4Gi", json!({})),
        ],
        vec![],
        p,
        &[
            ("a", base + 2 * 10 * 100 / 40),
            ("b", base + 2 * 100),
            ("c", base),
        ],
    );
}

#[test]
fn prefer_no_schedule_taints() {
    let base = 75 + 100;
    check(
        vec![
            node(
                "a",
                "4",
                "4Gi",
                json!({"spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}}),
            ),
            node("b", "4", "4Gi", json!({})),
        ],
        vec![],
        pod("p", "1", "1Gi", json!({})),
        &[("a", base), ("b", base + 3 * 100)],
    );
    // Tolerated: no difference.
    check(
        vec![
            node(
                "a",
                "4",
                "4Gi",
                json!({"spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}}),
            ),
            node("b", "4", "4Gi", json!({})),
        ],
        vec![],
        pod(
            "p",
            "1",
            "1Gi",
            json!({"spec": {"tolerations": [{"key": "k", "operator": "Exists"}]}}),
        ),
        &[("a", base), ("b", base)],
    );
}

#[test]
fn preferred_pod_anti_affinity_spreads() {
    let web = |name: &str| {
        pod(
            name,
            "",
            "",
            json!({"metadata": {"labels": {"app": "web"}}}),
        )
    };
    let p = pod(
        "p",
        "",
        "",
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"affinity": {"podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
            "labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}}]}}}}),
    );
    let snap = snapshot(
        vec![
            node("a", "4", "4Gi", json!({})),
            node("b", "4", "4Gi", json!({})),
        ],
        vec![on(web("w0"), "a")],
    );
    let pre = pre_score(&p, &snap);
    let list = vec![snap.node("a").unwrap(), snap.node("b").unwrap()];
    let s = score(&p, &pre, &list);
    assert!(s[1] > s[0], "{s:?}");
}

#[test]
fn schedule_anyway_spread_prefers_the_emptier_domain() {
    let p = pod(
        "p",
        "",
        "",
        json!({"metadata": {"labels": {"app": "s"}}, "spec": {"topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
         "labelSelector": {"matchLabels": {"app": "s"}}}]}}),
    );
    let s0 = pod("s0", "", "", json!({"metadata": {"labels": {"app": "s"}}}));
    let snap = snapshot(
        vec![
            node(
                "a",
                "4",
                "4Gi",
                json!({"metadata": {"labels": {"zone": "a"}}}),
            ),
            node(
                "b",
                "4",
                "4Gi",
                json!({"metadata": {"labels": {"zone": "b"}}}),
            ),
        ],
        vec![on(s0, "a")],
    );
    let pre = pre_score(&p, &snap);
    let list = vec![snap.node("a").unwrap(), snap.node("b").unwrap()];
    let s = score(&p, &pre, &list);
    assert!(s[1] > s[0], "{s:?}");
}
