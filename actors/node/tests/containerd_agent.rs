//! The node agent with the containerd runtime, against a real store (nats-server): a pod
//! of two busybox containers that talk over the pod's localhost becomes Running with a
//! pod IP from the node's CIDR and ready containers; deleting it stops and removes its
//! sandbox and containers in containerd.
//!
//! Runs in fresh namespaces (see `common`); nothing leaves the test's netns.

mod common;

use common::{BUSYBOX_IMAGE, GUARD, TestNode, block_on, store_with_index, wait_for};
use drover_node::cidr::Ipv4Cidr;
use drover_node::{NodeAgent, Runtime};
use drover_store::{DeleteOptions, Store, WatchEvent, WatchOptions, object};
use drover_testkit::TestNats;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

#[test]
fn containerd_agent_runs_and_deletes_a_pod() {
    if !drover_testkit::netns::enter("containerd_agent_runs_and_deletes_a_pod") {
        return;
    }
    block_on(scenario());
}

/// Waits (watching from the bucket's start) for an event on pod `name` satisfying
/// `pred`.
async fn wait_pod(store: &Store, name: &str, pred: impl Fn(&WatchEvent) -> bool) -> WatchEvent {
    let kind = bus_schema::kinds::of::<Pod>();
    let mut watch = store
        .watch(kind, Some("default"), 0, WatchOptions::default())
        .await
        .unwrap();
    tokio::time::timeout(GUARD, async {
        while let Some(event) = watch.next().await {
            let event = event.unwrap();
            let ours = match &event {
                WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                    object::name(o) == name
                }
                WatchEvent::Bookmark(_) => false,
            };
            if ours && pred(&event) {
                return event;
            }
        }
        panic!("watch ended")
    })
    .await
    .unwrap_or_else(|_| panic!("pod {name} did not reach the condition"))
}

fn object_of(event: &WatchEvent) -> &Value {
    match event {
        WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o,
        WatchEvent::Bookmark(_) => unreachable!("filtered in wait_pod"),
    }
}

async fn scenario() {
    let node = TestNode::start().await;
    node.import_busybox().await;
    let nats = TestNats::start().await;
    let (store, _index) = store_with_index(&nats).await;
    let config = node.agent_config("node-a");
    let agent = NodeAgent::start(store.clone(), node.dyn_runtime(), config)
        .await
        .unwrap();
    let cidr: Ipv4Cidr = agent.pod_cidr().parse().unwrap();

    let kind = bus_schema::kinds::of::<Pod>();
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "pair", "namespace": "default"},
        "spec": {
            "nodeName": "node-a",
            "containers": [
                {"name": "web", "image": BUSYBOX_IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c",
                  "mkdir -p /tmp/www && echo hi-from-web > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"]},
                {"name": "app", "image": BUSYBOX_IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c"], "args": [
                  "until wget -qO- http://127.0.0.1:8080/; do sleep 0.1; done; exec sleep 3600"]}
            ]
        }
    });
    store.create(kind, pod).await.unwrap();

    let event = wait_pod(&store, "pair", |e| {
        let p = object_of(e);
        p.pointer("/status/phase") == Some(&json!("Running"))
            && p.pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .is_some_and(|cs| cs.len() == 2 && cs.iter().all(|c| c["ready"] == json!(true)))
    })
    .await;
    let running: Pod = serde_json::from_value(object_of(&event).clone()).unwrap();
    let uid = running.metadata.uid.clone().unwrap();
    let status = running.status.unwrap();
    let ip: std::net::Ipv4Addr = status.pod_ip.clone().unwrap().parse().unwrap();
    assert!(cidr.contains(ip), "pod IP {ip} outside the node's {cidr}");
    for c in status.container_statuses.unwrap() {
        assert!(c.state.unwrap().running.is_some(), "{}", c.name);
        assert_eq!(c.restart_count, 0);
        assert!(
            c.container_id
                .as_deref()
                .unwrap_or("")
                .starts_with("containerd://"),
            "{:?}",
            c.container_id
        );
    }

    // The app fetched the page over the pod's localhost: its log says so.
    let app_log = node
        .paths
        .data_dir
        .join(format!("pods/default_pair_{uid}/app/0.log"));
    wait_for("the page in the app's log", || {
        let app_log = app_log.clone();
        async move {
            std::fs::read_to_string(&app_log)
                .ok()
                .filter(|t| t.contains("stdout F hi-from-web"))
        }
    })
    .await;
    let rt = node.runtime.clone();
    let sandboxes = rt.list_sandboxes().await.unwrap();
    assert_eq!(sandboxes.len(), 1);
    assert_eq!(sandboxes[0].config.pod_uid, uid);
    assert_eq!(rt.list_containers(None).await.unwrap().len(), 2);

    // Graceful delete: the agent stops and removes everything, then deletes the pod.
    store
        .delete(
            kind,
            Some("default"),
            "pair",
            &DeleteOptions {
                grace_period_seconds: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    wait_pod(&store, "pair", |e| matches!(e, WatchEvent::Deleted(_))).await;
    assert!(rt.list_sandboxes().await.unwrap().is_empty());
    assert!(rt.list_containers(None).await.unwrap().is_empty());
    // containerd's own view, straight over CRI.
    assert!(rt.client().list_pod_sandboxes().await.unwrap().is_empty());

    agent.stop().await;
    node.host.unwrap().stop().await;
}
