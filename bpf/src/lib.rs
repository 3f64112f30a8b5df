//! drover's eBPF service load balancer: C programs under `c/` built by clang in
//! `build.rs`, embedded in the binary and loaded with aya.
//!
//! Eight cgroup sock_addr programs translate Service VIPs at the socket: `connect4`
//! (TCP and connected UDP) and `sendmsg4` (unconnected UDP) rewrite VIP:port to a
//! backend; `recvmsg4` and `getpeername4` show the VIP back to the application; the `*6`
//! twins do the same for IPv6 sockets addressing a VIP v4-mapped. They are
//! attached to one cgroup v2 through bpf_links that are pinned with the maps under a
//! pin directory, so a restarted agent re-opens the maps and traffic never stops, and a
//! newer build swaps its programs into the same links.
//!
//! [`Loader::upsert_service`] and [`Loader::remove_service`] change one service with a
//! few map updates, independent of how many services exist.
//!
//! NodePort: a service keyed by [`ServiceKey::node_port`] (VIP 0.0.0.0) is reached at any
//! address [`Loader::set_node_ips`] named. Sockets on the node and in pods are translated
//! by the same cgroup programs (127.0.0.1:nodePort too, from the host's network namespace
//! only); packets from outside are translated by a tcx program pair that
//! [`Loader::attach_nodeport`] attaches to the external interfaces: ingress rewrites the
//! destination to a backend and remembers the flow, egress rewrites the replies' source
//! back. Those links are pinned under the same directory, so they too survive a restart.

mod slots;
mod sys;

use std::collections::{BTreeSet, HashMap as StdHashMap};
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::EbpfLoader;
use aya::maps::{Array, HashMap, Map, MapData, MapError};
use aya::programs::{CgroupSockAddr, ProgramError, SchedClassifier};

pub use slots::{MAX_SLOTS, layout};

/// The BPF object clang built from `c/lb.bpf.c` (aligned: the ELF parser rejects a
/// misaligned header).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb.bpf.o"));

/// Production pin directory.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/drover";

/// The programs: name in the object (and pin name), attach type.
const PROGRAMS: [(&str, u32); 8] = [
    ("drover_connect4", sys::CGROUP_INET4_CONNECT),
    ("drover_sendmsg4", sys::CGROUP_UDP4_SENDMSG),
    ("drover_recvmsg4", sys::CGROUP_UDP4_RECVMSG),
    ("drover_getpeername4", sys::CGROUP_INET4_GETPEERNAME),
    ("drover_connect6", sys::CGROUP_INET6_CONNECT),
    ("drover_sendmsg6", sys::CGROUP_UDP6_SENDMSG),
    ("drover_recvmsg6", sys::CGROUP_UDP6_RECVMSG),
    ("drover_getpeername6", sys::CGROUP_INET6_GETPEERNAME),
];

/// The NodePort tcx programs: name in the object (and pin name), attach type, prefix of
/// their links' pins (`<prefix>_<ifindex>` under `<pin_dir>/links`).
const TC_PROGRAMS: [(&str, u32, &str); 2] = [
    ("drover_nodeport_ingress", sys::TCX_INGRESS, "nodeport_in"),
    ("drover_nodeport_egress", sys::TCX_EGRESS, "nodeport_out"),
];

/// The maps, by their names in the object (and under `<pin_dir>/maps`).
const MAPS: [&str; 9] = [
    "services", "slots", "members", "affinity", "rev_nat", "meta", "node_ips", "np_fwd", "np_rev",
];

/// Index in `meta` of the host's network namespace cookie.
const META_HOST_NETNS: u32 = 2;

/// Errors of loading, attaching and updating the BPF programs and maps.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The embedded object failed to parse or its maps failed to be created.
    #[error("loading the bpf object: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program failed the verifier or another program operation failed.
    #[error("bpf program {name}: {source}")]
    Program {
        /// The program's name in the object.
        name: &'static str,
        /// What failed.
        source: ProgramError,
    },
    /// A map operation failed.
    #[error("bpf map {name}: {source}")]
    Map {
        /// The map's name.
        name: &'static str,
        /// What failed.
        source: MapError,
    },
    /// Pinning a map or program on the bpffs failed.
    #[error("pinning {name}: {source}")]
    Pin {
        /// The map or program.
        name: &'static str,
        /// What failed.
        source: aya::pin::PinError,
    },
    /// A file or syscall operation failed (pin directory, cgroup, link, pin).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The object lacks a program or map this crate expects (a build mismatch).
    #[error("the bpf object has no {0}")]
    Missing(&'static str),
    /// All service ids are in use.
    #[error("no free service id")]
    NoServiceId,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BpfError {
    let what = what.into();
    move |source| BpfError::Io { what, source }
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> BpfError {
    move |source| BpfError::Map { name, source }
}

/// The IP protocol of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP (IPPROTO_TCP).
    Tcp,
    /// UDP (IPPROTO_UDP).
    Udp,
}

impl Protocol {
    fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    fn from_number(n: u8) -> Option<Self> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            _ => None,
        }
    }
}

/// One service port as clients address it: the VIP (ClusterIP), port and protocol; a
/// VIP of 0.0.0.0 is a nodePort ([`ServiceKey::node_port`]), 255.255.255.255 a
/// nodePort's external-only entry ([`ServiceKey::node_port_external`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// The virtual IP (0.0.0.0: a nodePort, at every node address).
    pub vip: Ipv4Addr,
    /// The service port.
    pub port: u16,
    /// TCP or UDP.
    pub proto: Protocol,
}

impl ServiceKey {
    /// The key of a nodePort: reached at every address of the node.
    pub fn node_port(port: u16, proto: Protocol) -> ServiceKey {
        ServiceKey {
            vip: Ipv4Addr::UNSPECIFIED,
            port,
            proto,
        }
    }

    /// The key of a nodePort's external-only entry: when present, the TC programs use
    /// it for packets from outside instead of [`ServiceKey::node_port`] (which sockets
    /// on the node keep using); for `externalTrafficPolicy: Local`, this node's
    /// endpoints only.
    pub fn node_port_external(port: u16, proto: Protocol) -> ServiceKey {
        ServiceKey {
            vip: Ipv4Addr::BROADCAST,
            port,
            proto,
        }
    }

    /// Whether this key is a nodePort (either kind).
    pub fn is_node_port(&self) -> bool {
        self.vip.is_unspecified() || self.vip.is_broadcast()
    }
}

/// One ready endpoint and its relative weight (0: gets no new connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// The endpoint address (pod IP and target port).
    pub addr: SocketAddrV4,
    /// Relative share of new connections.
    pub weight: u32,
}

/// What the maps hold for one service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Service {
    /// Ready endpoints; none makes connects fail with ECONNREFUSED.
    pub backends: Vec<Backend>,
    /// ClientIP session affinity timeout (`sessionAffinityConfig.clientIP.timeoutSeconds`);
    /// `None` for no affinity. A client is one network namespace (one pod).
    pub affinity: Option<Duration>,
}

// The C structs as bytes (aya's map types need `Pod`, which byte arrays are without
// unsafe code). Addresses and ports in network byte order, other fields native.

fn svc_key(k: &ServiceKey) -> [u8; 8] {
    let mut b = [0; 8];
    b[0..4].copy_from_slice(&k.vip.octets());
    b[4..6].copy_from_slice(&k.port.to_be_bytes());
    b[6] = k.proto.number();
    b
}

fn decode_svc_key(b: &[u8; 8]) -> Option<ServiceKey> {
    Some(ServiceKey {
        vip: Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        port: u16::from_be_bytes([b[4], b[5]]),
        proto: Protocol::from_number(b[6])?,
    })
}

/// A service value: id, slot count, affinity seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SvcVal {
    id: u32,
    slots: u32,
    affinity_secs: u32,
}

impl SvcVal {
    fn encode(&self) -> [u8; 16] {
        let mut b = [0; 16];
        b[0..4].copy_from_slice(&self.id.to_ne_bytes());
        b[4..8].copy_from_slice(&self.slots.to_ne_bytes());
        b[8..12].copy_from_slice(&self.affinity_secs.to_ne_bytes());
        b
    }

    fn decode(b: &[u8; 16]) -> Self {
        let u = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        SvcVal {
            id: u(0),
            slots: u(4),
            affinity_secs: u(8),
        }
    }
}

fn slot_key(id: u32, slot: u32) -> [u8; 8] {
    let mut b = [0; 8];
    b[0..4].copy_from_slice(&id.to_ne_bytes());
    b[4..8].copy_from_slice(&slot.to_ne_bytes());
    b
}

fn backend_bytes(a: &SocketAddrV4) -> [u8; 8] {
    let mut b = [0; 8];
    b[0..4].copy_from_slice(&a.ip().octets());
    b[4..6].copy_from_slice(&a.port().to_be_bytes());
    b
}

fn decode_backend(b: &[u8; 8]) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        u16::from_be_bytes([b[4], b[5]]),
    )
}

fn member_key(id: u32, a: &SocketAddrV4) -> [u8; 16] {
    let mut b = [0; 16];
    b[0..4].copy_from_slice(&id.to_ne_bytes());
    b[4..12].copy_from_slice(&backend_bytes(a));
    b
}

/// What [`Loader::load`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// Nothing usable was pinned: loaded, attached and pinned anew (maps empty).
    Fresh,
    /// The pins of this same build were re-opened; nothing was reloaded.
    Reopened,
    /// Pins of another build with the same map layout: the maps were kept and each
    /// link's program swapped in place.
    Upgraded,
}

/// The map layout version, also in `meta` of `c/lb.bpf.c`: bump it with any change to a
/// map's type, key or value, so a newer drover loads afresh instead of misreading maps.
const MAPS_LAYOUT: u64 = 2;

/// FNV-1a of the embedded object: tells one build of the programs from another.
fn object_hash() -> u64 {
    OBJECT.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The pinned `meta` map's (object hash, layout), or `None` when it was never written.
fn read_meta(pin_dir: &Path) -> Result<Option<(u64, u64)>, BpfError> {
    let md = MapData::from_pin(map_pin(pin_dir, "meta")).map_err(map_err("meta"))?;
    let meta: Array<MapData, u64> = Array::try_from(Map::Array(md)).map_err(map_err("meta"))?;
    let hash = meta.get(&0, 0).map_err(map_err("meta"))?;
    let layout = meta.get(&1, 0).map_err(map_err("meta"))?;
    Ok((layout != 0).then_some((hash, layout)))
}

/// The loaded, attached load balancer and its maps.
pub struct Loader {
    services: HashMap<MapData, [u8; 8], [u8; 16]>,
    node_ips: HashMap<MapData, [u8; 4], u32>,
    slots: HashMap<MapData, [u8; 8], [u8; 8]>,
    members: HashMap<MapData, [u8; 16], u32>,
    /// Service ids in use, rebuilt from the services map on a re-open.
    ids: StdHashMap<ServiceKey, u32>,
    free_ids: Vec<u32>,
    next_id: u32,
    pin_dir: PathBuf,
    how: Loaded,
    /// Map updates and deletes issued by this loader, for tests and metrics.
    writes: u64,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("pin_dir", &self.pin_dir)
            .field("services", &self.ids.len())
            .field("how", &self.how)
            .finish()
    }
}

impl Loader {
    /// Loads the programs and attaches them to the cgroup v2 at `cgroup`, pinning maps,
    /// programs and links under `pin_dir` (on a bpffs). When `pin_dir` already holds a
    /// complete earlier load, its maps are re-opened and the attached programs keep
    /// running (a restart drops neither map contents nor traffic); when that load was by
    /// another build of the programs with the same map layout, each link's program is
    /// swapped atomically for the new one ([`Loaded::Upgraded`]). Pins with another map
    /// layout, or an incomplete set, are removed and loaded afresh.
    pub fn load(pin_dir: &Path, cgroup: &Path) -> Result<Self, BpfError> {
        let cg = File::open(cgroup).map_err(io(format!("opening cgroup {}", cgroup.display())))?;
        let complete = PROGRAMS
            .iter()
            .all(|(name, _)| link_pin(pin_dir, name).exists())
            && TC_PROGRAMS
                .iter()
                .all(|(name, _, _)| pin_dir.join("programs").join(name).exists())
            && MAPS.iter().all(|m| map_pin(pin_dir, m).exists());
        let meta = if complete { read_meta(pin_dir)? } else { None };
        let how = match meta {
            Some((hash, MAPS_LAYOUT)) if hash == object_hash() => Loaded::Reopened,
            Some((_, MAPS_LAYOUT)) => Loaded::Upgraded,
            _ => Loaded::Fresh,
        };
        if how == Loaded::Fresh && pin_dir.exists() {
            // A load that stopped half-way, or maps of another layout: start over.
            tracing::warn!(pin_dir = %pin_dir.display(), "removing incomplete or incompatible bpf pins");
            unpin(pin_dir)?;
        }
        if how != Loaded::Reopened {
            let r = Self::attach(pin_dir, &cg, cgroup);
            if let Err(e) = r {
                // Nothing half-created by a fresh load: remove what it pinned (which
                // detaches). A failed upgrade leaves every link attached (some may run
                // the new programs) and `meta` naming the old build, so the next load
                // retries it.
                if how == Loaded::Fresh {
                    let _ = unpin(pin_dir);
                }
                return Err(e);
            }
            tracing::info!(pin_dir = %pin_dir.display(), cgroup = %cgroup.display(), ?how, "bpf service load balancer attached");
        }
        let mut l = Self::reopen(pin_dir)?;
        l.how = how;
        l.set_host_netns()?;
        Ok(l)
    }

    /// Records the caller's network namespace as the host's (where 127.0.0.1:nodePort
    /// reaches a nodePort); written only when it differs.
    fn set_host_netns(&mut self) -> Result<(), BpfError> {
        let cookie = sys::netns_cookie().map_err(io("reading the network namespace cookie"))?;
        let md = MapData::from_pin(map_pin(&self.pin_dir, "meta")).map_err(map_err("meta"))?;
        let mut meta: Array<MapData, u64> =
            Array::try_from(Map::Array(md)).map_err(map_err("meta"))?;
        if meta.get(&META_HOST_NETNS, 0).map_err(map_err("meta"))? != cookie {
            let r = meta.set(META_HOST_NETNS, cookie, 0);
            self.wrote(r, "meta")?;
        }
        Ok(())
    }

    /// Loads the object (re-using pinned maps of the same name), pins its programs and
    /// attaches each to `cg`: through a new pinned link, or by swapping the program of
    /// the link already pinned. Writes `meta` last. Every fd it opened closes on return;
    /// the pins hold the rest.
    fn attach(pin_dir: &Path, cg: &File, cgroup: &Path) -> Result<(), BpfError> {
        for sub in ["maps", "programs", "links"] {
            let d = pin_dir.join(sub);
            std::fs::create_dir_all(&d).map_err(io(format!("creating {}", d.display())))?;
        }
        let mut ebpf = EbpfLoader::new()
            .map_pin_path(pin_dir.join("maps"))
            .load(OBJECT)?;
        for (name, attach_type) in PROGRAMS {
            let perr = |source| BpfError::Program { name, source };
            let prog: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or(BpfError::Missing(name))?
                .try_into()
                .map_err(perr)?;
            prog.load().map_err(perr)?;
            let prog_pin = pin_dir.join("programs").join(name);
            remove_pin(&prog_pin)?;
            prog.pin(&prog_pin)
                .map_err(|source| BpfError::Pin { name, source })?;
            let fd = prog.fd().map_err(perr)?;
            let lp = link_pin(pin_dir, name);
            if lp.exists() {
                let link = sys::obj_get(&lp).map_err(io(format!("opening {}", lp.display())))?;
                sys::link_update(link.as_fd(), fd.as_fd())
                    .map_err(io(format!("swapping the program of {name}")))?;
            } else {
                let link = sys::link_create(fd.as_fd(), cg.as_fd(), attach_type)
                    .map_err(io(format!("attaching {name} to {}", cgroup.display())))?;
                sys::pin(link.as_fd(), &lp).map_err(io(format!("pinning the link of {name}")))?;
            }
        }
        for (name, _, prefix) in TC_PROGRAMS {
            let perr = |source| BpfError::Program { name, source };
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or(BpfError::Missing(name))?
                .try_into()
                .map_err(perr)?;
            prog.load().map_err(perr)?;
            let prog_pin = pin_dir.join("programs").join(name);
            remove_pin(&prog_pin)?;
            prog.pin(&prog_pin)
                .map_err(|source| BpfError::Pin { name, source })?;
            let fd = prog.fd().map_err(perr)?;
            // Interfaces already translating keep doing so, with the new program.
            for lp in tc_link_pins(pin_dir, prefix)? {
                let swapped =
                    sys::obj_get(&lp).and_then(|link| sys::link_update(link.as_fd(), fd.as_fd()));
                if let Err(error) = swapped {
                    // Its interface is gone (the link is defunct): drop the pin.
                    tracing::warn!(link = %lp.display(), %error, "removing a nodeport link that cannot be updated");
                    remove_pin(&lp)?;
                }
            }
        }
        let mut meta: Array<&mut MapData, u64> = ebpf
            .map_mut("meta")
            .ok_or(BpfError::Missing("meta"))?
            .try_into()
            .map_err(map_err("meta"))?;
        meta.set(1, MAPS_LAYOUT, 0).map_err(map_err("meta"))?;
        meta.set(0, object_hash(), 0).map_err(map_err("meta"))?;
        Ok(())
    }

    fn reopen(pin_dir: &Path) -> Result<Self, BpfError> {
        let open =
            |name: &'static str| MapData::from_pin(map_pin(pin_dir, name)).map_err(map_err(name));
        let services: HashMap<MapData, [u8; 8], [u8; 16]> =
            HashMap::try_from(Map::HashMap(open("services")?)).map_err(map_err("services"))?;
        let slots = HashMap::try_from(Map::HashMap(open("slots")?)).map_err(map_err("slots"))?;
        let members =
            HashMap::try_from(Map::HashMap(open("members")?)).map_err(map_err("members"))?;
        let node_ips =
            HashMap::try_from(Map::HashMap(open("node_ips")?)).map_err(map_err("node_ips"))?;
        let mut ids = StdHashMap::new();
        let mut used = BTreeSet::new();
        for entry in services.iter() {
            let (k, v) = entry.map_err(map_err("services"))?;
            let id = SvcVal::decode(&v).id;
            used.insert(id);
            if let Some(key) = decode_svc_key(&k) {
                ids.insert(key, id);
            }
        }
        let next_id = used.last().map_or(0, |m| m + 1);
        let free_ids = (0..next_id).filter(|i| !used.contains(i)).collect();
        Ok(Loader {
            services,
            node_ips,
            slots,
            members,
            ids,
            free_ids,
            next_id,
            pin_dir: pin_dir.to_path_buf(),
            how: Loaded::Reopened,
            writes: 0,
        })
    }

    /// What [`Loader::load`] found and did.
    pub fn loaded(&self) -> Loaded {
        self.how
    }

    /// The services the maps hold, by key.
    pub fn services(&self) -> Vec<ServiceKey> {
        let mut v: Vec<_> = self.ids.keys().copied().collect();
        v.sort();
        v
    }

    /// The slot table of a service as the maps hold it (each slot's backend), or `None`
    /// for an unknown service.
    pub fn slot_table(&self, key: &ServiceKey) -> Result<Option<Vec<SocketAddrV4>>, BpfError> {
        let Some(v) = self.lookup(key)? else {
            return Ok(None);
        };
        self.read_slots(v.id, v.slots).map(Some)
    }

    fn lookup(&self, key: &ServiceKey) -> Result<Option<SvcVal>, BpfError> {
        match self.services.get(&svc_key(key), 0) {
            Ok(v) => Ok(Some(SvcVal::decode(&v))),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err("services")(e)),
        }
    }

    fn read_slots(&self, id: u32, n: u32) -> Result<Vec<SocketAddrV4>, BpfError> {
        (0..n)
            .map(|s| {
                self.slots
                    .get(&slot_key(id, s), 0)
                    .map(|b| decode_backend(&b))
                    .map_err(map_err("slots"))
            })
            .collect()
    }

    /// Creates or changes one service: writes only the slots, members and service entry
    /// that differ, in an order that never lets the programs see a slot count beyond the
    /// written slots or a slot naming a backend missing from the members. A failed upsert
    /// leaves the service routable (every slot names a backend); retrying converges,
    /// since the next upsert reads the maps, not a cache.
    pub fn upsert_service(&mut self, key: ServiceKey, svc: &Service) -> Result<(), BpfError> {
        let old = self.lookup(&key)?;
        let id = match (old, self.ids.get(&key)) {
            (Some(v), _) => v.id,
            (None, Some(id)) => *id,
            (None, None) => self.allocate_id()?,
        };
        self.ids.insert(key, id);
        let old_table = match old {
            Some(v) => self.read_slots(v.id, v.slots)?,
            None => Vec::new(),
        };
        let weights: Vec<u32> = svc.backends.iter().map(|b| b.weight).collect();
        let table: Vec<SocketAddrV4> = layout(&weights, MAX_SLOTS)
            .into_iter()
            .map(|i| svc.backends[i].addr)
            .collect();
        let old_members: BTreeSet<SocketAddrV4> = old_table.iter().copied().collect();
        let new_members: BTreeSet<SocketAddrV4> = table.iter().copied().collect();
        for a in new_members.difference(&old_members) {
            let r = self.members.insert(member_key(id, a), 1, 0);
            self.wrote(r, "members")?;
        }
        for (i, a) in table.iter().enumerate() {
            if old_table.get(i) != Some(a) {
                let r = self
                    .slots
                    .insert(slot_key(id, i as u32), backend_bytes(a), 0);
                self.wrote(r, "slots")?;
            }
        }
        let val = SvcVal {
            id,
            slots: table.len() as u32,
            affinity_secs: svc
                .affinity
                .map_or(0, |d| d.as_secs().clamp(1, u64::from(u32::MAX)) as u32),
        };
        if old != Some(val) {
            let r = self.services.insert(svc_key(&key), val.encode(), 0);
            self.wrote(r, "services")?;
        }
        for i in table.len()..old_table.len() {
            let r = self.slots.remove(&slot_key(id, i as u32));
            self.wrote(r, "slots")?;
        }
        for a in old_members.difference(&new_members) {
            let r = self.members.remove(&member_key(id, a));
            self.wrote(r, "members")?;
        }
        Ok(())
    }

    /// Removes one service (its entry first, so no new connection uses it, then its
    /// slots and members). Removing an unknown service is not an error.
    pub fn remove_service(&mut self, key: &ServiceKey) -> Result<(), BpfError> {
        let Some(v) = self.lookup(key)? else {
            if let Some(id) = self.ids.remove(key) {
                self.free_ids.push(id);
            }
            return Ok(());
        };
        let table = self.read_slots(v.id, v.slots)?;
        let r = self.services.remove(&svc_key(key));
        self.wrote(r, "services")?;
        for i in 0..v.slots {
            let r = self.slots.remove(&slot_key(v.id, i));
            self.wrote(r, "slots")?;
        }
        let members: BTreeSet<SocketAddrV4> = table.into_iter().collect();
        for a in &members {
            let r = self.members.remove(&member_key(v.id, a));
            self.wrote(r, "members")?;
        }
        self.ids.remove(key);
        self.free_ids.push(v.id);
        Ok(())
    }

    /// Counts one map update or delete and maps its error.
    fn wrote(&mut self, r: Result<(), MapError>, name: &'static str) -> Result<(), BpfError> {
        self.writes += 1;
        r.map_err(map_err(name))
    }

    /// How many map updates and deletes this loader has issued (one service change costs
    /// a few, however many services exist; an unchanged upsert costs none).
    pub fn map_writes(&self) -> u64 {
        self.writes
    }

    fn allocate_id(&mut self) -> Result<u32, BpfError> {
        if let Some(id) = self.free_ids.pop() {
            return Ok(id);
        }
        let id = self.next_id;
        self.next_id = id.checked_add(1).ok_or(BpfError::NoServiceId)?;
        Ok(id)
    }

    /// The addresses at which nodePorts are reached, as the map holds them.
    pub fn node_ips(&self) -> Result<BTreeSet<Ipv4Addr>, BpfError> {
        self.node_ips
            .keys()
            .map(|k| k.map(Ipv4Addr::from).map_err(map_err("node_ips")))
            .collect()
    }

    /// Makes `ips` the node's addresses, at which nodePorts are reached (from outside
    /// through the tcx programs, from sockets through the cgroup ones); writes only the
    /// addresses that come or go.
    pub fn set_node_ips(&mut self, ips: &BTreeSet<Ipv4Addr>) -> Result<(), BpfError> {
        let old = self.node_ips()?;
        for ip in ips.difference(&old) {
            let r = self.node_ips.insert(ip.octets(), 1, 0);
            self.wrote(r, "node_ips")?;
        }
        for ip in old.difference(ips) {
            let r = self.node_ips.remove(&ip.octets());
            self.wrote(r, "node_ips")?;
        }
        Ok(())
    }

    /// Makes the NodePort programs run on exactly the interfaces `ifaces` (names in the
    /// caller's network namespace): attaches the ingress and egress program through
    /// pinned tcx links where they are missing, and detaches them from interfaces no
    /// longer named. Links already attached are kept (an agent restart never interrupts
    /// NodePort traffic). An interface gets both programs or neither: when attaching
    /// fails (an unknown interface, a kernel before 6.6 without tcx), the links this call
    /// made for that interface are removed and the error names it; interfaces handled
    /// before it keep theirs.
    pub fn attach_nodeport(&mut self, ifaces: &[String]) -> Result<(), BpfError> {
        let mut wanted = BTreeSet::new();
        for name in ifaces {
            let index = sys::ifindex(name).map_err(io(format!("interface {name}")))?;
            wanted.insert((index, name.as_str()));
        }
        let mut progs = Vec::new();
        for (name, attach_type, prefix) in TC_PROGRAMS {
            let prog_pin = self.pin_dir.join("programs").join(name);
            let prog =
                sys::obj_get(&prog_pin).map_err(io(format!("opening {}", prog_pin.display())))?;
            progs.push((name, attach_type, prefix, prog));
        }
        for (index, iface) in &wanted {
            let mut made: Vec<PathBuf> = Vec::new();
            for (name, attach_type, prefix, prog) in &progs {
                let lp = tc_link_pin(&self.pin_dir, prefix, *index);
                if lp.exists() {
                    continue;
                }
                let r = sys::link_create_tcx(prog.as_fd(), *index, *attach_type)
                    .map_err(|e| tcx_error(name, iface, e))
                    .and_then(|link| {
                        sys::pin(link.as_fd(), &lp)
                            .map_err(io(format!("pinning the link of {name} on {iface}")))
                    });
                if let Err(e) = r {
                    for lp in made {
                        let _ = detach_and_unpin(&lp);
                    }
                    return Err(e);
                }
                made.push(lp);
            }
        }
        let indexes: BTreeSet<u32> = wanted.iter().map(|(i, _)| *i).collect();
        for (_, _, prefix) in TC_PROGRAMS {
            for lp in tc_link_pins(&self.pin_dir, prefix)? {
                if tc_link_index(&lp).is_none_or(|i| !indexes.contains(&i)) {
                    detach_and_unpin(&lp)?;
                }
            }
        }
        Ok(())
    }

    /// Runs the NodePort ingress (`ingress`) or egress program once on an Ethernet
    /// frame (BPF_PROG_TEST_RUN, with the live maps) and returns its verdict (-1: pass
    /// on, 2: drop) and the frame as the program left it. For tests and diagnostics: it
    /// is the one way to check the rewritten checksums bit for bit, since veths never
    /// verify TCP/UDP checksums of local traffic.
    pub fn run_nodeport_program(
        &self,
        ingress: bool,
        frame: &[u8],
    ) -> Result<(i32, Vec<u8>), BpfError> {
        let name = TC_PROGRAMS[usize::from(!ingress)].0;
        let prog_pin = self.pin_dir.join("programs").join(name);
        let prog =
            sys::obj_get(&prog_pin).map_err(io(format!("opening {}", prog_pin.display())))?;
        let (ret, out) =
            sys::prog_test_run(prog.as_fd(), frame).map_err(io(format!("test-running {name}")))?;
        Ok((ret as i32, out))
    }

    /// The interface indexes the NodePort programs are attached to (by their pins).
    pub fn nodeport_interfaces(&self) -> Result<BTreeSet<u32>, BpfError> {
        let prefix = TC_PROGRAMS[0].2;
        Ok(tc_link_pins(&self.pin_dir, prefix)?
            .iter()
            .filter_map(|p| tc_link_index(p))
            .collect())
    }

    /// Detaches the programs and drops every map by removing the pin directory.
    pub fn unload(self) -> Result<(), BpfError> {
        let dir = self.pin_dir.clone();
        drop(self);
        unpin(&dir)
    }
}

/// Removes this crate's pins under `pin_dir` (links detach; programs and maps go once
/// nothing else holds them), then the directories if that left them empty, so pins of
/// other programs sharing the directory survive. Missing pins are fine.
pub fn unpin(pin_dir: &Path) -> Result<(), BpfError> {
    for (_, _, prefix) in TC_PROGRAMS {
        for link in tc_link_pins(pin_dir, prefix)? {
            detach_and_unpin(&link)?;
        }
    }
    let files = PROGRAMS
        .iter()
        .flat_map(|(name, _)| [link_pin(pin_dir, name), pin_dir.join("programs").join(name)])
        .chain(
            TC_PROGRAMS
                .iter()
                .map(|(name, _, _)| pin_dir.join("programs").join(name)),
        )
        .chain(MAPS.iter().map(|m| map_pin(pin_dir, m)));
    for f in files {
        remove_pin(&f)?;
    }
    for d in ["links", "programs", "maps"]
        .map(|s| pin_dir.join(s))
        .iter()
        .chain([&pin_dir.to_path_buf()])
    {
        // Not empty (other pins) or already gone: leave it.
        let _ = std::fs::remove_dir(d);
    }
    Ok(())
}

fn map_pin(pin_dir: &Path, name: &str) -> PathBuf {
    pin_dir.join("maps").join(name)
}

fn link_pin(pin_dir: &Path, name: &str) -> PathBuf {
    pin_dir.join("links").join(name)
}

fn tc_link_pin(pin_dir: &Path, prefix: &str, ifindex: u32) -> PathBuf {
    pin_dir.join("links").join(format!("{prefix}_{ifindex}"))
}

/// The interface index in a tcx link's pin name (`<prefix>_<ifindex>`).
fn tc_link_index(pin: &Path) -> Option<u32> {
    pin.file_name()?.to_str()?.rsplit('_').next()?.parse().ok()
}

/// An error attaching a tcx link, with the likely cause when the kernel rejects the
/// attach type itself.
fn tcx_error(prog: &str, iface: &str, source: std::io::Error) -> BpfError {
    let hint = if source.raw_os_error() == Some(libc::EINVAL) {
        " (tcx links need Linux 6.6 or later)"
    } else {
        ""
    };
    BpfError::Io {
        what: format!("attaching {prog} to interface {iface}{hint}"),
        source,
    }
}

/// The pinned tcx links whose names start with `prefix_`.
fn tc_link_pins(pin_dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, BpfError> {
    let dir = pin_dir.join("links");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("reading {}", dir.display()))(e)),
    };
    let start = format!("{prefix}_");
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(io(format!("reading {}", dir.display())))?;
        if e.file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&start))
        {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Detaches the link pinned at `path` at once and removes the pin. A link that is
/// already defunct (its interface gone) only loses its pin.
fn detach_and_unpin(path: &Path) -> Result<(), BpfError> {
    if let Ok(link) = sys::obj_get(path)
        && let Err(error) = sys::link_detach(link.as_fd())
    {
        tracing::debug!(link = %path.display(), %error, "detaching a link failed; unpinning it");
    }
    remove_pin(path)
}

/// Removes a pin; a missing one is fine.
fn remove_pin(path: &Path) -> Result<(), BpfError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("removing {}", path.display()))(e)),
    }
}

#[cfg(test)]
mod tests;
