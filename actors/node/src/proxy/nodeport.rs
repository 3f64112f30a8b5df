//! NodePort in the service proxy. A Service of type NodePort or LoadBalancer gets, for
//! each port with a `nodePort`, one more map entry keyed by
//! [`ServiceKey::node_port`] with the same backends, weights and affinity as its
//! ClusterIP port ([`entries`]). The programs reach that entry at every address of the
//! node: sockets on the node and in pods through the cgroup programs (127.0.0.1 too,
//! from the host's network namespace, as kube-proxy allows for IPv4), packets from
//! outside through the tcx programs on the external interfaces ([`setup`]).
//!
//! `externalTrafficPolicy: Local` adds an external-only entry
//! ([`ServiceKey::node_port_external`]) with this node's endpoints only, which the tcx
//! programs prefer; sockets on the node and in pods keep the Cluster entry, as
//! kube-proxy short-circuits traffic from inside the cluster. That needs the node's name
//! ([`with_node_ports`] with `Some(node)`); without it Local is treated as Cluster. The
//! client's address is preserved either way (the programs never SNAT), so under Cluster
//! a backend on another node would answer the client directly: NodePort traffic from
//! outside works for backends on the node that received it; see `bpf/c/nodeport.bpf.h`.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};

use drover_bpf::{Backend, Loader, ServiceKey};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::Deserialize;

use super::{Desired, ProxyError, protocol};

/// The nodePort entries of `svc`, given its ClusterIP entries `cluster` (what
/// [`super::desired`] returned): one per port of a NodePort or LoadBalancer Service that
/// has a nodePort in 1..=65535, with the entry of the same port and protocol. A port
/// without a ClusterIP entry (an unsupported protocol, no IPv4 ClusterIP) gets none.
pub fn entries(svc: &Service, cluster: &Desired) -> Desired {
    let mut out = Desired::new();
    let Some(spec) = &svc.spec else { return out };
    if !matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer")) {
        return out;
    }
    for sp in spec.ports.iter().flatten() {
        let (Some(proto), Ok(port), Some(node_port)) = (
            protocol(sp.protocol.as_deref()),
            u16::try_from(sp.port),
            sp.node_port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0),
        ) else {
            continue;
        };
        let entry = cluster
            .iter()
            .find(|(k, _)| !k.is_node_port() && k.port == port && k.proto == proto);
        if let Some((_, lb)) = entry {
            out.insert(ServiceKey::node_port(node_port, proto), lb.clone());
        }
    }
    out
}

/// The external-only entries of `svc` on node `node` when its
/// `externalTrafficPolicy` is Local: one per nodePort entry in `node_ports` (what
/// [`entries`] returned), with the same affinity and only the endpoints of `slices`
/// whose `nodeName` is `node`: the ready ones, or, when none is ready, the serving and
/// terminating ones (kube-proxy's order). No local endpoint gives an entry without
/// backends: packets from outside are dropped, as under kube-proxy.
pub fn local_entries(
    svc: &Service,
    slices: &[&EndpointSlice],
    node_ports: &Desired,
    node: &str,
) -> Desired {
    let mut out = Desired::new();
    let Some(spec) = &svc.spec else { return out };
    if spec.external_traffic_policy.as_deref() != Some("Local") {
        return out;
    }
    for sp in spec.ports.iter().flatten() {
        let (Some(proto), Some(node_port)) = (
            protocol(sp.protocol.as_deref()),
            sp.node_port.and_then(|p| u16::try_from(p).ok()),
        ) else {
            continue;
        };
        let Some(entry) = node_ports.get(&ServiceKey::node_port(node_port, proto)) else {
            continue;
        };
        let name = sp.name.as_deref().unwrap_or("");
        let local: Vec<_> = super::candidates(slices, name, proto)
            .into_iter()
            .filter(|c| c.node.as_deref() == Some(node))
            .collect();
        let pick = |f: fn(&super::topology::Candidate) -> bool| -> BTreeSet<SocketAddrV4> {
            local.iter().filter(|c| f(c)).map(|c| c.addr).collect()
        };
        let (ready, terminating) = (pick(|c| c.ready), pick(|c| c.serving_terminating));
        let chosen = if ready.is_empty() { terminating } else { ready };
        out.insert(
            ServiceKey::node_port_external(node_port, proto),
            drover_bpf::Service {
                backends: chosen
                    .into_iter()
                    .map(|addr| Backend { addr, weight: 1 })
                    .collect(),
                affinity: entry.affinity,
            },
        );
    }
    out
}

/// `cluster` (the ClusterIP entries of `svc`) with its nodePort entries added, and,
/// when the proxy knows its `node`, the external-only entries of
/// `externalTrafficPolicy: Local` ([`local_entries`]).
pub fn with_node_ports(
    svc: &Service,
    slices: &[&EndpointSlice],
    mut cluster: Desired,
    node: Option<&str>,
) -> Desired {
    let node_ports = entries(svc, &cluster);
    if let Some(node) = node {
        cluster.extend(local_entries(svc, slices, &node_ports, node));
    }
    cluster.extend(node_ports);
    cluster
}

#[derive(Deserialize)]
struct IpLink {
    #[serde(default)]
    addr_info: Vec<IpAddrInfo>,
}

#[derive(Deserialize)]
struct IpAddrInfo {
    #[serde(default)]
    family: String,
    #[serde(default)]
    local: Option<String>,
}

#[derive(Deserialize)]
struct IpRoute {
    #[serde(default)]
    dev: Option<String>,
}

/// The node's addresses from `ip -j -4 addr show`: every IPv4 address except
/// 127.0.0.0/8 (the programs treat localhost apart: the host's only, not a pod's).
pub fn parse_addresses(json: &str) -> Result<BTreeSet<Ipv4Addr>, ProxyError> {
    let links: Vec<IpLink> = serde_json::from_str(json)
        .map_err(|e| ProxyError::NodePort(format!("parsing `ip -j addr`: {e}")))?;
    Ok(links
        .iter()
        .flat_map(|l| &l.addr_info)
        .filter(|a| a.family == "inet")
        .filter_map(|a| a.local.as_deref()?.parse::<Ipv4Addr>().ok())
        .filter(|ip| !ip.is_loopback())
        .collect())
}

/// The interfaces of the default routes from `ip -j -4 route show default`, each once,
/// in order.
pub fn parse_default_interfaces(json: &str) -> Result<Vec<String>, ProxyError> {
    let routes: Vec<IpRoute> = serde_json::from_str(json)
        .map_err(|e| ProxyError::NodePort(format!("parsing `ip -j route`: {e}")))?;
    let mut out: Vec<String> = Vec::new();
    for dev in routes.into_iter().filter_map(|r| r.dev) {
        if !out.contains(&dev) {
            out.push(dev);
        }
    }
    Ok(out)
}

fn ip_json(args: &[&str]) -> Result<String, ProxyError> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| ProxyError::NodePort(format!("running ip: {e}")))?;
    if !out.status.success() {
        return Err(ProxyError::NodePort(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// How often the proxy re-reads the node's addresses (a change costs map writes only
/// for the addresses that came or went; none when nothing changed).
pub const ADDRESS_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// Re-reads the node's addresses into the programs' map (see [`setup`]).
pub fn refresh_node_ips(lb: &mut Loader) -> Result<(), ProxyError> {
    let ips = parse_addresses(&ip_json(&["-j", "-4", "addr", "show"])?)?;
    lb.set_node_ips(&ips)?;
    Ok(())
}

/// Tells the programs the node's addresses (every IPv4 address of the caller's network
/// namespace but loopback) and attaches the tcx programs to `interfaces`, or, when
/// `None`, to the interfaces of the default route (none without one: nodePorts are then
/// reached from the node only). Idempotent: unchanged addresses and links cost nothing.
/// A failed attach (an unknown interface, a kernel without tcx) is logged as a warning
/// and leaves NodePort from outside off; it never stops the proxy, whose ClusterIPs
/// and node-local nodePorts work without TC.
pub fn setup(lb: &mut Loader, interfaces: Option<&[String]>) -> Result<(), ProxyError> {
    refresh_node_ips(lb)?;
    let ifaces = match interfaces {
        Some(i) => i.iter().filter(|i| !i.is_empty()).cloned().collect(),
        None => parse_default_interfaces(&ip_json(&["-j", "-4", "route", "show", "default"])?)?,
    };
    match lb.attach_nodeport(&ifaces) {
        Ok(()) => {
            tracing::info!(interfaces = ?ifaces, "nodeport programs attached");
        }
        Err(error) => {
            tracing::warn!(
                message = "nodePorts are not reachable from outside this node",
                interfaces = ?ifaces,
                %error
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
