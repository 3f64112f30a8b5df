//! Filters: can this pod run on this node? The checks and their order are
//! kube-scheduler's default filter plugins (NodeUnschedulable, TaintToleration,
//! NodeAffinity, NodeResourcesFit, VolumeBinding's PV node affinity, PodTopologySpread,
//! InterPodAffinity); like the framework, a node's reasons come from the first check
//! that rejects it, and the reasons print exactly as Kubernetes prints them.
//!
//! [`pre_filter`] does the per-pod work once (selectors, cluster-wide counts for
//! affinity and spreading), so [`filter`] per node is a few comparisons.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use bus_schema::selector::LabelSelector;
use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodAffinityTerm, Taint, Toleration,
};

use crate::snapshot::{NodeInfo, PodInfo, Resources, Snapshot, TAINT_UNSCHEDULABLE};

/// Why a node does not fit a pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Not enough of a resource left (`cpu`, `memory`, `nvidia.com/gpu`, ...).
    Insufficient(String),
    /// The node runs as many pods as it allows.
    TooManyPods,
    /// nodeSelector or required node affinity does not match.
    NodeAffinity,
    /// A NoSchedule/NoExecute taint the pod does not tolerate.
    UntoleratedTaint {
        /// Taint key.
        key: String,
        /// Taint value (may be empty).
        value: String,
    },
    /// The node is cordoned.
    Unschedulable,
    /// A pod already there has required anti-affinity against this pod.
    ExistingAntiAffinity,
    /// The pod's required affinity is not met in the node's topology domain.
    PodAffinity,
    /// The pod's required anti-affinity is violated in the node's topology domain.
    PodAntiAffinity,
    /// Placing the pod there would exceed a DoNotSchedule constraint's maxSkew.
    TopologySpread,
    /// The node lacks a topology key of a DoNotSchedule constraint.
    TopologySpreadMissingLabel,
    /// A bound PV's node affinity excludes the node.
    VolumeNodeAffinity,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Insufficient(r) => write!(f, "Insufficient {r}"),
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::NodeAffinity => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Reason::UntoleratedTaint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::ExistingAntiAffinity => {
                f.write_str("node(s) didn't satisfy existing pods anti-affinity rules")
            }
            Reason::PodAffinity => f.write_str("node(s) didn't match pod affinity rules"),
            Reason::PodAntiAffinity => f.write_str("node(s) didn't match pod anti-affinity rules"),
            Reason::TopologySpread => {
                f.write_str("node(s) didn't match pod topology spread constraints")
            }
            Reason::TopologySpreadMissingLabel => f.write_str(
                "node(s) didn't match pod topology spread constraints (missing required label)",
            ),
            Reason::VolumeNodeAffinity => f.write_str("node(s) had volume node affinity conflict"),
        }
    }
}

impl Reason {
    /// Whether evicting pods could remove this reason (Kubernetes' `Unschedulable` as
    /// opposed to `UnschedulableAndUnresolvable`).
    pub fn preemption_may_help(&self) -> bool {
        matches!(
            self,
            Reason::Insufficient(_)
                | Reason::TooManyPods
                | Reason::ExistingAntiAffinity
                | Reason::PodAntiAffinity
                | Reason::TopologySpread
        )
    }
}

/// A pod (anti-)affinity term, compiled.
#[derive(Debug, Clone)]
pub struct Term {
    selector: Option<LabelSelector>,
    /// `None`: every namespace.
    namespaces: Option<BTreeSet<String>>,
    /// The topology key.
    pub topology_key: String,
    /// Weight (preferred terms; 1 for required ones).
    pub weight: i64,
}

impl Term {
    /// Compiles a term of a pod in `namespace`. A term without a label selector, or
    /// with one that does not parse, matches no pod (as in Kubernetes).
    pub fn new(term: &PodAffinityTerm, namespace: &str, weight: i64) -> Term {
        let selector = term
            .label_selector
            .as_ref()
            .and_then(|s| LabelSelector::from_k8s(s).ok());
        let mut namespaces: BTreeSet<String> = term.namespaces.iter().flatten().cloned().collect();
        // An empty namespaceSelector selects every namespace; a non-empty one needs the
        // Namespace objects, which this scheduler does not follow, so it adds nothing.
        let all = term.namespace_selector.as_ref().is_some_and(|s| {
            s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        });
        if namespaces.is_empty() && term.namespace_selector.is_none() {
            namespaces.insert(namespace.to_string());
        }
        Term {
            selector,
            namespaces: if all { None } else { Some(namespaces) },
            topology_key: term.topology_key.clone(),
            weight,
        }
    }

    /// Whether `pod` is one the term selects.
    pub fn matches(&self, pod: &PodInfo) -> bool {
        if let Some(ns) = &self.namespaces
            && !ns.contains(&pod.namespace)
        {
            return false;
        }
        self.selector
            .as_ref()
            .is_some_and(|s| s.matches(&pod.labels))
    }
}

/// Required affinity terms of a pod.
pub fn required_affinity_terms(pod: &PodInfo) -> Vec<Term> {
    pod.affinity
        .as_ref()
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|ts| ts.iter().map(|t| Term::new(t, &pod.namespace, 1)).collect())
        .unwrap_or_default()
}

/// Required anti-affinity terms of a pod.
pub fn required_anti_affinity_terms(pod: &PodInfo) -> Vec<Term> {
    pod.affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|ts| ts.iter().map(|t| Term::new(t, &pod.namespace, 1)).collect())
        .unwrap_or_default()
}

type Pair = (String, String);

/// A DoNotSchedule (or, for scoring, ScheduleAnyway) spread constraint with its counts.
#[derive(Debug, Clone)]
pub struct Spread {
    /// Topology key.
    pub topology_key: String,
    /// maxSkew.
    pub max_skew: i64,
    /// Matching pods per domain (domains of eligible nodes, zeros included).
    pub counts: HashMap<String, i64>,
    /// Smallest count (0 when there are fewer domains than minDomains).
    pub min: i64,
    /// 1 when the pod itself matches the selector.
    pub self_match: i64,
}

/// Computes the domain counts of the pod's spread constraints with the given
/// `whenUnsatisfiable` (eligible nodes: existing, matching the pod's required node
/// affinity, carrying every key of those constraints; terminating pods do not count).
pub fn spread_counts(pod: &PodInfo, snap: &Snapshot, when: &str) -> Vec<Spread> {
    let constraints: Vec<_> = pod
        .spread
        .iter()
        .filter(|c| c.when_unsatisfiable == when)
        .collect();
    if constraints.is_empty() {
        return Vec::new();
    }
    let selectors: Vec<Option<LabelSelector>> = constraints
        .iter()
        .map(|c| {
            c.label_selector
                .as_ref()
                .and_then(|s| LabelSelector::from_k8s(s).ok())
        })
        .collect();
    let mut out: Vec<Spread> = constraints
        .iter()
        .zip(&selectors)
        .map(|(c, s)| Spread {
            topology_key: c.topology_key.clone(),
            max_skew: i64::from(c.max_skew.max(1)),
            counts: HashMap::new(),
            min: 0,
            self_match: i64::from(s.as_ref().is_some_and(|s| s.matches(&pod.labels))),
        })
        .collect();
    for node in snap.all_nodes() {
        if !node.exists
            || !matches_required_node_affinity(pod, node)
            || !constraints
                .iter()
                .all(|c| node.labels.contains_key(&c.topology_key))
        {
            continue;
        }
        for (spread, selector) in out.iter_mut().zip(&selectors) {
            let value = &node.labels[&spread.topology_key];
            let n = node
                .pods
                .values()
                .filter(|p| {
                    !p.terminating
                        && p.namespace == pod.namespace
                        && selector.as_ref().is_some_and(|s| s.matches(&p.labels))
                })
                .count() as i64;
            *spread.counts.entry(value.clone()).or_default() += n;
        }
    }
    for (spread, c) in out.iter_mut().zip(&constraints) {
        spread.min = spread.counts.values().copied().min().unwrap_or(0);
        if let Some(min_domains) = c.min_domains
            && (spread.counts.len() as i64) < i64::from(min_domains)
        {
            spread.min = 0;
        }
    }
    out
}

/// What [`pre_filter`] computed once for a pod.
#[derive(Debug, Clone, Default)]
pub struct PreFilterState {
    affinity_terms: Vec<Term>,
    /// Pods matching all affinity terms, per topology pair of each term.
    affinity_counts: HashMap<Pair, i64>,
    self_matches_affinity: bool,
    anti_terms: Vec<Term>,
    anti_counts: HashMap<Pair, i64>,
    /// Topology pairs where a placed pod's required anti-affinity rejects this pod.
    existing_anti: HashMap<Pair, i64>,
    spread: Vec<Spread>,
    /// Required node affinity of the pod's bound PVs.
    volume_affinity: Vec<NodeSelector>,
}

/// Per-pod work before the node loop. `Err` is a reason that holds for every node
/// (a missing PVC or PV), printed as Kubernetes' PreFilter message.
pub fn pre_filter(pod: &PodInfo, snap: &Snapshot) -> Result<PreFilterState, String> {
    let mut state = PreFilterState::default();
    for claim in &pod.claims {
        let Some(info) = snap.claim(&pod.namespace, claim) else {
            return Err(format!("persistentvolumeclaim \"{claim}\" not found"));
        };
        // Unbound claims are provisioned on the node the pod lands on (local-path,
        // WaitForFirstConsumer), so they fit anywhere.
        if info.volume_name.is_empty() {
            continue;
        }
        match snap.volume_affinity(&info.volume_name) {
            None => {
                return Err(format!(
                    "persistentvolume \"{}\" not found",
                    info.volume_name
                ));
            }
            Some(Some(selector)) => state.volume_affinity.push(selector.clone()),
            Some(None) => {}
        }
    }
    for existing in snap.anti_affinity_pods() {
        let Some(node) = snap.node(&existing.node_name) else {
            continue;
        };
        for term in required_anti_affinity_terms(existing) {
            if term.matches(pod)
                && let Some(value) = node.labels.get(&term.topology_key)
            {
                *state
                    .existing_anti
                    .entry((term.topology_key.clone(), value.clone()))
                    .or_default() += 1;
            }
        }
    }
    state.affinity_terms = required_affinity_terms(pod);
    state.anti_terms = required_anti_affinity_terms(pod);
    state.self_matches_affinity = state.affinity_terms.iter().all(|t| t.matches(pod));
    if !state.affinity_terms.is_empty() || !state.anti_terms.is_empty() {
        for node in snap.all_nodes() {
            for other in node.pods.values() {
                if !state.affinity_terms.is_empty()
                    && state.affinity_terms.iter().all(|t| t.matches(other))
                {
                    for t in &state.affinity_terms {
                        if let Some(v) = node.labels.get(&t.topology_key) {
                            *state
                                .affinity_counts
                                .entry((t.topology_key.clone(), v.clone()))
                                .or_default() += 1;
                        }
                    }
                }
                for t in &state.anti_terms {
                    if t.matches(other)
                        && let Some(v) = node.labels.get(&t.topology_key)
                    {
                        *state
                            .anti_counts
                            .entry((t.topology_key.clone(), v.clone()))
                            .or_default() += 1;
                    }
                }
            }
        }
    }
    state.spread = spread_counts(pod, snap, "DoNotSchedule");
    Ok(state)
}

/// Whether some toleration tolerates the taint.
pub fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| toleration_matches(t, taint))
}

fn toleration_matches(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref()
        && !effect.is_empty()
        && effect != taint.effect
    {
        return false;
    }
    let operator = t.operator.as_deref().unwrap_or("Equal");
    let key = t.key.as_deref().unwrap_or("");
    if key.is_empty() {
        return operator == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match operator {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// Whether a node selector requirement holds for these labels.
pub fn requirement_matches(
    req: &NodeSelectorRequirement,
    labels: &BTreeMap<String, String>,
) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    let label = labels.get(&req.key);
    let number = |s: &str| s.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => label.is_some_and(|l| values.contains(l)),
        "NotIn" => label.is_none_or(|l| !values.contains(l)),
        "Exists" => label.is_some(),
        "DoesNotExist" => label.is_none(),
        "Gt" | "Lt" => {
            let (Some(l), Some(v)) = (
                label.and_then(|l| number(l)),
                values.first().and_then(|v| number(v)),
            ) else {
                return false;
            };
            if req.operator == "Gt" { l > v } else { l < v }
        }
        _ => false,
    }
}

/// Whether a node selector term matches (every expression and field; an empty term
/// matches nothing).
pub fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let name_fields = BTreeMap::from([("metadata.name".to_string(), node.name.clone())]);
    exprs.iter().all(|r| requirement_matches(r, &node.labels))
        && fields.iter().all(|r| requirement_matches(r, &name_fields))
}

/// Whether a node selector (terms ORed) matches.
pub fn node_selector_matches(selector: &NodeSelector, node: &NodeInfo) -> bool {
    selector
        .node_selector_terms
        .iter()
        .any(|t| term_matches(t, node))
}

/// `spec.nodeSelector` and required node affinity.
pub fn matches_required_node_affinity(pod: &PodInfo, node: &NodeInfo) -> bool {
    if !pod
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v))
    {
        return false;
    }
    match pod
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }) {
        Some(required) => node_selector_matches(required, node),
        None => true,
    }
}

/// NodeResourcesFit: every reason the node lacks room, `nominated` counting as used.
pub fn fits_resources(
    pod: &PodInfo,
    node: &NodeInfo,
    nominated: Option<&Resources>,
) -> Vec<Reason> {
    let mut reasons = Vec::new();
    let req = &pod.requests;
    let alloc = &node.allocatable;
    let used = &node.requested;
    let extra = |f: fn(&Resources) -> i64| nominated.map_or(0, f);
    let n_pods = node.pods.len() as i64 + extra(|r| r.pods);
    if n_pods + 1 > alloc.pods {
        reasons.push(Reason::TooManyPods);
    }
    let short = |want: i64, have: i64, taken: i64| want > 0 && want > have - taken;
    if short(
        req.milli_cpu,
        alloc.milli_cpu,
        used.milli_cpu + extra(|r| r.milli_cpu),
    ) {
        reasons.push(Reason::Insufficient("cpu".into()));
    }
    if short(req.memory, alloc.memory, used.memory + extra(|r| r.memory)) {
        reasons.push(Reason::Insufficient("memory".into()));
    }
    if short(
        req.ephemeral_storage,
        alloc.ephemeral_storage,
        used.ephemeral_storage + extra(|r| r.ephemeral_storage),
    ) {
        reasons.push(Reason::Insufficient("ephemeral-storage".into()));
    }
    for (name, want) in &req.scalar {
        let have = alloc.scalar.get(name).copied().unwrap_or(0);
        let taken = used.scalar.get(name).copied().unwrap_or(0)
            + nominated
                .and_then(|r| r.scalar.get(name).copied())
                .unwrap_or(0);
        if short(*want, have, taken) {
            reasons.push(Reason::Insufficient(name.clone()));
        }
    }
    reasons
}

/// Runs every filter for one node, in Kubernetes' plugin order, stopping at the first
/// that rejects it; empty when the pod fits.
pub fn filter(
    pod: &PodInfo,
    state: &PreFilterState,
    node: &NodeInfo,
    nominated: Option<&Resources>,
) -> Vec<Reason> {
    if node.unschedulable {
        let cordon = Taint {
            key: TAINT_UNSCHEDULABLE.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if !tolerates(&pod.tolerations, &cordon) {
            return vec![Reason::Unschedulable];
        }
    }
    if let Some(taint) = node.taints.iter().find(|t| {
        (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerates(&pod.tolerations, t)
    }) {
        return vec![Reason::UntoleratedTaint {
            key: taint.key.clone(),
            value: taint.value.clone().unwrap_or_default(),
        }];
    }
    if !matches_required_node_affinity(pod, node) {
        return vec![Reason::NodeAffinity];
    }
    let reasons = fits_resources(pod, node, nominated);
    if !reasons.is_empty() {
        return reasons;
    }
    if !state
        .volume_affinity
        .iter()
        .all(|s| node_selector_matches(s, node))
    {
        return vec![Reason::VolumeNodeAffinity];
    }
    for spread in &state.spread {
        let Some(value) = node.labels.get(&spread.topology_key) else {
            return vec![Reason::TopologySpreadMissingLabel];
        };
        let count = spread.counts.get(value).copied().unwrap_or(0);
        if count + spread.self_match - spread.min > spread.max_skew {
            return vec![Reason::TopologySpread];
        }
    }
    let count_at = |map: &HashMap<Pair, i64>, key: &str| {
        node.labels
            .get(key)
            .and_then(|v| map.get(&(key.to_string(), v.clone())))
            .copied()
            .unwrap_or(0)
    };
    if state
        .existing_anti
        .iter()
        .any(|((k, v), n)| *n > 0 && node.labels.get(k) == Some(v))
    {
        return vec![Reason::ExistingAntiAffinity];
    }
    if !state.affinity_terms.is_empty() {
        if !state
            .affinity_terms
            .iter()
            .all(|t| node.labels.contains_key(&t.topology_key))
        {
            return vec![Reason::PodAffinity];
        }
        let pods_exist = state
            .affinity_terms
            .iter()
            .all(|t| count_at(&state.affinity_counts, &t.topology_key) > 0);
        // The first pod of a group that is affine to itself may go anywhere.
        let first_of_group = state.affinity_counts.is_empty() && state.self_matches_affinity;
        if !pods_exist && !first_of_group {
            return vec![Reason::PodAffinity];
        }
    }
    if state
        .anti_terms
        .iter()
        .any(|t| count_at(&state.anti_counts, &t.topology_key) > 0)
    {
        return vec![Reason::PodAntiAffinity];
    }
    Vec::new()
}

#[cfg(test)]
mod tests;
