//! Object lifecycle through kubectl against a real store with the controllers running:
//! delete propagation (background, foreground, orphan) via ownerReferences, namespace
//! termination, the scale subresource, YAML in and out, and the body limit.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Cluster;

/// Polls `cond` until it holds; panics with `what` after a generous guard (not a timing
/// assertion: the loop ends as soon as the condition holds).
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn replicaset(name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n"
    )
}

/// Creates a ReplicaSet `name` and waits for the two pods its controller creates;
/// returns the ReplicaSet's uid.
fn family(c: &Cluster, name: &str) -> String {
    c.ok(&[
        "create",
        "-f",
        &c.write(&format!("{name}.yaml"), &replicaset(name)),
    ]);
    let uid = c.ok(&["get", "rs", name, "-o", "jsonpath={.metadata.uid}"]);
    eventually("the replica set's pods", || {
        pods_of(c, name).lines().count() == 2
    });
    uid
}

fn pods_of(c: &Cluster, owner: &str) -> String {
    c.ok(&["get", "pods", "-l", &format!("app={owner}"), "-o", "name"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_propagation_background_foreground_orphan() {
    let c = Cluster::start().await;

    // Background (kubectl's default): the owner goes at once, the collector takes the pods.
    family(&c, "bg");
    let out = c.ok(&["delete", "rs", "bg"]);
    assert!(out.contains("replicaset.apps \"bg\" deleted"), "{out}");
    eventually("background dependents collected", || {
        pods_of(&c, "bg").trim().is_empty()
    });

    // Foreground: kubectl waits until the owner is gone, which is after its pods.
    family(&c, "fg");
    let out = c.ok(&["delete", "rs", "fg", "--cascade=foreground"]);
    assert!(out.contains("deleted"), "{out}");
    assert!(
        pods_of(&c, "fg").trim().is_empty(),
        "foreground left pods behind"
    );
    let (gone, _, err) = c.kubectl(&["get", "rs", "fg"]);
    assert!(!gone && err.contains("NotFound"), "{err}");

    // Orphan: the pods stay and lose their owner reference.
    family(&c, "or");
    c.ok(&["delete", "rs", "or", "--cascade=orphan"]);
    eventually("orphaned owner removed", || {
        !c.kubectl(&["get", "rs", "or"]).0
    });
    let pods = pods_of(&c, "or");
    assert_eq!(pods.lines().count(), 2, "{pods}");
    eventually("owner references dropped", || {
        c.ok(&[
            "get",
            "pods",
            "-l",
            "app=or",
            "-o",
            "jsonpath={.items[*].metadata.ownerReferences}",
        ])
        .trim()
        .is_empty()
    });

    // A bad policy is a 422 naming the field, and deletes nothing.
    let first = pods
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("pod/")
        .to_string();
    let (code, status) = common::curl(
        &c.dir.path().join("pki/ca.crt"),
        Some(&c.pki.admin_token),
        "DELETE",
        &format!(
            "https://127.0.0.1:{}/api/v1/namespaces/default/pods/{first}?propagationPolicy=Sideways",
            c.port()
        ),
        None,
    );
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["details"]["causes"][0]["field"], "propagationPolicy",
        "{status}"
    );
    assert!(c.kubectl(&["get", "pod", &first]).0);

    // delete -l takes every match.
    let out = c.ok(&["delete", "pods", "-l", "app=or"]);
    assert_eq!(out.matches("deleted").count(), 2, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_termination_removes_content() {
    let c = Cluster::start().await;
    let ns = c.write(
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: scratch\n",
    );
    c.ok(&["create", "-f", &ns]);
    let content = c.write("content.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: scratch\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: scratch\nstringData:\n  a: b\n");
    c.ok(&["create", "-f", &content]);
    let phase = c.ok(&["get", "ns", "scratch", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Active");
    // kubectl waits for the namespace to disappear, which needs its content gone first.
    let out = c.ok(&["delete", "namespace", "scratch"]);
    assert!(out.contains("namespace \"scratch\" deleted"), "{out}");
    let (found, _, err) = c.kubectl(&["get", "ns", "scratch"]);
    assert!(!found && err.contains("NotFound"), "{err}");
    let left = c.ok(&["get", "configmaps,secrets", "-n", "scratch", "-o", "name"]);
    assert!(left.trim().is_empty(), "{left}");
    // The name is free again.
    c.ok(&["create", "-f", &ns]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_subresource_yaml_and_body_limit() {
    let c = Cluster::start().await;
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: c\n        image: nginx\n";
    c.ok(&["create", "-f", &c.write("web.yaml", deploy)]);
    let out = c.ok(&["scale", "deployment", "web", "--replicas=4"]);
    assert!(out.contains("deployment.apps/web scaled"), "{out}");
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "4"
    );
    // A stale precondition is refused.
    let (ok, _, err) = c.kubectl(&[
        "scale",
        "deployment",
        "web",
        "--replicas=2",
        "--resource-version=1",
    ]);
    // (kubectl checks this itself before writing; either way nothing changes.)
    assert!(!ok && err.contains("resource version"), "{err}");
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "4"
    );
    let scale = c.ok(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
    ]);
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 4);
    assert_eq!(scale["status"]["selector"], "app=web");

    // YAML out and in.
    let ca = c.dir.path().join("pki/ca.crt");
    let base = format!("https://127.0.0.1:{}", c.port());
    let yaml = Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            ca.to_str().unwrap(),
            "-H",
            &format!("Authorization: Bearer {}", c.pki.admin_token),
            "-H",
            "Accept: application/yaml",
        ])
        .arg(format!(
            "{base}/apis/apps/v1/namespaces/default/deployments/web"
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&yaml.stdout);
    assert!(
        text.contains("kind: Deployment") && text.contains("replicas: 4"),
        "{text}"
    );
    let created = Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            ca.to_str().unwrap(),
            "-H",
            &format!("Authorization: Bearer {}", c.pki.admin_token),
            "-H",
            "Content-Type: application/yaml",
            "-X",
            "POST",
            "--data-binary",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v\n",
        ])
        .arg(format!("{base}/api/v1/namespaces/default/configmaps"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&created.stdout).contains("from-yaml"));
    assert_eq!(
        c.ok(&["get", "cm", "from-yaml", "-o", "jsonpath={.data.k}"]),
        "v"
    );
    let (code, status) = common::curl(
        &ca,
        Some(&c.pki.admin_token),
        "POST",
        &format!("{base}/api/v1/namespaces/default/configmaps"),
        Some("{\"metadata\": [1,"),
    );
    assert_eq!(code, 400, "{status}");
    assert_eq!(status["kind"], "Status");

    // A body over the limit is a 413 Status and nothing is written.
    let big = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"k\":\"{}\"}}}}",
        "x".repeat(4 * 1024 * 1024)
    );
    let path = c.write("big.json", &big);
    let out = Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            ca.to_str().unwrap(),
            "-H",
            &format!("Authorization: Bearer {}", c.pki.admin_token),
            "-H",
            "Content-Type: application/json",
            "-X",
            "POST",
            "--data-binary",
            &format!("@{path}"),
            "-w",
            "\n%{http_code}",
        ])
        .arg(format!("{base}/api/v1/namespaces/default/configmaps"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.trim_end().ends_with("413"), "{text}");
    assert!(text.contains("RequestEntityTooLarge"), "{text}");
    assert!(!c.kubectl(&["get", "cm", "big"]).0);
}

/// kubectl's typed generators send protobuf bodies; each must land as the same object a
/// JSON manifest would make.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_generators_send_protobuf() {
    let c = Cluster::start().await;
    c.ok(&["create", "namespace", "gen"]);
    assert_eq!(
        c.ok(&["get", "ns", "gen", "-o", "jsonpath={.status.phase}"]),
        "Active"
    );
    let n = ["-n", "gen"];
    let run = |args: &[&str]| c.ok(&[&n[..], args].concat());
    run(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=greeting=hello",
        "--from-literal=empty=",
    ]);
    assert_eq!(
        run(&["get", "cm", "cfg", "-o", "jsonpath={.data.greeting}"]),
        "hello"
    );
    assert_eq!(
        run(&["get", "cm", "cfg", "-o", "jsonpath={.data}"]),
        "{\"empty\":\"\",\"greeting\":\"hello\"}"
    );
    run(&[
        "create",
        "secret",
        "generic",
        "pw",
        "--from-literal=password=hunter2",
    ]);
    assert_eq!(
        run(&["get", "secret", "pw", "-o", "jsonpath={.data.password}"]),
        "aHVudGVyMg=="
    );
    run(&["create", "serviceaccount", "robot"]);
    run(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=3",
        "--port=80",
    ]);
    assert_eq!(
        run(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );
    assert_eq!(
        run(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].ports[0].containerPort}"
        ]),
        "80"
    );
    assert_eq!(
        run(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.selector.matchLabels.app}"
        ]),
        "web"
    );
    run(&[
        "expose",
        "deployment",
        "web",
        "--port=8080",
        "--target-port=80",
    ]);
    assert_eq!(
        run(&[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.ports[0].targetPort}"
        ]),
        "80"
    );
    run(&["create", "service", "clusterip", "plain", "--tcp=443"]);
    assert_eq!(
        run(&[
            "get",
            "svc",
            "plain",
            "-o",
            "jsonpath={.spec.ports[0].targetPort}"
        ]),
        "443"
    );
    run(&[
        "create",
        "job",
        "once",
        "--image=busybox:1",
        "--",
        "echo",
        "hi",
    ]);
    assert_eq!(
        run(&[
            "get",
            "job",
            "once",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].command}"
        ]),
        "[\"echo\",\"hi\"]"
    );
    run(&[
        "create",
        "cronjob",
        "tick",
        "--image=busybox:1",
        "--schedule=*/5 * * * *",
    ]);
    assert_eq!(
        run(&["get", "cronjob", "tick", "-o", "jsonpath={.spec.schedule}"]),
        "*/5 * * * *"
    );
    run(&[
        "run",
        "solo",
        "--image=busybox:1",
        "--labels=tier=one",
        "--env=MODE=test",
        "--port=9000",
        "--",
        "sleep",
        "3600",
    ]);
    assert_eq!(
        run(&[
            "get",
            "pod",
            "solo",
            "-o",
            "jsonpath={.spec.containers[0].env[0].value}"
        ]),
        "test"
    );
    assert_eq!(
        run(&["get", "pod", "-l", "tier=one", "-o", "name"]).trim(),
        "pod/solo"
    );
    // Namespace deletion takes all of it.
    c.ok(&["delete", "namespace", "gen"]);
    assert!(!c.kubectl(&["get", "ns", "gen"]).0);
}
