//! End to end: resource metrics and the HorizontalPodAutoscaler. A real nats-server,
//! store, gateway (kubectl over HTTPS), the controllers as `drover up` runs them (the
//! HPA at its default 15 s sync period) and two hollow node agents publishing usage
//! every 500 ms. Load is synthetic: `HollowRuntime::set_usage` sets what every
//! container reports, so the test raises and drops it.
//!
//! The scale target is a Deployment: the real Deployment and ReplicaSet controllers
//! create its pods and the real scheduler places them on the hollow nodes.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use drover_node::runtime::ContainerStats;
use drover_node::{FleetConfig, run_hollow_fleet};
use serde_json::Value;

const NS: &str = "default";

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

fn replicas_of(cluster: &Cluster, deploy: &str) -> (Option<i64>, String) {
    let out = cluster.ok(&["get", "deploy", deploy, "-o", "jsonpath={.spec.replicas}"]);
    (out.trim().parse().ok(), out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hpa_scales_a_deployment_up_and_down_on_synthetic_cpu() {
    let cluster = Cluster::start().await;
    let scheduler = tokio::spawn(drover_scheduler::run(cluster.store.clone()));
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
    let deploy = cluster.write(
        "deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: app, image: 'hollow:1', resources: {requests: {cpu: 100m, memory: 64Mi}}}]}\n",
    );
    cluster.ok(&["apply", "-f", &deploy]);

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
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  minReplicas: 1\n  maxReplicas: 4\n  metrics:\n  - type: Resource\n    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}\n  behavior:\n    scaleDown: {stabilizationWindowSeconds: 5}\n",
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
    assert!(table.contains("Deployment/web"), "{table}");
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

    scheduler.abort();
    fleet.stop().await;
}

// kubectl blocks this thread while the gateway answers it: more than one worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
