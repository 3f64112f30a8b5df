//! The allocation repair end to end: real nats-server and store, Services created
//! through admission (which claims their cluster IPs and node ports in the kube-system
//! registries), registries damaged by writing them directly as a failed delete or a
//! lost write would leave them, and the repair pass / loop bringing them back. Waits
//! follow watches; timeouts are failure guards only.

mod common;

use std::time::Duration;

use common::{kind, wait_for};
use drover_admission::services::{
    CLUSTER_IP_REGISTRY, NODE_PORT_REGISTRY, REGISTRY_NAMESPACE, RepairState,
};
use drover_store::{Store, StoreConfig, WatchEvent, WatchOptions};
use drover_testkit::TestNats;
use futures::StreamExt;
use serde_json::{Value, json};

/// Unix seconds far past any claim the test makes (claims are stamped with the clock).
const LATER: u64 = 4_000_000_000;

fn configmaps() -> &'static bus_schema::KindInfo {
    kind("", "configmaps")
}

fn services() -> &'static bus_schema::KindInfo {
    kind("", "services")
}

async fn store() -> (TestNats, Store) {
    let nats = TestNats::start().await;
    let store = Store::new(nats.client().await, StoreConfig::default())
        .await
        .unwrap();
    for ns in ["ns", REGISTRY_NAMESPACE] {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        store.create(kind("", "namespaces"), obj).await.unwrap();
    }
    (nats, store)
}

/// Creates a Service through admission (allocating what it needs); returns it.
async fn create_service(store: &Store, name: &str, spec: Value) -> Value {
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "ns"}, "spec": spec});
    drover_admission::create(store, services(), svc)
        .await
        .unwrap()
}

async fn registry(store: &Store, name: &str) -> serde_json::Map<String, Value> {
    let cm = store
        .get(configmaps(), Some(REGISTRY_NAMESPACE), name)
        .await
        .unwrap();
    cm["data"].as_object().cloned().unwrap_or_default()
}

/// Writes the registry directly (no admission): the damage under repair.
async fn damage(store: &Store, name: &str, f: impl Fn(&mut serde_json::Map<String, Value>)) {
    common::edit(store, configmaps(), Some(REGISTRY_NAMESPACE), name, |cm| {
        f(cm["data"].as_object_mut().unwrap())
    })
    .await;
}

#[tokio::test]
async fn leaks_are_freed_a_pass_later_and_lost_values_are_marked_again() {
    let (_nats, store) = store().await;
    let web = create_service(&store, "web", json!({"ports": [{"port": 80}]})).await;
    let web_ip = web["spec"]["clusterIP"].as_str().unwrap().to_string();
    let np = create_service(
        &store,
        "np",
        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
    )
    .await;
    let np_ip = np["spec"]["clusterIP"].as_str().unwrap().to_string();
    // A Service deleted while its registry write failed: its entries stay behind. And
    // web's entry got lost.
    damage(&store, CLUSTER_IP_REGISTRY, |d| {
        d.insert("10.96.0.77".into(), json!("ns/gone@1000"));
        d.remove(&web_ip);
    })
    .await;
    damage(&store, NODE_PORT_REGISTRY, |d| {
        d.insert("30999".into(), json!("ns/gone@1000"));
    })
    .await;

    let mut state = RepairState::default();
    let first = drover_admission::services::repair(&store, &mut state, LATER)
        .await
        .unwrap();
    assert_eq!(first.marked, vec![web_ip.clone()]);
    assert_eq!(
        first.flagged,
        vec!["10.96.0.77".to_string(), "30999".to_string()]
    );
    assert!(first.released.is_empty());
    let reasons: Vec<(&str, &str)> = first
        .problems
        .iter()
        .map(|p| (p.reason, p.service["metadata"]["name"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons, vec![("ClusterIPNotAllocated", "web")]);
    let ips = registry(&store, CLUSTER_IP_REGISTRY).await;
    assert!(
        ips.contains_key("10.96.0.77"),
        "a leak is kept on the first pass"
    );
    assert!(ips[&web_ip].as_str().unwrap().starts_with("ns/web@"));

    let second = drover_admission::services::repair(&store, &mut state, LATER)
        .await
        .unwrap();
    assert_eq!(
        second.released,
        vec!["10.96.0.77".to_string(), "30999".to_string()]
    );
    assert!(second.marked.is_empty() && second.problems.is_empty());
    let ips = registry(&store, CLUSTER_IP_REGISTRY).await;
    let mut held: Vec<&String> = ips.keys().collect();
    held.sort();
    let mut want = vec![&np_ip, &web_ip];
    want.sort();
    assert_eq!(held, want);
    let ports = registry(&store, NODE_PORT_REGISTRY).await;
    assert_eq!(ports.keys().collect::<Vec<_>>(), vec!["30080"]);

    // A consistent registry: the pass writes nothing.
    let before = store
        .get(configmaps(), Some(REGISTRY_NAMESPACE), CLUSTER_IP_REGISTRY)
        .await
        .unwrap();
    let third = drover_admission::services::repair(&store, &mut state, LATER)
        .await
        .unwrap();
    assert!(third.flagged.is_empty() && third.released.is_empty() && third.marked.is_empty());
    let after = store
        .get(configmaps(), Some(REGISTRY_NAMESPACE), CLUSTER_IP_REGISTRY)
        .await
        .unwrap();
    assert_eq!(
        before["metadata"]["resourceVersion"],
        after["metadata"]["resourceVersion"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_frees_leaks_and_reports_duplicates() {
    let (_nats, store) = store().await;
    let web = create_service(&store, "web", json!({"ports": [{"port": 80}]})).await;
    let web_ip = web["spec"]["clusterIP"].as_str().unwrap().to_string();
    // A Service written past admission with web's IP: a duplicate to report.
    let dup = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "dup", "namespace": "ns"},
        "spec": {"clusterIP": web_ip, "ports": [{"port": 80}]}});
    store.create(services(), dup).await.unwrap();
    // A leak with a claim time long past the grace.
    damage(&store, CLUSTER_IP_REGISTRY, |d| {
        d.insert("10.96.0.78".into(), json!("ns/gone@1000"));
    })
    .await;

    let repair =
        drover_controllers::allocation_repair::start(store.clone(), Duration::from_millis(100));
    // The registry as it is now, then its changes (not its older history, where the
    // leak was not written yet).
    let current = store
        .get(configmaps(), Some(REGISTRY_NAMESPACE), CLUSTER_IP_REGISTRY)
        .await
        .unwrap();
    let freed = |cm: &Value| cm["data"].get("10.96.0.78").is_none();
    if !freed(&current) {
        let from = current["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap();
        let mut watch = store
            .watch(
                configmaps(),
                Some(REGISTRY_NAMESPACE),
                from,
                WatchOptions::default(),
            )
            .await
            .unwrap();
        tokio::time::timeout(common::GUARD, async {
            while let Some(event) = watch.next().await {
                if let WatchEvent::Modified(cm) = event.unwrap()
                    && cm["metadata"]["name"] == CLUSTER_IP_REGISTRY
                    && freed(&cm)
                {
                    return;
                }
            }
            panic!("watch ended")
        })
        .await
        .expect("the leak is freed");
    }
    let events = wait_for(
        &store,
        kind("", "events"),
        Some("ns"),
        "duplicate event",
        |all| {
            all.values().any(|e| {
                e["reason"] == "ClusterIPAlreadyAllocated" && e["involvedObject"]["name"] == "dup"
            })
        },
    )
    .await;
    let event = events
        .values()
        .find(|e| e["reason"] == "ClusterIPAlreadyAllocated")
        .unwrap();
    assert_eq!(event["type"], "Warning");
    assert_eq!(
        event["message"],
        format!(
            "Cluster IP [IPv4]:{web_ip} was assigned to multiple services; please recreate service"
        )
    );
    // web keeps its entry (the registry names it).
    let ips = registry(&store, CLUSTER_IP_REGISTRY).await;
    assert!(ips[&web_ip].as_str().unwrap().starts_with("ns/web@"));
    repair.abort();
}
