//! Deployments through kubectl, unchanged: create, scale, set image, rollout
//! status / history / undo / pause / resume / restart, and delete with every cascade
//! policy. The gateway test cluster runs the controllers; hollow node agents run the
//! pods and a test-only binder stands in for the scheduler.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use drover_node::{FleetConfig, run_hollow_fleet};
use serde_json::Value;

const NODES: usize = 2;

/// Polls `cond` until it holds; panics with `what` after a generous guard (the loop ends
/// as soon as the condition holds).
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn json_of(c: &Cluster, args: &[&str]) -> Value {
    serde_json::from_str(&c.ok(args)).unwrap()
}

fn rollout_status(c: &Cluster, name: &str) {
    let out = c.ok(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "--timeout=60s",
    ]);
    assert!(out.contains("successfully rolled out"), "{out}");
}

fn image_of(c: &Cluster, name: &str) -> String {
    c.ok(&[
        "get",
        "deployment",
        name,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ])
}

fn replica_sets(c: &Cluster, app: &str) -> Vec<Value> {
    json_of(c, &["get", "rs", "-l", &format!("app={app}"), "-o", "json"])["items"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollouts_work_unchanged() {
    let c = Cluster::start().await;
    let _fleet = run_hollow_fleet(c.store.clone(), NODES, FleetConfig::default())
        .await
        .unwrap();
    let binder = tokio::spawn(common::bind_round_robin(c.store.clone(), NODES));
    tokio::task::block_in_place(|| scenario(&c));
    binder.abort();
}

fn scenario(c: &Cluster) {
    // Create and scale.
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1",
        "--replicas=2",
    ]);
    rollout_status(c, "web");
    let out = c.ok(&["scale", "deployment", "web", "--replicas=3"]);
    assert!(out.contains("scaled"), "{out}");
    rollout_status(c, "web");
    let d = json_of(c, &["get", "deployment", "web", "-o", "json"]);
    assert_eq!(d["status"]["readyReplicas"], 3, "{d:#}");
    let ready = c.ok(&["get", "deployment", "web", "--no-headers"]);
    assert!(ready.contains("3/3"), "{ready}");

    // A new image is a new revision, with its change-cause.
    c.ok(&["set", "image", "deployment/web", "busybox=busybox:2"]);
    c.ok(&[
        "annotate",
        "deployment/web",
        "kubernetes.io/change-cause=image 2",
    ]);
    rollout_status(c, "web");
    assert_eq!(image_of(c, "web"), "busybox:2");
    eventually("change-cause on the new replica set", || {
        c.ok(&["rollout", "history", "deployment/web"])
            .contains("image 2")
    });
    let history = c.ok(&["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    let detail = c.ok(&["rollout", "history", "deployment/web", "--revision=1"]);
    assert!(detail.contains("busybox:1"), "{detail}");

    // Undo: the previous template comes back as revision 3.
    let out = c.ok(&["rollout", "undo", "deployment/web"]);
    assert!(out.contains("rolled back"), "{out}");
    rollout_status(c, "web");
    assert_eq!(image_of(c, "web"), "busybox:1");
    eventually("revision 3", || {
        c.ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        ]) == "3"
    });
    let history = c.ok(&["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    if revisions != ["2", "3"] {
        let sets = c.ok(&[
            "get",
            "rs",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.template}{\"\\n\"}{end}",
        ]);
        let d = c.ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.template}",
        ]);
        panic!("{history}\nreplica sets:\n{sets}\ndeployment: {d}");
    }
    let sets = replica_sets(c, "web");
    assert_eq!(sets.len(), 2, "undo reuses the old replica set");
    let back = sets
        .iter()
        .find(|r| r["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3")
        .unwrap();
    assert_eq!(
        back["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"],
        "1"
    );

    // Paused: a new image waits; resumed, it rolls out.
    c.ok(&["rollout", "pause", "deployment/web"]);
    c.ok(&["set", "image", "deployment/web", "busybox=busybox:3"]);
    eventually("the paused deployment observed", || {
        let d = json_of(c, &["get", "deployment", "web", "-o", "json"]);
        d["status"]["observedGeneration"] == d["metadata"]["generation"]
    });
    assert_eq!(
        replica_sets(c, "web").len(),
        2,
        "no new replica set while paused"
    );
    let (undo_ok, _, err) = c.kubectl(&["rollout", "undo", "deployment/web"]);
    assert!(!undo_ok && err.contains("paused"), "{err}");
    c.ok(&["rollout", "resume", "deployment/web"]);
    rollout_status(c, "web");
    assert_eq!(replica_sets(c, "web").len(), 3);

    // Restart: same image, new pods.
    let before: Vec<String> = c
        .ok(&["get", "pods", "-l", "app=web", "-o", "name"])
        .lines()
        .map(str::to_string)
        .collect();
    c.ok(&["rollout", "restart", "deployment/web"]);
    rollout_status(c, "web");
    let restarted = c.ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.template.metadata.annotations}",
    ]);
    assert!(
        restarted.contains("kubectl.kubernetes.io/restartedAt"),
        "{restarted}"
    );
    eventually("only new pods", || {
        let now = c.ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
        now.lines().count() == 3 && now.lines().all(|p| !before.iter().any(|b| b == p))
    });

    // Events name the scaling.
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=ScalingReplicaSet",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(events.contains("Scaled up replica set web-"), "{events}");

    // Delete: orphan keeps the replica sets and pods, without an owner.
    c.ok(&["delete", "deployment", "web", "--cascade=orphan"]);
    eventually("web gone", || !c.kubectl(&["get", "deployment", "web"]).0);
    eventually("replica sets orphaned", || {
        let sets = replica_sets(c, "web");
        !sets.is_empty()
            && sets.iter().all(|r| {
                r["metadata"]["ownerReferences"]
                    .as_array()
                    .is_none_or(|a| a.is_empty())
            })
    });
    assert_eq!(
        c.ok(&["get", "pods", "-l", "app=web", "-o", "name"])
            .lines()
            .count(),
        3
    );

    // Foreground: kubectl returns once the deployment, its replica sets and pods are gone.
    c.ok(&[
        "create",
        "deployment",
        "fg",
        "--image=busybox:1",
        "--replicas=2",
    ]);
    rollout_status(c, "fg");
    c.ok(&[
        "delete",
        "deployment",
        "fg",
        "--cascade=foreground",
        "--timeout=60s",
    ]);
    assert!(!c.kubectl(&["get", "deployment", "fg"]).0);
    assert!(
        replica_sets(c, "fg").is_empty(),
        "foreground left replica sets"
    );

    // Background: everything goes after the deployment.
    c.ok(&[
        "create",
        "deployment",
        "bg",
        "--image=busybox:1",
        "--replicas=2",
    ]);
    rollout_status(c, "bg");
    c.ok(&["delete", "deployment", "bg", "--cascade=background"]);
    eventually("background collected", || {
        replica_sets(c, "bg").is_empty()
            && c.ok(&["get", "pods", "-l", "app=bg", "-o", "name"])
                .trim()
                .is_empty()
    });
}
