//! The DaemonSet controller end to end: real nats-server and store, the controllers as
//! `drover up` runs them, hollow node agents, and the test binder (see common). Timeouts
//! are failure guards only.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Env, edit, kind, label, running_ready, wait_for};
use drover_store::{WatchEvent, WatchOptions, object};
use futures::StreamExt;
use serde_json::{Value, json};

fn ds(image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "ns"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {
                    "nodeSelector": {"role": "worker"},
                    "containers": [{"name": "c", "image": image}],
                },
            },
        },
    })
}

fn i(v: &Value, p: &str) -> i64 {
    v.pointer(p).and_then(Value::as_i64).unwrap_or(-1)
}

fn nodes_of(pods: &BTreeMap<String, Value>) -> BTreeSet<String> {
    pods.values()
        .filter(|p| running_ready(p))
        .filter_map(|p| {
            p.pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

async fn status(env: &Env, pred: impl Fn(&Value) -> bool) -> Value {
    wait_for(
        &env.store,
        kind("apps", "daemonsets"),
        Some("ns"),
        "daemonset status",
        |d| d.get("agent").is_some_and(&pred),
    )
    .await["agent"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pod_per_eligible_node_new_nodes_and_rolling_update() {
    let mut env = Env::start().await;
    let a = env.add_node(0, &[("role", "worker")], &[]).await;
    let _tainted = env
        .add_node(1, &[("role", "worker")], &[("dedicated", "NoSchedule")])
        .await;
    let _other = env.add_node(2, &[("role", "db")], &[]).await;
    let sets = kind("apps", "daemonsets");
    env.store.create(sets, ds("busybox:1")).await.unwrap();

    // Only node 0 is eligible (1 is tainted, 2 does not match the selector).
    let d = status(&env, |d| i(d, "/status/numberReady") == 1).await;
    assert_eq!(i(&d, "/status/desiredNumberScheduled"), 1);
    assert_eq!(i(&d, "/status/currentNumberScheduled"), 1);
    assert_eq!(i(&d, "/status/numberMisscheduled"), 0);
    let pods = wait_for(
        &env.store,
        kind("", "pods"),
        Some("ns"),
        "one daemon pod",
        |p| nodes_of(p).len() == 1,
    )
    .await;
    assert_eq!(nodes_of(&pods), BTreeSet::from([a.clone()]));
    let pod = pods.values().next().unwrap();
    assert_eq!(
        pod.pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0/values/0"),
        Some(&json!(a))
    );
    let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
    assert!(
        tolerations
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/not-ready" && t["effect"] == "NoExecute")
    );
    assert!(
        tolerations
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unschedulable")
    );
    let first_hash = label(pod, "controller-revision-hash").to_string();
    assert!(!first_hash.is_empty());

    // A new eligible node gets a pod.
    let b = env.add_node(3, &[("role", "worker")], &[]).await;
    let d = status(&env, |d| {
        i(d, "/status/numberReady") == 2 && i(d, "/status/desiredNumberScheduled") == 2
    })
    .await;
    assert_eq!(i(&d, "/status/updatedNumberScheduled"), 2);
    let pods = wait_for(
        &env.store,
        kind("", "pods"),
        Some("ns"),
        "two daemon pods",
        |p| nodes_of(p).len() == 2,
    )
    .await;
    assert_eq!(nodes_of(&pods), BTreeSet::from([a.clone(), b.clone()]));

    // Rolling update, maxUnavailable 1: never both nodes without an available pod.
    let mut w = env
        .store
        .watch(kind("", "pods"), Some("ns"), 0, WatchOptions::default())
        .await
        .unwrap();
    edit(&env.store, sets, Some("ns"), "agent", |ds_obj| {
        ds_obj["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:2");
    })
    .await;
    let d = status(&env, |d| {
        i(d, "/status/updatedNumberScheduled") == 2
            && i(d, "/status/numberAvailable") == 2
            && i(d, "/status/observedGeneration") == 2
    })
    .await;
    assert_eq!(i(&d, "/status/numberUnavailable"), 0);
    let revisions = env
        .store
        .list(
            kind("apps", "controllerrevisions"),
            Some("ns"),
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(revisions.items.len(), 2);
    // Replay the pod history: at every moment at least one node had a ready pod.
    let mut state: BTreeMap<String, Value> = BTreeMap::new();
    let mut seen_update = false;
    let done = tokio::time::timeout(common::GUARD, async {
        while let Some(Ok(e)) = w.next().await {
            match e {
                WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                    state.insert(object::name(&p).to_string(), p);
                }
                WatchEvent::Deleted(p) => {
                    state.remove(object::name(&p));
                }
                _ => continue,
            }
            let ready = nodes_of(&state);
            seen_update |= state
                .values()
                .any(|p| label(p, "controller-revision-hash") != first_hash);
            if seen_update {
                assert!(
                    !ready.is_empty(),
                    "both nodes lost their pod at once: {state:?}"
                );
            }
            let updated = state
                .values()
                .filter(|p| running_ready(p) && label(p, "controller-revision-hash") != first_hash)
                .count();
            if updated == 2 && state.len() == 2 {
                return;
            }
        }
    })
    .await;
    assert!(
        done.is_ok(),
        "the rollout history did not end with two updated pods"
    );
    let pods = env
        .store
        .list(kind("", "pods"), Some("ns"), &Default::default())
        .await
        .unwrap();
    assert!(
        pods.items
            .iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "busybox:2")
    );
    env.stop().await;
}
