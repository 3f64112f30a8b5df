//! Service ClusterIP and NodePort allocation decisions (Kubernetes' `ipallocator` and
//! `portallocator` with the service registry's `patchAllocatedValues`): the ranges, the
//! pick of a free value, and what a Service create or update asks of them. Pure
//! functions; [`crate::services`] keeps the allocations in the store.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use bus_schema::validation::FieldError;
use serde_json::{Value, json};

/// `--service-cluster-ip-range` when none is configured (kubeadm's default).
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";

/// `--service-node-port-range` when none is configured.
pub const DEFAULT_NODE_PORT_RANGE: (u32, u32) = (30000, 32767);

/// Which kind of values a [`Range`] hands out (they word their errors differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeKind {
    /// IPv4 cluster IPs.
    Ip,
    /// Node ports.
    Port,
}

/// A range of allocatable values: IPv4 addresses as `u32`, or ports. Like Kubernetes'
/// allocators it has a static band at its start (the first `static_size` values) that
/// dynamic picks use only when the rest is full, so addresses users pin by hand (the DNS
/// service's 10.96.0.10) are not taken by a random pick first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    kind: RangeKind,
    first: u32,
    size: u32,
    static_size: u32,
    text: String,
}

/// Why a range did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {text:?}: {why}")]
pub struct RangeError {
    what: &'static str,
    text: String,
    why: &'static str,
}

/// Why a requested value cannot be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Outside the range.
    NotInRange,
    /// Someone else holds it.
    Allocated,
}

impl Range {
    /// The cluster IP range of an IPv4 CIDR: every address but the network address and
    /// the broadcast address (Kubernetes reserves both). Static band:
    /// `min(max(16, size/16), 256)` addresses.
    pub fn service_cidr(cidr: &str) -> Result<Range, RangeError> {
        let bad = |why| RangeError {
            what: "service cidr",
            text: cidr.to_string(),
            why,
        };
        let (addr, prefix) = cidr
            .trim()
            .split_once('/')
            .ok_or_else(|| bad("want a.b.c.d/n"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("want a.b.c.d/n"))?;
        let prefix: u32 = prefix.parse().map_err(|_| bad("want a.b.c.d/n"))?;
        if !(8..=30).contains(&prefix) {
            return Err(bad("the prefix length must be between 8 and 30"));
        }
        let mask = u32::MAX << (32 - prefix);
        let base = u32::from(addr) & mask;
        let size = (1u32 << (32 - prefix)) - 2;
        Ok(Range {
            kind: RangeKind::Ip,
            first: base + 1,
            size,
            static_size: (size / 16).clamp(16, 256).min(size),
            text: format!("{}/{prefix}", Ipv4Addr::from(base)),
        })
    }

    /// The node port range `lo..=hi`. Static band: `min(max(16, size/32), 128)` ports.
    pub fn node_ports(lo: u32, hi: u32) -> Result<Range, RangeError> {
        if lo == 0 || lo > hi || hi > 65535 {
            return Err(RangeError {
                what: "node port range",
                text: format!("{lo}-{hi}"),
                why: "want 1 <= lo <= hi <= 65535",
            });
        }
        let size = hi - lo + 1;
        Ok(Range {
            kind: RangeKind::Port,
            first: lo,
            size,
            static_size: (size / 32).clamp(16, 128).min(size),
            text: format!("{lo}-{hi}"),
        })
    }

    /// The tenth address of a cluster IP range, the cluster DNS Service's address by
    /// kubeadm's convention (10.96.0.10 in the default range); in the static band, so
    /// no dynamic pick takes it first. `None` for port ranges.
    pub fn dns_ip(&self) -> Option<Ipv4Addr> {
        (self.kind == RangeKind::Ip && self.size > 10).then(|| Ipv4Addr::from(self.first + 9))
    }

    /// What values the range hands out.
    pub fn kind(&self) -> RangeKind {
        self.kind
    }

    /// The range as configured (`10.96.0.0/12`, `30000-32767`).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `v` may be allocated.
    pub fn contains(&self, v: u32) -> bool {
        v >= self.first && v - self.first < self.size
    }

    /// `v` as the API writes it (dotted quad or decimal).
    pub fn render(&self, v: u32) -> String {
        match self.kind {
            RangeKind::Ip => Ipv4Addr::from(v).to_string(),
            RangeKind::Port => v.to_string(),
        }
    }

    /// A value as the API writes it; `None` when it is not one of this kind.
    pub fn parse(&self, s: &str) -> Option<u32> {
        match self.kind {
            RangeKind::Ip => s.parse::<Ipv4Addr>().ok().map(u32::from),
            RangeKind::Port => s.parse().ok(),
        }
    }

    /// A free value for a dynamic allocation: the first free one at or after a random
    /// offset (`random`) in the dynamic band, wrapping; the static band only when the
    /// dynamic one is full. `None` when the range is full.
    pub fn pick(&self, taken: &BTreeSet<u32>, random: u64) -> Option<u32> {
        let band = |lo: u32, hi: u32| -> Option<u32> {
            let len = hi - lo;
            if len == 0 {
                return None;
            }
            let start = lo + (random % u64::from(len)) as u32;
            // Scan from `start` to the end of the band, then from its start, skipping
            // runs of taken values via the ordered set rather than one lookup each.
            first_free(taken, self.first + start, self.first + hi)
                .or_else(|| first_free(taken, self.first + lo, self.first + start))
        };
        band(self.static_size, self.size).or_else(|| band(0, self.static_size))
    }

    /// Whether a requested `v` may be had given `taken`.
    pub fn check(&self, v: u32, taken: &BTreeSet<u32>) -> Result<(), Refused> {
        if !self.contains(v) {
            Err(Refused::NotInRange)
        } else if taken.contains(&v) {
            Err(Refused::Allocated)
        } else {
            Ok(())
        }
    }

    /// Kubernetes' message for a refused request.
    pub fn message(&self, why: Refused) -> String {
        let what = match self.kind {
            RangeKind::Ip => "IP",
            RangeKind::Port => "port",
        };
        match why {
            Refused::Allocated => format!("provided {what} is already allocated"),
            Refused::NotInRange => format!(
                "provided {what} is not in the valid range. The range of valid {what}s is {}",
                self.text
            ),
        }
    }
}

/// The first value in `lo..hi` not in `taken`.
fn first_free(taken: &BTreeSet<u32>, lo: u32, hi: u32) -> Option<u32> {
    let mut candidate = lo;
    for &t in taken.range(lo..hi) {
        if t != candidate {
            break;
        }
        candidate += 1;
    }
    (candidate < hi).then_some(candidate)
}

/// A registry entry: the owning Service (`namespace/name`) and when it claimed the
/// value (unix seconds).
pub fn entry(owner: &str, now: u64) -> String {
    format!("{owner}@{now}")
}

/// The owner and claim time of a registry entry (time `None` when absent or garbled).
pub fn parse_entry(entry: &str) -> (&str, Option<u64>) {
    match entry.rsplit_once('@') {
        Some((owner, at)) => (owner, at.parse().ok()),
        None => (entry, None),
    }
}

/// Whether an entry claimed at `claimed_at` is old enough that its owner not holding the
/// value means a leak rather than a create still in flight. Entries without a time count
/// as old.
pub fn may_be_leaked(claimed_at: Option<u64>, now: u64, grace_secs: u64) -> bool {
    claimed_at.is_none_or(|at| now.saturating_sub(at) >= grace_secs)
}

/// One value a Service wants from a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// Any free value (a dynamic pick).
    Any,
    /// This value (as written in the object).
    Specific(String),
}

/// What a Service create or update needs from the allocators, decided from the old and
/// the new object. The new object has been patched: cluster IP and node ports carried
/// over from the old one where the update left them out, node ports dropped when the
/// type no longer uses them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// The cluster IP to claim (`None`: none needed, or the old object holds it).
    pub ip: Option<Want>,
    /// Node ports to claim: index in `spec.ports` and what.
    pub ports: Vec<(usize, Want)>,
}

/// The service types that get a cluster IP.
fn needs_cluster_ip(spec: &Value) -> bool {
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    ty != "ExternalName" && cluster_ip(spec) != "None"
}

/// The service types whose ports get node ports.
fn needs_node_ports(spec: &Value) -> bool {
    matches!(
        spec.get("type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    )
}

fn cluster_ip(spec: &Value) -> &str {
    spec.get("clusterIP").and_then(Value::as_str).unwrap_or("")
}

fn ports(spec: &Value) -> Vec<&Value> {
    spec.get("ports")
        .and_then(Value::as_array)
        .map(|p| p.iter().collect())
        .unwrap_or_default()
}

fn node_port(port: &Value) -> Option<i64> {
    port.get("nodePort")
        .and_then(Value::as_i64)
        .filter(|n| *n != 0)
}

fn port_name(port: &Value) -> &str {
    port.get("name").and_then(Value::as_str).unwrap_or("")
}

/// The cluster IP `spec` holds (none for headless and ExternalName services).
pub fn held_ip(spec: &Value) -> Option<String> {
    let ip = cluster_ip(spec);
    (needs_cluster_ip(spec) && !ip.is_empty()).then(|| ip.to_string())
}

/// The node ports `spec` holds, as written.
pub fn held_ports(spec: &Value) -> BTreeSet<String> {
    if !needs_node_ports(spec) {
        return BTreeSet::new();
    }
    ports(spec)
        .into_iter()
        .filter_map(node_port)
        .map(|n| n.to_string())
        .collect()
}

/// Decides what `new` (a Service's `spec`, defaulted and validated) needs, patching it
/// as the API server does; `old` is the stored spec on update. Errors are the 422
/// field errors Kubernetes reports (an immutable cluster IP, a node port on a
/// ClusterIP service).
pub fn plan(old: Option<&Value>, new: &mut Value) -> Result<Plan, Vec<FieldError>> {
    let mut errors = Vec::new();
    if let Some(old) = old {
        carry_over(old, new);
        let (old_ip, new_ip) = (cluster_ip(old), cluster_ip(new));
        let external = |s: &Value| s.get("type").and_then(Value::as_str) == Some("ExternalName");
        if !external(old) && !external(new) && old_ip != new_ip {
            errors.push(FieldError::invalid(
                "spec.clusterIP",
                new_ip,
                "field is immutable",
            ));
        }
    }
    if !needs_node_ports(new) {
        for (i, p) in ports(new).into_iter().enumerate() {
            if node_port(p).is_some() {
                let ty = new
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("ClusterIP");
                errors.push(FieldError::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    format!("may not be used when `type` is '{ty}'"),
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut plan = Plan::default();
    let held_before = old.and_then(held_ip);
    if needs_cluster_ip(new) {
        let ip = cluster_ip(new).to_string();
        if ip.is_empty() {
            plan.ip = Some(Want::Any);
        } else if held_before.as_deref() != Some(ip.as_str()) {
            plan.ip = Some(Want::Specific(ip));
        }
    }
    let ports_before = old.map(held_ports).unwrap_or_default();
    if needs_node_ports(new) {
        let mut seen = BTreeSet::new();
        for (i, p) in ports(new).into_iter().enumerate() {
            match node_port(p) {
                None => plan.ports.push((i, Want::Any)),
                Some(n) => {
                    let n = n.to_string();
                    // A port number listed twice (TCP and UDP on one node port) is one
                    // allocation, as in Kubernetes.
                    if !ports_before.contains(&n) && seen.insert(n.clone()) {
                        plan.ports.push((i, Want::Specific(n)));
                    }
                }
            }
        }
    }
    Ok(plan)
}

/// Kubernetes' `patchAllocatedValues` and `dropTypeDependentFields`: an update that
/// leaves out the cluster IP or a node port keeps the old one; node ports go when the
/// type no longer uses them and the update did not change them.
fn carry_over(old: &Value, new: &mut Value) {
    if needs_cluster_ip(old) && cluster_ip(new).is_empty() && new_wants_ip(new) {
        for key in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if let Some(v) = old.get(key) {
                new[key] = v.clone();
            }
        }
    }
    if needs_node_ports(old) && needs_node_ports(new) {
        let by_name: BTreeMap<&str, i64> = ports(old)
            .into_iter()
            .filter_map(|p| node_port(p).map(|n| (port_name(p), n)))
            .collect();
        let used: BTreeSet<i64> = ports(new).into_iter().filter_map(node_port).collect();
        let patch: Vec<(usize, i64)> = ports(new)
            .into_iter()
            .enumerate()
            .filter(|(_, p)| node_port(p).is_none())
            .filter_map(|(i, p)| by_name.get(port_name(p)).map(|n| (i, *n)))
            .filter(|(_, n)| !used.contains(n))
            .collect();
        for (i, n) in patch {
            new["ports"][i]["nodePort"] = json!(n);
        }
    }
    if needs_node_ports(old) && !needs_node_ports(new) {
        let old_ports = held_ports(old);
        if let Some(list) = new.get_mut("ports").and_then(Value::as_array_mut) {
            for p in list.iter_mut().filter_map(Value::as_object_mut) {
                let unchanged = p
                    .get("nodePort")
                    .and_then(Value::as_i64)
                    .is_some_and(|n| old_ports.contains(&n.to_string()));
                if unchanged {
                    p.remove("nodePort");
                }
            }
        }
    }
}

/// Whether `new`'s type gets a cluster IP (ignoring its clusterIP field).
fn new_wants_ip(new: &Value) -> bool {
    new.get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        != "ExternalName"
}

/// Writes the allocated cluster IP into `spec` with the dual-stack fields Kubernetes
/// fills for a single-stack IPv4 cluster.
pub fn set_ip(spec: &mut Value, ip: &str) {
    spec["clusterIP"] = json!(ip);
    spec["clusterIPs"] = json!([ip]);
    spec["ipFamilies"] = json!(["IPv4"]);
    spec["ipFamilyPolicy"] = json!("SingleStack");
}

/// Fills the dual-stack fields of a service that has a cluster IP (requested or
/// headless) but not them.
pub fn fill_families(spec: &mut Value) {
    let ip = cluster_ip(spec).to_string();
    if ip.is_empty() || !new_wants_ip(spec) {
        return;
    }
    if spec.get("clusterIPs").is_none_or(Value::is_null) {
        spec["clusterIPs"] = json!([ip]);
    }
    if spec.get("ipFamilies").is_none_or(Value::is_null) {
        spec["ipFamilies"] = json!(["IPv4"]);
    }
    if spec.get("ipFamilyPolicy").is_none_or(Value::is_null) {
        spec["ipFamilyPolicy"] = json!("SingleStack");
    }
}

#[cfg(test)]
mod tests;
