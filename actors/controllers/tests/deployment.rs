//! ReplicaSets and Deployments end to end: a real nats-server and store, the
//! controllers as `drover up` runs them, hollow node agents (they run bound pods and
//! mark them Running and Ready) and a test-only binder standing in for the scheduler.
//! Rollout limits are checked on the pods' watch history, event by event, not on
//! timing; timeouts are failure guards only.

use std::collections::BTreeMap;
use std::time::Duration;

use drover_controllers::Controllers;
use drover_node::{FleetConfig, HollowFleet, run_hollow_fleet};
use drover_store::{ListOptions, Store, StoreConfig, StoreError, WatchEvent, WatchOptions, object};
use drover_testkit::TestNats;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// Failure guard for every wait.
const GUARD: Duration = Duration::from_secs(60);
const NS: &str = "default";
const NODES: usize = 2;

fn kind(group: &str, plural: &str) -> &'static bus_schema::KindInfo {
    bus_schema::kinds::by_group_resource(group, plural).unwrap()
}

fn pods() -> &'static bus_schema::KindInfo {
    kind("", "pods")
}

fn rss() -> &'static bus_schema::KindInfo {
    kind("apps", "replicasets")
}

fn deployments() -> &'static bus_schema::KindInfo {
    kind("apps", "deployments")
}

struct Env {
    _nats: TestNats,
    store: Store,
    _controllers: Controllers,
    _fleet: HollowFleet,
    binder: JoinHandle<()>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.binder.abort();
    }
}

async fn env() -> Env {
    drover_testkit::init_tracing();
    let nats = TestNats::start().await;
    let store = Store::new(nats.client().await, StoreConfig::default())
        .await
        .unwrap();
    let controllers = Controllers::start(store.clone());
    let fleet = run_hollow_fleet(store.clone(), NODES, FleetConfig::default())
        .await
        .unwrap();
    let binder = tokio::spawn(bind(store.clone()));
    Env {
        _nats: nats,
        store,
        _controllers: controllers,
        _fleet: fleet,
        binder,
    }
}

/// Test-only stand-in for the scheduler: binds every unbound pod to a hollow node,
/// round robin.
async fn bind(store: Store) {
    let mut watch = store
        .watch(pods(), None, 0, WatchOptions::default())
        .await
        .unwrap();
    let mut next = 0usize;
    while let Some(Ok(event)) = watch.next().await {
        let (WatchEvent::Added(pod) | WatchEvent::Modified(pod)) = event else {
            continue;
        };
        let unbound = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty();
        if !unbound || object::is_terminating(&pod) {
            continue;
        }
        let mut bound = pod.clone();
        bound["spec"]["nodeName"] = json!(format!("hollow-{:04}", next % NODES));
        next += 1;
        match store.update(pods(), bound).await {
            Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
            Err(e) => panic!("bind: {e}"),
        }
    }
}

/// Waits until `name` of `kind` satisfies `pred`; returns it.
async fn wait_for(
    store: &Store,
    kind: &'static bus_schema::KindInfo,
    name: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let mut watch = store
        .watch(kind, Some(NS), 0, WatchOptions::default())
        .await
        .unwrap();
    let mut last = None;
    let found = tokio::time::timeout(GUARD, async {
        while let Some(event) = watch.next().await {
            let latest = match event.unwrap() {
                WatchEvent::Added(o) | WatchEvent::Modified(o) if object::name(&o) == name => {
                    Some(o)
                }
                WatchEvent::Deleted(o) if object::name(&o) == name => None,
                _ => continue,
            };
            if let Some(o) = &latest {
                last = Some(o.clone());
                if pred(o) {
                    return o.clone();
                }
            }
        }
        panic!("watch ended")
    })
    .await;
    found.unwrap_or_else(|_| {
        panic!(
            "{} {name} never reached the condition; last seen: {last:#?}",
            kind.plural
        )
    })
}

/// Waits until `count(list of kind)` holds.
async fn wait_list(
    store: &Store,
    kind: &'static bus_schema::KindInfo,
    what: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let list = store
            .list(kind, Some(NS), &ListOptions::default())
            .await
            .unwrap();
        if pred(&list.items) {
            return list.items;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: never reached; last: {:#?}",
            list.items
        );
        // Polling here only paces the retries; the guard above is the failure bound.
        let mut watch = store
            .watch(
                kind,
                Some(NS),
                list.resource_version,
                WatchOptions::default(),
            )
            .await
            .unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(2), watch.next()).await;
    }
}

fn int(obj: &Value, path: &str) -> i64 {
    obj.pointer(path).and_then(Value::as_i64).unwrap_or(0)
}

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

fn controller_uid(obj: &Value) -> Option<String> {
    drover_controllers::runtime::owner::controller_uid(obj).map(str::to_string)
}

fn uid(obj: &Value) -> String {
    object::meta_str(obj, "uid").unwrap().to_string()
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn template(app: &str, version: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": "busybox", "env": [{"name": "VERSION", "value": version}]}],
        },
    })
}

fn deployment(name: &str, replicas: i64, strategy: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": template(name, "1"),
        },
    })
}

/// Whether the Deployment's rollout is complete as `kubectl rollout status` decides.
fn rolled_out(d: &Value) -> bool {
    let replicas = int(d, "/spec/replicas");
    int(d, "/status/observedGeneration") >= int(d, "/metadata/generation")
        && int(d, "/status/updatedReplicas") == replicas
        && int(d, "/status/replicas") == replicas
        && int(d, "/status/availableReplicas") == replicas
}

/// Applies `change` to the stored object (CAS, retried on conflict).
async fn modify(
    store: &Store,
    kind: &'static bus_schema::KindInfo,
    name: &str,
    change: impl Fn(&mut Value),
) -> Value {
    for _ in 0..20 {
        let mut obj = store.get(kind, Some(NS), name).await.unwrap();
        change(&mut obj);
        match store.update(kind, obj).await {
            Ok(stored) => return stored,
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => panic!("update {name}: {e}"),
        }
    }
    panic!("{name} kept changing")
}

/// The pods of the namespace, followed from now: every change, in store order.
struct PodHistory {
    pods: BTreeMap<String, Value>,
    watch: drover_store::Watch,
}

impl PodHistory {
    async fn start(store: &Store) -> PodHistory {
        let list = store
            .list(pods(), Some(NS), &ListOptions::default())
            .await
            .unwrap();
        let current: BTreeMap<String, Value> = list
            .items
            .into_iter()
            .map(|p| (object::name(&p).to_string(), p))
            .collect();
        let watch = store
            .watch(
                pods(),
                Some(NS),
                list.resource_version,
                WatchOptions::default(),
            )
            .await
            .unwrap();
        PodHistory {
            pods: current,
            watch,
        }
    }

    /// Applies changes until `done` holds for the Deployment named `name` (read after
    /// each change), calling `check` on the pods after every change.
    async fn follow_until(
        &mut self,
        store: &Store,
        name: &str,
        done: impl Fn(&Value) -> bool,
        mut check: impl FnMut(&BTreeMap<String, Value>),
    ) {
        check(&self.pods);
        tokio::time::timeout(GUARD, async {
            loop {
                let d = store.get(deployments(), Some(NS), name).await.unwrap();
                if done(&d) {
                    // Drain what is already there so the check sees the final state too.
                    while let Ok(Some(event)) =
                        tokio::time::timeout(Duration::from_millis(200), self.watch.next()).await
                    {
                        self.apply(event.unwrap());
                        check(&self.pods);
                    }
                    return;
                }
                if let Ok(Some(event)) =
                    tokio::time::timeout(Duration::from_secs(1), self.watch.next()).await
                {
                    self.apply(event.unwrap());
                    check(&self.pods);
                }
            }
        })
        .await
        .expect("the rollout did not finish within the guard");
    }

    fn apply(&mut self, event: WatchEvent) {
        match event {
            WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                self.pods.insert(object::name(&p).to_string(), p);
            }
            WatchEvent::Deleted(p) => {
                self.pods.remove(object::name(&p));
            }
            WatchEvent::Bookmark(_) => {}
        }
    }
}

fn hash_of(pod: &Value) -> String {
    object::labels(pod)
        .get("pod-template-hash")
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_scales_adopts_orphans_and_releases_pods() {
    let env = env().await;
    let store = &env.store;
    // An orphan that matches the selector before the ReplicaSet exists.
    store
        .create(pods(), json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "orphan", "namespace": NS, "labels": {"app": "rs-a"}},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "main", "image": "busybox"}]}}))
        .await
        .unwrap();
    let rs = store
        .create(rss(), json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "rs-a", "namespace": NS},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "rs-a"}}, "template": template("rs-a", "1")}}))
        .await
        .unwrap();
    let rs_uid = uid(&rs);
    let ready = |n: i64| {
        move |o: &Value| {
            int(o, "/status/readyReplicas") == n
                && int(o, "/status/replicas") == n
                && int(o, "/status/observedGeneration") == int(o, "/metadata/generation")
        }
    };
    wait_for(store, rss(), "rs-a", ready(3)).await;
    let owned = |items: &[Value]| -> Vec<Value> {
        items
            .iter()
            .filter(|p| {
                controller_uid(p).as_deref() == Some(rs_uid.as_str()) && !object::is_terminating(p)
            })
            .cloned()
            .collect()
    };
    let items = wait_list(store, pods(), "three owned pods", |items| {
        owned(items).len() == 3
    })
    .await;
    let mine = owned(&items);
    assert!(
        mine.iter().any(|p| object::name(p) == "orphan"),
        "the orphan was adopted: {mine:#?}"
    );
    assert!(
        mine.iter()
            .filter(|p| object::name(p) != "orphan")
            .all(|p| object::name(p).starts_with("rs-a-")
                && object::name(p).len() == "rs-a-".len() + 5),
        "generated names: {mine:#?}"
    );
    assert!(
        mine.iter()
            .all(|p| object::labels(p).get("app").map(String::as_str) == Some("rs-a"))
    );

    // Up and down.
    modify(store, rss(), "rs-a", |o| o["spec"]["replicas"] = json!(5)).await;
    wait_for(store, rss(), "rs-a", ready(5)).await;
    modify(store, rss(), "rs-a", |o| o["spec"]["replicas"] = json!(1)).await;
    wait_for(store, rss(), "rs-a", ready(1)).await;
    wait_list(store, pods(), "one owned pod", |items| {
        owned(items).len() == 1
    })
    .await;

    // A pod whose labels stop matching is released and replaced.
    let kept = owned(
        &store
            .list(pods(), Some(NS), &ListOptions::default())
            .await
            .unwrap()
            .items,
    )[0]
    .clone();
    let kept_name = object::name(&kept).to_string();
    modify(store, pods(), &kept_name, |p| {
        p["metadata"]["labels"]["app"] = json!("elsewhere")
    })
    .await;
    let released = wait_for(store, pods(), &kept_name, |p| controller_uid(p).is_none()).await;
    assert!(!object::is_terminating(&released));
    wait_list(store, pods(), "a replacement", |items| {
        owned(items).len() == 1 && owned(items).iter().all(|p| object::name(p) != kept_name)
    })
    .await;

    // Events say what happened.
    let events = store
        .list(kind("", "events"), Some(NS), &ListOptions::default())
        .await
        .unwrap()
        .items;
    let reasons: Vec<&str> = events.iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(
        reasons.contains(&"SuccessfulCreate") && reasons.contains(&"SuccessfulDelete"),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_stays_within_surge_and_unavailable() {
    let env = env().await;
    let store = &env.store;
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    store
        .create(deployments(), deployment("web", 4, strategy))
        .await
        .unwrap();
    let first = wait_for(store, deployments(), "web", rolled_out).await;
    assert_eq!(
        annotation(&first, "deployment.kubernetes.io/revision"),
        Some("1")
    );

    let mut history = PodHistory::start(store).await;
    let updated = modify(store, deployments(), "web", |d| {
        d["spec"]["template"] = template("web", "2");
        d["metadata"]["annotations"] = json!({"kubernetes.io/change-cause": "version 2"});
    })
    .await;
    let generation = int(&updated, "/metadata/generation");
    let mut max_pods = 0;
    let mut min_ready = usize::MAX;
    history
        .follow_until(
            store,
            "web",
            |d| rolled_out(d) && int(d, "/status/observedGeneration") >= generation,
            |pods| {
                let live: Vec<&Value> = pods
                    .values()
                    .filter(|p| !object::is_terminating(p))
                    .collect();
                let ready = live.iter().filter(|p| is_ready(p)).count();
                max_pods = max_pods.max(live.len());
                min_ready = min_ready.min(ready);
                assert!(
                    live.len() <= 5,
                    "more than replicas + maxSurge pods: {}",
                    live.len()
                );
                assert!(
                    ready >= 3,
                    "fewer than replicas - maxUnavailable ready pods: {ready}"
                );
            },
        )
        .await;
    assert_eq!(max_pods, 5, "the rollout used its surge");

    let d = store.get(deployments(), Some(NS), "web").await.unwrap();
    assert_eq!(
        annotation(&d, "deployment.kubernetes.io/revision"),
        Some("2")
    );
    let conditions = d.pointer("/status/conditions").unwrap().as_array().unwrap();
    let reason = |t: &str| {
        conditions
            .iter()
            .find(|c| c["type"] == t)
            .and_then(|c| c["reason"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(reason("Progressing"), "NewReplicaSetAvailable");
    assert_eq!(reason("Available"), "MinimumReplicasAvailable");
    // Two ReplicaSets: the new one with every pod and revision 2, the old one empty.
    let sets = store
        .list(rss(), Some(NS), &ListOptions::default())
        .await
        .unwrap()
        .items;
    assert_eq!(sets.len(), 2, "{sets:#?}");
    let new = sets
        .iter()
        .find(|r| annotation(r, "deployment.kubernetes.io/revision") == Some("2"))
        .unwrap();
    assert_eq!(int(new, "/spec/replicas"), 4);
    assert_eq!(
        annotation(new, "kubernetes.io/change-cause"),
        Some("version 2")
    );
    let hash = object::labels(new)
        .get("pod-template-hash")
        .cloned()
        .unwrap();
    assert_eq!(object::name(new), format!("web-{hash}"));
    let old = sets
        .iter()
        .find(|r| annotation(r, "deployment.kubernetes.io/revision") == Some("1"))
        .unwrap();
    assert_eq!(int(old, "/spec/replicas"), 0);
    let live: Vec<&Value> = history
        .pods
        .values()
        .filter(|p| !object::is_terminating(p))
        .collect();
    assert!(
        live.len() == 4 && live.iter().all(|p| hash_of(p) == hash),
        "{live:#?}"
    );
    let events = store
        .list(kind("", "events"), Some(NS), &ListOptions::default())
        .await
        .unwrap()
        .items;
    let scaled: Vec<&str> = events
        .iter()
        .filter(|e| e["reason"] == "ScalingReplicaSet")
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        scaled
            .iter()
            .any(|m| m.starts_with(&format!("Scaled up replica set web-{hash} to 1 from 0"))),
        "{scaled:?}"
    );
    assert!(
        scaled
            .iter()
            .any(|m| m.starts_with("Scaled down replica set")),
        "{scaled:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_removes_every_old_pod_before_the_first_new_one() {
    let env = env().await;
    let store = &env.store;
    store
        .create(
            deployments(),
            deployment("batch", 3, json!({"type": "Recreate"})),
        )
        .await
        .unwrap();
    wait_for(store, deployments(), "batch", rolled_out).await;
    let old_hash = store
        .list(pods(), Some(NS), &ListOptions::default())
        .await
        .unwrap()
        .items
        .first()
        .map(hash_of)
        .unwrap();
    let mut history = PodHistory::start(store).await;
    let updated = modify(store, deployments(), "batch", |d| {
        d["spec"]["template"] = template("batch", "2")
    })
    .await;
    let generation = int(&updated, "/metadata/generation");
    history
        .follow_until(
            store,
            "batch",
            |d| rolled_out(d) && int(d, "/status/observedGeneration") >= generation,
            |pods| {
                let old = pods.values().filter(|p| hash_of(p) == old_hash).count();
                let new = pods.values().filter(|p| hash_of(p) != old_hash).count();
                assert!(
                    old == 0 || new == 0,
                    "{old} old pods (terminating or not) next to {new} new ones"
                );
            },
        )
        .await;
    let live: Vec<&Value> = history
        .pods
        .values()
        .filter(|p| !object::is_terminating(p))
        .collect();
    assert!(live.len() == 3 && live.iter().all(|p| hash_of(p) != old_hash));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_deployment_scales_but_does_not_roll_out() {
    let env = env().await;
    let store = &env.store;
    store
        .create(deployments(), deployment("api", 2, json!({})))
        .await
        .unwrap();
    wait_for(store, deployments(), "api", rolled_out).await;
    let paused = modify(store, deployments(), "api", |d| {
        d["spec"]["paused"] = json!(true)
    })
    .await;
    let generation = int(&paused, "/metadata/generation");
    let d = wait_for(store, deployments(), "api", |d| {
        int(d, "/status/observedGeneration") >= generation
    })
    .await;
    let progressing = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .unwrap()
        .clone();
    assert_eq!(progressing["reason"], "DeploymentPaused");

    // A new template while paused: no new ReplicaSet. Scaling still works.
    modify(store, deployments(), "api", |d| {
        d["spec"]["template"] = template("api", "2");
        d["spec"]["replicas"] = json!(3);
    })
    .await;
    let d = wait_for(store, deployments(), "api", |d| {
        int(d, "/status/observedGeneration") >= int(d, "/metadata/generation")
            && int(d, "/status/availableReplicas") == 3
    })
    .await;
    assert_eq!(
        int(&d, "/status/updatedReplicas"),
        0,
        "the pods are the old template's"
    );
    let sets = store
        .list(rss(), Some(NS), &ListOptions::default())
        .await
        .unwrap()
        .items;
    assert_eq!(sets.len(), 1, "no rollout while paused: {sets:#?}");
    assert_eq!(int(&sets[0], "/spec/replicas"), 3);

    // Resumed: the rollout happens.
    modify(store, deployments(), "api", |d| {
        d["spec"]["paused"] = json!(false)
    })
    .await;
    let d = wait_for(store, deployments(), "api", |d| {
        rolled_out(d) && annotation(d, "deployment.kubernetes.io/revision") == Some("2")
    })
    .await;
    assert_eq!(int(&d, "/status/updatedReplicas"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_replica_sets_beyond_the_history_limit_are_deleted() {
    let env = env().await;
    let store = &env.store;
    let mut d = deployment("hist", 1, json!({}));
    d["spec"]["revisionHistoryLimit"] = json!(1);
    store.create(deployments(), d).await.unwrap();
    wait_for(store, deployments(), "hist", rolled_out).await;
    for version in ["2", "3", "4"] {
        modify(store, deployments(), "hist", |d| {
            d["spec"]["template"] = template("hist", version)
        })
        .await;
        let revision = (version.parse::<i32>().unwrap()).to_string();
        wait_for(store, deployments(), "hist", |d| {
            rolled_out(d)
                && annotation(d, "deployment.kubernetes.io/revision") == Some(revision.as_str())
        })
        .await;
    }
    let sets = wait_list(store, rss(), "two replica sets left", |items| {
        items.len() == 2
    })
    .await;
    let mut revisions: Vec<&str> = sets
        .iter()
        .filter_map(|r| annotation(r, "deployment.kubernetes.io/revision"))
        .collect();
    revisions.sort();
    assert_eq!(revisions, ["3", "4"]);
}
