//! The DaemonSet decisions, without I/O: which nodes should run a daemon pod (node
//! selector, required node affinity, taints against the pod's tolerations plus the ones
//! every daemon pod gets), which pods to create and delete, the rolling update under
//! `maxUnavailable`, and the status counts. The rules are kube-controller-manager's
//! (`daemon_controller.go`, `update.go`, `NodeShouldRunDaemonPod`).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration,
};

#[cfg(test)]
mod tests;

/// A node as the decisions see it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeInfo {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<Taint>,
}

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    }
}

/// The tolerations Kubernetes adds to every daemon pod (`AddOrUpdateDaemonPodTolerations`;
/// `network-unavailable` only for host-network pods).
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut t = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        t.push(toleration(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    t
}

/// `tolerations` plus the defaults it lacks (same key and effect).
pub fn with_default_tolerations(tolerations: &[Toleration], host_network: bool) -> Vec<Toleration> {
    let mut out = tolerations.to_vec();
    for d in default_tolerations(host_network) {
        if !out.iter().any(|t| t.key == d.key && t.effect == d.effect) {
            out.push(d);
        }
    }
    out
}

/// Whether `t` tolerates `taint` (Kubernetes' `ToleratesTaint`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !value.is_some_and(|v| values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether `node` matches one node selector term (all its requirements; an empty term
/// matches nothing, as in Kubernetes).
pub fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, node.labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            let value = (r.key == "metadata.name").then_some(node.name.as_str());
            requirement_matches(r, value)
        })
}

/// Whether the pod's nodeSelector and required node affinity admit `node`.
pub fn node_matches(spec: &PodSpec, node: &NodeInfo) -> bool {
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    let affinity_ok = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_none_or(|sel| {
            sel.node_selector_terms
                .iter()
                .any(|t| term_matches(t, node))
        });
    selector_ok && affinity_ok
}

/// Where a daemon pod belongs on `node`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fit {
    /// A pod should be created here.
    pub should_run: bool,
    /// A pod already here may stay (only untolerated NoExecute taints or a selector
    /// mismatch evict it).
    pub should_continue: bool,
}

/// Kubernetes' `NodeShouldRunDaemonPod` for the pod template `spec`.
pub fn fit(spec: &PodSpec, node: &NodeInfo) -> Fit {
    if !node_matches(spec, node) {
        return Fit {
            should_run: false,
            should_continue: false,
        };
    }
    let tolerations = with_default_tolerations(
        spec.tolerations.as_deref().unwrap_or(&[]),
        spec.host_network.unwrap_or(false),
    );
    let untolerated = |effects: &[&str]| {
        node.taints
            .iter()
            .filter(|t| effects.contains(&t.effect.as_str()))
            .any(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
    };
    Fit {
        should_run: !untolerated(&["NoSchedule", "NoExecute"]),
        should_continue: !untolerated(&["NoExecute"]),
    }
}

/// One daemon pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DaemonPod {
    /// Name.
    pub name: String,
    /// The node it is for (nodeName, or its matchFields affinity before binding).
    pub node: String,
    /// Its `controller-revision-hash`.
    pub hash: String,
    /// Has a deletionTimestamp.
    pub terminating: bool,
    /// Phase Failed or Succeeded.
    pub failed: bool,
    /// Running and Ready.
    pub ready: bool,
    /// Ready for minReadySeconds.
    pub available: bool,
    /// Creation order key (creationTimestamp, then name).
    pub created: String,
}

/// How updates roll out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Replace old pods while at most `max_unavailable` nodes lack an available pod.
    RollingUpdate {
        /// Resolved against the desired count.
        max_unavailable: i64,
    },
    /// Replace a pod only when the user deletes it.
    OnDelete,
}

/// The steps of one reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Nodes to create a pod for.
    pub create: Vec<String>,
    /// Pods to delete, by name.
    pub delete: Vec<String>,
}

/// Decides creates and deletes; `nodes` by name with their fit.
pub fn plan(
    nodes: &BTreeMap<String, Fit>,
    pods: &[DaemonPod],
    update_hash: &str,
    strategy: Strategy,
) -> Plan {
    let mut p = Plan::default();
    let mut by_node: BTreeMap<&str, Vec<&DaemonPod>> = BTreeMap::new();
    for pod in pods {
        by_node.entry(pod.node.as_str()).or_default().push(pod);
    }
    for list in by_node.values_mut() {
        list.sort_by(|a, b| {
            (a.created.as_str(), a.name.as_str()).cmp(&(b.created.as_str(), b.name.as_str()))
        });
    }
    // Pods of nodes that no longer exist.
    for (node, list) in &by_node {
        if !nodes.contains_key(*node) {
            p.delete.extend(
                list.iter()
                    .filter(|d| !d.terminating)
                    .map(|d| d.name.clone()),
            );
        }
    }
    let mut unavailable = 0;
    let mut old_available: Vec<&DaemonPod> = Vec::new();
    for (node, fit) in nodes {
        let list = by_node.get(node.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let live: Vec<&DaemonPod> = list.iter().copied().filter(|d| !d.terminating).collect();
        if !fit.should_continue {
            p.delete.extend(live.iter().map(|d| d.name.clone()));
            continue;
        }
        if !fit.should_run {
            // May keep what runs here, gets nothing new.
            continue;
        }
        let (failed, running): (Vec<&DaemonPod>, Vec<&DaemonPod>) =
            live.iter().partition(|d| d.failed);
        p.delete.extend(failed.iter().map(|d| d.name.clone()));
        if running.is_empty() {
            unavailable += 1;
            // A pod still terminating here is waited for: never two at once.
            if failed.is_empty() && list.iter().all(|d| !d.terminating) {
                p.create.push(node.clone());
            }
            continue;
        }
        // More than one: keep the oldest at the update revision, else the oldest.
        let keep = running
            .iter()
            .find(|d| d.hash == update_hash)
            .unwrap_or(&running[0]);
        p.delete.extend(
            running
                .iter()
                .filter(|d| d.name != keep.name)
                .map(|d| d.name.clone()),
        );
        if !keep.available {
            unavailable += 1;
        }
        if keep.hash != update_hash {
            if keep.available {
                old_available.push(keep);
            } else if matches!(strategy, Strategy::RollingUpdate { .. }) {
                // An old pod that is not available costs nothing to replace.
                p.delete.push(keep.name.clone());
            }
        }
    }
    if let Strategy::RollingUpdate { max_unavailable } = strategy {
        let budget = (max_unavailable.max(1) - unavailable).max(0) as usize;
        p.delete
            .extend(old_available.iter().take(budget).map(|d| d.name.clone()));
    }
    let mut seen = BTreeSet::new();
    p.delete.retain(|n| seen.insert(n.clone()));
    p
}

/// The status counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Nodes that should run the pod.
    pub desired: i64,
    /// Of those, nodes running it.
    pub current: i64,
    /// Nodes running it that should not.
    pub misscheduled: i64,
    /// Ready pods on desired nodes.
    pub ready: i64,
    /// Of those at the update revision.
    pub updated: i64,
    /// Available pods on desired nodes.
    pub available: i64,
    /// desired - available.
    pub unavailable: i64,
}

/// Status counts for `nodes` and `pods`.
pub fn counts(nodes: &BTreeMap<String, Fit>, pods: &[DaemonPod], update_hash: &str) -> Counts {
    let mut c = Counts::default();
    for (node, fit) in nodes {
        let live: Vec<&DaemonPod> = pods
            .iter()
            .filter(|d| &d.node == node && !d.terminating && !d.failed)
            .collect();
        if fit.should_run {
            c.desired += 1;
            if !live.is_empty() {
                c.current += 1;
            }
            c.ready += i64::from(live.iter().any(|d| d.ready));
            c.available += i64::from(live.iter().any(|d| d.available));
            c.updated += i64::from(live.iter().any(|d| d.hash == update_hash));
        } else if !live.is_empty() {
            c.misscheduled += 1;
        }
    }
    c.unavailable = (c.desired - c.available).max(0);
    c
}

/// `maxUnavailable` (an int or a percentage, rounded up as Kubernetes does for
/// DaemonSets) resolved against `desired`; None when malformed.
pub fn resolve_max_unavailable(value: Option<&serde_json::Value>, desired: i64) -> Option<i64> {
    match value {
        None => Some(1),
        Some(serde_json::Value::Number(n)) => n.as_i64().filter(|n| *n >= 0),
        Some(serde_json::Value::String(s)) => {
            let pct: i64 = s.strip_suffix('%')?.parse().ok().filter(|p| *p >= 0)?;
            Some((pct * desired + 99) / 100)
        }
        _ => None,
    }
}
