use serde_json::json;

use super::*;
use crate::fixtures::{node, on, pod, snapshot};
use crate::snapshot::NodeInfo;

/// Filters `pod` against node `target` of a snapshot of `nodes` and placed `pods`.
fn check(nodes: Vec<NodeInfo>, pods: Vec<PodInfo>, p: PodInfo, target: &str, expected: &[Reason]) {
    let snap = snapshot(nodes, pods);
    let state = pre_filter(&p, &snap).expect("pre-filter");
    let got = filter(&p, &state, snap.node(target).unwrap(), None);
    assert_eq!(got, expected, "pod {} on {target}", p.name);
}

fn plain(name: &str) -> NodeInfo {
    node(name, "4", "8Gi", json!({}))
}

fn zone(name: &str, zone: &str) -> NodeInfo {
    node(
        name,
        "4",
        "8Gi",
        json!({"metadata": {"labels": {"zone": zone}}}),
    )
}

#[test]
fn resources() {
    check(
        vec![plain("n")],
        vec![],
        pod("p", "4", "8Gi", json!({})),
        "n",
        &[],
    );
    check(
        vec![plain("n")],
        vec![on(pod("a", "3", "", json!({})), "n")],
        pod("p", "2", "9Gi", json!({})),
        "n",
        &[
            Reason::Insufficient("cpu".into()),
            Reason::Insufficient("memory".into()),
        ],
    );
    // A pod without requests always fits resources.
    check(
        vec![plain("n")],
        vec![on(pod("a", "4", "8Gi", json!({})), "n")],
        pod("p", "", "", json!({})),
        "n",
        &[],
    );
    let gpu_pod = pod(
        "p",
        "",
        "",
        json!({"spec": {"containers": [{"name": "c", "image": "x",
        "resources": {"requests": {"nvidia.com/gpu": "1"}}}]}}),
    );
    check(
        vec![plain("n")],
        vec![],
        gpu_pod.clone(),
        "n",
        &[Reason::Insufficient("nvidia.com/gpu".into())],
    );
    let gpu_node = node(
        "g",
        "4",
        "8Gi",
        json!({"status": {"allocatable": {"nvidia.com/gpu": "1"}}}),
    );
    check(vec![gpu_node], vec![], gpu_pod, "g", &[]);
    let storage = pod(
        "p",
        "",
        "",
        json!({"spec": {"containers": [{"name": "c", "image": "x",
        "resources": {"requests": {"ephemeral-storage": "200Gi"}}}]}}),
    );
    check(
        vec![plain("n")],
        vec![],
        storage,
        "n",
        &[Reason::Insufficient("ephemeral-storage".into())],
    );
    let full = node(
        "f",
        "4",
        "8Gi",
        json!({"status": {"allocatable": {"pods": "1"}}}),
    );
    check(
        vec![full],
        vec![on(pod("a", "", "", json!({})), "f")],
        pod("p", "", "", json!({})),
        "f",
        &[Reason::TooManyPods],
    );
}

#[test]
fn node_selector_and_affinity() {
    let ssd = node(
        "s",
        "4",
        "8Gi",
        json!({"metadata": {"labels": {"disktype": "ssd", "gen": "5"}}}),
    );
    let sel = pod(
        "p",
        "",
        "",
        json!({"spec": {"nodeSelector": {"disktype": "ssd"}}}),
    );
    check(vec![ssd.clone()], vec![], sel.clone(), "s", &[]);
    check(vec![plain("n")], vec![], sel, "n", &[Reason::NodeAffinity]);
    let affinity = |op: &str, values: Value| {
        pod(
            "p",
            "",
            "",
            json!({"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "gen", "operator": op, "values": values}]}]}}}}}),
        )
    };
    check(
        vec![ssd.clone()],
        vec![],
        affinity("In", json!(["5", "6"])),
        "s",
        &[],
    );
    check(
        vec![ssd.clone()],
        vec![],
        affinity("NotIn", json!(["5"])),
        "s",
        &[Reason::NodeAffinity],
    );
    check(
        vec![ssd.clone()],
        vec![],
        affinity("Gt", json!(["4"])),
        "s",
        &[],
    );
    check(
        vec![ssd.clone()],
        vec![],
        affinity("Lt", json!(["4"])),
        "s",
        &[Reason::NodeAffinity],
    );
    check(
        vec![ssd.clone()],
        vec![],
        affinity("Exists", json!([])),
        "s",
        &[],
    );
    check(
        vec![plain("n")],
        vec![],
        affinity("DoesNotExist", json!([])),
        "n",
        &[],
    );
    // matchFields on metadata.name.
    let by_name = pod(
        "p",
        "",
        "",
        json!({"spec": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["s"]}]}]}}}}}),
    );
    check(
        vec![ssd, plain("n")],
        vec![],
        by_name,
        "n",
        &[Reason::NodeAffinity],
    );
}

use serde_json::Value;

#[test]
fn taints_and_tolerations() {
    let gpu = node(
        "g",
        "4",
        "8Gi",
        json!({"spec": {"taints": [
        {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
    );
    let untolerated = vec![Reason::UntoleratedTaint {
        key: "dedicated".into(),
        value: "gpu".into(),
    }];
    check(
        vec![gpu.clone()],
        vec![],
        pod("p", "", "", json!({})),
        "g",
        &untolerated,
    );
    let tol = |t: Value| pod("p", "", "", json!({"spec": {"tolerations": [t]}}));
    check(
        vec![gpu.clone()],
        vec![],
        tol(json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"})),
        "g",
        &[],
    );
    check(
        vec![gpu.clone()],
        vec![],
        tol(json!({"key": "dedicated", "operator": "Exists"})),
        "g",
        &[],
    );
    check(
        vec![gpu.clone()],
        vec![],
        tol(json!({"operator": "Exists"})),
        "g",
        &[],
    );
    check(
        vec![gpu.clone()],
        vec![],
        tol(json!({"key": "dedicated", "value": "cpu"})),
        "g",
        &untolerated,
    );
    check(
        vec![gpu.clone()],
        vec![],
        tol(json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"})),
        "g",
        &untolerated,
    );
    // PreferNoSchedule never filters.
    let soft = node(
        "s",
        "4",
        "8Gi",
        json!({"spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}}),
    );
    check(vec![soft], vec![], pod("p", "", "", json!({})), "s", &[]);
    // NoExecute filters too.
    let evict = node(
        "e",
        "4",
        "8Gi",
        json!({"spec": {"taints": [{"key": "k", "effect": "NoExecute"}]}}),
    );
    check(
        vec![evict],
        vec![],
        pod("p", "", "", json!({})),
        "e",
        &[Reason::UntoleratedTaint {
            key: "k".into(),
            value: "".into(),
        }],
    );
    // NotReady: the implied not-ready taint.
    let down = node(
        "d",
        "4",
        "8Gi",
        json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
    );
    check(
        vec![down.clone()],
        vec![],
        pod("p", "", "", json!({})),
        "d",
        &[Reason::UntoleratedTaint {
            key: "node.kubernetes.io/not-ready".into(),
            value: "".into(),
        }],
    );
    check(
        vec![down],
        vec![],
        tol(json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists"})),
        "d",
        &[],
    );
}

#[test]
fn cordoned_nodes() {
    let cordoned = node("c", "4", "8Gi", json!({"spec": {"unschedulable": true}}));
    check(
        vec![cordoned.clone()],
        vec![],
        pod("p", "", "", json!({})),
        "c",
        &[Reason::Unschedulable],
    );
    let tolerant = pod(
        "p",
        "",
        "",
        json!({"spec": {"tolerations": [
        {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}),
    );
    check(vec![cordoned], vec![], tolerant, "c", &[]);
}

fn labelled(name: &str, app: &str) -> PodInfo {
    pod(name, "", "", json!({"metadata": {"labels": {"app": app}}}))
}

fn anti(name: &str, app: &str, key: &str) -> PodInfo {
    pod(
        name,
        "",
        "",
        json!({"metadata": {"labels": {"app": app}}, "spec": {"affinity": {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]}}}}),
    )
}

fn affine(name: &str, app: &str, to: &str, key: &str) -> PodInfo {
    pod(
        name,
        "",
        "",
        json!({"metadata": {"labels": {"app": app}}, "spec": {"affinity": {"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": to}}, "topologyKey": key}]}}}}),
    )
}

#[test]
fn pod_anti_affinity() {
    let nodes = || vec![zone("a1", "a"), zone("a2", "a"), zone("b1", "b")];
    let existing = || vec![on(labelled("w0", "web"), "a1")];
    check(
        nodes(),
        existing(),
        anti("w1", "web", "kubernetes.io/hostname"),
        "a1",
        &[Reason::PodAntiAffinity],
    );
    check(
        nodes(),
        existing(),
        anti("w1", "web", "kubernetes.io/hostname"),
        "a2",
        &[],
    );
    check(
        nodes(),
        existing(),
        anti("w1", "web", "zone"),
        "a2",
        &[Reason::PodAntiAffinity],
    );
    check(nodes(), existing(), anti("w1", "web", "zone"), "b1", &[]);
    // Another namespace does not count.
    let mut other_ns = labelled("w0", "web");
    other_ns.namespace = "other".into();
    check(
        nodes(),
        vec![on(other_ns, "a1")],
        anti("w1", "web", "zone"),
        "a1",
        &[],
    );
    // The existing pod's anti-affinity rejects a matching newcomer.
    check(
        nodes(),
        vec![on(anti("w0", "web", "zone"), "a1")],
        labelled("w1", "web"),
        "a2",
        &[Reason::ExistingAntiAffinity],
    );
    check(
        nodes(),
        vec![on(anti("w0", "web", "zone"), "a1")],
        labelled("w1", "web"),
        "b1",
        &[],
    );
}

#[test]
fn pod_affinity() {
    let nodes = || vec![zone("a1", "a"), zone("b1", "b"), plain("x")];
    let db = || vec![on(labelled("db", "db"), "a1")];
    check(nodes(), db(), affine("web", "web", "db", "zone"), "a1", &[]);
    check(
        nodes(),
        db(),
        affine("web", "web", "db", "zone"),
        "b1",
        &[Reason::PodAffinity],
    );
    // A node without the topology key never satisfies affinity.
    check(
        nodes(),
        db(),
        affine("web", "web", "db", "zone"),
        "x",
        &[Reason::PodAffinity],
    );
    // Impossible affinity: nothing matches anywhere.
    check(
        nodes(),
        vec![],
        affine("web", "web", "nothing", "zone"),
        "a1",
        &[Reason::PodAffinity],
    );
    // The first pod of a group affine to itself may go anywhere.
    check(
        nodes(),
        vec![],
        affine("c0", "cache", "cache", "zone"),
        "b1",
        &[],
    );
}

fn spread(name: &str, key: &str, skew: i32, when: &str) -> PodInfo {
    pod(
        name,
        "",
        "",
        json!({"metadata": {"labels": {"app": "s"}}, "spec": {"topologySpreadConstraints": [
        {"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when,
         "labelSelector": {"matchLabels": {"app": "s"}}}]}}),
    )
}

#[test]
fn topology_spread() {
    let nodes = || {
        vec![
            zone("a1", "a"),
            zone("a2", "a"),
            zone("b1", "b"),
            plain("x"),
        ]
    };
    let two_in_a = || vec![on(labelled("s0", "s"), "a1"), on(labelled("s1", "s"), "a2")];
    // a has 2, b has 0: one more in a would make skew 3 > 1.
    check(
        nodes(),
        two_in_a(),
        spread("s2", "zone", 1, "DoNotSchedule"),
        "a1",
        &[Reason::TopologySpread],
    );
    check(
        nodes(),
        two_in_a(),
        spread("s2", "zone", 1, "DoNotSchedule"),
        "b1",
        &[],
    );
    check(
        nodes(),
        two_in_a(),
        spread("s2", "zone", 3, "DoNotSchedule"),
        "a1",
        &[],
    );
    check(
        nodes(),
        two_in_a(),
        spread("s2", "zone", 1, "DoNotSchedule"),
        "x",
        &[Reason::TopologySpreadMissingLabel],
    );
    // ScheduleAnyway only scores.
    check(
        nodes(),
        two_in_a(),
        spread("s2", "zone", 1, "ScheduleAnyway"),
        "a1",
        &[],
    );
}

#[test]
fn volume_node_affinity() {
    let nodes = vec![plain("n1"), plain("n2")];
    let mut snap = snapshot(nodes, vec![]);
    snap.upsert_claim(&json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "default"}, "spec": {"volumeName": "pv1"}}));
    snap.upsert_claim(&json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "fresh", "namespace": "default"}, "spec": {}}));
    snap.upsert_volume(&json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "pv1"}, "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}}));
    let with = |claim: &str| {
        pod(
            "p",
            "",
            "",
            json!({"spec": {"volumes": [
        {"name": "v", "persistentVolumeClaim": {"claimName": claim}}]}}),
        )
    };
    let p = with("data");
    let state = pre_filter(&p, &snap).unwrap();
    assert_eq!(filter(&p, &state, snap.node("n1").unwrap(), None), vec![]);
    assert_eq!(
        filter(&p, &state, snap.node("n2").unwrap(), None),
        vec![Reason::VolumeNodeAffinity]
    );
    // An unbound claim (provisioned where the pod lands) fits anywhere.
    let p = with("fresh");
    let state = pre_filter(&p, &snap).unwrap();
    assert_eq!(filter(&p, &state, snap.node("n2").unwrap(), None), vec![]);
    assert_eq!(
        pre_filter(&with("missing"), &snap).unwrap_err(),
        "persistentvolumeclaim \"missing\" not found"
    );
}

#[test]
fn nominated_pods_hold_their_room() {
    let snap = snapshot(vec![plain("n")], vec![]);
    let p = pod("p", "3", "", json!({}));
    let state = pre_filter(&p, &snap).unwrap();
    let held = Resources {
        milli_cpu: 2000,
        pods: 1,
        ..Default::default()
    };
    assert_eq!(
        filter(&p, &state, snap.node("n").unwrap(), Some(&held)),
        vec![Reason::Insufficient("cpu".into())]
    );
}

#[test]
fn reasons_print_like_kubernetes() {
    let cases = [
        (Reason::Insufficient("cpu".into()), "Insufficient cpu"),
        (Reason::TooManyPods, "Too many pods"),
        (
            Reason::NodeAffinity,
            "node(s) didn't match Pod's node affinity/selector",
        ),
        (
            Reason::UntoleratedTaint {
                key: "dedicated".into(),
                value: "gpu".into(),
            },
            "node(s) had untolerated taint {dedicated: gpu}",
        ),
        (Reason::Unschedulable, "node(s) were unschedulable"),
        (
            Reason::ExistingAntiAffinity,
            "node(s) didn't satisfy existing pods anti-affinity rules",
        ),
        (
            Reason::PodAffinity,
            "node(s) didn't match pod affinity rules",
        ),
        (
            Reason::PodAntiAffinity,
            "node(s) didn't match pod anti-affinity rules",
        ),
        (
            Reason::TopologySpread,
            "node(s) didn't match pod topology spread constraints",
        ),
        (
            Reason::TopologySpreadMissingLabel,
            "node(s) didn't match pod topology spread constraints (missing required label)",
        ),
        (
            Reason::VolumeNodeAffinity,
            "node(s) had volume node affinity conflict",
        ),
    ];
    for (r, s) in cases {
        assert_eq!(r.to_string(), s);
    }
}
