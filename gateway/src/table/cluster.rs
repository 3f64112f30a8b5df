//! Tables of cluster-level kinds: Node, Namespace, Event, Lease and PriorityClass.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use super::fields::{
    age, arr_at, bool_at, int_at, name, obj_at, opt_int, opt_str, since, str_at, str_or, time_at,
};
use super::{AGE, Column, NAME, NAME_DESCRIPTION};

pub(super) const NODE_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Status", "The status of the node"),
    Column::string("Roles", "The roles of the node"),
    AGE,
    Column::string("Version", "Kubelet Version reported by the node."),
    Column::string("Internal-IP", "The node's first InternalIP address.").wide(),
    Column::string("External-IP", "The node's first ExternalIP address.").wide(),
    Column::string(
        "OS-Image",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    )
    .wide(),
    Column::string(
        "Kernel-Version",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    )
    .wide(),
    Column::string(
        "Container-Runtime",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    )
    .wide(),
];

/// Label prefix whose suffix names a node role (`node-role.kubernetes.io/control-plane`).
const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";

/// Older label whose value names a node role.
const NODE_ROLE_LABEL: &str = "kubernetes.io/role";

pub(super) fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    // Only the Ready condition makes the STATUS; the last one listed wins, as in Kubernetes.
    let ready = arr_at(node, "/status/conditions")
        .iter()
        .rfind(|c| str_at(c, "/type") == "Ready");
    let mut status = vec![match ready {
        Some(c) if str_at(c, "/status") == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if bool_at(node, "/spec/unschedulable") {
        status.push("SchedulingDisabled");
    }
    let info = |field: &str| str_or(node, &format!("/status/nodeInfo/{field}"), "<unknown>");
    vec![
        name(node).into(),
        status.join(",").into(),
        node_roles(node).into(),
        age(node, now).into(),
        str_at(node, "/status/nodeInfo/kubeletVersion").into(),
        node_address(node, "InternalIP").into(),
        node_address(node, "ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ]
}

/// Roles from `node-role.kubernetes.io/<role>` and `kubernetes.io/role=<role>` labels,
/// sorted and comma-joined, `<none>` without any.
fn node_roles(node: &Value) -> String {
    let mut roles = BTreeSet::new();
    for (key, value) in obj_at(node, "/metadata/labels").into_iter().flatten() {
        let role = match key.strip_prefix(NODE_ROLE_PREFIX) {
            Some(role) => role,
            None if key == NODE_ROLE_LABEL => value.as_str().unwrap_or(""),
            None => continue,
        };
        if !role.is_empty() {
            roles.insert(role);
        }
    }
    if roles.is_empty() {
        return "<none>".to_string();
    }
    roles.into_iter().collect::<Vec<_>>().join(",")
}

/// The first address of `address_type`, `<none>` without one.
fn node_address<'a>(node: &'a Value, address_type: &str) -> &'a str {
    arr_at(node, "/status/addresses")
        .iter()
        .find(|a| str_at(a, "/type") == address_type)
        .map_or("<none>", |a| str_at(a, "/address"))
}

pub(super) const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Status", "The status of the namespace"),
    AGE,
];

/// `status.phase` when unset: the API server sets it on create.
const DEFAULT_NAMESPACE_PHASE: &str = "Active";

pub(super) fn namespace_cells(namespace: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(namespace).into(),
        str_or(namespace, "/status/phase", DEFAULT_NAMESPACE_PHASE).into(),
        age(namespace, now).into(),
    ]
}

pub(super) const EVENT_COLUMNS: &[Column] = &[
    Column::string(
        "Last Seen",
        "The time at which the most recent occurrence of this event was recorded.",
    ),
    Column::string(
        "Type",
        "Type of this event (Normal, Warning), new types could be added in the future",
    ),
    Column::string(
        "Reason",
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    Column::string("Object", "The object that this event is about."),
    Column::string(
        "Subobject",
        "The part of the object the event is about, e.g. the container of a pod.",
    )
    .wide(),
    Column::string("Source", "The component reporting this event.").wide(),
    Column::string(
        "Message",
        "A human-readable description of the status of this operation.",
    ),
    Column::string(
        "First Seen",
        "The time at which the event was first recorded.",
    )
    .wide(),
    Column::string("Count", "The number of times this event has occurred.").wide(),
    Column {
        format: "name",
        ..Column::string("Name", NAME_DESCRIPTION)
    }
    .wide(),
];

pub(super) fn event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    let first_seen = match time_at(event, "/firstTimestamp") {
        Some(first) => since(Some(first), now),
        None => since(time_at(event, "/eventTime"), now),
    };
    let mut last_seen = match time_at(event, "/lastTimestamp") {
        Some(last) => since(Some(last), now),
        None => first_seen.clone(),
    };
    let mut count = int_at(event, "/count");
    if obj_at(event, "/series").is_some() {
        last_seen = since(time_at(event, "/series/lastObservedTime"), now);
        count = int_at(event, "/series/count");
    } else if count == 0 {
        // Events of the new API that happened once carry no count.
        count = 1;
    }
    let kind = str_at(event, "/involvedObject/kind").to_lowercase();
    let object = match str_at(event, "/involvedObject/name") {
        "" => kind,
        involved => format!("{kind}/{involved}"),
    };
    vec![
        last_seen.into(),
        str_at(event, "/type").into(),
        str_at(event, "/reason").into(),
        object.into(),
        str_at(event, "/involvedObject/fieldPath").into(),
        event_source(event).into(),
        str_at(event, "/message").trim().into(),
        first_seen.into(),
        count.into(),
        name(event).into(),
    ]
}

/// `component, host`, falling back to the new API's reporting controller and instance.
fn event_source(event: &Value) -> String {
    let component = str_or(
        event,
        "/source/component",
        str_at(event, "/reportingComponent"),
    );
    let instance = str_or(event, "/source/host", str_at(event, "/reportingInstance"));
    if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    }
}

pub(super) const LEASE_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Holder", "The identity of the holder of the current lease."),
    AGE,
];

pub(super) fn lease_cells(lease: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(lease).into(),
        str_at(lease, "/spec/holderIdentity").into(),
        age(lease, now).into(),
    ]
}

pub(super) const PRIORITY_CLASS_COLUMNS: &[Column] = &[
    NAME,
    Column::integer(
        "Value",
        "The integer value of this priority class: the priority pods receive when they have the name of this class in their pod spec.",
    ),
    Column::boolean(
        "Global-Default",
        "Whether this priority class is used for pods that name no priority class.",
    ),
    AGE,
    Column::string(
        "PreemptionPolicy",
        "The policy for preempting pods with lower priority: Never or PreemptLowerPriority.",
    ),
];

pub(super) fn priority_class_cells(class: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(class).into(),
        opt_int(class, "/value").unwrap_or(0).into(),
        bool_at(class, "/globalDefault").into(),
        age(class, now).into(),
        opt_str(class, "/preemptionPolicy").unwrap_or("").into(),
    ]
}
