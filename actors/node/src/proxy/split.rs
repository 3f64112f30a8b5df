//! TrafficSplit (`drover.io/v1`) in the service proxy: clients keep connecting to the
//! root Service's VIP, and new connections are spread over the backend Services'
//! endpoints so that each backend *Service* gets `weight / sum(weights)` of them
//! whatever its number of endpoints (SMI's TrafficSplit semantics, at connection
//! level). I/O-free.
//!
//! - Ports: a root port takes, in each backend Service, the port of the same name and
//!   protocol; failing that (unnamed ports, or a backend naming them differently), the
//!   port of the same number and protocol. A backend without such a port takes no share
//!   of that root port.
//! - Endpoints of each backend are chosen as for the backend itself (ready first, then
//!   serving terminating; topology hints applied, [`super::topology`]).
//! - Weight 0 takes a backend out; a backend without usable endpoints (deleted, scaled
//!   to zero, not ready) gives its share to the others instead of black-holing it.
//! - No backend left (all weights 0, no endpoints anywhere): the root's own endpoints,
//!   as SMI specifies for traffic the split does not cover ("the default service
//!   backend, the Kubernetes service that matches the root name"). A split is a
//!   refinement of the root and never makes it fail where the root alone would not.
//! - Two splits naming one root: the oldest (creationTimestamp, then name) is used,
//!   the others are ignored with a warning ([`effective`]).

use std::collections::BTreeMap;
use std::net::SocketAddrV4;

use bus_schema::drover::TrafficSplit;
use drover_bpf::{Backend as LbBackend, MAX_SLOTS};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::topology::{Locality, usable};
use super::{Desired, PortSpec, candidates, cluster_vip, desired_at, ports_of};

/// One backend of a split as the proxy sees it.
#[derive(Debug, Clone)]
pub struct SplitBackend<'a> {
    /// The backend's relative weight.
    pub weight: u32,
    /// The backend Service, when it exists.
    pub service: Option<&'a Service>,
    /// Its EndpointSlices.
    pub slices: Vec<&'a EndpointSlice>,
}

/// The split that applies to a root among all splits naming it: the oldest by
/// creationTimestamp, then by name (deterministic on every node).
pub fn effective<'a>(splits: &[&'a TrafficSplit]) -> Option<&'a TrafficSplit> {
    splits.iter().copied().min_by(|a, b| {
        let ka = (
            a.metadata.creation_timestamp.is_none(),
            &a.metadata.creation_timestamp,
            &a.metadata.name,
        );
        let kb = (
            b.metadata.creation_timestamp.is_none(),
            &b.metadata.creation_timestamp,
            &b.metadata.name,
        );
        ka.cmp(&kb)
    })
}

/// Per-endpoint weights for groups of `(service weight, number of endpoints)`, so that
/// group `i` gets `weight_i / sum` of the slots whatever its size; one weight per
/// endpoint, in the group's endpoint order. Groups of weight 0 or without endpoints get
/// nothing.
///
/// Exact when it fits: `weight_i * L / n_i` (`L` the least common multiple of the
/// counts) reduced by the common divisor, when that needs at most [`MAX_SLOTS`] slots
/// (90/10 over 1 and 3 endpoints: 27, 1, 1, 1). Otherwise the weights *are* the slot
/// counts: the [`MAX_SLOTS`] slots are shared between the groups by largest remainder
/// (each group within one slot of its share, 0.1%), then within a group as evenly as
/// integers allow. Left to the slot layout, per-endpoint rounding could move a group
/// by one slot per endpoint (70/30 over 97 and 89 endpoints came out 66/34). A group
/// with fewer slots than endpoints gives one slot to as many as it has; `seed` picks
/// which (starting at `seed % n`), so nodes seeded differently use different subsets.
pub fn endpoint_weights(groups: &[(u32, usize)], seed: u64) -> Vec<Vec<u32>> {
    let live = |w: u32, n: usize| w > 0 && n > 0;
    let mut lcm: u128 = 1;
    for &(_, n) in groups.iter().filter(|(w, n)| live(*w, *n)) {
        lcm = lcm / gcd(lcm, n as u128) * n as u128;
        if lcm > MAX_SLOTS as u128 {
            break;
        }
    }
    let each: Vec<u128> = groups
        .iter()
        .map(|&(w, n)| {
            if live(w, n) {
                u128::from(w) * lcm / n as u128
            } else {
                0
            }
        })
        .collect();
    let g = each.iter().fold(0, |g, e| gcd(g, *e)).max(1);
    let slots: u128 = groups
        .iter()
        .zip(&each)
        .map(|((_, n), e)| *n as u128 * e / g)
        .sum();
    // `lcm` past MAX_SLOTS stopped early (not a multiple of every count), and would
    // need more slots than there are anyway.
    if lcm <= MAX_SLOTS as u128 && slots <= MAX_SLOTS as u128 {
        return groups
            .iter()
            .zip(&each)
            // At most MAX_SLOTS, so it fits.
            .map(|((_, n), e)| vec![u32::try_from(e / g).unwrap_or(u32::MAX); *n])
            .collect();
    }
    let sum: u128 = groups
        .iter()
        .filter(|(w, n)| live(*w, *n))
        .map(|(w, _)| u128::from(*w))
        .sum();
    let max = MAX_SLOTS as u128;
    let mut per_group: Vec<u128> = groups
        .iter()
        .map(|&(w, n)| {
            if live(w, n) {
                u128::from(w) * max / sum
            } else {
                0
            }
        })
        .collect();
    let mut left = max - per_group.iter().sum::<u128>();
    let mut by_remainder: Vec<usize> = (0..groups.len())
        .filter(|&i| live(groups[i].0, groups[i].1))
        .collect();
    by_remainder.sort_by_key(|&i| std::cmp::Reverse(u128::from(groups[i].0) * max % sum));
    for i in by_remainder {
        if left == 0 {
            break;
        }
        per_group[i] += 1;
        left -= 1;
    }
    groups
        .iter()
        .zip(per_group)
        .map(|(&(_, n), total)| {
            if n == 0 {
                return Vec::new();
            }
            let n128 = n as u128;
            let (base, extra) = (total / n128, (total % n128) as usize);
            let start = (seed % n as u64) as usize;
            (0..n)
                .map(|j| {
                    let plus = usize::from((j + n - start) % n < extra);
                    u32::try_from(base).unwrap_or(u32::MAX) + plus as u32
                })
                .collect()
        })
        .collect()
}

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A stable seed from this node's name (FNV-1a), so each node picks its own subset
/// when a group has more endpoints than slots.
fn seed_of(node: &str) -> u64 {
    node.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The port of `backend` that serves root port `root`: same name and protocol, else
/// same number and protocol.
pub fn backend_port(root: &PortSpec, backend: &Service) -> Option<PortSpec> {
    let ports = ports_of(backend);
    let by_name = (!root.name.is_empty())
        .then(|| {
            ports
                .iter()
                .find(|p| p.name == root.name && p.proto == root.proto)
        })
        .flatten();
    by_name
        .or_else(|| {
            ports
                .iter()
                .find(|p| p.port == root.port && p.proto == root.proto)
        })
        .cloned()
}

/// The map entries of a split's root: the root's own entries (VIP, ports, affinity),
/// each port's backends replaced by the weighted endpoints of `backends` when any has
/// usable endpoints for that port (see the module doc).
pub fn desired(
    root: &Service,
    root_slices: &[&EndpointSlice],
    backends: &[SplitBackend<'_>],
    here: &Locality,
) -> Desired {
    let mut out = desired_at(root, root_slices, here);
    let Some(vip) = cluster_vip(root) else {
        return out;
    };
    for rp in ports_of(root) {
        let key = drover_bpf::ServiceKey {
            vip,
            port: rp.port,
            proto: rp.proto,
        };
        let Some(entry) = out.get_mut(&key) else {
            continue;
        };
        let groups: Vec<(u32, Vec<SocketAddrV4>)> = backends
            .iter()
            .filter(|b| b.weight > 0)
            .filter_map(|b| {
                let port = backend_port(&rp, b.service?)?;
                let eps = usable(&candidates(&b.slices, &port.name, port.proto), here);
                (!eps.is_empty()).then(|| (b.weight, eps.into_iter().collect()))
            })
            .collect();
        if groups.is_empty() {
            continue;
        }
        let sizes: Vec<(u32, usize)> = groups.iter().map(|(w, e)| (*w, e.len())).collect();
        // An endpoint in two backends (overlapping selectors) gets both shares.
        let mut weights: BTreeMap<SocketAddrV4, u32> = BTreeMap::new();
        for ((_, eps), ws) in groups
            .iter()
            .zip(endpoint_weights(&sizes, seed_of(&here.node)))
        {
            for (addr, w) in eps.iter().zip(ws) {
                let e = weights.entry(*addr).or_default();
                *e = e.saturating_add(w);
            }
        }
        entry.backends = weights
            .into_iter()
            .map(|(addr, weight)| LbBackend { addr, weight })
            .collect();
    }
    out
}

#[cfg(test)]
mod tests;
