use serde_json::json;

use super::*;

fn range(limits: Value) -> Vec<Value> {
    vec![json!({"metadata": {"name": "lr"}, "spec": {"limits": limits}})]
}

fn pod(containers: Value) -> Value {
    json!({"metadata": {"name": "p"}, "spec": {"containers": containers}})
}

fn check_defaults(ranges: &[Value], containers: Value, want: Value) {
    let mut p = pod(containers);
    default_pod(&mut p, ranges);
    assert_eq!(p["spec"]["containers"], want);
}

#[test]
fn defaults() {
    let lr = range(json!([{"type": "Container",
        "default": {"cpu": "500m", "memory": "256Mi"},
        "defaultRequest": {"cpu": "100m"}}]));
    // Nothing set: limits from default, requests from defaultRequest, else from default.
    check_defaults(
        &lr,
        json!([{"name": "a", "image": "x"}]),
        json!([{"name": "a", "image": "x", "resources": {
            "limits": {"cpu": "500m", "memory": "256Mi"},
            "requests": {"cpu": "100m", "memory": "256Mi"}}}]),
    );
    // What the container set is kept; a set limit is its own request.
    check_defaults(
        &lr,
        json!([{"name": "a", "resources": {"limits": {"cpu": "2"}}}]),
        json!([{"name": "a", "resources": {
            "limits": {"cpu": "2", "memory": "256Mi"},
            "requests": {"cpu": "2", "memory": "256Mi"}}}]),
    );
    // max is the default limit and min the default request when nothing else is.
    check_defaults(
        &range(json!([{"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "10Mi"}}])),
        json!([{"name": "a"}]),
        json!([{"name": "a", "resources": {
            "limits": {"cpu": "1"},
            "requests": {"cpu": "1", "memory": "10Mi"}}}]),
    );
    // Pod-type items default nothing.
    check_defaults(
        &range(json!([{"type": "Pod", "max": {"cpu": "1"}}])),
        json!([{"name": "a"}]),
        json!([{"name": "a"}]),
    );
}

fn check_pod(ranges: &[Value], containers: Value, want: &[&str]) {
    let mut p = pod(containers);
    default_pod(&mut p, ranges);
    assert_eq!(validate_pod(&p, ranges), want, "{p}");
}

#[test]
fn pod_constraints() {
    let lr = range(json!([{"type": "Container",
        "max": {"cpu": "1", "memory": "1Gi"}, "min": {"cpu": "50m"},
        "maxLimitRequestRatio": {"memory": "2"}}]));
    check_pod(
        &lr,
        json!([{"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "512Mi"},
                                             "limits": {"cpu": "500m", "memory": "1Gi"}}}]),
        &[],
    );
    check_pod(
        &lr,
        json!([{"name": "big", "resources": {"requests": {"cpu": "100m", "memory": "512Mi"},
                                               "limits": {"cpu": "2", "memory": "1Gi"}}}]),
        &["maximum cpu usage per Container is 1, but limit is 2 (container \"big\")"],
    );
    check_pod(
        &lr,
        json!([{"name": "tiny", "resources": {"requests": {"cpu": "10m", "memory": "512Mi"},
                                                "limits": {"cpu": "100m", "memory": "1Gi"}}}]),
        &["minimum cpu usage per Container is 50m, but request is 10m (container \"tiny\")"],
    );
    check_pod(
        &lr,
        json!([{"name": "r", "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                                             "limits": {"cpu": "100m", "memory": "1Gi"}}}]),
        &[
            "memory max limit to request ratio per Container is 2, but provided ratio is 4.000000 (container \"r\")",
        ],
    );
    // Pod items check the sum of the containers.
    let pod_lr = range(json!([{"type": "Pod", "max": {"cpu": "1"}}]));
    check_pod(
        &pod_lr,
        json!([
            {"name": "a", "resources": {"requests": {"cpu": "600m"}, "limits": {"cpu": "600m"}}},
            {"name": "b", "resources": {"requests": {"cpu": "600m"}, "limits": {"cpu": "600m"}}},
        ]),
        &["maximum cpu usage per Pod is 1, but limit is 1200m"],
    );
    check_pod(
        &pod_lr,
        json!([{"name": "a", "resources": {"requests": {"cpu": "600m"}}}]),
        &["maximum cpu usage per Pod is 1.  No limit is specified"],
    );
}

#[test]
fn pvc_constraints() {
    let lr = range(json!([{"type": "PersistentVolumeClaim",
        "min": {"storage": "1Gi"}, "max": {"storage": "2Gi"}}]));
    let check = |storage: &str, want: &[&str]| {
        let pvc = json!({"spec": {"resources": {"requests": {"storage": storage}}}});
        assert_eq!(validate_pvc(&pvc, &lr), want, "{storage}");
    };
    check("1Gi", &[]);
    check(
        "5Gi",
        &["maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"],
    );
    check(
        "500Mi",
        &["minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"],
    );
    assert_eq!(aggregate(&["a".into()]), "a");
    assert_eq!(aggregate(&["a".into(), "b".into()]), "[a, b]");
}
