//! The node's CNI network: a conflist for the containerd CRI plugin, rendered from the
//! node's pod CIDR.
//!
//! One Linux bridge (`drover0`) that is the pods' gateway, host-local IPAM over the pod
//! CIDR, and portmap for `hostPort`s. No loopback entry: containerd's CRI plugin brings up
//! each sandbox's `lo` itself with the `loopback` plugin from the same bin dir.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The network's name in the conflist (and in containerd's logs).
pub const NETWORK_NAME: &str = "drover";
/// The bridge every pod on the node is attached to.
pub const BRIDGE_NAME: &str = "drover0";
/// The conflist's file name; containerd loads the lexically first file in the conf dir.
pub const CONFLIST_FILE: &str = "10-drover.conflist";

/// Errors of CNI config handling.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The pod CIDR is not an IPv4 CIDR with a prefix usable for pods (/8 to /30).
    /// Not retryable: the node's pod CIDR allocation is wrong.
    #[error("pod CIDR {cidr:?}: {reason}")]
    BadCidr {
        /// The rejected input.
        cidr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing the conflist failed. Retryable if transient; nothing was half-written
    /// (the file is replaced by rename).
    #[error("writing the CNI conflist: {0}")]
    Io(#[from] std::io::Error),
}

/// An IPv4 CIDR, checked: the address has no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodCidr {
    /// The network address.
    pub network: Ipv4Addr,
    /// The prefix length.
    pub prefix_len: u8,
}

impl PodCidr {
    /// Parses `10.244.1.0/24`.
    pub fn parse(cidr: &str) -> Result<PodCidr, CniError> {
        let bad = |reason: &str| CniError::BadCidr {
            cidr: cidr.to_string(),
            reason: reason.to_string(),
        };
        let (addr, len) = cidr
            .split_once('/')
            .ok_or_else(|| bad("expected <address>/<prefix length>"))?;
        let network: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix_len: u8 = len.parse().map_err(|_| bad("bad prefix length"))?;
        if !(8..=30).contains(&prefix_len) {
            return Err(bad("prefix length must be between 8 and 30"));
        }
        let mask = u32::MAX << (32 - prefix_len);
        if u32::from(network) & !mask != 0 {
            return Err(bad("host bits are set"));
        }
        Ok(PodCidr {
            network,
            prefix_len,
        })
    }

    /// Whether `ip` lies inside this CIDR.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix_len);
        u32::from(ip) & mask == u32::from(self.network)
    }
}

impl std::fmt::Display for PodCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// Renders the conflist (JSON) for `pod_cidr`, with host-local's records in `ipam_dir`.
pub fn render_conflist(pod_cidr: PodCidr, ipam_dir: &Path) -> String {
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE_NAME,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": ipam_dir.display().to_string(),
                    "ranges": [[{ "subnet": pod_cidr.to_string() }]],
                    "routes": [{ "dst": "0.0.0.0/0" }]
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    });
    // Serializing a json! value cannot fail.
    serde_json::to_string_pretty(&conflist).unwrap_or_default()
}

/// Writes the conflist into `conf_dir` atomically (temp file + rename) and returns its
/// path. containerd's CRI plugin watches the dir and picks it up.
pub fn write_conflist(
    conf_dir: &Path,
    pod_cidr: PodCidr,
    ipam_dir: &Path,
) -> Result<PathBuf, CniError> {
    std::fs::create_dir_all(conf_dir)?;
    let path = conf_dir.join(CONFLIST_FILE);
    let tmp = conf_dir.join(format!(".{CONFLIST_FILE}.tmp"));
    std::fs::write(&tmp, render_conflist(pod_cidr, ipam_dir))?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_cidr(input: &str, expected: Result<(&str, u8), &str>) {
        match (PodCidr::parse(input), expected) {
            (Ok(c), Ok((net, len))) => {
                assert_eq!(c.network.to_string(), net, "{input}");
                assert_eq!(c.prefix_len, len, "{input}");
            }
            (Err(e), Err(reason)) => assert!(e.to_string().contains(reason), "{input}: {e}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn pod_cidrs() {
        check_cidr("10.244.0.0/24", Ok(("10.244.0.0", 24)));
        check_cidr("10.244.0.0/16", Ok(("10.244.0.0", 16)));
        check_cidr("10.244.0.1/24", Err("host bits"));
        check_cidr("10.244.0.0", Err("expected"));
        check_cidr("10.244.0.0/31", Err("between 8 and 30"));
        check_cidr("10.244.0.0/x", Err("bad prefix"));
        check_cidr("fd00::/64", Err("IPv4"));
        check_cidr("", Err("expected"));
    }

    #[test]
    fn contains() {
        let c = PodCidr::parse("10.244.0.0/24").unwrap();
        assert!(c.contains("10.244.0.7".parse().unwrap()));
        assert!(!c.contains("10.244.1.7".parse().unwrap()));
    }

    #[test]
    fn conflist_shape() {
        let c = PodCidr::parse("10.244.3.0/24").unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&render_conflist(c, Path::new("/d/cni/ipam"))).unwrap();
        assert_eq!(v["name"], "drover");
        assert_eq!(v["cniVersion"], "1.0.0");
        let bridge = &v["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "drover0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["dataDir"], "/d/cni/ipam");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.244.3.0/24");
        assert_eq!(v["plugins"][1]["type"], "portmap");
        assert_eq!(v["plugins"][1]["capabilities"]["portMappings"], true);
    }

    #[test]
    fn write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = PodCidr::parse("10.244.0.0/24").unwrap();
        let p = write_conflist(dir.path(), c, Path::new("/i")).unwrap();
        let c2 = PodCidr::parse("10.244.9.0/24").unwrap();
        assert_eq!(write_conflist(dir.path(), c2, Path::new("/i")).unwrap(), p);
        assert!(
            std::fs::read_to_string(&p)
                .unwrap()
                .contains("10.244.9.0/24")
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
