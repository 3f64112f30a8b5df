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
use drover_node::{FleetConfig, HollowFleet, run_hollow_fleet};
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

/// The test cluster with the real scheduler and two hollow nodes reporting usage every
/// 500 ms.
async fn cluster_with_fleet() -> (Cluster, tokio::task::JoinHandle<()>, HollowFleet) {
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
    (cluster, scheduler, fleet)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hpa_scales_a_deployment_up_and_down_on_synthetic_cpu() {
    let (cluster, scheduler, fleet) = cluster_with_fleet().await;
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

/// `kubectl autoscale` posts an autoscaling/v1 object: it is stored as v2, the real
/// controllers scale on it, and each version reads (get, list, watch) and writes (merge
/// patch) its own shape of the same object.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_autoscale_creates_a_v1_hpa_that_scales_and_reads_in_both_versions() {
    let (cluster, scheduler, fleet) = cluster_with_fleet().await;
    for rt in &fleet.runtimes {
        rt.set_usage(Some(ContainerStats {
            cpu_millis: 200,
            memory_bytes: 64 * 1024 * 1024,
        }));
    }
    let deploy = cluster.write(
        "deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: app, image: 'hollow:1', resources: {requests: {cpu: 100m, memory: 64Mi}}}]}\n",
    );
    cluster.ok(&["apply", "-f", &deploy]);

    let versions = cluster.ok(&["api-versions"]);
    assert!(
        versions.contains("autoscaling/v1") && versions.contains("autoscaling/v2"),
        "{versions}"
    );
    // kubectl sends it as protobuf.
    let out = cluster.ok(&[
        "autoscale",
        "deployment",
        "web",
        "--cpu-percent=50",
        "--min=1",
        "--max=4",
    ]);
    assert!(
        out.contains("horizontalpodautoscaler.autoscaling/web autoscaled"),
        "{out}"
    );

    // The pods use 200 % of their requests: the HPA scales to max.
    wait_for("the HPA to scale web to 4", Duration::from_secs(90), || {
        let (n, seen) = replicas_of(&cluster, "web");
        (n.filter(|n| *n == 4), seen)
    })
    .await;

    // v1: the cpu target as a field, the controller's status (current metrics and
    // conditions) in the round-trip annotations. (kubectl drops the version of a short
    // name, `hpa.v1.autoscaling`, as it does against Kubernetes: the long form it is.)
    let v1 = wait_for(
        "the v1 view to carry the current utilization",
        Duration::from_secs(60),
        || {
            let out = cluster.ok(&[
                "get",
                "horizontalpodautoscalers.v1.autoscaling",
                "web",
                "-o",
                "json",
            ]);
            let v: Value = serde_json::from_str(&out).unwrap();
            let done = v["status"]["currentCPUUtilizationPercentage"] == 200;
            (done.then_some(v), out)
        },
    )
    .await;
    assert_eq!(v1["apiVersion"], "autoscaling/v1", "{v1:#}");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50, "{v1:#}");
    assert_eq!(v1["spec"]["maxReplicas"], 4, "{v1:#}");
    assert!(v1["spec"].get("metrics").is_none(), "{v1:#}");
    let annotations = &v1["metadata"]["annotations"];
    assert!(
        annotations["autoscaling.alpha.kubernetes.io/conditions"]
            .as_str()
            .is_some_and(|c| c.contains("ScalingActive")),
        "{v1:#}"
    );

    // v2: the metrics list, no round-trip annotations.
    let v2: Value = serde_json::from_str(&cluster.ok(&[
        "get",
        "horizontalpodautoscalers.v2.autoscaling",
        "web",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(v2["apiVersion"], "autoscaling/v2", "{v2:#}");
    assert_eq!(
        v2["spec"]["metrics"],
        serde_json::json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]),
        "{v2:#}"
    );
    assert!(
        v2["metadata"]["annotations"]
            .as_object()
            .is_none_or(|a| a.keys().all(|k| !k.starts_with("autoscaling.alpha"))),
        "{v2:#}"
    );

    // Tables through either version.
    for resource in ["hpa", "horizontalpodautoscalers.v1.autoscaling"] {
        let table = cluster.ok(&["get", resource, "web"]);
        assert!(
            table.contains("Deployment/web") && table.contains("cpu: 200%/50%"),
            "{resource}: {table}"
        );
    }

    // A v1 merge patch keeps what only v2 can say (the metric) and changes maxReplicas.
    cluster.ok(&[
        "patch",
        "horizontalpodautoscalers.v1.autoscaling",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"maxReplicas":5,"targetCPUUtilizationPercentage":60}}"#,
    ]);
    let v2: Value = serde_json::from_str(&cluster.ok(&[
        "get",
        "horizontalpodautoscalers.v2.autoscaling",
        "web",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(v2["spec"]["maxReplicas"], 5, "{v2:#}");
    assert_eq!(
        v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 60,
        "{v2:#}"
    );
    assert_eq!(v2["spec"]["metrics"].as_array().map(Vec::len), Some(1));

    // A v1 client that reads the object and writes it back (PUT) loses nothing: the
    // round-trip annotations become v2 fields again and are not stored.
    let mut v1: Value = serde_json::from_str(&cluster.ok(&[
        "get",
        "horizontalpodautoscalers.v1.autoscaling",
        "web",
        "-o",
        "json",
    ]))
    .unwrap();
    v1["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    v1["metadata"]["labels"] = serde_json::json!({"replaced": "yes"});
    let replaced = cluster.write("v1.json", &v1.to_string());
    cluster.ok(&["replace", "-f", &replaced]);
    let v2: Value = serde_json::from_str(&cluster.ok(&[
        "get",
        "horizontalpodautoscalers.v2.autoscaling",
        "web",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(v2["metadata"]["labels"]["replaced"], "yes", "{v2:#}");
    assert_eq!(
        v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 60,
        "{v2:#}"
    );
    assert!(
        v2["metadata"]["annotations"]
            .as_object()
            .is_none_or(|a| a.keys().all(|k| !k.starts_with("autoscaling.alpha"))),
        "{v2:#}"
    );
    assert!(v2["status"]["conditions"].is_array(), "{v2:#}");

    // A v1 watch streams v1 objects (timeoutSeconds ends it).
    let events = cluster.ok(&[
        "get",
        "--raw",
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers?watch=true&timeoutSeconds=1",
    ]);
    let first: Value = serde_json::from_str(events.lines().next().unwrap_or("")).unwrap();
    assert_eq!(first["type"], "ADDED", "{events}");
    assert_eq!(first["object"]["apiVersion"], "autoscaling/v1", "{events}");
    assert_eq!(
        first["object"]["spec"]["targetCPUUtilizationPercentage"], 60,
        "{events}"
    );

    // A v1 body of the wrong shape: 422 with v1's field paths, nothing created.
    let bad = cluster.write(
        "bad.json",
        r#"{"apiVersion":"autoscaling/v1","kind":"HorizontalPodAutoscaler","metadata":{"name":"bad","namespace":"default"},"spec":{"scaleTargetRef":{"kind":"Deployment","name":"web"},"maxReplicas":"four"}}"#,
    );
    let (ok, out, err) = cluster.kubectl(&[
        "create",
        "--raw",
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers",
        "-f",
        &bad,
    ]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("spec.maxReplicas") && err.contains("must be a 32-bit integer"),
        "{err}"
    );
    let (found, _, _) = cluster.kubectl(&["get", "hpa", "bad"]);
    assert!(!found);

    // Strict field validation checks v1 bodies against the v1 schema.
    let unknown = cluster.write(
        "unknown.yaml",
        "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: api}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  maxReplicas: 3\n  targetCPUUtilizationPercentage: 70\n  bogus: 1\n",
    );
    let (ok, _, err) = cluster.kubectl(&["create", "-f", &unknown, "--validate=strict"]);
    assert!(
        !ok && err.contains(r#"unknown field "spec.bogus""#),
        "{err}"
    );

    // Client-side apply of a v1 manifest: a create, then a strategic merge patch of the
    // v1 view.
    let manifest = |percent: u32| {
        format!(
            "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {{name: api}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}\n  maxReplicas: 3\n  targetCPUUtilizationPercentage: {percent}\n"
        )
    };
    let applied = cluster.write("api.yaml", &manifest(70));
    cluster.ok(&["apply", "-f", &applied]);
    let applied = cluster.write("api.yaml", &manifest(75));
    let out = cluster.ok(&["apply", "-f", &applied]);
    assert!(out.contains("configured"), "{out}");
    let v2: Value = serde_json::from_str(&cluster.ok(&[
        "get",
        "horizontalpodautoscalers.v2.autoscaling",
        "api",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(
        v2["spec"]["metrics"],
        serde_json::json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 75}}}]),
        "{v2:#}"
    );
    assert_eq!(v2["spec"]["minReplicas"], 1, "v1's default: {v2:#}");

    scheduler.abort();
    fleet.stop().await;
}
