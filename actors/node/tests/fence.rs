//! StatefulSet fencing on a hollow node against a real nats-server: the agent's bus
//! heartbeat, StatefulSet containers killed (and only those) once the node has been cut off
//! from the bus for its fence timeout, the fence held while the Node is marked
//! unreachable, a StatefulSet pod replaced meanwhile torn down instead of resumed, one
//! still ours resumed, and orphaned sandboxes removed by a new agent. Timeouts are failure
//! guards only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use drover_node::fence::{FenceConfig, UNREACHABLE_TAINT};
use drover_node::hollow::HollowRuntime;
use drover_node::node::{Capacity, NodeIdentity};
use drover_node::runtime::{ContainerState, SandboxState};
use drover_node::{AgentConfig, HollowConfig, NodeAgent, Runtime};
use drover_store::{DeleteOptions, Store, StoreConfig, object};
use drover_testkit::TestNats;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

/// Failure guard for every wait.
const GUARD: Duration = Duration::from_secs(60);
const NODE: &str = "node-f";

fn pods() -> &'static bus_schema::KindInfo {
    bus_schema::kinds::of::<Pod>()
}

fn config() -> AgentConfig {
    let mut config = AgentConfig::new(NODE);
    config.identity = NodeIdentity {
        name: NODE.into(),
        zone: None,
        arch: "amd64".into(),
        labels: BTreeMap::new(),
        address: "127.0.0.1".into(),
        taints: Vec::new(),
    };
    config.capacity = Some(Capacity {
        cpu_millis: 4000,
        memory_bytes: 8 << 30,
        ephemeral_storage_bytes: 100 << 30,
        pods: 110,
    });
    config.restart_backoff_base = Duration::from_millis(200);
    config.restart_backoff_max = Duration::from_secs(1);
    config.pod_sync_interval = Duration::from_millis(50);
    config.fence = Some(FenceConfig {
        timeout: Duration::from_secs(1),
        heartbeat_interval: Duration::from_millis(100),
        guard: None,
    });
    config
}

fn pod(name: &str, statefulset: bool) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "hollow:1"}]}
    });
    if statefulset {
        pod["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db",
            "uid": "0000-db", "controller": true
        }]);
    }
    pod
}

/// Polls `check` every 50 ms until it returns `Some`, failing after [`GUARD`].
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    tokio::time::timeout(GUARD, async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The state of the current (newest) container of the pod with this uid, if any.
async fn container_state(runtime: &HollowRuntime, uid: &str) -> Option<ContainerState> {
    let sandbox = runtime
        .list_sandboxes()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.config.pod_uid == uid && s.state == SandboxState::Ready)?;
    let mut containers = runtime.list_containers(Some(&sandbox.id)).await.unwrap();
    containers.sort_by_key(|c| (c.attempt, c.created_at));
    containers.last().map(|c| c.state)
}

async fn has_sandbox(runtime: &HollowRuntime, uid: &str) -> bool {
    runtime
        .list_sandboxes()
        .await
        .unwrap()
        .iter()
        .any(|s| s.config.pod_uid == uid)
}

async fn running(store: &Store, name: &str) -> Option<Value> {
    let p = store.get(pods(), Some("default"), name).await.ok()?;
    (p.pointer("/status/phase").and_then(Value::as_str) == Some("Running")).then_some(p)
}

async fn set_unreachable(store: &Store, on: bool) {
    let nodes = bus_schema::kinds::of::<Node>();
    loop {
        let mut node = store.get(nodes, None, NODE).await.unwrap();
        let mut taints: Vec<Value> = node
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        taints.retain(|t| t["key"] != UNREACHABLE_TAINT);
        if on {
            taints.push(json!({"key": UNREACHABLE_TAINT, "effect": "NoExecute"}));
        }
        node["spec"]["taints"] = json!(taints);
        match store.update(nodes, node).await {
            Ok(_) => return,
            Err(drover_store::StoreError::Conflict { .. }) => continue,
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_bus_stops_its_statefulset_pods_and_only_those() {
    drover_testkit::init_tracing();
    let mut nats = TestNats::start().await;
    let store = Store::new(nats.client().await, StoreConfig::default())
        .await
        .unwrap();
    let index = drover_store::node_index::PodIndex::start(store.clone())
        .await
        .unwrap();
    let runtime = Arc::new(HollowRuntime::seeded(HollowConfig::default(), 3));
    let agent = NodeAgent::start(store.clone(), runtime.clone(), config())
        .await
        .unwrap();

    // The heartbeat is on the bus.
    let mut beats = nats
        .client()
        .await
        .subscribe(bus_schema::subjects::node_heartbeat(NODE))
        .await
        .unwrap();
    tokio::time::timeout(GUARD, beats.next())
        .await
        .expect("no heartbeat")
        .expect("subscription ended");

    let mut uids = BTreeMap::new();
    for (name, stateful) in [("db-0", true), ("db-1", true), ("plain", false)] {
        store.create(pods(), pod(name, stateful)).await.unwrap();
        let p = until(&format!("{name} Running"), || running(&store, name)).await;
        uids.insert(name, object::meta_str(&p, "uid").unwrap().to_string());
    }
    // The control plane marked the node unreachable; then the bus goes away.
    set_unreachable(&store, true).await;
    nats.kill9().await;
    for name in ["db-0", "db-1"] {
        until(
            &format!("{name}'s container killed by the fence"),
            || async {
                (container_state(&runtime, &uids[name]).await == Some(ContainerState::Exited))
                    .then_some(())
            },
        )
        .await;
    }
    assert_eq!(
        container_state(&runtime, &uids["plain"]).await,
        Some(ContainerState::Running),
        "a pod of no StatefulSet is not fenced"
    );

    // The bus is back, but the node is still marked unreachable: the fence holds while the
    // "control plane" replaces db-0 (force delete). Then the taint goes.
    nats.restart().await;
    store
        .delete(
            pods(),
            Some("default"),
            "db-0",
            &DeleteOptions {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        container_state(&runtime, &uids["db-1"]).await,
        Some(ContainerState::Exited),
        "the fence opened while the node was still marked unreachable"
    );
    set_unreachable(&store, false).await;

    // db-0 was replaced meanwhile: torn down, never started again. db-1 is still ours: it
    // runs again. `plain` ran throughout.
    until("db-0's sandbox removed", || async {
        (!has_sandbox(&runtime, &uids["db-0"]).await).then_some(())
    })
    .await;
    until("db-1 running again", || async {
        (container_state(&runtime, &uids["db-1"]).await == Some(ContainerState::Running))
            .then_some(())
    })
    .await;
    assert_eq!(
        container_state(&runtime, &uids["plain"]).await,
        Some(ContainerState::Running)
    );

    // A node that comes back after its pods were deleted while no agent ran removes them.
    agent.stop().await;
    store
        .delete(
            pods(),
            Some("default"),
            "plain",
            &DeleteOptions {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(has_sandbox(&runtime, &uids["plain"]).await);
    let agent = NodeAgent::start(store.clone(), runtime.clone(), config())
        .await
        .unwrap();
    until("the orphaned sandbox removed", || async {
        (!has_sandbox(&runtime, &uids["plain"]).await).then_some(())
    })
    .await;
    assert!(has_sandbox(&runtime, &uids["db-1"]).await);
    agent.stop().await;
    drop(index);
}
