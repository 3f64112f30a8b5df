//! Jobs and CronJobs through kubectl against the real gateway, store and controllers
//! (`Controllers::start`, as `drover up` runs them), with one hollow node agent and a
//! test-only binder in place of the scheduler (`Controllers::start` does not run it;
//! `drover up` does). Timeouts are failure guards only.

mod common;

use std::time::Duration;

use common::Cluster;
use drover_node::{FleetConfig, HollowFleet, run_hollow_fleet};
use drover_store::{Store, StoreError, WatchEvent, WatchOptions, object};
use futures::StreamExt;
use serde_json::Value;
use tokio::task::JoinHandle;

fn pods() -> &'static bus_schema::KindInfo {
    bus_schema::kinds::by_group_resource("", "pods").unwrap()
}

/// One hollow node and a binder that puts every unbound pod on it.
async fn node(store: &Store) -> (HollowFleet, JoinHandle<()>) {
    let fleet = run_hollow_fleet(store.clone(), 1, FleetConfig::default())
        .await
        .unwrap();
    let node = fleet.agents[0].node_name().to_string();
    let store = store.clone();
    let binder = tokio::spawn(async move {
        let mut watch = store
            .watch(pods(), None, 0, WatchOptions::default())
            .await
            .unwrap();
        while let Some(Ok(WatchEvent::Added(mut pod) | WatchEvent::Modified(mut pod))) =
            watch.next().await
        {
            let bound = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            if bound || object::is_terminating(&pod) {
                continue;
            }
            pod["spec"]["nodeName"] = Value::from(node.as_str());
            match store.update(pods(), pod).await {
                Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                Err(e) => panic!("binding failed: {e}"),
            }
        }
    });
    (fleet, binder)
}

/// kubectl in a blocking thread (the controllers run on this test's runtime).
async fn kubectl(c: &Cluster, args: &[&str]) -> (bool, String, String) {
    let kubeconfig = c.kubeconfig.clone();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("kubectl")
            .args(&args)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .expect("kubectl on PATH (scripts/setup)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

async fn ok(c: &Cluster, args: &[&str]) -> String {
    let (success, out, err) = kubectl(c, args).await;
    assert!(success, "kubectl {args:?} failed:\n{out}\n{err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_through_kubectl() {
    let c = Cluster::start().await;
    let (_fleet, binder) = node(&c.store).await;

    let out = ok(
        &c,
        &[
            "create",
            "job",
            "hello",
            "--image=busybox",
            "--",
            "echo",
            "hi",
        ],
    )
    .await;
    assert_eq!(out.trim(), "job.batch/hello created");

    let manifest = c.write(
        "quick.yaml",
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: quick
spec:
  completions: 2
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: busybox
        env:
        - name: HOLLOW_EXIT_AFTER_MS
          value: "100"
"#,
    );
    ok(&c, &["apply", "-f", &manifest]).await;
    let out = ok(
        &c,
        &[
            "wait",
            "--for=condition=complete",
            "job/quick",
            "--timeout=90s",
        ],
    )
    .await;
    assert_eq!(out.trim(), "job.batch/quick condition met");

    let table = ok(&c, &["get", "jobs"]).await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        "{table}"
    );
    let quick: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("quick "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&quick[1..3], ["Complete", "2/2"], "{table}");
    // `hello` runs until deleted (the hollow container never exits).
    let hello: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("hello "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&hello[1..3], ["Running", "0/1"], "{table}");
    let wide = ok(&c, &["get", "job", "hello", "-o", "wide"]).await;
    assert!(
        wide.contains("batch.kubernetes.io/controller-uid="),
        "{wide}"
    );

    ok(&c, &["delete", "job", "hello", "--wait=false"]).await;
    binder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjobs_through_kubectl() {
    let c = Cluster::start().await;
    let (_fleet, binder) = node(&c.store).await;

    let out = ok(
        &c,
        &[
            "create",
            "cronjob",
            "nightly",
            "--image=busybox",
            "--schedule=0 3 * * *",
            "--",
            "true",
        ],
    )
    .await;
    assert_eq!(out.trim(), "cronjob.batch/nightly created");
    let table = ok(&c, &["get", "cronjobs"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"
        ],
        "{table}"
    );
    assert!(table.contains("0 3 * * *"), "{table}");

    let out = ok(&c, &["create", "job", "manual", "--from=cronjob/nightly"]).await;
    assert_eq!(out.trim(), "job.batch/manual created");
    let job: Value =
        serde_json::from_str(&ok(&c, &["get", "job", "manual", "-o", "json"]).await).unwrap();
    assert_eq!(
        job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    assert_eq!(job["metadata"]["ownerReferences"][0]["name"], "nightly");
    // The Job controller runs it: its pod appears, labelled with the Job's name.
    let out = ok(
        &c,
        &[
            "wait",
            "--for=create",
            "pod",
            "-l",
            "batch.kubernetes.io/job-name=manual",
            "--timeout=60s",
        ],
    )
    .await;
    assert!(out.contains("condition met"), "{out}");
    let schedule = ok(
        &c,
        &[
            "get",
            "cronjob",
            "nightly",
            "-o",
            "jsonpath={.spec.schedule}",
        ],
    )
    .await;
    assert_eq!(schedule, "0 3 * * *");

    // A schedule the controller cannot read is reported as an event, not a crash.
    ok(
        &c,
        &[
            "create",
            "cronjob",
            "broken",
            "--image=busybox",
            "--schedule=61 * * * *",
        ],
    )
    .await;
    let events = bus_schema::kinds::by_group_resource("", "events").unwrap();
    let mut watch = c
        .store
        .watch(events, Some("default"), 0, WatchOptions::default())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(Ok(event)) = watch.next().await {
            if let WatchEvent::Added(ev) | WatchEvent::Modified(ev) = event
                && ev["involvedObject"]["name"] == "broken"
                && ev["reason"] == "UnparseableSchedule"
            {
                return;
            }
        }
    })
    .await
    .expect("an UnparseableSchedule event about the broken cronjob");
    let listed = ok(
        &c,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=broken",
        ],
    )
    .await;
    assert!(listed.contains("UnparseableSchedule"), "{listed}");
    binder.abort();
}
