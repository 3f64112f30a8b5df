//! Topology-aware endpoint choice, as kube-proxy does it (`pkg/proxy/topology.go`):
//! the decision rests on the hints the EndpointSlice controller wrote, never on the
//! Service's own fields, so the controller is the one place that reads
//! `trafficDistribution` and the topology annotations.
//!
//! - Every ready endpoint carries `hints.forNodes` and one of them names this node:
//!   only endpoints hinted for this node (`PreferSameNode`).
//! - Else every ready endpoint carries `hints.forZones` and one of them names this
//!   node's zone: only endpoints hinted for this zone (`PreferClose`/`PreferSameZone`,
//!   and the `topology-mode: Auto` annotation).
//! - Else all of them: a missing hint means the controller has not (or could not)
//!   decide, and no local endpoint means sending elsewhere beats failing.
//!
//! When no endpoint is ready, the serving terminating ones (anywhere) are used, so
//! connections drain during a rollout instead of failing. I/O-free.

use std::collections::BTreeSet;
use std::net::SocketAddrV4;

/// Where this proxy runs: the node's name and its `topology.kubernetes.io/zone`.
/// Empty names match no hint, so an unknown locality routes to every endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locality {
    /// This node's name (`endpoint.nodeName`, `hints.forNodes[].name`).
    pub node: String,
    /// This node's zone, when it has one.
    pub zone: Option<String>,
}

/// One endpoint address at one port, with what the topology choice needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Where connections go.
    pub addr: SocketAddrV4,
    /// `conditions.ready` (unset counts as ready).
    pub ready: bool,
    /// `conditions.serving && conditions.terminating`: usable only when nothing is
    /// ready.
    pub serving_terminating: bool,
    /// `hints.forZones[].name`.
    pub for_zones: Vec<String>,
    /// `hints.forNodes[].name`.
    pub for_nodes: Vec<String>,
    /// `nodeName`: where the endpoint runs (`externalTrafficPolicy: Local`).
    pub node: Option<String>,
}

/// Which endpoints a proxy uses for one service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every ready endpoint.
    All,
    /// Ready endpoints hinted for this node.
    SameNode,
    /// Ready endpoints hinted for this node's zone.
    SameZone,
}

/// The topology mode the hints of `candidates` allow on `here` (see the module doc).
pub fn mode(candidates: &[Candidate], here: &Locality) -> Mode {
    let ready: Vec<&Candidate> = candidates.iter().filter(|c| c.ready).collect();
    if ready.is_empty() {
        return Mode::All;
    }
    let all_have = |f: fn(&Candidate) -> &Vec<String>| ready.iter().all(|c| !f(c).is_empty());
    let any_names = |f: fn(&Candidate) -> &Vec<String>, name: &str| {
        !name.is_empty() && ready.iter().any(|c| f(c).iter().any(|n| n == name))
    };
    if all_have(|c| &c.for_nodes) && any_names(|c| &c.for_nodes, &here.node) {
        return Mode::SameNode;
    }
    let zone = here.zone.as_deref().unwrap_or("");
    if all_have(|c| &c.for_zones) && any_names(|c| &c.for_zones, zone) {
        return Mode::SameZone;
    }
    Mode::All
}

/// The addresses this proxy sends new connections to: the ready candidates `mode`
/// keeps, or (none ready anywhere) the serving terminating ones. Sorted, deduplicated.
pub fn usable(candidates: &[Candidate], here: &Locality) -> BTreeSet<SocketAddrV4> {
    let m = mode(candidates, here);
    let zone = here.zone.as_deref().unwrap_or("");
    let keep = |c: &Candidate| match m {
        Mode::All => true,
        Mode::SameNode => c.for_nodes.contains(&here.node),
        Mode::SameZone => c.for_zones.iter().any(|z| z == zone),
    };
    let ready: BTreeSet<SocketAddrV4> = candidates
        .iter()
        .filter(|c| c.ready && keep(c))
        .map(|c| c.addr)
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    candidates
        .iter()
        .filter(|c| c.serving_terminating)
        .map(|c| c.addr)
        .collect()
}

#[cfg(test)]
mod tests;
