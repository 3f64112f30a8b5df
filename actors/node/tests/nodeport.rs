//! NodePort through the service proxy end to end: real nats-server, the real store,
//! real BPF inside a fresh network namespace (`drover_testkit::netns::enter`) playing
//! the node. A client in a second namespace (192.168.77.2) reaches the node's external
//! interface `np-ext` (192.168.77.1) over a veth pair; the proxy attaches its tcx
//! programs there. Backends are TCP servers on addresses added to the node's loopback.
//! The cgroup programs are attached to a cgroup nobody is in, so only TC translates
//! what the client sends. Needs root.

mod common;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use common::{apply, block_on};
use drover_bpf::{Loader, Protocol, ServiceKey};
use drover_node::proxy::topology::Locality;
use drover_node::proxy::{self, ProxyConfig};
use drover_store::{DeleteOptions, Store, StoreConfig};
use drover_testkit::cgroup::TestCgroup;
use drover_testkit::{TestNats, netns};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

/// Failure guard for waits; never a timing assertion.
const GUARD: Duration = Duration::from_secs(30);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const NODE_PORT: u16 = 30080;

/// The cgroup (not joined), pin directory and client namespace; dropping it unpins
/// (detaching the programs), deletes the namespace (its veth end goes with it) and
/// removes the cgroup, also on failure.
struct Fixture {
    pin_dir: PathBuf,
    cgroup: TestCgroup,
    client: String,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let unique = format!("drover-nodeport-test-{}-{name}", std::process::id());
        let f = Fixture {
            pin_dir: PathBuf::from("/sys/fs/bpf").join(&unique),
            cgroup: TestCgroup::new(&unique, false),
            client: unique,
        };
        let sh = |args: &str| netns::run("ip", &args.split(' ').collect::<Vec<_>>());
        sh(&format!("netns add {}", f.client));
        sh(&format!("-n {} link set lo up", f.client));
        sh("link add np-ext type veth peer name np-ext-c");
        sh(&format!("link set np-ext-c netns {}", f.client));
        sh("addr add 192.168.77.1/24 dev np-ext");
        sh("link set np-ext up");
        sh(&format!(
            "-n {} addr add 192.168.77.2/24 dev np-ext-c",
            f.client
        ));
        sh(&format!("-n {} link set np-ext-c up", f.client));
        f
    }

    fn config(&self) -> ProxyConfig {
        ProxyConfig {
            pin_dir: self.pin_dir.clone(),
            cgroup: self.cgroup.path().to_path_buf(),
            service_cidr: Some(proxy::DEFAULT_SERVICE_CIDR.into()),
            locality: Locality {
                node: "node-a".into(),
                zone: None,
            },
            nodeport_interfaces: Some(vec!["np-ext".into()]),
        }
    }

    /// From the client's namespace: connects to the node port 32 times and returns the
    /// ids of the backends that answered, or the first connect error.
    fn answering(&self) -> Result<Vec<u8>, ErrorKind> {
        self.answering_at(NODE_IP)
    }

    /// [`Fixture::answering`] at another node address.
    fn answering_at(&self, node_ip: Ipv4Addr) -> Result<Vec<u8>, ErrorKind> {
        let path = format!("/run/netns/{}", self.client);
        std::thread::spawn(move || {
            let ns = File::open(&path).unwrap();
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let to = SocketAddr::V4(SocketAddrV4::new(node_ip, NODE_PORT));
            let mut seen = BTreeSet::new();
            for _ in 0..32 {
                let ask = || -> std::io::Result<u8> {
                    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b)?;
                    Ok(b[0])
                };
                seen.insert(ask().map_err(|e| e.kind())?);
            }
            Ok(seen.into_iter().collect())
        })
        .join()
        .unwrap()
    }

    /// Waits until the node port is answered by exactly `ids` (or fails with `Err`).
    async fn wait_answering(&self, what: &str, want: Result<Vec<u8>, ErrorKind>) {
        self.wait_answering_at(NODE_IP, what, want).await
    }

    /// [`Fixture::wait_answering`] at another node address.
    async fn wait_answering_at(
        &self,
        node_ip: Ipv4Addr,
        what: &str,
        want: Result<Vec<u8>, ErrorKind>,
    ) {
        let started = Instant::now();
        loop {
            let got = self.answering_at(node_ip);
            if got == want {
                return;
            }
            assert!(
                started.elapsed() < GUARD,
                "timed out waiting for {what}: last {got:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = drover_bpf::unpin(&self.pin_dir);
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.client])
            .status();
    }
}

/// A TCP server on `ip:8080` answering every connection with the last octet of `ip`.
fn backend(ip: Ipv4Addr) {
    let l = TcpListener::bind(SocketAddrV4::new(ip, 8080)).unwrap();
    let id = ip.octets()[3];
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = std::io::Write::write_all(&mut s, &[id]);
        }
    });
}

fn service(type_: &str) -> Service {
    let mut port = json!({"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"});
    if type_ != "ClusterIP" {
        port["nodePort"] = json!(NODE_PORT);
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": type_, "clusterIP": "10.96.0.60", "selector": {"app": "web"},
                 "ports": [port]},
    }))
    .unwrap()
}

/// Replaces the stored Service `web` with `svc`.
async fn replace(store: &Store, svc: Service) {
    apply(store, svc).await;
}

/// The slice of `web`: endpoint 10.1.0.1 on node-a (this node), the others on node-b.
fn slice(endpoints: &[u8]) -> EndpointSlice {
    let eps: Vec<_> = endpoints
        .iter()
        .map(|n| {
            json!({"addresses": [format!("10.1.0.{n}")], "conditions": {"ready": true},
                   "nodeName": if *n == 1 { "node-a" } else { "node-b" }})
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-abcde", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps,
    }))
    .unwrap()
}

#[test]
fn a_nodeport_service_in_the_store_is_reached_from_outside_the_node() {
    if !netns::enter("a_nodeport_service_in_the_store_is_reached_from_outside_the_node") {
        return;
    }
    for n in 1..=2u8 {
        let ip = Ipv4Addr::new(10, 1, 0, n);
        netns::run("ip", &["addr", "add", &format!("{ip}/32"), "dev", "lo"]);
        backend(ip);
    }
    let f = Fixture::new("e2e");
    block_on(async {
        let nats = TestNats::start().await;
        let store = Store::new(nats.client().await, StoreConfig::default())
            .await
            .unwrap();
        let lb = proxy::start(&f.config()).unwrap();
        assert_eq!(lb.nodeport_interfaces().unwrap().len(), 1);
        assert!(lb.node_ips().unwrap().contains(&NODE_IP));
        let task = tokio::spawn(proxy::run_at(
            store.clone(),
            lb,
            f.config().locality,
            Arc::new(AtomicU64::new(0)),
        ));

        // Nothing translates the node port yet: the node itself refuses.
        assert_eq!(f.answering(), Err(ErrorKind::ConnectionRefused));
        let api = store.api::<Service>();
        api.create(&service("NodePort")).await.unwrap();
        store
            .api::<EndpointSlice>()
            .create(&slice(&[1, 2]))
            .await
            .unwrap();
        f.wait_answering("both endpoints through the node port", Ok(vec![1, 2]))
            .await;
        // The maps hold the ClusterIP entry and the nodePort entry.
        let reopened = Loader::load(&f.pin_dir, f.cgroup.path()).unwrap();
        let np = ServiceKey::node_port(NODE_PORT, Protocol::Tcp);
        assert!(
            reopened.services().contains(&np),
            "{:?}",
            reopened.services()
        );
        drop(reopened);

        // externalTrafficPolicy Local: from outside, only this node's (node-a's)
        // endpoint; back to Cluster, both again.
        let mut local = service("NodePort");
        local.spec.as_mut().unwrap().external_traffic_policy = Some("Local".into());
        replace(&store, local).await;
        f.wait_answering("Local: this node's endpoint only", Ok(vec![1]))
            .await;
        replace(&store, service("NodePort")).await;
        f.wait_answering("Cluster again", Ok(vec![1, 2])).await;

        // An address the node gets while the proxy runs becomes a node address too.
        let later = Ipv4Addr::new(192, 168, 77, 9);
        netns::run("ip", &["addr", "add", "192.168.77.9/24", "dev", "np-ext"]);
        f.wait_answering_at(later, "a node address added later", Ok(vec![1, 2]))
            .await;

        // A ClusterIP Service has no node port: no longer translated.
        replace(&store, service("ClusterIP")).await;
        f.wait_answering("ClusterIP: no node port", Err(ErrorKind::ConnectionRefused))
            .await;

        // LoadBalancer has node ports too; deleting the Service removes them.
        replace(&store, service("LoadBalancer")).await;
        f.wait_answering("LoadBalancer node port", Ok(vec![1, 2]))
            .await;
        api.delete(Some("default"), "web", &DeleteOptions::default())
            .await
            .unwrap();
        f.wait_answering("deleted", Err(ErrorKind::ConnectionRefused))
            .await;
        task.abort();
        let _ = task.await;
    });
}
