//! The EndpointSlice mirroring controller's decisions, free of I/O: whether an Endpoints
//! object is mirrored, and the slice writes that bring its mirrored EndpointSlices to
//! what it holds. Semantics follow Kubernetes' `pkg/controller/endpointslicemirroring`:
//!
//! - only Endpoints of a Service without a selector are mirrored (a Service with one
//!   gets its slices from the EndpointSlice controller), and not those labelled
//!   `endpointslice.kubernetes.io/skip-mirror: "true"` or carrying a leader-election
//!   annotation;
//! - one slice per address type and port set (subsets with equal ports share it), at
//!   most [`MAX_ENDPOINTS_PER_SUBSET`] addresses taken from each subset; `addresses`
//!   become ready endpoints, `notReadyAddresses` unready ones; an address that is no IP
//!   is skipped (and counted, for a Warning event);
//! - a slice carries the Endpoints' labels (with the service-name and managed-by labels
//!   set), its annotations but the trigger time and kubectl's last-applied
//!   configuration, and a controller ownerReference to the Endpoints;
//! - a port set that went away frees its slice for reuse by a new one before it is
//!   deleted, and a slice that already holds what is wanted is not written.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Map, Value, json};

use crate::endpointslice::core::{MANAGED_BY_LABEL, SERVICE_NAME_LABEL, SlicePlan};

/// This controller's value of the managed-by label.
pub const MANAGED_BY: &str = "endpointslicemirroring-controller.k8s.io";
/// Label that opts an Endpoints object out of mirroring (value `"true"`).
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Annotation of Endpoints used as leader-election locks; those are never mirrored.
pub const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
/// Most addresses mirrored from one Endpoints subset (kube-controller-manager's
/// `--mirroring-max-endpoints-per-subset` default); also the most in one slice.
pub const MAX_ENDPOINTS_PER_SUBSET: usize = 1000;
/// Annotations that are not copied to the slices.
const NOT_MIRRORED_ANNOTATIONS: [&str; 2] = [
    "endpoints.kubernetes.io/last-change-trigger-time",
    "kubectl.kubernetes.io/last-applied-configuration",
];

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn object_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a Map<String, Value>> {
    v.pointer(pointer).and_then(Value::as_object)
}

/// Whether a Service selects its pods itself (a non-empty selector: an empty one is
/// dropped by Kubernetes' storage and means none).
fn has_selector(service: &Value) -> bool {
    object_at(service, "/spec/selector").is_some_and(|s| !s.is_empty())
}

/// Whether `endpoints` is mirrored given its Service (`None`: no such Service).
pub fn should_mirror(endpoints: Option<&Value>, service: Option<&Value>) -> bool {
    let (Some(endpoints), Some(service)) = (endpoints, service) else {
        return false;
    };
    let skip = str_at(
        endpoints,
        "/metadata/labels/endpointslice.kubernetes.io~1skip-mirror",
    ) == "true";
    let leader = object_at(endpoints, "/metadata/annotations")
        .is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
    !skip && !leader && !has_selector(service)
}

/// Whether a slice is this controller's mirror of the Endpoints named `name`.
pub fn is_mirrored_slice(slice: &Value, name: &str) -> bool {
    str_at(slice, "/metadata/labels/kubernetes.io~1service-name") == name
        && str_at(
            slice,
            "/metadata/labels/endpointslice.kubernetes.io~1managed-by",
        ) == MANAGED_BY
}

/// A slice plan with what was left out on the way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mirror {
    /// The writes.
    pub plan: SlicePlan,
    /// Addresses that are no IP (Kubernetes' `InvalidIPAddress` event).
    pub invalid_addresses: usize,
    /// Valid addresses over [`MAX_ENDPOINTS_PER_SUBSET`] (`TooManyAddressesToMirror`).
    pub skipped_addresses: usize,
}

/// Address type and sorted ports: the slices of one Endpoints are grouped by it.
type GroupKey = (String, Vec<String>);

/// What one slice is to hold.
struct Group {
    address_type: String,
    ports: Vec<Value>,
    endpoints: Vec<Value>,
}

fn port_json(p: &Value) -> Value {
    let mut port = json!({
        "name": str_at(p, "/name"),
        "port": p.get("port").and_then(Value::as_i64).unwrap_or(0),
        "protocol": match str_at(p, "/protocol") { "" => "TCP", proto => proto },
    });
    if let Some(a) = p.get("appProtocol").and_then(Value::as_str) {
        port["appProtocol"] = json!(a);
    }
    port
}

fn group_key(address_type: &str, ports: &[Value]) -> GroupKey {
    let mut ports: Vec<String> = ports.iter().map(|p| port_json(p).to_string()).collect();
    ports.sort();
    (address_type.to_string(), ports)
}

/// An Endpoints address as a slice endpoint, with its address type; `None` when the
/// address is no IP.
fn endpoint(address: &Value, ready: bool) -> Option<(&'static str, Value)> {
    let ip: IpAddr = str_at(address, "/ip").trim().parse().ok()?;
    let address_type = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    let mut ep = json!({"addresses": [ip.to_string()], "conditions": {"ready": ready}});
    if let Some(t) = address.get("targetRef").filter(|t| t.is_object()) {
        ep["targetRef"] = t.clone();
    }
    if let Some(n) = address.get("nodeName").and_then(Value::as_str) {
        ep["nodeName"] = json!(n);
    }
    match str_at(address, "/hostname") {
        "" => {}
        h => ep["hostname"] = json!(h),
    }
    Some((address_type, ep))
}

/// The slices `endpoints` asks for, by group, with the skipped-address counts.
fn desired(endpoints: &Value) -> (BTreeMap<GroupKey, Group>, usize, usize) {
    let mut groups: BTreeMap<GroupKey, Group> = BTreeMap::new();
    let (mut invalid, mut skipped) = (0, 0);
    let subsets = endpoints
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for subset in subsets {
        let ports: Vec<Value> = subset
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(port_json)
            .collect();
        let list = |field: &str, ready: bool| {
            subset
                .get(field)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(move |a| (a, ready))
        };
        let mut added = 0;
        for (address, ready) in list("addresses", true).chain(list("notReadyAddresses", false)) {
            let Some((address_type, ep)) = endpoint(address, ready) else {
                invalid += 1;
                continue;
            };
            if added >= MAX_ENDPOINTS_PER_SUBSET {
                skipped += 1;
                continue;
            }
            added += 1;
            let group = groups
                .entry(group_key(address_type, &ports))
                .or_insert_with(|| Group {
                    address_type: address_type.to_string(),
                    ports: ports.clone(),
                    endpoints: Vec::new(),
                });
            if group.endpoints.len() >= MAX_ENDPOINTS_PER_SUBSET {
                skipped += 1;
            } else if !group.endpoints.contains(&ep) {
                group.endpoints.push(ep);
            }
        }
    }
    (groups, invalid, skipped)
}

fn string_map(v: Option<&Map<String, Value>>) -> Map<String, Value> {
    v.into_iter()
        .flatten()
        .filter(|(_, v)| v.is_string())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Labels, annotations and ownerReferences of every mirrored slice of `endpoints`.
fn slice_meta(endpoints: &Value) -> (Map<String, Value>, Map<String, Value>, Value) {
    let mut labels = string_map(object_at(endpoints, "/metadata/labels"));
    labels.insert(
        SERVICE_NAME_LABEL.to_string(),
        json!(str_at(endpoints, "/metadata/name")),
    );
    labels.insert(MANAGED_BY_LABEL.to_string(), json!(MANAGED_BY));
    let mut annotations = string_map(object_at(endpoints, "/metadata/annotations"));
    for a in NOT_MIRRORED_ANNOTATIONS {
        annotations.remove(a);
    }
    let owner = json!([{
        "apiVersion": "v1",
        "kind": "Endpoints",
        "name": str_at(endpoints, "/metadata/name"),
        "uid": str_at(endpoints, "/metadata/uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    }]);
    (labels, annotations, owner)
}

fn sorted(list: Option<&Value>) -> Vec<String> {
    let mut v: Vec<String> = list
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(Value::to_string)
        .collect();
    v.sort();
    v
}

/// Writes a group and the Endpoints' metadata into `slice`; whether anything changed
/// (endpoint and port order do not count).
fn fill(
    slice: &mut Value,
    group: &Group,
    meta: &(Map<String, Value>, Map<String, Value>, Value),
) -> bool {
    let (labels, annotations, owner) = meta;
    let ports = json!(group.ports);
    let endpoints = json!(group.endpoints);
    let annotations_now = string_map(object_at(slice, "/metadata/annotations"));
    let changed = object_at(slice, "/metadata/labels") != Some(labels)
        || annotations_now != *annotations
        || slice.pointer("/metadata/ownerReferences") != Some(owner)
        || str_at(slice, "/addressType") != group.address_type
        || sorted(slice.get("ports")) != sorted(Some(&ports))
        || sorted(slice.get("endpoints")) != sorted(Some(&endpoints));
    if !changed {
        return false;
    }
    slice["apiVersion"] = json!("discovery.k8s.io/v1");
    slice["kind"] = json!("EndpointSlice");
    slice["metadata"]["labels"] = Value::Object(labels.clone());
    if annotations.is_empty() {
        if let Some(m) = slice["metadata"].as_object_mut() {
            m.remove("annotations");
        }
    } else {
        slice["metadata"]["annotations"] = Value::Object(annotations.clone());
    }
    slice["metadata"]["ownerReferences"] = owner.clone();
    slice["addressType"] = json!(group.address_type);
    slice["ports"] = ports;
    slice["endpoints"] = endpoints;
    true
}

fn delete_ref(slice: &Value) -> (String, String) {
    (
        str_at(slice, "/metadata/name").to_string(),
        str_at(slice, "/metadata/uid").to_string(),
    )
}

/// The writes that bring `existing` (the slices mirrored for this Endpoints, see
/// [`is_mirrored_slice`]) to what `endpoints` holds. A terminating Endpoints gets no new
/// slice.
pub fn plan(endpoints: &Value, existing: &[&Value]) -> Mirror {
    let (groups, invalid_addresses, skipped_addresses) = desired(endpoints);
    let meta = slice_meta(endpoints);
    let mut by_key: BTreeMap<GroupKey, Vec<&Value>> = BTreeMap::new();
    for slice in existing {
        let ports: Vec<Value> = slice
            .get("ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let key = group_key(str_at(slice, "/addressType"), &ports);
        by_key.entry(key).or_default().push(slice);
    }
    for slices in by_key.values_mut() {
        slices.sort_by_key(|s| str_at(s, "/metadata/name").to_string());
    }
    let mut plan = SlicePlan::default();
    let mut unplaced: Vec<&Group> = Vec::new();
    for (key, group) in &groups {
        // The first slice of the group is kept (rewritten when it differs), the rest go.
        match by_key.remove(key).map(Vec::into_iter) {
            Some(mut slices) => {
                let mut first = slices.next().expect("groups are never empty").clone();
                if fill(&mut first, group, &meta) {
                    plan.update.push(first);
                }
                plan.delete.extend(slices.map(delete_ref));
            }
            None => unplaced.push(group),
        }
    }
    // Slices of port sets that went away: reused for new groups first (Kubernetes'
    // `recycleSlices`), the rest deleted.
    let mut free = by_key.into_values().flatten();
    let terminating = endpoints
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null());
    for group in unplaced {
        match free.next() {
            Some(slice) => {
                let mut slice = slice.clone();
                fill(&mut slice, group, &meta);
                plan.update.push(slice);
            }
            None if terminating => {}
            None => {
                let mut slice = json!({
                    "metadata": {
                        "generateName": format!("{}-", str_at(endpoints, "/metadata/name")),
                        "namespace": str_at(endpoints, "/metadata/namespace"),
                    },
                });
                fill(&mut slice, group, &meta);
                plan.create.push(slice);
            }
        }
    }
    plan.delete.extend(free.map(delete_ref));
    Mirror {
        plan,
        invalid_addresses,
        skipped_addresses,
    }
}

#[cfg(test)]
mod tests;
