use serde_json::json;

use super::*;
use crate::kinds::by_group_kind;

fn list(pairs: &[(&str, &str)]) -> ResourceList {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), parse_quantity(v).unwrap()))
        .collect()
}

fn rendered(l: &ResourceList) -> Vec<(String, String)> {
    l.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
}

fn check_usage(group: &str, kind: &str, obj: Value, want: &[(&str, &str)]) {
    let got = usage(by_group_kind(group, kind).unwrap(), &obj);
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(rendered(&got), want, "{obj}");
}

fn container(name: &str, requests: Value, limits: Value) -> Value {
    json!({"name": name, "image": "x", "resources": {"requests": requests, "limits": limits}})
}

#[test]
fn usage_of_objects() {
    check_usage(
        "",
        "Pod",
        json!({"spec": {"containers": [
            container("a", json!({"cpu": "100m", "memory": "64Mi"}), json!({"cpu": "200m"})),
            container("b", json!({"cpu": "400m", "nvidia.com/gpu": "1"}), json!({"memory": "1Gi"})),
        ]}}),
        &[
            ("count/pods", "1"),
            ("cpu", "500m"),
            ("limits.cpu", "200m"),
            ("limits.memory", "1Gi"),
            ("memory", "64Mi"),
            ("pods", "1"),
            ("requests.cpu", "500m"),
            ("requests.memory", "64Mi"),
            ("requests.nvidia.com/gpu", "1"),
        ],
    );
    // A terminal pod counts only as an object.
    check_usage(
        "",
        "Pod",
        json!({"spec": {"containers": [container("a", json!({"cpu": "1"}), json!({}))]},
               "status": {"phase": "Succeeded"}}),
        &[("count/pods", "1")],
    );
    // An init container larger than the sum of the app containers sets the floor;
    // a sidecar adds to the app containers; overhead adds to both.
    check_usage(
        "",
        "Pod",
        json!({"spec": {
            "initContainers": [
                container("init", json!({"cpu": "2"}), json!({})),
                {"name": "side", "image": "x", "restartPolicy": "Always",
                 "resources": {"requests": {"cpu": "100m"}}},
            ],
            "containers": [container("a", json!({"cpu": "500m"}), json!({}))],
            "overhead": {"cpu": "10m"},
        }}),
        &[
            ("count/pods", "1"),
            ("cpu", "2010m"),
            ("pods", "1"),
            ("requests.cpu", "2010m"),
        ],
    );
    check_usage(
        "",
        "Service",
        json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}}),
        &[
            ("count/services", "1"),
            ("services", "1"),
            ("services.nodeports", "2"),
        ],
    );
    check_usage(
        "",
        "PersistentVolumeClaim",
        json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "5Gi"}}}}),
        &[
            ("count/persistentvolumeclaims", "1"),
            (
                "fast.storageclass.storage.k8s.io/persistentvolumeclaims",
                "1",
            ),
            ("fast.storageclass.storage.k8s.io/requests.storage", "5Gi"),
            ("persistentvolumeclaims", "1"),
            ("requests.storage", "5Gi"),
        ],
    );
    check_usage(
        "",
        "ConfigMap",
        json!({}),
        &[("configmaps", "1"), ("count/configmaps", "1")],
    );
    check_usage(
        "apps",
        "Deployment",
        json!({}),
        &[("count/deployments.apps", "1")],
    );
}

fn check_admit(
    hard: &[(&str, &str)],
    used: &[(&str, &str)],
    delta: &[(&str, &str)],
    want: Result<Option<&[(&str, &str)]>, &str>,
) {
    let got = admit("q1", &list(hard), &list(used), &list(delta))
        .map(|o| o.map(|l| rendered(&l)))
        .map_err(|e| e.to_string());
    let want = want
        .map(|o| o.map(|l| rendered(&list(l))))
        .map_err(str::to_string);
    assert_eq!(got, want, "hard {hard:?} used {used:?} delta {delta:?}");
}

#[test]
fn admission_decisions() {
    // Fits: charged.
    check_admit(
        &[("pods", "2")],
        &[("pods", "1")],
        &[("pods", "1"), ("count/pods", "1")],
        Ok(Some(&[("pods", "2")])),
    );
    // Exceeds: Kubernetes' message, only the exceeded resources.
    check_admit(
        &[("pods", "2"), ("requests.cpu", "4")],
        &[("pods", "2"), ("requests.cpu", "1")],
        &[("pods", "1"), ("requests.cpu", "500m")],
        Err("exceeded quota: q1, requested: pods=1, used: pods=2, limited: pods=2"),
    );
    check_admit(
        &[("requests.memory", "1Gi")],
        &[("requests.memory", "768Mi")],
        &[("requests.memory", "512Mi")],
        Err(
            "exceeded quota: q1, requested: requests.memory=512Mi, used: requests.memory=768Mi, limited: requests.memory=1Gi",
        ),
    );
    // Status not computed yet: used counts as zero.
    check_admit(
        &[("configmaps", "1")],
        &[],
        &[("configmaps", "1")],
        Ok(Some(&[("configmaps", "1")])),
    );
    // Tracks nothing the object uses: not charged.
    check_admit(
        &[("services", "1")],
        &[("services", "1")],
        &[("pods", "1")],
        Ok(None),
    );
    // Exactly at the limit is allowed.
    check_admit(
        &[("requests.cpu", "1")],
        &[("requests.cpu", "500m")],
        &[("requests.cpu", "500m")],
        Ok(Some(&[("requests.cpu", "1")])),
    );
}

#[test]
fn missing_requests_named_per_resource_and_container() {
    let check = |hard: &[(&str, &str)], pod: Value, want: Option<&str>| {
        assert_eq!(
            missing_requirements(&list(hard), &pod).as_deref(),
            want,
            "{pod}"
        );
    };
    let pod = json!({"spec": {"containers": [
        container("b", json!({"cpu": "1"}), json!({})),
        container("a", json!({}), json!({})),
    ]}});
    check(
        &[("requests.cpu", "2"), ("limits.memory", "1Gi")],
        pod.clone(),
        Some("must specify limits.memory for: a,b; requests.cpu for: a"),
    );
    check(&[("pods", "2")], pod, None);
    check(
        &[("cpu", "2")],
        json!({"spec": {"containers": [container("a", json!({"cpu": "1"}), json!({}))]}}),
        None,
    );
}

#[test]
fn scopes() {
    let pod = by_group_kind("", "Pod").unwrap();
    let cm = by_group_kind("", "ConfigMap").unwrap();
    let best_effort = json!({"spec": {"containers": [{"name": "a"}], "priorityClassName": "high"}});
    let burstable =
        json!({"spec": {"containers": [container("a", json!({"cpu": "1"}), json!({}))]}});
    let check = |spec: Value, kind, obj: &Value, want: bool| {
        assert_eq!(quota_covers(Some(&spec), kind, obj), want, "{spec} {obj}");
    };
    check(json!({}), cm, &json!({}), true);
    check(json!({"scopes": ["BestEffort"]}), cm, &json!({}), false);
    check(json!({"scopes": ["BestEffort"]}), pod, &best_effort, true);
    check(json!({"scopes": ["BestEffort"]}), pod, &burstable, false);
    check(json!({"scopes": ["NotBestEffort"]}), pod, &burstable, true);
    check(json!({"scopes": ["Terminating"]}), pod, &burstable, false);
    check(json!({"scopes": ["NotTerminating"]}), pod, &burstable, true);
    let high = json!({"scopeSelector": {"matchExpressions": [
        {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}});
    check(high.clone(), pod, &best_effort, true);
    check(high, pod, &burstable, false);
}

#[test]
fn used_sums_and_counted_kinds() {
    let hard = list(&[
        ("pods", "5"),
        ("requests.cpu", "2"),
        ("count/deployments.apps", "3"),
    ]);
    let a = list(&[("pods", "1"), ("requests.cpu", "250m"), ("count/pods", "1")]);
    let b = list(&[("pods", "1"), ("count/pods", "1")]);
    assert_eq!(
        rendered(&used_from(&hard, [&a, &b])),
        rendered(&list(&[
            ("count/deployments.apps", "0"),
            ("pods", "2"),
            ("requests.cpu", "250m")
        ]))
    );
    let kinds: Vec<&str> = counted_kinds(&hard).iter().map(|k| k.kind).collect();
    assert_eq!(kinds, ["Deployment", "Pod"]);
    let sub = subtract_non_negative(
        &list(&[("requests.storage", "10Gi"), ("pods", "1")]),
        &list(&[("requests.storage", "5Gi"), ("pods", "2")]),
    );
    assert_eq!(
        rendered(&sub),
        rendered(&list(&[("pods", "0"), ("requests.storage", "5Gi")]))
    );
}
