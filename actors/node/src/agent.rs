//! The node agent loop (the NodeActor's shell): registers the Node with a claimed pod
//! CIDR, renews its Lease, refreshes its conditions, and runs one PodActor per pod bound
//! to it ([`crate::pod`]). Decisions live in [`crate::node`] and [`crate::cidr`]; this
//! module only reads and writes the store.
//!
//! PodActors are supervised tasks (`drover_actors::supervise`: restarted on a panic
//! under a restart budget), one per pod, fed the pod's latest state through a
//! `tokio::sync::watch` channel, so they are level-driven and never see a backlog. The
//! pods come from the control plane's pod index, so the agent only ever receives its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use drover_actors::restart::RestartPolicy;
use drover_actors::supervise::{self, Outcome};
use drover_store::node_index::{NodePods, NodePodsEvent};
use drover_store::{ListOptions, Store, StoreError, object};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

use crate::cidr::{self, Ipv4Cidr};
use crate::node::{self, Capacity, NodeIdentity};
use crate::pod::{self, PodCtx};
use crate::runtime::{Runtime, RuntimeError};

/// How often the node's Lease is renewed (kubelet's default).
pub const DEFAULT_LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// How often the Node's conditions get a fresh heartbeat when nothing changed
/// (kubelet's `nodeStatusReportFrequency`); the Lease is the liveness signal.
pub const DEFAULT_NODE_STATUS_INTERVAL: Duration = Duration::from_secs(300);
/// Namespace of the pod-CIDR registry ConfigMap.
pub const POD_CIDR_REGISTRY_NAMESPACE: &str = "kube-system";
/// Name of the ConfigMap mapping node name -> pod CIDR. One object, so a claim is one
/// compare-and-swap and two agents can never take the same CIDR.
pub const POD_CIDR_REGISTRY_NAME: &str = "drover-pod-cidrs";
/// Compare-and-swap rounds for one claim or read-modify-write before giving up.
const CAS_ATTEMPTS: usize = 1000;
/// Delay before re-listing pods after the watch failed.
const RELIST_AFTER: Duration = Duration::from_millis(500);

/// One node agent's settings (STYLE 8: one place, units in names, named defaults).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Name, labels, zone, address of the node.
    pub identity: NodeIdentity,
    /// What the node offers; `None` reads the machine ([`node::machine_capacity`]).
    pub capacity: Option<Capacity>,
    /// The agent's data directory (its filesystem is the ephemeral storage).
    pub data_dir: PathBuf,
    /// Cluster CIDR node pod CIDRs are carved from.
    pub cluster_cidr: String,
    /// Prefix length of each node's pod CIDR.
    pub node_cidr_prefix: u8,
    /// `leaseDurationSeconds` written on the Lease.
    pub lease_duration_seconds: i32,
    /// Lease renewal period.
    pub lease_renew_interval: Duration,
    /// Node condition heartbeat period.
    pub node_status_interval: Duration,
    /// First restart delay of an exited container (doubles per restart).
    pub restart_backoff_base: Duration,
    /// Longest restart delay.
    pub restart_backoff_max: Duration,
    /// Where pod volumes are materialised (`<pods dir>/<uid>/volumes/...`); `None`
    /// leaves volumes out (hollow fleets). A containerd agent sets
    /// `<data dir>/pods`.
    pub pods_dir: Option<PathBuf>,
    /// Cluster DNS servers written into pods' resolv.conf (`dnsPolicy: ClusterFirst`);
    /// empty keeps the runtime's default.
    pub cluster_dns: Vec<String>,
    /// How often a pod's containers are re-checked without pod changes.
    pub pod_sync_interval: Duration,
    /// How often configMap/secret/downwardAPI volumes are refreshed.
    pub volume_resync_interval: Duration,
    /// How often the node's and its pods' usage is published ([`crate::metrics`]).
    pub metrics_interval: Duration,
    /// The eBPF service proxy ([`crate::proxy`]); `None` (the default, hollow agents)
    /// runs none. Real agents set it.
    pub proxy: Option<crate::proxy::ProxyConfig>,
    /// The cgroup pods' cgroups are created under (`/kubepods`; tests use their own).
    pub cgroup_root: String,
    /// How long a deleted Service endpoint keeps serving after the EndpointSlices
    /// marked it not ready, before SIGTERM ([`DEFAULT_ENDPOINT_DRAIN_DELAY`]).
    pub endpoint_drain_delay: Duration,
    /// The node-local cluster DNS server ([`crate::dns`]); `None` runs none.
    pub node_dns: Option<crate::dns::NodeDnsConfig>,
    /// The bus heartbeat and StatefulSet fence ([`crate::fence`]); `None` (the default)
    /// publishes no heartbeat and never fences, and the control plane then never
    /// recreates this node's StatefulSet pods by itself.
    pub fence: Option<crate::fence::FenceConfig>,
    /// SWIM membership with the other nodes ([`drover_membership`]); `None` (the default)
    /// joins no gossip.
    pub gossip: Option<GossipConfig>,
}

/// Default fence timeout in milliseconds ([`crate::fence`]): how long a node cut off from
/// the bus runs its StatefulSet pods before it stops them itself.
pub const DEFAULT_FENCE_TIMEOUT_MS: u32 = 5000;

/// Default [`GossipConfig::expected_members`]: the cluster size the timing is tuned for.
pub const DEFAULT_EXPECTED_MEMBERS: u32 = 16;

/// How the agent joins the gossip.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// The UDP address to bind (port 0 picks one).
    pub bind: std::net::SocketAddr,
    /// The address peers reach this node at; `None` uses `bind`, which must then be a
    /// specific IP. Its IP is also the next hop peers route this node's pod CIDR to.
    pub advertise: Option<std::net::SocketAddr>,
    /// Members to join through.
    pub seeds: Vec<std::net::SocketAddr>,
    /// The timing profile ([`drover_membership::Profile::Fast`] by default).
    pub profile: drover_membership::Profile,
    /// The cluster size the timing is computed for ([`drover_membership::timing`]).
    pub expected_members: u32,
    /// Probability of dropping each outgoing datagram (loss injection); 0 in production.
    pub drop_outgoing: f64,
    /// Program routes to the peers' pod CIDRs in the agent's network namespace
    /// ([`crate::routes`]). Off by default: hollow fleets share one namespace and have no
    /// pod network; `drover agent` turns it on.
    pub pod_routes: bool,
}

impl GossipConfig {
    /// Defaults for a member bound at `bind`: no seeds, fast timing, no loss, no routes.
    pub fn new(bind: std::net::SocketAddr) -> GossipConfig {
        GossipConfig {
            bind,
            advertise: None,
            seeds: Vec::new(),
            profile: drover_membership::Profile::Fast,
            expected_members: DEFAULT_EXPECTED_MEMBERS,
            drop_outgoing: 0.0,
            pod_routes: false,
        }
    }
}

/// Default [`AgentConfig::endpoint_drain_delay`]: a watch event reaches every node's
/// proxy in milliseconds; the rest covers connections opened just before.
pub const DEFAULT_ENDPOINT_DRAIN_DELAY: Duration = Duration::from_secs(1);

impl AgentConfig {
    /// Defaults for a node named `node_name` on this machine.
    pub fn new(node_name: &str) -> AgentConfig {
        AgentConfig {
            identity: NodeIdentity {
                name: node_name.to_string(),
                zone: None,
                arch: node::go_arch().to_string(),
                labels: BTreeMap::new(),
                address: "127.0.0.1".into(),
                taints: Vec::new(),
            },
            capacity: None,
            data_dir: PathBuf::from("/"),
            cluster_cidr: cidr::DEFAULT_CLUSTER_CIDR.into(),
            node_cidr_prefix: cidr::DEFAULT_NODE_CIDR_PREFIX,
            lease_duration_seconds: node::DEFAULT_LEASE_DURATION_SECONDS,
            lease_renew_interval: DEFAULT_LEASE_RENEW_INTERVAL,
            node_status_interval: DEFAULT_NODE_STATUS_INTERVAL,
            restart_backoff_base: node::DEFAULT_RESTART_BACKOFF_BASE,
            restart_backoff_max: node::DEFAULT_RESTART_BACKOFF_MAX,
            pods_dir: None,
            cluster_dns: Vec::new(),
            pod_sync_interval: pod::DEFAULT_SYNC_INTERVAL,
            volume_resync_interval: pod::DEFAULT_VOLUME_RESYNC_INTERVAL,
            metrics_interval: crate::metrics::DEFAULT_METRICS_INTERVAL,
            proxy: None,
            cgroup_root: crate::podspec::DEFAULT_CGROUP_ROOT.into(),
            endpoint_drain_delay: DEFAULT_ENDPOINT_DRAIN_DELAY,
            node_dns: None,
            fence: None,
            gossip: None,
        }
    }
}

/// Why an agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The store failed; retryable when the inner error is. Registration may have been
    /// partly written (it is idempotent: starting again completes it).
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The runtime failed; retryable when the inner error is. Nothing was written.
    #[error("runtime: {0}")]
    Runtime(#[from] RuntimeError),
    /// The configuration is unusable (bad cluster CIDR, unreadable machine). Not
    /// retryable.
    #[error("config: {0}")]
    Config(String),
    /// The service proxy could not start (programs, pins, the service CIDR route).
    /// Nothing else was started.
    #[error("service proxy: {0}")]
    Proxy(#[from] crate::proxy::ProxyError),
    /// The node-local DNS server could not start.
    #[error("node dns: {0}")]
    Dns(#[from] crate::dns::NodeDnsError),
    /// The gossip could not start (its socket, its config). Nothing else was started.
    #[error("gossip: {0}")]
    Gossip(#[from] drover_membership::Error),
    /// Every node CIDR of the cluster CIDR is taken. Retryable once nodes are removed
    /// from the registry.
    #[error("no free pod cidr left in {cluster}")]
    CidrExhausted {
        /// The cluster CIDR.
        cluster: String,
    },
}

/// A running node agent; its tasks stop when this is dropped or [`NodeAgent::stop`]ped.
/// Stopping leaves pods running in the runtime (a restarted agent re-adopts them).
pub struct NodeAgent {
    node_name: String,
    pod_cidr: String,
    tasks: Vec<JoinHandle<()>>,
    dns: Option<drover_dns::Dns>,
    membership: Option<drover_membership::Membership>,
    routes: Option<crate::routes::Routes>,
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl NodeAgent {
    /// Registers the node (pod CIDR claim, Node, Lease), then starts the heartbeat and
    /// the pod loop. Returns once the node is registered and Ready.
    pub async fn start(
        store: Store,
        runtime: Arc<dyn Runtime>,
        config: AgentConfig,
    ) -> Result<NodeAgent, AgentError> {
        let span = tracing::info_span!("node_agent", node.name = %config.identity.name);
        let registered = register(&store, runtime.as_ref(), &config)
            .instrument(span.clone())
            .await?;
        // The gossip starts once the pod CIDR is claimed: it is part of what the node
        // advertises. A failure below drops it, which peers see as a crash.
        let membership = match &config.gossip {
            Some(g) => Some(start_gossip(&config, g, &registered.pod_cidr).await?),
            None => None,
        };
        // Load the service proxy before starting any task, so a failure leaves nothing
        // running; its pins survive a restart, so services keep working meanwhile.
        let proxy = match &config.proxy {
            Some(p) => {
                // Topology-aware routing matches hints against this node.
                let mut p = p.clone();
                p.locality = crate::proxy::topology::Locality {
                    node: config.identity.name.clone(),
                    zone: config.identity.zone.clone(),
                };
                Some((crate::proxy::start(&p)?, p))
            }
            None => None,
        };

        let config = Arc::new(config);
        let heartbeat = tokio::spawn(
            heartbeat(store.clone(), config.clone(), registered.clone()).instrument(span.clone()),
        );
        // Logs and exec for this node's pods (drover_node::stream).
        let streams = crate::stream::serve(
            store.nats_client().clone(),
            &config.identity.name,
            runtime.clone(),
        )
        .await
        .map_err(|e| AgentError::Config(format!("subscribing to the stream subjects: {e}")))?;
        // Resource usage for `kubectl top` and the HPA (drover_node::metrics).
        let metrics = tokio::spawn(
            crate::metrics::publish_loop(
                store.nats_client().clone(),
                config.identity.name.clone(),
                runtime.clone(),
                config.metrics_interval,
            )
            .instrument(span.clone()),
        );
        let mut tasks = vec![heartbeat, streams, metrics];
        let stateful_cgroups = crate::fence::StatefulCgroups::default();
        let fence = match &config.fence {
            Some(f) => {
                let (rx, task) = crate::fence::start(
                    store.clone(),
                    config.identity.name.clone(),
                    f.clone(),
                    stateful_cgroups.clone(),
                );
                tasks.push(task);
                rx
            }
            None => crate::fence::always_open(),
        };
        if let Some((lb, proxy_config)) = proxy {
            let proxy =
                crate::proxy::supervised(store.clone(), lb, proxy_config, Default::default());
            tasks.push(tokio::spawn(
                async move {
                    proxy.await;
                }
                .instrument(span.clone()),
            ));
        }
        // The node-local DNS last: nothing fallible follows it. A failure stops what
        // was started above.
        let dns = match &config.node_dns {
            Some(d) => match crate::dns::start(
                &store,
                d,
                &config.identity.name,
                config.identity.zone.as_deref(),
                &registered.pod_cidr,
            )
            .instrument(span.clone())
            .await
            {
                Ok(dns) => Some(dns),
                Err(e) => {
                    for t in tasks {
                        t.abort();
                    }
                    return Err(e.into());
                }
            },
            None => None,
        };
        let ctx = Arc::new(PodCtx {
            store,
            runtime,
            node_name: config.identity.name.clone(),
            host_ip: config.identity.address.clone(),
            runtime_name: registered.runtime_version.name.clone(),
            restart_backoff_base: config.restart_backoff_base,
            restart_backoff_max: config.restart_backoff_max,
            pods_dir: config.pods_dir.clone(),
            cluster_dns: config.cluster_dns.clone(),
            capacity: registered.capacity,
            sync_interval: config.pod_sync_interval,
            volume_resync_interval: config.volume_resync_interval,
            cgroup_root: config.cgroup_root.clone(),
            endpoint_drain_delay: config.endpoint_drain_delay,
            fence,
            stateful_cgroups,
        });
        let pods = tokio::spawn(pod_loop(ctx).instrument(span.clone()));
        let routes = match (&membership, &config.gossip) {
            (Some(m), Some(g)) if g.pod_routes => {
                pod_routes_local(&config, m, &registered.pod_cidr).map(|local| {
                    let _enter = span.enter();
                    crate::routes::start(local, m.watch())
                })
            }
            _ => None,
        };
        Ok(NodeAgent {
            node_name: config.identity.name.clone(),
            pod_cidr: registered.pod_cidr,
            tasks: {
                tasks.push(pods);
                tasks
            },
            dns,
            membership,
            routes,
        })
    }

    /// The node's name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The pod CIDR the node claimed.
    pub fn pod_cidr(&self) -> &str {
        &self.pod_cidr
    }

    /// The node's gossip membership, when it joined one ([`AgentConfig::gossip`]).
    pub fn membership(&self) -> Option<&drover_membership::Membership> {
        self.membership.as_ref()
    }

    /// Stops the agent as a crash would: its tasks are aborted and its gossip member
    /// stops without leaving (peers detect it through SWIM), and it returns once the
    /// member's socket is closed. Hollow fleets use it to kill nodes in benchmarks.
    pub async fn crash(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        if let Some(membership) = self.membership.take() {
            membership.stop().await;
        }
        if let Some(routes) = self.routes.take() {
            routes.stop().await;
        }
        if let Some(dns) = self.dns.take() {
            dns.stop().await;
        }
    }

    /// Stops the agent's tasks and waits for them (pods keep running in the runtime),
    /// then leaves the gossip gracefully, so peers mark the node down at once instead of
    /// after the failure detector's timeout. The pod routes stay: the pods still need
    /// them (see [`crate::routes`]). Dropping the agent instead is a crash: no leave.
    pub async fn stop(mut self) {
        if let Some(routes) = self.routes.take() {
            routes.stop().await;
        }
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        if let Some(dns) = self.dns.take() {
            dns.stop().await;
        }
        if let Some(membership) = self.membership.take()
            && let Err(error) = membership.leave().await
        {
            tracing::warn!(message = "leaving the gossip failed", %error);
        }
    }
}

/// Joins the gossip with this node's metadata.
async fn start_gossip(
    config: &AgentConfig,
    gossip: &GossipConfig,
    pod_cidr: &str,
) -> Result<drover_membership::Membership, AgentError> {
    let membership = drover_membership::Membership::start(drover_membership::MembershipConfig {
        name: config.identity.name.clone(),
        bind: gossip.bind,
        advertise: gossip.advertise,
        seeds: gossip.seeds.clone(),
        metadata: drover_membership::NodeMetadata {
            pod_cidr: pod_cidr.to_string(),
            zone: config.identity.zone.clone().unwrap_or_default(),
            api: None,
            // What the node really does ([`AgentConfig::fence`]), so the control plane's
            // wait matches it.
            fence_timeout_ms: config.fence.as_ref().map_or(0, |f| {
                u32::try_from(f.timeout.as_millis()).unwrap_or(u32::MAX)
            }),
        },
        timing: drover_membership::timing(gossip.expected_members, gossip.profile),
        drop_outgoing: gossip.drop_outgoing,
        seed: None,
    })
    .await?;
    tracing::info!(message = "joined the gossip", addr = %membership.addr());
    Ok(membership)
}

/// What the route follower needs to know about this node; `None` (logged) when the
/// cluster or pod CIDR does not parse, which registration already refused.
fn pod_routes_local(
    config: &AgentConfig,
    membership: &drover_membership::Membership,
    pod_cidr: &str,
) -> Option<crate::routes::Local> {
    let cluster = config.cluster_cidr.parse().ok()?;
    let Ok(pod_cidr) = pod_cidr.parse() else {
        tracing::warn!(message = "no pod routes: unparseable pod cidr", pod_cidr);
        return None;
    };
    Some(crate::routes::Local {
        name: config.identity.name.clone(),
        addr: membership.addr().ip(),
        cluster,
        pod_cidr,
    })
}

#[derive(Clone)]
struct Registered {
    pod_cidr: String,
    capacity: Capacity,
    runtime_version: crate::runtime::RuntimeVersion,
    lease: Lease,
    node_uid: Option<String>,
}

async fn register(
    store: &Store,
    runtime: &dyn Runtime,
    config: &AgentConfig,
) -> Result<Registered, AgentError> {
    let runtime_version = runtime.version().await?;
    let capacity = match config.capacity {
        Some(c) => c,
        None => node::machine_capacity(&config.data_dir)
            .map_err(|e| AgentError::Config(format!("reading machine capacity: {e}")))?,
    };
    let cluster: Ipv4Cidr = config
        .cluster_cidr
        .parse()
        .map_err(|e: cidr::CidrError| AgentError::Config(e.to_string()))?;
    let name = &config.identity.name;
    let pod_cidr = claim_pod_cidr(store, name, cluster, config.node_cidr_prefix).await?;
    runtime.update_pod_cidr(&pod_cidr).await?;
    let node = upsert_node(store, config, &capacity, &runtime_version, &pod_cidr).await?;
    let lease = renew_lease(store, config, node.metadata.uid.as_deref(), None).await?;
    tracing::info!(message = "node registered", %pod_cidr);
    Ok(Registered {
        pod_cidr,
        capacity,
        runtime_version,
        lease,
        node_uid: node.metadata.uid,
    })
}

/// Claims a pod CIDR for `node_name` in the registry ConfigMap (idempotent: a node that
/// has one keeps it). The first claimer creates the registry seeded with the CIDRs
/// already on Node objects, so CIDRs assigned before the registry existed count as taken;
/// later claims read only the registry (one object, not a list of every Node: listing
/// Nodes per registration made a fleet's startup quadratic).
pub async fn claim_pod_cidr(
    store: &Store,
    node_name: &str,
    cluster: Ipv4Cidr,
    node_prefix: u8,
) -> Result<String, AgentError> {
    let configmaps = store.api::<ConfigMap>();
    for attempt in 0..CAS_ATTEMPTS {
        let current = match configmaps
            .get(Some(POD_CIDR_REGISTRY_NAMESPACE), POD_CIDR_REGISTRY_NAME)
            .await
        {
            Ok(cm) => Some(cm),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let mut data = match &current {
            Some(cm) => cm.data.clone().unwrap_or_default(),
            None => cidrs_on_nodes(store).await?,
        };
        if let Some(mine) = data.get(node_name)
            && mine.parse::<Ipv4Cidr>().is_ok()
        {
            if current.is_some() {
                return Ok(mine.clone());
            }
        } else {
            data.remove(node_name);
            let taken: BTreeSet<String> = data.values().cloned().collect();
            let pick = cidr::next_free(cluster, node_prefix, &taken).ok_or_else(|| {
                AgentError::CidrExhausted {
                    cluster: cluster.to_string(),
                }
            })?;
            data.insert(node_name.to_string(), pick.to_string());
        }
        let pick = data.get(node_name).cloned().unwrap_or_default();
        let result = match current {
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(POD_CIDR_REGISTRY_NAME.into()),
                        namespace: Some(POD_CIDR_REGISTRY_NAMESPACE.into()),
                        ..Default::default()
                    },
                    data: Some(data),
                    ..Default::default()
                };
                configmaps.create(&cm).await.map(|_| ())
            }
            Some(mut cm) => {
                // The resourceVersion read above makes this a compare-and-swap.
                cm.data = Some(data);
                configmaps.update(&cm).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => return Ok(pick),
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. }) => {
                cas_backoff(attempt).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(AgentError::Store(StoreError::Conflict {
        kind: "configmaps".into(),
        name: POD_CIDR_REGISTRY_NAME.into(),
        reason: format!("pod cidr claim lost {CAS_ATTEMPTS} races"),
    }))
}

/// Node name -> `spec.podCIDR` of every Node that has one (the registry's seed).
async fn cidrs_on_nodes(store: &Store) -> Result<BTreeMap<String, String>, StoreError> {
    let (nodes, _) = store
        .api::<Node>()
        .list(None, &ListOptions::default())
        .await?;
    Ok(nodes
        .into_iter()
        .filter_map(|n| {
            let cidr = n.spec.and_then(|s| s.pod_cidr)?;
            Some((n.metadata.name?, cidr))
        })
        .collect())
}

/// A short, jittered pause between compare-and-swap rounds so racing agents spread out.
/// Jitter here is not part of any decision, so it uses the thread RNG.
async fn cas_backoff(attempt: usize) {
    use rand::Rng;
    let max_ms = (1 + attempt.min(20) as u64) * 2;
    let ms = rand::rng().random_range(0..=max_ms);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Creates the Node or refreshes the stored one (CAS on its resourceVersion).
async fn upsert_node(
    store: &Store,
    config: &AgentConfig,
    capacity: &Capacity,
    runtime_version: &crate::runtime::RuntimeVersion,
    pod_cidr: &str,
) -> Result<Node, StoreError> {
    let nodes = store.api::<Node>();
    let name = &config.identity.name;
    for attempt in 0..CAS_ATTEMPTS {
        let previous = match nodes.get(None, name).await {
            Ok(n) => Some(n),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let node = node::build_node(
            &config.identity,
            capacity,
            runtime_version,
            pod_cidr,
            previous.as_ref(),
            Timestamp::now(),
        );
        let result = match previous {
            None => nodes.create(&node).await,
            Some(_) => nodes.update(&node).await,
        };
        match result {
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. }) => {
                cas_backoff(attempt).await
            }
            other => return other,
        }
    }
    Err(StoreError::Conflict {
        kind: "nodes".into(),
        name: name.clone(),
        reason: "node refresh lost every race".into(),
    })
}

/// Creates the node's Lease or moves its renewTime to now; returns the stored Lease.
/// With `last` (the Lease this agent wrote before) the renewal is one CAS write and no
/// read; a conflict or a missing Lease falls back to read-modify-write.
async fn renew_lease(
    store: &Store,
    config: &AgentConfig,
    node_uid: Option<&str>,
    last: Option<Lease>,
) -> Result<Lease, StoreError> {
    let leases = store.api::<Lease>();
    let name = &config.identity.name;
    let renewed = |mut lease: Lease| {
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.holder_identity = Some(name.clone());
        spec.lease_duration_seconds = Some(config.lease_duration_seconds);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease
    };
    if let Some(last) = last {
        match leases.update(&renewed(last)).await {
            Ok(lease) => return Ok(lease),
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    for attempt in 0..CAS_ATTEMPTS {
        let result = match leases.get(Some(node::NODE_LEASE_NAMESPACE), name).await {
            Ok(lease) => leases.update(&renewed(lease)).await,
            Err(StoreError::NotFound { .. }) => {
                let lease = node::node_lease(
                    name,
                    node_uid,
                    config.lease_duration_seconds,
                    Timestamp::now(),
                );
                leases.create(&lease).await
            }
            Err(e) => return Err(e),
        };
        match result {
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. }) => {
                cas_backoff(attempt).await
            }
            other => return other,
        }
    }
    Err(StoreError::Conflict {
        kind: "leases.coordination.k8s.io".into(),
        name: name.clone(),
        reason: "lease renewal lost every race".into(),
    })
}

/// Renews the Lease every `lease_renew_interval` and refreshes the Node's conditions
/// every `node_status_interval`; failures are logged and retried at the next tick.
async fn heartbeat(store: Store, config: Arc<AgentConfig>, registered: Registered) {
    let Registered {
        pod_cidr,
        capacity,
        runtime_version,
        lease,
        node_uid,
    } = registered;
    let mut last_lease = Some(lease);
    let mut lease_tick = tokio::time::interval(config.lease_renew_interval);
    lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut status_tick = tokio::time::interval(config.node_status_interval);
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Both were just written by the registration.
    lease_tick.tick().await;
    status_tick.tick().await;
    loop {
        tokio::select! {
            _ = lease_tick.tick() => {
                match renew_lease(&store, &config, node_uid.as_deref(), last_lease.take()).await {
                    Ok(lease) => last_lease = Some(lease),
                    Err(error) => tracing::warn!(message = "lease renewal failed", %error),
                }
            }
            _ = status_tick.tick() => {
                if let Err(error) =
                    upsert_node(&store, &config, &capacity, &runtime_version, &pod_cidr).await
                {
                    tracing::warn!(message = "node status update failed", %error);
                }
            }
        }
    }
}

/// Follows the pods bound to this node and keeps one supervised PodActor per pod uid.
///
/// The pods come from the control plane's pod index
/// ([`drover_store::node_index::NodePods`]): a list, then only this node's changes, so the
/// agent never sees other nodes' pods. Without an index (control plane down) it retries.
async fn pod_loop(ctx: Arc<PodCtx>) {
    let mut actors: HashMap<String, watch::Sender<Option<Value>>> = HashMap::new();
    // Dropping the set (when this task is aborted) aborts every PodActor.
    let mut tasks = JoinSet::new();
    loop {
        if let Err(error) = follow_pods(&ctx, &mut actors, &mut tasks).await {
            tracing::warn!(message = "following this node's pods failed; re-listing", %error);
        }
        tokio::time::sleep(RELIST_AFTER).await;
    }
}

async fn follow_pods(
    ctx: &Arc<PodCtx>,
    actors: &mut HashMap<String, watch::Sender<Option<Value>>>,
    tasks: &mut JoinSet<Outcome>,
) -> Result<(), StoreError> {
    let mut pods = NodePods::start(&ctx.store, &ctx.node_name).await?;
    loop {
        let event = pods.next().await?;
        // Reap finished actors so the map tracks live pods only.
        while tasks.try_join_next().is_some() {}
        actors.retain(|_, tx| !tx.is_closed());
        match event {
            NodePodsEvent::Synced(items) => {
                let present: BTreeSet<String> = items.iter().filter_map(uid_of).collect();
                // Pods that vanished while we were not following.
                for (uid, tx) in actors.iter() {
                    if !present.contains(uid) {
                        let _ = tx.send(None);
                    }
                }
                for pod in items {
                    deliver(ctx, actors, tasks, pod);
                }
                // Sandboxes of pods that are gone from the store altogether (deleted or
                // replaced while this agent was not following): stop them.
                let known: BTreeSet<String> = actors.keys().cloned().collect();
                tasks.spawn(sweep_orphans(ctx.clone(), known, Timestamp::now()));
            }
            NodePodsEvent::Upsert(pod) => deliver(ctx, actors, tasks, pod),
            NodePodsEvent::Removed(pod) => {
                if let Some(tx) = uid_of(&pod).and_then(|uid| actors.get(&uid)) {
                    let _ = tx.send(None);
                }
            }
        }
    }
}

/// Tears down every sandbox of this agent whose pod uid has no PodActor (see
/// [`pod::remove_orphan`]); runs beside the actors, once per (re)list. Only sandboxes
/// created before `listed_at` count: a pod bound after the list has an actor the
/// snapshot `known` does not name.
async fn sweep_orphans(ctx: Arc<PodCtx>, known: BTreeSet<String>, listed_at: Timestamp) -> Outcome {
    let sandboxes = match ctx.runtime.list_sandboxes().await {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(message = "listing sandboxes for orphans failed", %error);
            return Outcome::Stopped;
        }
    };
    let orphans: BTreeSet<String> = sandboxes
        .iter()
        .filter(|s| {
            pod::is_own_sandbox(&ctx, s)
                && s.created_at < listed_at
                && !known.contains(&s.config.pod_uid)
        })
        .map(|s| s.config.pod_uid.clone())
        .collect();
    for uid in orphans {
        pod::remove_orphan(&ctx, &uid).await;
    }
    Outcome::Stopped
}

fn uid_of(pod: &Value) -> Option<String> {
    object::meta_str(pod, "uid").map(str::to_string)
}

/// Hands the pod's latest state to its actor, starting one for a new uid.
fn deliver(
    ctx: &Arc<PodCtx>,
    actors: &mut HashMap<String, watch::Sender<Option<Value>>>,
    tasks: &mut JoinSet<Outcome>,
    pod: Value,
) {
    let Some(uid) = uid_of(&pod) else {
        tracing::warn!(
            message = "dropping pod without uid",
            name = object::name(&pod)
        );
        return;
    };
    if let Some(tx) = actors.get(&uid)
        && !tx.is_closed()
    {
        let _ = tx.send(Some(pod));
        return;
    }
    let span = tracing::info_span!(
        "pod_actor",
        pod.namespace = object::namespace(&pod).unwrap_or(""),
        pod.name = object::name(&pod),
        pod.uid = %uid,
    );
    let (tx, rx) = watch::channel(Some(pod));
    // A crashed actor restarts from scratch and re-adopts its sandbox and containers
    // from the runtime (see `pod::run`); the budget stops a pod that panics forever.
    let ctx = ctx.clone();
    let name = format!("pod/{uid}");
    tasks.spawn(supervise::run(name, RestartPolicy::default(), move || {
        pod::run(ctx.clone(), rx.clone()).instrument(span.clone())
    }));
    actors.insert(uid, tx);
}
