//! Patch cases as data: each table row is (description, [kind,] target, patch, expected).

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

/// Applies a strategic merge patch for `kind` and compares with `expected`.
fn check(name: &str, kind: &str, target: Value, patch: Value, expected: Value) {
    let body = serde_json::to_vec(&patch).unwrap();
    match apply_strategic_merge_patch(kind, &target, &body) {
        Ok(actual) => assert_eq!(
            actual, expected,
            "strategic case {name:?}\n  actual:   {actual}\n  expected: {expected}"
        ),
        Err(error) => panic!("strategic case {name:?} failed: {error}"),
    }
}

fn check_json(name: &str, target: Value, patch: Value, expected: Value) {
    let body = serde_json::to_vec(&patch).unwrap();
    match apply_json_patch(&target, &body) {
        Ok(actual) => assert_eq!(actual, expected, "json patch case {name:?}"),
        Err(error) => panic!("json patch case {name:?} failed: {error}"),
    }
}

fn check_merge(name: &str, target: Value, patch: Value, expected: Value) {
    let body = serde_json::to_vec(&patch).unwrap();
    match apply_merge_patch(&target, &body) {
        Ok(actual) => assert_eq!(actual, expected, "merge patch case {name:?}"),
        Err(error) => panic!("merge patch case {name:?} failed: {error}"),
    }
}

/// Applies `body` as `patch_type` and expects an error with HTTP status `status`.
fn check_err(
    name: &str,
    patch_type: PatchType,
    kind: &str,
    target: &Value,
    body: &[u8],
    status: u16,
) {
    let result = match patch_type {
        PatchType::Json => apply_json_patch(target, body),
        PatchType::Merge => apply_merge_patch(target, body),
        PatchType::Strategic => apply_strategic_merge_patch(kind, target, body),
        PatchType::Apply => unreachable!("server-side apply is not implemented here"),
    };
    match result {
        Ok(value) => panic!("error case {name:?} applied: {value}"),
        Err(error) => {
            assert_eq!(error.status_code(), status, "error case {name:?}: {error}");
            let message = error.to_string();
            assert!(
                !message.ends_with('.'),
                "error case {name:?}: message ends with a period: {message}"
            );
        }
    }
}

fn pod(containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}})
}

fn deployment(pod_spec: Value) -> Value {
    json!({"kind": "Deployment", "spec": {"replicas": 1, "template": {"spec": pod_spec}}})
}

#[test]
fn strategic_maps_and_scalars() {
    let cases = [
        (
            "maps merge recursively",
            "ConfigMap",
            json!({"metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"x": "1"}}),
            json!({"metadata": {"labels": {"b": "2"}}, "data": {"y": "2"}}),
            json!({"metadata": {"name": "c", "labels": {"a": "1", "b": "2"}}, "data": {"x": "1", "y": "2"}}),
        ),
        (
            "null deletes a key",
            "ConfigMap",
            json!({"data": {"x": "1", "y": "2"}}),
            json!({"data": {"x": null}}),
            json!({"data": {"y": "2"}}),
        ),
        (
            "null for an absent key is a no-op",
            "Secret",
            json!({"data": {"x": "MQ=="}}),
            json!({"data": {"nope": null}, "stringData": null}),
            json!({"data": {"x": "MQ=="}}),
        ),
        (
            "scalar replaces a map and a map replaces a scalar",
            "ConfigMap",
            json!({"data": {"x": "1"}, "binaryData": "junk"}),
            json!({"data": "flat", "binaryData": {"b": "AA=="}}),
            json!({"data": "flat", "binaryData": {"b": "AA=="}}),
        ),
        (
            "nulls inside a new map are dropped",
            "ConfigMap",
            json!({"metadata": {"name": "c"}}),
            json!({"metadata": {"labels": {"a": "1", "b": null}}}),
            json!({"metadata": {"name": "c", "labels": {"a": "1"}}}),
        ),
        (
            "$patch: replace replaces a map",
            "Deployment",
            json!({"spec": {"template": {"metadata": {"labels": {"app": "a", "tier": "web"}}}}}),
            json!({"spec": {"template": {"metadata": {"labels": {"$patch": "replace", "app": "b"}}}}}),
            json!({"spec": {"template": {"metadata": {"labels": {"app": "b"}}}}}),
        ),
        (
            "$patch: delete removes a map",
            "Pod",
            json!({"spec": {"affinity": {"nodeAffinity": {}}, "containers": []}}),
            json!({"spec": {"affinity": {"$patch": "delete"}}}),
            json!({"spec": {"containers": []}}),
        ),
        (
            "$patch: delete on a map the object lacks adds nothing",
            "Pod",
            json!({"spec": {}}),
            json!({"spec": {"affinity": {"$patch": "delete"}}}),
            json!({"spec": {}}),
        ),
        (
            "top-level $patch: replace replaces the object",
            "ConfigMap",
            json!({"kind": "ConfigMap", "data": {"x": "1"}}),
            json!({"$patch": "replace", "kind": "ConfigMap", "data": {"y": "2"}}),
            json!({"kind": "ConfigMap", "data": {"y": "2"}}),
        ),
        (
            "$retainKeys drops unlisted keys (Deployment strategy switch)",
            "Deployment",
            json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
        ),
        (
            "$retainKeys on a volume source switch",
            "Pod",
            json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}),
            json!({"spec": {"volumes": [{"$retainKeys": ["configMap", "name"], "name": "v", "configMap": {"name": "cm"}}]}}),
            json!({"spec": {"volumes": [{"name": "v", "configMap": {"name": "cm"}}]}}),
        ),
        (
            "patchStrategy replace on a map (PodDisruptionBudget selector)",
            "PodDisruptionBudget",
            json!({"spec": {"selector": {"matchLabels": {"app": "a", "tier": "t"}}, "minAvailable": 1}}),
            json!({"spec": {"selector": {"matchLabels": {"app": "b"}}}}),
            json!({"spec": {"selector": {"matchLabels": {"app": "b"}}, "minAvailable": 1}}),
        ),
        (
            "empty patch changes nothing",
            "Node",
            json!({"metadata": {"name": "n"}, "spec": {"podCIDRs": ["10.0.0.0/24"]}}),
            json!({}),
            json!({"metadata": {"name": "n"}, "spec": {"podCIDRs": ["10.0.0.0/24"]}}),
        ),
    ];
    for (name, kind, target, patch, expected) in cases {
        check(name, kind, target, patch, expected);
    }
}

#[test]
fn strategic_keyed_lists() {
    let cases = [
        (
            "containers merge by name",
            "Pod",
            pod(
                json!([{"name": "a", "image": "a:1", "args": ["x"]}, {"name": "b", "image": "b:1"}]),
            ),
            json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}}),
            pod(
                json!([{"name": "a", "image": "a:1", "args": ["x"]}, {"name": "b", "image": "b:2"}]),
            ),
        ),
        (
            "a new container goes before live ones, as in the apiserver",
            "Pod",
            pod(json!([{"name": "a", "image": "a:1"}])),
            json!({"spec": {"containers": [{"name": "b", "image": "b:1"}]}}),
            pod(json!([{"name": "b", "image": "b:1"}, {"name": "a", "image": "a:1"}])),
        ),
        (
            "patch order wins for patched items, live-only items keep their place",
            "Pod",
            pod(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])),
            json!({"spec": {"containers": [{"name": "c", "tty": true}, {"name": "a", "tty": true}]}}),
            pod(json!([{"name": "b"}, {"name": "c", "tty": true}, {"name": "a", "tty": true}])),
        ),
        (
            "$patch: delete removes the element with that key",
            "Pod",
            pod(json!([{"name": "a"}, {"name": "b"}])),
            json!({"spec": {"containers": [{"$patch": "delete", "name": "a"}]}}),
            pod(json!([{"name": "b"}])),
        ),
        (
            "$patch: delete removes every duplicate",
            "Pod",
            pod(json!([{"name": "a"}, {"name": "a", "image": "x"}, {"name": "b"}])),
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
            pod(json!([{"name": "b"}])),
        ),
        (
            "$patch: replace replaces the whole list",
            "Pod",
            pod(json!([{"name": "a"}, {"name": "b"}])),
            json!({"spec": {"containers": [{"name": "c"}, {"$patch": "replace"}]}}),
            pod(json!([{"name": "c"}])),
        ),
        (
            "$patch: replace alone empties the list",
            "Pod",
            pod(json!([{"name": "a"}])),
            json!({"spec": {"containers": [{"$patch": "replace"}]}}),
            pod(json!([])),
        ),
        (
            "env merges by name and deletes by directive",
            "Deployment",
            deployment(
                json!({"containers": [{"name": "web", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}),
            ),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "env": [{"name": "A", "value": "9"}, {"name": "B", "$patch": "delete"}]}]}}}}),
            deployment(
                json!({"containers": [{"name": "web", "env": [{"name": "A", "value": "9"}]}]}),
            ),
        ),
        (
            "container ports merge by containerPort",
            "Pod",
            pod(json!([{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP"}]}])),
            json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]}]}}),
            pod(
                json!([{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 443}]}]),
            ),
        ),
        (
            "service ports merge by port",
            "Service",
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}]}}),
            json!({"spec": {"ports": [{"port": 443, "targetPort": 9443}]}}),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 9443}]}}),
        ),
        (
            "volumes merge by name, volumeMounts by mountPath, volumeDevices by devicePath",
            "StatefulSet",
            json!({"spec": {"template": {"spec": {
                "volumes": [{"name": "data", "emptyDir": {}}],
                "containers": [{"name": "db", "volumeMounts": [{"mountPath": "/data", "name": "data"}],
                                "volumeDevices": [{"devicePath": "/dev/x", "name": "blk"}]}]}}}}),
            json!({"spec": {"template": {"spec": {
                "volumes": [{"name": "cache", "emptyDir": {}}],
                "containers": [{"name": "db", "volumeMounts": [{"mountPath": "/data", "readOnly": true}],
                                "volumeDevices": [{"devicePath": "/dev/x", "name": "blk2"}]}]}}}}),
            json!({"spec": {"template": {"spec": {
                "volumes": [{"name": "cache", "emptyDir": {}}, {"name": "data", "emptyDir": {}}],
                "containers": [{"name": "db", "volumeMounts": [{"mountPath": "/data", "name": "data", "readOnly": true}],
                                "volumeDevices": [{"devicePath": "/dev/x", "name": "blk2"}]}]}}}}),
        ),
        (
            "initContainers and ephemeralContainers merge by name",
            "Pod",
            json!({"spec": {"initContainers": [{"name": "i", "image": "i:1"}], "ephemeralContainers": [{"name": "e", "image": "e:1"}]}}),
            json!({"spec": {"initContainers": [{"name": "i", "image": "i:2"}], "ephemeralContainers": [{"name": "e", "tty": true}]}}),
            json!({"spec": {"initContainers": [{"name": "i", "image": "i:2"}], "ephemeralContainers": [{"name": "e", "image": "e:1", "tty": true}]}}),
        ),
        (
            "imagePullSecrets by name, hostAliases by ip, topologySpreadConstraints by topologyKey",
            "DaemonSet",
            deployment(json!({
                "imagePullSecrets": [{"name": "reg"}],
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a"]}],
                "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1}]})),
            json!({"spec": {"template": {"spec": {
                "imagePullSecrets": [{"name": "reg"}],
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}],
                "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}]}}}}),
            deployment(json!({
                "imagePullSecrets": [{"name": "reg"}],
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}],
                "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}]})),
        ),
        (
            "CronJob pod spec containers merge by name",
            "CronJob",
            json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "c:1", "command": ["run"]}]}}}}}}),
            json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "c:2"}]}}}}}}),
            json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "c:2", "command": ["run"]}]}}}}}}),
        ),
        (
            "Job and ReplicaSet pod templates merge containers",
            "Job",
            deployment(
                json!({"containers": [{"name": "c", "image": "c:1"}], "restartPolicy": "Never"}),
            ),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "1"}}}]}}}}),
            deployment(
                json!({"containers": [{"name": "c", "image": "c:1", "resources": {"limits": {"cpu": "1"}}}], "restartPolicy": "Never"}),
            ),
        ),
        (
            "ownerReferences merge by uid",
            "ReplicaSet",
            json!({"metadata": {"ownerReferences": [{"uid": "u1", "name": "d1", "controller": true}]}}),
            json!({"metadata": {"ownerReferences": [{"uid": "u1", "blockOwnerDeletion": true}, {"uid": "u2", "name": "d2"}]}}),
            json!({"metadata": {"ownerReferences": [{"uid": "u1", "name": "d1", "controller": true, "blockOwnerDeletion": true}, {"uid": "u2", "name": "d2"}]}}),
        ),
        (
            "status conditions merge by type",
            "Deployment",
            json!({"status": {"conditions": [{"type": "Available", "status": "False"}, {"type": "Progressing", "status": "True"}]}}),
            json!({"status": {"conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]}}),
            json!({"status": {"conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}, {"type": "Progressing", "status": "True"}]}}),
        ),
        (
            "node addresses by type, service account secrets by name",
            "Node",
            json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n"}]}}),
            json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]}}),
            json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "Hostname", "address": "n"}]}}),
        ),
        (
            "service account secrets merge by name",
            "ServiceAccount",
            json!({"secrets": [{"name": "a"}]}),
            json!({"secrets": [{"name": "b"}]}),
            json!({"secrets": [{"name": "b"}, {"name": "a"}]}),
        ),
        (
            "a keyed list the object lacks is added without directives or nulls",
            "Pod",
            json!({"spec": {}}),
            json!({"spec": {"containers": [{"name": "a", "image": null, "env": [{"name": "X", "$patch": "delete"}, {"name": "Y", "value": "1"}]}]}}),
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "1"}]}]}}),
        ),
        (
            "an integer merge key does not match a float, as in the apiserver",
            "Service",
            json!({"spec": {"ports": [{"port": 80, "name": "http"}]}}),
            json!({"spec": {"ports": [{"port": 80.0, "targetPort": 8080}]}}),
            json!({"spec": {"ports": [{"port": 80.0, "targetPort": 8080}, {"port": 80, "name": "http"}]}}),
        ),
    ];
    for (name, kind, target, patch, expected) in cases {
        check(name, kind, target, patch, expected);
    }
}

#[test]
fn strategic_replaced_and_primitive_lists() {
    let cases = [
        (
            "tolerations have no merge key and are replaced",
            "Pod",
            json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]}}),
            json!({"spec": {"tolerations": [{"key": "c", "operator": "Exists"}]}}),
            json!({"spec": {"tolerations": [{"key": "c", "operator": "Exists"}]}}),
        ),
        (
            "container args are replaced",
            "Pod",
            pod(json!([{"name": "a", "args": ["x", "y"]}])),
            json!({"spec": {"containers": [{"name": "a", "args": ["z"]}]}}),
            pod(json!([{"name": "a", "args": ["z"]}])),
        ),
        (
            "Endpoints subsets are replaced",
            "Endpoints",
            json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}),
            json!({"subsets": [{"addresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 80}]}]}),
            json!({"subsets": [{"addresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 80}]}]}),
        ),
        (
            "unknown list fields are replaced and their elements cleaned",
            "ConfigMap",
            json!({"items": [{"a": 1}, {"b": 2}]}),
            json!({"items": [{"c": 3, "d": null}]}),
            json!({"items": [{"c": 3}]}),
        ),
        (
            "finalizers merge as an ordered set (new items first, as in the apiserver)",
            "Namespace",
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"finalizers": ["b", "c", "c"]}}),
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
        ),
        (
            "finalizers: an item new to the list lands first",
            "Pod",
            json!({"metadata": {"finalizers": ["a"]}}),
            json!({"metadata": {"finalizers": ["b"]}}),
            json!({"metadata": {"finalizers": ["b", "a"]}}),
        ),
        (
            "ordered set keeps the patch order (apiserver test case)",
            "Node",
            json!({"spec": {"podCIDRs": [1, 2, 3]}}),
            json!({"spec": {"podCIDRs": [3, 1]}}),
            json!({"spec": {"podCIDRs": [2, 3, 1]}}),
        ),
        (
            "$deleteFromPrimitiveList removes values",
            "Pod",
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "x"]}}),
            json!({"metadata": {"finalizers": ["a", "c"]}}),
        ),
        (
            "$deleteFromPrimitiveList with additions, and on an absent list",
            "Pod",
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"],
                                "$deleteFromPrimitiveList/other": ["z"]}}),
            json!({"metadata": {"finalizers": ["c", "b"]}}),
        ),
        (
            "$setElementOrder reorders a keyed list without other changes",
            "Pod",
            pod(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])),
            json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}}),
            pod(json!([{"name": "c"}, {"name": "a"}, {"name": "b"}])),
        ),
        (
            "$setElementOrder places a new item between live ones",
            "Pod",
            pod(json!([{"name": "a"}, {"name": "c"}])),
            json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
                            "containers": [{"name": "b", "image": "b"}]}}),
            pod(json!([{"name": "a"}, {"name": "b", "image": "b"}, {"name": "c"}])),
        ),
        (
            "$setElementOrder keeps server-only items in their live place",
            "Pod",
            pod(json!([{"name": "a"}, {"name": "injected"}, {"name": "b"}])),
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                            "containers": [{"name": "a", "image": "a:2"}]}}),
            pod(json!([{"name": "injected"}, {"name": "b"}, {"name": "a", "image": "a:2"}])),
        ),
        (
            "$setElementOrder may name items the list lacks (apiserver test case)",
            "Pod",
            json!({"metadata": {"finalizers": [1, 3]}}),
            json!({"metadata": {"$setElementOrder/finalizers": [3, 2, 1]}}),
            json!({"metadata": {"finalizers": [3, 1]}}),
        ),
        (
            "$setElementOrder on a list the object lacks",
            "Pod",
            json!({"spec": {}}),
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                            "containers": [{"name": "b"}, {"name": "a"}]}}),
            json!({"spec": {"containers": [{"name": "b"}, {"name": "a"}]}}),
        ),
    ];
    for (name, kind, target, patch, expected) in cases {
        check(name, kind, target, patch, expected);
    }
}

/// The shape `kubectl apply` (client-side) sends: a three-way patch with the new
/// last-applied annotation, `$setElementOrder` for every merged list it touches, a delete
/// directive for a removed env var and `$retainKeys` for the strategy switch.
#[test]
fn strategic_kubectl_apply_patch() {
    let old_applied = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"annotations":{},"name":"web","namespace":"default"},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"env":[{"name":"MODE","value":"prod"},{"name":"DEBUG","value":"1"}],"image":"nginx:1.25","name":"web","ports":[{"containerPort":80}]},{"args":["tail"],"image":"busybox","name":"log"}]}}}}
"#;
    let new_applied = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"annotations":{},"name":"web","namespace":"default"},"spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},"strategy":{"type":"Recreate"},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"env":[{"name":"MODE","value":"prod"},{"name":"LEVEL","value":"info"}],"image":"nginx:1.27","name":"web","ports":[{"containerPort":80},{"containerPort":443}]},{"args":["tail"],"image":"busybox","name":"log"}]}}}}
"#;
    let live = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "6f1c1c3e-3b0c-4c55-9d51-5a1b2b8e2a10",
            "resourceVersion": "4242",
            "generation": 2,
            "labels": {"app": "web"},
            "annotations": {
                "deployment.kubernetes.io/revision": "2",
                "kubectl.kubernetes.io/last-applied-configuration": old_applied
            }
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.25",
                            "env": [{"name": "MODE", "value": "prod"}, {"name": "DEBUG", "value": "1"}],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "imagePullPolicy": "IfNotPresent",
                            "terminationMessagePath": "/dev/termination-log"
                        },
                        {"name": "istio-proxy", "image": "proxy:1.22"},
                        {"name": "log", "image": "busybox", "args": ["tail"]}
                    ],
                    "restartPolicy": "Always",
                    "dnsPolicy": "ClusterFirst"
                }
            }
        },
        "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]}
    });
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": new_applied}},
        "spec": {
            "replicas": 3,
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
            "template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}, {"name": "log"}],
                "containers": [{
                    "$setElementOrder/env": [{"name": "MODE"}, {"name": "LEVEL"}],
                    "$setElementOrder/ports": [{"containerPort": 80}, {"containerPort": 443}],
                    "env": [{"name": "LEVEL", "value": "info"}, {"$patch": "delete", "name": "DEBUG"}],
                    "image": "nginx:1.27",
                    "name": "web",
                    "ports": [{"containerPort": 443}]
                }]
            }}
        }
    });
    let mut expected = live.clone();
    expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        json!(new_applied);
    expected["spec"]["replicas"] = json!(3);
    expected["spec"]["strategy"] = json!({"type": "Recreate"});
    expected["spec"]["template"]["spec"]["containers"] = json!([
        {
            "name": "web",
            "image": "nginx:1.27",
            "env": [{"name": "MODE", "value": "prod"}, {"name": "LEVEL", "value": "info"}],
            "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}],
            "imagePullPolicy": "IfNotPresent",
            "terminationMessagePath": "/dev/termination-log"
        },
        {"name": "istio-proxy", "image": "proxy:1.22"},
        {"name": "log", "image": "busybox", "args": ["tail"]}
    ]);
    check("kubectl apply", "Deployment", live, patch, expected);
}

#[test]
fn json_patch_cases() {
    let cases = [
        (
            "add a field",
            json!({"a": 1}),
            json!([{"op": "add", "path": "/b", "value": 2}]),
            json!({"a": 1, "b": 2}),
        ),
        (
            "remove a field",
            json!({"a": 1, "b": 2}),
            json!([{"op": "remove", "path": "/b"}]),
            json!({"a": 1}),
        ),
        (
            "replace a nested field",
            json!({"spec": {"replicas": 1}}),
            json!([{"op": "replace", "path": "/spec/replicas", "value": 5}]),
            json!({"spec": {"replicas": 5}}),
        ),
        (
            "insert into and append to a list",
            json!({"l": [1, 3]}),
            json!([{"op": "add", "path": "/l/1", "value": 2}, {"op": "add", "path": "/l/-", "value": 4}]),
            json!({"l": [1, 2, 3, 4]}),
        ),
        (
            "escaped annotation key",
            json!({"metadata": {"annotations": {}}}),
            json!([{"op": "add", "path": "/metadata/annotations/example.com~1owner", "value": "me"},
                   {"op": "add", "path": "/metadata/annotations/tilde~0key", "value": "t"}]),
            json!({"metadata": {"annotations": {"example.com/owner": "me", "tilde~key": "t"}}}),
        ),
        (
            "move and copy",
            json!({"a": {"x": 1}, "b": {}}),
            json!([{"op": "copy", "from": "/a/x", "path": "/b/y"}, {"op": "move", "from": "/a", "path": "/c"}]),
            json!({"b": {"y": 1}, "c": {"x": 1}}),
        ),
        (
            "passing test then replace",
            json!({"metadata": {"resourceVersion": "7"}, "spec": {"x": 1}}),
            json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
                   {"op": "replace", "path": "/spec/x", "value": 2}]),
            json!({"metadata": {"resourceVersion": "7"}, "spec": {"x": 2}}),
        ),
        ("empty patch", json!({"a": 1}), json!([]), json!({"a": 1})),
        (
            "remove a list element",
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            json!([{"op": "remove", "path": "/spec/containers/0"}]),
            json!({"spec": {"containers": [{"name": "b"}]}}),
        ),
        (
            "replace the whole document",
            json!({"a": 1}),
            json!([{"op": "replace", "path": "", "value": {"b": 2}}]),
            json!({"b": 2}),
        ),
    ];
    for (name, target, patch, expected) in cases {
        check_json(name, target, patch, expected);
    }
}

#[test]
fn merge_patch_cases() {
    // Mostly RFC 7386 appendix A.
    let cases = [
        (
            "replace a value",
            json!({"a": "b"}),
            json!({"a": "c"}),
            json!({"a": "c"}),
        ),
        (
            "add a key",
            json!({"a": "b"}),
            json!({"b": "c"}),
            json!({"a": "b", "b": "c"}),
        ),
        (
            "null deletes",
            json!({"a": "b", "b": "c"}),
            json!({"a": null}),
            json!({"b": "c"}),
        ),
        (
            "nested null deletes",
            json!({"a": {"b": "c", "d": "e"}}),
            json!({"a": {"b": null}}),
            json!({"a": {"d": "e"}}),
        ),
        (
            "arrays replace",
            json!({"a": [{"b": "c"}]}),
            json!({"a": [1]}),
            json!({"a": [1]}),
        ),
        (
            "containers are replaced, not merged",
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            json!({"spec": {"containers": [{"name": "b", "image": "x"}]}}),
            json!({"spec": {"containers": [{"name": "b", "image": "x"}]}}),
        ),
        (
            "object replaces scalar and drops nested nulls",
            json!({"a": "foo"}),
            json!({"a": {"bb": {"ccc": null}}}),
            json!({"a": {"bb": {}}}),
        ),
        ("empty patch", json!({"a": 1}), json!({}), json!({"a": 1})),
        (
            "labels merge",
            json!({"metadata": {"labels": {"a": "1"}}}),
            json!({"metadata": {"labels": {"b": "2"}}}),
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
        ),
        (
            "dollar keys are plain keys",
            json!({}),
            json!({"$patch": "delete"}),
            json!({"$patch": "delete"}),
        ),
    ];
    for (name, target, patch, expected) in cases {
        check_merge(name, target, patch, expected);
    }
}

#[test]
fn malformed_patches_are_errors() {
    use PatchType::{Json, Merge, Strategic};
    let target = json!({"metadata": {"name": "x", "finalizers": ["a"]}, "spec": {"containers": [{"name": "a"}], "list": [1]}});
    let cases: &[(&str, PatchType, &str, &[u8], u16)] = &[
        ("json: not json", Json, "", b"{", 400),
        ("json: empty body", Json, "", b"", 400),
        ("json: object, not a list", Json, "", b"{\"op\":\"add\"}", 400),
        ("json: unknown op", Json, "", br#"[{"op":"frob","path":"/a"}]"#, 400),
        ("json: missing value", Json, "", br#"[{"op":"add","path":"/a"}]"#, 400),
        ("json: pointer without slash", Json, "", br#"[{"op":"add","path":"a","value":1}]"#, 400),
        ("json: failed test", Json, "", br#"[{"op":"test","path":"/metadata/name","value":"y"}]"#, 422),
        ("json: remove missing", Json, "", br#"[{"op":"remove","path":"/nope"}]"#, 422),
        ("json: replace missing", Json, "", br#"[{"op":"replace","path":"/nope","value":1}]"#, 422),
        ("json: add under missing parent", Json, "", br#"[{"op":"add","path":"/a/b","value":1}]"#, 422),
        ("json: index out of range", Json, "", br#"[{"op":"add","path":"/spec/list/5","value":1}]"#, 422),
        ("json: move from missing", Json, "", br#"[{"op":"move","from":"/nope","path":"/x"}]"#, 422),
        ("json: move into own child", Json, "", br#"[{"op":"move","from":"/spec","path":"/spec/x"}]"#, 422),
        ("merge: not json", Merge, "", b"nope", 400),
        ("merge: empty body", Merge, "", b"", 400),
        ("merge: list body", Merge, "", b"[1]", 400),
        ("merge: null body", Merge, "", b"null", 400),
        ("merge: string body", Merge, "", b"\"x\"", 400),
        ("strategic: unknown kind", Strategic, "Widget", b"{}", 415),
        ("strategic: drover kind", Strategic, "DroverApp", b"{}", 415),
        ("strategic: kind check precedes parsing", Strategic, "Widget", b"junk", 415),
        ("strategic: kind names are case-sensitive", Strategic, "pod", b"{}", 415),
        ("strategic: not json", Strategic, "Pod", b"{\"a\":", 400),
        ("strategic: list body", Strategic, "Pod", b"[]", 400),
        ("strategic: unknown directive", Strategic, "Pod", br#"{"spec":{"$frob":1}}"#, 400),
        ("strategic: unknown $patch in map", Strategic, "Pod", br#"{"spec":{"$patch":"frob"}}"#, 400),
        ("strategic: non-string $patch", Strategic, "Pod", br#"{"$patch":1}"#, 400),
        (
            "strategic: unknown $patch in list",
            Strategic,
            "Pod",
            br#"{"spec":{"containers":[{"name":"a","$patch":"frob"}]}}"#,
            400,
        ),
        (
            "strategic: $patch merge in list",
            Strategic,
            "Pod",
            br#"{"spec":{"containers":[{"$patch":"merge"}]}}"#,
            400,
        ),
        (
            "strategic: delete without merge key",
            Strategic,
            "Pod",
            br#"{"spec":{"containers":[{"$patch":"delete"}]}}"#,
            400,
        ),
        (
            "strategic: element without merge key",
            Strategic,
            "Pod",
            br#"{"spec":{"containers":[{"image":"x"}]}}"#,
            400,
        ),
        ("strategic: $retainKeys not a list", Strategic, "Pod", br#"{"spec":{"$retainKeys":"a"}}"#, 400),
        ("strategic: $retainKeys non-string", Strategic, "Pod", br#"{"spec":{"$retainKeys":[1]}}"#, 400),
        (
            "strategic: field outside $retainKeys",
            Strategic,
            "Deployment",
            br#"{"spec":{"strategy":{"$retainKeys":["type"],"rollingUpdate":{}}}}"#,
            400,
        ),
        (
            "strategic: $setElementOrder not a list",
            Strategic,
            "Pod",
            br#"{"spec":{"$setElementOrder/containers":{}}}"#,
            400,
        ),
        (
            "strategic: $setElementOrder with a non-list field",
            Strategic,
            "Pod",
            br#"{"spec":{"$setElementOrder/containers":[],"containers":{}}}"#,
            400,
        ),
        (
            "strategic: $setElementOrder contradicts the patch",
            Strategic,
            "Pod",
            br#"{"spec":{"$setElementOrder/containers":[{"name":"a"},{"name":"b"}],"containers":[{"name":"b"},{"name":"a"}]}}"#,
            400,
        ),
        ("strategic: directive without field", Strategic, "Pod", br#"{"$setElementOrder/":[]}"#, 400),
        (
            "strategic: $deleteFromPrimitiveList not a list",
            Strategic,
            "Pod",
            br#"{"metadata":{"$deleteFromPrimitiveList/finalizers":"a"}}"#,
            400,
        ),
        (
            "strategic: list of lists",
            Strategic,
            "Pod",
            br#"{"metadata":{"finalizers":[["a"]]}}"#,
            422,
        ),
        (
            "strategic: scalars in a keyed list",
            Strategic,
            "Pod",
            br#"{"spec":{"containers":["a"]}}"#,
            400,
        ),
        (
            "strategic: maps in a list of scalars",
            Strategic,
            "Node",
            br#"{"spec":{"podCIDRs":[{"a":1}]}}"#,
            400,
        ),
        (
            "strategic: mixed maps and scalars",
            Strategic,
            "Pod",
            br#"{"metadata":{"finalizers":[{"a":1}]}}"#,
            400,
        ),
    ];
    for (name, patch_type, kind, body, status) in cases {
        check_err(name, *patch_type, kind, &target, body, *status);
    }
}

#[test]
fn too_many_json_patch_operations() {
    let ops = vec![json!({"op": "test", "path": "", "value": {}}); MAX_JSON_PATCH_OPERATIONS + 1];
    let body = serde_json::to_vec(&ops).unwrap();
    let error = apply_json_patch(&json!({}), &body).unwrap_err();
    assert_eq!(error.status_code(), 413, "{error}");

    let ops = &ops[..MAX_JSON_PATCH_OPERATIONS];
    let body = serde_json::to_vec(ops).unwrap();
    assert!(apply_json_patch(&json!({}), &body).is_ok());
}

#[test]
fn strategic_target_must_be_an_object() {
    let error = apply_strategic_merge_patch("Pod", &json!([1]), b"{}").unwrap_err();
    assert_eq!(error.status_code(), 500, "{error}");
}

#[test]
fn failed_json_patch_leaves_target_untouched() {
    let target = json!({"a": 1});
    let body = br#"[{"op":"add","path":"/b","value":2},{"op":"test","path":"/a","value":9}]"#;
    let error = apply_json_patch(&target, body).unwrap_err();
    assert!(matches!(error, PatchError::TestFailed(_)), "{error}");
    assert_eq!(target, json!({"a": 1}));
}

#[test]
fn supported_kinds() {
    let listed = [
        "Pod",
        "Service",
        "Endpoints",
        "ConfigMap",
        "Secret",
        "Node",
        "Namespace",
        "Event",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "ServiceAccount",
        "ResourceQuota",
        "LimitRange",
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "ControllerRevision",
        "Job",
        "CronJob",
        "HorizontalPodAutoscaler",
        "EndpointSlice",
        "PodDisruptionBudget",
        "PriorityClass",
        "Lease",
    ];
    for kind in listed {
        assert!(supports_strategic_merge_patch(kind), "{kind}");
    }
    let known: Vec<&str> = strategic_merge_patch_kinds().collect();
    for kind in &known {
        assert_eq!(
            known.iter().filter(|other| *other == kind).count(),
            1,
            "{kind} listed twice"
        );
    }
    for kind in ["", "CustomResourceDefinition", "Widget", "deployment"] {
        assert!(!supports_strategic_merge_patch(kind), "{kind}");
    }
}

#[test]
fn content_types() {
    let cases = [
        ("application/json-patch+json", Some(PatchType::Json)),
        ("application/merge-patch+json", Some(PatchType::Merge)),
        (
            "application/strategic-merge-patch+json",
            Some(PatchType::Strategic),
        ),
        ("application/apply-patch+yaml", Some(PatchType::Apply)),
        (
            "application/merge-patch+json; charset=utf-8",
            Some(PatchType::Merge),
        ),
        (
            " Application/JSON-Patch+JSON ;charset=UTF-8",
            Some(PatchType::Json),
        ),
        ("application/json", None),
        ("application/yaml", None),
        ("", None),
        (";", None),
        ("application/merge-patch+jsonx", None),
    ];
    for (content_type, expected) in cases {
        assert_eq!(
            PatchType::from_content_type(content_type),
            expected,
            "{content_type:?}"
        );
    }
    for patch_type in PatchType::ALL {
        assert_eq!(
            PatchType::from_content_type(patch_type.content_type()),
            Some(patch_type)
        );
    }
}

#[test]
fn status_codes() {
    let cases = [
        (PatchError::InvalidPatch(String::new()), 400),
        (PatchError::TestFailed(String::new()), 422),
        (PatchError::PathNotFound(String::new()), 422),
        (PatchError::Unprocessable(String::new()), 422),
        (PatchError::TooManyOperations(10_001), 413),
        (PatchError::UnsupportedForKind("Widget".to_owned()), 415),
        (PatchError::InvalidTarget(String::new()), 500),
    ];
    for (error, status) in cases {
        assert_eq!(error.status_code(), status, "{error}");
    }
}

/// Bodies that are not JSON at all, or JSON of every wrong shape.
#[test]
fn junk_bodies_never_panic() {
    let target =
        json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "a"}]}});
    let mut bodies: Vec<Vec<u8>> = [
        "",
        " ",
        "{",
        "}",
        "[",
        "]",
        "null",
        "true",
        "0",
        "-1e999",
        "\"s\"",
        "[[]]",
        "[{}]",
        "{\"\":{}}",
        "\u{feff}{}",
        "{\"a\":1,\"a\":2}",
        "[{\"op\":null}]",
        "{\"spec\":{\"containers\":[null]}}",
        "{\"spec\":{\"containers\":[1,{\"name\":\"a\"}]}}",
        "{\"spec\":{\"containers\":[{\"name\":\"a\",\"$patch\":null}]}}",
        "{\"spec\":{\"$setElementOrder/containers\":[null,1,[]]}}",
        "{\"metadata\":{\"$setElementOrder/finalizers\":[{}],\"finalizers\":[\"b\"]}}",
        "{\"metadata\":{\"$deleteFromPrimitiveList/finalizers\":[{}]}}",
        "{\"$retainKeys\":[],\"$patch\":\"replace\"}",
    ]
    .iter()
    .map(|body| body.as_bytes().to_vec())
    .collect();
    bodies.push(vec![0xff, 0xfe, 0x00]);
    bodies.push(b"[".repeat(10_000));
    bodies.push(b"{\"a\":".repeat(10_000));
    for body in &bodies {
        let _ = apply_json_patch(&target, body);
        let _ = apply_merge_patch(&target, body);
        for kind in ["Pod", "Deployment", "Widget"] {
            let _ = apply_strategic_merge_patch(kind, &target, body);
        }
    }
}

/// Keys that steer the strategic merge code down its interesting paths.
const KEYS: &[&str] = &[
    "name",
    "containers",
    "env",
    "ports",
    "containerPort",
    "finalizers",
    "metadata",
    "spec",
    "template",
    "value",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$setElementOrder/env",
    "$setElementOrder/finalizers",
    "$deleteFromPrimitiveList/finalizers",
    "$frob",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(&["delete", "replace", "merge", "a", "b", "name"][..])
            .prop_map(Value::from),
        "[a-z]{0,3}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        let key = prop_oneof![
            prop::sample::select(KEYS).prop_map(str::to_owned),
            "[a-z$/]{0,4}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..5)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// An object of arbitrary values.
fn arb_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z]{0,2}", arb_json(), 0..5)
        .prop_map(|map| Value::Object(map.into_iter().collect()))
}

/// An object without lists or `$` keys: where strategic and JSON merge patch agree.
fn arb_plain_object() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z]{0,3}".prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(4, 32, 4, |inner| {
        prop::collection::btree_map(
            prop_oneof!["[a-z]{0,2}", Just("metadata".to_owned())],
            inner,
            0..4,
        )
        .prop_map(|map| Value::Object(map.into_iter().collect()))
    });
    prop::collection::btree_map(
        prop_oneof!["[a-z]{0,2}", Just("metadata".to_owned())],
        value,
        0..5,
    )
    .prop_map(|map| Value::Object(map.into_iter().collect()))
}

/// An arbitrary value, sometimes placed where the schema gives it meaning.
fn arb_patch() -> impl Strategy<Value = Value> {
    (0..4usize, arb_json()).prop_map(|(place, value)| match place {
        0 => value,
        1 => json!({"spec": {"template": {"spec": {"containers": value}}}}),
        2 => json!({"spec": {"template": {"spec": value}}}),
        _ => json!({"metadata": value}),
    })
}

fn sample_deployment() -> Value {
    json!({
        "metadata": {"name": "d", "finalizers": ["a", "b"]},
        "spec": {"template": {"spec": {"containers": [
            {"name": "a", "env": [{"name": "X", "value": "1"}], "ports": [{"containerPort": 80}]},
            {"name": "b"}
        ]}}}
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..64)) {
        let target = sample_deployment();
        let _ = apply_json_patch(&target, &body);
        let _ = apply_merge_patch(&target, &body);
        let _ = apply_strategic_merge_patch("Deployment", &target, &body);
    }

    #[test]
    fn arbitrary_json_never_panics(patch in arb_patch(), target in arb_patch()) {
        let body = serde_json::to_vec(&patch).unwrap();
        for target in [&target, &sample_deployment()] {
            let _ = apply_json_patch(target, &body);
            let _ = apply_merge_patch(target, &body);
            if let Ok(result) = apply_strategic_merge_patch("Deployment", target, &body) {
                prop_assert!(result.is_object());
            }
        }
    }

    /// Without lists or directives a strategic merge patch is a JSON merge patch.
    #[test]
    fn strategic_matches_merge_without_lists(patch in arb_plain_object(), target in arb_object()) {
        let body = serde_json::to_vec(&patch).unwrap();
        let strategic = apply_strategic_merge_patch("ConfigMap", &target, &body).unwrap();
        let merge = apply_merge_patch(&target, &body).unwrap();
        prop_assert_eq!(strategic, merge);
    }

    /// Applying the same keyed-list patch twice gives the same result as once.
    #[test]
    fn strategic_container_patch_is_idempotent(
        names in prop::collection::vec(prop::sample::select(&["a", "b", "c", "d"][..]), 0..5),
        images in prop::collection::vec("[a-z]{1,3}", 5),
    ) {
        let containers: Vec<Value> = names
            .iter()
            .zip(&images)
            .map(|(name, image)| json!({"name": name, "image": image}))
            .collect();
        let patch = json!({"spec": {"template": {"spec": {"containers": containers}}}});
        let body = serde_json::to_vec(&patch).unwrap();
        let once = apply_strategic_merge_patch("Deployment", &sample_deployment(), &body).unwrap();
        let twice = apply_strategic_merge_patch("Deployment", &once, &body).unwrap();
        prop_assert_eq!(once, twice);
    }
}
