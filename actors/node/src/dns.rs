//! The node-local cluster DNS: each agent serves the cluster zone (drover-dns) on its
//! pod network's gateway address, port 53, and publishes that address as an endpoint
//! of the `kube-system/kube-dns` Service. Pods get `nameserver <kube-dns ClusterIP>`
//! (10.96.0.10 by default) in their resolv.conf; the service proxy translates it to a
//! DNS endpoint (its own node's first: the Service asks for `PreferSameNode`), so a
//! lookup never leaves the node and needs no address configuration.
//!
//! The bridge is created here (before any pod exists) so the server can bind the
//! gateway address; the CNI bridge plugin adopts it as it is.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use drover_store::{Store, StoreError};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use crate::cni::{BRIDGE_NAME, PodCidr};

/// The cluster DNS Service's namespace and name (as in Kubernetes).
pub const SERVICE_NAMESPACE: &str = "kube-system";
/// The cluster DNS Service's name.
pub const SERVICE_NAME: &str = "kube-dns";
/// The label value naming who manages the per-node slices.
pub const MANAGED_BY: &str = "drover-agent";

/// The node-local DNS server's settings.
#[derive(Debug, Clone)]
pub struct NodeDnsConfig {
    /// The cluster domain (`cluster.local`).
    pub zone: String,
    /// The port on the gateway address (53).
    pub port: u16,
    /// Resolvers names outside the zone are forwarded to (none: refused).
    pub upstreams: Vec<SocketAddr>,
}

impl Default for NodeDnsConfig {
    fn default() -> Self {
        NodeDnsConfig {
            zone: "cluster.local".into(),
            port: 53,
            upstreams: Vec::new(),
        }
    }
}

/// Why the node DNS could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeDnsError {
    /// The pod CIDR is unusable.
    #[error("pod cidr: {0}")]
    Cidr(#[from] crate::cni::CniError),
    /// Creating the bridge failed.
    #[error("bridge {BRIDGE_NAME}: {0}")]
    Bridge(String),
    /// The server could not bind.
    #[error("dns server: {0}")]
    Server(#[from] drover_dns::DnsError),
    /// Publishing the endpoint failed.
    #[error("publishing the dns endpoint: {0}")]
    Store(#[from] StoreError),
}

/// The pods' gateway on a node with `cidr`: its first address (host-local IPAM's
/// default, which the bridge plugin puts on the bridge).
pub fn gateway(cidr: &PodCidr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network) + 1)
}

/// The per-node EndpointSlice that makes this node's DNS server an endpoint of
/// `kube-system/kube-dns` (no selector: nobody else writes these).
pub fn endpoint_slice(node: &str, zone: Option<&str>, addr: Ipv4Addr, port: u16) -> Value {
    let mut ep = json!({
        "addresses": [addr.to_string()],
        "conditions": {"ready": true, "serving": true, "terminating": false},
        "nodeName": node,
    });
    // Hints as the EndpointSlice controller writes them for `PreferSameNode`, so each
    // node's proxy picks its own node's server (and its zone's, next).
    ep["hints"] = json!({"forNodes": [{"name": node}]});
    if let Some(z) = zone {
        ep["zone"] = json!(z);
        ep["hints"]["forZones"] = json!([{"name": z}]);
    }
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name(node),
            "namespace": SERVICE_NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": SERVICE_NAME,
                "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
            },
        },
        "addressType": "IPv4",
        "endpoints": [ep],
        "ports": [
            {"name": "dns", "port": port, "protocol": "UDP"},
            {"name": "dns-tcp", "port": port, "protocol": "TCP"},
        ],
    })
}

/// The slice's name for a node.
pub fn slice_name(node: &str) -> String {
    // Node names are DNS subdomains (<= 253); the prefix keeps the result one too.
    let mut name = format!("kube-dns-node-{node}");
    name.truncate(253);
    name
}

/// Creates the pod bridge with the gateway address (idempotent; in the caller's network
/// namespace).
pub fn ensure_bridge(gateway: Ipv4Addr, prefix_len: u8) -> Result<(), NodeDnsError> {
    let ip = |args: &[&str]| -> Result<std::process::Output, NodeDnsError> {
        std::process::Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| NodeDnsError::Bridge(format!("running ip: {e}")))
    };
    let exists = ip(&["link", "show", "dev", BRIDGE_NAME])?.status.success();
    if !exists {
        let out = ip(&["link", "add", BRIDGE_NAME, "type", "bridge"])?;
        // A concurrent creator (CNI) is fine; anything else is an error.
        if !out.status.success() && !ip(&["link", "show", "dev", BRIDGE_NAME])?.status.success() {
            return Err(NodeDnsError::Bridge(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
    }
    for args in [
        vec![
            "addr".to_string(),
            "replace".into(),
            format!("{gateway}/{prefix_len}"),
            "dev".into(),
            BRIDGE_NAME.into(),
        ],
        vec!["link".into(), "set".into(), BRIDGE_NAME.into(), "up".into()],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ip(&args)?;
        if !out.status.success() {
            return Err(NodeDnsError::Bridge(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(())
}

/// Starts the node's DNS server on its gateway and publishes the endpoint (created, or
/// replaced when it differs, e.g. a new pod CIDR).
pub async fn start(
    store: &Store,
    config: &NodeDnsConfig,
    node: &str,
    zone: Option<&str>,
    pod_cidr: &str,
) -> Result<drover_dns::Dns, NodeDnsError> {
    let cidr = PodCidr::parse(pod_cidr)?;
    let gw = gateway(&cidr);
    ensure_bridge(gw, cidr.prefix_len)?;
    let server = drover_dns::Dns::start(
        store.clone(),
        drover_dns::DnsConfig {
            listen: SocketAddr::from((gw, config.port)),
            zone: config.zone.clone(),
            upstreams: config.upstreams.clone(),
        },
    )
    .await?;
    if let Err(e) = publish(
        store,
        endpoint_slice(node, zone, gw, server.local_addr().port()),
    )
    .await
    {
        server.stop().await;
        return Err(e.into());
    }
    Ok(server)
}

async fn publish(store: &Store, want: Value) -> Result<(), StoreError> {
    let kind = bus_schema::kinds::of::<EndpointSlice>();
    let name = drover_store::object::name(&want).to_string();
    loop {
        match store.get(kind, Some(SERVICE_NAMESPACE), &name).await {
            Ok(current) => {
                let same = ["endpoints", "ports", "addressType"]
                    .iter()
                    .all(|f| current.get(*f) == want.get(*f))
                    && current.pointer("/metadata/labels") == want.pointer("/metadata/labels");
                if same {
                    return Ok(());
                }
                let mut next = current.clone();
                for f in ["endpoints", "ports", "addressType"] {
                    next[f] = want[f].clone();
                }
                let labels: BTreeMap<String, Value> = want
                    .pointer("/metadata/labels")
                    .and_then(Value::as_object)
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                next["metadata"]["labels"] = json!(labels);
                match store.update(kind, next).await {
                    Ok(_) => return Ok(()),
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(StoreError::NotFound { .. }) => match store.create(kind, want.clone()).await {
                Ok(_) => return Ok(()),
                Err(StoreError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}

/// The kube-dns Service `drover up` creates (and a cluster admin can): ClusterIP
/// `cluster_ip`, DNS over UDP and TCP on 53, no selector (each agent publishes its own
/// endpoint), and `PreferSameNode` so each node's pods ask their own node.
pub fn service(cluster_ip: Ipv4Addr) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": SERVICE_NAME,
            "namespace": SERVICE_NAMESPACE,
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "drover-dns"},
        },
        "spec": {
            "clusterIP": cluster_ip.to_string(),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
            "trafficDistribution": "PreferSameNode",
        },
    })
}

/// The conventional cluster DNS address of a service CIDR: its tenth address
/// (10.96.0.10 for 10.96.0.0/12).
pub fn cluster_dns_ip(service_cidr: &str) -> Option<Ipv4Addr> {
    let (net, len) = service_cidr.split_once('/')?;
    let net: Ipv4Addr = net.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    if len > 28 {
        return None;
    }
    Some(Ipv4Addr::from(u32::from(net) + 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let cidr = PodCidr::parse("10.244.3.0/24").unwrap();
        assert_eq!(gateway(&cidr), Ipv4Addr::new(10, 244, 3, 1));
        assert_eq!(
            cluster_dns_ip("10.96.0.0/12"),
            Some(Ipv4Addr::new(10, 96, 0, 10))
        );
        assert_eq!(
            cluster_dns_ip("172.20.0.0/16"),
            Some(Ipv4Addr::new(172, 20, 0, 10))
        );
        assert_eq!(cluster_dns_ip("10.96.0.0/30"), None);
        assert_eq!(cluster_dns_ip("nonsense"), None);
    }

    #[test]
    fn slice_shape() {
        let s = endpoint_slice("n1", Some("z1"), Ipv4Addr::new(10, 244, 0, 1), 53);
        assert_eq!(s["metadata"]["name"], "kube-dns-node-n1");
        assert_eq!(
            s["metadata"]["labels"]["kubernetes.io/service-name"],
            "kube-dns"
        );
        assert_eq!(s["endpoints"][0]["nodeName"], "n1");
        assert_eq!(s["endpoints"][0]["zone"], "z1");
        assert_eq!(s["endpoints"][0]["hints"]["forNodes"][0]["name"], "n1");
        assert_eq!(s["endpoints"][0]["hints"]["forZones"][0]["name"], "z1");
        assert_eq!(s["ports"][0]["name"], "dns");
        assert_eq!(s["ports"][1]["protocol"], "TCP");
        let svc = service(Ipv4Addr::new(10, 96, 0, 10));
        assert_eq!(svc["spec"]["ports"][0]["name"], s["ports"][0]["name"]);
        assert_eq!(svc["spec"]["ports"][1]["name"], s["ports"][1]["name"]);
    }
}
