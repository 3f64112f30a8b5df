use serde_json::json;

use super::*;

fn kind(group: &str, k: &str) -> &'static KindInfo {
    crate::kinds::by_group_kind(group, k).unwrap()
}

#[test]
fn pods_get_kubernetes_defaults() {
    let mut pod = json!({"spec": {"containers": [
        {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}]},
        {"name": "b", "image": "registry:5000/app:1.2", "imagePullPolicy": "Never"},
        {"name": "c", "image": "busybox:latest"},
        {"name": "d", "image": "x@sha256:abc"}]}});
    apply(kind("", "Pod"), &mut pod);
    let c = &pod["spec"]["containers"];
    assert_eq!(c[0]["imagePullPolicy"], "Always");
    assert_eq!(c[0]["ports"][0]["protocol"], "TCP");
    assert_eq!(c[0]["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c[1]["imagePullPolicy"], "Never", "a set value is kept");
    assert_eq!(c[2]["imagePullPolicy"], "Always");
    assert_eq!(c[3]["imagePullPolicy"], "IfNotPresent");
    assert_eq!(pod["spec"]["restartPolicy"], "Always");
    assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 30);
    assert_eq!(pod["status"]["phase"], "Pending");
    assert_eq!(pod["status"]["qosClass"], "BestEffort");
}

#[test]
fn qos_classes() {
    let spec = |resources: serde_json::Value| json!({"containers": [{"name": "a", "resources": resources}]});
    for (resources, want) in [
        (json!({}), "BestEffort"),
        (
            json!({"limits": {"cpu": "1", "memory": "1Gi"}}),
            "Guaranteed",
        ),
        (
            json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}),
            "Guaranteed",
        ),
        (
            json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}),
            "Burstable",
        ),
        (json!({"requests": {"cpu": "1"}}), "Burstable"),
    ] {
        assert_eq!(qos_class(&spec(resources.clone())), want, "{resources}");
    }
}

#[test]
fn workloads_and_services() {
    let mut d =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "i:1"}]}}}});
    apply(kind("apps", "Deployment"), &mut d);
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(d["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    let mut recreate = json!({"spec": {"strategy": {"type": "Recreate"}}});
    apply(kind("apps", "Deployment"), &mut recreate);
    assert!(recreate["spec"]["strategy"].get("rollingUpdate").is_none());
    let mut job = json!({"spec": {"template": {"spec": {"containers": []}}}});
    apply(kind("batch", "Job"), &mut job);
    assert_eq!(job["spec"]["backoffLimit"], 6);
    assert!(
        job["spec"]["template"]["spec"]
            .get("restartPolicy")
            .is_none()
    );
    let mut svc = json!({"spec": {"ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}});
    apply(kind("", "Service"), &mut svc);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
    assert_eq!(svc["spec"]["ports"][1]["targetPort"], "https");
    // Odd shapes are left for validation.
    for mut odd in [
        json!(null),
        json!({"spec": 3}),
        json!({"spec": {"containers": "x"}}),
    ] {
        apply(kind("", "Pod"), &mut odd);
    }
}
