//! End to end: resource metrics and the HorizontalPodAutoscaler. A real nats-server,
//! store, gateway (kubectl over HTTPS), the controllers as `drover up` runs them (the
//! HPA at its default 15 s sync period) and two hollow node agents publishing usage
//! every 500 ms. Load is synthetic: `HollowRuntime::set_usage` sets what every
//! container reports, so the test raises and drops it.
//!
//! The scale target is a ReplicaSet. Until the ReplicaSet controller and the scheduler
//! are on this branch, a small test loop stands in for both (`replicate`): it keeps as
//! many pods bound to the hollow nodes as the ReplicaSet's `spec.replicas` asks.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use drover_node::runtime::ContainerStats;
use drover_node::{FleetConfig, run_hollow_fleet};
use drover_store::{DeleteOptions, Store};
use serde_json::{Value, json};

const NS: &str = "default";

fn kind(group: &str, kind: &str) -> &'static bus_schema::KindInfo {
    bus_schema::kinds::by_group_kind(group, kind).unwrap()
}

/// Stand-in for the ReplicaSet controller and the scheduler: pods of `rs` follow its
/// `spec.replicas`, bound round-robin to `nodes`.
async fn replicate(store: Store, rs: &'static str, nodes: Vec<String>) {
    let (rs_kind, pods) = (kind("apps", "ReplicaSet"), kind("", "Pod"));
    let mut next = 0usize;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok(set) = store.get(rs_kind, Some(NS), rs).await else {
            continue;
        };
        let want = set["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
        let Ok(list) = store.list(pods, Some(NS), &Default::default()).await else {
            continue;
        };
        let mut mine: Vec<Value> = list
            .items
            .into_iter()
            .filter(|p| p["metadata"]["labels"]["app"] == rs)
            .filter(|p| p["metadata"].get("deletionTimestamp").is_none())
            .collect();
        mine.sort_by_key(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string());
        while mine.len() < want {
            next += 1;
            let pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{rs}-{next}"), "namespace": NS, "labels": {"app": rs},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                        "uid": set["metadata"]["uid"], "controller": true}]},
                "spec": {"nodeName": nodes[next % nodes.len()], "containers": [{"name": "app", "image": "hollow:1",
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}});
            match store.create(pods, pod).await {
                Ok(p) => mine.push(p),
                Err(_) => break,
            }
        }
        while mine.len() > want {
            let pod = mine.pop().unwrap();
            let name = pod["metadata"]["name"].as_str().unwrap().to_string();
            let _ = store
                .delete(
                    pods,
                    Some(NS),
                    &name,
                    &DeleteOptions {
                        grace_period_seconds: Some(0),
                        ..Default::default()
                    },
                )
                .await;
        }
    }
}

/// Polls `probe` every 500 ms until it returns `Some`, failing after `timeout` with the
/// last observation.
async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> (Option<T>, String),
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let (found, seen) = probe();
        if let Some(v) = found {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last seen:\n{seen}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn replicas_of(cluster: &Cluster, rs: &str) -> (Option<i64>, String) {
    let out = cluster.ok(&["get", "rs", rs, "-o", "jsonpath={.spec.replicas}"]);
    (out.trim().parse().ok(), out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hpa_scales_a_replicaset_up_and_down_on_synthetic_cpu() {
    let cluster = Cluster::start().await;
    let fleet = run_hollow_fleet(
        cluster.store.clone(),
        2,
        FleetConfig {
            metrics_interval: Duration::from_millis(500),
            ..FleetConfig::default()
        },
    )
    .await
    .unwrap();
    let high = ContainerStats {
        cpu_millis: 200,
        memory_bytes: 64 * 1024 * 1024,
    };
    for rt in &fleet.runtimes {
        rt.set_usage(Some(high));
    }
    let nodes: Vec<String> = fleet
        .agents
        .iter()
        .map(|a| a.node_name().to_string())
        .collect();
    let rs = cluster.write(
        "rs.yaml",
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: web}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: app, image: 'hollow:1', resources: {requests: {cpu: 100m, memory: 64Mi}}}]}\n",
    );
    cluster.ok(&["apply", "-f", &rs]);
    let replicator = tokio::spawn(replicate(cluster.store.clone(), "web", nodes.clone()));

    // kubectl top sees the synthetic usage of both pods.
    let top = wait_for(
        "kubectl top pod to show two pods at 200m",
        Duration::from_secs(60),
        || {
            let (ok, out, err) = cluster.kubectl(&["top", "pod", "-n", NS]);
            let rows = out
                .lines()
                .filter(|l| l.starts_with("web-") && l.contains("200m") && l.contains("64Mi"))
                .count();
            (
                (ok && rows == 2).then_some(out.clone()),
                format!("{out}{err}"),
            )
        },
    )
    .await;
    assert!(top.contains("CPU(cores)"), "{top}");
    let top_nodes = cluster.ok(&["top", "node"]);
    assert!(
        nodes.iter().all(|n| top_nodes.contains(n.as_str())),
        "{top_nodes}"
    );

    // The HPA: 50 % of requests; the pods use 200 %, so it scales to max (4). Scale-down
    // stabilization shortened to 5 s through behavior, as a user would.
    let hpa = cluster.write(
        "hpa.yaml",
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: ReplicaSet, name: web}\n  minReplicas: 1\n  maxReplicas: 4\n  metrics:\n  - type: Resource\n    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}\n  behavior:\n    scaleDown: {stabilizationWindowSeconds: 5}\n",
    );
    cluster.ok(&["apply", "-f", &hpa]);
    wait_for("the HPA to scale web to 4", Duration::from_secs(90), || {
        let (n, seen) = replicas_of(&cluster, "web");
        (n.filter(|n| *n == 4), seen)
    })
    .await;
    let events = wait_for(
        "the SuccessfulRescale event",
        Duration::from_secs(30),
        || {
            let out = cluster.ok(&["get", "events", "-n", NS]);
            (
                out.contains("SuccessfulRescale").then_some(out.clone()),
                out,
            )
        },
    )
    .await;
    assert!(
        events.contains(
            "New size: 4; reason: cpu resource utilization (percentage of request) above target"
        ),
        "{events}"
    );
    let table = wait_for(
        "kubectl get hpa to show the current utilization",
        Duration::from_secs(60),
        || {
            let out = cluster.ok(&["get", "hpa", "web"]);
            (out.contains("cpu: 200%/50%").then_some(out.clone()), out)
        },
    )
    .await;
    assert!(table.contains("ReplicaSet/web"), "{table}");
    let status: Value =
        serde_json::from_str(&cluster.ok(&["get", "hpa", "web", "-o", "json"])).unwrap();
    let conditions = status["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let condition = |t: &str| {
        conditions
            .iter()
            .find(|c| c["type"] == t)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(condition("ScalingActive")["status"], "True", "{status:#}");
    assert_eq!(condition("AbleToScale")["status"], "True", "{status:#}");
    assert!(status["status"]["lastScaleTime"].is_string(), "{status:#}");

    // Load drops to 10 %: after the 5 s window the HPA goes down to minReplicas.
    let low = ContainerStats {
        cpu_millis: 10,
        memory_bytes: 64 * 1024 * 1024,
    };
    for rt in &fleet.runtimes {
        rt.set_usage(Some(low));
    }
    wait_for(
        "the HPA to scale web down to 1",
        Duration::from_secs(90),
        || {
            let (n, seen) = replicas_of(&cluster, "web");
            (n.filter(|n| *n == 1), seen)
        },
    )
    .await;
    let events = cluster.ok(&["get", "events", "-n", NS]);
    assert!(
        events.contains("New size: 1; reason: All metrics below target"),
        "{events}"
    );

    replicator.abort();
    fleet.stop().await;
}

#[tokio::test]
async fn metrics_api_is_discoverable_and_reports_missing_pods_as_not_found() {
    let cluster = Cluster::start().await;
    let groups = cluster.ok(&["api-versions"]);
    assert!(groups.contains("metrics.k8s.io/v1beta1"), "{groups}");
    let resources = cluster.ok(&["api-resources", "--api-group=metrics.k8s.io"]);
    assert!(
        resources.contains("PodMetrics") && resources.contains("NodeMetrics"),
        "{resources}"
    );
    let (ok, _, err) = cluster.kubectl(&["top", "pod", "nope", "-n", NS]);
    assert!(!ok);
    assert!(
        err.contains("podmetrics.metrics.k8s.io \"default/nope\" not found"),
        "{err}"
    );
}
