//! Routes to every peer's pod CIDR, programmed from the gossip membership.
//!
//! Each node's pods live on its `drover0` bridge inside the node's pod CIDR. For a pod on
//! node A to reach a pod on node B, A needs `B's pod CIDR via B's address`: a plain host
//! route over the node network (flannel's `host-gw`), no tunnel and no NAT (the CNI
//! conflist has `ipMasq: false`), so a pod sees the other pod's own IP as the source.
//!
//! The decision is pure: [`desired`] turns the member list into the route set and
//! [`diff`] compares it with what is programmed. [`start`] is the shell: it follows
//! `Membership::watch()` and runs `ip route` in the agent's network namespace, as the
//! agent does for its bridge ([`crate::dns::ensure_bridge`]) and the Service CIDR.
//!
//! What is trusted: the member list comes from the network, so only a pod CIDR inside the
//! cluster CIDR, not overlapping this node's own, with an IPv4 unicast next hop outside
//! the cluster CIDR is ever programmed. Every route carries the protocol number
//! [`ROUTE_PROTO`], so the agent lists (and replaces or removes) only its own routes,
//! also those a previous run of the agent left behind.
//!
//! Lifetimes: a member that is Down keeps its route (its pods may still run, and a route
//! to a dead node is harmless); the route goes when the member is forgotten (foca forgets
//! down members after 10 minutes) or another member advertises a different CIDR. A
//! stopped agent keeps its routes too: its pods keep running (see
//! [`crate::NodeAgent::stop`]) and still need the way back to the other nodes; the next
//! agent on the node adopts them through [`ROUTE_PROTO`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use drover_membership::{Member, MemberState};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::cidr::Ipv4Cidr;

/// The routing protocol number drover's pod routes carry (`ip route ... proto 157`), so
/// they can be told from everyone else's. Unassigned in iproute2's `rt_protos`.
pub const ROUTE_PROTO: u8 = 157;

/// How long a failed `ip route` waits before the whole set is reconciled again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Pod CIDR -> next hop (the peer's node address).
pub type RouteSet = BTreeMap<Ipv4Cidr, Ipv4Addr>;

/// One change to the route table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteOp {
    /// `ip route replace <cidr> via <via>`: add, or move to another next hop.
    Replace {
        /// The peer's pod CIDR.
        cidr: Ipv4Cidr,
        /// The peer's address.
        via: Ipv4Addr,
    },
    /// `ip route del <cidr>`.
    Delete {
        /// The CIDR no member advertises any more.
        cidr: Ipv4Cidr,
    },
}

impl std::fmt::Display for RouteOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteOp::Replace { cidr, via } => write!(f, "replace {cidr} via {via}"),
            RouteOp::Delete { cidr } => write!(f, "delete {cidr}"),
        }
    }
}

/// What this node is, for [`desired`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    /// This node's name (its own member is skipped).
    pub name: String,
    /// This node's gossip address's IP (a member there is this node too).
    pub addr: IpAddr,
    /// The cluster CIDR: nothing outside it is ever routed.
    pub cluster: Ipv4Cidr,
    /// This node's pod CIDR: nothing overlapping it is routed elsewhere.
    pub pod_cidr: Ipv4Cidr,
}

/// Parses a pod CIDR as advertised: canonical (no host bits), inside the cluster CIDR.
fn pod_cidr_of(text: &str, cluster: Ipv4Cidr) -> Option<Ipv4Cidr> {
    let cidr: Ipv4Cidr = text.parse().ok()?;
    // `10.244.1.7/24` parses (normalised) but no agent advertises it: refuse, as it
    // means a broken or hostile peer.
    if cidr.to_string() != text {
        return None;
    }
    (cidr.prefix() >= cluster.prefix() && cluster.contains(cidr.network())).then_some(cidr)
}

fn overlaps(a: Ipv4Cidr, b: Ipv4Cidr) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

/// A next hop is usable if it is an IPv4 unicast address outside the cluster CIDR (a pod
/// IP as next hop would loop) that is not loopback: the peer's node address.
fn next_hop(addr: IpAddr, cluster: Ipv4Cidr) -> Option<Ipv4Addr> {
    let IpAddr::V4(ip) = addr else { return None };
    let bad = ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_link_local()
        || cluster.contains(ip);
    (!bad).then_some(ip)
}

/// Which member wins a CIDR two members advertise: Alive over Suspect over Down (a node
/// that came back under a new address, or a CIDR re-claimed after its owner was
/// removed), then by name and address so every run decides alike.
fn rank(m: &Member) -> (u8, &str, std::net::SocketAddr) {
    let state = match m.state {
        MemberState::Alive => 0,
        MemberState::Suspect => 1,
        MemberState::Down => 2,
    };
    (state, &*m.name, m.addr)
}

/// The routes this node should have for `members` (the membership view, itself included).
pub fn desired(local: &Local, members: &[Member]) -> RouteSet {
    let mut winners: BTreeMap<Ipv4Cidr, &Member> = BTreeMap::new();
    for m in members {
        if *m.name == *local.name || m.addr.ip() == local.addr {
            continue;
        }
        let Some(cidr) = pod_cidr_of(&m.metadata.pod_cidr, local.cluster) else {
            continue;
        };
        if overlaps(cidr, local.pod_cidr) || next_hop(m.addr.ip(), local.cluster).is_none() {
            continue;
        }
        match winners.get(&cidr) {
            Some(current) if rank(current) <= rank(m) => {}
            _ => {
                winners.insert(cidr, m);
            }
        }
    }
    winners
        .into_iter()
        .filter_map(|(cidr, m)| Some((cidr, next_hop(m.addr.ip(), local.cluster)?)))
        .collect()
}

/// What turns `programmed` into `desired`: deletions first, then replacements, each in
/// CIDR order. Routes already right are left alone (no `ip` call for them).
pub fn diff(programmed: &RouteSet, desired: &RouteSet) -> Vec<RouteOp> {
    let deletes = programmed
        .keys()
        .filter(|cidr| !desired.contains_key(*cidr))
        .map(|&cidr| RouteOp::Delete { cidr });
    let replaces = desired
        .iter()
        .filter(|(cidr, via)| programmed.get(*cidr) != Some(*via))
        .map(|(&cidr, &via)| RouteOp::Replace { cidr, via });
    deletes.chain(replaces).collect()
}

/// Parses `ip -4 route show proto 157`: `10.244.1.0/24 via 192.168.200.12 dev eth0`
/// lines (a `/32` is printed without its prefix). Lines without a gateway are skipped.
pub fn parse_routes(output: &str) -> RouteSet {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let dst = words.next()?;
            let cidr: Ipv4Cidr = if dst.contains('/') {
                dst.parse().ok()?
            } else {
                format!("{dst}/32").parse().ok()?
            };
            let mut words = words.skip_while(|w| *w != "via");
            words.next()?;
            let via: Ipv4Addr = words.next()?.parse().ok()?;
            Some((cidr, via))
        })
        .collect()
}

/// The `ip` arguments for one change.
pub fn ip_args(op: &RouteOp) -> Vec<String> {
    let mut args: Vec<String> = vec!["-4".into(), "route".into()];
    match op {
        RouteOp::Replace { cidr, via } => {
            args.extend([
                "replace".into(),
                cidr.to_string(),
                "via".into(),
                via.to_string(),
            ]);
        }
        RouteOp::Delete { cidr } => args.extend(["del".into(), cidr.to_string()]),
    }
    args.extend(["proto".into(), ROUTE_PROTO.to_string()]);
    args
}

/// Why an `ip` command failed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// `ip` could not be run.
    #[error("running ip: {0}")]
    Spawn(#[from] std::io::Error),
    /// `ip` refused (an unreachable next hop, say).
    #[error("ip {args}: {stderr}")]
    Failed {
        /// The arguments.
        args: String,
        /// What it said.
        stderr: String,
    },
}

async fn ip(args: &[String]) -> Result<String, RouteError> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(RouteError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Reads the routes drover programmed in this network namespace.
pub async fn programmed() -> Result<RouteSet, RouteError> {
    let args: Vec<String> = vec![
        "-4".into(),
        "route".into(),
        "show".into(),
        "proto".into(),
        ROUTE_PROTO.to_string(),
    ];
    Ok(parse_routes(&ip(&args).await?))
}

/// Applies one change; deleting a route that is already gone succeeds.
pub async fn apply(op: &RouteOp) -> Result<(), RouteError> {
    match ip(&ip_args(op)).await {
        Err(RouteError::Failed { stderr, .. })
            if matches!(op, RouteOp::Delete { .. }) && stderr.contains("No such process") =>
        {
            Ok(())
        }
        other => other.map(|_| ()),
    }
}

/// Turns on IPv4 forwarding in this network namespace: packets for the node's pods
/// arrive on the node's interface and leave on `drover0`, and back.
pub fn enable_forwarding() -> std::io::Result<()> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1\n")
}

/// The running route follower; [`Routes::stop`] ends it.
pub struct Routes {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Routes {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Routes {
    /// Stops following the membership; the routes stay (see the module docs).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Follows `view` and keeps this network namespace's pod routes equal to
/// [`desired`]`(local, view)`. Failures are logged and retried every [`RETRY_AFTER`];
/// nothing here panics or gives up while the membership runs. The task runs in the
/// caller's tracing span.
pub fn start(local: Local, mut view: watch::Receiver<Arc<Vec<Member>>>) -> Routes {
    let (stop_tx, mut stop_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        if let Err(error) = enable_forwarding() {
            tracing::warn!(message = "enabling ipv4 forwarding failed; pods on other nodes may be unreachable", %error);
        }
        // What an earlier agent on this node left is ours to adopt or remove.
        let mut current = match programmed().await {
            Ok(set) => set,
            Err(error) => {
                tracing::warn!(message = "listing pod routes failed", %error);
                RouteSet::new()
            }
        };
        loop {
            let members = view.borrow_and_update().clone();
            let want = desired(&local, &members);
            let mut failed = false;
            for op in diff(&current, &want) {
                match apply(&op).await {
                    Ok(()) => {
                        tracing::info!(message = "pod route", %op);
                        match op {
                            RouteOp::Replace { cidr, via } => current.insert(cidr, via),
                            RouteOp::Delete { cidr } => current.remove(&cidr),
                        };
                    }
                    Err(error) => {
                        tracing::warn!(message = "pod route failed; retrying", %op, %error);
                        failed = true;
                    }
                }
            }
            tokio::select! {
                changed = view.changed() => {
                    if changed.is_err() {
                        // The membership stopped; the routes stay for the pods.
                        return;
                    }
                }
                () = tokio::time::sleep(RETRY_AFTER), if failed => {}
                _ = &mut stop_rx => return,
            }
        }
    }
    .instrument(tracing::Span::current()));
    Routes {
        stop: Some(stop_tx),
        task: Some(task),
    }
}

#[cfg(test)]
mod tests;
