//! The service proxy end to end: real nats-server, the real store, real BPF programs
//! attached to a fresh child cgroup v2 that the test process joins, inside a fresh
//! network namespace (`drover_testkit::netns::enter`). Backends are TCP servers on
//! addresses added to that namespace's loopback; Services and EndpointSlices are
//! written to the store as the controllers would. Needs root.

mod common;

use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{apply, block_on};
use drover_bpf::Loaded;
use drover_node::hollow::HollowRuntime;
use drover_node::node::Capacity;
use drover_node::proxy::{self, ProxyConfig};
use drover_node::{AgentConfig, HollowConfig, NodeAgent};
use drover_store::{DeleteOptions, Store, StoreConfig};
use drover_testkit::cgroup::TestCgroup;
use drover_testkit::{TestNats, netns};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

/// Failure guard for waits; never a timing assertion.
const GUARD: Duration = Duration::from_secs(30);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 50);

/// The test's cgroup and pin directory; dropping it unpins (detaching the programs),
/// moves the process back to its old cgroup and removes the new one, also on failure.
struct Fixture {
    pin_dir: PathBuf,
    cgroup: TestCgroup,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let unique = format!("drover-proxy-test-{}-{name}", std::process::id());
        Fixture {
            pin_dir: PathBuf::from("/sys/fs/bpf").join(&unique),
            cgroup: TestCgroup::new(&unique, true),
        }
    }

    fn config(&self) -> ProxyConfig {
        ProxyConfig {
            pin_dir: self.pin_dir.clone(),
            cgroup: self.cgroup.path().to_path_buf(),
            service_cidr: Some(proxy::DEFAULT_SERVICE_CIDR.into()),
            locality: Default::default(),
            nodeport_interfaces: None,
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Before the cgroup goes (the field drops after this).
        let _ = drover_bpf::unpin(&self.pin_dir);
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

/// Connects to the VIP: the id of the backend that answered, or the connect error.
fn ask() -> Result<u8, std::io::Error> {
    let vip = SocketAddr::V4(SocketAddrV4::new(VIP, 80));
    let mut s = TcpStream::connect_timeout(&vip, Duration::from_secs(5))?;
    assert_eq!(s.peer_addr().unwrap(), vip, "getpeername shows the VIP");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    Ok(b[0])
}

/// The backends answering 32 connections.
fn answering() -> Result<Vec<u8>, ErrorKind> {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..32 {
        seen.insert(ask().map_err(|e| e.kind())?);
    }
    Ok(seen.into_iter().collect())
}

/// Waits until the VIP is answered by exactly `ids` (or fails with `Err(kind)`).
async fn wait_answering(what: &str, want: Result<Vec<u8>, ErrorKind>) {
    let started = Instant::now();
    loop {
        let got = answering();
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

fn service(name: &str, ip: Ipv4Addr) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterIP": ip.to_string(), "selector": {"app": name},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
    }))
    .unwrap()
}

/// The Service's slice with endpoints (last octet of 10.1.0.x, ready).
fn slice(svc: &str, endpoints: &[(u8, bool)]) -> EndpointSlice {
    let eps: Vec<_> = endpoints
        .iter()
        .map(|(n, ready)| json!({"addresses": [format!("10.1.0.{n}")], "conditions": {"ready": ready, "serving": ready, "terminating": false}}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{svc}-abcde"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps,
    }))
    .unwrap()
}

async fn set_slice(store: &Store, svc: &str, endpoints: &[(u8, bool)]) {
    apply(store, slice(svc, endpoints)).await;
}

#[test]
fn services_and_slices_drive_the_bpf_maps_and_survive_a_proxy_restart() {
    if !netns::enter("services_and_slices_drive_the_bpf_maps_and_survive_a_proxy_restart") {
        return;
    }
    // This kernel has no dummy link type: the endpoint addresses go on the
    // namespace's own loopback (still only inside the namespace).
    for n in 1..=3u8 {
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
        assert_eq!(lb.loaded(), Loaded::Fresh);
        let routes = netns::run("ip", &["route", "show", "type", "blackhole"]);
        assert!(routes.contains("10.96.0.0/12"), "blackhole route: {routes}");
        let writes = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(proxy::run(store.clone(), lb, writes.clone()));

        // Twenty other Services with an endpoint each, so a change that rewrote every
        // service would show in the write count below.
        for i in 0..20u8 {
            let name = format!("other-{i}");
            let ip = Ipv4Addr::new(10, 96, 1, i);
            store
                .api::<Service>()
                .create(&service(&name, ip))
                .await
                .unwrap();
            set_slice(&store, &name, &[(1, true)]).await;
        }
        store
            .api::<Service>()
            .create(&service("web", VIP))
            .await
            .unwrap();
        // A Service without endpoints refuses connections.
        wait_answering("no endpoints", Err(ErrorKind::ConnectionRefused)).await;
        set_slice(&store, "web", &[(1, true), (2, true)]).await;
        wait_answering("two ready endpoints", Ok(vec![1, 2])).await;
        // Scaling: one more endpoint, and a not-ready one that gets nothing.
        set_slice(&store, "web", &[(1, true), (2, true), (3, false)]).await;
        wait_answering("not-ready endpoint gets none", Ok(vec![1, 2])).await;
        let before = writes.load(Ordering::Relaxed);
        set_slice(&store, "web", &[(3, true)]).await;
        wait_answering("traffic moved to 3", Ok(vec![3])).await;
        // Replacing two backends by one: the slots and two member entries of this
        // one service, nothing of the twenty others (each has 1 member + slots + entry).
        let cost = writes.load(Ordering::Relaxed) - before;
        eprintln!("map writes for one slice change among 21 services: {cost}");
        assert!(
            cost < 20,
            "one slice change touched more than its service: {cost} writes"
        );

        // A second Service the proxy will miss the deletion of while down.
        let other = Ipv4Addr::new(10, 96, 0, 51);
        store
            .api::<Service>()
            .create(&service("old", other))
            .await
            .unwrap();
        set_slice(&store, "old", &[(1, true)]).await;
        let other_addr = SocketAddr::V4(SocketAddrV4::new(other, 80));
        let started = Instant::now();
        while TcpStream::connect_timeout(&other_addr, Duration::from_secs(5)).is_err() {
            assert!(started.elapsed() < GUARD, "second service never routed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Stop the proxy: the pinned programs and maps keep traffic flowing.
        task.abort();
        let _ = task.await;
        assert_eq!(
            answering(),
            Ok(vec![3]),
            "traffic flows with the proxy down"
        );
        // Changes while it is down: scale, and delete the second Service.
        set_slice(&store, "web", &[(1, true), (3, true)]).await;
        store
            .api::<Service>()
            .delete(Some("default"), "old", &DeleteOptions::default())
            .await
            .unwrap();
        assert_eq!(
            answering(),
            Ok(vec![3]),
            "nothing changes without the proxy"
        );

        let lb = proxy::start(&f.config()).unwrap();
        assert_eq!(
            lb.loaded(),
            Loaded::Reopened,
            "the restart re-opens the pins"
        );
        // This time under the supervisor the agent uses.
        let writes = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(proxy::supervised(
            store.clone(),
            lb,
            f.config(),
            writes.clone(),
        ));
        wait_answering("reconciled scale after restart", Ok(vec![1, 3])).await;
        let started = Instant::now();
        loop {
            match TcpStream::connect_timeout(&other_addr, Duration::from_secs(5)) {
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::InvalidInput, "a stale VIP fails fast");
                    break;
                }
                Ok(_) => {
                    assert!(started.elapsed() < GUARD, "stale service never removed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }

        // The restart re-upserted 21 unchanged services for free: only the scale and
        // the removal were written.
        let cost = writes.load(Ordering::Relaxed);
        eprintln!("map writes to reconcile after the restart: {cost}");
        assert!(
            cost < 20,
            "the restart rewrote unchanged services: {cost} writes"
        );

        // Deleting the Service: its VIP fails fast (blackholed, not translated).
        store
            .api::<Service>()
            .delete(Some("default"), "web", &DeleteOptions::default())
            .await
            .unwrap();
        let started = Instant::now();
        let e = loop {
            match ask() {
                Err(e) => break e,
                Ok(_) => {
                    assert!(started.elapsed() < GUARD, "deleted service still routed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        // EINVAL from the blackhole route: immediate, never a timeout. (A Service that
        // exists without endpoints refuses with ECONNREFUSED, checked above.)
        assert_eq!(
            e.kind(),
            ErrorKind::InvalidInput,
            "a deleted VIP fails fast: {e}"
        );
        task.abort();
        let _ = task.await;
    });
}

#[test]
fn an_agent_with_the_proxy_on_routes_service_vips() {
    if !netns::enter("an_agent_with_the_proxy_on_routes_service_vips") {
        return;
    }
    let ip = Ipv4Addr::new(10, 1, 0, 7);
    netns::run("ip", &["addr", "add", &format!("{ip}/32"), "dev", "lo"]);
    backend(ip);
    let f = Fixture::new("agent");
    block_on(async {
        let nats = TestNats::start().await;
        let store = Store::new(nats.client().await, StoreConfig::default())
            .await
            .unwrap();
        let runtime = Arc::new(HollowRuntime::seeded(HollowConfig::default(), 7));
        let mut config = AgentConfig::new("node-a");
        config.capacity = Some(Capacity {
            cpu_millis: 4000,
            memory_bytes: 8 << 30,
            ephemeral_storage_bytes: 100 << 30,
            pods: 110,
        });
        config.proxy = Some(f.config());
        let agent = NodeAgent::start(store.clone(), runtime, config)
            .await
            .unwrap();
        let routes = netns::run("ip", &["route", "show", "type", "blackhole"]);
        assert!(routes.contains("10.96.0.0/12"), "blackhole route: {routes}");
        store
            .api::<Service>()
            .create(&service("web", VIP))
            .await
            .unwrap();
        set_slice(&store, "web", &[(7, true)]).await;
        wait_answering("the agent's proxy routes the VIP", Ok(vec![7])).await;
        agent.stop().await;
    });
}
