//! The Job controller end to end: real nats-server and store, the controllers as
//! `drover up` runs them (`Controllers::start`: garbage collector, pod index, Job and
//! CronJob controllers), one hollow node agent whose containers exit on cue
//! (`HOLLOW_EXIT_AFTER_MS`, `HOLLOW_EXIT_CODE`), and a test-only binder in place of the
//! scheduler. Timeouts are failure guards only.

#[path = "jobs_common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use drover_store::{Store, WatchEvent, object};
use drover_testkit::TestNats;
use serde_json::{Value, json};

struct Env {
    _nats: TestNats,
    store: Store,
    _controllers: drover_controllers::Controllers,
    _nodes: Nodes,
}

async fn env() -> Env {
    let nats = TestNats::start().await;
    let store = store(&nats).await;
    let controllers = drover_controllers::Controllers::start(store.clone());
    let nodes = nodes(&store).await;
    Env {
        _nats: nats,
        store,
        _controllers: controllers,
        _nodes: nodes,
    }
}

/// A Job whose container exits after `exit_after_ms` with `exit_code` (runs forever
/// when `exit_after_ms` is None).
fn job(name: &str, spec: Value, exit_after_ms: Option<u64>, exit_code: i32) -> Value {
    let mut env = vec![];
    if let Some(ms) = exit_after_ms {
        env.push(json!({"name": "HOLLOW_EXIT_AFTER_MS", "value": ms.to_string()}));
        env.push(json!({"name": "HOLLOW_EXIT_CODE", "value": exit_code.to_string()}));
    }
    let mut job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "work", "image": "busybox", "env": env}]}}}
    });
    for (k, v) in spec.as_object().unwrap() {
        job["spec"][k] = v.clone();
    }
    job
}

fn controlled_by(pod: &Value, uid: &str) -> bool {
    drover_controllers::runtime::owner::is_controlled_by(pod, uid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_parallelism_are_respected() {
    let env = env().await;
    let created = env
        .store
        .create(
            jobs(),
            job(
                "batch",
                json!({"completions": 5, "parallelism": 2}),
                Some(200),
                0,
            ),
        )
        .await
        .unwrap();
    let uid = object::meta_str(&created, "uid").unwrap().to_string();
    // Follow the Job's pods from the start of history: at no point more than
    // `parallelism` of them may be active (not finished, not deleted).
    let mut active: BTreeSet<String> = BTreeSet::new();
    let mut max_active = 0;
    let mut succeeded: BTreeSet<String> = BTreeSet::new();
    wait_event(
        &env.store,
        pods(),
        "default",
        "5 pods of the job succeeded",
        |e| {
            match e {
                WatchEvent::Added(p) | WatchEvent::Modified(p) if controlled_by(p, &uid) => {
                    let id = object::meta_str(p, "uid").unwrap().to_string();
                    let phase = p.pointer("/status/phase").and_then(Value::as_str);
                    if object::is_terminating(p) || matches!(phase, Some("Succeeded" | "Failed")) {
                        active.remove(&id);
                    } else {
                        active.insert(id.clone());
                    }
                    if phase == Some("Succeeded") {
                        succeeded.insert(id);
                    }
                }
                WatchEvent::Deleted(p) => {
                    active.remove(object::meta_str(p, "uid").unwrap_or_default());
                }
                _ => {}
            }
            max_active = max_active.max(active.len());
            succeeded.len() >= 5
        },
    )
    .await;
    let done = wait_object(
        &env.store,
        jobs(),
        "default",
        "batch",
        "job Complete",
        |j| has_condition(j, "Complete"),
    )
    .await;
    assert!(max_active <= 2, "{max_active} pods were active at once");
    assert_eq!(done["status"]["succeeded"], 5, "{done}");
    assert_eq!(done["status"]["active"], 0);
    assert_eq!(done["status"]["failed"], 0);
    assert!(has_condition(&done, "SuccessCriteriaMet"));
    assert!(done["status"]["completionTime"].is_string());
    // Exactly five pods were created, each with the generated labels, and none keeps
    // the tracking finalizer.
    let pods: Vec<Value> = list_pods(&env.store, "default")
        .await
        .into_iter()
        .filter(|p| controlled_by(p, &uid))
        .collect();
    assert_eq!(pods.len(), 5);
    for p in &pods {
        assert!(object::name(p).starts_with("batch-"));
        let labels = object::labels(p);
        assert_eq!(
            labels
                .get("batch.kubernetes.io/job-name")
                .map(String::as_str),
            Some("batch")
        );
        assert_eq!(labels.get("job-name").map(String::as_str), Some("batch"));
        assert_eq!(labels.get("batch.kubernetes.io/controller-uid"), Some(&uid));
        assert!(object::finalizers(p).is_empty(), "{p}");
    }
    assert_eq!(
        done.pointer("/spec/selector/matchLabels/batch.kubernetes.io~1controller-uid"),
        Some(&json!(uid))
    );
    wait_events(
        &env.store,
        "default",
        "batch",
        &["SuccessfulCreate", "Completed"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_limit_fails_the_job() {
    let env = env().await;
    let created = env
        .store
        .create(
            jobs(),
            job("flaky", json!({"backoffLimit": 1}), Some(100), 3),
        )
        .await
        .unwrap();
    let uid = object::meta_str(&created, "uid").unwrap().to_string();
    // The replacement of the first failed pod waits out Kubernetes' 10 s backoff.
    let failed = wait_object(&env.store, jobs(), "default", "flaky", "job Failed", |j| {
        has_condition(j, "Failed")
    })
    .await;
    assert_eq!(
        condition(&failed, "Failed").unwrap()["reason"],
        "BackoffLimitExceeded"
    );
    assert_eq!(
        condition(&failed, "FailureTarget").unwrap()["reason"],
        "BackoffLimitExceeded"
    );
    assert_eq!(failed["status"]["failed"], 2, "{failed}");
    assert_eq!(failed["status"]["succeeded"], 0);
    assert!(failed["status"].get("completionTime").is_none());
    let pods: Vec<Value> = list_pods(&env.store, "default")
        .await
        .into_iter()
        .filter(|p| controlled_by(p, &uid))
        .collect();
    assert_eq!(pods.len(), 2, "one pod and one replacement");
    wait_events(&env.store, "default", "flaky", &["BackoffLimitExceeded"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_deadline_fails_the_job_and_stops_its_pods() {
    let env = env().await;
    let created = env
        .store
        .create(
            jobs(),
            job(
                "slow",
                json!({"activeDeadlineSeconds": 1, "parallelism": 2, "completions": 2}),
                None,
                0,
            ),
        )
        .await
        .unwrap();
    let uid = object::meta_str(&created, "uid").unwrap().to_string();
    // The pods exist before the deadline passes (they are created in the Job's first
    // sync); whether they got as far as Running by then depends on the machine's load.
    wait_event(
        &env.store,
        pods(),
        "default",
        "a pod of the job",
        |e| matches!(e, WatchEvent::Added(p) | WatchEvent::Modified(p) if controlled_by(p, &uid)),
    )
    .await;
    let failed = wait_object(&env.store, jobs(), "default", "slow", "job Failed", |j| {
        has_condition(j, "Failed")
    })
    .await;
    assert_eq!(
        condition(&failed, "Failed").unwrap()["reason"],
        "DeadlineExceeded"
    );
    assert_eq!(
        condition(&failed, "Failed").unwrap()["message"],
        "Job was active longer than specified deadline"
    );
    assert_eq!(failed["status"]["active"], 0);
    // Failed is reported once the pods are gone; each was counted once.
    assert_eq!(failed["status"]["failed"], 2, "{failed}");
    let left: Vec<Value> = list_pods(&env.store, "default")
        .await
        .into_iter()
        .filter(|p| controlled_by(p, &uid))
        .collect();
    assert!(left.is_empty(), "pods left: {left:?}");
    wait_events(
        &env.store,
        "default",
        "slow",
        &["DeadlineExceeded", "SuccessfulDelete"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_after_finished_deletes_the_job_and_its_pods() {
    let env = env().await;
    let created = env
        .store
        .create(
            jobs(),
            job("short", json!({"ttlSecondsAfterFinished": 1}), Some(50), 0),
        )
        .await
        .unwrap();
    let uid = object::meta_str(&created, "uid").unwrap().to_string();
    wait_object(
        &env.store,
        jobs(),
        "default",
        "short",
        "job Complete",
        |j| has_condition(j, "Complete"),
    )
    .await;
    wait_deleted(&env.store, jobs(), "default", "short").await;
    // The garbage collector removes the pods of the deleted Job (background).
    wait_event(
        &env.store,
        pods(),
        "default",
        "the job's pod deleted",
        |e| matches!(e, WatchEvent::Deleted(p) if controlled_by(p, &uid)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_job_completes_every_index_once() {
    let env = env().await;
    let created = env
        .store
        .create(
            jobs(),
            job(
                "idx",
                json!({"completionMode": "Indexed", "completions": 4, "parallelism": 2}),
                Some(100),
                0,
            ),
        )
        .await
        .unwrap();
    let uid = object::meta_str(&created, "uid").unwrap().to_string();
    let done = wait_object(&env.store, jobs(), "default", "idx", "job Complete", |j| {
        has_condition(j, "Complete")
    })
    .await;
    assert_eq!(done["status"]["completedIndexes"], "0-3", "{done}");
    assert_eq!(done["status"]["succeeded"], 4);
    let mut by_index: BTreeMap<String, usize> = BTreeMap::new();
    for p in list_pods(&env.store, "default")
        .await
        .iter()
        .filter(|p| controlled_by(p, &uid))
    {
        let index = p
            .pointer("/metadata/annotations/batch.kubernetes.io~1job-completion-index")
            .and_then(Value::as_str)
            .unwrap()
            .to_string();
        assert_eq!(
            object::labels(p).get("batch.kubernetes.io/job-completion-index"),
            Some(&index)
        );
        assert!(
            object::name(p).starts_with(&format!("idx-{index}-")),
            "{}",
            object::name(p)
        );
        assert_eq!(p["spec"]["hostname"], format!("idx-{index}"));
        let env_var = p["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "JOB_COMPLETION_INDEX")
            .cloned();
        assert_eq!(env_var.unwrap()["value"], index.as_str());
        assert_eq!(p["status"]["phase"], "Succeeded");
        *by_index.entry(index).or_default() += 1;
    }
    assert_eq!(
        by_index,
        BTreeMap::from([
            ("0".into(), 1),
            ("1".into(), 1),
            ("2".into(), 1),
            ("3".into(), 1)
        ])
    );
}
