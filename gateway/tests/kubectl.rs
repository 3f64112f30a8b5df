//! The gateway against real clients: kubectl (on PATH) and raw HTTPS, over TLS with the
//! generated CA, on a real store (nats-server from the harness).

mod common;

use common::{Cluster, curl};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_get_label_delete_round_trip() {
    let c = Cluster::start().await;
    let version = c.ok(&["version", "-o", "json"]);
    assert!(version.contains("\"serverVersion\""), "{version}");

    let ns = c.ok(&["get", "namespaces", "-o", "name"]);
    for want in ["namespace/default", "namespace/kube-system"] {
        assert!(ns.contains(want), "{ns}");
    }
    let resources = c.ok(&["api-resources", "--no-headers"]);
    assert!(
        resources
            .lines()
            .any(|l| l.starts_with("deployments") && l.contains("deploy") && l.contains("apps/v1")),
        "{resources}"
    );

    let file = c.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n  labels: {app: demo}\ndata:\n  greeting: hello\n",
    );
    c.ok(&["create", "-f", &file]);
    let (ok, _, err) = c.kubectl(&["create", "-f", &file]);
    assert!(
        !ok && err.contains("AlreadyExists") || err.contains("already exists"),
        "{err}"
    );

    let got: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "configmap", "demo", "-o", "json"])).unwrap();
    assert_eq!(got["data"]["greeting"], "hello");
    assert_eq!(got["metadata"]["namespace"], "default");

    c.ok(&["label", "configmap", "demo", "tier=web"]);
    let by_label = c.ok(&["get", "cm", "-l", "tier=web", "-o", "name"]);
    assert_eq!(by_label.trim(), "configmap/demo");
    assert_eq!(
        c.ok(&["get", "cm", "-l", "tier=db", "-o", "name"]).trim(),
        ""
    );
    let by_field = c.ok(&[
        "get",
        "cm",
        "--field-selector",
        "metadata.name=demo",
        "-o",
        "name",
    ]);
    assert_eq!(by_field.trim(), "configmap/demo");

    // The three patch types and annotate.
    c.ok(&[
        "patch",
        "cm",
        "demo",
        "--type=merge",
        "-p",
        r#"{"data":{"m":"1"}}"#,
    ]);
    c.ok(&[
        "patch",
        "cm",
        "demo",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/data/j","value":"2"}]"#,
    ]);
    c.ok(&[
        "patch",
        "cm",
        "demo",
        "-p",
        r#"{"data":{"s":"3","greeting":null}}"#,
    ]);
    c.ok(&["annotate", "cm", "demo", "note=hi"]);
    let got: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "configmap", "demo", "-o", "json"])).unwrap();
    assert_eq!(
        got["data"],
        serde_json::json!({"m": "1", "j": "2", "s": "3"})
    );
    assert_eq!(got["metadata"]["annotations"]["note"], "hi");
    let (ok, _, err) = c.kubectl(&[
        "patch",
        "cm",
        "demo",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/data/m","value":"nope"}]"#,
    ]);
    assert!(!ok, "a failing JSON patch test op must fail: {err}");

    // Client-side apply: create, then apply an edited manifest (the patch path).
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: busybox:1\n        env:\n        - {name: A, value: a}\n";
    let f1 = c.write("deploy.yaml", deploy);
    assert!(c.ok(&["apply", "-f", &f1]).contains("created"));
    let f2 = c.write(
        "deploy2.yaml",
        &deploy
            .replace("replicas: 2", "replicas: 3")
            .replace("busybox:1", "busybox:2"),
    );
    assert!(c.ok(&["apply", "-f", &f2]).contains("configured"));
    let d: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "deploy", "web", "-o", "json"])).unwrap();
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:2"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"],
        "A"
    );
    assert_eq!(d["metadata"]["generation"], 2);
    assert!(c.ok(&["apply", "-f", &f2]).contains("unchanged"));

    // Server-side Table printing: the columns kubectl users know.
    let deploys = c.ok(&["get", "deployments"]);
    let header: Vec<&str> = deploys.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{deploys}"
    );
    assert!(
        deploys.lines().nth(1).unwrap().starts_with("web "),
        "{deploys}"
    );
    c.ok(&["run", "p1", "--image=busybox:1"]);
    let pods = c.ok(&["get", "pods"]);
    let header: Vec<&str> = pods.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{pods}"
    );
    let row: Vec<&str> = pods.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["p1", "0/1", "Pending", "0"], "{pods}");
    let wide = c.ok(&["get", "pods", "-o", "wide"]);
    let header = wide.lines().next().unwrap();
    assert!(
        header.contains(" IP ") && header.contains(" NODE "),
        "{wide}"
    );
    // An unbound pod has nothing to stop: it is deleted at once.
    c.ok(&["delete", "pod", "p1"]);
    // (`-l run=p1`: the Deployment's pods, made by its controller, are still there.)
    assert_eq!(
        c.ok(&["get", "pods", "-l", "run=p1", "-o", "name"]).trim(),
        ""
    );

    c.ok(&["delete", "configmap", "demo"]);
    let (ok, _, err) = c.kubectl(&["get", "configmap", "demo"]);
    assert!(!ok && err.contains("NotFound"), "{err}");

    // Objects in a namespace that does not exist are refused.
    let (ok, _, err) = c.kubectl(&["create", "-n", "nope", "-f", &file]);
    assert!(!ok && err.contains("not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_is_401_and_errors_are_status_objects() {
    let c = Cluster::start().await;
    let ca = c.dir.path().join("pki/ca.crt");
    let base = format!("https://127.0.0.1:{}", c.port());
    let (code, body) = curl(&ca, None, "GET", &format!("{base}/api/v1/namespaces"), None);
    assert_eq!(code, 401);
    assert_eq!(body["kind"], "Status");
    let (code, _) = curl(
        &ca,
        Some("wrong-token"),
        "GET",
        &format!("{base}/version"),
        None,
    );
    assert_eq!(code, 401);

    let token = Some(c.pki.admin_token.as_str());
    let bad_pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"Bad_Name"},"spec":{"containers":[{"name":"c","ports":[{"containerPort":0}]}]}}"#;
    let (code, body) = curl(
        &ca,
        token,
        "POST",
        &format!("{base}/api/v1/namespaces/default/pods"),
        Some(bad_pod),
    );
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["reason"], "Invalid");
    let fields: Vec<&str> = body["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    for want in [
        "metadata.name",
        "spec.containers[0].image",
        "spec.containers[0].ports[0].containerPort",
    ] {
        assert!(fields.contains(&want), "{fields:?}");
    }
    let (code, body) = curl(
        &ca,
        token,
        "POST",
        &format!("{base}/api/v1/namespaces/default/pods"),
        Some("{not json"),
    );
    assert_eq!((code, body["reason"].as_str()), (400, Some("BadRequest")));
    let (code, body) = curl(
        &ca,
        token,
        "GET",
        &format!("{base}/api/v1/namespaces/default/widgets"),
        None,
    );
    assert_eq!((code, body["reason"].as_str()), (404, Some("NotFound")));
    let (code, body) = curl(
        &ca,
        token,
        "GET",
        &format!("{base}/api/v1/pods?labelSelector=a%20in%20(b"),
        None,
    );
    assert_eq!(
        (code, body["reason"].as_str()),
        (400, Some("BadRequest")),
        "{body}"
    );
    let (code, body) = curl(
        &ca,
        token,
        "GET",
        &format!("{base}/api/v1/pods?fieldSelector=spec.bogus%3Dx"),
        None,
    );
    assert_eq!(code, 400, "{body}");

    // A namespace with an odd-shaped spec does not crash the handler.
    let odd_ns =
        r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"odd","labels":7},"spec":5}"#;
    let (code, body) = curl(
        &ca,
        token,
        "POST",
        &format!("{base}/api/v1/namespaces"),
        Some(odd_ns),
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"]["phase"], "Active");

    // Optimistic concurrency: a stale resourceVersion is a 409 Conflict.
    let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"occ"},"data":{"v":"1"}}"#;
    let (code, created) = curl(
        &ca,
        token,
        "POST",
        &format!("{base}/api/v1/namespaces/default/configmaps"),
        Some(cm),
    );
    assert_eq!(code, 201, "{created}");
    let url = format!("{base}/api/v1/namespaces/default/configmaps/occ");
    let mut fresh = created.clone();
    fresh["data"]["v"] = serde_json::json!("2");
    let (code, body) = curl(&ca, token, "PUT", &url, Some(&fresh.to_string()));
    assert_eq!(code, 200, "{body}");
    // The same write again carries the now stale resourceVersion.
    fresh["data"]["v"] = serde_json::json!("3");
    let (code, stale) = curl(&ca, token, "PUT", &url, Some(&fresh.to_string()));
    assert_eq!(
        (code, stale["reason"].as_str()),
        (409, Some("Conflict")),
        "{stale}"
    );
    assert_eq!(body["data"]["v"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_watch_sees_changes() {
    let c = Cluster::start().await;
    let file = c.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\ndata:\n  a: b\n",
    );
    let mut watcher = std::process::Command::new("kubectl")
        .args([
            "get",
            "configmaps",
            "--watch",
            "-o",
            "name",
            "--request-timeout=60s",
        ])
        .env("KUBECONFIG", &c.kubeconfig)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Create until the watcher reports it (the watch may start after the first create).
    c.ok(&["create", "-f", &file]);
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("watch event");
    assert_eq!(line.trim(), "configmap/watched");
    let _ = watcher.kill();
    let _ = watcher.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_describe_shows_objects_and_their_events() {
    let c = Cluster::start().await;
    let pod = c.write(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\n  annotations: {team: blue}\nspec:\n  containers:\n  - name: nginx\n    image: nginx:1.27\n    ports: [{containerPort: 80}]\n",
    );
    c.ok(&["create", "-f", &pod]);
    let uid = c.ok(&["get", "pod", "web", "-o", "jsonpath={.metadata.uid}"]);
    let event = c.write(
        "event.yaml",
        &format!(
            "apiVersion: v1\nkind: Event\nmetadata:\n  name: web.1\ninvolvedObject:\n  apiVersion: v1\n  kind: Pod\n  name: web\n  namespace: default\n  uid: {uid}\nreason: Scheduled\nmessage: Successfully assigned default/web to node-a\ntype: Normal\nsource: {{component: default-scheduler}}\ncount: 1\nfirstTimestamp: \"2026-01-01T00:00:00Z\"\nlastTimestamp: \"2026-01-01T00:00:00Z\"\n"
        ),
    );
    c.ok(&["create", "-f", &event]);
    let out = c.ok(&["describe", "pod", "web"]);
    for want in [
        "Name:",
        "web",
        "Namespace:",
        "default",
        "app=web",
        "team: blue",
        "nginx:1.27",
        "80/TCP",
        "Events:",
        "Scheduled",
        "Successfully assigned default/web to node-a",
    ] {
        assert!(out.contains(want), "describe pod lacks {want:?}:\n{out}");
    }
    let deploy = c.write(
        "deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: api}\n  strategy:\n    type: RollingUpdate\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}\n  template:\n    metadata:\n      labels: {app: api}\n    spec:\n      containers:\n      - name: api\n        image: busybox:1\n",
    );
    c.ok(&["apply", "-f", &deploy]);
    let out = c.ok(&["describe", "deployment", "api"]);
    for want in [
        "Name:",
        "api",
        "Selector:",
        "app=api",
        "Replicas:",
        "2 desired",
        "busybox:1",
    ] {
        assert!(
            out.contains(want),
            "describe deployment lacks {want:?}:\n{out}"
        );
    }
    let out = c.ok(&["describe", "namespace", "default"]);
    assert!(out.contains("Status:") && out.contains("Active"), "{out}");
}
