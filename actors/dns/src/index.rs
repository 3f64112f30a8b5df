//! The in-memory index of Services and EndpointSlices, and the I/O-free name -> records
//! logic over it, following the schema of CoreDNS's kubernetes plugin
//! (<https://github.com/kubernetes/dns/blob/master/docs/specification.md>).
//!
//! Names are matched case-insensitively; answers carry the query's own spelling as owner.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::Value;

/// TTL of every answer and the SOA's negative-caching minimum (CoreDNS's default `ttl 5`).
pub const TTL: u32 = 5;

/// What a query resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The name is not this server's to answer (outside the zone, or a reverse name of
    /// an address no Service or endpoint has): forwarded upstream when upstreams are
    /// configured, else REFUSED.
    Refused,
    /// The name does not exist in the zone (the SOA goes into authority).
    NxDomain,
    /// The name exists; no `answers` means NODATA (the SOA goes into authority).
    Records {
        /// The answer section.
        answers: Vec<Rec>,
        /// Addresses of SRV targets (headless services).
        additionals: Vec<Rec>,
    },
}

/// One resource record, in the index's own terms (the server turns it into hickory's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    /// Owner name, fully qualified with the trailing dot.
    pub name: String,
    /// The record data.
    pub data: Data,
}

/// Record data the zone serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// IPv4 address.
    A(Ipv4Addr),
    /// IPv6 address.
    Aaaa(Ipv6Addr),
    /// Alias (ExternalName services), fully qualified.
    Cname(String),
    /// Service location.
    Srv {
        /// Always 0: every target is equal.
        priority: u16,
        /// `100 / number of records`, as CoreDNS computes it.
        weight: u16,
        /// The port.
        port: u16,
        /// Fully qualified target.
        target: String,
    },
    /// Reverse pointer (`in-addr.arpa` / `ip6.arpa`), fully qualified.
    Ptr(String),
    /// The zone's start of authority.
    Soa(Soa),
}

/// The zone's SOA, as CoreDNS writes it (`ns.dns.<zone>. hostmaster.<zone>.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soa {
    /// Primary server name.
    pub mname: String,
    /// Responsible mailbox.
    pub rname: String,
    /// Bumped on every change of the index.
    pub serial: u32,
}

/// The query types the zone knows (everything else is NODATA on an existing name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QType {
    /// A.
    A,
    /// AAAA.
    Aaaa,
    /// SRV.
    Srv,
    /// CNAME.
    Cname,
    /// SOA.
    Soa,
    /// PTR.
    Ptr,
    /// Any other type.
    Other,
}

/// A Service port (or an EndpointSlice port).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Port {
    name: String,
    /// Lower-case (`tcp`, `udp`, `sctp`).
    protocol: String,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Service {
    cluster_ips: Vec<IpAddr>,
    headless: bool,
    external_name: Option<String>,
    ports: Vec<Port>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    addresses: Vec<IpAddr>,
    hostname: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Slice {
    namespace: String,
    service: String,
    ports: Vec<Port>,
    /// Ready endpoints only: DNS never names an unready one.
    endpoints: Vec<Endpoint>,
}

/// Key of a namespaced object: (namespace, name).
type Key = (String, String);

/// Services and EndpointSlices by namespace/name, for one zone.
#[derive(Debug, Clone)]
pub struct Index {
    zone: String,
    services: BTreeMap<Key, Service>,
    slices: BTreeMap<Key, Slice>,
    serial: u32,
}

fn key(obj: &Value) -> Option<Key> {
    let meta = obj.get("metadata")?;
    Some((
        meta.get("namespace")?.as_str()?.to_string(),
        meta.get("name")?.as_str()?.to_string(),
    ))
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn ports(list: Option<&Value>) -> Vec<Port> {
    let mut out: Vec<Port> = list
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some(Port {
                name: p
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_lowercase(),
                protocol: p
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP")
                    .to_lowercase(),
                port: u16::try_from(p.get("port")?.as_u64()?).ok()?,
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn service(obj: &Value) -> Service {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let external_name = (str_at(spec, "/type") == Some("ExternalName"))
        .then(|| str_at(spec, "/externalName"))
        .flatten()
        .filter(|n| !n.is_empty())
        .map(|n| fqdn(&n.to_lowercase()));
    let mut ips: Vec<&str> = spec
        .get("clusterIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if ips.is_empty() {
        ips.extend(str_at(spec, "/clusterIP"));
    }
    let headless = ips.first() == Some(&"None");
    Service {
        cluster_ips: ips.iter().filter_map(|ip| ip.parse().ok()).collect(),
        headless,
        external_name,
        ports: ports(spec.get("ports")),
    }
}

fn slice(namespace: &str, obj: &Value) -> Option<Slice> {
    let service = str_at(obj, "/metadata/labels/kubernetes.io~1service-name")?.to_string();
    let endpoints = obj
        .get("endpoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        // An absent `ready` means ready (EndpointConditions: "nil should be interpreted
        // as true"); publishNotReadyAddresses is folded into it by the controller.
        .filter(|e| e.pointer("/conditions/ready").and_then(Value::as_bool) != Some(false))
        .map(|e| Endpoint {
            addresses: e
                .get("addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str()?.parse().ok())
                .collect(),
            hostname: e
                .get("hostname")
                .and_then(Value::as_str)
                .filter(|h| !h.is_empty())
                .map(str::to_lowercase),
        })
        .filter(|e| !e.addresses.is_empty())
        .collect();
    Some(Slice {
        namespace: namespace.to_string(),
        service,
        ports: ports(obj.get("ports")),
        endpoints,
    })
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// The label an endpoint address answers to: its hostname, else the address with dashes
/// (CoreDNS's `endpointHostname`).
fn endpoint_label(ep: &Endpoint, addr: &IpAddr) -> String {
    match &ep.hostname {
        Some(h) => h.clone(),
        None => addr.to_string().replace(['.', ':'], "-"),
    }
}

fn addr_rec(name: &str, ip: IpAddr) -> Rec {
    Rec {
        name: name.to_string(),
        data: match ip {
            IpAddr::V4(v4) => Data::A(v4),
            IpAddr::V6(v6) => Data::Aaaa(v6),
        },
    }
}

fn wants(qtype: QType, ip: &IpAddr) -> bool {
    matches!(
        (qtype, ip),
        (QType::A, IpAddr::V4(_)) | (QType::Aaaa, IpAddr::V6(_))
    )
}

fn records(answers: Vec<Rec>) -> Answer {
    Answer::Records {
        answers,
        additionals: Vec::new(),
    }
}

fn nodata() -> Answer {
    records(Vec::new())
}

impl Index {
    /// An empty index for `zone` (e.g. `cluster.local`; case and a trailing dot ignored).
    pub fn new(zone: &str) -> Index {
        Index {
            zone: zone.trim_end_matches('.').to_lowercase(),
            services: BTreeMap::new(),
            slices: BTreeMap::new(),
            serial: 1,
        }
    }

    /// The zone, lower-case, without the trailing dot.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The SOA record of the zone.
    pub fn soa(&self) -> Rec {
        Rec {
            name: fqdn(&self.zone),
            data: Data::Soa(Soa {
                mname: format!("ns.dns.{}.", self.zone),
                rname: format!("hostmaster.{}.", self.zone),
                serial: self.serial,
            }),
        }
    }

    fn bump(&mut self, changed: bool) -> bool {
        if changed {
            self.serial = self.serial.wrapping_add(1).max(1);
        }
        changed
    }

    /// Adds or replaces a Service; returns whether anything DNS serves changed.
    pub fn upsert_service(&mut self, obj: &Value) -> bool {
        let Some(k) = key(obj) else { return false };
        let new = service(obj);
        let changed = self.services.get(&k) != Some(&new);
        self.services.insert(k, new);
        self.bump(changed)
    }

    /// Forgets a Service.
    pub fn remove_service(&mut self, obj: &Value) -> bool {
        let changed = key(obj).is_some_and(|k| self.services.remove(&k).is_some());
        self.bump(changed)
    }

    /// Adds or replaces an EndpointSlice (one without the service-name label is ignored).
    pub fn upsert_slice(&mut self, obj: &Value) -> bool {
        let Some(k) = key(obj) else { return false };
        let changed = match slice(&k.0, obj) {
            Some(new) => self.slices.insert(k, new.clone()) != Some(new),
            None => self.slices.remove(&k).is_some(),
        };
        self.bump(changed)
    }

    /// Forgets an EndpointSlice.
    pub fn remove_slice(&mut self, obj: &Value) -> bool {
        let changed = key(obj).is_some_and(|k| self.slices.remove(&k).is_some());
        self.bump(changed)
    }

    /// Replaces every Service with a fresh list.
    pub fn replace_services(&mut self, objs: &[Value]) -> bool {
        let new: BTreeMap<Key, Service> = objs
            .iter()
            .filter_map(|o| Some((key(o)?, service(o))))
            .collect();
        let changed = new != self.services;
        self.services = new;
        self.bump(changed)
    }

    /// Replaces every EndpointSlice with a fresh list.
    pub fn replace_slices(&mut self, objs: &[Value]) -> bool {
        let new: BTreeMap<Key, Slice> = objs
            .iter()
            .filter_map(|o| {
                let k = key(o)?;
                let s = slice(&k.0, o)?;
                Some((k, s))
            })
            .collect();
        let changed = new != self.slices;
        self.slices = new;
        self.bump(changed)
    }

    /// Ready endpoints of a service, across its slices, with the ports of their slice.
    fn endpoints<'a>(
        &'a self,
        ns: &'a str,
        svc: &'a str,
    ) -> impl Iterator<Item = (&'a Slice, &'a Endpoint)> + 'a {
        self.slices
            .values()
            .filter(move |s| s.namespace == ns && s.service == svc)
            .flat_map(|s| s.endpoints.iter().map(move |e| (s, e)))
    }

    /// The addresses `<svc>.<ns>.svc.<zone>` stands for: the cluster IPs, or for a
    /// headless service its ready endpoints' addresses (sorted, without duplicates).
    fn service_addresses(&self, ns: &str, name: &str, svc: &Service) -> BTreeSet<IpAddr> {
        if svc.headless {
            self.endpoints(ns, name)
                .flat_map(|(_, e)| e.addresses.iter().copied())
                .collect()
        } else {
            svc.cluster_ips.iter().copied().collect()
        }
    }

    /// Answers one question. `qname` is the name as asked (any case, with or without
    /// the trailing dot); it is the owner of the answers.
    pub fn answer(&self, qname: &str, qtype: QType) -> Answer {
        let owner = fqdn(qname);
        let lower = owner.trim_end_matches('.').to_lowercase();
        if let Some(ip) = reverse_ip(&lower) {
            return self.reverse_answer(&owner, ip, qtype);
        }
        let rel = if lower == self.zone {
            ""
        } else if let Some(rel) = lower.strip_suffix(&format!(".{}", self.zone)) {
            rel
        } else {
            return Answer::Refused;
        };
        let labels: Vec<&str> = if rel.is_empty() {
            Vec::new()
        } else {
            rel.split('.').collect()
        };
        match labels.as_slice() {
            [] if qtype == QType::Soa => records(vec![self.soa()]),
            [] | ["svc"] | ["pod"] => nodata(),
            [ns, "svc"] => {
                if self.services.keys().any(|(n, _)| n == ns) {
                    nodata()
                } else {
                    Answer::NxDomain
                }
            }
            [svc, ns, "svc"] => self.service_answer(&owner, ns, svc, qtype, None),
            [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
                let want = (&port[1..], &proto[1..]);
                self.service_answer(&owner, ns, svc, qtype, Some(want))
            }
            [host, svc, ns, "svc"] if !host.starts_with('_') => {
                self.endpoint_answer(&owner, ns, svc, host, qtype)
            }
            [ip, _ns, "pod"] => pod_answer(&owner, ip, qtype),
            _ => Answer::NxDomain,
        }
    }

    fn service_answer(
        &self,
        owner: &str,
        ns: &str,
        name: &str,
        qtype: QType,
        port: Option<(&str, &str)>,
    ) -> Answer {
        let Some(svc) = self.services.get(&(ns.to_string(), name.to_string())) else {
            return Answer::NxDomain;
        };
        if let Some(target) = &svc.external_name {
            // A CNAME owns its name for every type (RFC 1034 3.6.2); the target lies
            // outside the zone and is not chased: nothing leaves this server.
            if port.is_some() {
                return Answer::NxDomain;
            }
            return records(vec![Rec {
                name: owner.to_string(),
                data: Data::Cname(target.clone()),
            }]);
        }
        let matches = |p: &Port| port.is_none_or(|(n, proto)| p.name == n && p.protocol == proto);
        let svc_name = format!("{name}.{ns}.svc.{}.", self.zone);
        // (port, target, target's address) per SRV record, before weights.
        let mut srv: BTreeSet<(u16, String, Option<IpAddr>)> = BTreeSet::new();
        if svc.headless {
            for (slice, ep) in self.endpoints(ns, name) {
                for p in slice.ports.iter().filter(|p| matches(p)) {
                    for addr in &ep.addresses {
                        let target = format!("{}.{svc_name}", endpoint_label(ep, addr));
                        srv.insert((p.port, target, Some(*addr)));
                    }
                }
            }
        } else {
            for p in svc.ports.iter().filter(|p| matches(p)) {
                srv.insert((p.port, svc_name.clone(), None));
            }
        }
        if port.is_some() && srv.is_empty() && !svc.ports.iter().any(matches) {
            return Answer::NxDomain;
        }
        match qtype {
            QType::A | QType::Aaaa => records(
                self.service_addresses(ns, name, svc)
                    .into_iter()
                    .filter(|ip| wants(qtype, ip))
                    .map(|ip| addr_rec(owner, ip))
                    .collect(),
            ),
            QType::Srv => {
                let weight = u16::try_from(100 / srv.len().max(1)).unwrap_or(0);
                let mut additionals = Vec::new();
                let answers = srv
                    .into_iter()
                    .map(|(port, target, addr)| {
                        if let Some(addr) = addr {
                            let rec = addr_rec(&target, addr);
                            if !additionals.contains(&rec) {
                                additionals.push(rec);
                            }
                        }
                        Rec {
                            name: owner.to_string(),
                            data: Data::Srv {
                                priority: 0,
                                weight,
                                port,
                                target,
                            },
                        }
                    })
                    .collect();
                Answer::Records {
                    answers,
                    additionals,
                }
            }
            _ => nodata(),
        }
    }

    fn endpoint_answer(
        &self,
        owner: &str,
        ns: &str,
        name: &str,
        host: &str,
        qtype: QType,
    ) -> Answer {
        match self.services.get(&(ns.to_string(), name.to_string())) {
            Some(svc) if svc.external_name.is_none() => {}
            _ => return Answer::NxDomain,
        }
        let addrs: BTreeSet<IpAddr> = self
            .endpoints(ns, name)
            .flat_map(|(_, ep)| {
                ep.addresses
                    .iter()
                    .filter(move |a| endpoint_label(ep, a) == host)
                    .copied()
            })
            .collect();
        if addrs.is_empty() {
            return Answer::NxDomain;
        }
        records(
            addrs
                .into_iter()
                .filter(|ip| wants(qtype, ip))
                .map(|ip| addr_rec(owner, ip))
                .collect(),
        )
    }
}

impl Index {
    /// The names an address stands for, as CoreDNS's kubernetes plugin answers a reverse
    /// query (`serviceRecordForIP`): a Service whose cluster IP it is, else every ready
    /// endpoint with that address (`<hostname or dashed-ip>.<svc>.<ns>.svc.<zone>`).
    fn names_of(&self, ip: IpAddr) -> BTreeSet<String> {
        let services: BTreeSet<String> = self
            .services
            .iter()
            .filter(|(_, svc)| svc.external_name.is_none() && svc.cluster_ips.contains(&ip))
            .map(|((ns, name), _)| format!("{name}.{ns}.svc.{}.", self.zone))
            .collect();
        if !services.is_empty() {
            return services;
        }
        self.slices
            .values()
            // A slice whose Service is gone (or became an ExternalName) names nothing.
            .filter(|s| {
                self.services
                    .get(&(s.namespace.clone(), s.service.clone()))
                    .is_some_and(|svc| svc.external_name.is_none())
            })
            .flat_map(|s| {
                s.endpoints
                    .iter()
                    .filter(move |ep| ep.addresses.contains(&ip))
                    .map(move |ep| {
                        format!(
                            "{}.{}.{}.svc.{}.",
                            endpoint_label(ep, &ip),
                            s.service,
                            s.namespace,
                            self.zone
                        )
                    })
            })
            .collect()
    }

    /// A reverse query: PTR records for an address the cluster knows; any other address
    /// is not this server's (CoreDNS's `fallthrough in-addr.arpa ip6.arpa`).
    fn reverse_answer(&self, owner: &str, ip: IpAddr, qtype: QType) -> Answer {
        let names = self.names_of(ip);
        if names.is_empty() {
            return Answer::Refused;
        }
        if qtype != QType::Ptr {
            return nodata();
        }
        records(
            names
                .into_iter()
                .map(|target| Rec {
                    name: owner.to_string(),
                    data: Data::Ptr(target),
                })
                .collect(),
        )
    }
}

/// The address a full reverse name stands for (`4.3.2.1.in-addr.arpa` -> 1.2.3.4, 32
/// nibbles under `ip6.arpa` for IPv6); `None` for anything else, including partial
/// reverse names (zone cuts) and labels with leading zeros or signs.
fn reverse_ip(lower: &str) -> Option<IpAddr> {
    if let Some(rest) = lower.strip_suffix(".in-addr.arpa") {
        let labels: Vec<&str> = rest.split('.').collect();
        if labels.len() != 4 {
            return None;
        }
        let mut octets = [0u8; 4];
        for (i, label) in labels.iter().rev().enumerate() {
            let canonical = !label.is_empty()
                && label.bytes().all(|b| b.is_ascii_digit())
                && (label.len() == 1 || !label.starts_with('0'));
            if !canonical {
                return None;
            }
            octets[i] = label.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    let rest = lower.strip_suffix(".ip6.arpa")?;
    let labels: Vec<&str> = rest.split('.').collect();
    if labels.len() != 32 {
        return None;
    }
    let mut value: u128 = 0;
    for label in labels.iter().rev() {
        let [digit] = label.as_bytes() else {
            return None;
        };
        let nibble = char::from(*digit).to_digit(16)?;
        value = (value << 4) | u128::from(nibble);
    }
    Some(IpAddr::V6(Ipv6Addr::from(value)))
}

/// `1-2-3-4.<ns>.pod.<zone>` -> 1.2.3.4, unchecked against Pods (CoreDNS `pods insecure`).
fn pod_answer(owner: &str, label: &str, qtype: QType) -> Answer {
    let ip: Option<IpAddr> = label
        .replace('-', ".")
        .parse::<Ipv4Addr>()
        .map(IpAddr::V4)
        .ok()
        .or_else(|| {
            label
                .replace('-', ":")
                .parse::<Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        });
    match ip {
        None => Answer::NxDomain,
        Some(ip) if wants(qtype, &ip) => records(vec![addr_rec(owner, ip)]),
        Some(_) => nodata(),
    }
}

#[cfg(test)]
mod tests;
