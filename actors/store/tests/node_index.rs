//! The pod index against a real nats-server: agents see only their own pods, survive
//! an index restart (new epoch) and never miss a pod bound while no index ran.

use std::time::Duration;

use drover_store::node_index::{NodePods, NodePodsEvent, PodIndex};
use drover_store::{DeleteOptions, Store, StoreConfig, StoreError};
use drover_testkit::TestNats;
use serde_json::{Value, json};

fn pods() -> &'static bus_schema::KindInfo {
    bus_schema::kinds::by_group_kind("", "Pod").unwrap()
}

fn pod(name: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}})
}

async fn next(w: &mut NodePods) -> NodePodsEvent {
    tokio::time::timeout(Duration::from_secs(20), w.next())
        .await
        .expect("pod index event within 20 s (hang guard)")
        .expect("pod index event")
}

fn name(p: &Value) -> &str {
    p.pointer("/metadata/name").and_then(Value::as_str).unwrap()
}

#[tokio::test]
async fn agents_see_only_their_pods_across_index_restarts() {
    drover_testkit::init_tracing();
    let nats = TestNats::start().await;
    let store = Store::new(nats.client().await, StoreConfig::default())
        .await
        .unwrap();
    store.create(pods(), pod("early", "n1")).await.unwrap();

    // No index yet: a clear NATS error, not a hang.
    match NodePods::start(&store, "n1").await {
        Err(StoreError::Nats(msg)) => assert!(msg.contains("pod index"), "{msg}"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a NodePods started without an index"),
    }

    let index = PodIndex::start(store.clone()).await.unwrap();
    let mut n1 = NodePods::start(&store, "n1").await.unwrap();
    let mut n2 = NodePods::start(&store, "n2").await.unwrap();
    match next(&mut n1).await {
        NodePodsEvent::Synced(items) => {
            assert_eq!(items.iter().map(name).collect::<Vec<_>>(), ["early"])
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(next(&mut n2).await, NodePodsEvent::Synced(vec![]));

    // Live changes go to the right node only.
    store.create(pods(), pod("two", "n2")).await.unwrap();
    store.create(pods(), pod("one", "n1")).await.unwrap();
    match next(&mut n2).await {
        NodePodsEvent::Upsert(p) => assert_eq!(name(&p), "two"),
        other => panic!("{other:?}"),
    }
    match next(&mut n1).await {
        NodePodsEvent::Upsert(p) => assert_eq!(name(&p), "one"),
        other => panic!("{other:?}"),
    }
    store
        .delete(
            pods(),
            Some("default"),
            "one",
            &DeleteOptions {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    match next(&mut n1).await {
        NodePodsEvent::Removed(p) => assert_eq!(name(&p), "one"),
        other => panic!("{other:?}"),
    }

    // The index goes away; a pod is bound meanwhile; a new index (new epoch) broadcasts a
    // resync and the agent re-lists and finds it.
    index.stop().await;
    store.create(pods(), pod("while-down", "n1")).await.unwrap();
    let _index = PodIndex::start(store.clone()).await.unwrap();
    match next(&mut n1).await {
        NodePodsEvent::Synced(items) => {
            let mut names: Vec<&str> = items.iter().map(name).collect();
            names.sort();
            assert_eq!(names, ["early", "while-down"]);
        }
        other => panic!("{other:?}"),
    }
    // And live events flow in the new epoch.
    store.create(pods(), pod("after", "n1")).await.unwrap();
    loop {
        match next(&mut n1).await {
            NodePodsEvent::Upsert(p) if name(&p) == "after" => break,
            NodePodsEvent::Synced(_) => continue, // a second resync is allowed
            other => panic!("{other:?}"),
        }
    }
    drop(n2);
}
