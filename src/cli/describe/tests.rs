use serde_json::json;

use super::*;

fn resource(group: &str, kind: &str, namespaced: bool) -> Resource {
    Resource {
        group: group.into(),
        version: "v1".into(),
        kind: kind.into(),
        plural: format!("{}s", kind.to_lowercase()),
        singular: kind.to_lowercase(),
        short_names: Vec::new(),
        namespaced,
    }
}

fn now() -> Timestamp {
    "2026-01-01T00:10:00Z".parse().unwrap()
}

fn check(resource: Resource, obj: Value, events: &[Value], expected: &str) {
    let got = render(&resource, &obj, events, now());
    assert_eq!(
        got, expected,
        "\n--- got:\n{got}\n--- expected:\n{expected}"
    );
}

#[test]
fn pod_with_labels_containers_and_events() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "demo", "uid": "u1",
                     "labels": {"tier": "fe", "app": "web"},
                     "annotations": {"note": "hi"}},
        "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27",
                                 "ports": [{"containerPort": 80}],
                                 "env": [{"name": "A", "value": "1"}]}]},
        "status": {},
    });
    let events = [json!({
        "type": "Normal", "reason": "Scheduled", "message": "assigned demo/web\n",
        "source": {"component": "drover-scheduler"},
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:09:30Z",
        "count": 3,
    })];
    check(
        resource("", "Pod", true),
        pod,
        &events,
        "Name:         web
Namespace:    demo
Node:         <none>
Labels:       app=web
              tier=fe
Annotations:  note: hi
Status:       Pending
IP:           
IPs:          <none>
Containers:
  nginx:
    Image:        nginx:1.27
    Port:         80/TCP
    Environment:  A:  1
    Mounts:       <none>
Volumes:          <none>
QoS Class:        BestEffort
Node-Selectors:   <none>
Tolerations:      <none>
Events:
  Type    Reason     Age                From              Message
  ----    ------     ----               ----              -------
  Normal  Scheduled  30s (x3 over 10m)  drover-scheduler  assigned demo/web
",
    );
}

#[test]
fn deployment_replicas_and_template() {
    let d = json!({
        "metadata": {"name": "web", "namespace": "demo", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
        "status": {"replicas": 2, "updatedReplicas": 1, "availableReplicas": 1, "unavailableReplicas": 1},
    });
    check(
        resource("apps", "Deployment", true),
        d,
        &[],
        "Name:                   web
Namespace:              demo
CreationTimestamp:      Thu, 01 Jan 2026 00:00:00 +0000
Labels:                 <none>
Annotations:            <none>
Selector:               app=web
Replicas:               2 desired | 1 updated | 2 total | 1 available | 1 unavailable
StrategyType:           RollingUpdate
MinReadySeconds:        0
RollingUpdateStrategy:  25% max unavailable, 25% max surge
Pod Template:
  Labels:  app=web
  Containers:
    c:
      Image:        nginx
      Port:         <none>
      Environment:  <none>
      Mounts:       <none>
Events:             <none>
",
    );
}

#[test]
fn config_map_data_and_cluster_scoped_generic_kinds() {
    check(
        resource("", "ConfigMap", true),
        json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"k": "v1\nv2"}}),
        &[],
        "Name:         c
Namespace:    d
Labels:       <none>
Annotations:  <none>

Data
====
k:
----
v1
v2


BinaryData
====

Events:  <none>
",
    );
    check(
        resource("drover.io", "TrafficSplit", false),
        json!({"apiVersion": "drover.io/v1", "kind": "TrafficSplit",
               "metadata": {"name": "t"},
               "spec": {"service": "web", "backends": [{"service": "a", "weight": 90}], "tags": ["x", "y"]}}),
        &[],
        "Name:         t
Labels:       <none>
Annotations:  <none>
API Version:  drover.io/v1
Kind:         TrafficSplit
Spec:
  Backends:
    Service:  a
    Weight:   90
  Service:    web
  Tags:       x
              y
Events:       <none>
",
    );
}

#[test]
fn malformed_objects_do_not_panic() {
    for obj in [
        json!(null),
        json!("x"),
        json!({"metadata": "x", "spec": 1, "status": []}),
        json!({"spec": {"containers": "x", "volumes": [1, {"name": 2}]}, "status": {"containerStatuses": [{"state": 1}]}}),
    ] {
        for (g, k) in [
            ("", "Pod"),
            ("apps", "Deployment"),
            ("", "Service"),
            ("", "ConfigMap"),
            ("", "Secret"),
            ("", "Namespace"),
            ("x", "Y"),
        ] {
            render(
                &resource(g, k, true),
                &obj,
                &[json!(7), json!({"count": "x"})],
                now(),
            );
        }
    }
}

#[test]
fn qos_classes() {
    let pod =
        |resources: Value| json!({"spec": {"containers": [{"name": "c", "resources": resources}]}});
    assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
    assert_eq!(
        qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))),
        "Guaranteed"
    );
    assert_eq!(
        qos_class(&pod(
            json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}})
        )),
        "Burstable"
    );
    assert_eq!(
        qos_class(&pod(json!({"requests": {"cpu": "1"}}))),
        "Burstable"
    );
}

#[test]
fn field_names_in_title_case() {
    assert_eq!(title_case("containerPort"), "Container Port");
    assert_eq!(title_case("spec"), "Spec");
    assert_eq!(title_case("podIP"), "Pod IP");
    assert_eq!(title_case("http2Enabled"), "Http2 Enabled");
}
