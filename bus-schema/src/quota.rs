//! ResourceQuota arithmetic: what an object costs against a quota (Kubernetes' quota
//! evaluators in `pkg/quota/v1/evaluator/core`), sums and differences of resource lists,
//! scope matching, and the admission decision with Kubernetes' messages.
//!
//! Shared by the gateway (admission charges a quota before the object is written) and the
//! quota controller (recomputes `status.used` from the objects that exist), so both count
//! the same way. Pure: no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::KindInfo;
use crate::validation::{Quantity, QuantityFormat, parse_quantity};

/// Resource name -> amount, ordered by name (messages list resources sorted).
pub type ResourceList = BTreeMap<String, Quantity>;

/// Quota resources that make every container of a pod name the matching request or limit
/// (Kubernetes keeps this for compatibility: a quota on cpu or memory requires them).
const REQUIRED_PER_CONTAINER: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// Reads a `{name: quantity}` map; entries that are not quantities are skipped (validation
/// reports them).
pub fn parse_list(value: Option<&Value>) -> ResourceList {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), parse_quantity(v.as_str()?).ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Renders a list as the JSON map the API shows (canonical quantities).
pub fn render_list(list: &ResourceList) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.clone(), json!(v.to_string())))
            .collect::<Map<String, Value>>(),
    )
}

fn zero() -> Quantity {
    Quantity::from_nanos(0, QuantityFormat::DecimalSI)
}

fn sum(a: Quantity, b: Quantity) -> Quantity {
    // A sum keeps the format of its first non-zero term, as Kubernetes' `Add` does.
    let format = if a.is_zero() { b.format() } else { a.format() };
    Quantity::from_nanos(a.nano_value() + b.nano_value(), format)
}

/// `a + b`, key by key.
pub fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        let cur = out.get(k).copied().unwrap_or_else(zero);
        out.insert(k.clone(), sum(cur, *v));
    }
    out
}

/// `a - b` key by key over the keys of `a`, never below zero (what an update adds).
pub fn subtract_non_negative(a: &ResourceList, b: &ResourceList) -> ResourceList {
    a.iter()
        .map(|(k, v)| {
            let other = b.get(k).map(Quantity::nano_value).unwrap_or(0);
            let left = (v.nano_value() - other).max(0);
            (k.clone(), Quantity::from_nanos(left, v.format()))
        })
        .collect()
}

/// Largest of `a` and `b`, key by key.
fn max(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        match out.get(k) {
            Some(cur) if cur >= v => {}
            _ => {
                out.insert(k.clone(), *v);
            }
        }
    }
    out
}

/// The entries of `list` whose names are in `names`.
pub fn mask<'a>(list: &ResourceList, names: impl IntoIterator<Item = &'a String>) -> ResourceList {
    names
        .into_iter()
        .filter_map(|n| list.get(n).map(|q| (n.clone(), *q)))
        .collect()
}

/// Whether a pod has reached a terminal phase (it then counts only as an object, not
/// against `pods` or compute resources).
pub fn pod_is_terminal(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

/// The object-count resource of a kind: `count/pods`, `count/deployments.apps`.
pub fn count_resource(kind: &KindInfo) -> String {
    if kind.group.is_empty() {
        format!("count/{}", kind.plural)
    } else {
        format!("count/{}.{}", kind.plural, kind.group)
    }
}

/// Legacy names Kubernetes counts objects of some core kinds under.
fn legacy_count(kind: &KindInfo) -> Option<&'static str> {
    if !kind.group.is_empty() {
        return None;
    }
    Some(match kind.kind {
        "Pod" => return None, // `pods` counts only non-terminal pods; see `pod_usage`.
        "Service" => "services",
        "PersistentVolumeClaim" => "persistentvolumeclaims",
        "ConfigMap" => "configmaps",
        "Secret" => "secrets",
        "ReplicationController" => "replicationcontrollers",
        "ResourceQuota" => "resourcequotas",
        _ => return None,
    })
}

fn one() -> Quantity {
    Quantity::from_nanos(1_000_000_000, QuantityFormat::DecimalSI)
}

fn count(n: i128) -> Quantity {
    Quantity::from_nanos(n * 1_000_000_000, QuantityFormat::DecimalSI)
}

/// Everything `obj` of `kind` uses, under every quota resource name it can be charged to.
pub fn usage(kind: &KindInfo, obj: &Value) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert(count_resource(kind), one());
    if let Some(legacy) = legacy_count(kind) {
        out.insert(legacy.into(), one());
    }
    match (kind.group, kind.kind) {
        ("", "Pod") => out.extend(pod_usage(obj)),
        ("", "Service") => out.extend(service_usage(obj)),
        ("", "PersistentVolumeClaim") => out.extend(pvc_usage(obj)),
        _ => {}
    }
    out
}

/// Whether a resource name is an extended resource (`nvidia.com/gpu`): not native
/// (`cpu`, `kubernetes.io/...`) and not already a `requests.` name.
fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/") && !name.starts_with("requests.")
}

/// The requests and limits a pod is scheduled and charged with: containers and sidecars
/// summed, each regular init container (with the sidecars started before it) taken as a
/// floor, plus the pod overhead.
pub fn pod_requests_limits(pod: &Value) -> (ResourceList, ResourceList) {
    let spec = pod.get("spec");
    let list = |c: &Value, which: &str| parse_list(c.pointer(&format!("/resources/{which}")));
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    let inits = spec
        .and_then(|s| s.get("initContainers"))
        .and_then(Value::as_array);
    let (mut requests, mut limits) = (ResourceList::new(), ResourceList::new());
    for c in containers.into_iter().flatten() {
        requests = add(&requests, &list(c, "requests"));
        limits = add(&limits, &list(c, "limits"));
    }
    let (mut sidecar_req, mut sidecar_lim) = (ResourceList::new(), ResourceList::new());
    let (mut init_req, mut init_lim) = (ResourceList::new(), ResourceList::new());
    for c in inits.into_iter().flatten() {
        let (r, l) = (list(c, "requests"), list(c, "limits"));
        if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            sidecar_req = add(&sidecar_req, &r);
            sidecar_lim = add(&sidecar_lim, &l);
            init_req = max(&init_req, &sidecar_req);
            init_lim = max(&init_lim, &sidecar_lim);
        } else {
            init_req = max(&init_req, &add(&r, &sidecar_req));
            init_lim = max(&init_lim, &add(&l, &sidecar_lim));
        }
    }
    requests = max(&add(&requests, &sidecar_req), &init_req);
    limits = max(&add(&limits, &sidecar_lim), &init_lim);
    let overhead = parse_list(spec.and_then(|s| s.get("overhead")));
    // Overhead adds to every request, but only to limits that are set (as Kubernetes'
    // `PodLimits` does: no limit stays no limit).
    let limits_overhead = mask(&overhead, limits.keys());
    (add(&requests, &overhead), add(&limits, &limits_overhead))
}

/// Compute usage of one pod or container from its requests and limits
/// (`podComputeUsageHelper`).
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::new();
    for (name, q) in requests {
        match name.as_str() {
            "cpu" | "memory" | "ephemeral-storage" => {
                out.insert(name.clone(), *q);
                out.insert(format!("requests.{name}"), *q);
            }
            n if n.starts_with("hugepages-") || is_extended(n) => {
                out.insert(format!("requests.{n}"), *q);
            }
            _ => {}
        }
    }
    for (name, q) in limits {
        if matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage") {
            out.insert(format!("limits.{name}"), *q);
        }
    }
    out
}

fn pod_usage(pod: &Value) -> ResourceList {
    if pod_is_terminal(pod) {
        return ResourceList::new();
    }
    let (requests, limits) = pod_requests_limits(pod);
    let mut out = compute_usage(&requests, &limits);
    out.insert("pods".into(), one());
    out
}

fn service_usage(svc: &Value) -> ResourceList {
    let spec = svc.get("spec");
    let ty = spec
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let n_ports = spec
        .and_then(|s| s.get("ports"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len) as i128;
    let mut out = ResourceList::new();
    let allocate_node_ports = spec
        .and_then(|s| s.get("allocateLoadBalancerNodePorts"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    match ty {
        "NodePort" => {
            out.insert("services.nodeports".into(), count(n_ports));
        }
        "LoadBalancer" => {
            out.insert("services.loadbalancers".into(), one());
            let n = if allocate_node_ports { n_ports } else { 0 };
            out.insert("services.nodeports".into(), count(n));
        }
        _ => {}
    }
    out
}

fn pvc_usage(pvc: &Value) -> ResourceList {
    let mut out = ResourceList::new();
    let storage = parse_list(pvc.pointer("/spec/resources/requests"))
        .get("storage")
        .copied();
    if let Some(q) = storage {
        out.insert("requests.storage".into(), q);
    }
    if let Some(class) = pvc
        .pointer("/spec/storageClassName")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
    {
        let prefix = format!("{class}.storageclass.storage.k8s.io/");
        out.insert(format!("{prefix}persistentvolumeclaims"), one());
        if let Some(q) = storage {
            out.insert(format!("{prefix}requests.storage"), q);
        }
    }
    out
}

/// Whether a quota with `spec` covers `obj` of `kind` at all: a quota with scopes only
/// covers pods in those scopes (Terminating, NotTerminating, BestEffort, NotBestEffort,
/// PriorityClass with its selector).
pub fn quota_covers(spec: Option<&Value>, kind: &KindInfo, obj: &Value) -> bool {
    let scopes: Vec<&str> = spec
        .and_then(|s| s.get("scopes"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let selector: Vec<&Value> = spec
        .and_then(|s| s.pointer("/scopeSelector/matchExpressions"))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if scopes.is_empty() && selector.is_empty() {
        return true;
    }
    if !(kind.group.is_empty() && kind.kind == "Pod") {
        return false;
    }
    let pod_spec = obj.get("spec");
    let terminating = pod_spec
        .and_then(|s| s.get("activeDeadlineSeconds"))
        .is_some_and(|v| !v.is_null());
    let best_effort = pod_spec.map(crate::defaults::qos_class) == Some("BestEffort");
    let class = pod_spec
        .and_then(|s| s.get("priorityClassName"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let scope_matches = |scope: &str| match scope {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        "PriorityClass" => !class.is_empty(),
        _ => false,
    };
    let expression_matches = |expr: &Value| {
        let scope = expr.get("scopeName").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = expr
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match (scope, expr.get("operator").and_then(Value::as_str)) {
            ("PriorityClass", Some("In")) => values.contains(&class),
            ("PriorityClass", Some("NotIn")) => !values.contains(&class),
            ("PriorityClass", Some("Exists")) => !class.is_empty(),
            ("PriorityClass", Some("DoesNotExist")) => class.is_empty(),
            (other, Some("Exists")) => scope_matches(other),
            (other, Some("DoesNotExist")) => !scope_matches(other),
            _ => false,
        }
    };
    scopes.iter().all(|&s| scope_matches(s)) && selector.iter().all(|&e| expression_matches(e))
}

/// For a pod under a quota that tracks `hard`: the "must specify ..." text when some
/// container lacks a request or limit the quota needs (`None` when all are there).
pub fn missing_requirements(hard: &ResourceList, pod: &Value) -> Option<String> {
    let required: BTreeSet<&str> = hard
        .keys()
        .map(String::as_str)
        .filter(|k| REQUIRED_PER_CONTAINER.contains(k))
        .collect();
    if required.is_empty() {
        return None;
    }
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for list in ["containers", "initContainers"] {
        let containers = pod
            .pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array);
        for c in containers.into_iter().flatten() {
            let usage = compute_usage(
                &parse_list(c.pointer("/resources/requests")),
                &parse_list(c.pointer("/resources/limits")),
            );
            for r in &required {
                if !usage.contains_key(*r) {
                    let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                    missing.entry(r).or_default().insert(name.to_string());
                }
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Some(format!("must specify {}", parts.join("; ")))
}

/// `name=qty,name=qty` in name order, as Kubernetes prints resource lists in messages.
pub fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Why a quota refuses an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaDenied {
    /// Admitting the object would take usage above a hard limit.
    #[error("exceeded quota: {quota}, requested: {requested}, used: {used}, limited: {limited}")]
    Exceeded {
        /// The quota's name.
        quota: String,
        /// What the object asks for, of the exceeded resources.
        requested: String,
        /// What is used already, of the exceeded resources.
        used: String,
        /// The hard limits that would be exceeded.
        limited: String,
    },
    /// A container lacks a request or limit the quota needs.
    #[error("failed quota: {quota}: {detail}")]
    Missing {
        /// The quota's name.
        quota: String,
        /// The "must specify ..." text.
        detail: String,
    },
}

/// The admission decision of one quota (`name`, `hard`, `used`) for an object whose
/// charge would be `delta` (the object's usage, or for an update what it adds).
/// `Ok(Some(new_used))` when the quota must be charged, `Ok(None)` when it tracks
/// nothing the object uses.
pub fn admit(
    name: &str,
    hard: &ResourceList,
    used: &ResourceList,
    delta: &ResourceList,
) -> Result<Option<ResourceList>, QuotaDenied> {
    let charged = mask(delta, hard.keys());
    if charged.values().all(Quantity::is_zero) {
        return Ok(None);
    }
    let new_used = add(&mask(used, hard.keys()), &charged);
    let exceeded: Vec<String> = charged
        .keys()
        .filter(|k| new_used.get(*k) > hard.get(*k))
        .cloned()
        .collect();
    if !exceeded.is_empty() {
        let used_or_zero: ResourceList = exceeded
            .iter()
            .map(|k| (k.clone(), used.get(k).copied().unwrap_or_else(zero)))
            .collect();
        return Err(QuotaDenied::Exceeded {
            quota: name.to_string(),
            requested: pretty(&mask(&charged, &exceeded)),
            used: pretty(&used_or_zero),
            limited: pretty(&mask(hard, &exceeded)),
        });
    }
    let mut full = used.clone();
    full.extend(new_used);
    Ok(Some(full))
}

/// The `status.used` of a quota tracking `hard`, from the usages of the objects it covers:
/// every hard resource gets a value, zero when nothing uses it.
pub fn used_from<'a>(
    hard: &ResourceList,
    usages: impl IntoIterator<Item = &'a ResourceList>,
) -> ResourceList {
    let mut used: ResourceList = hard.keys().map(|k| (k.clone(), zero())).collect();
    for u in usages {
        used = add(&used, &mask(u, hard.keys()));
    }
    used
}

/// The kinds whose objects a quota with these hard resources counts (what the quota
/// controller must list to recompute it).
pub fn counted_kinds(hard: &ResourceList) -> Vec<&'static KindInfo> {
    let mut out: Vec<&'static KindInfo> = Vec::new();
    let mut push = |group: &str, kind: &str| {
        if let Some(k) = crate::kinds::by_group_kind(group, kind)
            && !out.iter().any(|o| std::ptr::eq(*o, k))
        {
            out.push(k);
        }
    };
    for name in hard.keys() {
        if let Some(rest) = name.strip_prefix("count/") {
            let (plural, group) = rest.split_once('.').unwrap_or((rest, ""));
            if let Some(k) = crate::kinds::by_group_resource(group, plural) {
                push(k.group, k.kind);
            }
            continue;
        }
        match name.as_str() {
            "services" | "services.loadbalancers" | "services.nodeports" => push("", "Service"),
            "configmaps" => push("", "ConfigMap"),
            "secrets" => push("", "Secret"),
            "replicationcontrollers" => push("", "ReplicationController"),
            "resourcequotas" => push("", "ResourceQuota"),
            "persistentvolumeclaims" | "requests.storage" => push("", "PersistentVolumeClaim"),
            n if n.contains(".storageclass.storage.k8s.io/") => push("", "PersistentVolumeClaim"),
            _ => push("", "Pod"),
        }
    }
    out
}

#[cfg(test)]
mod tests;
