//! Many hollow node agents in one process (`drover sim`): each gets its own
//! [`HollowRuntime`] (seeded from the fleet seed and its index, so a fleet replays the
//! same failures) and a full [`NodeAgent`] against the real store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use drover_store::Store;
use futures::{StreamExt, TryStreamExt};

use crate::agent::{self, AgentConfig, AgentError, NodeAgent};
use crate::hollow::{HollowConfig, HollowRuntime};
use crate::node::{Capacity, DEFAULT_MAX_PODS};

/// Label every hollow node carries, so tests and tools can tell them apart.
pub const HOLLOW_NODE_LABEL: &str = "drover.dev/hollow";

/// Agents of a fleet registering at the same time.
pub const REGISTRATIONS_IN_FLIGHT: usize = 4;

/// Settings of a hollow fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Node names are `<prefix><index, 4 digits>`.
    pub name_prefix: String,
    /// Behaviour of each node's runtime.
    pub hollow: HollowConfig,
    /// Seed of the fleet; node `i` uses `seed + i`.
    pub seed: u64,
    /// What each hollow node reports.
    pub capacity: Capacity,
    /// Zones assigned round-robin (none when empty).
    pub zones: Vec<String>,
    /// Cluster CIDR the nodes' pod CIDRs are carved from.
    pub cluster_cidr: String,
    /// Lease renewal period of each node.
    pub lease_renew_interval: Duration,
    /// Node condition heartbeat period of each node.
    pub node_status_interval: Duration,
    /// First restart delay of an exited container.
    pub restart_backoff_base: Duration,
    /// Longest restart delay.
    pub restart_backoff_max: Duration,
    /// Usage publishing period of each node ([`crate::metrics`]).
    pub metrics_interval: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            name_prefix: "hollow-".into(),
            hollow: HollowConfig::default(),
            seed: 0,
            capacity: Capacity {
                cpu_millis: 4000,
                memory_bytes: 16 * 1024 * 1024 * 1024,
                ephemeral_storage_bytes: 100 * 1024 * 1024 * 1024,
                pods: DEFAULT_MAX_PODS,
            },
            zones: Vec::new(),
            cluster_cidr: crate::cidr::DEFAULT_CLUSTER_CIDR.into(),
            lease_renew_interval: agent::DEFAULT_LEASE_RENEW_INTERVAL,
            node_status_interval: agent::DEFAULT_NODE_STATUS_INTERVAL,
            restart_backoff_base: crate::node::DEFAULT_RESTART_BACKOFF_BASE,
            restart_backoff_max: crate::node::DEFAULT_RESTART_BACKOFF_MAX,
            metrics_interval: crate::metrics::DEFAULT_METRICS_INTERVAL,
        }
    }
}

/// A running fleet; dropping it stops every agent.
pub struct HollowFleet {
    /// The agents, by index.
    pub agents: Vec<NodeAgent>,
    /// Each agent's runtime (to inspect sandboxes and containers in tests).
    pub runtimes: Vec<Arc<HollowRuntime>>,
}

impl HollowFleet {
    /// Stops every agent.
    pub async fn stop(self) {
        for a in self.agents {
            a.stop().await;
        }
    }
}

/// The agent config of hollow node `idx`.
pub fn node_config(config: &FleetConfig, idx: usize) -> AgentConfig {
    let name = format!("{}{idx:04}", config.name_prefix);
    let mut agent = AgentConfig::new(&name);
    agent.capacity = Some(config.capacity);
    agent.cluster_cidr = config.cluster_cidr.clone();
    agent.lease_renew_interval = config.lease_renew_interval;
    agent.node_status_interval = config.node_status_interval;
    agent.restart_backoff_base = config.restart_backoff_base;
    agent.restart_backoff_max = config.restart_backoff_max;
    agent.metrics_interval = config.metrics_interval;
    agent.identity.labels = BTreeMap::from([(HOLLOW_NODE_LABEL.to_string(), "true".to_string())]);
    if !config.zones.is_empty() {
        agent.identity.zone = Some(config.zones[idx % config.zones.len()].clone());
    }
    agent
}

/// Starts `n_nodes` hollow agents against `store` ([`REGISTRATIONS_IN_FLIGHT`] registering
/// at a time); returns once all are registered (or at the first error).
pub async fn run_hollow_fleet(
    store: Store,
    n_nodes: usize,
    config: FleetConfig,
) -> Result<HollowFleet, AgentError> {
    let runtimes: Vec<Arc<HollowRuntime>> = (0..n_nodes)
        .map(|idx| {
            Arc::new(HollowRuntime::seeded(
                config.hollow.clone(),
                config.seed.wrapping_add(idx as u64),
            ))
        })
        .collect();
    let starts = runtimes
        .iter()
        .enumerate()
        .map(|(idx, rt)| NodeAgent::start(store.clone(), rt.clone(), node_config(&config, idx)));
    // Registrations claim pod CIDRs by CAS on one registry object, so all N at once
    // would make O(N^2) losing rounds; a bounded number in flight keeps startup linear.
    let agents: Vec<NodeAgent> = futures::stream::iter(starts)
        .buffered(REGISTRATIONS_IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(HollowFleet { agents, runtimes })
}
