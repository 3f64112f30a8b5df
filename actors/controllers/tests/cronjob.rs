//! The CronJob controller end to end on a clock the test moves (no real minute passes):
//! real nats-server and store, the runtime's cache, the Job and CronJob controllers, one
//! hollow node agent and a test-only binder in place of the scheduler. Timeouts are
//! failure guards only.

#[path = "jobs_common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use drover_controllers::cronjob::{self, ManualClock, SCHEDULED_TIMESTAMP};
use drover_controllers::job::{self, JobConfig};
use drover_controllers::runtime::{Cache, Context};
use drover_store::{Store, WatchEvent, object};
use drover_testkit::TestNats;
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

struct Env {
    _nats: TestNats,
    store: Store,
    clock: Arc<ManualClock>,
    _nodes: Nodes,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn env() -> Env {
    let nats = TestNats::start().await;
    let store = store(&nats).await;
    let index = drover_store::node_index::PodIndex::start(store.clone())
        .await
        .unwrap();
    // The index stops when dropped; it lives as long as the test's runtime.
    std::mem::forget(index);
    let nodes = nodes(&store).await;
    let kinds: Vec<_> = job::kinds().into_iter().chain(cronjob::kinds()).collect();
    let cache = Cache::start(store.clone(), &kinds);
    let ctx = Context::new(store.clone(), cache, "test");
    let clock = ManualClock::new(Timestamp::now());
    let mut tasks = job::start_with(
        &ctx,
        JobConfig {
            backoff_base: Duration::from_millis(100),
        },
    );
    tasks.extend(cronjob::start_with(&ctx, clock.clone()));
    Env {
        _nats: nats,
        store,
        clock,
        _nodes: nodes,
        tasks,
    }
}

/// A CronJob running every minute whose Job's container exits 0 after 50 ms, or runs
/// forever.
fn cron(name: &str, extra: Value, finishes: bool) -> Value {
    let env = if finishes {
        json!([{"name": "HOLLOW_EXIT_AFTER_MS", "value": "50"}])
    } else {
        json!([])
    };
    let mut cj = json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {
            "metadata": {"labels": {"app": name}},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox", "env": env}]}}}}}
    });
    for (k, v) in extra.as_object().unwrap() {
        cj["spec"][k] = v.clone();
    }
    cj
}

/// Creates the CronJob; returns its creation time rounded down to the minute.
async fn create(env: &Env, cj: Value) -> i64 {
    let created = env.store.create(cronjobs(), cj).await.unwrap();
    let at: Timestamp = object::meta_str(&created, "creationTimestamp")
        .unwrap()
        .parse()
        .unwrap();
    at.as_second().div_euclid(60) * 60
}

/// Moves the clock 5 s past minute `minute` (seconds since the epoch) and returns the
/// name of the Job for it.
fn tick(env: &Env, name: &str, minute: i64) -> String {
    env.clock.set(Timestamp::from_second(minute + 5).unwrap());
    format!("{name}-{}", minute / 60)
}

async fn wait_job(env: &Env, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_object(&env.store, jobs(), "default", name, what, pred).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_minute_starts_a_job_and_history_is_pruned() {
    let env = env().await;
    let base = create(
        &env,
        cron("tick", json!({"successfulJobsHistoryLimit": 2}), true),
    )
    .await;
    let mut names = Vec::new();
    for i in 1..=3 {
        let minute = base + 60 * i;
        let name = tick(&env, "tick", minute);
        let done = wait_job(&env, &name, "the minute's job completes", |j| {
            has_condition(j, "Complete")
        })
        .await;
        let scheduled = Timestamp::from_second(minute)
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        assert_eq!(
            done["metadata"]["annotations"][SCHEDULED_TIMESTAMP],
            scheduled.as_str()
        );
        assert_eq!(done["metadata"]["labels"]["app"], "tick");
        assert_eq!(done["metadata"]["ownerReferences"][0]["kind"], "CronJob");
        wait_object(
            &env.store,
            cronjobs(),
            "default",
            "tick",
            "lastScheduleTime",
            |cj| cj["status"]["lastScheduleTime"] == scheduled.as_str(),
        )
        .await;
        names.push(name);
    }
    // Three successful Jobs with a limit of two: the oldest goes.
    wait_deleted(&env.store, jobs(), "default", &names[0]).await;
    let cj = wait_object(
        &env.store,
        cronjobs(),
        "default",
        "tick",
        "no active jobs",
        |cj| cj["status"].get("active").is_none() && cj["status"]["lastSuccessfulTime"].is_string(),
    )
    .await;
    assert!(cj["status"]["lastSuccessfulTime"].is_string(), "{cj}");
    for kept in &names[1..] {
        env.store.get(jobs(), Some("default"), kept).await.unwrap();
    }
    wait_events(
        &env.store,
        "default",
        "tick",
        &["SuccessfulCreate", "SawCompletedJob", "SuccessfulDelete"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbid_skips_a_run_while_a_job_is_active() {
    let env = env().await;
    let base = create(
        &env,
        cron("lone", json!({"concurrencyPolicy": "Forbid"}), false),
    )
    .await;
    let first = tick(&env, "lone", base + 60);
    wait_job(&env, &first, "the first job", |_| true).await;
    let second = tick(&env, "lone", base + 120);
    wait_events(&env.store, "default", "lone", &["JobAlreadyActive"]).await;
    assert!(
        env.store
            .get(jobs(), Some("default"), &second)
            .await
            .is_err()
    );
    let cj = env
        .store
        .get(cronjobs(), Some("default"), "lone")
        .await
        .unwrap();
    let active: Vec<&str> = cj["status"]["active"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(active, [first.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_deletes_the_active_job() {
    let env = env().await;
    let base = create(
        &env,
        cron("swap", json!({"concurrencyPolicy": "Replace"}), false),
    )
    .await;
    let first = tick(&env, "swap", base + 60);
    wait_job(&env, &first, "the first job", |_| true).await;
    let second = tick(&env, "swap", base + 120);
    wait_job(&env, &second, "the second job", |_| true).await;
    wait_deleted(&env.store, jobs(), "default", &first).await;
    let cj = wait_object(
        &env.store,
        cronjobs(),
        "default",
        "swap",
        "only the second job active",
        |cj| {
            cj["status"]["active"]
                .as_array()
                .is_some_and(|a| a.len() == 1 && a[0]["name"] == second.as_str())
        },
    )
    .await;
    assert_eq!(cj["status"]["active"][0]["kind"], "Job");
    wait_event(&env.store, kind("", "events"), "default", "SuccessfulDelete of the first job", |e| {
        matches!(e, WatchEvent::Added(ev) | WatchEvent::Modified(ev)
            if ev["reason"] == "SuccessfulDelete" && ev["message"] == format!("Deleted job {first}").as_str())
    })
    .await;
}
