use super::*;
use drover_bpf::{Backend, Protocol, Service as LbService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

fn svc(spec: Value) -> Service {
    serde_json::from_value(
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec}),
    )
    .unwrap()
}

fn lb(backend: &str) -> LbService {
    LbService {
        backends: vec![Backend {
            addr: backend.parse().unwrap(),
            weight: 1,
        }],
        affinity: None,
    }
}

fn cluster(port: u16, proto: Protocol, backend: &str) -> (ServiceKey, LbService) {
    (
        ServiceKey {
            vip: Ipv4Addr::new(10, 96, 0, 50),
            port,
            proto,
        },
        lb(backend),
    )
}

/// Checks the nodePort entries of a Service given its ClusterIP entries.
fn check(
    what: &str,
    spec: Value,
    cluster: &[(ServiceKey, LbService)],
    expected: &[(u16, Protocol, &str)],
) {
    let cluster: Desired = cluster.iter().cloned().collect();
    let got = entries(&svc(spec), &cluster);
    let want: Desired = expected
        .iter()
        .map(|(p, proto, be)| (ServiceKey::node_port(*p, *proto), lb(be)))
        .collect();
    assert_eq!(got, want, "{what}");
}

#[test]
fn node_port_entries_follow_the_cluster_ip_entries() {
    let two = [
        cluster(80, Protocol::Tcp, "10.1.0.1:8080"),
        cluster(53, Protocol::Udp, "10.1.0.2:5353"),
    ];
    let ports = json!([
        {"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080},
        {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
    ]);
    check(
        "NodePort: one entry per port, with that port's backends",
        json!({"type": "NodePort", "clusterIP": "10.96.0.50", "ports": ports}),
        &two,
        &[
            (30080, Protocol::Tcp, "10.1.0.1:8080"),
            (30053, Protocol::Udp, "10.1.0.2:5353"),
        ],
    );
    check(
        "LoadBalancer has nodePorts too",
        json!({"type": "LoadBalancer", "clusterIP": "10.96.0.50", "ports": ports}),
        &two,
        &[
            (30080, Protocol::Tcp, "10.1.0.1:8080"),
            (30053, Protocol::Udp, "10.1.0.2:5353"),
        ],
    );
    check(
        "ClusterIP: a stray nodePort is no nodePort",
        json!({"type": "ClusterIP", "clusterIP": "10.96.0.50", "ports": ports}),
        &two,
        &[],
    );
    check(
        "no type is ClusterIP",
        json!({"clusterIP": "10.96.0.50", "ports": ports}),
        &two,
        &[],
    );
    check(
        "LoadBalancer without nodePorts (allocateLoadBalancerNodePorts: false)",
        json!({"type": "LoadBalancer", "clusterIP": "10.96.0.50",
               "ports": [{"port": 80, "protocol": "TCP"}]}),
        &two,
        &[],
    );
    check(
        "a port without a ClusterIP entry (SCTP, or no IPv4 ClusterIP) gets none",
        json!({"type": "NodePort", "clusterIP": "10.96.0.50",
               "ports": [{"port": 80, "protocol": "SCTP", "nodePort": 30080},
                         {"port": 81, "protocol": "TCP", "nodePort": 30081}]}),
        &two,
        &[],
    );
    check(
        "an out-of-range nodePort is skipped",
        json!({"type": "NodePort", "clusterIP": "10.96.0.50",
               "ports": [{"port": 80, "protocol": "TCP", "nodePort": 70000},
                         {"port": 53, "protocol": "UDP", "nodePort": 0}]}),
        &two,
        &[],
    );
    check(
        "protocol defaults to TCP",
        json!({"type": "NodePort", "clusterIP": "10.96.0.50",
               "ports": [{"port": 80, "nodePort": 30080}]}),
        &two,
        &[(30080, Protocol::Tcp, "10.1.0.1:8080")],
    );
}

#[test]
fn with_node_ports_keeps_the_cluster_entries() {
    let c: Desired = [cluster(80, Protocol::Tcp, "10.1.0.1:8080")]
        .into_iter()
        .collect();
    let s = svc(json!({"type": "NodePort", "clusterIP": "10.96.0.50",
                       "ports": [{"port": 80, "nodePort": 30080}]}));
    let all = with_node_ports(&s, &[], c.clone(), None);
    assert_eq!(all.len(), 2);
    assert!(c.keys().all(|k| all.contains_key(k)));
    assert_eq!(
        all.get(&ServiceKey::node_port(30080, Protocol::Tcp)),
        Some(&lb("10.1.0.1:8080"))
    );
}

#[test]
fn addresses_are_every_ipv4_address_but_loopback() {
    let json = r#"[
      {"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8},
                                              {"family":"inet","local":"10.1.0.1","prefixlen":32}]},
      {"ifindex":4,"ifname":"eth0","addr_info":[{"family":"inet","local":"192.0.2.2","prefixlen":24},
                                                {"family":"inet6","local":"fe80::1","prefixlen":64}]},
      {"ifindex":5,"ifname":"down0"}
    ]"#;
    assert_eq!(
        parse_addresses(json).unwrap(),
        BTreeSet::from([Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(192, 0, 2, 2)])
    );
    assert_eq!(parse_addresses("[]").unwrap(), BTreeSet::new());
    let e = parse_addresses("not json").unwrap_err();
    assert!(e.to_string().starts_with("nodeport: parsing"), "{e}");
}

#[test]
fn default_interfaces_are_the_default_routes_devices() {
    let json = r#"[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]},
                   {"dst":"default","gateway":"192.0.2.9","dev":"eth0","metric":200},
                   {"dst":"default","gateway":"198.51.100.1","dev":"eth1"},
                   {"dst":"default","type":"blackhole"}]"#;
    assert_eq!(
        parse_default_interfaces(json).unwrap(),
        vec!["eth0".to_string(), "eth1".to_string()]
    );
    assert_eq!(
        parse_default_interfaces("[]").unwrap(),
        Vec::<String>::new()
    );
    assert!(parse_default_interfaces("{").is_err());
}

/// An endpoint on `node` (ready, serving, terminating).
fn on(ip: &str, node: &str, ready: bool, terminating: bool) -> Value {
    json!({"addresses": [ip], "nodeName": node,
           "conditions": {"ready": ready, "serving": true, "terminating": terminating}})
}

fn slice(endpoints: Vec<Value>) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": "web-1", "namespace": "default"},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .unwrap()
}

/// Checks the external-only entries on node "a" for a Service with one TCP port
/// (nodePort 30080) of `policy`, given its slice's endpoints.
fn check_local(what: &str, policy: &str, endpoints: Vec<Value>, expected: Option<&[&str]>) {
    let s = svc(json!({"type": "NodePort", "clusterIP": "10.96.0.50",
                       "externalTrafficPolicy": policy,
                       "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}));
    let sl = slice(endpoints);
    let node_ports: Desired = [(
        ServiceKey::node_port(30080, Protocol::Tcp),
        lb("10.1.0.1:8080"),
    )]
    .into_iter()
    .collect();
    let got = local_entries(&s, &[&sl], &node_ports, "a");
    let want: Desired = expected
        .map(|addrs| {
            (
                ServiceKey::node_port_external(30080, Protocol::Tcp),
                LbService {
                    backends: addrs
                        .iter()
                        .map(|a| Backend {
                            addr: a.parse().unwrap(),
                            weight: 1,
                        })
                        .collect(),
                    affinity: None,
                },
            )
        })
        .into_iter()
        .collect();
    assert_eq!(got, want, "{what}");
}

#[test]
fn external_traffic_policy_local_keeps_this_nodes_endpoints() {
    let mixed = || {
        vec![
            on("10.1.0.1", "a", true, false),
            on("10.1.0.2", "b", true, false),
            on("10.1.0.3", "a", true, false),
        ]
    };
    check_local("Cluster: no external-only entry", "Cluster", mixed(), None);
    check_local(
        "Local: the endpoints on this node",
        "Local",
        mixed(),
        Some(&["10.1.0.1:8080", "10.1.0.3:8080"]),
    );
    check_local(
        "Local without a local endpoint: an empty entry (dropped from outside)",
        "Local",
        vec![on("10.1.0.2", "b", true, false)],
        Some(&[]),
    );
    check_local(
        "Local: a terminating local endpoint when none is ready here, even with ready ones elsewhere",
        "Local",
        vec![
            on("10.1.0.1", "a", false, true),
            on("10.1.0.2", "b", true, false),
        ],
        Some(&["10.1.0.1:8080"]),
    );
    check_local(
        "Local: ready local endpoints win over terminating ones",
        "Local",
        vec![
            on("10.1.0.1", "a", false, true),
            on("10.1.0.3", "a", true, false),
        ],
        Some(&["10.1.0.3:8080"]),
    );
}

#[test]
fn with_node_ports_adds_local_entries_only_when_the_node_is_known() {
    let s = svc(json!({"type": "NodePort", "clusterIP": "10.96.0.50",
                       "externalTrafficPolicy": "Local",
                       "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}));
    let sl = slice(vec![
        on("10.1.0.1", "a", true, false),
        on("10.1.0.2", "b", true, false),
    ]);
    let c: Desired = [cluster(80, Protocol::Tcp, "10.1.0.1:8080")]
        .into_iter()
        .collect();
    let external = ServiceKey::node_port_external(30080, Protocol::Tcp);
    let known = with_node_ports(&s, &[&sl], c.clone(), Some("b"));
    assert_eq!(known.len(), 3);
    assert_eq!(known.get(&external), Some(&lb("10.1.0.2:8080")));
    let unknown = with_node_ports(&s, &[&sl], c, None);
    assert_eq!(unknown.len(), 2);
    assert!(!unknown.contains_key(&external));
}
