//! Shared harness of the Job and CronJob end-to-end tests: a real nats-server and store,
//! one hollow node agent, and a test-only binder that puts every unbound pod on that
//! node (`drover up` runs the real scheduler beside the controllers; `Controllers::start`
//! does not, and with one node the binder keeps these tests about the Job controller).
//! Timeouts are failure guards only.
#![allow(dead_code)]

use std::time::Duration;

use drover_node::{FleetConfig, HollowFleet, run_hollow_fleet};
use drover_store::{ListOptions, Store, StoreConfig, StoreError, WatchEvent, WatchOptions, object};
use drover_testkit::TestNats;
use futures::StreamExt;
use serde_json::Value;
use tokio::task::JoinHandle;

/// Failure guard for every wait.
pub const GUARD: Duration = Duration::from_secs(90);

pub fn kind(group: &str, plural: &str) -> &'static bus_schema::KindInfo {
    bus_schema::kinds::by_group_resource(group, plural).unwrap()
}

pub fn pods() -> &'static bus_schema::KindInfo {
    kind("", "pods")
}

pub fn jobs() -> &'static bus_schema::KindInfo {
    kind("batch", "jobs")
}

pub fn cronjobs() -> &'static bus_schema::KindInfo {
    kind("batch", "cronjobs")
}

pub struct Nodes {
    pub fleet: HollowFleet,
    pub binder: JoinHandle<()>,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.binder.abort();
    }
}

pub async fn store(nats: &TestNats) -> Store {
    Store::new(nats.client().await, StoreConfig::default())
        .await
        .unwrap()
}

/// One hollow node and the binder. The pod index (which agents follow) must be running.
pub async fn nodes(store: &Store) -> Nodes {
    let fleet = run_hollow_fleet(
        store.clone(),
        1,
        FleetConfig {
            lease_renew_interval: Duration::from_millis(500),
            ..FleetConfig::default()
        },
    )
    .await
    .unwrap();
    let node = fleet.agents[0].node_name().to_string();
    let binder = tokio::spawn(bind_all(store.clone(), node));
    Nodes { fleet, binder }
}

/// Test-only stand-in for the scheduler: binds every unbound, live pod to `node`.
async fn bind_all(store: Store, node: String) {
    let mut watch = store
        .watch(pods(), None, 0, WatchOptions::default())
        .await
        .unwrap();
    while let Some(Ok(event)) = watch.next().await {
        let (WatchEvent::Added(mut pod) | WatchEvent::Modified(mut pod)) = event else {
            continue;
        };
        let bound = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if bound || object::is_terminating(&pod) {
            continue;
        }
        pod["spec"]["nodeName"] = Value::from(node.as_str());
        match store.update(pods(), pod).await {
            // A newer version arrives as its own event and is bound then.
            Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
            Err(e) => panic!("binding failed: {e}"),
        }
    }
}

/// Watches `kind` in `ns` from the start of history until `pred` holds for an event.
pub async fn wait_event(
    store: &Store,
    kind: &'static bus_schema::KindInfo,
    ns: &str,
    what: &str,
    mut pred: impl FnMut(&WatchEvent) -> bool,
) -> WatchEvent {
    let mut watch = store
        .watch(kind, Some(ns), 0, WatchOptions::default())
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
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits until the object `name` of `kind` satisfies `pred`; returns it.
pub async fn wait_object(
    store: &Store,
    kind: &'static bus_schema::KindInfo,
    ns: &str,
    name: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    match wait_event(store, kind, ns, what, |e| match e {
        WatchEvent::Added(o) | WatchEvent::Modified(o) => object::name(o) == name && pred(o),
        _ => false,
    })
    .await
    {
        WatchEvent::Added(o) | WatchEvent::Modified(o) => o,
        _ => unreachable!(),
    }
}

/// Whether the Job has condition `type_` True.
pub fn has_condition(job: &Value, type_: &str) -> bool {
    condition(job, type_).is_some()
}

/// The True condition `type_` of a Job.
pub fn condition<'a>(job: &'a Value, type_: &str) -> Option<&'a Value> {
    job.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

/// Waits until the object is gone.
pub async fn wait_deleted(
    store: &Store,
    kind: &'static bus_schema::KindInfo,
    ns: &str,
    name: &str,
) {
    tokio::time::timeout(GUARD, async {
        loop {
            match store.get(kind, Some(ns), name).await {
                Err(StoreError::NotFound { .. }) => return,
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
            let rev = store.revision(kind).await.unwrap();
            let mut watch = store
                .watch(kind, Some(ns), rev, WatchOptions::default())
                .await
                .unwrap();
            // Any change (or the guard) before looking again.
            let _ = tokio::time::timeout(Duration::from_secs(2), watch.next()).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} {ns}/{name} was not deleted", kind.kind));
}

/// Every pod in `ns`.
pub async fn list_pods(store: &Store, ns: &str) -> Vec<Value> {
    store
        .list(pods(), Some(ns), &ListOptions::default())
        .await
        .unwrap()
        .items
}

/// Waits until events about `name` include every reason in `reasons` (events are
/// written in the background).
pub async fn wait_events(store: &Store, ns: &str, name: &str, reasons: &[&str]) {
    let mut seen: Vec<String> = Vec::new();
    wait_event(
        store,
        kind("", "events"),
        ns,
        &format!("events {reasons:?} about {name}"),
        |e| {
            if let WatchEvent::Added(ev) | WatchEvent::Modified(ev) = e
                && ev.pointer("/involvedObject/name").and_then(Value::as_str) == Some(name)
                && let Some(reason) = ev["reason"].as_str()
            {
                seen.push(reason.to_string());
            }
            reasons.iter().all(|r| seen.iter().any(|s| s == r))
        },
    )
    .await;
}
