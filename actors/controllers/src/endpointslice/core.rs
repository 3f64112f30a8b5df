//! The EndpointSlice and Endpoints controllers' decisions, free of I/O: which pods of a
//! Service become endpoints and with which conditions, which ports each pod serves (a
//! named `targetPort` is looked up in the pod's container ports), how the endpoints are
//! packed into EndpointSlices of at most [`MAX_ENDPOINTS_PER_SLICE`] grouped by port set,
//! and the legacy v1 Endpoints object. Semantics follow Kubernetes'
//! `pkg/controller/endpointslice` (`podToEndpoint`, `ShouldPodBeInEndpoints`,
//! `FindPort`) and `pkg/controller/endpoint` (subsets, `RepackSubsets`).
//!
//! The slice plan is a diff against the existing slices: endpoints stay in the slice
//! that holds them, new ones fill slices with room first, a slice whose endpoints all
//! left is reused (rewritten) before a new one is created, and a slice that does not
//! change is not written.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::{Map, Value, json};

/// Most endpoints in one slice (kube-controller-manager's `--max-endpoints-per-slice`
/// default).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Most addresses in one v1 Endpoints object; more are truncated.
pub const MAX_ENDPOINTS: usize = 1000;
/// Label naming the Service of a slice.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Label set on the slices and Endpoints of a headless Service.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Annotation with the time of the last change that led to the object's content.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Annotation set on Endpoints truncated to [`MAX_ENDPOINTS`].
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// The Service's selector when this controller manages its endpoints: None for a
/// Service without selector (its Endpoints and slices are the user's) and for an
/// ExternalName Service.
pub fn managed_selector(service: &Value) -> Option<BTreeMap<String, String>> {
    if str_at(service, "/spec/type") == "ExternalName" {
        return None;
    }
    let selector = string_map(service.pointer("/spec/selector"));
    (!selector.is_empty()).then_some(selector)
}

/// Whether the Service's selector matches a pod's labels.
pub fn selects(selector: &BTreeMap<String, String>, pod: &Value) -> bool {
    let labels = pod.pointer("/metadata/labels");
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)).and_then(Value::as_str) == Some(v))
}

fn is_headless(service: &Value) -> bool {
    str_at(service, "/spec/clusterIP") == "None"
}

fn pod_ipv4(pod: &Value) -> Option<Ipv4Addr> {
    let first = str_at(pod, "/status/podIP");
    let from_list = pod
        .pointer("/status/podIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("ip").and_then(Value::as_str));
    std::iter::once(first)
        .chain(from_list)
        .find_map(|ip| ip.parse().ok())
}

fn is_terminating(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

fn is_ready(pod: &Value) -> bool {
    ready_condition(pod).is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("True"))
}

fn ready_condition(pod: &Value) -> Option<&Value> {
    pod.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
}

/// Whether a pod is an endpoint at all (`ShouldPodBeInEndpoints`): not finished, with an
/// IPv4 pod IP, and not terminating unless `include_terminating`.
pub fn should_be_endpoint(pod: &Value, include_terminating: bool) -> bool {
    if matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed") {
        return false;
    }
    if pod_ipv4(pod).is_none() {
        return false;
    }
    include_terminating || !is_terminating(pod)
}

/// One resolved port of an endpoint: the Service port's name, protocol and appProtocol
/// with the pod's port number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointPort {
    /// The Service port's name ("" when unnamed).
    pub name: String,
    /// The port on the pod.
    pub port: i64,
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// The Service port's appProtocol.
    pub app_protocol: Option<String>,
}

impl EndpointPort {
    fn to_json(&self) -> Value {
        let mut p = json!({"name": self.name, "port": self.port, "protocol": self.protocol});
        if let Some(a) = &self.app_protocol {
            p["appProtocol"] = json!(a);
        }
        p
    }

    fn from_json(v: &Value) -> EndpointPort {
        EndpointPort {
            name: str_at(v, "/name").to_string(),
            port: v.get("port").and_then(Value::as_i64).unwrap_or(0),
            protocol: match str_at(v, "/protocol") {
                "" => "TCP".to_string(),
                p => p.to_string(),
            },
            app_protocol: v
                .get("appProtocol")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }
}

/// The port a Service port reaches on `pod` (`FindPort`): a numeric `targetPort` as is
/// (the Service `port` when unset), a named one from the pod's container ports with the
/// same protocol (sidecar init containers too); None when the pod has no such port.
pub fn find_port(pod: &Value, service_port: &Value) -> Option<i64> {
    let protocol = match str_at(service_port, "/protocol") {
        "" => "TCP",
        p => p,
    };
    match service_port.get("targetPort") {
        Some(Value::String(name)) => {
            let containers = pod
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            let sidecars = pod
                .pointer("/spec/initContainers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|c| str_at(c, "/restartPolicy") == "Always");
            containers
                .chain(sidecars)
                .flat_map(|c| {
                    c.get("ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                })
                .find(|p| {
                    str_at(p, "/name") == name
                        && match str_at(p, "/protocol") {
                            "" => "TCP",
                            p => p,
                        } == protocol
                })
                .and_then(|p| p.get("containerPort").and_then(Value::as_i64))
        }
        Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n > 0) => n.as_i64(),
        _ => service_port.get("port").and_then(Value::as_i64),
    }
}

/// The Service's ports resolved against `pod`, in the Service's order; a port the pod
/// does not have is left out.
pub fn resolve_ports(service: &Value, pod: &Value) -> Vec<EndpointPort> {
    service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            Some(EndpointPort {
                name: str_at(sp, "/name").to_string(),
                port: find_port(pod, sp)?,
                protocol: match str_at(sp, "/protocol") {
                    "" => "TCP".to_string(),
                    p => p.to_string(),
                },
                app_protocol: sp
                    .get("appProtocol")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })
        })
        .collect()
}

fn target_ref(pod: &Value) -> Value {
    json!({
        "kind": "Pod",
        "namespace": str_at(pod, "/metadata/namespace"),
        "name": str_at(pod, "/metadata/name"),
        "uid": str_at(pod, "/metadata/uid"),
    })
}

fn hostname(service: &Value, pod: &Value) -> Option<String> {
    let host = str_at(pod, "/spec/hostname");
    (!host.is_empty()
        && str_at(pod, "/spec/subdomain") == str_at(service, "/metadata/name")
        && str_at(pod, "/metadata/namespace") == str_at(service, "/metadata/namespace"))
    .then(|| host.to_string())
}

/// The discovery/v1 endpoint of `pod` (`podToEndpoint`); `zones` maps node names to their
/// `topology.kubernetes.io/zone`.
pub fn endpoint(service: &Value, pod: &Value, zones: &BTreeMap<String, String>) -> Option<Value> {
    let ip = pod_ipv4(pod)?;
    let publish = service
        .pointer("/spec/publishNotReadyAddresses")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let serving = publish || is_ready(pod);
    let terminating = is_terminating(pod);
    let ready = publish || (serving && !terminating);
    let mut ep = json!({
        "addresses": [ip.to_string()],
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
        "targetRef": target_ref(pod),
    });
    let node = str_at(pod, "/spec/nodeName");
    if !node.is_empty() {
        ep["nodeName"] = json!(node);
        if let Some(zone) = zones.get(node).filter(|z| !z.is_empty()) {
            ep["zone"] = json!(zone);
        }
    }
    if let Some(h) = hostname(service, pod) {
        ep["hostname"] = json!(h);
    }
    if ready && let Some(h) = hints(hint_mode(service), &ep) {
        ep["hints"] = h;
    }
    Some(ep)
}

/// `spec.trafficDistribution` values that ask for same-zone hints.
const SAME_ZONE_DISTRIBUTIONS: [&str; 2] = ["PreferClose", "PreferSameZone"];
/// The `trafficDistribution` value that also asks for same-node hints.
pub const PREFER_SAME_NODE: &str = "PreferSameNode";
/// The annotation of Topology Aware Routing (KEP-2433) and its older spelling.
pub const TOPOLOGY_MODE_ANNOTATIONS: [&str; 2] = [
    "service.kubernetes.io/topology-mode",
    "service.kubernetes.io/topology-aware-hints",
];

/// Which topology hints a Service's endpoints carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HintMode {
    /// None (every endpoint is for everyone).
    None,
    /// `forZones` = the endpoint's zone.
    SameZone,
    /// `forZones` = its zone and `forNodes` = its node.
    SameNode,
}

/// The hints a Service asks for, as Kubernetes' EndpointSlice controller decides:
/// `trafficDistribution: PreferClose`/`PreferSameZone` (same zone), `PreferSameNode`
/// (same node, and same zone as the proxies' fallback), or the topology annotation set
/// to `Auto` or `auto`. Kubernetes gives the annotation a
/// proportional-by-CPU allocation; drover gives it the same-zone hints of
/// `PreferClose`, so a zone never sends traffic to another zone's endpoints while it
/// has its own (documented in ARCHITECTURE.md).
pub fn hint_mode(service: &Value) -> HintMode {
    match str_at(service, "/spec/trafficDistribution") {
        PREFER_SAME_NODE => return HintMode::SameNode,
        d if SAME_ZONE_DISTRIBUTIONS.contains(&d) => return HintMode::SameZone,
        _ => {}
    }
    // The newer annotation wins when both are set, as in Kubernetes.
    let annotations = string_map(service.pointer("/metadata/annotations"));
    let mode = TOPOLOGY_MODE_ANNOTATIONS
        .iter()
        .find_map(|a| annotations.get(*a));
    match mode.map(String::as_str) {
        Some("Auto" | "auto") => HintMode::SameZone,
        _ => HintMode::None,
    }
}

/// The `hints` of a ready endpoint: its zone (and node) when it has one; none else
/// (a proxy then routes to every endpoint, so a missing zone never strands traffic).
fn hints(mode: HintMode, ep: &Value) -> Option<Value> {
    if mode == HintMode::None {
        return None;
    }
    let mut h = serde_json::Map::new();
    if let Some(zone) = ep.get("zone").and_then(Value::as_str) {
        h.insert("forZones".into(), json!([{"name": zone}]));
    }
    if mode == HintMode::SameNode
        && let Some(node) = ep.get("nodeName").and_then(Value::as_str)
    {
        h.insert("forNodes".into(), json!([{"name": node}]));
    }
    (!h.is_empty()).then_some(Value::Object(h))
}

fn rfc3339_of(v: Option<&Value>) -> Option<jiff::Timestamp> {
    v?.as_str()?.parse().ok()
}

/// The time of the latest change the endpoints reflect: the Service's creation and, per
/// pod, its creation, its Ready transition and its deletion (what Kubernetes' trigger
/// time tracker reads), as RFC 3339.
pub fn trigger_time(service: &Value, pods: &[&Value]) -> Option<String> {
    let mut times = vec![rfc3339_of(service.pointer("/metadata/creationTimestamp"))];
    for pod in pods {
        times.push(rfc3339_of(pod.pointer("/metadata/creationTimestamp")));
        times.push(rfc3339_of(pod.pointer("/metadata/deletionTimestamp")));
        times.push(rfc3339_of(
            ready_condition(pod).and_then(|c| c.get("lastTransitionTime")),
        ));
    }
    let latest = times.into_iter().flatten().max()?;
    Some(
        jiff::Timestamp::from_second(latest.as_second())
            .unwrap_or(latest)
            .to_string(),
    )
}

/// The labels this controller puts on the Service's slices: the Service's own, the
/// service name, the manager, and the headless mark.
pub fn slice_labels(service: &Value) -> BTreeMap<String, String> {
    let mut labels = string_map(service.pointer("/metadata/labels"));
    labels.insert(
        SERVICE_NAME_LABEL.to_string(),
        str_at(service, "/metadata/name").to_string(),
    );
    labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string());
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.to_string(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

/// Whether an existing slice is this controller's slice of the Service named `name`.
pub fn is_managed_slice(slice: &Value, service_name: &str) -> bool {
    str_at(slice, "/metadata/labels/kubernetes.io~1service-name") == service_name
        && str_at(
            slice,
            "/metadata/labels/endpointslice.kubernetes.io~1managed-by",
        ) == MANAGED_BY
}

fn owned_by(obj: &Value, uid: &str) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|r| {
            str_at(r, "/uid") == uid && r.get("controller").and_then(Value::as_bool) == Some(true)
        })
}

/// The writes that bring a Service's slices to what its pods ask for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlicePlan {
    /// New slices (with `generateName`).
    pub create: Vec<Value>,
    /// Existing slices rewritten (each keeps its name and resourceVersion, for the CAS).
    pub update: Vec<Value>,
    /// Existing slices to delete: (name, uid).
    pub delete: Vec<(String, String)>,
}

impl SlicePlan {
    /// Whether nothing is to be written.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

type PortSet = Vec<EndpointPort>;
/// Addresses of an Endpoints subset with their IP, to sort by.
type Addresses = Vec<(Ipv4Addr, Value)>;

/// The desired endpoints of a Service, grouped by port set, keyed by pod name.
pub fn desired_groups(
    service: &Value,
    pods: &[&Value],
    zones: &BTreeMap<String, String>,
) -> BTreeMap<PortSet, BTreeMap<String, Value>> {
    let mut groups: BTreeMap<PortSet, BTreeMap<String, Value>> = BTreeMap::new();
    let Some(selector) = managed_selector(service) else {
        return groups;
    };
    let ns = str_at(service, "/metadata/namespace");
    for pod in pods {
        if str_at(pod, "/metadata/namespace") != ns
            || !selects(&selector, pod)
            || !should_be_endpoint(pod, true)
        {
            continue;
        }
        let Some(ep) = endpoint(service, pod, zones) else {
            continue;
        };
        groups
            .entry(resolve_ports(service, pod))
            .or_default()
            .insert(str_at(pod, "/metadata/name").to_string(), ep);
    }
    groups
}

fn endpoint_key(ep: &Value) -> String {
    match str_at(ep, "/targetRef/name") {
        "" => str_at(ep, "/addresses/0").to_string(),
        name => name.to_string(),
    }
}

fn slice_ports(slice: &Value) -> PortSet {
    slice
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(EndpointPort::from_json)
        .collect()
}

fn slice_endpoints(slice: &Value) -> Vec<Value> {
    slice
        .get("endpoints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Writes `ports`, `endpoints` and the controller's metadata into `slice`; whether
/// anything this controller owns changed (the trigger-time annotation is set only then).
fn fill_slice(
    slice: &mut Value,
    service: &Value,
    ports: &PortSet,
    endpoints: &BTreeMap<String, Value>,
    trigger: Option<&str>,
) -> bool {
    let labels: Map<String, Value> = slice_labels(service)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let owner = json!([{
        "apiVersion": "v1",
        "kind": "Service",
        "name": str_at(service, "/metadata/name"),
        "uid": str_at(service, "/metadata/uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    }]);
    let ports_json: Vec<Value> = ports.iter().map(EndpointPort::to_json).collect();
    let eps: Vec<Value> = endpoints.values().cloned().collect();
    let changed = slice.pointer("/metadata/labels") != Some(&Value::Object(labels.clone()))
        || slice.pointer("/metadata/ownerReferences") != Some(&owner)
        || str_at(slice, "/addressType") != "IPv4"
        || slice_ports(slice) != *ports
        || slice_endpoints(slice) != eps;
    if !changed {
        return false;
    }
    slice["apiVersion"] = json!("discovery.k8s.io/v1");
    slice["kind"] = json!("EndpointSlice");
    slice["metadata"]["labels"] = Value::Object(labels);
    slice["metadata"]["ownerReferences"] = owner;
    if let Some(t) = trigger {
        if !slice["metadata"]["annotations"].is_object() {
            slice["metadata"]["annotations"] = json!({});
        }
        slice["metadata"]["annotations"][TRIGGER_TIME_ANNOTATION] = json!(t);
    }
    slice["addressType"] = json!("IPv4");
    slice["ports"] = json!(ports_json);
    slice["endpoints"] = json!(eps);
    true
}

fn new_slice(service: &Value) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "generateName": format!("{}-", str_at(service, "/metadata/name")),
            "namespace": str_at(service, "/metadata/namespace"),
        },
        "addressType": "IPv4",
    })
}

/// The writes that bring `existing` (every slice in the Service's namespace carrying
/// this controller's labels for the Service) to what `pods` ask for. None when the
/// Service's endpoints are not this controller's (no selector, ExternalName).
pub fn plan_slices(
    service: &Value,
    pods: &[&Value],
    zones: &BTreeMap<String, String>,
    existing: &[&Value],
) -> Option<SlicePlan> {
    managed_selector(service)?;
    let name = str_at(service, "/metadata/name");
    let uid = str_at(service, "/metadata/uid");
    let mut groups = desired_groups(service, pods, zones);
    let trigger = trigger_time(service, pods);
    let trigger = trigger.as_deref();
    let mut plan = SlicePlan::default();

    // Slices of an earlier Service of the same name, or of another address type, go.
    let mut ours: Vec<&Value> = Vec::new();
    for slice in existing {
        if !is_managed_slice(slice, name) {
            continue;
        }
        if owned_by(slice, uid) && matches!(str_at(slice, "/addressType"), "IPv4" | "") {
            ours.push(slice);
        } else {
            plan.delete.push(delete_ref(slice));
        }
    }
    ours.sort_by_key(|s| str_at(s, "/metadata/name").to_string());

    // No endpoints at all: one placeholder slice without ports, reusing one if any.
    if groups.values().all(BTreeMap::is_empty) {
        let mut slices = ours.into_iter();
        let (mut slice, existed) = match slices.next() {
            Some(s) => ((*s).clone(), true),
            None => (new_slice(service), false),
        };
        if fill_slice(&mut slice, service, &Vec::new(), &BTreeMap::new(), trigger) || !existed {
            if existed {
                plan.update.push(slice);
            } else {
                plan.create.push(slice);
            }
        }
        plan.delete.extend(slices.map(delete_ref));
        return Some(plan);
    }

    // Pass 1: endpoints stay where they are when their port set still holds them.
    struct Kept {
        slice: Value,
        ports: PortSet,
        endpoints: BTreeMap<String, Value>,
    }
    let mut kept: Vec<Kept> = Vec::new();
    let mut free: Vec<Value> = Vec::new();
    for slice in ours {
        let ports = slice_ports(slice);
        let mut endpoints = BTreeMap::new();
        if let Some(desired) = groups.get_mut(&ports) {
            for ep in slice_endpoints(slice) {
                let key = endpoint_key(&ep);
                if endpoints.len() < MAX_ENDPOINTS_PER_SLICE
                    && let Some(want) = desired.remove(&key)
                {
                    endpoints.insert(key, want);
                }
            }
        }
        if endpoints.is_empty() {
            free.push(slice.clone());
        } else {
            kept.push(Kept {
                slice: slice.clone(),
                ports,
                endpoints,
            });
        }
    }

    // Pass 2: new endpoints fill kept slices of their port set, then reused free slices,
    // then new ones.
    for kept_slice in &mut kept {
        let Some(desired) = groups.get_mut(&kept_slice.ports) else {
            continue;
        };
        while kept_slice.endpoints.len() < MAX_ENDPOINTS_PER_SLICE {
            let Some((key, ep)) = desired.pop_first() else {
                break;
            };
            kept_slice.endpoints.insert(key, ep);
        }
    }
    let mut free = free.into_iter();
    for (ports, mut desired) in groups {
        while !desired.is_empty() {
            let mut chunk = BTreeMap::new();
            while chunk.len() < MAX_ENDPOINTS_PER_SLICE {
                let Some((key, ep)) = desired.pop_first() else {
                    break;
                };
                chunk.insert(key, ep);
            }
            match free.next() {
                Some(mut slice) => {
                    if fill_slice(&mut slice, service, &ports, &chunk, trigger) {
                        plan.update.push(slice);
                    }
                }
                None => {
                    let mut slice = new_slice(service);
                    fill_slice(&mut slice, service, &ports, &chunk, trigger);
                    plan.create.push(slice);
                }
            }
        }
    }
    for mut k in kept {
        if fill_slice(&mut k.slice, service, &k.ports, &k.endpoints, trigger) {
            plan.update.push(k.slice);
        }
    }
    plan.delete.extend(free.map(|s| delete_ref(&s)));
    Some(plan)
}

fn delete_ref(slice: &Value) -> (String, String) {
    (
        str_at(slice, "/metadata/name").to_string(),
        str_at(slice, "/metadata/uid").to_string(),
    )
}

/// The legacy v1 Endpoints of a Service as this controller wants it (subsets, labels,
/// trigger time, truncation), or None when the Service is not managed.
pub fn desired_endpoints(service: &Value, pods: &[&Value]) -> Option<Value> {
    let selector = managed_selector(service)?;
    let ns = str_at(service, "/metadata/namespace");
    let publish = service
        .pointer("/spec/publishNotReadyAddresses")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let has_ports = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    // Port set -> (ready addresses, not-ready addresses), each sorted by IP.
    let mut subsets: BTreeMap<PortSet, (Addresses, Addresses)> = BTreeMap::new();
    let mut included: Vec<&Value> = Vec::new();
    let mut total = 0usize;
    let mut truncated = false;
    let mut sorted: Vec<&Value> = pods.to_vec();
    sorted.sort_by_key(|p| str_at(p, "/metadata/name").to_string());
    for pod in sorted {
        if str_at(pod, "/metadata/namespace") != ns
            || !selects(&selector, pod)
            || !should_be_endpoint(pod, publish)
        {
            continue;
        }
        let Some(ip) = pod_ipv4(pod) else { continue };
        let ports = if has_ports {
            let ports = resolve_ports(service, pod);
            if ports.is_empty() {
                continue;
            }
            ports
        } else if is_headless(service) {
            Vec::new()
        } else {
            continue;
        };
        if total >= MAX_ENDPOINTS {
            truncated = true;
            continue;
        }
        total += 1;
        included.push(pod);
        let mut address = json!({"ip": ip.to_string(), "targetRef": target_ref(pod)});
        let node = str_at(pod, "/spec/nodeName");
        if !node.is_empty() {
            address["nodeName"] = json!(node);
        }
        if let Some(h) = hostname(service, pod) {
            address["hostname"] = json!(h);
        }
        let entry = subsets.entry(ports).or_default();
        if publish || is_ready(pod) {
            entry.0.push((ip, address));
        } else {
            entry.1.push((ip, address));
        }
    }
    let subsets: Vec<Value> = subsets
        .into_iter()
        .map(|(mut ports, (mut ready, mut not_ready))| {
            ports.sort();
            ready.sort_by_key(|(ip, _)| *ip);
            not_ready.sort_by_key(|(ip, _)| *ip);
            let mut subset = json!({});
            if !ready.is_empty() {
                subset["addresses"] = json!(ready.into_iter().map(|(_, a)| a).collect::<Vec<_>>());
            }
            if !not_ready.is_empty() {
                subset["notReadyAddresses"] =
                    json!(not_ready.into_iter().map(|(_, a)| a).collect::<Vec<_>>());
            }
            if !ports.is_empty() {
                subset["ports"] =
                    json!(ports.iter().map(EndpointPort::to_json).collect::<Vec<_>>());
            }
            subset
        })
        .collect();
    let mut labels = string_map(service.pointer("/metadata/labels"));
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.to_string(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    let mut annotations = Map::new();
    if let Some(t) = trigger_time(service, &included) {
        annotations.insert(TRIGGER_TIME_ANNOTATION.to_string(), json!(t));
    }
    if truncated {
        annotations.insert(OVER_CAPACITY_ANNOTATION.to_string(), json!("truncated"));
    }
    let mut endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": str_at(service, "/metadata/name"),
            "namespace": ns,
            "labels": labels,
            "annotations": annotations,
        },
    });
    if !subsets.is_empty() {
        endpoints["subsets"] = json!(subsets);
    }
    Some(endpoints)
}

/// The object to write for the Service's Endpoints given the current one: None when the
/// current one already has the wanted subsets, labels and capacity annotation (a changed
/// trigger time alone is not written, as in Kubernetes).
pub fn endpoints_update(desired: &Value, current: Option<&Value>) -> Option<Value> {
    let Some(current) = current else {
        return Some(desired.clone());
    };
    let subsets = |o: &Value| {
        o.get("subsets")
            .filter(|s| !s.is_null())
            .cloned()
            .unwrap_or(json!([]))
    };
    let labels = |o: &Value| string_map(o.pointer("/metadata/labels"));
    let over = |o: &Value| {
        o.pointer("/metadata/annotations")
            .and_then(|a| a.get(OVER_CAPACITY_ANNOTATION))
            .cloned()
    };
    if subsets(current) == subsets(desired)
        && labels(current) == labels(desired)
        && over(current) == over(desired)
    {
        return None;
    }
    let mut next = current.clone();
    next["metadata"]["labels"] = desired["metadata"]["labels"].clone();
    let mut annotations = current
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    annotations.remove(OVER_CAPACITY_ANNOTATION);
    annotations.remove(TRIGGER_TIME_ANNOTATION);
    if let Some(a) = desired
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        annotations.extend(a.clone());
    }
    next["metadata"]["annotations"] = Value::Object(annotations);
    match desired.get("subsets") {
        Some(s) => next["subsets"] = s.clone(),
        None => {
            if let Some(o) = next.as_object_mut() {
                o.remove("subsets");
            }
        }
    }
    Some(next)
}

#[cfg(test)]
mod tests;
