//! The service proxy (kube-proxy's role, over eBPF): follows Services,
//! EndpointSlices (discovery.k8s.io/v1) and TrafficSplits (drover.io/v1) cluster-wide
//! through the store and keeps the maps of [`drover_bpf::Loader`] equal to them, one
//! Service at a time. Topology hints narrow a Service's endpoints for this node
//! ([`topology`]); a TrafficSplit gives its root Service the weighted endpoints of its
//! backend Services ([`split`]).
//!
//! The decisions are I/O-free: [`desired`] turns one Service and its slices into the
//! map entries it needs (one per port: VIP, port, protocol -> backends and affinity),
//! and [`diff`] turns (what was applied, what is wanted) into upserts and removals. The
//! loop ([`run`]) keeps the applied entries per Service, so a change of one Service or
//! one slice touches only that Service's entries; a (re)list reconciles against what the
//! pinned maps hold, so a restarted proxy removes stale services and adds missing ones
//! without wiping the maps (traffic keeps flowing meanwhile).
//!
//! NodePort and LoadBalancer Services also get entries for their nodePorts
//! ([`nodeport`]), reached at the node's addresses from sockets and, through tcx
//! programs on the external interfaces, from outside.
//!
//! The agent also blackholes the service CIDR ([`blackhole_service_cidr`]): a VIP no
//! program translated (an unknown port, a Service just deleted) fails fast instead of
//! leaving through the default route.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bus_schema::drover::TrafficSplit;
use drover_bpf::{Backend, Loader, Protocol, Service as LbService, ServiceKey};
use drover_store::{ListOptions, Store, StoreError, WatchEvent, WatchOptions, object};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::Value;

pub mod split;
pub mod topology;

use topology::{Candidate, Locality};

/// The label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// `sessionAffinityConfig.clientIP.timeoutSeconds` when unset (Kubernetes' default,
/// three hours).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u64 = 10800;
/// Kubernetes' default service CIDR (`--service-cluster-ip-range`).
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
/// Delay before re-listing after a watch or a map write failed.
const RELIST_AFTER: Duration = Duration::from_millis(500);

/// The proxy's settings (on for real agents, `None` in [`crate::AgentConfig`] for hollow
/// ones).
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where the maps, programs and links are pinned (a bpffs directory).
    pub pin_dir: PathBuf,
    /// The cgroup v2 the programs attach to (the cgroup2 root on a real node, so every
    /// pod's sockets are translated).
    pub cgroup: PathBuf,
    /// The service CIDR that gets a blackhole route; `None` installs none.
    pub service_cidr: Option<String>,
    /// This node's name and zone, for topology-aware routing; the agent fills it from
    /// its `NodeIdentity`.
    pub locality: Locality,
    /// The interfaces NodePort traffic from outside arrives on (the tcx programs run
    /// there); `None`: those of the default route.
    pub nodeport_interfaces: Option<Vec<String>>,
}

impl ProxyConfig {
    /// A real node's settings: pins under [`drover_bpf::DEFAULT_PIN_DIR`], the programs
    /// on the cgroup2 root (every pod's sockets), the default service CIDR.
    pub fn host() -> Result<ProxyConfig, ProxyError> {
        Ok(ProxyConfig {
            pin_dir: PathBuf::from(drover_bpf::DEFAULT_PIN_DIR),
            cgroup: cgroup2_root()?,
            service_cidr: Some(DEFAULT_SERVICE_CIDR.to_string()),
            locality: Locality::default(),
            nodeport_interfaces: None,
        })
    }
}

/// Where cgroup2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid
/// host).
pub fn cgroup2_root() -> Result<PathBuf, ProxyError> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| ProxyError::NoCgroup2(format!("reading /proc/self/mounts: {e}")))?;
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| PathBuf::from(f[1]))
        .ok_or_else(|| ProxyError::NoCgroup2("no cgroup2 mount".into()))
}

/// Why the proxy could not start or apply a change.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Loading the programs or writing the maps failed.
    #[error("bpf: {0}")]
    Bpf(#[from] drover_bpf::BpfError),
    /// Reading the store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// No cgroup v2 to attach the programs to.
    #[error("cgroup v2: {0}")]
    NoCgroup2(String),
    /// The blackhole route could not be installed.
    #[error("service cidr route: {0}")]
    Route(String),
    /// The node's addresses or interfaces for NodePort could not be read.
    #[error("nodeport: {0}")]
    NodePort(String),
}

/// A Service's namespace and name (its slices carry the name in [`SERVICE_NAME_LABEL`]).
pub type ServiceRef = (String, String);

/// The map entries one Service needs.
pub type Desired = BTreeMap<ServiceKey, LbService>;

/// One map operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create or change one service port's entry.
    Upsert(ServiceKey, LbService),
    /// Remove one service port's entry.
    Remove(ServiceKey),
}

fn protocol(p: Option<&str>) -> Option<Protocol> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        // SCTP and anything else: the programs do not translate it.
        _ => None,
    }
}

/// One port of a Service that the programs translate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// `spec.ports[].name` (empty when unnamed); slices name their ports alike.
    pub name: String,
    /// The service port.
    pub port: u16,
    /// TCP or UDP.
    pub proto: Protocol,
}

/// The IPv4 ClusterIP of `svc` that the programs translate: none for ExternalName,
/// headless (`None`) or IPv6-only Services.
pub fn cluster_vip(svc: &Service) -> Option<Ipv4Addr> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.cluster_ip.as_deref()?.parse().ok()
}

/// The TCP and UDP ports of `svc` (SCTP and out-of-range ports are skipped).
pub fn ports_of(svc: &Service) -> Vec<PortSpec> {
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    spec.ports
        .iter()
        .flatten()
        .filter_map(|sp| {
            Some(PortSpec {
                name: sp.name.clone().unwrap_or_default(),
                port: u16::try_from(sp.port).ok()?,
                proto: protocol(sp.protocol.as_deref())?,
            })
        })
        .collect()
}

fn affinity_of(svc: &Service) -> Option<Duration> {
    let spec = svc.spec.as_ref()?;
    (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        let secs = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS);
        Duration::from_secs(secs)
    })
}

/// The endpoints of IPv4 `slices` at the slice port named `name` with protocol
/// `proto`, with their conditions and hints. An endpoint without `ready` counts as
/// ready, as in kube-proxy.
pub fn candidates(slices: &[&EndpointSlice], name: &str, proto: Protocol) -> Vec<Candidate> {
    let mut out = Vec::new();
    for slice in slices.iter().filter(|s| s.address_type == "IPv4") {
        let target = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == name
                && protocol(p.protocol.as_deref()) == Some(proto)
        });
        let Some(target) = target
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in slice.endpoints.iter().flatten() {
            let Some(ip) = ep
                .addresses
                .first()
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let c = ep.conditions.as_ref();
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            let hints = ep.hints.as_ref();
            out.push(Candidate {
                addr: SocketAddrV4::new(ip, target),
                ready,
                serving_terminating: !ready && serving && terminating,
                for_zones: hints
                    .and_then(|h| h.for_zones.as_ref())
                    .into_iter()
                    .flatten()
                    .map(|z| z.name.clone())
                    .collect(),
                for_nodes: hints
                    .and_then(|h| h.for_nodes.as_ref())
                    .into_iter()
                    .flatten()
                    .map(|n| n.name.clone())
                    .collect(),
                node: ep.node_name.clone(),
            });
        }
    }
    out
}

/// [`desired_at`] for a proxy that does not know its node: topology hints match
/// nothing, so every endpoint is used.
pub fn desired(svc: &Service, slices: &[&EndpointSlice]) -> Desired {
    desired_at(svc, slices, &Locality::default())
}

/// The map entries of `svc` given the slices labelled with its name, for a proxy on
/// `here`: one per port of a ClusterIP with an IPv4 address (not headless, not
/// ExternalName). Backends are the ready endpoints of IPv4 slices at the slice port of
/// the same name and protocol, narrowed by topology hints ([`topology`]); when a port
/// has no ready endpoint, the serving and terminating ones (as kube-proxy does, so
/// connections drain instead of failing during a rollout). Sorted and deduplicated, so
/// equal inputs give equal entries.
pub fn desired_at(svc: &Service, slices: &[&EndpointSlice], here: &Locality) -> Desired {
    let mut out = Desired::new();
    let Some(vip) = cluster_vip(svc) else {
        return out;
    };
    let affinity = affinity_of(svc);
    for sp in ports_of(svc) {
        let chosen = topology::usable(&candidates(slices, &sp.name, sp.proto), here);
        out.insert(
            ServiceKey {
                vip,
                port: sp.port,
                proto: sp.proto,
            },
            LbService {
                backends: chosen
                    .into_iter()
                    .map(|addr| Backend { addr, weight: 1 })
                    .collect(),
                affinity,
            },
        );
    }
    out
}

/// The operations that turn `old` into `new`: an upsert for each entry that is new or
/// changed, a removal for each entry that is gone; nothing for unchanged entries.
pub fn diff(old: &Desired, new: &Desired) -> Vec<Op> {
    let mut ops: Vec<Op> = old
        .keys()
        .filter(|k| !new.contains_key(k))
        .map(|k| Op::Remove(*k))
        .collect();
    for (k, v) in new {
        if old.get(k) != Some(v) {
            ops.push(Op::Upsert(*k, v.clone()));
        }
    }
    ops
}

/// What a resync against the maps does: entries the maps hold that nobody wants are
/// removed; every wanted entry is upserted (the loader writes only what differs, so an
/// entry that survived a restart unchanged costs no write).
pub fn reconcile(in_maps: &[ServiceKey], wanted: &Desired) -> Vec<Op> {
    let mut ops: Vec<Op> = in_maps
        .iter()
        .filter(|k| !wanted.contains_key(k))
        .map(|k| Op::Remove(*k))
        .collect();
    ops.extend(wanted.iter().map(|(k, v)| Op::Upsert(*k, v.clone())));
    ops
}

/// The proxy's view of the cluster and what it applied, per Service.
#[derive(Default)]
struct State {
    /// Where this proxy runs (topology hints are matched against it).
    here: Locality,
    services: HashMap<ServiceRef, Service>,
    /// Slices by (namespace, slice name).
    slices: HashMap<ServiceRef, EndpointSlice>,
    /// TrafficSplits by (namespace, split name).
    splits: HashMap<ServiceRef, TrafficSplit>,
    /// The splits naming each root Service.
    splits_of_root: HashMap<ServiceRef, BTreeSet<ServiceRef>>,
    /// The splits naming each Service as a backend: a change of that Service or its
    /// slices recomputes those splits' roots, and nothing else.
    splits_using: HashMap<ServiceRef, BTreeSet<ServiceRef>>,
    /// What is in the maps for each Service.
    applied: HashMap<ServiceRef, Desired>,
}

impl State {
    fn slices_of(&self, svc: &ServiceRef) -> Vec<&EndpointSlice> {
        let mut v: Vec<&EndpointSlice> = self
            .slices
            .iter()
            .filter(|((ns, _), s)| ns == &svc.0 && owner(s).as_deref() == Some(svc.1.as_str()))
            .map(|(_, s)| s)
            .collect();
        v.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        v
    }

    /// The split that applies to `root`, if any.
    fn split_of(&self, root: &ServiceRef) -> Option<&TrafficSplit> {
        let named: Vec<&TrafficSplit> = self
            .splits_of_root
            .get(root)?
            .iter()
            .filter_map(|k| self.splits.get(k))
            .collect();
        split::effective(&named)
    }

    fn desired_of(&self, svc: &ServiceRef) -> Desired {
        let Some(s) = self.services.get(svc) else {
            return Desired::new();
        };
        let slices = self.slices_of(svc);
        // Node ports carry what the ClusterIP entries got; Local needs the node's name.
        let node = Some(self.here.node.as_str()).filter(|n| !n.is_empty());
        let Some(ts) = self.split_of(svc) else {
            let cluster = desired_at(s, &slices, &self.here);
            return nodeport::with_node_ports(s, &slices, cluster, node);
        };
        let backends: Vec<split::SplitBackend<'_>> = ts
            .spec
            .backends
            .iter()
            .map(|b| {
                let r = (svc.0.clone(), b.service.clone());
                split::SplitBackend {
                    weight: b.weight,
                    service: self.services.get(&r),
                    slices: self.slices_of(&r),
                }
            })
            .collect();
        let cluster = split::desired(s, &slices, &backends, &self.here);
        nodeport::with_node_ports(s, &slices, cluster, node)
    }

    /// The Services whose entries depend on Service `svc` (itself, and the roots of the
    /// splits naming it as a backend).
    fn dependents(&self, svc: &ServiceRef) -> BTreeSet<ServiceRef> {
        let mut out = BTreeSet::from([svc.clone()]);
        for k in self.splits_using.get(svc).into_iter().flatten() {
            if let Some(ts) = self.splits.get(k) {
                out.insert((k.0.clone(), ts.spec.service.clone()));
            }
        }
        out
    }

    /// Records split `k` (or its removal) in the indexes; returns the roots to
    /// recompute (the old and the new one).
    fn set_split(&mut self, k: &ServiceRef, new: Option<TrafficSplit>) -> BTreeSet<ServiceRef> {
        let mut roots = BTreeSet::new();
        if let Some(old) = self.splits.remove(k) {
            let root = (k.0.clone(), old.spec.service.clone());
            remove_from(&mut self.splits_of_root, &root, k);
            for b in &old.spec.backends {
                remove_from(&mut self.splits_using, &(k.0.clone(), b.service.clone()), k);
            }
            roots.insert(root);
        }
        if let Some(ts) = new {
            let root = (k.0.clone(), ts.spec.service.clone());
            self.splits_of_root
                .entry(root.clone())
                .or_default()
                .insert(k.clone());
            for b in &ts.spec.backends {
                self.splits_using
                    .entry((k.0.clone(), b.service.clone()))
                    .or_default()
                    .insert(k.clone());
            }
            roots.insert(root);
            self.splits.insert(k.clone(), ts);
        }
        for root in &roots {
            self.warn_if_contested(root);
        }
        roots
    }

    /// Two splits naming one root: says which one is used (the same on every node).
    fn warn_if_contested(&self, root: &ServiceRef) {
        let named = self.splits_of_root.get(root).map_or(0, BTreeSet::len);
        if named > 1
            && let Some(used) = self.split_of(root)
        {
            tracing::warn!(
                message = "several TrafficSplits name one root service; the oldest is used",
                namespace = %root.0,
                service = %root.1,
                used = used.metadata.name.as_deref().unwrap_or(""),
                splits = named,
            );
        }
    }

    /// Applies the difference for one Service; what was applied is recorded only when
    /// every write succeeded (a failure leads to a resync).
    fn sync_one(&mut self, lb: &mut Loader, svc: ServiceRef) -> Result<(), ProxyError> {
        let new = self.desired_of(&svc);
        let old = self.applied.get(&svc).cloned().unwrap_or_default();
        apply(lb, &diff(&old, &new))?;
        if new.is_empty() {
            self.applied.remove(&svc);
        } else {
            self.applied.insert(svc, new);
        }
        Ok(())
    }
}

fn remove_from(
    index: &mut HashMap<ServiceRef, BTreeSet<ServiceRef>>,
    at: &ServiceRef,
    k: &ServiceRef,
) {
    if let Some(set) = index.get_mut(at) {
        set.remove(k);
        if set.is_empty() {
            index.remove(at);
        }
    }
}

fn owner(s: &EndpointSlice) -> Option<String> {
    s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL).cloned()
}

fn key_of(obj: &Value) -> ServiceRef {
    (
        object::namespace(obj).unwrap_or("").to_string(),
        object::name(obj).to_string(),
    )
}

fn apply(lb: &mut Loader, ops: &[Op]) -> Result<(), ProxyError> {
    for op in ops {
        match op {
            Op::Upsert(k, v) => lb.upsert_service(*k, v)?,
            Op::Remove(k) => lb.remove_service(k)?,
        }
    }
    Ok(())
}

/// Installs `ip route replace blackhole <cidr>` in the caller's network namespace
/// (idempotent).
pub fn blackhole_service_cidr(cidr: &str) -> Result<(), ProxyError> {
    let out = std::process::Command::new("ip")
        .args(["route", "replace", "blackhole", cidr])
        .output()
        .map_err(|e| ProxyError::Route(format!("running ip: {e}")))?;
    if !out.status.success() {
        return Err(ProxyError::Route(format!(
            "ip route replace blackhole {cidr}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Loads (or re-opens) the programs, installs the blackhole route and sets up NodePort
/// (node addresses, tcx programs on the external interfaces); the agent calls this on
/// start and hands the loader to [`run`].
pub fn start(config: &ProxyConfig) -> Result<Loader, ProxyError> {
    if let Some(cidr) = &config.service_cidr {
        blackhole_service_cidr(cidr)?;
    }
    let mut lb = Loader::load(&config.pin_dir, &config.cgroup)?;
    nodeport::setup(&mut lb, config.nodeport_interfaces.as_deref())?;
    Ok(lb)
}

/// [`run_at`] for a proxy that does not know its node (topology hints are ignored).
pub async fn run(store: Store, lb: Loader, map_writes: Arc<AtomicU64>) {
    run_at(store, lb, Locality::default(), map_writes).await
}

/// Follows Services, EndpointSlices and TrafficSplits forever, keeping the maps equal
/// to them for a proxy on `here`. A failed watch or map write re-lists every kind and
/// reconciles against the maps. `map_writes` gets the loader's count of map updates
/// and deletes after each change (for tests and metrics: one Service's change costs a
/// few, however many exist).
pub async fn run_at(store: Store, mut lb: Loader, here: Locality, map_writes: Arc<AtomicU64>) {
    loop {
        if let Err(error) = follow(&store, &mut lb, &here, &map_writes).await {
            tracing::warn!(message = "service proxy resync", %error);
        }
        tokio::time::sleep(RELIST_AFTER).await;
    }
}

/// [`run`] under a supervisor (`drover_actors::supervise`): a panic restarts it with
/// the pinned maps re-opened (traffic never stops; the relist reconciles), under the
/// default restart budget. `first` is the loader [`start`] returned.
pub async fn supervised(
    store: Store,
    first: Loader,
    config: ProxyConfig,
    map_writes: Arc<AtomicU64>,
) -> drover_actors::supervise::Outcome {
    let first = Arc::new(std::sync::Mutex::new(Some(first)));
    drover_actors::supervise::run(
        "service-proxy".into(),
        drover_actors::restart::RestartPolicy::default(),
        move || {
            let (store, config, writes) = (store.clone(), config.clone(), map_writes.clone());
            let first = first.lock().ok().and_then(|mut f| f.take());
            async move {
                let lb = match first {
                    Some(lb) => lb,
                    None => loop {
                        match start(&config) {
                            Ok(lb) => break lb,
                            Err(error) => {
                                tracing::warn!(message = "service proxy reload failed", %error);
                                tokio::time::sleep(RELIST_AFTER).await;
                            }
                        }
                    },
                };
                run_at(store, lb, config.locality.clone(), writes).await
            }
        },
    )
    .await
}

fn decode<K: serde::de::DeserializeOwned>(v: Value) -> Option<K> {
    match serde_json::from_value(v) {
        Ok(k) => Some(k),
        Err(error) => {
            tracing::warn!(message = "service proxy skips an undecodable object", %error);
            None
        }
    }
}

async fn follow(
    store: &Store,
    lb: &mut Loader,
    here: &Locality,
    map_writes: &AtomicU64,
) -> Result<(), ProxyError> {
    let svc_kind = bus_schema::kinds::of::<Service>();
    let slice_kind = bus_schema::kinds::of::<EndpointSlice>();
    let split_kind = bus_schema::kinds::of::<TrafficSplit>();
    let svcs = store.list(svc_kind, None, &ListOptions::default()).await?;
    let slices = store
        .list(slice_kind, None, &ListOptions::default())
        .await?;
    let splits = store
        .list(split_kind, None, &ListOptions::default())
        .await?;
    let mut state = State {
        here: here.clone(),
        ..State::default()
    };
    for v in splits.items {
        let k = key_of(&v);
        if let Some(ts) = decode::<TrafficSplit>(v) {
            state.set_split(&k, Some(ts));
        }
    }
    for v in svcs.items {
        let k = key_of(&v);
        if let Some(s) = decode::<Service>(v) {
            state.services.insert(k, s);
        }
    }
    for v in slices.items {
        let k = key_of(&v);
        if let Some(s) = decode::<EndpointSlice>(v) {
            state.slices.insert(k, s);
        }
    }
    let mut wanted = Desired::new();
    let refs: Vec<ServiceRef> = state.services.keys().cloned().collect();
    for r in refs {
        let d = state.desired_of(&r);
        wanted.extend(d.clone());
        if !d.is_empty() {
            state.applied.insert(r, d);
        }
    }
    apply(lb, &reconcile(&lb.services(), &wanted))?;
    map_writes.store(lb.map_writes(), Ordering::Relaxed);
    tracing::info!(
        services = state.applied.len(),
        splits = state.splits.len(),
        entries = wanted.len(),
        "service proxy synced"
    );
    let mut svc_watch = store
        .watch(
            svc_kind,
            None,
            svcs.resource_version,
            WatchOptions::default(),
        )
        .await?;
    let mut slice_watch = store
        .watch(
            slice_kind,
            None,
            slices.resource_version,
            WatchOptions::default(),
        )
        .await?;
    let mut split_watch = store
        .watch(
            split_kind,
            None,
            splits.resource_version,
            WatchOptions::default(),
        )
        .await?;
    // Addresses come and go (a pod bridge created later, DHCP): re-read them now and then.
    let mut addresses = tokio::time::interval(nodeport::ADDRESS_REFRESH);
    addresses.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = addresses.tick() => {
                if let Err(error) = nodeport::refresh_node_ips(lb) {
                    tracing::warn!(message = "reading the node's addresses failed", %error);
                }
            }
            ev = svc_watch.next() => {
                let ev = ev.ok_or_else(|| StoreError::Nats("service watch ended".into()))??;
                let (obj, gone) = match ev {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => (o, false),
                    WatchEvent::Deleted(o) => (o, true),
                    WatchEvent::Bookmark(_) => continue,
                };
                let k = key_of(&obj);
                match (gone, decode::<Service>(obj)) {
                    (false, Some(s)) => { state.services.insert(k.clone(), s); }
                    _ => { state.services.remove(&k); }
                }
                for svc in state.dependents(&k) {
                    state.sync_one(lb, svc)?;
                }
                map_writes.store(lb.map_writes(), Ordering::Relaxed);
            }
            ev = slice_watch.next() => {
                let ev = ev.ok_or_else(|| StoreError::Nats("endpointslice watch ended".into()))??;
                let (obj, gone) = match ev {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => (o, false),
                    WatchEvent::Deleted(o) => (o, true),
                    WatchEvent::Bookmark(_) => continue,
                };
                let k = key_of(&obj);
                // The Services the slice belonged to before and after this change.
                let before = state.slices.get(&k).and_then(owner);
                match (gone, decode::<EndpointSlice>(obj)) {
                    (false, Some(s)) => { state.slices.insert(k.clone(), s); }
                    _ => { state.slices.remove(&k); }
                }
                let after = state.slices.get(&k).and_then(owner);
                let owners: BTreeSet<String> = before.into_iter().chain(after).collect();
                let affected: BTreeSet<ServiceRef> = owners
                    .into_iter()
                    .flat_map(|name| state.dependents(&(k.0.clone(), name)))
                    .collect();
                for svc in affected {
                    state.sync_one(lb, svc)?;
                }
                map_writes.store(lb.map_writes(), Ordering::Relaxed);
            }
            ev = split_watch.next() => {
                let ev = ev.ok_or_else(|| StoreError::Nats("trafficsplit watch ended".into()))??;
                let (obj, gone) = match ev {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => (o, false),
                    WatchEvent::Deleted(o) => (o, true),
                    WatchEvent::Bookmark(_) => continue,
                };
                let k = key_of(&obj);
                let new = if gone { None } else { decode::<TrafficSplit>(obj) };
                for root in state.set_split(&k, new) {
                    state.sync_one(lb, root)?;
                }
                map_writes.store(lb.map_writes(), Ordering::Relaxed);
            }
        }
    }
}

pub mod nodeport;

#[cfg(test)]
mod tests;
