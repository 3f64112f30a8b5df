//! Admission end to end, through kubectl against the real gateway, store and controllers:
//! PriorityClass resolution, LimitRange defaults and limits, ResourceQuota charges and
//! recounts, and the eviction subresource with PodDisruptionBudgets, including
//! `kubectl drain` of a hollow node.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, curl};
use drover_node::{FleetConfig, HollowConfig, run_hollow_fleet};
use serde_json::Value;

/// How long a condition that the controllers bring about may take.
const WAIT: Duration = Duration::from_secs(60);

/// Polls `probe` until it returns `Some`, or fails the test after [`WAIT`].
async fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn get_json(c: &Cluster, args: &[&str]) -> Option<Value> {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    let (ok, out, _) = c.kubectl(&full);
    ok.then(|| serde_json::from_str(&out).ok()).flatten()
}

fn pod_yaml(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: web\nspec:\n{extra_spec}  containers:\n  - name: app\n    image: busybox\n"
    )
}

/// A pod whose only container sets `resources` (YAML lines at container indent).
fn pod_with_resources(name: &str, resources: &str) -> String {
    format!("{}    resources:\n{resources}", pod_yaml(name, ""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_classes_resolve_and_unknown_ones_are_refused() {
    let c = Cluster::start().await;
    let bad = c.write("bad.yaml", &pod_yaml("nope", "  priorityClassName: foo\n"));
    let (ok, _, err) = c.kubectl(&["apply", "-f", &bad]);
    assert!(!ok);
    assert!(
        err.contains("pods \"nope\" is forbidden: no PriorityClass with name foo was found"),
        "{err}"
    );
    let (ok, _, err) = c.kubectl(&["get", "pod", "nope"]);
    assert!(
        !ok && err.contains("NotFound"),
        "nothing was created: {err}"
    );

    let classes = c.write(
        "classes.yaml",
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: high\nvalue: 1000\n---\n\
         apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: normal\nvalue: 100\nglobalDefault: true\npreemptionPolicy: Never\n",
    );
    c.ok(&["apply", "-f", &classes]);
    let second_default = c.write(
        "second.yaml",
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: other\nvalue: 5\nglobalDefault: true\n",
    );
    let (ok, _, err) = c.kubectl(&["apply", "-f", &second_default]);
    assert!(!ok && err.contains("is already marked as default"), "{err}");

    let pods = [
        pod_yaml("hi", "  priorityClassName: high\n"),
        pod_yaml("plain", ""),
        pod_yaml("crit", "  priorityClassName: system-node-critical\n"),
    ]
    .join("---\n");
    let pods = c.write("pods.yaml", &pods);
    c.ok(&["apply", "-f", &pods]);
    let spec = |name: &str| get_json(&c, &["pod", name]).unwrap()["spec"].clone();
    assert_eq!(spec("hi")["priority"], 1000);
    assert_eq!(spec("hi")["preemptionPolicy"], "PreemptLowerPriority");
    // No class: the global default's value and policy.
    assert_eq!(spec("plain")["priorityClassName"], "normal");
    assert_eq!(spec("plain")["priority"], 100);
    assert_eq!(spec("plain")["preemptionPolicy"], "Never");
    assert_eq!(spec("crit")["priority"], 2_000_001_000);

    let wrong = c.write(
        "wrong.yaml",
        &pod_yaml("wrong", "  priorityClassName: high\n  priority: 7\n"),
    );
    let (ok, _, err) = c.kubectl(&["apply", "-f", &wrong]);
    assert!(!ok);
    assert!(
        err.contains("the integer value of priority (7) must not be provided in pod spec"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_range_defaults_and_limits() {
    let c = Cluster::start().await;
    let lr = c.write(
        "lr.yaml",
        "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: limits\nspec:\n  limits:\n  - type: Container\n    \
         default:\n      cpu: 500m\n      memory: 256Mi\n    defaultRequest:\n      cpu: 100m\n    max:\n      cpu: \"1\"\n",
    );
    c.ok(&["apply", "-f", &lr]);
    let plain = c.write("plain.yaml", &pod_yaml("plain", ""));
    c.ok(&["apply", "-f", &plain]);
    let pod = get_json(&c, &["pod", "plain"]).unwrap();
    let resources = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(resources["limits"]["cpu"], "500m");
    assert_eq!(resources["limits"]["memory"], "256Mi");
    assert_eq!(resources["requests"]["cpu"], "100m");
    assert_eq!(resources["requests"]["memory"], "256Mi");
    assert_eq!(pod["status"]["qosClass"], "Burstable");

    let big = c.write(
        "big.yaml",
        &pod_with_resources("big", "      limits:\n        cpu: \"2\"\n"),
    );
    let (ok, _, err) = c.kubectl(&["apply", "-f", &big]);
    assert!(!ok);
    assert!(
        err.contains(
            "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2 (container \"app\")"
        ),
        "{err}"
    );
    let (ok, _, _) = c.kubectl(&["get", "pod", "big"]);
    assert!(!ok, "the refused pod was not created");

    let pvc_lr = c.write(
        "pvc-lr.yaml",
        "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: storage\nspec:\n  limits:\n  - type: PersistentVolumeClaim\n    max:\n      storage: 2Gi\n",
    );
    c.ok(&["apply", "-f", &pvc_lr]);
    let pvc = c.write(
        "pvc.yaml",
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 5Gi\n",
    );
    let (ok, _, err) = c.kubectl(&["apply", "-f", &pvc]);
    assert!(!ok);
    assert!(
        err.contains("maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"),
        "{err}"
    );
}

/// `status.used[resource]` of a quota, once it is there.
fn used(c: &Cluster, quota: &str, resource: &str) -> Option<String> {
    let q = get_json(c, &["resourcequota", quota])?;
    q["status"]["used"][resource].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_is_charged_refuses_and_recounts_after_deletes() {
    let c = Cluster::start().await;
    let quota = c.write(
        "quota.yaml",
        "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: q1\nspec:\n  hard:\n    pods: \"2\"\n    configmaps: \"10\"\n",
    );
    c.ok(&["apply", "-f", &quota]);
    for name in ["p1", "p2"] {
        let f = c.write(&format!("{name}.yaml"), &pod_yaml(name, ""));
        c.ok(&["apply", "-f", &f]);
    }
    // Charged before the write: status.used is exact right after the creates.
    assert_eq!(used(&c, "q1", "pods").as_deref(), Some("2"));
    // A server-side dry run checks but does not charge.
    let cm = c.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n",
    );
    c.ok(&["apply", "--dry-run=server", "-f", &cm]);
    let p3 = c.write("p3.yaml", &pod_yaml("p3", ""));
    let (ok, _, err) = c.kubectl(&["apply", "-f", &p3]);
    assert!(!ok);
    assert!(
        err.contains(
            "pods \"p3\" is forbidden: exceeded quota: q1, requested: pods=1, used: pods=2, limited: pods=2"
        ),
        "{err}"
    );
    let (ok, _, _) = c.kubectl(&["get", "pod", "p3"]);
    assert!(!ok, "the refused pod was not created");
    let described = c.ok(&["describe", "quota", "q1"]);
    let pods_line = described
        .lines()
        .find(|l| l.trim_start().starts_with("pods"))
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>();
    assert_eq!(pods_line, ["pods", "2", "2"], "{described}");
    assert_eq!(used(&c, "q1", "configmaps").as_deref(), Some("0"));

    // The controller recounts after a delete, and the freed slot admits a pod again.
    c.ok(&["delete", "pod", "p1"]);
    wait_for("quota recount after delete", || {
        (used(&c, "q1", "pods").as_deref() == Some("1")).then_some(())
    })
    .await;
    c.ok(&["apply", "-f", &p3]);
    assert_eq!(used(&c, "q1", "pods").as_deref(), Some("2"));

    // A quota on requests.cpu makes every container name one.
    let cpu_quota = c.write(
        "cpu.yaml",
        "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: cpu\nspec:\n  hard:\n    requests.cpu: \"1\"\n",
    );
    c.ok(&["apply", "-f", &cpu_quota]);
    c.ok(&["delete", "resourcequota", "q1"]);
    let bare = c.write("bare.yaml", &pod_yaml("bare", ""));
    let (ok, _, err) = c.kubectl(&["apply", "-f", &bare]);
    assert!(!ok);
    assert!(
        err.contains("failed quota: cpu: must specify requests.cpu for: app"),
        "{err}"
    );
    let greedy = c.write(
        "greedy.yaml",
        &pod_with_resources("greedy", "      requests:\n        cpu: 1500m\n"),
    );
    let (ok, _, err) = c.kubectl(&["apply", "-f", &greedy]);
    assert!(!ok);
    assert!(
        err.contains("exceeded quota: cpu, requested: requests.cpu=1500m, used: requests.cpu=0, limited: requests.cpu=1"),
        "{err}"
    );
}

fn pdb_status(c: &Cluster, name: &str) -> Option<Value> {
    let pdb = get_json(c, &["pdb", name])?;
    let generation = pdb["metadata"]["generation"].as_i64()?;
    (pdb["status"]["observedGeneration"].as_i64() == Some(generation))
        .then(|| pdb["status"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_honours_budgets_and_drain_evicts() {
    let c = Cluster::start().await;
    let fleet = run_hollow_fleet(
        c.store.clone(),
        1,
        FleetConfig {
            hollow: HollowConfig {
                start_latency: Duration::ZERO,
                failure_rate: 0.0,
                ..HollowConfig::default()
            },
            ..FleetConfig::default()
        },
    )
    .await
    .unwrap();
    let node = fleet.agents[0].node_name().to_string();
    let pods: Vec<String> = (0..3)
        .map(|i| pod_yaml(&format!("web-{i}"), &format!("  nodeName: {node}\n")))
        .collect();
    let pods = c.write("pods.yaml", &pods.join("---\n"));
    c.ok(&["apply", "-f", &pods]);
    let pdb = |min: u32| {
        format!(
            "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: web\nspec:\n  minAvailable: {min}\n  selector:\n    matchLabels:\n      app: web\n"
        )
    };
    let pdb3 = c.write("pdb3.yaml", &pdb(3));
    c.ok(&["apply", "-f", &pdb3]);
    wait_for("three healthy pods counted", || {
        pdb_status(&c, "web").filter(|s| s["currentHealthy"] == 3)
    })
    .await;

    let url = |pod: &str| {
        format!(
            "https://127.0.0.1:{}/api/v1/namespaces/default/pods/{pod}/eviction",
            c.port()
        )
    };
    let eviction = |pod: &str| {
        format!(
            r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"default"}}}}"#
        )
    };
    let ca = c.dir.path().join("pki/ca.crt");
    let token = c.pki.admin_token.clone();
    let (code, status) = curl(
        &ca,
        Some(&token),
        "POST",
        &url("web-0"),
        Some(&eviction("web-0")),
    );
    assert_eq!(code, 429, "{status}");
    assert_eq!(status["reason"], "TooManyRequests");
    assert_eq!(
        status["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(
        status["details"]["causes"][0],
        serde_json::json!({"reason": "DisruptionBudget",
            "message": "The disruption budget web needs 3 healthy pods and has 3 currently"})
    );
    assert!(get_json(&c, &["pod", "web-0"]).is_some(), "web-0 stays");

    // A looser budget allows one eviction: charged, and the pod goes.
    let pdb2 = c.write("pdb2.yaml", &pdb(2));
    c.ok(&["apply", "-f", &pdb2]);
    wait_for("one disruption allowed", || {
        pdb_status(&c, "web").filter(|s| s["disruptionsAllowed"] == 1)
    })
    .await;
    // The older v1beta1 body is accepted too.
    let body = eviction("web-0").replace("policy/v1", "policy/v1beta1");
    let (code, status) = curl(&ca, Some(&token), "POST", &url("web-0"), Some(&body));
    assert_eq!(code, 201, "{status}");
    let after = get_json(&c, &["pdb", "web"]).unwrap();
    assert!(
        after["status"]["disruptedPods"].get("web-0").is_some()
            || after["status"]["currentHealthy"] == 2,
        "the eviction was recorded: {after}"
    );
    wait_for("web-0 deleted by its node", || {
        get_json(&c, &["pod", "web-0"]).is_none().then_some(())
    })
    .await;
    let (code, status) = curl(
        &ca,
        Some(&token),
        "POST",
        &url("web-1"),
        Some(&eviction("web-1")),
    );
    assert_eq!(code, 429, "budget spent: {status}");

    // Drain respects the budget (times out) ...
    let (ok, out, err) = c.kubectl(&[
        "drain",
        &node,
        "--force",
        "--ignore-daemonsets",
        "--timeout=8s",
    ]);
    assert!(!ok, "drain must not break the budget:\n{out}\n{err}");
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{err}"
    );
    // ... and evicts everything once the budget allows it.
    let pdb0 = c.write("pdb0.yaml", &pdb(0));
    c.ok(&["apply", "-f", &pdb0]);
    wait_for("budget relaxed", || {
        pdb_status(&c, "web").filter(|s| s["disruptionsAllowed"] == 2)
    })
    .await;
    let (ok, out, err) = c.kubectl(&[
        "drain",
        &node,
        "--force",
        "--ignore-daemonsets",
        "--timeout=60s",
    ]);
    assert!(ok, "drain failed:\n{out}\n{err}");
    assert!(out.contains("evicted"), "drain used evictions:\n{out}");
    let listed = get_json(&c, &["pods"]).unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 0, "{listed}");
    let node_obj = get_json(&c, &["node", &node]).unwrap();
    assert_eq!(node_obj["spec"]["unschedulable"], true);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_never_exceed_the_quota() {
    let c = Cluster::start().await;
    let quota = c.write(
        "quota.yaml",
        "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: q1\nspec:\n  hard:\n    pods: \"5\"\n",
    );
    c.ok(&["apply", "-f", &quota]);
    let ca = c.dir.path().join("pki/ca.crt");
    let token = c.pki.admin_token.clone();
    let url = format!(
        "https://127.0.0.1:{}/api/v1/namespaces/default/pods",
        c.port()
    );
    // Twelve creates at once: the quota's CAS serialises them, so exactly five win.
    let creates: Vec<_> = (0..12)
        .map(|i| {
            let (ca, token, url) = (ca.clone(), token.clone(), url.clone());
            std::thread::spawn(move || {
                let body = format!(
                    r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p{i}"}},"spec":{{"containers":[{{"name":"app","image":"busybox"}}]}}}}"#
                );
                curl(&ca, Some(&token), "POST", &url, Some(&body))
            })
        })
        .collect();
    let results: Vec<(u16, Value)> = creates.into_iter().map(|t| t.join().unwrap()).collect();
    let created = results.iter().filter(|(code, _)| *code == 201).count();
    let refused: Vec<&Value> = results
        .iter()
        .filter(|(code, _)| *code == 403)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(created, 5, "{results:?}");
    assert_eq!(refused.len(), 7, "{results:?}");
    for s in refused {
        let msg = s["message"].as_str().unwrap_or_default();
        assert!(msg.contains("exceeded quota: q1"), "{msg}");
    }
    assert_eq!(used(&c, "q1", "pods").as_deref(), Some("5"));
    let listed = get_json(&c, &["pods"]).unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 5);
}
