//! Defaulting: the values Kubernetes' apiserver fills in when a client leaves them out
//! (`SetDefaults_*` in `k8s.io/kubernetes/pkg/apis/*/v1`), so that every reader (kubectl
//! describe, controllers, node agents) sees the same complete objects as on Kubernetes.
//!
//! Only missing fields are filled; a value the client set is never changed. Applied by the
//! store to every create and update, so objects written by controllers are defaulted too.
//! Tolerates any shape: a field of the wrong type is left for validation to report.

use serde_json::{Map, Value, json};

use crate::KindInfo;

/// Fills the defaults of `kind` into `obj`.
pub fn apply(kind: &KindInfo, obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    match (kind.group, kind.kind) {
        ("", "Pod") => {
            if let Some(spec) = object(root, "spec") {
                pod_spec(spec, true);
            }
            let qos = root.get("spec").map(qos_class);
            if let Some(status) = object_or_create(root, "status") {
                status.entry("phase").or_insert_with(|| json!("Pending"));
                if let Some(q) = qos {
                    status.entry("qosClass").or_insert_with(|| json!(q));
                }
            }
        }
        ("", "Service") => {
            if let Some(spec) = object(root, "spec") {
                service_spec(spec);
            }
        }
        ("apps", "Deployment") => {
            if let Some(spec) = object(root, "spec") {
                default(spec, "replicas", json!(1));
                default(spec, "revisionHistoryLimit", json!(10));
                default(spec, "progressDeadlineSeconds", json!(600));
                if let Some(strategy) = object_or_create_map(spec, "strategy") {
                    default(strategy, "type", json!("RollingUpdate"));
                    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
                        && let Some(ru) = object_or_create_map(strategy, "rollingUpdate")
                    {
                        default(ru, "maxSurge", json!("25%"));
                        default(ru, "maxUnavailable", json!("25%"));
                    }
                }
                template(spec, true);
            }
        }
        ("apps", "ReplicaSet") => {
            if let Some(spec) = object(root, "spec") {
                default(spec, "replicas", json!(1));
                template(spec, true);
            }
        }
        ("apps", "StatefulSet") => {
            if let Some(spec) = object(root, "spec") {
                default(spec, "replicas", json!(1));
                default(spec, "podManagementPolicy", json!("OrderedReady"));
                default(spec, "revisionHistoryLimit", json!(10));
                if let Some(us) = object_or_create_map(spec, "updateStrategy") {
                    default(us, "type", json!("RollingUpdate"));
                    if us.get("type").and_then(Value::as_str) == Some("RollingUpdate")
                        && let Some(ru) = object_or_create_map(us, "rollingUpdate")
                    {
                        default(ru, "partition", json!(0));
                    }
                }
                template(spec, true);
            }
        }
        ("apps", "DaemonSet") => {
            if let Some(spec) = object(root, "spec") {
                default(spec, "revisionHistoryLimit", json!(10));
                if let Some(us) = object_or_create_map(spec, "updateStrategy") {
                    default(us, "type", json!("RollingUpdate"));
                    if us.get("type").and_then(Value::as_str) == Some("RollingUpdate")
                        && let Some(ru) = object_or_create_map(us, "rollingUpdate")
                    {
                        default(ru, "maxUnavailable", json!(1));
                        default(ru, "maxSurge", json!(0));
                    }
                }
                template(spec, true);
            }
        }
        ("batch", "Job") => {
            if let Some(spec) = object(root, "spec") {
                job_spec(spec);
            }
        }
        ("batch", "CronJob") => {
            if let Some(spec) = object(root, "spec") {
                default(spec, "concurrencyPolicy", json!("Allow"));
                default(spec, "suspend", json!(false));
                default(spec, "successfulJobsHistoryLimit", json!(3));
                default(spec, "failedJobsHistoryLimit", json!(1));
                if let Some(job) = object(spec, "jobTemplate").and_then(|t| object(t, "spec")) {
                    job_spec(job);
                }
            }
        }
        _ => {}
    }
}

fn job_spec(spec: &mut Map<String, Value>) {
    let indexed = spec.get("completionMode").and_then(Value::as_str) == Some("Indexed");
    default(spec, "parallelism", json!(1));
    if !indexed {
        default(spec, "completions", json!(1));
    }
    default(spec, "backoffLimit", json!(6));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    // A Job's pods must not restart forever; the API requires Never or OnFailure, so no
    // restartPolicy default here (validation reports a missing one).
    template(spec, false);
}

fn template(spec: &mut Map<String, Value>, restart_always: bool) {
    if let Some(pod) = object(spec, "template").and_then(|t| object(t, "spec")) {
        pod_spec(pod, restart_always);
    }
}

fn pod_spec(spec: &mut Map<String, Value>, restart_always: bool) {
    if restart_always {
        default(spec, "restartPolicy", json!("Always"));
    }
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "securityContext", json!({}));
    default(spec, "enableServiceLinks", json!(true));
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in containers.iter_mut().filter_map(Value::as_object_mut) {
                container(c);
            }
        }
    }
}

fn container(c: &mut Map<String, Value>) {
    let policy = match c.get("image").and_then(Value::as_str) {
        Some(image) if pinned(image) => "IfNotPresent",
        _ => "Always",
    };
    default(c, "imagePullPolicy", json!(policy));
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
        }
    }
}

/// Whether an image reference names a tag other than `latest` or a digest.
fn pinned(image: &str) -> bool {
    if image.contains('@') {
        return true;
    }
    // The tag follows the last ':' after the last '/' (a ':' before it is a registry port).
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag != "latest",
        None => false,
    }
}

fn service_spec(spec: &mut Map<String, Value>) {
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                default(p, "targetPort", port);
            }
        }
    }
}

/// Kubernetes' QoS class of a pod spec: Guaranteed when every container has cpu and
/// memory limits equal to its requests (requests default to limits), BestEffort when no
/// container has any, Burstable otherwise.
pub fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten()
        .collect();
    let resources = |c: &Value, which: &str, name: &str| -> Option<String> {
        c.pointer(&format!("/resources/{which}/{name}")).map(|v| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        })
    };
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in &containers {
        for name in ["cpu", "memory"] {
            let limit = resources(c, "limits", name);
            let request = resources(c, "requests", name).or_else(|| limit.clone());
            any |= limit.is_some() || request.is_some();
            if limit.is_none() || limit != request {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

fn default(map: &mut Map<String, Value>, key: &str, value: Value) {
    match map.get(key) {
        None | Some(Value::Null) => {
            map.insert(key.to_string(), value);
        }
        Some(_) => {}
    }
}

fn object<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    map.get_mut(key).and_then(Value::as_object_mut)
}

fn object_or_create<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    object_or_create_map(map, key)
}

fn object_or_create_map<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    let slot = map.entry(key.to_string()).or_insert_with(|| json!({}));
    if slot.is_null() {
        *slot = json!({});
    }
    slot.as_object_mut()
}

#[cfg(test)]
mod tests;
