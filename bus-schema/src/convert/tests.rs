use serde_json::{Value, json};

use super::*;

fn hpa_v1() -> &'static Conversion {
    by_group_version_resource("autoscaling", "v1", "horizontalpodautoscalers").unwrap()
}

fn meta() -> Value {
    json!({"name": "web", "namespace": "default", "uid": "u1", "resourceVersion": "7", "labels": {"app": "web"}})
}

fn cpu(percent: i64) -> Value {
    json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}}})
}

fn v2(spec: Value, status: Option<Value>) -> Value {
    let mut obj = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta(), "spec": spec});
    if let Some(s) = status {
        obj["status"] = s;
    }
    obj
}

fn target() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"})
}

/// Converts `stored` to v1, compares the parts of the v1 object `expected` names (`spec`,
/// `status`, each annotation parsed as JSON), then converts back and expects `stored`.
fn check(stored: Value, expected_v1: Value) {
    let conv = hpa_v1();
    let v1 = (conv.from_storage)(&stored);
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["metadata"]["name"], "web");
    assert_eq!(v1["spec"], expected_v1["spec"], "spec of {v1:#}");
    assert_eq!(
        v1.get("status"),
        expected_v1.get("status"),
        "status of {v1:#}"
    );
    let got_annotations: serde_json::Map<String, Value> = v1
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|a| {
            a.iter()
                .map(|(k, v)| {
                    let parsed = if k.starts_with("autoscaling.alpha.kubernetes.io/") {
                        serde_json::from_str(v.as_str().unwrap()).unwrap()
                    } else {
                        v.clone()
                    };
                    (k.clone(), parsed)
                })
                .collect()
        })
        .unwrap_or_default();
    let want_annotations = expected_v1
        .get("annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    assert_eq!(got_annotations, want_annotations, "annotations of {v1:#}");
    let back = (conv.to_storage)(&v1).unwrap_or_else(|e| panic!("{e:?} for {v1:#}"));
    assert_eq!(back, stored, "round trip through {v1:#}");
}

#[test]
fn v2_to_v1_and_back_is_lossless() {
    // The cpu utilization target alone: no annotations at all.
    check(
        v2(
            json!({"scaleTargetRef": target(), "minReplicas": 1, "maxReplicas": 4, "metrics": [cpu(50)]}),
            None,
        ),
        json!({"spec": {"scaleTargetRef": target(), "minReplicas": 1, "maxReplicas": 4, "targetCPUUtilizationPercentage": 50}}),
    );
    // Other metrics keep their order and come back before the cpu target.
    let memory = json!({"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}});
    let pods = json!({"type": "Pods", "pods": {"metric": {"name": "qps", "selector": {"matchLabels": {"a": "b"}}}, "target": {"type": "AverageValue", "averageValue": "10"}}});
    let object = json!({"type": "Object", "object": {"describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "main"}, "metric": {"name": "hits"}, "target": {"type": "Value", "value": "2k"}}});
    let external = json!({"type": "External", "external": {"metric": {"name": "queue", "selector": {"matchLabels": {"q": "work"}}}, "target": {"type": "AverageValue", "averageValue": "30"}}});
    let container = json!({"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app", "target": {"type": "Utilization", "averageUtilization": 60}}});
    check(
        v2(
            json!({"scaleTargetRef": target(), "minReplicas": 2, "maxReplicas": 10,
                   "metrics": [memory.clone(), pods.clone(), object.clone(), external.clone(), container.clone(), cpu(70)]}),
            None,
        ),
        json!({
            "spec": {"scaleTargetRef": target(), "minReplicas": 2, "maxReplicas": 10, "targetCPUUtilizationPercentage": 70},
            "annotations": {METRICS_ANNOTATION: [
                {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}},
                {"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "10", "selector": {"matchLabels": {"a": "b"}}}},
                {"type": "Object", "object": {"target": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "main"}, "metricName": "hits", "targetValue": "2k"}},
                {"type": "External", "external": {"metricName": "queue", "metricSelector": {"matchLabels": {"q": "work"}}, "targetAverageValue": "30"}},
                {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app", "targetAverageUtilization": 60}},
            ]},
        }),
    );
    // Status: the cpu percentage, every current metric, the conditions; the behavior in
    // Go's field names.
    let conditions = json!([
        {"type": "AbleToScale", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "ReadyForNewScale", "message": "recommended size matches current size"},
        {"type": "ScalingActive", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "ValidMetricFound", "message": "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)"},
    ]);
    let behavior = json!({
        "scaleDown": {"stabilizationWindowSeconds": 5, "selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
        "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]},
    });
    check(
        v2(
            json!({"scaleTargetRef": target(), "minReplicas": 1, "maxReplicas": 4, "metrics": [cpu(50)], "behavior": behavior}),
            Some(json!({
                "observedGeneration": 3, "lastScaleTime": "2026-01-01T00:00:00Z",
                "currentReplicas": 4, "desiredReplicas": 4,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageValue": "200m", "averageUtilization": 200}}}],
                "conditions": conditions,
            })),
        ),
        json!({
            "spec": {"scaleTargetRef": target(), "minReplicas": 1, "maxReplicas": 4, "targetCPUUtilizationPercentage": 50},
            "status": {"observedGeneration": 3, "lastScaleTime": "2026-01-01T00:00:00Z", "currentReplicas": 4, "desiredReplicas": 4, "currentCPUUtilizationPercentage": 200},
            "annotations": {
                CURRENT_METRICS_ANNOTATION: [{"type": "Resource", "resource": {"name": "cpu", "currentAverageUtilization": 200, "currentAverageValue": "200m"}}],
                CONDITIONS_ANNOTATION: conditions,
                BEHAVIOR_ANNOTATION: {
                    "ScaleUp": {"StabilizationWindowSeconds": 0, "SelectPolicy": null, "Policies": [{"Type": "Pods", "Value": 4, "PeriodSeconds": 15}, {"Type": "Percent", "Value": 100, "PeriodSeconds": 15}]},
                    "ScaleDown": {"StabilizationWindowSeconds": 5, "SelectPolicy": "Max", "Policies": [{"Type": "Percent", "Value": 100, "PeriodSeconds": 15}]},
                },
            },
        }),
    );
    // A user's own annotations stay; the memory target is not the cpu percentage.
    let mut with_annotation = v2(
        json!({"scaleTargetRef": target(), "minReplicas": 1, "maxReplicas": 3, "metrics": [{"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 55}}}]}),
        None,
    );
    with_annotation["metadata"]["annotations"] = json!({"team": "a"});
    check(
        with_annotation,
        json!({
            "spec": {"scaleTargetRef": target(), "minReplicas": 1, "maxReplicas": 3},
            "annotations": {"team": "a", METRICS_ANNOTATION: [{"type": "Resource", "resource": {"name": "memory", "targetAverageUtilization": 55}}]},
        }),
    );
}

/// (v1 object, expected v2 `spec`)
fn check_v1(v1_spec: Value, annotations: Option<Value>, expected_spec: Value) {
    let mut v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"}, "spec": v1_spec});
    if let Some(a) = annotations {
        v1["metadata"]["annotations"] = a;
    }
    let v2 = (hpa_v1().to_storage)(&v1).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(v2["apiVersion"], "autoscaling/v2");
    assert_eq!(v2["spec"], expected_spec, "{v2:#}");
    assert!(v2.pointer("/metadata/annotations").is_none(), "{v2:#}");
}

#[test]
fn v1_objects_become_v2_as_kubernetes_decodes_them() {
    // What `kubectl autoscale --cpu-percent=50 --min=1 --max=4` sends.
    check_v1(
        json!({"scaleTargetRef": target(), "minReplicas": 1, "maxReplicas": 4, "targetCPUUtilizationPercentage": 50}),
        None,
        json!({"scaleTargetRef": target(), "minReplicas": 1, "maxReplicas": 4, "metrics": [cpu(50)]}),
    );
    // No target at all: cpu at 80 %; minReplicas defaults to 1.
    check_v1(
        json!({"scaleTargetRef": target(), "maxReplicas": 4}),
        None,
        json!({"scaleTargetRef": target(), "minReplicas": 1, "maxReplicas": 4, "metrics": [cpu(80)]}),
    );
    // Annotation metrics first, then the cpu target; Kubernetes' value defaults.
    check_v1(
        json!({"scaleTargetRef": target(), "minReplicas": 1, "maxReplicas": 4, "targetCPUUtilizationPercentage": 50}),
        Some(json!({
            METRICS_ANNOTATION: r#"[{"type":"Pods","pods":{"metricName":"qps","targetAverageValue":"10"}},{"type":"Object","object":{"target":{"kind":"Service","name":"s"},"metricName":"m","targetValue":"1","averageValue":"2"}}]"#,
            BEHAVIOR_ANNOTATION: r#"{"scaleDown":{"stabilizationWindowSeconds":5}}"#,
        })),
        json!({"scaleTargetRef": target(), "minReplicas": 1, "maxReplicas": 4, "metrics": [
            {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
            {"type": "Object", "object": {"describedObject": {"kind": "Service", "name": "s"}, "metric": {"name": "m"}, "target": {"type": "AverageValue", "value": "1", "averageValue": "2"}}},
            cpu(50),
        ], "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5}}}),
    );
}

/// (v1 object, expected field errors as `path: message`)
fn check_bad(v1: Value, expected: &[&str]) {
    let errs = (hpa_v1().to_storage)(&v1).expect_err("must be refused");
    let got: Vec<String> = errs
        .iter()
        .map(|e| format!("{}: {}", e.field, e.detail))
        .collect();
    assert_eq!(got, expected, "{v1}");
}

#[test]
fn v1_input_of_the_wrong_shape_is_a_field_error() {
    let base = |spec: Value| json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"}, "spec": spec});
    check_bad(
        base(
            json!({"scaleTargetRef": target(), "maxReplicas": "four", "targetCPUUtilizationPercentage": 50.5}),
        ),
        &[
            "spec.maxReplicas: must be a 32-bit integer",
            "spec.targetCPUUtilizationPercentage: must be a 32-bit integer",
        ],
    );
    check_bad(base(json!([])), &["spec: must be an object"]);
    check_bad(
        base(json!({"scaleTargetRef": {"kind": 1, "name": "web"}, "maxReplicas": 3})),
        &["spec.scaleTargetRef.kind: must be a string"],
    );
    let mut bad_annotation = base(json!({"scaleTargetRef": target(), "maxReplicas": 3}));
    bad_annotation["metadata"]["annotations"] = json!({METRICS_ANNOTATION: "{not json"});
    let errs = (hpa_v1().to_storage)(&bad_annotation).unwrap_err();
    assert_eq!(
        errs.iter().next().unwrap().field,
        format!("metadata.annotations[{METRICS_ANNOTATION}]")
    );
    check_bad(json!("nope"), &[": must be a JSON object"]);
}

#[test]
fn responses_convert_objects_lists_and_tables() {
    let conv = hpa_v1();
    let stored = v2(
        json!({"scaleTargetRef": target(), "minReplicas": 1, "maxReplicas": 4, "metrics": [cpu(50)]}),
        None,
    );
    let list = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscalerList", "metadata": {}, "items": [stored.clone()]});
    let got = conv.response_from_storage(list);
    assert_eq!(got["apiVersion"], "autoscaling/v1");
    assert_eq!(
        got["items"][0]["spec"]["targetCPUUtilizationPercentage"],
        50
    );
    let table = json!({"apiVersion": "meta.k8s.io/v1", "kind": "Table", "rows": [{"cells": ["web"], "object": stored.clone()}]});
    let got = conv.response_from_storage(table);
    assert_eq!(got["rows"][0]["object"]["apiVersion"], "autoscaling/v1");
    let status = json!({"apiVersion": "v1", "kind": "Status", "code": 404});
    assert_eq!(conv.response_from_storage(status.clone()), status);
    assert_eq!(
        conv.response_from_storage(stored)["apiVersion"],
        "autoscaling/v1"
    );
}

#[test]
fn every_conversion_names_a_stored_kind_at_another_version() {
    for c in CONVERSIONS {
        let stored = c.storage();
        assert_ne!(stored.version, c.served.version);
        assert_eq!(
            (stored.plural, stored.namespaced),
            (c.served.plural, c.served.namespaced)
        );
    }
}
