//! Many hollow node agents in one process (`drover sim`): each gets its own
//! [`HollowRuntime`] (seeded from the fleet seed and its index, so a fleet replays the
//! same failures) and a full [`NodeAgent`] against the real store.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_store::Store;
use futures::{StreamExt, TryStreamExt};

use crate::agent::{self, AgentConfig, AgentError, GossipConfig, NodeAgent};
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
    /// How often each pod actor re-reads its pod and looks at its containers when nothing
    /// happened (`AgentConfig::pod_sync_interval`, 1 s). A hollow container exits only when
    /// told to, so a large fleet in one process can look less often and keep its CPU for
    /// what it simulates.
    pub pod_sync_interval: Duration,
    /// Join the nodes to a gossip (real SWIM over UDP, one socket per node); `None` (the
    /// default) joins none.
    pub gossip: Option<FleetGossip>,
}

/// How a hollow fleet joins the gossip.
#[derive(Debug, Clone)]
pub struct FleetGossip {
    /// Members to join through (usually the control plane's member).
    pub seeds: Vec<SocketAddr>,
    /// The IP every node binds (each on a port of its own); 127.0.0.1 by default.
    pub bind_ip: IpAddr,
    /// The cluster size the nodes' timing is computed for.
    pub expected_members: u32,
    /// The timing profile.
    pub profile: drover_membership::Profile,
    /// Run the bus heartbeat and StatefulSet fence on every node. Off by default: a
    /// thousand nodes' heartbeats (a server round trip each per 500 ms) would swamp a
    /// small machine, and hollow pods have nothing to fence.
    pub fence: bool,
}

impl Default for FleetGossip {
    fn default() -> Self {
        FleetGossip {
            seeds: Vec::new(),
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            expected_members: agent::DEFAULT_EXPECTED_MEMBERS,
            profile: drover_membership::Profile::Fast,
            fence: false,
        }
    }
}

/// Fleet members a joining node announces to besides the configured seeds, so that a
/// thousand joins do not all land on one member.
pub const EXTRA_SEEDS: usize = 2;

/// The seeds of fleet node `idx`: the configured `seeds` plus up to [`EXTRA_SEEDS`]
/// distinct members of `joined` (the fleet's nodes already in the gossip, in join
/// order), one at `idx` and one half the list further, so that consecutive joins spread
/// over the joined nodes.
pub fn seeds_for(idx: usize, seeds: &[SocketAddr], joined: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut out = seeds.to_vec();
    let n = joined.len();
    if n == 0 {
        return out;
    }
    let first = idx % n;
    // n/2 is in 1..n for n > 1, so the second pick differs from the first.
    let picks = [first, (first + n / 2) % n];
    for &p in picks.iter().take(EXTRA_SEEDS.min(n)) {
        if !out.contains(&joined[p]) {
            out.push(joined[p]);
        }
    }
    out
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
            pod_sync_interval: crate::pod::DEFAULT_SYNC_INTERVAL,
            gossip: None,
        }
    }
}

/// A running fleet; dropping it stops every agent.
pub struct HollowFleet {
    /// The live agents, by index ([`HollowFleet::crash`] removes one).
    pub agents: Vec<NodeAgent>,
    /// Each live agent's runtime (to inspect sandboxes and containers in tests), in the
    /// same order as `agents`.
    pub runtimes: Vec<Arc<HollowRuntime>>,
}

impl HollowFleet {
    /// Crashes the node named `node_name`: its tasks are aborted and its gossip member
    /// stops without leaving, so peers find out only through SWIM's failure detector
    /// (what a dead machine looks like). Its pods stay in its runtime, as on a powered
    /// off node. Returns false when no live agent has that name.
    pub async fn crash(&mut self, node_name: &str) -> bool {
        let Some(idx) = self.agents.iter().position(|a| a.node_name() == node_name) else {
            return false;
        };
        self.runtimes.remove(idx);
        self.agents.remove(idx).crash().await;
        true
    }

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
    agent.pod_sync_interval = config.pod_sync_interval;
    agent.identity.labels = BTreeMap::from([(HOLLOW_NODE_LABEL.to_string(), "true".to_string())]);
    if !config.zones.is_empty() {
        agent.identity.zone = Some(config.zones[idx % config.zones.len()].clone());
    }
    if let Some(g) = &config.gossip {
        // Port 0: every node of the fleet gets its own port on the one IP.
        let mut gossip = GossipConfig::new(SocketAddr::new(g.bind_ip, 0));
        gossip.seeds = g.seeds.clone();
        gossip.expected_members = g.expected_members;
        gossip.profile = g.profile;
        // Hollow nodes share one network namespace and have no pod network.
        gossip.pod_routes = false;
        agent.gossip = Some(gossip);
        if g.fence {
            agent.fence = Some(crate::fence::FenceConfig::default());
        }
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
    // Gossip addresses of the nodes that joined, for the next joins' seeds.
    let joined: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();
    let starts = runtimes.iter().enumerate().map(|(idx, rt)| {
        // Built when `buffered` pulls it, so `joined` holds the nodes started by then.
        let mut agent_config = node_config(&config, idx);
        if let Some(g) = agent_config.gossip.as_mut() {
            let joined_now = joined.lock().map(|j| j.clone()).unwrap_or_default();
            g.seeds = seeds_for(idx, &g.seeds, &joined_now);
        }
        let (store, rt, joined) = (store.clone(), rt.clone(), joined.clone());
        async move {
            let agent = NodeAgent::start(store, rt, agent_config).await?;
            if let (Some(m), Ok(mut j)) = (agent.membership(), joined.lock()) {
                j.push(m.addr());
            }
            Ok::<_, AgentError>(agent)
        }
    });
    // Registrations claim pod CIDRs by CAS on one registry object, so all N at once
    // would make O(N^2) losing rounds; a bounded number in flight keeps startup linear.
    let agents: Vec<NodeAgent> = futures::stream::iter(starts)
        .buffered(REGISTRATIONS_IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(HollowFleet { agents, runtimes })
}

#[cfg(test)]
mod tests;
