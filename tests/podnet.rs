//! Pods on two nodes reach each other by pod IP: `drover up --no-agent` in the test's
//! network namespace and two `drover agent` processes (containerd, runc, CNI) in two
//! namespaces of the test fabric ([`drover_testkit::fabric`]), joined by the gossip. Each
//! agent learns the other's pod CIDR from the membership and routes it via the other's
//! fabric address; nothing is masqueraded, so a server sees the client pod's own IP.
//!
//! Then node 1's agent stops (it leaves the gossip): node 0 marks it down and keeps its
//! route, and node 1 keeps its own, so the pods (which outlive their agent) still talk
//! both ways (see `drover_node::routes` for why). A new agent on node 1 adopts the
//! routes and rejoins.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Purge, Up, ok};
use drover_node::containerd::ContainerdPaths;
use drover_testkit::fabric::{Fabric, FabricNode, HOST_IP};
use drover_testkit::free_port;

const IMAGE: &str = "localhost/busybox:latest";
/// Failure guard for waits; never a timing assertion.
const GUARD: Duration = Duration::from_secs(120);
const APPLETS: &[&str] = &[
    "sh", "sleep", "echo", "mkdir", "chmod", "httpd", "wget", "timeout", "cat",
];
const GOSSIP_PORT: u16 = 7946;
/// Logs the membership events and route changes (the test waits on them).
const AGENT_LOG: &str = "warn,drover_membership=info,drover_node::routes=info";

#[test]
fn pods_on_two_nodes_reach_each_other() {
    if !drover_testkit::netns::enter("pods_on_two_nodes_reach_each_other") {
        return;
    }
    drover_testkit::init_tracing();
    let fabric = Fabric::new(2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario(&fabric));
}

/// `drover agent` for fabric node `i`, seeding the other node's gossip address.
fn spawn_agent(fabric: &Fabric, i: usize, nats: &str, data: &Path) -> Up {
    let node = fabric.node(i);
    let peer = fabric.node(1 - i);
    let name = format!("node-{i}");
    let ip = node.ip().to_string();
    let bind = format!("{ip}:{GOSSIP_PORT}");
    let seed = format!("{}:{GOSSIP_PORT}", peer.ip());
    Up::spawn_drover_in(
        node,
        &[
            "agent",
            "--nats",
            nats,
            "--data-dir",
            data.to_str().unwrap(),
            "--node-name",
            &name,
            "--no-service-proxy",
            "--node-address",
            &ip,
            "--gossip-bind",
            &bind,
            "--gossip-seed",
            &seed,
        ],
        AGENT_LOG,
    )
}

/// Imports the busybox image into the node's containerd.
fn import_busybox(dir: &Path, node_data: &Path) {
    let archive = dir.join("busybox.tar");
    let archive = if archive.exists() {
        archive
    } else {
        common::busybox_archive(dir, IMAGE, APPLETS)
    };
    common::import_image(&archive, node_data);
}

/// A pod pinned to `node` serving `/cgi-bin/ip`: the client's address as the server
/// saw it (`REMOTE_ADDR`).
fn pod(name: &str, node: &str) -> serde_json::Value {
    let script = "mkdir -p /www/cgi-bin && \
        echo '#!/bin/sh' > /www/cgi-bin/ip && \
        echo 'echo Content-Type: text/plain' >> /www/cgi-bin/ip && \
        echo 'echo' >> /www/cgi-bin/ip && \
        echo 'echo $REMOTE_ADDR' >> /www/cgi-bin/ip && \
        chmod +x /www/cgi-bin/ip && exec httpd -f -p 8080 -h /www";
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "httpd",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
                "ports": [{"containerPort": 8080}],
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
            }],
        },
    })
}

/// [`common::poll_until`] with this test's guard.
async fn wait_until<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    common::poll_until(what, GUARD, f).await
}

/// From pod `client`, GETs `/cgi-bin/ip` of `server_ip`: the client address the server
/// saw, once the request goes through.
async fn remote_addr_seen(kc: &str, client: &str, server_ip: &str) -> String {
    let url = format!("http://{server_ip}:8080/cgi-bin/ip");
    wait_until(&format!("{client} reaching {url}"), || {
        let (code, out, _) = common::kubectl(
            kc,
            // busybox 1.35's `wget -T` crashes; `timeout` bounds a dropped connection.
            &["exec", client, "--", "timeout", "5", "wget", "-qO-", &url],
        );
        (code == 0).then(|| ipv4_of(out.trim()))
    })
    .await
}

/// busybox httpd listens on IPv6 too and prints an IPv4 client as `[::ffff:a.b.c.d]`.
fn ipv4_of(remote_addr: &str) -> String {
    remote_addr
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_start_matches("::ffff:")
        .to_string()
}

/// The drover routes in a node's namespace (`ip route show proto 157`).
fn routes_in(node: &FabricNode) -> String {
    node.run(
        "ip",
        &[
            "-4",
            "route",
            "show",
            "proto",
            &drover_node::routes::ROUTE_PROTO.to_string(),
        ],
    )
}

fn jsonpath(kc: &str, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let path = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &path]);
    ok(kc, &args).trim().to_string()
}

async fn scenario(fabric: &Fabric) {
    let dir = tempfile::Builder::new()
        .prefix("drover-podnet-")
        .tempdir()
        .unwrap();
    let data: Vec<_> = (0..2)
        .map(|i| dir.path().join(format!("node-{i}")))
        .collect();
    let _purge: Vec<Purge> = data
        .iter()
        .map(|d| Purge(ContainerdPaths::new(d)))
        .collect();

    // The control plane's NATS listens on the fabric, where the agents reach it.
    let nats_port = free_port().to_string();
    let api_port = free_port().to_string();
    let mut up = Up::spawn(&[
        "--data-dir",
        dir.path().join("cp").to_str().unwrap(),
        "--nats-address",
        &HOST_IP.to_string(),
        "--nats-port",
        &nats_port,
        "--api-port",
        &api_port,
    ]);
    let kubeconfig = up.kubeconfig().await;
    let kc = kubeconfig.as_str();
    let nats = format!("nats://{HOST_IP}:{nats_port}");

    let mut agents: Vec<Up> = (0..2)
        .map(|i| spawn_agent(fabric, i, &nats, &data[i]))
        .collect();
    for (i, agent) in agents.iter_mut().enumerate() {
        let ready = agent.wait_for(&format!("node node-{i} ready")).await;
        let gossip = format!("gossip {}:{GOSSIP_PORT}", fabric.node(i).ip());
        assert!(ready.contains(&gossip), "{ready}");
        import_busybox(dir.path(), &data[i]);
    }
    let cidrs: Vec<String> = (0..2)
        .map(|i| jsonpath(kc, &["node", &format!("node-{i}")], "{.spec.podCIDR}"))
        .collect();
    assert_ne!(cidrs[0], cidrs[1]);

    // Each node routes the other's pod CIDR via the other's fabric address.
    for i in 0..2 {
        let want = format!("{} via {}", cidrs[1 - i], fabric.node(1 - i).ip());
        let node = fabric.node(i);
        let routes = wait_until(&format!("node-{i} routing {want}"), || {
            let routes = routes_in(node);
            routes.contains(&want).then_some(routes)
        })
        .await;
        eprintln!("node-{i} drover routes: {routes}");
        let forwarding = node.run("cat", &["/proc/sys/net/ipv4/ip_forward"]);
        assert_eq!(forwarding.trim(), "1", "node-{i} forwards");
    }

    let manifest = dir.path().join("pods.json");
    let list = serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [pod("a", "node-0"), pod("b", "node-1")],
    });
    std::fs::write(&manifest, list.to_string()).unwrap();
    ok(kc, &["apply", "-f", manifest.to_str().unwrap()]);
    for p in ["a", "b"] {
        ok(
            kc,
            &[
                "wait",
                "--for=condition=Ready",
                &format!("pod/{p}"),
                "--timeout=120s",
            ],
        );
    }
    let ip_a = jsonpath(kc, &["pod", "a"], "{.status.podIP}");
    let ip_b = jsonpath(kc, &["pod", "b"], "{.status.podIP}");
    for (ip, cidr) in [(&ip_a, &cidrs[0]), (&ip_b, &cidrs[1])] {
        let cidr: drover_node::cidr::Ipv4Cidr = cidr.parse().unwrap();
        assert!(cidr.contains(ip.parse().unwrap()), "{ip} outside {cidr}");
    }

    // Across the nodes, both ways; the server sees the client pod's own IP (no NAT).
    assert_eq!(remote_addr_seen(kc, "a", &ip_b).await, ip_a);
    assert_eq!(remote_addr_seen(kc, "b", &ip_a).await, ip_b);

    // Node 1's agent stops and leaves the gossip; node 0 sees it down at once.
    let agent1 = agents.pop().unwrap();
    let status = agent1.terminate().await;
    assert!(status.success(), "agent node-1 exit status {status}");
    agents[0].wait_for(r#"Down(Member { name: "node-1""#).await;
    // Both routes stay, and the pods, which outlive their agent, still talk both ways.
    let want0 = format!("{} via {}", cidrs[1], fabric.node(1).ip());
    assert!(routes_in(fabric.node(0)).contains(&want0));
    let want1 = format!("{} via {}", cidrs[0], fabric.node(0).ip());
    assert!(routes_in(fabric.node(1)).contains(&want1));
    assert_eq!(remote_addr_seen(kc, "a", &ip_b).await, ip_a);

    // Node 1's next agent adopts its routes (protocol 157) and rejoins; exec through it
    // works again, and its pod still reaches node 0's.
    let mut agent1 = spawn_agent(fabric, 1, &nats, &data[1]);
    agent1.wait_for("node node-1 ready").await;
    agents.push(agent1);
    assert!(routes_in(fabric.node(1)).contains(&want1));
    assert_eq!(remote_addr_seen(kc, "b", &ip_a).await, ip_b);

    // The pods go with their containerds (Purge), the nodes with the fabric.
    for agent in agents {
        let status = agent.terminate().await;
        assert!(status.success(), "agent exit status {status}");
    }
    up.terminate().await;
}
