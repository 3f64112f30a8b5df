//! Pod spec rules (Kubernetes' `ValidatePodSpec`), used for pods and for every pod template.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::meta::{validate_annotations, validate_labels};
use super::names::{inclusive_range_error, is_valid_port_num, name_is_dns1123_subdomain};
use super::value::{Ctx, Obj, get};
use super::{
    FieldError, FieldPath, Quantity, is_config_map_key, is_dns1123_label, is_env_var_name,
    is_qualified_name, is_valid_label_value, is_valid_port_name, parse_quantity,
};

/// Protocols a port may use, sorted as Kubernetes lists them in errors.
const PORT_PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const JOB_RESTART_POLICIES: &[&str] = &["OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
const TOLERATION_OPERATORS: &[&str] = &["Equal", "Exists"];
/// Unprefixed resource names a container may request.
const CONTAINER_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];
/// Unprefixed resource names Kubernetes knows at all (quota names included).
const STANDARD_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
];

/// Where a pod spec sits, which decides the restart policies it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PodContext {
    /// A bare pod.
    Pod,
    /// The template of a controller that keeps pods running (`Deployment`, ...): restart
    /// policy must be `Always` and `activeDeadlineSeconds` is not allowed.
    Controller { kind: &'static str },
    /// The template of a `Job` (also inside a `CronJob`): restart policy `OnFailure` or `Never`.
    Job,
}

/// Spec rule for `Pod` objects.
pub(super) fn validate_pod(cx: &mut Ctx, spec: Option<&Obj>, path: &FieldPath) {
    validate_pod_spec(cx, spec, path, PodContext::Pod);
}

/// Checks a pod template (its labels, annotations and pod spec) at `path` (e.g.
/// `spec.template`) and returns the template's well-typed labels.
pub(super) fn validate_pod_template(
    cx: &mut Ctx,
    template: Option<&Obj>,
    path: &FieldPath,
    context: PodContext,
) -> BTreeMap<String, String> {
    let meta_path = path.child("metadata");
    let meta = cx.obj_at(get(template, "metadata"), &meta_path);
    // Kubernetes says `spec.template.labels` here (its template metadata is embedded); the
    // real JSON path is clearer, and it is what the selector-mismatch error uses too.
    let labels = validate_labels(cx, get(meta, "labels"), &meta_path.child("labels"));
    validate_annotations(
        cx,
        get(meta, "annotations"),
        &meta_path.child("annotations"),
    );
    let spec_path = path.child("spec");
    let spec = cx.obj_at(get(template, "spec"), &spec_path);
    validate_pod_spec(cx, spec, &spec_path, context);
    labels
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Checks a pod spec at `path`.
pub(super) fn validate_pod_spec(
    cx: &mut Ctx,
    spec: Option<&Obj>,
    path: &FieldPath,
    context: PodContext,
) {
    let volume_names = validate_volumes(cx, get(spec, "volumes"), &path.child("volumes"));

    let containers_path = path.child("containers");
    let containers = cx.obj_items_at(get(spec, "containers"), &containers_path);
    let missing = match get(spec, "containers") {
        None | Some(Value::Null) => true,
        Some(Value::Array(items)) => items.is_empty(),
        Some(_) => false,
    };
    if missing {
        cx.push(FieldError::required(&containers_path));
    }
    let mut container_names = BTreeSet::new();
    for (container_path, container) in &containers {
        validate_container(
            cx,
            container,
            container_path,
            &volume_names,
            &mut container_names,
            context,
        );
    }
    check_host_port_conflicts(cx, &containers);

    let init_path = path.child("initContainers");
    for (container_path, container) in cx.obj_items_at(get(spec, "initContainers"), &init_path) {
        validate_container(
            cx,
            container,
            &container_path,
            &volume_names,
            &mut container_names,
            context,
        );
    }

    validate_restart_policy(
        cx,
        get(spec, "restartPolicy"),
        &path.child("restartPolicy"),
        context,
    );

    let dns_path = path.child("dnsPolicy");
    if let Some(policy) = cx.str_at(get(spec, "dnsPolicy"), &dns_path)
        && !policy.is_empty()
        && !DNS_POLICIES.contains(&policy)
    {
        cx.push(FieldError::not_supported(&dns_path, policy, DNS_POLICIES));
    }

    validate_labels(cx, get(spec, "nodeSelector"), &path.child("nodeSelector"));

    for field in ["serviceAccountName", "nodeName"] {
        let field_path = path.child(field);
        if let Some(name) = cx.str_at(get(spec, field), &field_path)
            && !name.is_empty()
        {
            for msg in name_is_dns1123_subdomain(name, false) {
                cx.push(FieldError::invalid(&field_path, name, msg));
            }
        }
    }
    for field in ["hostname", "subdomain"] {
        let field_path = path.child(field);
        if let Some(name) = cx.str_at(get(spec, field), &field_path)
            && !name.is_empty()
        {
            for msg in is_dns1123_label(name) {
                cx.push(FieldError::invalid(&field_path, name, msg));
            }
        }
    }

    let deadline_path = path.child("activeDeadlineSeconds");
    if let Some(deadline) = cx.int_at(get(spec, "activeDeadlineSeconds"), &deadline_path) {
        if let PodContext::Controller { kind } = context {
            cx.push(FieldError::forbidden(
                &deadline_path,
                format!("activeDeadlineSeconds in {kind} is not Supported"),
            ));
        } else if !(1..=i64::from(i32::MAX)).contains(&deadline) {
            cx.push(FieldError::invalid(
                &deadline_path,
                deadline.to_string(),
                inclusive_range_error(1, i64::from(i32::MAX)),
            ));
        }
    }

    validate_tolerations(cx, get(spec, "tolerations"), &path.child("tolerations"));
}

fn validate_restart_policy(
    cx: &mut Ctx,
    value: Option<&Value>,
    path: &FieldPath,
    context: PodContext,
) {
    let policy = cx.str_at(value, path).unwrap_or("");
    match context {
        // Absent means Kubernetes' default, `Always`.
        PodContext::Pod => {
            if !policy.is_empty() && !RESTART_POLICIES.contains(&policy) {
                cx.push(FieldError::not_supported(path, policy, RESTART_POLICIES));
            }
        }
        PodContext::Controller { .. } => {
            if !policy.is_empty() && policy != "Always" {
                cx.push(FieldError::not_supported(path, policy, &["Always"]));
            }
        }
        // The default `Always` is wrong for a job, so it must be given.
        PodContext::Job => {
            if policy.is_empty() {
                cx.push(
                    FieldError::required(path)
                        .with_detail("valid values: \"OnFailure\", \"Never\""),
                );
            } else if !JOB_RESTART_POLICIES.contains(&policy) {
                cx.push(FieldError::not_supported(
                    path,
                    policy,
                    JOB_RESTART_POLICIES,
                ));
            }
        }
    }
}

/// Checks `volumes` and returns the names declared.
fn validate_volumes(cx: &mut Ctx, volumes: Option<&Value>, path: &FieldPath) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (volume_path, volume) in cx.obj_items_at(volumes, path) {
        let name_path = volume_path.child("name");
        if let Some(name) = cx.required_str_at(volume.get("name"), &name_path) {
            for msg in is_dns1123_label(name) {
                cx.push(FieldError::invalid(&name_path, name, msg));
            }
            if !names.insert(name.to_string()) {
                cx.push(FieldError::duplicate(&name_path, name));
            }
        }
        // Every other key is a volume source; a volume has exactly one (none means emptyDir).
        let sources = volume.iter().filter(|(k, v)| *k != "name" && !v.is_null());
        for (source, _) in sources.skip(1) {
            cx.push(FieldError::forbidden(
                volume_path.child(source),
                "may not specify more than 1 volume type",
            ));
        }
    }
    names
}

fn validate_container(
    cx: &mut Ctx,
    container: &Obj,
    path: &FieldPath,
    volume_names: &BTreeSet<String>,
    container_names: &mut BTreeSet<String>,
    context: PodContext,
) {
    let name_path = path.child("name");
    if let Some(name) = cx.required_str_at(container.get("name"), &name_path) {
        for msg in is_dns1123_label(name) {
            cx.push(FieldError::invalid(&name_path, name, msg));
        }
        if !container_names.insert(name.to_string()) {
            cx.push(FieldError::duplicate(&name_path, name));
        }
    }

    let image_path = path.child("image");
    let image = cx.required_str_at(container.get("image"), &image_path);
    if let Some(image) = image
        && context == PodContext::Pod
        && image.trim() != image
    {
        // Templates tolerate it: some tools put " " there as a placeholder.
        cx.push(FieldError::invalid(
            &image_path,
            image,
            "must not have leading or trailing whitespace",
        ));
    }

    validate_container_ports(cx, container.get("ports"), &path.child("ports"));
    validate_env(cx, container.get("env"), &path.child("env"));
    validate_env_from(cx, container.get("envFrom"), &path.child("envFrom"));
    validate_volume_mounts(
        cx,
        container.get("volumeMounts"),
        &path.child("volumeMounts"),
        volume_names,
    );

    let pull_path = path.child("imagePullPolicy");
    if let Some(policy) = cx.str_at(container.get("imagePullPolicy"), &pull_path)
        && !policy.is_empty()
        && !PULL_POLICIES.contains(&policy)
    {
        cx.push(FieldError::not_supported(&pull_path, policy, PULL_POLICIES));
    }

    let resources_path = path.child("resources");
    let resources = cx.obj_at(container.get("resources"), &resources_path);
    validate_resource_requirements(cx, resources, &resources_path);
}

fn validate_container_ports(cx: &mut Ctx, ports: Option<&Value>, path: &FieldPath) {
    let mut names = BTreeSet::new();
    for (port_path, port) in cx.obj_items_at(ports, path) {
        let name_path = port_path.child("name");
        let name = cx.str_at(port.get("name"), &name_path).unwrap_or("");
        if !name.is_empty() {
            let problems = is_valid_port_name(name);
            if !problems.is_empty() {
                for msg in problems {
                    cx.push(FieldError::invalid(&name_path, name, msg));
                }
            } else if !names.insert(name) {
                cx.push(FieldError::duplicate(&name_path, name));
            }
        }

        let container_port_path = port_path.child("containerPort");
        let raw_container_port = port.get("containerPort");
        match cx.int_at(raw_container_port, &container_port_path) {
            Some(0) => cx.push(FieldError::required(&container_port_path)),
            Some(number) => {
                for msg in is_valid_port_num(number) {
                    cx.push(FieldError::invalid(
                        &container_port_path,
                        number.to_string(),
                        msg,
                    ));
                }
            }
            // A value of the wrong type has been reported already.
            None if raw_container_port.is_none_or(Value::is_null) => {
                cx.push(FieldError::required(&container_port_path));
            }
            None => {}
        }

        let host_port_path = port_path.child("hostPort");
        if let Some(number) = cx.int_at(port.get("hostPort"), &host_port_path)
            && number != 0
        {
            for msg in is_valid_port_num(number) {
                cx.push(FieldError::invalid(
                    &host_port_path,
                    number.to_string(),
                    msg,
                ));
            }
        }

        validate_protocol(cx, port.get("protocol"), &port_path.child("protocol"));
    }
}

/// `TCP`, `UDP` or `SCTP`; absent means Kubernetes' default, `TCP`.
pub(super) fn validate_protocol(cx: &mut Ctx, value: Option<&Value>, path: &FieldPath) {
    if let Some(protocol) = cx.str_at(value, path)
        && !protocol.is_empty()
        && !PORT_PROTOCOLS.contains(&protocol)
    {
        cx.push(FieldError::not_supported(path, protocol, PORT_PROTOCOLS));
    }
}

/// Two containers of a pod may not claim the same host port and protocol.
fn check_host_port_conflicts(cx: &mut Ctx, containers: &[(FieldPath, &Obj)]) {
    let mut seen = BTreeSet::new();
    for (container_path, container) in containers {
        let Some(ports) = container.get("ports").and_then(Value::as_array) else {
            continue;
        };
        for (port_idx, port) in ports.iter().enumerate() {
            let Some(host_port) = port.get("hostPort").and_then(Value::as_i64) else {
                continue;
            };
            if host_port == 0 {
                continue;
            }
            let protocol = port
                .get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP");
            let key = format!("{host_port}/{protocol}");
            if !seen.insert(key.clone()) {
                let host_port_path = container_path
                    .child("ports")
                    .index(port_idx)
                    .child("hostPort");
                cx.push(FieldError::duplicate(host_port_path, key));
            }
        }
    }
}

fn validate_env(cx: &mut Ctx, env: Option<&Value>, path: &FieldPath) {
    for (var_path, var) in cx.obj_items_at(env, path) {
        let name_path = var_path.child("name");
        if let Some(name) = cx.required_str_at(var.get("name"), &name_path) {
            for msg in is_env_var_name(name) {
                cx.push(FieldError::invalid(&name_path, name, msg));
            }
        }
        let value = cx
            .str_at(var.get("value"), &var_path.child("value"))
            .unwrap_or("");
        let from_path = var_path.child("valueFrom");
        let Some(value_from) = cx.obj_at(var.get("valueFrom"), &from_path) else {
            continue;
        };
        let sources: Vec<&str> = [
            "fieldRef",
            "resourceFieldRef",
            "configMapKeyRef",
            "secretKeyRef",
        ]
        .into_iter()
        .filter(|k| value_from.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
        match sources.len() {
            0 => cx.push(FieldError::invalid(
                &from_path,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            )),
            1 => {}
            _ => cx.push(FieldError::invalid(
                &from_path,
                "",
                "may not have more than one field specified at a time",
            )),
        }
        if !value.is_empty() && !sources.is_empty() {
            cx.push(FieldError::invalid(
                &from_path,
                "",
                "may not be specified when `value` is not empty",
            ));
        }
        for selector in ["configMapKeyRef", "secretKeyRef"] {
            let selector_path = from_path.child(selector);
            if let Some(key_ref) = cx.obj_at(value_from.get(selector), &selector_path) {
                validate_key_selector(cx, key_ref, &selector_path);
            }
        }
        let field_ref_path = from_path.child("fieldRef");
        if let Some(field_ref) = cx.obj_at(value_from.get("fieldRef"), &field_ref_path) {
            let field_path_path = field_ref_path.child("fieldPath");
            cx.required_str_at(field_ref.get("fieldPath"), &field_path_path);
        }
    }
}

/// `configMapKeyRef` / `secretKeyRef`: a valid object name and a valid key.
fn validate_key_selector(cx: &mut Ctx, key_ref: &Obj, path: &FieldPath) {
    let name_path = path.child("name");
    let name = cx.str_at(key_ref.get("name"), &name_path).unwrap_or("");
    for msg in name_is_dns1123_subdomain(name, false) {
        cx.push(FieldError::invalid(&name_path, name, msg));
    }
    let key_path = path.child("key");
    if let Some(key) = cx.required_str_at(key_ref.get("key"), &key_path) {
        for msg in is_config_map_key(key) {
            cx.push(FieldError::invalid(&key_path, key, msg));
        }
    }
}

fn validate_env_from(cx: &mut Ctx, env_from: Option<&Value>, path: &FieldPath) {
    for (source_path, source) in cx.obj_items_at(env_from, path) {
        let prefix_path = source_path.child("prefix");
        if let Some(prefix) = cx.str_at(source.get("prefix"), &prefix_path)
            && !prefix.is_empty()
        {
            for msg in is_env_var_name(prefix) {
                cx.push(FieldError::invalid(&prefix_path, prefix, msg));
            }
        }
        let mut n_sources = 0;
        for reference in ["configMapRef", "secretRef"] {
            let ref_path = source_path.child(reference);
            if let Some(obj_ref) = cx.obj_at(source.get(reference), &ref_path) {
                n_sources += 1;
                let name_path = ref_path.child("name");
                let name = cx.str_at(obj_ref.get("name"), &name_path).unwrap_or("");
                for msg in name_is_dns1123_subdomain(name, false) {
                    cx.push(FieldError::invalid(&name_path, name, msg));
                }
            }
        }
        match n_sources {
            0 => cx.push(FieldError::invalid(
                &source_path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            )),
            1 => {}
            _ => cx.push(FieldError::invalid(
                &source_path,
                "",
                "may not have more than one field specified at a time",
            )),
        }
    }
}

fn validate_volume_mounts(
    cx: &mut Ctx,
    mounts: Option<&Value>,
    path: &FieldPath,
    volume_names: &BTreeSet<String>,
) {
    let mut mount_points = BTreeSet::new();
    for (mount_path, mount) in cx.obj_items_at(mounts, path) {
        let name_path = mount_path.child("name");
        // Kubernetes also says "not found" for a missing name; one error is enough.
        if let Some(name) = cx.required_str_at(mount.get("name"), &name_path)
            && !volume_names.contains(name)
        {
            cx.push(FieldError::not_found(&name_path, name));
        }
        let point_path = mount_path.child("mountPath");
        if let Some(point) = cx.required_str_at(mount.get("mountPath"), &point_path)
            && !mount_points.insert(point)
        {
            cx.push(FieldError::invalid(&point_path, point, "must be unique"));
        }
        let sub_path_path = mount_path.child("subPath");
        if let Some(sub_path) = cx.str_at(mount.get("subPath"), &sub_path_path)
            && !sub_path.is_empty()
        {
            if sub_path.starts_with('/') {
                cx.push(FieldError::invalid(
                    &sub_path_path,
                    sub_path,
                    "must be a relative path",
                ));
            }
            if sub_path.split('/').any(|part| part == "..") {
                cx.push(FieldError::invalid(
                    &sub_path_path,
                    sub_path,
                    "must not contain '..'",
                ));
            }
        }
    }
}

/// A quantity given as a JSON string or number.
pub(super) fn quantity_at(cx: &mut Ctx, value: &Value, path: &FieldPath) -> Option<Quantity> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            cx.push(FieldError::invalid(
                path,
                super::value::render_json(other),
                "must be a quantity (a string such as \"500m\" or a number)",
            ));
            return None;
        }
    };
    match parse_quantity(&text) {
        Ok(quantity) => Some(quantity),
        Err(msg) => {
            cx.push(FieldError::invalid(path, text, msg));
            None
        }
    }
}

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_huge_pages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name)
        && !name.starts_with("requests.")
        && is_qualified_name(&format!("requests.{name}")).is_empty()
}

/// Extended resources and huge pages cannot be overcommitted: request must equal limit.
fn overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !is_huge_pages(name)
}

fn validate_container_resource_name(cx: &mut Ctx, name: &str, path: &FieldPath) {
    let problems = is_qualified_name(name);
    if !problems.is_empty() {
        for msg in problems {
            cx.push(FieldError::invalid(path, name, msg));
        }
        return;
    }
    if !name.contains('/') {
        if !STANDARD_RESOURCES.contains(&name) && !is_huge_pages(name) {
            cx.push(FieldError::invalid(
                path,
                name,
                "must be a standard resource type or fully qualified",
            ));
        }
        if !CONTAINER_RESOURCES.contains(&name) && !is_huge_pages(name) {
            cx.push(FieldError::invalid(
                path,
                name,
                "must be a standard resource for containers",
            ));
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        cx.push(FieldError::invalid(
            path,
            name,
            "doesn't follow extended resource name standard",
        ));
    }
}

/// Reads and checks one of `requests`/`limits`: names, quantities, no negatives, whole
/// numbers for extended resources.
fn resource_list(
    cx: &mut Ctx,
    value: Option<&Value>,
    path: &FieldPath,
) -> BTreeMap<String, Quantity> {
    let mut out = BTreeMap::new();
    let Some(map) = cx.obj_at(value, path) else {
        return out;
    };
    for (name, raw) in map {
        let entry_path = path.key(name);
        validate_container_resource_name(cx, name, &entry_path);
        let Some(quantity) = quantity_at(cx, raw, &entry_path) else {
            continue;
        };
        if quantity.is_negative() {
            cx.push(FieldError::invalid(
                &entry_path,
                quantity.to_string(),
                "must be greater than or equal to 0",
            ));
        }
        if is_extended_resource(name) && quantity.milli_value() % 1000 != 0 {
            cx.push(FieldError::invalid(
                &entry_path,
                quantity.to_string(),
                "must be an integer",
            ));
        }
        out.insert(name.clone(), quantity);
    }
    out
}

/// Checks `resources.requests` and `resources.limits`, and that no request exceeds its limit.
pub(super) fn validate_resource_requirements(
    cx: &mut Ctx,
    resources: Option<&Obj>,
    path: &FieldPath,
) {
    let limits_path = path.child("limits");
    let requests_path = path.child("requests");
    let limits = resource_list(cx, get(resources, "limits"), &limits_path);
    let requests = resource_list(cx, get(resources, "requests"), &requests_path);
    for (name, request) in &requests {
        match limits.get(name) {
            Some(limit) if !overcommit_allowed(name) && request != limit => {
                cx.push(FieldError::invalid(
                    &requests_path,
                    request.to_string(),
                    format!("must be equal to {name} limit of {limit}"),
                ));
            }
            Some(limit) if request > limit => {
                cx.push(FieldError::invalid(
                    &requests_path,
                    request.to_string(),
                    format!("must be less than or equal to {name} limit of {limit}"),
                ));
            }
            None if !overcommit_allowed(name) => cx.push(
                FieldError::required(&limits_path)
                    .with_detail("Limit must be set for non overcommitable resources"),
            ),
            _ => {}
        }
    }
}

fn validate_tolerations(cx: &mut Ctx, tolerations: Option<&Value>, path: &FieldPath) {
    for (item_path, toleration) in cx.obj_items_at(tolerations, path) {
        let key_path = item_path.child("key");
        let key = cx.str_at(toleration.get("key"), &key_path).unwrap_or("");
        if !key.is_empty() {
            for msg in is_qualified_name(key) {
                cx.push(FieldError::invalid(&key_path, key, msg));
            }
        }
        let operator_path = item_path.child("operator");
        let operator = cx
            .str_at(toleration.get("operator"), &operator_path)
            .unwrap_or("");
        let value = cx
            .str_at(toleration.get("value"), &item_path.child("value"))
            .unwrap_or("");
        let effect_path = item_path.child("effect");
        let effect = cx
            .str_at(toleration.get("effect"), &effect_path)
            .unwrap_or("");
        if key.is_empty() && operator != "Exists" {
            cx.push(FieldError::invalid(
                &operator_path,
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        let seconds_path = item_path.child("tolerationSeconds");
        if cx
            .int_at(toleration.get("tolerationSeconds"), &seconds_path)
            .is_some()
            && effect != "NoExecute"
        {
            cx.push(FieldError::invalid(
                &effect_path,
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "" | "Equal" => {
                let problems = is_valid_label_value(value);
                if !problems.is_empty() {
                    cx.push(FieldError::invalid(
                        &operator_path,
                        value,
                        problems.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    cx.push(FieldError::invalid(
                        &operator_path,
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            _ => cx.push(FieldError::not_supported(
                &operator_path,
                operator,
                TOLERATION_OPERATORS,
            )),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            cx.push(FieldError::not_supported(
                &effect_path,
                effect,
                TAINT_EFFECTS,
            ));
        }
    }
}
