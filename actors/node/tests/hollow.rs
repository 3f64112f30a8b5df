//! Hollow node agents against a real store (nats-server with JetStream): registration,
//! pod CIDR claims, leases, and a pod's life on a hollow node. Timeouts are failure guards
//! only; nothing asserts on timing.

use std::collections::BTreeSet;
use std::time::Duration;

use drover_node::cidr::Ipv4Cidr;
use drover_node::{FleetConfig, HollowFleet, Runtime, run_hollow_fleet};
use drover_store::{
    DeleteOptions, DeleteOutcome, ListOptions, Store, StoreConfig, WatchEvent, WatchOptions, object,
};
use drover_testkit::TestNats;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

/// Failure guard for every wait.
const GUARD: Duration = Duration::from_secs(60);

/// A store on the test's nats-server, with the control plane's pod index running (agents
/// follow their pods through it) for the rest of the test: the index's task ends with the
/// test's runtime.
async fn store(nats: &TestNats) -> Store {
    let store = Store::new(nats.client().await, StoreConfig::default())
        .await
        .unwrap();
    let index = drover_store::node_index::PodIndex::start(store.clone())
        .await
        .unwrap();
    std::mem::forget(index);
    store
}

fn fleet_config() -> FleetConfig {
    FleetConfig {
        lease_renew_interval: Duration::from_millis(200),
        zones: vec!["zone-a".into(), "zone-b".into()],
        ..FleetConfig::default()
    }
}

/// Waits (watching, from the start of the bucket's history) for an event on `kind` in
/// `namespace` that satisfies `pred`; returns it.
async fn wait_event(
    store: &Store,
    kind: &'static bus_schema::KindInfo,
    namespace: Option<&str>,
    pred: impl Fn(&WatchEvent) -> bool,
) -> WatchEvent {
    let mut watch = store
        .watch(kind, namespace, 0, WatchOptions::default())
        .await
        .unwrap();
    tokio::time::timeout(GUARD, async {
        while let Some(event) = watch.next().await {
            let event = event.unwrap();
            if pred(&event) {
                return event;
            }
        }
        panic!("watch ended")
    })
    .await
    .expect("condition not reached before the guard timeout")
}

fn named<'a>(event: &'a WatchEvent, name: &str) -> Option<&'a Value> {
    match event {
        WatchEvent::Added(o) | WatchEvent::Modified(o) if object::name(o) == name => Some(o),
        _ => None,
    }
}

async fn check_registered(store: &Store, fleet: &HollowFleet, n: usize) {
    let (nodes, _) = store
        .api::<Node>()
        .list(None, &ListOptions::default())
        .await
        .unwrap();
    assert_eq!(nodes.len(), n);
    let cidrs: BTreeSet<String> = nodes
        .iter()
        .map(|n| n.spec.as_ref().unwrap().pod_cidr.clone().unwrap())
        .collect();
    assert_eq!(cidrs.len(), n, "pod cidrs must be distinct: {cidrs:?}");
    let cluster: Ipv4Cidr = "10.244.0.0/16".parse().unwrap();
    for node in &nodes {
        let name = node.metadata.name.clone().unwrap();
        let cidr: Ipv4Cidr = node
            .spec
            .as_ref()
            .unwrap()
            .pod_cidr
            .as_ref()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(cidr.prefix(), 24);
        assert!(cluster.contains(cidr.network()));
        let status = node.status.as_ref().unwrap();
        let ready = status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True", "{name}");
        assert!(ready.last_heartbeat_time.is_some());
        assert_eq!(status.capacity.as_ref().unwrap()["pods"].0, "110");
        assert!(
            status
                .node_info
                .as_ref()
                .unwrap()
                .container_runtime_version
                .starts_with("hollow://")
        );
        let labels = node.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], name);
        assert!(labels.contains_key("topology.kubernetes.io/zone"));
        let lease = store
            .api::<Lease>()
            .get(Some("kube-node-lease"), &name)
            .await
            .unwrap();
        let spec = lease.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some(name.as_str()));
        assert!(spec.renew_time.is_some());
    }
    let from_agents: BTreeSet<String> = fleet
        .agents
        .iter()
        .map(|a| a.pod_cidr().to_string())
        .collect();
    assert_eq!(from_agents, cidrs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hollow_nodes_register_and_run_a_pod() {
    let nats = TestNats::start().await;
    let store = store(&nats).await;
    let fleet = run_hollow_fleet(store.clone(), 3, fleet_config())
        .await
        .unwrap();
    check_registered(&store, &fleet, 3).await;

    // The lease is renewed: a later write to it shows up.
    let lease_kind = bus_schema::kinds::of::<Lease>();
    wait_event(
        &store,
        lease_kind,
        Some("kube-node-lease"),
        |e| matches!(e, WatchEvent::Modified(o) if object::name(o) == "hollow-0000"),
    )
    .await;

    let node_idx = 1;
    let node_name = fleet.agents[node_idx].node_name().to_string();
    let node_cidr: Ipv4Cidr = fleet.agents[node_idx].pod_cidr().parse().unwrap();
    let pod_kind = bus_schema::kinds::of::<Pod>();
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "nodeName": node_name,
            "containers": [
                {"name": "web", "image": "busybox"},
                {"name": "sidecar", "image": "busybox", "env": [{"name": "A", "value": "1"}]}
            ]
        }
    });
    store.create(pod_kind, pod).await.unwrap();

    let event = wait_event(&store, pod_kind, Some("default"), |e| {
        named(e, "web").is_some_and(|p| p.pointer("/status/phase") == Some(&json!("Running")))
    })
    .await;
    let running: Pod = serde_json::from_value(named(&event, "web").unwrap().clone()).unwrap();
    let status = running.status.unwrap();
    let pod_ip: std::net::Ipv4Addr = status.pod_ip.unwrap().parse().unwrap();
    assert!(node_cidr.contains(pod_ip), "{pod_ip} not in {node_cidr}");
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    assert!(status.start_time.is_some());
    let containers = status.container_statuses.unwrap();
    assert_eq!(containers.len(), 2);
    for c in &containers {
        assert!(c.ready && c.started == Some(true), "{c:?}");
        assert!(c.state.as_ref().unwrap().running.is_some());
    }
    let conditions: BTreeSet<(String, String)> = status
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| (c.type_, c.status))
        .collect();
    for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert!(
            conditions.contains(&(t.to_string(), "True".to_string())),
            "{t}: {conditions:?}"
        );
    }
    let runtime = &fleet.runtimes[node_idx];
    assert_eq!(runtime.list_sandboxes().await.unwrap().len(), 1);
    assert_eq!(runtime.list_containers(None).await.unwrap().len(), 2);
    // Other nodes run nothing.
    assert!(fleet.runtimes[0].list_sandboxes().await.unwrap().is_empty());

    // Graceful delete: the agent stops the pod, then deletes it with grace 0.
    let outcome = store
        .delete(
            pod_kind,
            Some("default"),
            "web",
            &DeleteOptions {
                grace_period_seconds: Some(30),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(matches!(outcome, DeleteOutcome::Terminating(_)));
    wait_event(
        &store,
        pod_kind,
        Some("default"),
        |e| matches!(e, WatchEvent::Deleted(o) if object::name(o) == "web"),
    )
    .await;
    assert!(runtime.list_sandboxes().await.unwrap().is_empty());
    assert!(runtime.list_containers(None).await.unwrap().is_empty());
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_claims_get_distinct_cidrs() {
    let nats = TestNats::start().await;
    let store = store(&nats).await;
    let cluster: Ipv4Cidr = "10.244.0.0/16".parse().unwrap();
    // A Node that got its CIDR before the registry existed keeps it.
    store
        .create(
            bus_schema::kinds::of::<Node>(),
            json!({"metadata": {"name": "old-node"}, "spec": {"podCIDR": "10.244.0.0/24"}}),
        )
        .await
        .unwrap();
    let claims = (0..16).map(|i| {
        let store = store.clone();
        async move {
            drover_node::agent::claim_pod_cidr(&store, &format!("racer-{i}"), cluster, 24)
                .await
                .unwrap()
        }
    });
    let got = futures::future::join_all(claims).await;
    let distinct: BTreeSet<&String> = got.iter().collect();
    assert_eq!(distinct.len(), got.len(), "{got:?}");
    // Claims are idempotent: asking again returns the same CIDR.
    let again = drover_node::agent::claim_pod_cidr(&store, "racer-3", cluster, 24)
        .await
        .unwrap();
    assert_eq!(again, got[3]);
    assert!(!distinct.contains(&"10.244.0.0/24".to_string()), "{got:?}");
    let old = drover_node::agent::claim_pod_cidr(&store, "old-node", cluster, 24)
        .await
        .unwrap();
    assert_eq!(old, "10.244.0.0/24");
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_hollow_nodes_register() {
    let nats = TestNats::start().await;
    let store = store(&nats).await;
    let before = rss_kib();
    let fleet = run_hollow_fleet(
        store.clone(),
        100,
        FleetConfig {
            lease_renew_interval: Duration::from_secs(10),
            ..fleet_config()
        },
    )
    .await
    .unwrap();
    check_registered(&store, &fleet, 100).await;
    println!(
        "100 hollow nodes: process RSS {:?} KiB (before the fleet: {:?} KiB; includes the test's store client)",
        rss_kib(),
        before
    );
    fleet.stop().await;
}

/// Waits until `cond` holds on runtime state (which has no watch), polling under the guard.
async fn until(mut cond: impl AsyncFnMut() -> bool) {
    tokio::time::timeout(GUARD, async {
        while !cond().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("condition not reached before the guard timeout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_failures_are_reported_and_immediate_deletes_clean_up() {
    let nats = TestNats::start().await;
    let store = store(&nats).await;
    let fleet = run_hollow_fleet(
        store.clone(),
        1,
        FleetConfig {
            hollow: drover_node::HollowConfig {
                failure_rate: 1.0,
                ..Default::default()
            },
            ..fleet_config()
        },
    )
    .await
    .unwrap();
    let node_name = fleet.agents[0].node_name().to_string();
    let pod_kind = bus_schema::kinds::of::<Pod>();
    let pod = json!({
        "metadata": {"name": "doomed", "namespace": "default"},
        "spec": {"nodeName": node_name, "restartPolicy": "Never",
                 "containers": [{"name": "main", "image": "busybox"}]}
    });
    store.create(pod_kind, pod).await.unwrap();
    let event = wait_event(&store, pod_kind, Some("default"), |e| {
        named(e, "doomed").is_some_and(|p| p.pointer("/status/phase") == Some(&json!("Failed")))
    })
    .await;
    let pod = named(&event, "doomed").unwrap();
    let terminated = pod
        .pointer("/status/containerStatuses/0/state/terminated")
        .unwrap();
    assert_eq!(terminated["reason"], "StartError");
    assert_eq!(
        pod.pointer("/status/conditions/3/type"),
        Some(&json!("Ready"))
    );
    assert_eq!(
        pod.pointer("/status/conditions/3/status"),
        Some(&json!("False"))
    );

    // Deleted at once (grace 0) by someone else: the agent still cleans the runtime up.
    let runtime = fleet.runtimes[0].clone();
    assert_eq!(runtime.list_sandboxes().await.unwrap().len(), 1);
    store
        .delete(
            pod_kind,
            Some("default"),
            "doomed",
            &DeleteOptions {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    until(async || runtime.list_sandboxes().await.unwrap().is_empty()).await;
    fleet.stop().await;
}

fn container_ids(pod: &Value) -> Vec<String> {
    pod.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["containerID"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_agent_re_adopts_running_pods() {
    let nats = TestNats::start().await;
    let store = store(&nats).await;
    let config = fleet_config();
    let mut fleet = run_hollow_fleet(store.clone(), 1, config.clone())
        .await
        .unwrap();
    let node_name = fleet.agents[0].node_name().to_string();
    let cidr = fleet.agents[0].pod_cidr().to_string();
    let pod_kind = bus_schema::kinds::of::<Pod>();
    let pod = json!({
        "metadata": {"name": "keeper", "namespace": "default"},
        "spec": {"nodeName": node_name, "containers": [{"name": "main", "image": "busybox"}]}
    });
    store.create(pod_kind, pod).await.unwrap();
    let running = |e: &WatchEvent| {
        named(e, "keeper").is_some_and(|p| {
            p.pointer("/status/phase") == Some(&json!("Running")) && !container_ids(p).is_empty()
        })
    };
    let event = wait_event(&store, pod_kind, Some("default"), running).await;
    let before = container_ids(named(&event, "keeper").unwrap());

    // Stop the agent (the pod keeps running in the runtime), wipe the pod's status so
    // the next agent has to write it again, and start a new agent on the same runtime.
    fleet.agents.pop().unwrap().stop().await;
    let mut pod = store
        .get(pod_kind, Some("default"), "keeper")
        .await
        .unwrap();
    pod.as_object_mut().unwrap().remove("status");
    let wiped = store.update(pod_kind, pod).await.unwrap();
    let wiped_rv: u64 = object::meta_str(&wiped, "resourceVersion")
        .unwrap()
        .parse()
        .unwrap();
    let runtime: std::sync::Arc<dyn Runtime> = fleet.runtimes[0].clone();
    let agent = drover_node::NodeAgent::start(
        store.clone(),
        runtime,
        drover_node::fleet::node_config(&config, 0),
    )
    .await
    .unwrap();
    assert_eq!(agent.pod_cidr(), cidr, "re-registration keeps the pod cidr");
    let event = wait_event(&store, pod_kind, Some("default"), |e| {
        e.revision() > wiped_rv && running(e)
    })
    .await;
    let after = container_ids(named(&event, "keeper").unwrap());
    assert_eq!(before, after, "containers were re-adopted, not restarted");
    assert_eq!(fleet.runtimes[0].list_sandboxes().await.unwrap().len(), 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_containers_restart_with_backoff() {
    let nats = TestNats::start().await;
    let store = store(&nats).await;
    let fleet = run_hollow_fleet(
        store.clone(),
        1,
        FleetConfig {
            hollow: drover_node::HollowConfig {
                failure_rate: 1.0,
                ..Default::default()
            },
            restart_backoff_base: Duration::from_millis(20),
            restart_backoff_max: Duration::from_millis(80),
            ..fleet_config()
        },
    )
    .await
    .unwrap();
    let node_name = fleet.agents[0].node_name().to_string();
    let pod_kind = bus_schema::kinds::of::<Pod>();
    let pod = json!({
        "metadata": {"name": "crashy", "namespace": "default"},
        "spec": {"nodeName": node_name, "containers": [{"name": "main", "image": "busybox"}]}
    });
    store.create(pod_kind, pod).await.unwrap();
    let event = wait_event(&store, pod_kind, Some("default"), |e| {
        named(e, "crashy").is_some_and(|p| {
            p.pointer("/status/containerStatuses/0/restartCount")
                .and_then(Value::as_i64)
                .is_some_and(|n| n >= 2)
        })
    })
    .await;
    let status = named(&event, "crashy").unwrap()["status"].clone();
    let c = &status["containerStatuses"][0];
    assert_eq!(c["state"]["waiting"]["reason"], "CrashLoopBackOff", "{c}");
    assert_eq!(c["lastState"]["terminated"]["reason"], "StartError", "{c}");
    assert_eq!(c["ready"], false);
    // The current instance and the previous one (for `logs --previous`) at most: older
    // instances are removed on restart.
    assert!(fleet.runtimes[0].list_containers(None).await.unwrap().len() <= 2);
    fleet.stop().await;
}

/// The `Ready` condition's status, "" when there is none.
fn ready_status(pod: &Value) -> &str {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
}

/// What the node lifecycle controller does to a down node's pods (Kubernetes'
/// `MarkPodsNotReady`: `Ready` False, nothing else) is undone by the agent once it sees
/// the pod again: the stored status no longer is what it last wrote, so it writes its
/// own observation back, `Ready` True for a running pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pod_marked_not_ready_by_the_control_plane_is_reported_ready_again() {
    let nats = TestNats::start().await;
    let store = store(&nats).await;
    let fleet = run_hollow_fleet(store.clone(), 1, fleet_config())
        .await
        .unwrap();
    let node_name = fleet.agents[0].node_name().to_string();
    let pod_kind = bus_schema::kinds::of::<Pod>();
    let pod = json!({
        "metadata": {"name": "steady", "namespace": "default"},
        "spec": {"nodeName": node_name, "containers": [{"name": "main", "image": "busybox"}]}
    });
    store.create(pod_kind, pod).await.unwrap();
    let ready = wait_event(&store, pod_kind, Some("default"), |e| {
        named(e, "steady").is_some_and(|p| ready_status(p) == "True")
    })
    .await;

    // Mark it as the controller does: a CAS on the pod as read, only Ready changed
    // (re-read and again if the agent wrote in between).
    let mut current = named(&ready, "steady").unwrap().clone();
    let written = loop {
        let mut marked = current.clone();
        let conditions = marked
            .pointer_mut("/status/conditions")
            .and_then(Value::as_array_mut)
            .unwrap();
        let slot = conditions
            .iter_mut()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        slot["status"] = json!("False");
        match store.update(pod_kind, marked).await {
            Ok(w) => break w,
            Err(drover_store::StoreError::Conflict { .. }) => {
                current = store
                    .get(pod_kind, Some("default"), "steady")
                    .await
                    .unwrap();
            }
            Err(e) => panic!("marking the pod not ready: {e}"),
        }
    };
    assert_eq!(ready_status(&written), "False");
    let marked_rv = revision_of(&written);

    let back = wait_event(&store, pod_kind, Some("default"), |e| {
        e.revision() > marked_rv && named(e, "steady").is_some_and(|p| ready_status(p) == "True")
    })
    .await;
    let back = named(&back, "steady").unwrap();
    assert_eq!(
        object::meta_str(back, "uid"),
        object::meta_str(&written, "uid")
    );
    fleet.stop().await;
}

fn revision_of(obj: &Value) -> u64 {
    object::meta_str(obj, "resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}
