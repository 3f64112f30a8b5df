//! The scheduler against a real store (nats-server with JetStream, fsync per write):
//! Node objects written directly (the scheduler needs no kubelet) or hollow node agents
//! where pods must run. Timeouts are failure guards only; nothing asserts on timing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use drover_node::node::Capacity;
use drover_node::{FleetConfig, run_hollow_fleet};
use drover_scheduler::Scheduler;
use drover_store::{ListOptions, Store, StoreConfig, WatchEvent, WatchOptions, object};
use drover_testkit::TestNats;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use serde_json::{Value, json};

/// Failure guard for every wait.
const GUARD: Duration = Duration::from_secs(60);

struct Cluster {
    _nats: TestNats,
    store: Store,
    _scheduler: Scheduler,
}

async fn cluster() -> Cluster {
    let nats = TestNats::start().await;
    let store = Store::new(nats.client().await, StoreConfig::default())
        .await
        .unwrap();
    let scheduler = drover_scheduler::start(store.clone());
    Cluster {
        _nats: nats,
        store,
        _scheduler: scheduler,
    }
}

fn pods() -> &'static bus_schema::KindInfo {
    bus_schema::kinds::of::<Pod>()
}

fn nodes() -> &'static bus_schema::KindInfo {
    bus_schema::kinds::of::<Node>()
}

fn events() -> &'static bus_schema::KindInfo {
    bus_schema::kinds::of::<Event>()
}

/// Writes a Ready Node with `cpu` and `extra` merged in.
async fn add_node(store: &Store, name: &str, cpu: &str, extra: Value) {
    let mut obj = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    });
    merge(&mut obj, extra);
    store.create(nodes(), obj).await.unwrap();
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

/// Creates pod `name` requesting `cpu` with `extra` merged in.
async fn add_pod(store: &Store, name: &str, cpu: &str, extra: Value) {
    let mut obj = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "hollow:1",
            "resources": {"requests": {"cpu": cpu}}}]}
    });
    merge(&mut obj, extra);
    store.create(pods(), obj).await.unwrap();
}

/// Waits (watching from the start) until an object of `kind` satisfies `pred`.
async fn wait_for(
    store: &Store,
    kind: &'static bus_schema::KindInfo,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let mut watch = store
        .watch(kind, None, 0, WatchOptions::default())
        .await
        .unwrap();
    tokio::time::timeout(GUARD, async {
        while let Some(event) = watch.next().await {
            if let WatchEvent::Added(o) | WatchEvent::Modified(o) = event.unwrap()
                && pred(&o)
            {
                return o;
            }
        }
        panic!("watch ended")
    })
    .await
    .expect("condition not reached before the guard timeout")
}

/// Waits until pod `name` is bound; returns its node.
async fn bound(store: &Store, name: &str) -> String {
    let pod = wait_for(store, pods(), |o| {
        object::name(o) == name && o.pointer("/spec/nodeName").is_some_and(|n| n != "")
    })
    .await;
    let conditions = pod
        .pointer("/status/conditions")
        .unwrap()
        .as_array()
        .unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "PodScheduled" && c["status"] == "True"),
        "bind sets PodScheduled=True in the same write: {pod}"
    );
    pod["spec"]["nodeName"].as_str().unwrap().to_string()
}

/// Waits for the FailedScheduling event of pod `name`; returns its message.
/// The pod's FailedScheduling event once the scheduler judged it against all `nodes` nodes
/// (an attempt made before its informer had every node says `0/<fewer>`, and the next
/// attempt rewrites the event).
async fn failed(store: &Store, name: &str, nodes: usize) -> String {
    let seen_all = format!("0/{nodes} nodes are available");
    let event = wait_for(store, events(), |o| {
        o["involvedObject"]["name"] == name
            && o["reason"] == "FailedScheduling"
            && o["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&seen_all))
    })
    .await;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["source"]["component"], "default-scheduler");
    event["message"].as_str().unwrap().to_string()
}

/// The pod's stored state: still unbound, with PodScheduled=False carrying `message`.
async fn check_pending(store: &Store, name: &str, message: &str) {
    let pod = wait_for(store, pods(), |o| {
        object::name(o) == name
            && o.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c["type"] == "PodScheduled"
                            && c["status"] == "False"
                            && c["message"] == message
                    })
                })
    })
    .await;
    assert!(pod.pointer("/spec/nodeName").is_none(), "{pod}");
    let cond = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .unwrap();
    assert_eq!(cond["reason"], "Unschedulable");
    assert_eq!(cond["message"], message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_taints_and_the_failed_scheduling_message() {
    let c = cluster().await;
    let gpu_taint =
        json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}});
    add_node(&c.store, "small-1", "1", json!({})).await;
    add_node(&c.store, "small-2", "1", json!({})).await;
    add_node(&c.store, "gpu-1", "8", gpu_taint).await;

    add_pod(&c.store, "fits", "500m", json!({})).await;
    let node = bound(&c.store, "fits").await;
    assert!(node.starts_with("small-"), "{node}");
    let scheduled = wait_for(&c.store, events(), |o| {
        o["involvedObject"]["name"] == "fits" && o["reason"] == "Scheduled"
    })
    .await;
    assert_eq!(
        scheduled["message"],
        format!("Successfully assigned default/fits to {node}")
    );

    add_pod(&c.store, "too-big", "2", json!({})).await;
    let msg = failed(&c.store, "too-big", 3).await;
    let want = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu. \
                preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.";
    assert_eq!(msg, want);
    check_pending(&c.store, "too-big", want).await;

    // A toleration opens the tainted node.
    add_pod(
        &c.store,
        "tolerant",
        "2",
        json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}}),
    )
    .await;
    assert_eq!(bound(&c.store, "tolerant").await, "gpu-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selector_and_node_affinity() {
    let c = cluster().await;
    for (name, disk, zone) in [("n1", "hdd", "a"), ("n2", "ssd", "a"), ("n3", "hdd", "b")] {
        add_node(
            &c.store,
            name,
            "4",
            json!({"metadata": {"labels": {"disktype": disk, "zone": zone}}}),
        )
        .await;
    }
    add_pod(
        &c.store,
        "ssd",
        "100m",
        json!({"spec": {"nodeSelector": {"disktype": "ssd"}}}),
    )
    .await;
    assert_eq!(bound(&c.store, "ssd").await, "n2");
    add_pod(
        &c.store,
        "zone-b",
        "100m",
        json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}]}}}}}),
    )
    .await;
    assert_eq!(bound(&c.store, "zone-b").await, "n3");
    add_pod(
        &c.store,
        "nvme",
        "100m",
        json!({"spec": {"nodeSelector": {"disktype": "nvme"}}}),
    )
    .await;
    assert_eq!(
        failed(&c.store, "nvme", 3).await,
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_affinity_spreads_replicas_and_topology_spread_balances_zones() {
    let c = cluster().await;
    for (name, zone) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b")] {
        add_node(
            &c.store,
            name,
            "4",
            json!({"metadata": {"labels": {"zone": zone}}}),
        )
        .await;
    }
    let anti = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"affinity": {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}}});
    for i in 0..4 {
        add_pod(&c.store, &format!("web-{i}"), "100m", anti.clone()).await;
    }
    let mut hosts = BTreeSet::new();
    for i in 0..4 {
        hosts.insert(bound(&c.store, &format!("web-{i}")).await);
    }
    assert_eq!(hosts.len(), 4, "one replica per node: {hosts:?}");
    add_pod(&c.store, "web-4", "100m", anti).await;
    assert_eq!(
        failed(&c.store, "web-4", 4).await,
        // The placed replicas' own anti-affinity (checked first, as in Kubernetes) rejects it.
        "0/4 nodes are available: 4 node(s) didn't satisfy existing pods anti-affinity rules. \
         preemption: 0/4 nodes are available: 4 No preemption victims found for incoming pod."
    );

    let spread = json!({"metadata": {"labels": {"app": "db"}}, "spec": {"topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
         "labelSelector": {"matchLabels": {"app": "db"}}}]}});
    let mut per_zone: BTreeMap<char, usize> = BTreeMap::new();
    for i in 0..6 {
        let name = format!("db-{i}");
        add_pod(&c.store, &name, "100m", spread.clone()).await;
        let node = bound(&c.store, &name).await;
        *per_zone.entry(node.chars().next().unwrap()).or_default() += 1;
    }
    assert_eq!(per_zone, BTreeMap::from([('a', 3), ('b', 3)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordoned_node_then_uncordoned() {
    let c = cluster().await;
    add_node(
        &c.store,
        "only",
        "4",
        json!({"spec": {"unschedulable": true}}),
    )
    .await;
    add_pod(&c.store, "waits", "100m", json!({})).await;
    assert_eq!(
        failed(&c.store, "waits", 1).await,
        "0/1 nodes are available: 1 node(s) were unschedulable. \
         preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    );
    // Uncordon: the node change moves the pod back and it binds.
    let mut node = c.store.get(nodes(), None, "only").await.unwrap();
    node["spec"]["unschedulable"] = json!(false);
    c.store.update(nodes(), node).await.unwrap();
    assert_eq!(bound(&c.store, "waits").await, "only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_affinity_leaves_the_pod_pending_with_a_clear_event() {
    let c = cluster().await;
    add_node(
        &c.store,
        "n1",
        "4",
        json!({"metadata": {"labels": {"zone": "a"}}}),
    )
    .await;
    add_node(
        &c.store,
        "n2",
        "4",
        json!({"metadata": {"labels": {"zone": "b"}}}),
    )
    .await;
    add_pod(
        &c.store,
        "lonely",
        "100m",
        json!({"metadata": {"labels": {"app": "lonely"}}, "spec": {"affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "nonexistent"}}, "topologyKey": "zone"}]}}}}),
    )
    .await;
    let want = "0/2 nodes are available: 2 node(s) didn't match pod affinity rules. \
                preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.";
    assert_eq!(failed(&c.store, "lonely", 2).await, want);
    check_pending(&c.store, "lonely", want).await;
    // Nothing half-done: no other pod, no binding, no nomination.
    let listed = c
        .store
        .list(pods(), None, &ListOptions::default())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(
        listed.items[0]
            .pointer("/status/nominatedNodeName")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pods_run_on_hollow_nodes_and_high_priority_preempts() {
    let c = cluster().await;
    let index = drover_store::node_index::PodIndex::start(c.store.clone())
        .await
        .unwrap();
    let config = FleetConfig {
        capacity: Capacity {
            cpu_millis: 1000,
            memory_bytes: 4 << 30,
            ephemeral_storage_bytes: 10 << 30,
            pods: 110,
        },
        ..FleetConfig::default()
    };
    let fleet = run_hollow_fleet(c.store.clone(), 2, config).await.unwrap();
    let running = |name: &'static str| {
        move |o: &Value| {
            object::name(o) == name && o.pointer("/status/phase") == Some(&json!("Running"))
        }
    };
    // Two low-priority pods fill both nodes and run.
    for name in ["low-0", "low-1"] {
        add_pod(
            &c.store,
            name,
            "800m",
            json!({"spec": {"priority": 1, "terminationGracePeriodSeconds": 1}}),
        )
        .await;
    }
    let n0 = bound(&c.store, "low-0").await;
    let n1 = bound(&c.store, "low-1").await;
    assert_ne!(n0, n1);
    wait_for(&c.store, pods(), running("low-0")).await;
    wait_for(&c.store, pods(), running("low-1")).await;

    // preemptionPolicy Never: waits, preempts nobody.
    add_pod(
        &c.store,
        "polite",
        "800m",
        json!({"spec": {"priority": 100, "preemptionPolicy": "Never"}}),
    )
    .await;
    assert_eq!(
        failed(&c.store, "polite", 2).await,
        "0/2 nodes are available: 2 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
    );
    c.store
        .delete(pods(), Some("default"), "polite", &Default::default())
        .await
        .unwrap();

    // A high-priority pod evicts one low pod, is nominated, then binds and runs there.
    add_pod(
        &c.store,
        "high",
        "800m",
        json!({"spec": {"priority": 1000}}),
    )
    .await;
    let nominated = wait_for(&c.store, pods(), |o| {
        object::name(o) == "high" && o.pointer("/status/nominatedNodeName").is_some()
    })
    .await;
    let target = nominated["status"]["nominatedNodeName"]
        .as_str()
        .unwrap()
        .to_string();
    let victim = if target == n0 { "low-0" } else { "low-1" };
    let preempted = wait_for(&c.store, events(), |o| {
        o["involvedObject"]["name"] == victim && o["reason"] == "Preempted"
    })
    .await;
    assert!(
        preempted["message"]
            .as_str()
            .unwrap()
            .ends_with(&format!("on node {target}"))
    );
    assert_eq!(bound(&c.store, "high").await, target);
    wait_for(&c.store, pods(), running("high")).await;
    // The victim is gone; the other low pod still runs where it was.
    let listed = c
        .store
        .list(pods(), None, &ListOptions::default())
        .await
        .unwrap();
    let names: BTreeSet<&str> = listed.items.iter().map(object::name).collect();
    let survivor = if victim == "low-0" { "low-1" } else { "low-0" };
    assert_eq!(names, BTreeSet::from(["high", survivor]));
    fleet.stop().await;
    index.stop().await;
}
