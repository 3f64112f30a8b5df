//! TrafficSplit and topology-aware routing in the service proxy, end to end: real
//! nats-server, the real store, real BPF programs on a fresh child cgroup v2 the test
//! process joins, inside a fresh network namespace (`drover_testkit::netns::enter`).
//! Backends are TCP servers on addresses of that namespace's loopback; Services,
//! EndpointSlices (with the hints the EndpointSlice controller writes) and TrafficSplits
//! are written to the store. Needs root; the fixture mirrors `tests/proxy.rs`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bus_schema::drover::TrafficSplit;
use common::{apply, block_on};
use drover_node::proxy::topology::Locality;
use drover_node::proxy::{self, ProxyConfig};
use drover_store::{DeleteOptions, Store, StoreConfig};
use drover_testkit::cgroup::TestCgroup;
use drover_testkit::{TestNats, netns};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

/// Failure guard for waits; never a timing assertion.
const GUARD: Duration = Duration::from_secs(30);

/// The test's cgroup and pin directory; dropping it unpins (detaching the programs),
/// moves the process back to its old cgroup and removes the new one, also on failure.
struct Fixture {
    pin_dir: PathBuf,
    cgroup: TestCgroup,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let unique = format!("drover-split-test-{}-{name}", std::process::id());
        Fixture {
            pin_dir: PathBuf::from("/sys/fs/bpf").join(&unique),
            cgroup: TestCgroup::new(&unique, true),
        }
    }

    fn config(&self, locality: Locality) -> ProxyConfig {
        ProxyConfig {
            pin_dir: self.pin_dir.clone(),
            cgroup: self.cgroup.path().to_path_buf(),
            service_cidr: Some(proxy::DEFAULT_SERVICE_CIDR.into()),
            locality,
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

/// TCP servers on `10.1.0.<n>:8080` (added to the namespace's loopback), each
/// answering every connection with `n`.
fn backends(ids: &[u8]) {
    for &n in ids {
        let ip = Ipv4Addr::new(10, 1, 0, n);
        netns::run("ip", &["addr", "add", &format!("{ip}/32"), "dev", "lo"]);
        let l = TcpListener::bind(SocketAddrV4::new(ip, 8080)).unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let _ = std::io::Write::write_all(&mut s, &[n]);
            }
        });
    }
}

/// Connects to `vip:80`: the id of the backend that answered, or the connect error.
fn ask(vip: Ipv4Addr) -> Result<u8, std::io::ErrorKind> {
    let to = SocketAddr::V4(SocketAddrV4::new(vip, 80));
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).map_err(|e| e.kind())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).map_err(|e| e.kind())?;
    Ok(b[0])
}

/// How many of `n` new connections to `vip` each backend answered.
fn tally(vip: Ipv4Addr, n: usize) -> BTreeMap<u8, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let id = ask(vip).unwrap_or_else(|e| panic!("connecting to {vip}: {e:?}"));
        *counts.entry(id).or_default() += 1;
    }
    counts
}

/// Waits until 64 new connections in a row to `vip` are all answered by backends in
/// `ids` (a change of the maps is complete once none lands elsewhere).
async fn wait_only(what: &str, vip: Ipv4Addr, ids: &[u8]) {
    let want: BTreeSet<u8> = ids.iter().copied().collect();
    let started = Instant::now();
    loop {
        let got: Result<BTreeSet<u8>, _> = (0..64).map(|_| ask(vip)).collect();
        match &got {
            Ok(seen) if seen.is_subset(&want) => return,
            _ => {}
        }
        assert!(
            started.elapsed() < GUARD,
            "timed out waiting for {what}: last {got:?}, want only {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until 64 new connections to `vip` are answered by exactly the backends `ids`.
async fn wait_exactly(what: &str, vip: Ipv4Addr, ids: &[u8]) {
    let want: BTreeSet<u8> = ids.iter().copied().collect();
    let started = Instant::now();
    loop {
        let got: Result<BTreeSet<u8>, _> = (0..64).map(|_| ask(vip)).collect();
        if got.as_ref() == Ok(&want) {
            return;
        }
        assert!(
            started.elapsed() < GUARD,
            "timed out waiting for {what}: last {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn service(name: &str, ip: Ipv4Addr, extra: Value) -> Service {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterIP": ip.to_string(), "selector": {"app": name},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
    });
    for (k, x) in extra.as_object().unwrap() {
        v["spec"][k] = x.clone();
    }
    serde_json::from_value(v).unwrap()
}

async fn create_service(store: &Store, name: &str, ip: Ipv4Addr, extra: Value) {
    store
        .api::<Service>()
        .create(&service(name, ip, extra))
        .await
        .unwrap();
}

/// Writes the Service's slice: endpoints `10.1.0.<n>`, ready or not, with hints as
/// the EndpointSlice controller writes them (`(zone, node)`, either empty for none).
async fn set_slice(store: &Store, svc: &str, endpoints: &[(u8, bool, &str, &str)]) {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|(n, ready, zone, node)| {
            let mut e = json!({"addresses": [format!("10.1.0.{n}")],
                               "conditions": {"ready": ready, "serving": ready, "terminating": false}});
            let mut hints = serde_json::Map::new();
            if !zone.is_empty() {
                e["zone"] = json!(zone);
                hints.insert("forZones".into(), json!([{"name": zone}]));
            }
            if !node.is_empty() {
                e["nodeName"] = json!(node);
                hints.insert("forNodes".into(), json!([{"name": node}]));
            }
            if *ready && !hints.is_empty() {
                e["hints"] = Value::Object(hints);
            }
            e
        })
        .collect();
    let s: EndpointSlice = serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{svc}-abcde"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps,
    }))
    .unwrap();
    apply(store, s).await;
}

/// Creates or updates split `name` of `root` with `(backend, weight)`.
async fn set_split(store: &Store, name: &str, root: &str, backends: &[(&str, u32)]) {
    let ts: TrafficSplit = serde_json::from_value(json!({
        "apiVersion": "drover.io/v1", "kind": "TrafficSplit",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"service": root,
                 "backends": backends.iter().map(|(s, w)| json!({"service": s, "weight": w})).collect::<Vec<_>>()},
    }))
    .unwrap();
    apply(store, ts).await;
}

const WEB: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 50);
const STICKY: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 60);

#[test]
fn a_traffic_split_weights_new_connections_per_backend_service() {
    if !netns::enter("a_traffic_split_weights_new_connections_per_backend_service") {
        return;
    }
    // v1: one endpoint (1); v2: three (2, 3, 4); the root's own: 9.
    backends(&[1, 2, 3, 4, 9]);
    let f = Fixture::new("split");
    block_on(async {
        let nats = TestNats::start().await;
        let store = Store::new(nats.client().await, StoreConfig::default())
            .await
            .unwrap();
        let config = f.config(Locality::default());
        let lb = proxy::start(&config).unwrap();
        let writes = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(proxy::run_at(
            store.clone(),
            lb,
            config.locality.clone(),
            writes.clone(),
        ));
        // Twenty unrelated Services, so a change that recomputed every service would
        // show in the write count below.
        for i in 0..20u8 {
            let name = format!("other-{i}");
            create_service(&store, &name, Ipv4Addr::new(10, 96, 1, i), json!({})).await;
            set_slice(&store, &name, &[(9, true, "", "")]).await;
        }

        create_service(&store, "web", WEB, json!({})).await;
        set_slice(&store, "web", &[(9, true, "", "")]).await;
        create_service(&store, "web-v1", Ipv4Addr::new(10, 96, 0, 51), json!({})).await;
        set_slice(&store, "web-v1", &[(1, true, "", "")]).await;
        create_service(&store, "web-v2", Ipv4Addr::new(10, 96, 0, 52), json!({})).await;
        set_slice(
            &store,
            "web-v2",
            &[(2, true, "", ""), (3, true, "", ""), (4, true, "", "")],
        )
        .await;
        wait_only("the root's own endpoint", WEB, &[9]).await;

        // 90/10 between a one-endpoint and a three-endpoint service.
        set_split(&store, "canary", "web", &[("web-v1", 90), ("web-v2", 10)]).await;
        wait_only(
            "the split replaces the root's endpoints",
            WEB,
            &[1, 2, 3, 4],
        )
        .await;
        let counts = tally(WEB, 10_000);
        let v1 = counts.get(&1).copied().unwrap_or(0);
        let share = v1 as f64 / 10_000.0;
        eprintln!("90/10 split over 10000 connections: {counts:?} (v1 {share:.4})");
        assert!(
            (0.87..=0.93).contains(&share),
            "v1 got {share:.4} of new connections, want 0.90 +- 0.03: {counts:?}"
        );
        for id in [2, 3, 4] {
            assert!(
                counts.contains_key(&id),
                "v2 endpoint {id} never chosen: {counts:?}"
            );
        }

        // 0/100 moves every new connection to v2.
        set_split(&store, "canary", "web", &[("web-v1", 0), ("web-v2", 100)]).await;
        wait_only("weight 0 takes v1 out", WEB, &[2, 3, 4]).await;
        let counts = tally(WEB, 1_000);
        assert!(!counts.contains_key(&1), "v1 still chosen: {counts:?}");

        // A backend's slice change recomputes its root (and itself), nothing else.
        let before = writes.load(std::sync::atomic::Ordering::Relaxed);
        set_slice(&store, "web-v2", &[(2, true, "", ""), (3, true, "", "")]).await;
        wait_exactly("the root follows its backend's slice", WEB, &[2, 3]).await;
        let cost = writes.load(std::sync::atomic::Ordering::Relaxed) - before;
        eprintln!("map writes for a backend slice change among 23 services: {cost}");
        assert!(
            cost < 20,
            "one backend change touched more than two services: {cost}"
        );

        // v2 scaled to nothing: the root's own endpoints, then back.
        set_slice(&store, "web-v2", &[]).await;
        wait_only("no backend endpoints: the root's own", WEB, &[9]).await;
        set_slice(&store, "web-v2", &[(2, true, "", "")]).await;
        wait_only("v2 back", WEB, &[2]).await;

        // All weights 0: the root's own endpoints.
        set_split(&store, "canary", "web", &[("web-v1", 0), ("web-v2", 0)]).await;
        wait_only("all weights 0", WEB, &[9]).await;

        // A second, younger split of the same root is ignored while the older exists.
        set_split(&store, "canary", "web", &[("web-v1", 1)]).await;
        wait_only("v1 only", WEB, &[1]).await;
        // The younger split is written first, so once the older one's change shows,
        // the proxy has seen both.
        set_split(&store, "younger", "web", &[("web-v2", 1)]).await;
        set_split(&store, "canary", "web", &[("web-v1", 0)]).await;
        wait_only("the older split still decides", WEB, &[9]).await;
        store
            .api::<TrafficSplit>()
            .delete(Some("default"), "canary", &DeleteOptions::default())
            .await
            .unwrap();
        wait_only("the younger split once the older is gone", WEB, &[2]).await;
        store
            .api::<TrafficSplit>()
            .delete(Some("default"), "younger", &DeleteOptions::default())
            .await
            .unwrap();
        wait_only("no split: the root's own endpoints", WEB, &[9]).await;

        // sessionAffinity on the root holds across its split: one client, one backend.
        create_service(
            &store,
            "sticky",
            STICKY,
            json!({"sessionAffinity": "ClientIP"}),
        )
        .await;
        set_slice(
            &store,
            "web-v2",
            &[(2, true, "", ""), (3, true, "", ""), (4, true, "", "")],
        )
        .await;
        set_split(
            &store,
            "sticky",
            "sticky",
            &[("web-v1", 50), ("web-v2", 50)],
        )
        .await;
        let started = Instant::now();
        while ask(STICKY).is_err() {
            assert!(started.elapsed() < GUARD, "the sticky split never routed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let counts = tally(STICKY, 200);
        assert_eq!(
            counts.len(),
            1,
            "affinity broken across the split: {counts:?}"
        );

        task.abort();
        let _ = task.await;
    });
}

#[test]
fn topology_hints_keep_traffic_on_the_node_or_zone_and_fall_back() {
    if !netns::enter("topology_hints_keep_traffic_on_the_node_or_zone_and_fall_back") {
        return;
    }
    backends(&[1, 2, 3]);
    let f = Fixture::new("topology");
    block_on(async {
        let nats = TestNats::start().await;
        let store = Store::new(nats.client().await, StoreConfig::default())
            .await
            .unwrap();
        let here = Locality {
            node: "node-a".into(),
            zone: Some("z1".into()),
        };
        let config = f.config(here.clone());
        let lb = proxy::start(&config).unwrap();
        let task = tokio::spawn(proxy::run_at(store.clone(), lb, here, Default::default()));

        // PreferClose: zone hints only (1 in z1 on node-b, 2 in z2).
        create_service(
            &store,
            "near",
            WEB,
            json!({"trafficDistribution": "PreferClose"}),
        )
        .await;
        set_slice(&store, "near", &[(1, true, "z1", ""), (2, true, "z2", "")]).await;
        wait_only("same zone", WEB, &[1]).await;
        set_slice(&store, "near", &[(1, false, "z1", ""), (2, true, "z2", "")]).await;
        wait_only("no ready endpoint in the zone: all", WEB, &[2]).await;

        // PreferSameNode: node and zone hints (3 on this node, 1 in this zone).
        set_slice(
            &store,
            "near",
            &[
                (1, true, "z1", "node-b"),
                (2, true, "z2", "node-c"),
                (3, true, "z1", "node-a"),
            ],
        )
        .await;
        wait_only("same node", WEB, &[3]).await;
        set_slice(
            &store,
            "near",
            &[
                (1, true, "z1", "node-b"),
                (2, true, "z2", "node-c"),
                (3, false, "z1", "node-a"),
            ],
        )
        .await;
        wait_only("the node's endpoint gone: same zone", WEB, &[1]).await;
        set_slice(
            &store,
            "near",
            &[
                (1, true, "", ""),
                (2, true, "z2", "node-c"),
                (3, true, "z1", "node-a"),
            ],
        )
        .await;
        wait_exactly(
            "one ready endpoint without hints: every endpoint",
            WEB,
            &[1, 2, 3],
        )
        .await;
        task.abort();
        let _ = task.await;
    });
}

#[test]
fn the_agent_gives_its_proxy_the_nodes_name_and_zone() {
    if !netns::enter("the_agent_gives_its_proxy_the_nodes_name_and_zone") {
        return;
    }
    backends(&[7, 8]);
    let f = Fixture::new("agent");
    block_on(async {
        let nats = TestNats::start().await;
        let store = Store::new(nats.client().await, StoreConfig::default())
            .await
            .unwrap();
        let runtime = Arc::new(drover_node::hollow::HollowRuntime::seeded(
            drover_node::HollowConfig::default(),
            7,
        ));
        let mut config = drover_node::AgentConfig::new("node-a");
        config.identity.zone = Some("z1".into());
        config.capacity = Some(drover_node::node::Capacity {
            cpu_millis: 4000,
            memory_bytes: 8 << 30,
            ephemeral_storage_bytes: 100 << 30,
            pods: 110,
        });
        // The locality left empty here: the agent fills it from its identity.
        config.proxy = Some(f.config(Locality::default()));
        let agent = drover_node::NodeAgent::start(store.clone(), runtime, config)
            .await
            .unwrap();
        create_service(
            &store,
            "near",
            WEB,
            json!({"trafficDistribution": "PreferSameNode"}),
        )
        .await;
        set_slice(
            &store,
            "near",
            &[(7, true, "z1", "node-a"), (8, true, "z2", "node-b")],
        )
        .await;
        wait_exactly("this node's endpoint only", WEB, &[7]).await;
        set_slice(
            &store,
            "near",
            &[(7, true, "z2", "node-c"), (8, true, "z1", "node-b")],
        )
        .await;
        wait_exactly("this zone's endpoint only", WEB, &[8]).await;
        agent.stop().await;
    });
}
