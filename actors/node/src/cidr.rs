//! IPv4 CIDRs: parsing, the pick of a node's pod CIDR out of the cluster CIDR, and pod
//! IPs inside a node's CIDR. Pure functions; the claim itself (a CAS on the store) lives in
//! [`crate::agent`].

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The cluster CIDR node pod CIDRs are carved from when none is configured (flannel's and
/// kubeadm's usual choice).
pub const DEFAULT_CLUSTER_CIDR: &str = "10.244.0.0/16";

/// Prefix length of each node's pod CIDR (/24: 254 pod IPs, above the 110-pod default).
pub const DEFAULT_NODE_CIDR_PREFIX: u8 = 24;

/// An IPv4 network, normalised (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    base: u32,
    prefix: u8,
}

/// Why a CIDR did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cidr {0:?}: want a.b.c.d/n with n <= 32")]
pub struct CidrError(pub String);

impl Ipv4Cidr {
    /// The network containing `addr` with `prefix` bits.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Cidr> {
        (prefix <= 32).then(|| Ipv4Cidr {
            base: u32::from(addr) & mask(prefix),
            prefix,
        })
    }

    /// First address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    /// Prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Number of addresses.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix as u32)
    }

    /// Whether `addr` is inside.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == self.base
    }

    /// The `idx`-th address (`None` past the end).
    pub fn nth(&self, idx: u64) -> Option<Ipv4Addr> {
        (idx < self.size()).then(|| Ipv4Addr::from(self.base + idx as u32))
    }

    /// The subnets of length `prefix` in order (empty if `prefix` is shorter than ours).
    pub fn subnets(&self, prefix: u8) -> impl Iterator<Item = Ipv4Cidr> + '_ {
        let count = if prefix < self.prefix || prefix > 32 {
            0
        } else {
            1u64 << (prefix - self.prefix)
        };
        let step = if prefix > 32 {
            0
        } else {
            1u64 << (32 - prefix as u32)
        };
        (0..count).map(move |i| Ipv4Cidr {
            base: self.base + (i * step) as u32,
            prefix,
        })
    }

    /// Addresses a pod may get: skips the network address, the first host (the bridge
    /// gateway) and the broadcast address.
    pub fn pod_ips(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let size = self.size();
        (2..size.saturating_sub(1)).filter_map(move |i| self.nth(i))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CidrError(s.to_string());
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Ipv4Cidr::new(addr, prefix).ok_or_else(bad)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

/// The first `node_prefix` subnet of `cluster` that no string in `taken` names (strings
/// that do not parse are ignored: they cannot collide with a well-formed pick).
pub fn next_free(cluster: Ipv4Cidr, node_prefix: u8, taken: &BTreeSet<String>) -> Option<Ipv4Cidr> {
    let taken: BTreeSet<Ipv4Cidr> = taken.iter().filter_map(|s| s.parse().ok()).collect();
    cluster.subnets(node_prefix).find(|c| !taken.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        for (input, want) in [
            ("10.244.0.0/16", Some("10.244.0.0/16")),
            ("10.244.3.7/24", Some("10.244.3.0/24")),
            ("0.0.0.0/0", Some("0.0.0.0/0")),
            ("10.0.0.1/32", Some("10.0.0.1/32")),
            ("10.0.0.0/33", None),
            ("10.0.0.0", None),
            ("nonsense/8", None),
        ] {
            let got = input.parse::<Ipv4Cidr>().ok().map(|c| c.to_string());
            assert_eq!(got.as_deref(), want, "{input}");
        }
    }

    #[test]
    fn picks_first_free_subnet() {
        let cluster: Ipv4Cidr = "10.244.0.0/16".parse().unwrap();
        let taken: BTreeSet<String> = ["10.244.0.0/24", "10.244.1.0/24", "garbage"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            next_free(cluster, 24, &taken).unwrap().to_string(),
            "10.244.2.0/24"
        );
        let small: Ipv4Cidr = "10.0.0.0/23".parse().unwrap();
        let full: BTreeSet<String> = ["10.0.0.0/24", "10.0.1.0/24"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(next_free(small, 24, &full), None);
        assert_eq!(cluster.subnets(24).count(), 256);
    }

    #[test]
    fn pod_ips_skip_network_gateway_broadcast() {
        let c: Ipv4Cidr = "10.244.5.0/24".parse().unwrap();
        let ips: Vec<Ipv4Addr> = c.pod_ips().collect();
        assert_eq!(ips.len(), 253);
        assert_eq!(ips[0], Ipv4Addr::new(10, 244, 5, 2));
        assert_eq!(*ips.last().unwrap(), Ipv4Addr::new(10, 244, 5, 254));
        assert!(c.contains(ips[7]));
    }
}
