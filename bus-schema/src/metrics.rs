//! Resource usage samples: what each node agent publishes every few seconds about its
//! node and its pods (CPU and working-set memory, the kubelet's "resource metrics"), and
//! the in-memory table subscribers keep of the latest sample per pod and node.
//!
//! Usage is not desired state: it never goes through the store. Agents publish a
//! [`UsageReport`] on core NATS ([`crate::subjects::metrics_usage`]) in the usual
//! envelope; the gateway (metrics.k8s.io, `kubectl top`) and the HPA controller each
//! follow [`crate::subjects::METRICS_USAGE_ALL`] and keep a [`UsageTable`]. A lost
//! message costs one sample, and the next report replaces it; a node that stops
//! reporting ages out of the table after the staleness limit.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// CPU and memory in use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU in use, millicores.
    pub cpu_millis: u64,
    /// Working-set memory, bytes.
    pub memory_bytes: u64,
}

impl Usage {
    /// The sum of two usages (saturating).
    pub fn plus(self, other: Usage) -> Usage {
        Usage {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
        }
    }
}

/// One container's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerUsage {
    /// Container name in the pod spec.
    pub name: String,
    /// What it uses.
    pub usage: Usage,
}

/// One pod's usage, per container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodUsage {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid` (a pod recreated under the same name is another pod).
    pub uid: String,
    /// The pod's labels as its sandbox recorded them (label selectors of
    /// metrics.k8s.io lists).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Running containers only.
    pub containers: Vec<ContainerUsage>,
}

impl PodUsage {
    /// The pod's total usage (sum of its containers).
    pub fn total(&self) -> Usage {
        self.containers
            .iter()
            .fold(Usage::default(), |acc, c| acc.plus(c.usage))
    }
}

/// What one node agent publishes each interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// The node's name.
    pub node: String,
    /// When the sample was taken, Unix milliseconds (the node's clock).
    pub timestamp_ms: i64,
    /// The window the sample covers, milliseconds (metrics.k8s.io's `window`).
    pub window_ms: u64,
    /// The node's usage.
    pub node_usage: Usage,
    /// Every pod with a running container.
    pub pods: Vec<PodUsage>,
}

/// The latest sample of one pod, as a subscriber keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSample {
    /// The node that reported it.
    pub node: String,
    /// The pod's usage per container.
    pub pod: PodUsage,
    /// When it was taken (Unix ms, the node's clock).
    pub timestamp_ms: i64,
    /// Window it covers (ms).
    pub window_ms: u64,
}

/// The latest sample of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSample {
    /// Node usage.
    pub usage: Usage,
    /// When it was taken (Unix ms, the node's clock).
    pub timestamp_ms: i64,
    /// Window it covers (ms).
    pub window_ms: u64,
}

/// The latest report of every node, with the time each arrived. I/O-free: the caller
/// passes the receive time and "now", so staleness is decided on the subscriber's clock
/// (node clocks may be skewed).
#[derive(Debug, Clone, Default)]
pub struct UsageTable {
    /// node -> (received at, Unix ms; the report).
    nodes: BTreeMap<String, (i64, UsageReport)>,
    /// (namespace, pod name) -> node that last reported the pod.
    pod_nodes: BTreeMap<(String, String), String>,
}

impl UsageTable {
    /// Records `report`, received at `received_ms`; it replaces the node's previous
    /// report. A report older (by its own timestamp) than the one held is ignored, so a
    /// delayed message cannot roll a node back.
    pub fn insert(&mut self, report: UsageReport, received_ms: i64) {
        if let Some((_, held)) = self.nodes.get(&report.node)
            && held.timestamp_ms > report.timestamp_ms
        {
            return;
        }
        if let Some((_, old)) = self.nodes.get(&report.node) {
            for pod in &old.pods {
                let key = (pod.namespace.clone(), pod.name.clone());
                if self.pod_nodes.get(&key) == Some(&report.node) {
                    self.pod_nodes.remove(&key);
                }
            }
        }
        for pod in &report.pods {
            self.pod_nodes.insert(
                (pod.namespace.clone(), pod.name.clone()),
                report.node.clone(),
            );
        }
        self.nodes
            .insert(report.node.clone(), (received_ms, report));
    }

    /// Drops reports received more than `max_age_ms` before `now_ms`.
    pub fn expire(&mut self, now_ms: i64, max_age_ms: i64) {
        let stale: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, (at, _))| now_ms - at > max_age_ms)
            .map(|(n, _)| n.clone())
            .collect();
        for node in stale {
            if let Some((_, report)) = self.nodes.remove(&node) {
                for pod in report.pods {
                    let key = (pod.namespace, pod.name);
                    if self.pod_nodes.get(&key) == Some(&node) {
                        self.pod_nodes.remove(&key);
                    }
                }
            }
        }
    }

    /// The latest sample of one pod, if a fresh report holds it.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<PodSample> {
        let node = self
            .pod_nodes
            .get(&(namespace.to_string(), name.to_string()))?;
        let (_, report) = self.nodes.get(node)?;
        let pod = report
            .pods
            .iter()
            .find(|p| p.namespace == namespace && p.name == name)?;
        Some(PodSample {
            node: node.clone(),
            pod: pod.clone(),
            timestamp_ms: report.timestamp_ms,
            window_ms: report.window_ms,
        })
    }

    /// Every pod sample, optionally of one namespace, ordered by namespace and name.
    pub fn pods(&self, namespace: Option<&str>) -> Vec<PodSample> {
        self.pod_nodes
            .keys()
            .filter(|(ns, _)| namespace.is_none_or(|want| want == ns))
            .filter_map(|(ns, name)| self.pod(ns, name))
            .collect()
    }

    /// The latest sample of one node.
    pub fn node(&self, name: &str) -> Option<NodeSample> {
        let (_, report) = self.nodes.get(name)?;
        Some(NodeSample {
            usage: report.node_usage,
            timestamp_ms: report.timestamp_ms,
            window_ms: report.window_ms,
        })
    }

    /// Every node sample, by name.
    pub fn nodes(&self) -> Vec<(String, NodeSample)> {
        self.nodes
            .keys()
            .filter_map(|n| self.node(n).map(|s| (n.clone(), s)))
            .collect()
    }
}

#[cfg(test)]
mod tests;
