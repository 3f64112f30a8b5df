//! Controller creates pass admission end to end: a real nats-server and store, the
//! controllers as `drover up` runs them and the test binder (see common). A
//! Deployment's pods are charged to the namespace's ResourceQuota (a refused pod is a
//! `FailedCreate` event and the ReplicaSet's `ReplicaFailure` condition, and appears once
//! the quota allows it), get their priority from the template's `priorityClassName`, and
//! get LimitRange defaults; a Job's pods are charged too. Timeouts are failure guards
//! only.

mod common;

use std::collections::BTreeMap;

use common::{Env, kind, wait_for};
use drover_store::{DeleteOptions, object};
use serde_json::{Value, json};

const NS: &str = "ns";

fn deployment(name: &str, replicas: i64, pod_spec: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
        },
    })
}

fn quota(name: &str, hard: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"hard": hard},
    })
}

/// The live (not terminating) pods of `app`.
fn live_of<'a>(pods: &'a BTreeMap<String, Value>, app: &str) -> Vec<&'a Value> {
    pods.values()
        .filter(|p| common::label(p, "app") == app && !object::is_terminating(p))
        .collect()
}

fn failure_condition(rs: &Value) -> Option<&Value> {
    rs.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == "ReplicaFailure")
}

/// The Warning events of `reason` about objects of `involved_kind`.
fn warnings<'a>(
    events: &'a BTreeMap<String, Value>,
    involved_kind: &str,
    reason: &str,
) -> Vec<&'a str> {
    events
        .values()
        .filter(|e| {
            e["type"] == "Warning"
                && e["reason"] == reason
                && e.pointer("/involvedObject/kind").and_then(Value::as_str) == Some(involved_kind)
        })
        .filter_map(|e| e["message"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deployment_stays_within_the_pod_quota_until_it_is_lifted() {
    drover_testkit::init_tracing();
    let env = Env::start().await;
    let store = &env.store;
    let (quotas, pods, rss, events) = (
        kind("", "resourcequotas"),
        kind("", "pods"),
        kind("apps", "replicasets"),
        kind("", "events"),
    );
    store
        .create(quotas, quota("q1", json!({"pods": "2"})))
        .await
        .unwrap();
    let spec = json!({"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]});
    store
        .create(kind("apps", "deployments"), deployment("web", 3, spec))
        .await
        .unwrap();

    // The third pod is refused: a FailedCreate event with the quota's Status message...
    let wanted = "exceeded quota: q1, requested: pods=1, used: pods=2, limited: pods=2";
    let seen = wait_for(store, events, Some(NS), "the FailedCreate event", |e| {
        warnings(e, "ReplicaSet", "FailedCreate")
            .iter()
            .any(|m| m.contains(wanted))
    })
    .await;
    let message = warnings(&seen, "ReplicaSet", "FailedCreate")
        .into_iter()
        .find(|m| m.contains(wanted))
        .unwrap()
        .to_string();
    assert!(
        message.starts_with("Error creating: pods \"web-") && message.contains("\" is forbidden: "),
        "{message}"
    );
    // ... and the ReplicaSet's ReplicaFailure condition.
    let with_failure = wait_for(store, rss, Some(NS), "the ReplicaFailure condition", |rs| {
        rs.values().any(|r| {
            failure_condition(r)
                .is_some_and(|c| c["status"] == "True" && c["reason"] == "FailedCreate")
        })
    })
    .await;
    let rs = with_failure.values().next().unwrap();
    let condition = failure_condition(rs).unwrap();
    assert!(
        condition["message"].as_str().unwrap().contains(wanted),
        "{condition}"
    );
    // Exactly two pods exist now: the refused one was never written.
    let now: BTreeMap<String, Value> = store
        .list(pods, Some(NS), &Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| (object::name(&p).to_string(), p))
        .collect();
    assert_eq!(live_of(&now, "web").len(), 2, "{now:#?}");

    // Lifting the quota lets the retry (with backoff) create the third pod, and the
    // condition goes away.
    store
        .delete(quotas, Some(NS), "q1", &DeleteOptions::default())
        .await
        .unwrap();
    wait_for(store, pods, Some(NS), "the third pod", |p| {
        live_of(p, "web").len() == 3
    })
    .await;
    wait_for(store, rss, Some(NS), "the condition cleared", |rs| {
        rs.values()
            .all(|r| failure_condition(r).is_none() && r["status"]["replicas"] == 3)
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deployments_pods_get_priority_and_limit_range_defaults() {
    drover_testkit::init_tracing();
    let env = Env::start().await;
    let store = &env.store;
    store
        .create(
            kind("scheduling.k8s.io", "priorityclasses"),
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "Never"}),
        )
        .await
        .unwrap();
    store
        .create(
            kind("", "limitranges"),
            json!({"apiVersion": "v1", "kind": "LimitRange",
                "metadata": {"name": "defaults", "namespace": NS},
                "spec": {"limits": [{"type": "Container",
                    "default": {"cpu": "500m", "memory": "256Mi"},
                    "defaultRequest": {"cpu": "100m"}}]}}),
        )
        .await
        .unwrap();
    let spec = json!({
        "priorityClassName": "high",
        "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
    });
    store
        .create(kind("apps", "deployments"), deployment("api", 2, spec))
        .await
        .unwrap();
    let pods = wait_for(store, kind("", "pods"), Some(NS), "two pods", |p| {
        live_of(p, "api").len() == 2
    })
    .await;
    for pod in live_of(&pods, "api") {
        let name = object::name(pod);
        assert_eq!(pod["spec"]["priority"], 1000, "{name}");
        assert_eq!(pod["spec"]["preemptionPolicy"], "Never", "{name}");
        assert_eq!(
            pod["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "500m", "memory": "256Mi"},
                   "requests": {"cpu": "100m", "memory": "256Mi"}}),
            "{name}"
        );
        assert_eq!(pod["status"]["qosClass"], "Burstable", "{name}");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_jobs_pods_are_charged_to_the_quota() {
    drover_testkit::init_tracing();
    let env = Env::start().await;
    let store = &env.store;
    store
        .create(
            kind("", "resourcequotas"),
            quota("q1", json!({"pods": "1"})),
        )
        .await
        .unwrap();
    store
        .create(
            kind("batch", "jobs"),
            json!({"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "work", "namespace": NS},
                "spec": {"parallelism": 2, "completions": 2, "template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}}),
        )
        .await
        .unwrap();
    let wanted = "exceeded quota: q1, requested: pods=1, used: pods=1, limited: pods=1";
    wait_for(
        store,
        kind("", "events"),
        Some(NS),
        "the FailedCreate event",
        |e| {
            warnings(e, "Job", "FailedCreate")
                .iter()
                .any(|m| m.starts_with("Error creating: pods \"work-") && m.contains(wanted))
        },
    )
    .await;
    let pods = store
        .list(kind("", "pods"), Some(NS), &Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(pods.len(), 1, "{pods:#?}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_statefulsets_claims_are_charged_and_its_pod_waits_for_its_claim() {
    drover_testkit::init_tracing();
    let env = Env::start().await;
    let store = &env.store;
    let quotas = kind("", "resourcequotas");
    store
        .create(quotas, quota("q1", json!({"requests.storage": "1Gi"})))
        .await
        .unwrap();
    store
        .create(
            kind("apps", "statefulsets"),
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": NS},
            "spec": {
                "replicas": 2, "serviceName": "db", "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}}}}],
            }}),
        )
        .await
        .unwrap();
    let prefix = "create Claim data-db-1 for StatefulSet db failed error: persistentvolumeclaims \"data-db-1\" is forbidden: exceeded quota: q1";
    wait_for(
        store,
        kind("", "events"),
        Some(NS),
        "the claim's FailedCreate",
        |e| {
            warnings(e, "StatefulSet", "FailedCreate")
                .iter()
                .any(|m| m.starts_with(prefix))
        },
    )
    .await;
    // Neither the refused claim nor the pod that needs it exists.
    let names = |kind| async move {
        let items = store
            .list(kind, Some(NS), &Default::default())
            .await
            .unwrap()
            .items;
        items
            .iter()
            .map(|o| object::name(o).to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(kind("", "persistentvolumeclaims")).await,
        ["data-db-0"]
    );
    assert!(
        !names(kind("", "pods")).await.contains(&"db-1".to_string()),
        "db-1 exists without its claim"
    );
    // Raising the quota lets the retry create both.
    common::edit(store, quotas, Some(NS), "q1", |q| {
        q["spec"]["hard"]["requests.storage"] = json!("2Gi");
    })
    .await;
    wait_for(store, kind("", "pods"), Some(NS), "pod db-1", |p| {
        p.contains_key("db-1")
    })
    .await;
    assert_eq!(
        names(kind("", "persistentvolumeclaims")).await,
        ["data-db-0", "data-db-1"]
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daemonsets_pods_get_the_priority_of_their_class() {
    drover_testkit::init_tracing();
    let mut env = Env::start().await;
    env.add_node(0, &[], &[]).await;
    env.store
        .create(
            kind("apps", "daemonsets"),
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": NS},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {
                    "priorityClassName": "system-node-critical",
                    "containers": [{"name": "c", "image": "busybox:1"}]}},
            }}),
        )
        .await
        .unwrap();
    let pods = wait_for(
        &env.store,
        kind("", "pods"),
        Some(NS),
        "the daemon pod",
        |p| !live_of(p, "agent").is_empty(),
    )
    .await;
    let pod = live_of(&pods, "agent")[0];
    assert_eq!(pod["spec"]["priority"], 2_000_001_000, "{pod:#}");
    env.stop().await;
}
