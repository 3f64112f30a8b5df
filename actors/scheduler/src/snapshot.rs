//! The scheduler's view of the cluster: per node what it offers (allocatable), what the
//! pods on it request (bound pods and pods *assumed* there by a bind still in flight),
//! its labels, taints and schedulability; per pod what filters and scores need (labels,
//! priority, requests, affinity). Built from one list+watch and updated incrementally,
//! never re-listed per pod.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bus_schema::validation::parse_quantity;
use k8s_openapi::api::core::v1::{
    Affinity, Container, Node, NodeSelector, PersistentVolume, PersistentVolumeClaim, Pod, Taint,
    Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Deserialize;
use serde_json::Value;

/// CPU the scorer assumes for a container without a cpu request (kube-scheduler: 100m).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory the scorer assumes for a container without a memory request (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;
/// Taint a NotReady node is treated as carrying (node lifecycle controller semantics).
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint a cordoned (`spec.unschedulable`) node is treated as carrying.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// `namespace/name` of a pod.
pub type PodKey = String;

/// The key of a pod object.
pub fn pod_key(namespace: &str, name: &str) -> PodKey {
    format!("{namespace}/{name}")
}

/// Amounts of resources: cpu in millicores, the rest in whole units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// Pods (only meaningful for a node's allocatable).
    pub pods: i64,
    /// Extended resources (`nvidia.com/gpu`, `hugepages-2Mi`, ...), in whole units.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Reads a `ResourceList` (requests, overhead, allocatable).
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list.into_iter().flatten() {
            let Ok(q) = parse_quantity(&q.0) else {
                continue;
            };
            let clamp = |v: i128| v.clamp(0, i64::MAX as i128) as i64;
            match name.as_str() {
                "cpu" => r.milli_cpu = clamp(q.milli_value()),
                "memory" => r.memory = clamp(q.value()),
                "ephemeral-storage" => r.ephemeral_storage = clamp(q.value()),
                "pods" => r.pods = clamp(q.value()),
                other if is_scalar(other) => {
                    r.scalar.insert(other.to_string(), clamp(q.value()));
                }
                _ => {}
            }
        }
        r
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        self.pods = self.pods.saturating_add(other.pods);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = e.saturating_add(*v);
        }
    }

    /// Subtracts `other` from `self`.
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.pods -= other.pods;
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e -= *v;
            if *e == 0 {
                self.scalar.remove(k);
            }
        }
    }

    /// Raises every amount of `self` to at least the one in `other`.
    pub fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.pods = self.pods.max(other.pods);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
}

/// Extended resources are the ones with a domain prefix outside kubernetes.io, plus
/// hugepages; kube-scheduler checks them like cpu and memory.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-")
        || (name.contains('/') && !name.starts_with("kubernetes.io/"))
        || name.starts_with("requests.")
}

/// What a pod asks a node for, as Kubernetes computes it: the larger of the sum over
/// regular containers (plus sidecars, which keep running) and the peak any init
/// container needs while it runs (with the sidecars started before it), plus
/// `spec.overhead`. Also returns the cpu and memory the scorer uses, where a container
/// without a request counts [`DEFAULT_MILLI_CPU_REQUEST`] / [`DEFAULT_MEMORY_REQUEST`].
pub fn pod_requests(spec: &k8s_openapi::api::core::v1::PodSpec) -> (Resources, (i64, i64)) {
    fn req(c: &Container) -> Resources {
        Resources::from_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
    }
    fn non_zero(r: &Resources, c: &Container) -> (i64, i64) {
        let has = |k: &str| {
            c.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .is_some_and(|m| m.contains_key(k))
        };
        (
            if has("cpu") {
                r.milli_cpu
            } else {
                DEFAULT_MILLI_CPU_REQUEST
            },
            if has("memory") {
                r.memory
            } else {
                DEFAULT_MEMORY_REQUEST
            },
        )
    }
    let mut sum = Resources::default();
    let mut nz = (0i64, 0i64);
    for c in &spec.containers {
        let r = req(c);
        let n = non_zero(&r, c);
        nz = (nz.0 + n.0, nz.1 + n.1);
        sum.add(&r);
    }
    let mut sidecars = Resources::default();
    let mut sidecars_nz = (0i64, 0i64);
    let mut init_peak = Resources::default();
    let mut init_peak_nz = (0i64, 0i64);
    for c in spec.init_containers.iter().flatten() {
        let r = req(c);
        let n = non_zero(&r, c);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            sidecars_nz = (sidecars_nz.0 + n.0, sidecars_nz.1 + n.1);
            init_peak.max_with(&sidecars);
            init_peak_nz = (
                init_peak_nz.0.max(sidecars_nz.0),
                init_peak_nz.1.max(sidecars_nz.1),
            );
        } else {
            let mut during = r.clone();
            during.add(&sidecars);
            init_peak.max_with(&during);
            init_peak_nz = (
                init_peak_nz.0.max(n.0 + sidecars_nz.0),
                init_peak_nz.1.max(n.1 + sidecars_nz.1),
            );
        }
    }
    sum.add(&sidecars);
    nz = (nz.0 + sidecars_nz.0, nz.1 + sidecars_nz.1);
    sum.max_with(&init_peak);
    nz = (nz.0.max(init_peak_nz.0), nz.1.max(init_peak_nz.1));
    let overhead = Resources::from_list(spec.overhead.as_ref());
    sum.add(&overhead);
    nz = (nz.0 + overhead.milli_cpu, nz.1 + overhead.memory);
    sum.pods = 1;
    (sum, nz)
}

/// What filters and scores need from a pod (kept small: a snapshot holds every pod).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// uid (the bind's and preemption's precondition).
    pub uid: String,
    /// Labels (affinity and spread selectors match these).
    pub labels: BTreeMap<String, String>,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
    /// `spec.preemptionPolicy` is `Never`.
    pub never_preempt: bool,
    /// What the pod requests (see [`pod_requests`]); `pods` is 1.
    pub requests: Resources,
    /// cpu and memory the scorer counts for it.
    pub non_zero: (i64, i64),
    /// `spec.nodeName` (empty when unbound).
    pub node_name: String,
    /// `status.nominatedNodeName` (preemption made room there).
    pub nominated_node: String,
    /// It has a deletionTimestamp.
    pub terminating: bool,
    /// `spec.terminationGracePeriodSeconds` (victims are deleted with it).
    pub grace_seconds: Option<i64>,
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// `spec.affinity`.
    pub affinity: Option<Affinity>,
    /// `spec.tolerations`.
    pub tolerations: Vec<Toleration>,
    /// `spec.topologySpreadConstraints`.
    pub spread: Vec<TopologySpreadConstraint>,
    /// Claim names of the pod's PVC volumes.
    pub claims: Vec<String>,
    /// `spec.schedulerName` (empty when unset).
    pub scheduler_name: String,
    /// `spec.schedulingGates` is non-empty.
    pub gated: bool,
    /// `status.phase` is Succeeded or Failed.
    pub finished: bool,
    /// resourceVersion of the object this was read from.
    pub resource_version: String,
}

impl PodInfo {
    /// Reads a pod object; `None` when it is not a pod.
    pub fn from_value(obj: &Value) -> Option<PodInfo> {
        let pod = Pod::deserialize(obj).ok()?;
        Some(PodInfo::from_pod(&pod))
    }

    /// Reads a typed pod.
    pub fn from_pod(pod: &Pod) -> PodInfo {
        let meta = &pod.metadata;
        let spec = pod.spec.clone().unwrap_or_default();
        let (requests, non_zero) = pod_requests(&spec);
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
        PodInfo {
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            priority: spec.priority.unwrap_or(0),
            never_preempt: spec.preemption_policy.as_deref() == Some("Never"),
            requests,
            non_zero,
            node_name: spec.node_name.clone().unwrap_or_default(),
            nominated_node: status
                .and_then(|s| s.nominated_node_name.clone())
                .unwrap_or_default(),
            terminating: meta.deletion_timestamp.is_some(),
            grace_seconds: spec.termination_grace_period_seconds,
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            affinity: spec.affinity.clone(),
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            spread: spec.topology_spread_constraints.clone().unwrap_or_default(),
            claims: spec
                .volumes
                .iter()
                .flatten()
                .filter_map(|v| v.persistent_volume_claim.as_ref())
                .map(|c| c.claim_name.clone())
                .collect(),
            scheduler_name: spec.scheduler_name.clone().unwrap_or_default(),
            gated: spec
                .scheduling_gates
                .as_ref()
                .is_some_and(|g| !g.is_empty()),
            finished: matches!(phase, "Succeeded" | "Failed"),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> PodKey {
        pod_key(&self.namespace, &self.name)
    }

    /// Whether it has required pod anti-affinity terms (others must check them).
    pub fn has_required_anti_affinity(&self) -> bool {
        self.affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_some_and(|t| !t.is_empty())
    }

    /// Whether it has preferred (anti-)affinity terms, or required affinity terms, that
    /// the inter-pod affinity score of *other* pods reads.
    pub fn has_affinity_for_scoring(&self) -> bool {
        let Some(a) = &self.affinity else {
            return false;
        };
        a.pod_affinity.is_some() || a.pod_anti_affinity.is_some()
    }
}

/// What filters and scores need from a node.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// Name.
    pub name: String,
    /// The Node object exists (pods may name a node the cache has not seen yet).
    pub exists: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Taints, plus the implied not-ready taint of a NotReady node.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// `status.allocatable`.
    pub allocatable: Resources,
    /// Sum of the requests of the pods on it (bound and assumed).
    pub requested: Resources,
    /// Sum of the scorer's cpu and memory of the pods on it.
    pub non_zero_requested: (i64, i64),
    /// The pods on it, by key.
    pub pods: BTreeMap<PodKey, Arc<PodInfo>>,
}

impl NodeInfo {
    /// Reads a node object; `None` when it is not a node.
    pub fn from_value(obj: &Value) -> Option<NodeInfo> {
        let node = Node::deserialize(obj).ok()?;
        let spec = node.spec.unwrap_or_default();
        let status = node.status.unwrap_or_default();
        let mut taints = spec.taints.unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .is_some_and(|c| c.status == "True");
        if !ready && !taints.iter().any(|t| t.key == TAINT_NOT_READY) {
            taints.push(Taint {
                key: TAINT_NOT_READY.into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            });
        }
        Some(NodeInfo {
            name: node.metadata.name.unwrap_or_default(),
            exists: true,
            labels: node.metadata.labels.unwrap_or_default(),
            taints,
            unschedulable: spec.unschedulable.unwrap_or(false),
            allocatable: Resources::from_list(status.allocatable.as_ref()),
            ..Default::default()
        })
    }

    fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.0 += pod.non_zero.0;
        self.non_zero_requested.1 += pod.non_zero.1;
        if let Some(old) = self.pods.insert(pod.key(), pod) {
            self.take_out(&old);
        }
    }

    fn remove_pod(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let old = self.pods.remove(key)?;
        self.take_out(&old);
        Some(old)
    }

    fn take_out(&mut self, pod: &PodInfo) {
        self.requested.sub(&pod.requests);
        self.non_zero_requested.0 -= pod.non_zero.0;
        self.non_zero_requested.1 -= pod.non_zero.1;
    }
}

/// A PVC as the volume filter needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimInfo {
    /// `spec.volumeName` (empty while unbound).
    pub volume_name: String,
}

/// The cluster as the scheduler sees it.
#[derive(Debug, Default)]
pub struct Snapshot {
    nodes: BTreeMap<String, NodeInfo>,
    /// Names of the nodes that exist, in name order (the order nodes are tried in).
    order: Vec<String>,
    /// Every pod on a node (bound or assumed), to find its node by key.
    placed: HashMap<PodKey, String>,
    /// Pods with required anti-affinity terms: every pod must be checked against them.
    anti_affinity_pods: BTreeSet<PodKey>,
    /// Pods with any pod (anti-)affinity: the affinity score reads them.
    affinity_pods: BTreeSet<PodKey>,
    /// Pods preemption made room for: key -> (node, priority, requests).
    nominated: HashMap<PodKey, (String, i32, Resources)>,
    claims: HashMap<(String, String), ClaimInfo>,
    /// PV name -> its required node affinity (`None`: fits anywhere).
    volumes: HashMap<String, Option<NodeSelector>>,
}

impl Snapshot {
    /// Adds or replaces a node; keeps the pods already placed on it.
    pub fn upsert_node(&mut self, node: NodeInfo) {
        if let Err(at) = self.order.binary_search(&node.name) {
            self.order.insert(at, node.name.clone());
        }
        let entry = self.nodes.entry(node.name.clone()).or_default();
        let pods = std::mem::take(&mut entry.pods);
        let requested = std::mem::take(&mut entry.requested);
        let nz = entry.non_zero_requested;
        *entry = NodeInfo {
            pods,
            requested,
            non_zero_requested: nz,
            ..node
        };
    }

    /// Removes a node; pods still placed on it stay counted until they go.
    pub fn remove_node(&mut self, name: &str) {
        if let Ok(at) = self.order.binary_search_by(|n| n.as_str().cmp(name)) {
            self.order.remove(at);
        }
        if let Some(n) = self.nodes.get_mut(name) {
            if n.pods.is_empty() {
                self.nodes.remove(name);
            } else {
                n.exists = false;
            }
        }
    }

    /// Places a pod on `pod.node_name` (bound, or assumed by a bind in flight), or
    /// moves it there; a pod without a node or a finished one is removed instead.
    pub fn place_pod(&mut self, pod: PodInfo) {
        let key = pod.key();
        if pod.node_name.is_empty() || pod.finished {
            self.remove_pod(&key);
            self.set_nominated(&pod);
            return;
        }
        self.nominated.remove(&key);
        if let Some(prev) = self.placed.get(&key).cloned()
            && prev != pod.node_name
        {
            self.remove_pod(&key);
        }
        if pod.has_required_anti_affinity() {
            self.anti_affinity_pods.insert(key.clone());
        } else {
            self.anti_affinity_pods.remove(&key);
        }
        if pod.has_affinity_for_scoring() {
            self.affinity_pods.insert(key.clone());
        } else {
            self.affinity_pods.remove(&key);
        }
        self.placed.insert(key, pod.node_name.clone());
        let node = self
            .nodes
            .entry(pod.node_name.clone())
            .or_insert_with(|| NodeInfo {
                name: pod.node_name.clone(),
                ..Default::default()
            });
        node.add_pod(Arc::new(pod));
    }

    /// Records (or clears) the nominated node of an unbound pod.
    pub fn set_nominated(&mut self, pod: &PodInfo) {
        let key = pod.key();
        if pod.nominated_node.is_empty() || !pod.node_name.is_empty() || pod.terminating {
            self.nominated.remove(&key);
        } else {
            self.nominated.insert(
                key,
                (
                    pod.nominated_node.clone(),
                    pod.priority,
                    pod.requests.clone(),
                ),
            );
        }
    }

    /// Removes a pod from its node; returns what was placed.
    pub fn remove_pod(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        self.nominated.remove(key);
        let node = self.placed.remove(key)?;
        self.anti_affinity_pods.remove(key);
        self.affinity_pods.remove(key);
        let info = self.nodes.get_mut(&node)?;
        let old = info.remove_pod(key);
        if !info.exists && info.pods.is_empty() {
            self.nodes.remove(&node);
        }
        old
    }

    /// The node a pod is placed on.
    pub fn node_of(&self, key: &str) -> Option<&str> {
        self.placed.get(key).map(String::as_str)
    }

    /// A pod placed on some node.
    pub fn placed_pod(&self, key: &str) -> Option<&Arc<PodInfo>> {
        let node = self.placed.get(key)?;
        self.nodes.get(node)?.pods.get(key)
    }

    /// One node (existing or not).
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name)
    }

    /// Nodes that exist, in name order.
    pub fn node_names(&self) -> &[String] {
        &self.order
    }

    /// Every node the cache holds, existing or not (with pods placed on it).
    pub fn all_nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values()
    }

    /// Number of nodes that exist.
    pub fn n_nodes(&self) -> usize {
        self.node_names().len()
    }

    /// Placed pods with required anti-affinity terms.
    pub fn anti_affinity_pods(&self) -> impl Iterator<Item = &Arc<PodInfo>> {
        self.anti_affinity_pods
            .iter()
            .filter_map(|k| self.placed_pod(k))
    }

    /// Placed pods with pod (anti-)affinity of any kind.
    pub fn affinity_pods(&self) -> impl Iterator<Item = &Arc<PodInfo>> {
        self.affinity_pods.iter().filter_map(|k| self.placed_pod(k))
    }

    /// Every placed pod.
    pub fn pods(&self) -> impl Iterator<Item = &Arc<PodInfo>> {
        self.nodes.values().flat_map(|n| n.pods.values())
    }

    /// Requests of pods nominated to `node` with at least `priority`, other than `except`:
    /// the room preemption made for them is not given to lower-priority pods.
    pub fn nominated_on(&self, node: &str, priority: i32, except: &str) -> Option<Resources> {
        let mut sum: Option<Resources> = None;
        for (key, (n, p, r)) in &self.nominated {
            if n == node && *p >= priority && key != except {
                sum.get_or_insert_with(Resources::default).add(r);
            }
        }
        sum
    }

    /// Adds or replaces a PVC.
    pub fn upsert_claim(&mut self, obj: &Value) {
        let Ok(pvc) = PersistentVolumeClaim::deserialize(obj) else {
            return;
        };
        let ns = pvc.metadata.namespace.unwrap_or_default();
        let name = pvc.metadata.name.unwrap_or_default();
        let volume_name = pvc.spec.and_then(|s| s.volume_name).unwrap_or_default();
        self.claims.insert((ns, name), ClaimInfo { volume_name });
    }

    /// Removes a PVC.
    pub fn remove_claim(&mut self, namespace: &str, name: &str) {
        self.claims
            .remove(&(namespace.to_string(), name.to_string()));
    }

    /// A PVC.
    pub fn claim(&self, namespace: &str, name: &str) -> Option<&ClaimInfo> {
        self.claims.get(&(namespace.to_string(), name.to_string()))
    }

    /// Adds or replaces a PV.
    pub fn upsert_volume(&mut self, obj: &Value) {
        let Ok(pv) = PersistentVolume::deserialize(obj) else {
            return;
        };
        let name = pv.metadata.name.unwrap_or_default();
        let required = pv
            .spec
            .and_then(|s| s.node_affinity)
            .and_then(|a| a.required);
        self.volumes.insert(name, required);
    }

    /// Removes a PV.
    pub fn remove_volume(&mut self, name: &str) {
        self.volumes.remove(name);
    }

    /// A PV's required node affinity: `None` when the PV is unknown, `Some(None)` when
    /// it fits anywhere.
    pub fn volume_affinity(&self, name: &str) -> Option<Option<&NodeSelector>> {
        self.volumes.get(name).map(Option::as_ref)
    }
}

#[cfg(test)]
mod tests;
