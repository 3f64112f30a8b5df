//! Shared harness of the workload controller tests: a real nats-server, the store, the
//! controllers as `drover up` runs them (with the pod index), hollow node agents, a
//! watch-based wait, and a tiny test-only binder standing in for the scheduler until it
//! lands (it honours what the placement of these tests depends on: a daemon pod's
//! `matchFields metadata.name`, a bound PV's node affinity, and `nodeSelector`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use drover_controllers::Controllers;
use drover_node::{AgentConfig, FleetConfig, HollowConfig, HollowRuntime, NodeAgent};
use drover_store::{ListOptions, Store, StoreConfig, StoreError, WatchEvent, WatchOptions, object};
use drover_testkit::TestNats;
use futures::StreamExt;
use serde_json::Value;

/// Failure guard for every wait.
pub const GUARD: Duration = Duration::from_secs(60);

pub fn kind(group: &str, plural: &str) -> &'static bus_schema::KindInfo {
    bus_schema::kinds::by_group_resource(group, plural).unwrap()
}

pub struct Env {
    pub nats: TestNats,
    pub store: Store,
    pub controllers: Controllers,
    pub agents: Vec<NodeAgent>,
    pub binder: tokio::task::JoinHandle<()>,
}

impl Env {
    pub async fn start() -> Env {
        let nats = TestNats::start().await;
        let store = Store::new(nats.client().await, StoreConfig::default())
            .await
            .unwrap();
        let controllers = Controllers::start(store.clone());
        let binder = tokio::spawn(bind_forever(store.clone()));
        let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}});
        store.create(kind("", "namespaces"), ns).await.unwrap();
        Env {
            nats,
            store,
            controllers,
            agents: Vec::new(),
            binder,
        }
    }

    /// Starts hollow node `idx` with extra labels and registration taints.
    pub async fn add_node(
        &mut self,
        idx: usize,
        labels: &[(&str, &str)],
        taints: &[(&str, &str)],
    ) -> String {
        let agent = start_node(&self.store, idx, labels, taints).await;
        let name = agent_name(idx);
        self.agents.push(agent);
        name
    }

    pub async fn stop(self) {
        self.binder.abort();
        for a in self.agents {
            a.stop().await;
        }
        self.controllers.stop().await;
    }
}

/// The name of hollow node `idx`.
pub fn agent_name(idx: usize) -> String {
    drover_node::fleet::node_config(&FleetConfig::default(), idx)
        .identity
        .name
}

/// Starts hollow node `idx` (named as in a hollow fleet) with extra labels and
/// registration taints.
pub async fn start_node(
    store: &Store,
    idx: usize,
    labels: &[(&str, &str)],
    taints: &[(&str, &str)],
) -> NodeAgent {
    let config = FleetConfig {
        lease_renew_interval: Duration::from_millis(500),
        ..FleetConfig::default()
    };
    let mut agent: AgentConfig = drover_node::fleet::node_config(&config, idx);
    for (k, v) in labels {
        agent.identity.labels.insert(k.to_string(), v.to_string());
    }
    agent.identity.taints = taints
        .iter()
        .map(|(k, e)| k8s_openapi::api::core::v1::Taint {
            key: k.to_string(),
            effect: e.to_string(),
            ..Default::default()
        })
        .collect();
    let runtime = Arc::new(HollowRuntime::seeded(HollowConfig::default(), idx as u64));
    NodeAgent::start(store.clone(), runtime, agent)
        .await
        .unwrap()
}

/// Waits until `pred` holds for the set of current objects of `kind` in `ns` (watched
/// from the start of the bucket's history); returns that set by name.
pub async fn wait_for(
    store: &Store,
    kind: &'static bus_schema::KindInfo,
    ns: Option<&str>,
    what: &str,
    pred: impl Fn(&BTreeMap<String, Value>) -> bool,
) -> BTreeMap<String, Value> {
    let mut watch = store
        .watch(kind, ns, 0, WatchOptions::default())
        .await
        .unwrap();
    let mut objects = BTreeMap::new();
    let result = tokio::time::timeout(GUARD, async {
        while let Some(event) = watch.next().await {
            match event.unwrap() {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                    objects.insert(object::name(&o).to_string(), o);
                }
                WatchEvent::Deleted(o) => {
                    objects.remove(object::name(&o));
                }
                _ => {}
            }
            if pred(&objects) {
                return objects.clone();
            }
        }
        panic!("watch ended")
    })
    .await;
    match result {
        Ok(o) => o,
        Err(_) => panic!(
            "timed out waiting for {what}; last state: {}",
            serde_json::to_string_pretty(&objects).unwrap()
        ),
    }
}

/// Read-modify-write of one object, retried on conflicts (the controllers write its
/// status meanwhile).
pub async fn edit(
    store: &Store,
    kind: &'static bus_schema::KindInfo,
    ns: Option<&str>,
    name: &str,
    f: impl Fn(&mut Value),
) {
    for _ in 0..100 {
        let mut obj = store.get(kind, ns, name).await.unwrap();
        f(&mut obj);
        match store.update(kind, obj).await {
            Ok(_) => return,
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => panic!("updating {name}: {e}"),
        }
    }
    panic!("updating {name}: conflicts without end");
}

pub fn running_ready(pod: &Value) -> bool {
    pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running")
        && pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        && !object::is_terminating(pod)
}

pub fn label<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.pointer("/metadata/labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The test-only binder: every unbound, live pod gets `spec.nodeName` by CAS.
pub async fn bind_forever(store: Store) {
    let pods = kind("", "pods");
    loop {
        let Ok(mut watch) = store.watch(pods, None, 0, WatchOptions::default()).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while let Some(Ok(event)) = watch.next().await {
            let (WatchEvent::Added(pod) | WatchEvent::Modified(pod)) = event else {
                continue;
            };
            let bound = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            if bound || object::is_terminating(&pod) {
                continue;
            }
            if let Some(node) = choose(&store, &pod).await {
                let mut updated = pod.clone();
                updated["spec"]["nodeName"] = Value::from(node);
                match store.update(pods, updated).await {
                    Ok(_) | Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound { .. }) => {
                    }
                    Err(e) => panic!("binding: {e}"),
                }
            }
        }
    }
}

async fn choose(store: &Store, pod: &Value) -> Option<String> {
    let nodes = store
        .list(kind("", "nodes"), None, &ListOptions::default())
        .await
        .ok()?
        .items;
    let selector = pod
        .pointer("/spec/nodeSelector")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut candidates: Vec<&Value> = nodes
        .iter()
        .filter(|n| {
            selector
                .iter()
                .all(|(k, v)| n.pointer("/metadata/labels").and_then(|l| l.get(k)) == Some(v))
        })
        .collect();
    // A daemon pod names its node.
    if let Some(target) = pod
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0/values/0")
        .and_then(Value::as_str)
    {
        candidates.retain(|n| object::name(n) == target);
    }
    // A claim bound to a local PV pins the pod to the PV's node.
    let ns = object::namespace(pod).unwrap_or("default");
    for claim in pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| {
            v.pointer("/persistentVolumeClaim/claimName")
                .and_then(Value::as_str)
        })
    {
        let Ok(pvc) = store
            .get(kind("", "persistentvolumeclaims"), Some(ns), claim)
            .await
        else {
            return None;
        };
        let Some(volume) = pvc.pointer("/spec/volumeName").and_then(Value::as_str) else {
            continue;
        };
        let pv = store
            .get(kind("", "persistentvolumes"), None, volume)
            .await
            .ok()?;
        if let Some(node) = pv
            .pointer("/spec/nodeAffinity/required/nodeSelectorTerms/0/matchExpressions/0/values/0")
            .and_then(Value::as_str)
        {
            candidates.retain(|n| object::name(n) == node);
        }
    }
    // Spread by a stable hash of the pod name.
    if candidates.is_empty() {
        return None;
    }
    let h = object::name(pod)
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    Some(object::name(candidates[h % candidates.len()]).to_string())
}
