//! Tables of the kinds that route traffic: Service, Endpoints and EndpointSlice.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use super::fields::{age, arr_at, at, int_at, name, opt_int, opt_str, str_at};
use super::selector::format_labels;
use super::{AGE, Column, NAME};

pub(super) const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    Column::string(
        "Type",
        "How the service is exposed: ClusterIP, NodePort, LoadBalancer or ExternalName.",
    ),
    Column::string(
        "Cluster-IP",
        "The IP address of the service inside the cluster.",
    ),
    Column::string(
        "External-IP",
        "Addresses outside the cluster at which the service is reachable.",
    ),
    Column::string(
        "Port(s)",
        "The list of ports that are exposed by this service.",
    ),
    AGE,
    Column::string(
        "Selector",
        "Route service traffic to pods with label keys and values matching this selector.",
    )
    .wide(),
];

/// `spec.type` when unset: the API server defaults it.
const DEFAULT_SERVICE_TYPE: &str = "ClusterIP";

/// `ports[].protocol` when unset: the API server defaults it.
const DEFAULT_PROTOCOL: &str = "TCP";

pub(super) fn service_cells(service: &Value, now: Timestamp) -> Vec<Value> {
    let service_type = match str_at(service, "/spec/type") {
        "" => DEFAULT_SERVICE_TYPE,
        t => t,
    };
    // `clusterIP` stands in for `clusterIPs` as the API's conversion does.
    let cluster_ip = opt_str(service, "/spec/clusterIPs/0")
        .or_else(|| opt_str(service, "/spec/clusterIP").filter(|ip| !ip.is_empty()))
        .unwrap_or("<none>");
    let ports = match port_list(arr_at(service, "/spec/ports")) {
        p if p.is_empty() => "<none>".to_string(),
        p => p,
    };
    vec![
        name(service).into(),
        service_type.into(),
        cluster_ip.into(),
        external_ip(service, service_type).into(),
        ports.into(),
        age(service, now).into(),
        format_labels(at(service, "/spec/selector")).into(),
    ]
}

/// The EXTERNAL-IP cell: external IPs, load-balancer ingress, `<pending>` for a load
/// balancer still being provisioned. Tables are always built wide, so nothing is clipped.
fn external_ip(service: &Value, service_type: &str) -> String {
    let external_ips: Vec<&str> = arr_at(service, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match service_type {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let ingress: BTreeSet<&str> = arr_at(service, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|i| match (str_at(i, "/ip"), str_at(i, "/hostname")) {
                    ("", "") => None,
                    ("", hostname) => Some(hostname),
                    (ip, _) => Some(ip),
                })
                .collect();
            let all: Vec<&str> = ingress.into_iter().chain(external_ips).collect();
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_at(service, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// `80/TCP,443:30443/TCP`: port, node port when allocated, protocol.
fn port_list(ports: &[Value]) -> String {
    ports
        .iter()
        .map(|p| {
            let port = int_at(p, "/port");
            let protocol = match str_at(p, "/protocol") {
                "" => DEFAULT_PROTOCOL,
                protocol => protocol,
            };
            match int_at(p, "/nodePort") {
                node_port if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) const ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    Column::string(
        "Endpoints",
        "The ready addresses and ports of the service's endpoints.",
    ),
    AGE,
];

pub(super) fn endpoints_cells(endpoints: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(endpoints).into(),
        endpoints_list(arr_at(endpoints, "/subsets")).into(),
        age(endpoints, now).into(),
    ]
}

/// How many endpoints, ports or addresses a cell spells out before `+ N more...`.
const LIST_SHOWN: usize = 3;

/// `10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more...`: every ready address with every port of
/// its subset, or bare addresses for a subset without ports (headless services).
fn endpoints_list(subsets: &[Value]) -> String {
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut shown: Vec<String> = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let addresses: Vec<&str> = arr_at(subset, "/addresses")
            .iter()
            .map(|a| str_at(a, "/ip"))
            .collect();
        let ports = arr_at(subset, "/ports");
        if ports.is_empty() {
            count += addresses.len();
            let room = LIST_SHOWN.saturating_sub(shown.len());
            shown.extend(addresses.iter().take(room).map(|ip| ip.to_string()));
            continue;
        }
        for port in ports {
            let port = int_at(port, "/port");
            count += addresses.len();
            let room = LIST_SHOWN.saturating_sub(shown.len());
            shown.extend(
                addresses
                    .iter()
                    .take(room)
                    .map(|ip| join_host_port(ip, port)),
            );
        }
    }
    let list = shown.join(",");
    if count > LIST_SHOWN {
        format!("{list} + {} more...", count - LIST_SHOWN)
    } else {
        list
    }
}

/// `host:port`, with IPv6 hosts bracketed (`[fd00::1]:80`), as Go's `net.JoinHostPort`.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

pub(super) const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    Column::string(
        "AddressType",
        "The type of address carried by this EndpointSlice: IPv4, IPv6 or FQDN.",
    ),
    Column::string(
        "Ports",
        "The network ports exposed by each endpoint in this slice.",
    ),
    Column::string("Endpoints", "The addresses of the endpoints in this slice."),
    AGE,
];

pub(super) fn endpoint_slice_cells(slice: &Value, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = arr_at(slice, "/ports")
        .iter()
        .map(|p| match (opt_int(p, "/port"), opt_str(p, "/name")) {
            (Some(port), _) => port.to_string(),
            (None, Some(name)) => name.to_string(),
            (None, None) => "*".to_string(),
        })
        .collect();
    let addresses: Vec<String> = arr_at(slice, "/endpoints")
        .iter()
        .flat_map(|e| arr_at(e, "/addresses"))
        .map(|a| a.as_str().unwrap_or("").to_string())
        .collect();
    vec![
        name(slice).into(),
        str_at(slice, "/addressType").into(),
        list_with_more(&ports).into(),
        list_with_more(&addresses).into(),
        age(slice, now).into(),
    ]
}

/// The first three items and `+ N more...`, `<unset>` for none.
fn list_with_more(items: &[String]) -> String {
    if items.is_empty() {
        return "<unset>".to_string();
    }
    let list = items[..items.len().min(LIST_SHOWN)].join(",");
    if items.len() > LIST_SHOWN {
        format!("{list} + {} more...", items.len() - LIST_SHOWN)
    } else {
        list
    }
}
