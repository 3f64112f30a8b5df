//! Tables as data: realistic objects in the wire shape and the exact cells `kubectl get`
//! would show for them, wide cells included. Every age is measured from [`NOW`].

use bus_schema::{KINDS, KindInfo};
use serde_json::{Value, json};

use super::*;

/// The instant every test reads the clock at.
const NOW: &str = "2024-05-01T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn kind(kind_name: &str) -> &'static KindInfo {
    KINDS
        .iter()
        .find(|k| k.kind == kind_name)
        .unwrap_or_else(|| panic!("no kind {kind_name} in KINDS"))
}

fn table_of(kind_name: &str, object: Value) -> Value {
    to_table(
        kind(kind_name),
        &[object],
        now(),
        IncludeObject::None,
        json!({}),
    )
}

/// Prints one object and compares all its cells, one per column.
fn check(kind_name: &str, object: Value, expected: Value) {
    let table = table_of(kind_name, object);
    let cells = &table["rows"][0]["cells"];
    assert_eq!(cells, &expected, "cells of a {kind_name}");
    assert_eq!(
        cells.as_array().map(Vec::len),
        table["columnDefinitions"].as_array().map(Vec::len),
        "one cell per column of {kind_name}"
    );
}

/// Prints one object and compares the cell of the column named `column`.
fn check_cell(kind_name: &str, object: Value, column: &str, expected: Value) {
    let table = table_of(kind_name, object);
    let idx = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| c["name"] == column)
        .unwrap_or_else(|| panic!("{kind_name} has no column {column}"));
    assert_eq!(
        table["rows"][0]["cells"][idx], expected,
        "{kind_name} {column}"
    );
}

// ---------------------------------------------------------------------------------------
// Columns

#[test]
fn columns_match_kubernetes_printers() {
    // Wide-only columns (priority 1) are marked with a leading `+`.
    let cases: &[(&str, &[&str])] = &[
        (
            "Pod",
            &[
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "+IP",
                "+Node",
                "+Nominated Node",
                "+Readiness Gates",
            ],
        ),
        (
            "Deployment",
            &[
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "+Containers",
                "+Images",
                "+Selector",
            ],
        ),
        (
            "ReplicaSet",
            &[
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Age",
                "+Containers",
                "+Images",
                "+Selector",
            ],
        ),
        (
            "StatefulSet",
            &["Name", "Ready", "Age", "+Containers", "+Images"],
        ),
        (
            "DaemonSet",
            &[
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Up-to-date",
                "Available",
                "Node Selector",
                "Age",
                "+Containers",
                "+Images",
                "+Selector",
            ],
        ),
        (
            "Service",
            &[
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age",
                "+Selector",
            ],
        ),
        (
            "Node",
            &[
                "Name",
                "Status",
                "Roles",
                "Age",
                "Version",
                "+Internal-IP",
                "+External-IP",
                "+OS-Image",
                "+Kernel-Version",
                "+Container-Runtime",
            ],
        ),
        ("Namespace", &["Name", "Status", "Age"]),
        ("ConfigMap", &["Name", "Data", "Age"]),
        ("Secret", &["Name", "Type", "Data", "Age"]),
        ("ServiceAccount", &["Name", "Secrets", "Age"]),
        ("Endpoints", &["Name", "Endpoints", "Age"]),
        (
            "EndpointSlice",
            &["Name", "AddressType", "Ports", "Endpoints", "Age"],
        ),
        (
            "Event",
            &[
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "+Subobject",
                "+Source",
                "Message",
                "+First Seen",
                "+Count",
                "+Name",
            ],
        ),
        (
            "Job",
            &[
                "Name",
                "Status",
                "Completions",
                "Duration",
                "Age",
                "+Containers",
                "+Images",
                "+Selector",
            ],
        ),
        (
            "CronJob",
            &[
                "Name",
                "Schedule",
                "Timezone",
                "Suspend",
                "Active",
                "Last Schedule",
                "Age",
                "+Containers",
                "+Images",
                "+Selector",
            ],
        ),
        (
            "HorizontalPodAutoscaler",
            &[
                "Name",
                "Reference",
                "Targets",
                "MinPods",
                "MaxPods",
                "Replicas",
                "Age",
            ],
        ),
        (
            "PersistentVolume",
            &[
                "Name",
                "Capacity",
                "Access Modes",
                "Reclaim Policy",
                "Status",
                "Claim",
                "StorageClass",
                "VolumeAttributesClass",
                "Reason",
                "Age",
                "+VolumeMode",
            ],
        ),
        (
            "PersistentVolumeClaim",
            &[
                "Name",
                "Status",
                "Volume",
                "Capacity",
                "Access Modes",
                "StorageClass",
                "VolumeAttributesClass",
                "Age",
                "+VolumeMode",
            ],
        ),
        (
            "PodDisruptionBudget",
            &[
                "Name",
                "Min Available",
                "Max Unavailable",
                "Allowed Disruptions",
                "Age",
            ],
        ),
        (
            "PriorityClass",
            &["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"],
        ),
        ("Lease", &["Name", "Holder", "Age"]),
        ("ResourceQuota", &["Name", "Request", "Limit", "Age"]),
        ("LimitRange", &["Name", "Created At"]),
        (
            "ControllerRevision",
            &["Name", "Controller", "Revision", "Age"],
        ),
        ("TrafficSplit", &["Name", "Age"]),
    ];
    for (kind_name, expected) in cases {
        let table = table_of(kind_name, json!({}));
        let names: Vec<String> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let wide = if c["priority"] == 1 { "+" } else { "" };
                format!("{wide}{}", c["name"].as_str().unwrap())
            })
            .collect();
        assert_eq!(names, *expected, "columns of {kind_name}");
    }
}

#[test]
fn column_definitions_have_the_wire_shape() {
    for info in KINDS {
        let table = to_table(info, &[], now(), IncludeObject::Metadata, json!({}));
        for column in table["columnDefinitions"].as_array().unwrap() {
            let mut keys: Vec<&str> = column
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                ["description", "format", "name", "priority", "type"],
                "{}",
                info.kind
            );
            assert!(
                ["string", "integer", "boolean", "date"]
                    .contains(&column["type"].as_str().unwrap())
            );
            assert!(!column["description"].as_str().unwrap().is_empty());
            // Only the identifying column is formatted as a name.
            assert_eq!(column["format"] == "name", column["name"] == "Name");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Table envelope and includeObject

fn two_config_maps() -> Vec<Value> {
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "app-config",
                "namespace": "default",
                "uid": "0d5a1c1e-1111-4c1c-9a54-5b0f3c6f1d01",
                "resourceVersion": "4711",
                "creationTimestamp": "2024-04-30T12:00:00Z",
                "labels": {"app": "web"}
            },
            "data": {"LOG_LEVEL": "info"}
        }),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kube-root-ca.crt", "namespace": "default"},
            "data": {"ca.crt": "-----BEGIN CERTIFICATE-----"}
        }),
    ]
}

#[test]
fn table_envelope_carries_list_metadata_and_rows_in_order() {
    let table = to_table(
        kind("ConfigMap"),
        &two_config_maps(),
        now(),
        IncludeObject::None,
        json!({"resourceVersion": "4712", "continue": "eyJ2IjoxfQ"}),
    );
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(
        table["metadata"],
        json!({"resourceVersion": "4712", "continue": "eyJ2IjoxfQ"})
    );
    assert_eq!(
        table["rows"],
        json!([
            {"cells": ["app-config", 1, "24h"]},
            {"cells": ["kube-root-ca.crt", 1, "<unknown>"]},
        ])
    );
}

#[test]
fn empty_list_and_bad_list_meta() {
    let table = to_table(
        kind("Pod"),
        &[],
        now(),
        IncludeObject::Metadata,
        json!("not an object"),
    );
    assert_eq!(table["rows"], json!([]));
    assert_eq!(table["metadata"], json!({}));
    assert_eq!(table["columnDefinitions"].as_array().unwrap().len(), 9);
}

#[test]
fn include_object_metadata_embeds_partial_object_metadata() {
    let objects = two_config_maps();
    let table = to_table(
        kind("ConfigMap"),
        &objects,
        now(),
        IncludeObject::Metadata,
        json!({}),
    );
    assert_eq!(
        table["rows"][0]["object"],
        json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": objects[0]["metadata"],
        })
    );
    // An object without metadata still yields a well-formed PartialObjectMetadata.
    let table = to_table(
        kind("ConfigMap"),
        &[json!({"data": {}})],
        now(),
        IncludeObject::Metadata,
        json!({}),
    );
    assert_eq!(table["rows"][0]["object"]["metadata"], json!({}));
}

#[test]
fn include_object_object_embeds_the_whole_object() {
    let objects = two_config_maps();
    let table = to_table(
        kind("ConfigMap"),
        &objects,
        now(),
        IncludeObject::Object,
        json!({}),
    );
    assert_eq!(table["rows"][0]["object"], objects[0]);
    assert_eq!(table["rows"][1]["object"], objects[1]);
}

#[test]
fn include_object_parses_like_table_options() {
    for (input, expected) in [
        (None, IncludeObject::Metadata),
        (Some("Metadata"), IncludeObject::Metadata),
        (Some("None"), IncludeObject::None),
        (Some("Object"), IncludeObject::Object),
        (Some("object"), IncludeObject::Metadata),
        (Some(""), IncludeObject::Metadata),
    ] {
        assert_eq!(IncludeObject::parse(input), expected, "{input:?}");
    }
    assert_eq!(IncludeObject::default(), IncludeObject::Metadata);
}

#[test]
fn never_panics_on_malformed_objects() {
    let malformed = [
        json!(null),
        json!("pod"),
        json!(42),
        json!([1, 2, 3]),
        json!({}),
        json!({"metadata": "x", "spec": [], "status": 7}),
        json!({
            "metadata": {"name": 5, "creationTimestamp": "yesterday", "deletionTimestamp": 1,
                         "labels": ["a"], "annotations": "b", "ownerReferences": {"a": 1}},
            "spec": {"containers": "nginx", "initContainers": [null, 1, "x"], "replicas": "3",
                     "selector": {"matchLabels": {"a": 1}, "matchExpressions": [{"operator": 1}]},
                     "ports": [{"port": "http", "nodePort": -1}], "type": 3, "metrics": [null, {}],
                     "template": {"spec": {"containers": [null, {"name": 1}]}},
                     "completions": 1.5, "parallelism": 1e300, "capacity": [], "claimRef": "x"},
            "status": {"containerStatuses": [null, {"state": {"terminated": []}}],
                       "initContainerStatuses": [{"state": {"terminated": {"exitCode": "1"}}}],
                       "conditions": "Ready", "podIPs": [{}], "hard": {"cpu": {}}, "used": 1,
                       "loadBalancer": {"ingress": [1]}, "currentMetrics": "x",
                       "startTime": "2024-05-01T11:00:00Z", "completionTime": 3},
            "subsets": [{"addresses": [{"ip": 1}], "ports": [{}]}, "x"],
            "endpoints": [{"addresses": [1]}],
            "involvedObject": [],
            "series": {"count": "many"},
            "data": "abc",
            "secrets": {"a": 1},
        }),
        json!({
            "spec": {"initContainers": [{"name": "sidecar", "restartPolicy": "Always"}]},
            "status": {
                "initContainerStatuses": [{"name": "sidecar", "restartCount": i64::MAX},
                                          {"name": "sidecar", "restartCount": i64::MAX}],
                "containerStatuses": [{"restartCount": i64::MAX}, {"restartCount": u64::MAX}],
            },
        }),
    ];
    for info in KINDS {
        let table = to_table(info, &malformed, now(), IncludeObject::Object, json!({}));
        let n_columns = table["columnDefinitions"].as_array().unwrap().len();
        for row in table["rows"].as_array().unwrap() {
            assert_eq!(
                row["cells"].as_array().unwrap().len(),
                n_columns,
                "{}",
                info.kind
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Pods

fn pod(spec: Value, status: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-7d4b9c8f5-x2x9k",
            "namespace": "default",
            "creationTimestamp": "2024-05-01T09:30:00Z",
            "labels": {"app": "web", "pod-template-hash": "7d4b9c8f5"}
        },
        "spec": spec,
        "status": status,
    })
}

fn running(name: &str, restart_count: i64) -> Value {
    json!({
        "name": name,
        "ready": true,
        "started": true,
        "restartCount": restart_count,
        "image": "nginx:1.25",
        "state": {"running": {"startedAt": "2024-05-01T09:30:05Z"}}
    })
}

#[test]
fn pod_running_with_two_ready_containers() {
    check(
        "Pod",
        pod(
            json!({
                "nodeName": "node-1",
                "containers": [
                    {"name": "nginx", "image": "nginx:1.25"},
                    {"name": "envoy", "image": "envoyproxy/envoy:v1.29"}
                ]
            }),
            json!({
                "phase": "Running",
                "podIP": "10.244.1.5",
                "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00::5"}],
                "conditions": [
                    {"type": "Initialized", "status": "True"},
                    {"type": "Ready", "status": "True"}
                ],
                "containerStatuses": [running("nginx", 0), running("envoy", 0)]
            }),
        ),
        json!([
            "web-7d4b9c8f5-x2x9k",
            "2/2",
            "Running",
            "0",
            "150m",
            "10.244.1.5",
            "node-1",
            "<none>",
            "<none>"
        ]),
    );
}

#[test]
fn pod_crash_loop_shows_restarts_with_time_since_last() {
    check(
        "Pod",
        pod(
            json!({"nodeName": "node-2", "containers": [{"name": "app", "image": "app:1"}]}),
            json!({
                "phase": "Running",
                "podIP": "10.244.2.9",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{
                    "name": "app",
                    "ready": false,
                    "restartCount": 5,
                    "state": {"waiting": {"reason": "CrashLoopBackOff",
                                          "message": "back-off 2m40s restarting failed container"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                                 "finishedAt": "2024-05-01T11:57:00Z"}}
                }]
            }),
        ),
        json!([
            "web-7d4b9c8f5-x2x9k",
            "0/1",
            "CrashLoopBackOff",
            "5 (3m ago)",
            "150m",
            "10.244.2.9",
            "node-2",
            "<none>",
            "<none>"
        ]),
    );
}

#[test]
fn pod_status_cases() {
    let one_container = json!({"containers": [{"name": "app", "image": "app:1"}]});
    let two_init = json!({
        "initContainers": [{"name": "init-db"}, {"name": "init-cache"}],
        "containers": [{"name": "app"}]
    });
    let cases: Vec<(&str, Value, Value, &str, &str)> = vec![
        (
            "pulling the image",
            one_container.clone(),
            json!({"phase": "Pending", "containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
            "0/1",
            "ContainerCreating",
        ),
        (
            "image pull failure",
            one_container.clone(),
            json!({"phase": "Pending", "containerStatuses": [
                {"name": "app", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}),
            "0/1",
            "ImagePullBackOff",
        ),
        (
            "finished job pod",
            one_container.clone(),
            json!({"phase": "Succeeded", "containerStatuses": [
                {"name": "app", "ready": false, "state": {"terminated": {
                    "exitCode": 0, "reason": "Completed",
                    "finishedAt": "2024-05-01T10:00:00Z"}}}]}),
            "0/1",
            "Completed",
        ),
        (
            "killed by a signal without a reason",
            one_container.clone(),
            json!({"phase": "Failed", "containerStatuses": [
                {"name": "app", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
            "0/1",
            "Signal:9",
        ),
        (
            "exited without a reason",
            one_container.clone(),
            json!({"phase": "Failed", "containerStatuses": [
                {"name": "app", "state": {"terminated": {"exitCode": 3}}}]}),
            "0/1",
            "ExitCode:3",
        ),
        (
            "evicted",
            one_container.clone(),
            json!({"phase": "Failed", "reason": "Evicted",
                   "message": "The node was low on resource: memory."}),
            "0/1",
            "Evicted",
        ),
        (
            "scheduling gated",
            one_container.clone(),
            json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
            "0/1",
            "SchedulingGated",
        ),
        (
            "no status yet",
            one_container.clone(),
            json!(null),
            "0/1",
            "Pending",
        ),
        (
            "first init container running",
            two_init.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "init-db", "state": {"running": {}}},
                {"name": "init-cache", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
            "0/1",
            "Init:0/2",
        ),
        (
            "second init container crash-looping",
            two_init.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "init-db", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "init-cache", "restartCount": 2,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
            "0/1",
            "Init:CrashLoopBackOff",
        ),
        (
            "init container failed",
            two_init.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "init-db", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
            "0/1",
            "Init:Error",
        ),
        (
            "init container failed without a reason",
            two_init.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "init-db", "state": {"terminated": {"exitCode": 2}}}]}),
            "0/1",
            "Init:ExitCode:2",
        ),
        (
            "init container killed",
            two_init.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "init-db", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
            "0/1",
            "Init:Signal:9",
        ),
        (
            "one container done, another still running, pod ready",
            json!({"containers": [{"name": "job"}, {"name": "server"}]}),
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [
                       {"name": "job", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                       running("server", 0)]}),
            "1/2",
            "Running",
        ),
        (
            "one container done, another still running, pod not ready",
            json!({"containers": [{"name": "job"}, {"name": "server"}]}),
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
                   "containerStatuses": [
                       {"name": "job", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                       running("server", 0)]}),
            "1/2",
            "NotReady",
        ),
        (
            "the first container's state wins",
            json!({"containers": [{"name": "a"}, {"name": "b"}]}),
            json!({"phase": "Pending", "containerStatuses": [
                {"name": "a", "state": {"waiting": {"reason": "ErrImagePull"}}},
                {"name": "b", "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
            "0/2",
            "ErrImagePull",
        ),
    ];
    for (case, spec, status, ready, expected) in cases {
        let table = table_of("Pod", pod(spec, status));
        let cells = &table["rows"][0]["cells"];
        assert_eq!(cells[1], ready, "READY when {case}");
        assert_eq!(cells[2], expected, "STATUS when {case}");
    }
}

#[test]
fn pod_init_restarts_count_only_while_initializing() {
    let spec = json!({
        "initContainers": [{"name": "init-db"}],
        "containers": [{"name": "app"}]
    });
    let init_statuses = json!([{
        "name": "init-db", "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:59:00Z"}}
    }]);
    check_cell(
        "Pod",
        pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": init_statuses}),
        ),
        "Restarts",
        json!("4 (60s ago)"),
    );
    // Once initialized, restarts of ordinary init containers no longer count.
    check_cell(
        "Pod",
        pod(
            spec,
            json!({
                "phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [{"name": "init-db", "restartCount": 4,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
                "containerStatuses": [running("app", 0)]
            }),
        ),
        "Restarts",
        json!("0"),
    );
}

#[test]
fn pod_sidecars_count_as_containers() {
    check(
        "Pod",
        pod(
            json!({
                "nodeName": "node-1",
                "initContainers": [
                    {"name": "migrate", "image": "migrate:1"},
                    {"name": "istio-proxy", "image": "istio/proxyv2:1.21", "restartPolicy": "Always"}
                ],
                "containers": [{"name": "app", "image": "app:1"}]
            }),
            json!({
                "phase": "Running",
                "podIPs": [{"ip": "10.244.1.8"}],
                "conditions": [
                    {"type": "Initialized", "status": "True"},
                    {"type": "Ready", "status": "True"}
                ],
                "initContainerStatuses": [
                    {"name": "migrate", "ready": true, "restartCount": 0,
                     "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {"name": "istio-proxy", "ready": true, "started": true, "restartCount": 1,
                     "state": {"running": {}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T10:00:00Z"}}}
                ],
                "containerStatuses": [{
                    "name": "app", "ready": true, "restartCount": 2, "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 2, "finishedAt": "2024-05-01T11:00:00Z"}}
                }]
            }),
        ),
        json!([
            "web-7d4b9c8f5-x2x9k",
            "2/2",
            "Running",
            "3 (60m ago)",
            "150m",
            "10.244.1.8",
            "node-1",
            "<none>",
            "<none>"
        ]),
    );
}

#[test]
fn pod_deletion_states() {
    let deleting = |phase: &str, reason: &str| {
        let mut p = pod(
            json!({"containers": [{"name": "app"}]}),
            json!({"phase": phase, "reason": reason,
                   "containerStatuses": [running("app", 0)]}),
        );
        p["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:30Z");
        p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        p
    };
    check_cell(
        "Pod",
        deleting("Running", ""),
        "Status",
        json!("Terminating"),
    );
    check_cell(
        "Pod",
        deleting("Running", "NodeLost"),
        "Status",
        json!("Unknown"),
    );
    // A pod that already finished keeps showing how it finished.
    check_cell(
        "Pod",
        deleting("Succeeded", ""),
        "Status",
        json!("Succeeded"),
    );
    check_cell(
        "Pod",
        deleting("Failed", "Evicted"),
        "Status",
        json!("Evicted"),
    );
}

#[test]
fn pod_wide_cells() {
    let p = pod(
        json!({
            "containers": [{"name": "app"}],
            "readinessGates": [
                {"conditionType": "target-health.elbv2.k8s.aws/web"},
                {"conditionType": "example.com/feature-ready"}
            ]
        }),
        json!({
            "phase": "Pending",
            "nominatedNodeName": "node-3",
            "conditions": [
                {"type": "target-health.elbv2.k8s.aws/web", "status": "True"},
                {"type": "example.com/feature-ready", "status": "False"}
            ]
        }),
    );
    let table = table_of("Pod", p);
    assert_eq!(
        table["rows"][0]["cells"],
        json!([
            "web-7d4b9c8f5-x2x9k",
            "0/1",
            "Pending",
            "0",
            "150m",
            "<none>",
            "<none>",
            "node-3",
            "1/2"
        ])
    );
}

#[test]
fn finished_pod_rows_carry_completed_conditions() {
    let table = to_table(
        kind("Pod"),
        &[
            pod(json!({}), json!({"phase": "Succeeded"})),
            pod(json!({}), json!({"phase": "Failed"})),
            pod(json!({}), json!({"phase": "Running"})),
        ],
        now(),
        IncludeObject::None,
        json!({}),
    );
    assert_eq!(
        table["rows"][0]["conditions"],
        json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
                "message": "The pod has completed successfully."}])
    );
    assert_eq!(
        table["rows"][1]["conditions"],
        json!([{"type": "Completed", "status": "True", "reason": "Failed",
                "message": "The pod failed."}])
    );
    assert!(table["rows"][2].get("conditions").is_none());
}

// ---------------------------------------------------------------------------------------
// Workloads

fn pod_template(containers: Value) -> Value {
    json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": containers}
    })
}

fn web_containers() -> Value {
    json!([
        {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
        {"name": "exporter", "image": "nginx/nginx-prometheus-exporter:1.1"}
    ])
}

#[test]
fn deployment() {
    check(
        "Deployment",
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default",
                         "creationTimestamp": "2024-04-26T12:00:00Z", "generation": 3},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": pod_template(web_containers())
            },
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3,
                       "availableReplicas": 2, "observedGeneration": 3}
        }),
        json!([
            "web",
            "2/3",
            3,
            2,
            "5d",
            "nginx,exporter",
            "nginx:1.25,nginx/nginx-prometheus-exporter:1.1",
            "app=web"
        ]),
    );
}

#[test]
fn deployment_selector_and_defaults() {
    let deployment = |selector: Value| {
        json!({
            "metadata": {"name": "api", "creationTimestamp": "2024-05-01T11:59:15Z"},
            "spec": {"selector": selector, "template": pod_template(json!([]))}
        })
    };
    // Requirements sort by key; `In` values sort too.
    check(
        "Deployment",
        deployment(json!({
            "matchLabels": {"app": "api"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["frontend", "api"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "managed", "operator": "Exists"}
            ]
        })),
        json!([
            "api",
            "0/1",
            0,
            0,
            "45s",
            "",
            "",
            "app=api,!canary,env notin (dev),managed,tier in (api,frontend)"
        ]),
    );
    check_cell(
        "Deployment",
        deployment(json!({"matchExpressions": [{"key": "a", "operator": "Matches"}]})),
        "Selector",
        json!("<invalid>"),
    );
    check_cell(
        "Deployment",
        deployment(json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})),
        "Selector",
        json!("<invalid>"),
    );
    check_cell("Deployment", deployment(json!(null)), "Selector", json!(""));
}

#[test]
fn replica_set() {
    check(
        "ReplicaSet",
        json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "web-7d4b9c8f5", "creationTimestamp": "2024-04-26T12:00:00Z",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                              "name": "web", "controller": true}]},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7d4b9c8f5"}},
                "template": pod_template(json!([{"name": "nginx", "image": "nginx:1.25"}]))
            },
            "status": {"replicas": 3, "readyReplicas": 3, "availableReplicas": 3}
        }),
        json!([
            "web-7d4b9c8f5",
            3,
            3,
            3,
            "5d",
            "nginx",
            "nginx:1.25",
            "app=web,pod-template-hash=7d4b9c8f5"
        ]),
    );
    // An old ReplicaSet scaled to zero, with no selector to print.
    check(
        "ReplicaSet",
        json!({"metadata": {"name": "web-5c6b7d8e9"}, "spec": {"replicas": 0}, "status": {"replicas": 0}}),
        json!(["web-5c6b7d8e9", 0, 0, 0, "<unknown>", "", "", "<none>"]),
    );
}

#[test]
fn stateful_set() {
    check(
        "StatefulSet",
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "postgres", "creationTimestamp": "2024-04-01T12:00:00Z"},
            "spec": {
                "replicas": 3,
                "serviceName": "postgres",
                "selector": {"matchLabels": {"app": "postgres"}},
                "template": pod_template(json!([{"name": "postgres", "image": "postgres:16"}]))
            },
            "status": {"replicas": 2, "readyReplicas": 1, "currentReplicas": 2}
        }),
        json!(["postgres", "1/3", "30d", "postgres", "postgres:16"]),
    );
}

#[test]
fn daemon_set() {
    check(
        "DaemonSet",
        json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "kube-proxy", "namespace": "kube-system",
                         "creationTimestamp": "2023-05-01T12:00:00Z"},
            "spec": {
                "selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                "template": {
                    "metadata": {"labels": {"k8s-app": "kube-proxy"}},
                    "spec": {
                        "nodeSelector": {"kubernetes.io/os": "linux", "drover.io/pool": "edge"},
                        "containers": [{"name": "kube-proxy",
                                        "image": "registry.k8s.io/kube-proxy:v1.30.2"}]
                    }
                }
            },
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                       "updatedNumberScheduled": 3, "numberAvailable": 2}
        }),
        json!([
            "kube-proxy",
            3,
            3,
            2,
            3,
            2,
            "drover.io/pool=edge,kubernetes.io/os=linux",
            "366d",
            "kube-proxy",
            "registry.k8s.io/kube-proxy:v1.30.2",
            "k8s-app=kube-proxy"
        ]),
    );
}

fn job(spec: Value, status: Value) -> Value {
    let mut spec = spec;
    spec["template"] = pod_template(json!([{"name": "pi", "image": "perl:5.34"}]));
    spec["selector"] = json!({"matchLabels": {
        "batch.kubernetes.io/controller-uid": "6c0cb1a4-5f33-4b5e-9a7b-1f0e2c3d4e5f"}});
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default", "creationTimestamp": "2024-05-01T11:00:00Z"},
        "spec": spec,
        "status": status,
    })
}

#[test]
fn job_complete() {
    check(
        "Job",
        job(
            json!({"completions": 1, "parallelism": 1, "backoffLimit": 4}),
            json!({
                "succeeded": 1,
                "startTime": "2024-05-01T11:00:00Z",
                "completionTime": "2024-05-01T11:00:45Z",
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True"},
                    {"type": "Complete", "status": "True"}
                ]
            }),
        ),
        json!([
            "pi",
            "Complete",
            "1/1",
            "45s",
            "60m",
            "pi",
            "perl:5.34",
            "batch.kubernetes.io/controller-uid=6c0cb1a4-5f33-4b5e-9a7b-1f0e2c3d4e5f"
        ]),
    );
}

#[test]
fn job_status_and_completions() {
    let cases: Vec<(Value, Value, bool, &str, &str, &str)> = vec![
        // spec, status, deleting, STATUS, COMPLETIONS, DURATION
        (
            json!({"parallelism": 3}),
            json!({"active": 3, "startTime": "2024-05-01T11:50:00Z"}),
            false,
            "Running",
            "0/1 of 3",
            "10m",
        ),
        (json!({}), json!({}), false, "Running", "0/1", ""),
        (
            json!({"completions": 5, "parallelism": 2}),
            json!({"succeeded": 2, "failed": 7, "startTime": "2024-05-01T11:00:00Z",
                   "conditions": [{"type": "FailureTarget", "status": "True"},
                                  {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}),
            false,
            "Failed",
            "2/5",
            "60m",
        ),
        (
            json!({"completions": 5, "suspend": true}),
            json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
            false,
            "Suspended",
            "0/5",
            "",
        ),
        (
            json!({"completions": 1}),
            json!({"conditions": [{"type": "FailureTarget", "status": "True"}]}),
            false,
            "FailureTarget",
            "0/1",
            "",
        ),
        (
            json!({"completions": 1}),
            json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
            true,
            "Terminating",
            "0/1",
            "",
        ),
        (
            // A condition that is not true does not count.
            json!({"completions": 1}),
            json!({"conditions": [{"type": "Complete", "status": "False"}]}),
            false,
            "Running",
            "0/1",
            "",
        ),
    ];
    for (spec, status, deleting, expected_status, completions, duration) in cases {
        let mut j = job(spec, status);
        if deleting {
            j["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:00Z");
        }
        let table = table_of("Job", j);
        let cells = &table["rows"][0]["cells"];
        assert_eq!(cells[1], expected_status);
        assert_eq!(cells[2], completions, "{expected_status}");
        assert_eq!(cells[3], duration, "{expected_status}");
    }
}

#[test]
fn cron_job() {
    check(
        "CronJob",
        json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "backup", "creationTimestamp": "2024-04-29T12:00:00Z"},
            "spec": {
                "schedule": "*/5 * * * *",
                "timeZone": "Europe/Berlin",
                "suspend": false,
                "concurrencyPolicy": "Forbid",
                "jobTemplate": {"spec": {"template": pod_template(json!([
                    {"name": "backup", "image": "restic/restic:0.16"}
                ]))}}
            },
            "status": {
                "active": [{"kind": "Job", "name": "backup-28576915", "namespace": "default"}],
                "lastScheduleTime": "2024-05-01T11:55:00Z",
                "lastSuccessfulTime": "2024-05-01T11:51:00Z"
            }
        }),
        json!([
            "backup",
            "*/5 * * * *",
            "Europe/Berlin",
            "False",
            1,
            "5m",
            "2d",
            "backup",
            "restic/restic:0.16",
            "<none>"
        ]),
    );
    check(
        "CronJob",
        json!({"metadata": {"name": "report"}, "spec": {"schedule": "@daily", "suspend": true}}),
        json!([
            "report",
            "@daily",
            "<none>",
            "True",
            0,
            "<none>",
            "<unknown>",
            "",
            "",
            "<none>"
        ]),
    );
    check_cell(
        "CronJob",
        json!({"spec": {"schedule": "0 * * * *"}}),
        "Suspend",
        json!("<unset>"),
    );
}

fn hpa(metrics: Value, current_metrics: Value) -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "creationTimestamp": "2024-04-30T00:00:00Z"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2,
            "maxReplicas": 10,
            "metrics": metrics
        },
        "status": {"currentReplicas": 3, "desiredReplicas": 3, "currentMetrics": current_metrics}
    })
}

#[test]
fn hpa_cpu_utilization() {
    check(
        "HorizontalPodAutoscaler",
        hpa(
            json!([{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80}}}]),
            json!([{"type": "Resource", "resource": {"name": "cpu",
                    "current": {"averageUtilization": 45, "averageValue": "225m"}}}]),
        ),
        json!(["web", "Deployment/web", "cpu: 45%/80%", "2", 10, 3, "36h"]),
    );
}

#[test]
fn hpa_targets_cases() {
    let cases: Vec<(Value, Value, &str)> = vec![
        (json!(null), json!(null), "<none>"),
        (
            // Not yet measured.
            json!([{"type": "Resource", "resource": {"name": "memory",
                    "target": {"type": "Utilization", "averageUtilization": 70}}}]),
            json!(null),
            "memory: <unknown>/70%",
        ),
        (
            json!([
                {"type": "Resource", "resource": {"name": "cpu",
                 "target": {"type": "Utilization", "averageUtilization": 80}}},
                {"type": "Resource", "resource": {"name": "memory",
                 "target": {"type": "AverageValue", "averageValue": "1Gi"}}},
                {"type": "Pods", "pods": {"metric": {"name": "packets-per-second"},
                 "target": {"type": "AverageValue", "averageValue": "1k"}}},
                {"type": "External", "external": {"metric": {"name": "queue_messages_ready"},
                 "target": {"type": "Value", "value": "30"}}}
            ]),
            json!([
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 50}}},
                {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "700Mi"}}}
            ]),
            "cpu: 50%/80%, memory: 700Mi/1Gi + 2 more...",
        ),
        (
            json!([
                {"type": "Pods", "pods": {"metric": {"name": "packets-per-second"},
                 "target": {"type": "AverageValue", "averageValue": "1k"}}},
                {"type": "External", "external": {"metric": {"name": "queue_messages_ready"},
                 "target": {"type": "AverageValue", "averageValue": "30"}}}
            ]),
            json!([
                {"type": "Pods", "pods": {"metric": {"name": "packets-per-second"},
                 "current": {"averageValue": "850"}}}
            ]),
            "850/1k, <unknown>/30 (avg)",
        ),
        (
            json!([
                {"type": "Object", "object": {"metric": {"name": "requests-per-second"},
                 "describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "main"},
                 "target": {"type": "Value", "value": "10k"}}},
                {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app",
                 "target": {"type": "Utilization"}}}
            ]),
            json!([
                {"type": "Object", "object": {"metric": {"name": "requests-per-second"},
                 "current": {"value": "12k"}}},
                {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app",
                 "current": {"averageUtilization": 33}}}
            ]),
            "12k/10k, cpu: 33%/<auto>",
        ),
        (json!([{"type": "Unheard"}]), json!(null), "<unknown type>"),
    ];
    for (metrics, current, expected) in cases {
        check_cell(
            "HorizontalPodAutoscaler",
            hpa(metrics, current),
            "Targets",
            json!(expected),
        );
    }
    check_cell(
        "HorizontalPodAutoscaler",
        json!({"spec": {"maxReplicas": 4}}),
        "MinPods",
        json!("<unset>"),
    );
}

#[test]
fn pod_disruption_budget() {
    let pdb = |spec: Value| {
        json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "web-pdb", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": spec,
            "status": {"disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2,
                       "expectedPods": 3}
        })
    };
    check(
        "PodDisruptionBudget",
        pdb(json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}})),
        json!(["web-pdb", "2", "N/A", 1, "60m"]),
    );
    check(
        "PodDisruptionBudget",
        pdb(json!({"maxUnavailable": "25%"})),
        json!(["web-pdb", "N/A", "25%", 1, "60m"]),
    );
}

#[test]
fn controller_revision() {
    let revision = |owners: Value| {
        json!({
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {"name": "postgres-5d8f7b9c4", "creationTimestamp": "2024-04-01T12:00:00Z",
                         "ownerReferences": owners},
            "revision": 2,
            "data": {"spec": {"template": {}}}
        })
    };
    check(
        "ControllerRevision",
        revision(
            json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "postgres",
                         "uid": "u1", "controller": true, "blockOwnerDeletion": true}]),
        ),
        json!(["postgres-5d8f7b9c4", "statefulset.apps/postgres", 2, "30d"]),
    );
    check_cell(
        "ControllerRevision",
        revision(json!([
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "not-the-controller"},
            {"apiVersion": "v1", "kind": "Pod", "name": "static", "controller": true}
        ])),
        "Controller",
        json!("pod/static"),
    );
    check_cell(
        "ControllerRevision",
        revision(json!(null)),
        "Controller",
        json!("<none>"),
    );
}

// ---------------------------------------------------------------------------------------
// Networking

fn service(spec: Value, status: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-04-26T12:00:00Z"},
        "spec": spec,
        "status": status,
    })
}

#[test]
fn service_cluster_ip() {
    check(
        "Service",
        service(
            json!({
                "type": "ClusterIP",
                "clusterIP": "10.96.14.2",
                "clusterIPs": ["10.96.14.2"],
                "selector": {"app": "web", "tier": "frontend"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                    {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}
                ]
            }),
            json!({"loadBalancer": {}}),
        ),
        json!([
            "web",
            "ClusterIP",
            "10.96.14.2",
            "<none>",
            "80/TCP,443/TCP",
            "5d",
            "app=web,tier=frontend"
        ]),
    );
}

#[test]
fn service_external_ip_and_ports() {
    let cases: Vec<(Value, Value, &str, &str, &str)> = vec![
        // spec, status, CLUSTER-IP, EXTERNAL-IP, PORT(S)
        (
            json!({"type": "NodePort", "clusterIPs": ["10.96.0.20"],
                   "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}),
            json!({}),
            "10.96.0.20",
            "<none>",
            "80:30080/TCP",
        ),
        (
            json!({"type": "NodePort", "clusterIP": "10.96.0.21", "externalIPs": ["198.51.100.7"],
                   "ports": [{"port": 53, "nodePort": 30053, "protocol": "UDP"}, {"port": 53}]}),
            json!({}),
            "10.96.0.21",
            "198.51.100.7",
            "53:30053/UDP,53/TCP",
        ),
        (
            json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.30"],
                   "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}),
            json!({"loadBalancer": {}}),
            "10.96.0.30",
            "<pending>",
            "443:31443/TCP",
        ),
        (
            json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.31"], "externalIPs": ["198.51.100.7"],
                   "ports": [{"port": 80, "protocol": "TCP"}]}),
            json!({"loadBalancer": {"ingress": [
                {"hostname": "a1b2c3.elb.example.com"}, {"ip": "203.0.113.10"}, {"ip": "203.0.113.10"}]}}),
            "10.96.0.31",
            "203.0.113.10,a1b2c3.elb.example.com,198.51.100.7",
            "80/TCP",
        ),
        (
            json!({"type": "ExternalName", "externalName": "db.example.com"}),
            json!({}),
            "<none>",
            "db.example.com",
            "<none>",
        ),
        (
            // Headless.
            json!({"clusterIP": "None", "clusterIPs": ["None"],
                   "ports": [{"port": 5432, "protocol": "TCP"}]}),
            json!({}),
            "None",
            "<none>",
            "5432/TCP",
        ),
        (
            json!({"type": "Tunnel"}),
            json!({}),
            "<none>",
            "<unknown>",
            "<none>",
        ),
    ];
    for (spec, status, cluster_ip, external_ip, ports) in cases {
        let table = table_of("Service", service(spec, status));
        let cells = &table["rows"][0]["cells"];
        assert_eq!(cells[2], cluster_ip);
        assert_eq!(cells[3], external_ip, "{cluster_ip}");
        assert_eq!(cells[4], ports, "{cluster_ip}");
    }
}

fn endpoints(subsets: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-04-26T12:00:00Z"},
        "subsets": subsets,
    })
}

#[test]
fn endpoints_list_with_more() {
    check(
        "Endpoints",
        endpoints(json!([
            {"addresses": [{"ip": "10.244.1.5", "nodeName": "node-1",
                            "targetRef": {"kind": "Pod", "name": "web-1"}},
                           {"ip": "10.244.2.7"}],
             "notReadyAddresses": [{"ip": "10.244.3.3"}],
             "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
            {"addresses": [{"ip": "10.244.3.2"}],
             "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}]}
        ])),
        json!([
            "web",
            "10.244.1.5:8080,10.244.2.7:8080,10.244.3.2:8080 + 1 more...",
            "5d"
        ]),
    );
}

#[test]
fn endpoints_cases() {
    let cases: Vec<(Value, &str)> = vec![
        (json!(null), "<none>"),
        (json!([]), "<none>"),
        (
            json!([{"addresses": [{"ip": "10.244.1.5"}, {"ip": "10.244.1.6"}]}]),
            "10.244.1.5,10.244.1.6",
        ),
        (
            json!([{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]),
            "[fd00::1]:80",
        ),
        (
            json!([{"notReadyAddresses": [{"ip": "10.244.1.5"}], "ports": [{"port": 80}]}]),
            "",
        ),
        (
            json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"},
                                  {"ip": "10.0.0.4"}, {"ip": "10.0.0.5"}]}]),
            "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...",
        ),
    ];
    for (subsets, expected) in cases {
        check_cell(
            "Endpoints",
            endpoints(subsets),
            "Endpoints",
            json!(expected),
        );
    }
}

#[test]
fn endpoint_slice() {
    check(
        "EndpointSlice",
        json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "web-x7k2p", "namespace": "default",
                         "creationTimestamp": "2024-04-26T12:00:00Z",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.244.1.5"], "conditions": {"ready": true}, "nodeName": "node-1"},
                {"addresses": ["10.244.2.7"], "conditions": {"ready": false}}
            ]
        }),
        json!(["web-x7k2p", "IPv4", "8080", "10.244.1.5,10.244.2.7", "5d"]),
    );
    check(
        "EndpointSlice",
        json!({
            "metadata": {"name": "empty"},
            "addressType": "IPv6",
            "ports": [{"name": "dns"}, {}, {"port": 53}, {"port": 9153}],
        }),
        json!([
            "empty",
            "IPv6",
            "dns,*,53 + 1 more...",
            "<unset>",
            "<unknown>"
        ]),
    );
}

// ---------------------------------------------------------------------------------------
// Cluster

fn node(labels: Value, spec: Value, status: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "cp-1", "creationTimestamp": "2024-04-01T12:00:00Z", "labels": labels},
        "spec": spec,
        "status": status,
    })
}

#[test]
fn node_ready_control_plane() {
    check(
        "Node",
        node(
            json!({"kubernetes.io/hostname": "cp-1", "kubernetes.io/os": "linux",
                   "node-role.kubernetes.io/control-plane": ""}),
            json!({"podCIDR": "10.244.0.0/24"}),
            json!({
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "True", "reason": "KubeletReady"}
                ],
                "addresses": [
                    {"type": "InternalIP", "address": "192.168.1.10"},
                    {"type": "Hostname", "address": "cp-1"}
                ],
                "nodeInfo": {
                    "kubeletVersion": "v1.30.2",
                    "osImage": "Ubuntu 22.04.4 LTS",
                    "kernelVersion": "5.15.0-105-generic",
                    "containerRuntimeVersion": "containerd://1.7.13",
                    "architecture": "amd64"
                }
            }),
        ),
        json!([
            "cp-1",
            "Ready",
            "control-plane",
            "30d",
            "v1.30.2",
            "192.168.1.10",
            "<none>",
            "Ubuntu 22.04.4 LTS",
            "5.15.0-105-generic",
            "containerd://1.7.13"
        ]),
    );
}

#[test]
fn node_status_and_roles() {
    let cases: Vec<(Value, Value, Value, &str, &str)> = vec![
        (
            json!({"kubernetes.io/role": "worker", "node-role.kubernetes.io/gpu": "true",
                   "node-role.kubernetes.io/": ""}),
            json!({"unschedulable": true}),
            json!({"conditions": [{"type": "Ready", "status": "False"}]}),
            "NotReady,SchedulingDisabled",
            "gpu,worker",
        ),
        (
            json!({}),
            json!({}),
            json!({"conditions": [{"type": "Ready", "status": "Unknown",
                                   "reason": "NodeStatusUnknown"}]}),
            "NotReady",
            "<none>",
        ),
        (
            json!(null),
            json!({"unschedulable": true}),
            json!({}),
            "Unknown,SchedulingDisabled",
            "<none>",
        ),
        (
            // The last Ready condition listed wins.
            json!({"node-role.kubernetes.io/worker": ""}),
            json!({}),
            json!({"conditions": [{"type": "Ready", "status": "False"},
                                  {"type": "Ready", "status": "True"}]}),
            "Ready",
            "worker",
        ),
    ];
    for (labels, spec, status, expected_status, roles) in cases {
        let table = table_of("Node", node(labels, spec, status));
        let cells = &table["rows"][0]["cells"];
        assert_eq!(cells[1], expected_status);
        assert_eq!(cells[2], roles, "{expected_status}");
    }
    // A node that never reported: no version, unknown system facts.
    check(
        "Node",
        node(
            json!({}),
            json!({}),
            json!({"addresses": [{"type": "ExternalIP", "address": "203.0.113.4"}]}),
        ),
        json!([
            "cp-1",
            "Unknown",
            "<none>",
            "30d",
            "",
            "<none>",
            "203.0.113.4",
            "<unknown>",
            "<unknown>",
            "<unknown>"
        ]),
    );
}

#[test]
fn namespace() {
    check(
        "Namespace",
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "kube-system", "creationTimestamp": "2022-05-01T12:00:00Z"},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}
        }),
        json!(["kube-system", "Active", "2y1d"]),
    );
    check(
        "Namespace",
        json!({
            "metadata": {"name": "old-team", "creationTimestamp": "2024-05-01T11:58:30Z",
                         "deletionTimestamp": "2024-05-01T11:59:00Z"},
            "status": {"phase": "Terminating"}
        }),
        json!(["old-team", "Terminating", "90s"]),
    );
    check(
        "Namespace",
        json!({"metadata": {"name": "fresh"}}),
        json!(["fresh", "Active", "<unknown>"]),
    );
}

#[test]
fn event_core_v1() {
    check(
        "Event",
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "web-1.17c8a5b2d3e4f", "namespace": "default",
                         "creationTimestamp": "2024-05-01T11:00:00Z"},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "web-1",
                               "namespace": "default", "fieldPath": "spec.containers{nginx}"},
            "reason": "BackOff",
            "message": "Back-off restarting failed container nginx in pod web-1_default\n",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2024-05-01T11:00:00Z",
            "lastTimestamp": "2024-05-01T11:58:00Z",
            "count": 5,
            "type": "Warning"
        }),
        json!([
            "2m",
            "Warning",
            "BackOff",
            "pod/web-1",
            "spec.containers{nginx}",
            "kubelet, node-1",
            "Back-off restarting failed container nginx in pod web-1_default",
            "60m",
            5,
            "web-1.17c8a5b2d3e4f"
        ]),
    );
}

#[test]
fn event_new_api_fields() {
    // Written through events.k8s.io: eventTime and series instead of timestamps and count.
    check(
        "Event",
        json!({
            "metadata": {"name": "web.17c8a5b2d3e50"},
            "eventTime": "2024-05-01T11:00:00.000000Z",
            "series": {"count": 12, "lastObservedTime": "2024-05-01T11:59:00.000000Z"},
            "involvedObject": {"kind": "Deployment", "name": "web"},
            "reportingComponent": "deployment-controller",
            "reportingInstance": "cp-1",
            "reason": "ScalingReplicaSet",
            "message": "Scaled up replica set web-7d4b9c8f5 to 3",
            "type": "Normal"
        }),
        json!([
            "60s",
            "Normal",
            "ScalingReplicaSet",
            "deployment/web",
            "",
            "deployment-controller, cp-1",
            "Scaled up replica set web-7d4b9c8f5 to 3",
            "60m",
            12,
            "web.17c8a5b2d3e50"
        ]),
    );
    // A singleton with nothing but a first timestamp, about a whole kind.
    check(
        "Event",
        json!({
            "metadata": {"name": "e"},
            "firstTimestamp": "2024-05-01T11:59:50Z",
            "involvedObject": {"kind": "Node"},
            "source": {"component": "drover-scheduler"}
        }),
        json!([
            "10s",
            "",
            "",
            "node",
            "",
            "drover-scheduler",
            "",
            "10s",
            1,
            "e"
        ]),
    );
}

#[test]
fn lease_and_priority_class() {
    check(
        "Lease",
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "kube-controller-manager", "namespace": "kube-system",
                         "creationTimestamp": "2024-04-01T12:00:00Z"},
            "spec": {"holderIdentity": "cp-1_5f8a6b7c-1d2e-4f3a-8b9c-0d1e2f3a4b5c",
                     "leaseDurationSeconds": 15, "renewTime": "2024-05-01T11:59:58.000000Z"}
        }),
        json!([
            "kube-controller-manager",
            "cp-1_5f8a6b7c-1d2e-4f3a-8b9c-0d1e2f3a4b5c",
            "30d"
        ]),
    );
    check(
        "Lease",
        json!({"metadata": {"name": "node-1"}, "spec": {}}),
        json!(["node-1", "", "<unknown>"]),
    );
    check(
        "PriorityClass",
        json!({
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": "system-node-critical", "creationTimestamp": "2024-04-01T12:00:00Z"},
            "value": 2000001000,
            "description": "Used for system critical pods that must not be moved from their current node.",
            "preemptionPolicy": "PreemptLowerPriority"
        }),
        json!([
            "system-node-critical",
            2000001000,
            false,
            "30d",
            "PreemptLowerPriority"
        ]),
    );
    check(
        "PriorityClass",
        json!({"metadata": {"name": "default-priority"}, "value": 1000, "globalDefault": true}),
        json!(["default-priority", 1000, true, "<unknown>", ""]),
    );
}

// ---------------------------------------------------------------------------------------
// Configuration and storage

#[test]
fn config_map_secret_service_account() {
    check(
        "ConfigMap",
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "nginx-conf", "creationTimestamp": "2024-05-01T11:54:50Z"},
            "data": {"nginx.conf": "events {}", "mime.types": "types {}"},
            "binaryData": {"favicon.ico": "AAABAAEAEBA="}
        }),
        json!(["nginx-conf", 3, "5m10s"]),
    );
    check(
        "Secret",
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "web-tls", "creationTimestamp": "2024-04-26T12:00:00Z"},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "LS0tLS1CRUdJTg==", "tls.key": "LS0tLS1CRUdJTg=="}
        }),
        json!(["web-tls", "kubernetes.io/tls", 2, "5d"]),
    );
    check(
        "Secret",
        json!({"metadata": {"name": "empty"}}),
        json!(["empty", "Opaque", 0, "<unknown>"]),
    );
    check(
        "ServiceAccount",
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "builder", "creationTimestamp": "2024-04-26T12:00:00Z"},
            "secrets": [{"name": "builder-token"}],
            "imagePullSecrets": [{"name": "registry"}]
        }),
        json!(["builder", 1, "5d"]),
    );
    check(
        "ServiceAccount",
        json!({"metadata": {"name": "default", "creationTimestamp": "2024-04-26T12:00:00Z"}}),
        json!(["default", 0, "5d"]),
    );
}

#[test]
fn resource_quota() {
    check(
        "ResourceQuota",
        json!({
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "team-a", "creationTimestamp": "2024-04-26T12:00:00Z"},
            "spec": {"hard": {"requests.cpu": "2", "requests.memory": "4Gi", "limits.cpu": "4",
                              "limits.memory": "8Gi", "pods": "10"}},
            "status": {
                "hard": {"requests.cpu": "2", "requests.memory": "4Gi", "limits.cpu": "4",
                         "limits.memory": "8Gi", "pods": "10"},
                "used": {"requests.cpu": "500m", "requests.memory": "1Gi", "limits.cpu": "1",
                         "pods": "3"}
            }
        }),
        json!([
            "team-a",
            "pods: 3/10, requests.cpu: 500m/2, requests.memory: 1Gi/4Gi",
            "limits.cpu: 1/4, limits.memory: 0/8Gi",
            "5d"
        ]),
    );
    // Before the quota controller has reported anything.
    check(
        "ResourceQuota",
        json!({"metadata": {"name": "new"}, "spec": {"hard": {"pods": "10"}}}),
        json!(["new", "", "", "<unknown>"]),
    );
}

#[test]
fn limit_range_gets_the_api_server_default_table() {
    let table = table_of(
        "LimitRange",
        json!({
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": {"name": "limits", "creationTimestamp": "2024-04-01T12:00:00.5Z"},
            "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m"}}]}
        }),
    );
    assert_eq!(table["columnDefinitions"][1]["type"], "date");
    assert_eq!(
        table["rows"][0]["cells"],
        json!(["limits", "2024-04-01T12:00:00Z"])
    );
    check(
        "LimitRange",
        json!({"metadata": {"name": "undated"}}),
        json!(["undated", "0001-01-01T00:00:00Z"]),
    );
}

#[test]
fn persistent_volume() {
    check(
        "PersistentVolume",
        json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "pv-data-0", "creationTimestamp": "2024-04-01T12:00:00Z"},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "standard",
                "volumeMode": "Filesystem",
                "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "default",
                             "name": "data-postgres-0"},
                "hostPath": {"path": "/var/lib/drover/volumes/pv-data-0"}
            },
            "status": {"phase": "Bound"}
        }),
        json!([
            "pv-data-0",
            "10Gi",
            "RWO,RWX",
            "Retain",
            "Bound",
            "default/data-postgres-0",
            "standard",
            "<unset>",
            "",
            "30d",
            "Filesystem"
        ]),
    );
    check(
        "PersistentVolume",
        json!({
            "metadata": {"name": "pv-old", "deletionTimestamp": "2024-05-01T11:00:00Z",
                         "annotations": {"volume.beta.kubernetes.io/storage-class": "slow"}},
            "spec": {"storageClassName": "standard", "accessModes": ["ReadWriteOncePod"],
                     "volumeAttributesClassName": "gold"},
            "status": {"phase": "Failed", "reason": "VolumeFailedRecycle"}
        }),
        json!([
            "pv-old",
            "0",
            "RWOP",
            "",
            "Terminating",
            "",
            "slow",
            "gold",
            "VolumeFailedRecycle",
            "<unknown>",
            "<unset>"
        ]),
    );
}

#[test]
fn persistent_volume_claim() {
    check(
        "PersistentVolumeClaim",
        json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data-postgres-0", "creationTimestamp": "2024-04-01T12:00:00Z"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "5Gi"}},
                "storageClassName": "standard",
                "volumeMode": "Filesystem",
                "volumeName": "pv-data-0"
            },
            "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                       "capacity": {"storage": "10Gi"}}
        }),
        json!([
            "data-postgres-0",
            "Bound",
            "pv-data-0",
            "10Gi",
            "RWO",
            "standard",
            "<unset>",
            "30d",
            "Filesystem"
        ]),
    );
    // Not bound yet: no capacity or access modes to show.
    check(
        "PersistentVolumeClaim",
        json!({
            "metadata": {"name": "scratch", "creationTimestamp": "2024-05-01T11:59:00Z"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Pending"}
        }),
        json!([
            "scratch", "Pending", "", "", "", "", "<unset>", "60s", "<unset>"
        ]),
    );
}

// ---------------------------------------------------------------------------------------
// Custom resources

#[test]
fn drover_and_unknown_kinds_get_name_and_age() {
    check(
        "TrafficSplit",
        json!({
            "apiVersion": "drover.io/v1",
            "kind": "TrafficSplit",
            "metadata": {"name": "web-canary", "namespace": "default",
                         "creationTimestamp": "2024-05-01T04:30:00Z"},
            "spec": {"service": "web", "backends": [{"service": "web-v2", "weight": 10}]}
        }),
        json!(["web-canary", "7h30m"]),
    );
    let widget = KindInfo {
        group: "example.com",
        version: "v1alpha1",
        kind: "Widget",
        plural: "widgets",
        singular: "widget",
        short_names: &[],
        namespaced: true,
        categories: &[],
    };
    let table = to_table(
        &widget,
        &[json!({"metadata": {"name": "w", "creationTimestamp": "2024-04-28T11:00:00Z"}})],
        now(),
        IncludeObject::None,
        json!({}),
    );
    assert_eq!(table["rows"][0]["cells"], json!(["w", "3d1h"]));
    assert_eq!(table["columnDefinitions"][1]["name"], "Age");
    assert_eq!(table["columnDefinitions"][1]["type"], "date");
}

#[test]
fn future_and_unparseable_timestamps() {
    let config_map =
        |created: &str| json!({"metadata": {"name": "c", "creationTimestamp": created}});
    // A clock a second behind the writer's still reads as brand new.
    check_cell(
        "ConfigMap",
        config_map("2024-05-01T12:00:01Z"),
        "Age",
        json!("0s"),
    );
    check_cell(
        "ConfigMap",
        config_map("2024-05-01T12:05:00Z"),
        "Age",
        json!("<invalid>"),
    );
    check_cell(
        "ConfigMap",
        config_map("last tuesday"),
        "Age",
        json!("<unknown>"),
    );
    check_cell(
        "ConfigMap",
        config_map("2024-05-01T13:00:00+01:00"),
        "Age",
        json!("0s"),
    );
}
