//! One machine is a whole cluster: `drover up` runs the control plane and a node agent
//! (its own containerd, runc, CNI) side by side. Inside fresh network and mount
//! namespaces, kubectl runs a pod on it, reads its logs (also following them) and execs
//! into it (plain, with an exit code, and with a terminal), all through the gateway,
//! which relays over NATS to the agent: nothing here talks to containerd but the agent.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Purge, Up, kubectl, ok};
use drover_node::containerd::ContainerdPaths;
use drover_testkit::free_port;
use tokio::io::{AsyncBufReadExt, BufReader};

const IMAGE: &str = "localhost/busybox:latest";
const GUARD: Duration = Duration::from_secs(90);

#[test]
fn drover_up_runs_pods_with_logs_and_exec() {
    if !drover_testkit::netns::enter("drover_up_runs_pods_with_logs_and_exec") {
        return;
    }
    drover_testkit::init_tracing();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario());
}

async fn scenario() {
    let dir = tempfile::Builder::new()
        .prefix("drover-cluster-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("data");
    let _purge = Purge(ContainerdPaths::new(data.join("node")));
    let nats_port = free_port().to_string();
    let api_port = free_port().to_string();
    let mut up = Up::spawn_with_agent(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--nats-port",
        &nats_port,
        "--api-port",
        &api_port,
        "--node-name",
        "node-a",
    ]);
    let kubeconfig = up.kubeconfig().await;
    up.wait_for("node node-a ready").await;
    let kc = kubeconfig.as_str();

    // The node is a Ready Node.
    let nodes = ok(kc, &["get", "nodes", "--no-headers"]);
    assert!(
        nodes.contains("node-a") && nodes.contains(" Ready"),
        "{nodes}"
    );

    // The test image, imported into the node's containerd with `drover image import`.
    let archive = dir.path().join("busybox.tar");
    let spec = drover_node::image::busybox_image(
        IMAGE,
        Path::new("/bin/busybox"),
        &["sh", "sleep", "echo", "cat", "true", "false", "tty"],
    )
    .unwrap();
    drover_node::image::write_oci_archive(&spec, &archive).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["image", "import"])
        .arg(&archive)
        .arg("--data-dir")
        .arg(data.join("node"))
        .output()
        .unwrap();
    assert!(out.status.success(), "drover image import: {out:?}");

    let manifest = dir.path().join("pod.yaml");
    std::fs::write(
        &manifest,
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: talker
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "echo line-1; echo line-2; while true; do echo tick; sleep 1; done"]
"#
        ),
    )
    .unwrap();
    // No nodeName: nothing schedules yet (the scheduler is the next issue), so bind the
    // pod the way a scheduler would, in the manifest it is created from.
    let bound = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("spec:\n", "spec:\n  nodeName: node-a\n");
    std::fs::write(&manifest, bound).unwrap();
    ok(kc, &["apply", "-f", manifest.to_str().unwrap()]);
    ok(
        kc,
        &[
            "wait",
            "--for=condition=Ready",
            "pod/talker",
            "--timeout=90s",
        ],
    );
    let wide = ok(kc, &["get", "pod", "talker", "-o", "wide", "--no-headers"]);
    assert!(
        wide.contains("Running") && wide.contains("10.244."),
        "{wide}"
    );

    // Logs: whole, tail, timestamps.
    let logs = ok(kc, &["logs", "talker"]);
    assert!(logs.starts_with("line-1\nline-2\n"), "{logs}");
    assert_eq!(ok(kc, &["logs", "talker", "--tail=1"]), "tick\n");
    let stamped = ok(kc, &["logs", "talker", "--timestamps", "--tail=1"]);
    assert!(
        stamped.ends_with(" tick\n") && stamped.starts_with("20"),
        "{stamped}"
    );
    // Follow: lines written after kubectl started arrive.
    let mut follow = tokio::process::Command::new("kubectl")
        .args(["logs", "-f", "talker", "--tail=0"])
        .env("KUBECONFIG", kc)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let line = tokio::time::timeout(GUARD, lines.next_line())
            .await
            .expect("a followed line within the guard")
            .unwrap();
        assert_eq!(line.as_deref(), Some("tick"));
    }
    follow.kill().await.unwrap();

    // Exec: output, exit code, a terminal.
    assert_eq!(
        ok(kc, &["exec", "talker", "--", "echo", "hello from exec"]),
        "hello from exec\n"
    );
    let (code, _, _) = kubectl(kc, &["exec", "talker", "--", "sh", "-c", "exit 3"]);
    assert_eq!(code, 3, "the command's exit code comes back");
    let out = tokio::task::spawn_blocking({
        let kc = kc.to_string();
        move || {
            Command::new("script")
                .args([
                    "-qec",
                    "kubectl exec -it talker -- sh -c 'tty >/dev/null && echo has-tty'",
                    "/dev/null",
                ])
                .env("KUBECONFIG", kc)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("has-tty"), "{out:?}");

    // Delete through kubectl: the agent stops the container and removes the pod.
    ok(
        kc,
        &["delete", "pod", "talker", "--wait=true", "--timeout=60s"],
    );
    let started = Instant::now();
    loop {
        let (code, _, err) = kubectl(kc, &["get", "pod", "talker"]);
        if code != 0 && err.contains("NotFound") {
            break;
        }
        assert!(started.elapsed() < GUARD, "the pod was never removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = up.terminate().await;
    assert!(status.success(), "drover exit status {status}");
}

/// A Deployment of busybox on the real node, rolled to a new template (an env change):
/// `kubectl rollout status` succeeds and the new pods run. The scheduler has not landed
/// yet, so a test-only binder (kubectl patch of `spec.nodeName`) binds what is unbound.
#[test]
fn drover_up_rolls_out_a_deployment() {
    if !drover_testkit::netns::enter("drover_up_rolls_out_a_deployment") {
        return;
    }
    drover_testkit::init_tracing();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(rollout_scenario());
}

/// Binds every unbound pod to `node` until `stop` is set (a stand-in for the scheduler).
fn test_binder(
    kubeconfig: String,
    node: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let (code, out, _) = kubectl(&kubeconfig, &["get", "pods", "-o", "json"]);
            if code == 0 {
                let list: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
                for pod in list["items"].as_array().into_iter().flatten() {
                    let unbound = pod["spec"]["nodeName"].as_str().unwrap_or("").is_empty();
                    let terminating = !pod["metadata"]["deletionTimestamp"].is_null();
                    if unbound && !terminating {
                        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                        let patch = format!(r#"{{"spec":{{"nodeName":"{node}"}}}}"#);
                        let _ = kubectl(
                            &kubeconfig,
                            &["patch", "pod", name, "--type=merge", "-p", &patch],
                        );
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

async fn rollout_scenario() {
    let dir = tempfile::Builder::new()
        .prefix("drover-rollout-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("data");
    let _purge = Purge(ContainerdPaths::new(data.join("node")));
    let nats_port = free_port().to_string();
    let api_port = free_port().to_string();
    let mut up = Up::spawn_with_agent(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--nats-port",
        &nats_port,
        "--api-port",
        &api_port,
        "--node-name",
        "node-a",
    ]);
    let kubeconfig = up.kubeconfig().await;
    up.wait_for("node node-a ready").await;
    let kc = kubeconfig.as_str();

    let archive = dir.path().join("busybox.tar");
    let spec =
        drover_node::image::busybox_image(IMAGE, Path::new("/bin/busybox"), &["sh", "sleep"])
            .unwrap();
    drover_node::image::write_oci_archive(&spec, &archive).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["image", "import"])
        .arg(&archive)
        .arg("--data-dir")
        .arg(data.join("node"))
        .output()
        .unwrap();
    assert!(out.status.success(), "drover image import: {out:?}");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let binder = test_binder(kubeconfig.clone(), "node-a", stop.clone());

    let manifest = dir.path().join("deployment.yaml");
    std::fs::write(
        &manifest,
        format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: roll
spec:
  replicas: 2
  selector:
    matchLabels: {{app: roll}}
  template:
    metadata:
      labels: {{app: roll}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {IMAGE}
        imagePullPolicy: Never
        command: ["sh", "-c", "while true; do sleep 1; done"]
        env:
        - name: VERSION
          value: "1"
"#
        ),
    )
    .unwrap();
    ok(kc, &["apply", "-f", manifest.to_str().unwrap()]);
    let status = ok(
        kc,
        &["rollout", "status", "deployment/roll", "--timeout=120s"],
    );
    assert!(status.contains("successfully rolled out"), "{status}");

    ok(kc, &["set", "env", "deployment/roll", "VERSION=2"]);
    let status = ok(
        kc,
        &["rollout", "status", "deployment/roll", "--timeout=120s"],
    );
    assert!(status.contains("successfully rolled out"), "{status}");

    // Every pod that is not on its way out is a Running pod of the new template.
    let started = Instant::now();
    loop {
        let out = ok(kc, &["get", "pods", "-l", "app=roll", "-o", "json"]);
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        let live: Vec<&serde_json::Value> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        let all_new_and_running = live.len() == 2
            && live.iter().all(|p| {
                p["status"]["phase"] == "Running"
                    && p["spec"]["containers"][0]["env"][0]["value"] == "2"
            });
        if all_new_and_running {
            break;
        }
        assert!(started.elapsed() < GUARD, "new pods not running: {out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let history = ok(kc, &["rollout", "history", "deployment/roll"]);
    assert!(history.contains("\n2 "), "{history}");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    binder.join().unwrap();
    ok(
        kc,
        &[
            "delete",
            "deployment",
            "roll",
            "--wait=true",
            "--timeout=60s",
        ],
    );
    let status = up.terminate().await;
    assert!(status.success(), "drover exit status {status}");
}

#[test]
fn statefulset_volume_survives_pod_deletion() {
    if !drover_testkit::netns::enter("statefulset_volume_survives_pod_deletion") {
        return;
    }
    drover_testkit::init_tracing();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(statefulset_scenario());
}

/// Test-only binder standing in for the scheduler: binds every unbound live pod to
/// `node` (one node, so there is nothing to choose) by CAS on the store.
async fn bind_all_to(nats_url: String, node: &'static str) {
    use drover_store::{Store, StoreConfig, WatchEvent, WatchOptions, object};
    use futures::StreamExt;
    let client = async_nats::connect(&nats_url).await.unwrap();
    let store = Store::new(client, StoreConfig::default()).await.unwrap();
    let pods = bus_schema::kinds::by_group_resource("", "pods").unwrap();
    let mut watch = store
        .watch(pods, None, 0, WatchOptions::default())
        .await
        .unwrap();
    while let Some(Ok(event)) = watch.next().await {
        let (WatchEvent::Added(pod) | WatchEvent::Modified(pod)) = event else {
            continue;
        };
        if pod.pointer("/spec/nodeName").is_some() || object::is_terminating(&pod) {
            continue;
        }
        let mut bound = pod.clone();
        bound["spec"]["nodeName"] = serde_json::json!(node);
        let _ = store.update(pods, bound).await;
    }
}

async fn statefulset_scenario() {
    let dir = tempfile::Builder::new()
        .prefix("drover-sts-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("data");
    let _purge = Purge(ContainerdPaths::new(data.join("node")));
    let nats_port = free_port().to_string();
    let api_port = free_port().to_string();
    let mut up = Up::spawn_with_agent(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--nats-port",
        &nats_port,
        "--api-port",
        &api_port,
        "--node-name",
        "node-a",
    ]);
    let kubeconfig = up.kubeconfig().await;
    up.wait_for("node node-a ready").await;
    let kc = kubeconfig.as_str();
    let binder = tokio::spawn(bind_all_to(
        format!("nats://127.0.0.1:{nats_port}"),
        "node-a",
    ));

    let archive = dir.path().join("busybox.tar");
    let spec = drover_node::image::busybox_image(
        IMAGE,
        Path::new("/bin/busybox"),
        &["sh", "sleep", "echo", "cat"],
    )
    .unwrap();
    drover_node::image::write_oci_archive(&spec, &archive).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["image", "import"])
        .arg(&archive)
        .arg("--data-dir")
        .arg(data.join("node"))
        .output()
        .unwrap();
    assert!(out.status.success(), "drover image import: {out:?}");

    let manifest = dir.path().join("sts.yaml");
    std::fs::write(
        &manifest,
        format!(
            r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  replicas: 2
  serviceName: web
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {IMAGE}
        imagePullPolicy: Never
        command: ["sh", "-c", "while true; do sleep 1; done"]
        volumeMounts:
        - {{name: data, mountPath: /data}}
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests: {{storage: 1Gi}}
"#
        ),
    )
    .unwrap();
    ok(kc, &["apply", "-f", manifest.to_str().unwrap()]);
    let out = ok(
        kc,
        &["rollout", "status", "statefulset/web", "--timeout=90s"],
    );
    assert!(out.contains("roll out complete"), "{out}");
    let claims = ok(
        kc,
        &["get", "pvc", "-o", "jsonpath={.items[*].status.phase}"],
    );
    assert_eq!(claims, "Bound Bound");
    assert_eq!(
        ok(kc, &["get", "storageclass", "-o", "name"]).trim(),
        "storageclass.storage.k8s.io/local-path"
    );

    ok(
        kc,
        &["exec", "web-0", "--", "sh", "-c", "echo kept > /data/file"],
    );
    let uid = ok(
        kc,
        &["get", "pod", "web-0", "-o", "jsonpath={.metadata.uid}"],
    );
    ok(
        kc,
        &["delete", "pod", "web-0", "--wait=true", "--timeout=60s"],
    );
    // The controller brings web-0 back (a new pod: new uid) with the same claim.
    let started = Instant::now();
    loop {
        let (code, new_uid, _) = kubectl(
            kc,
            &["get", "pod", "web-0", "-o", "jsonpath={.metadata.uid}"],
        );
        if code == 0 && !new_uid.is_empty() && new_uid != uid {
            break;
        }
        assert!(started.elapsed() < GUARD, "web-0 was not recreated");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ok(
        kc,
        &[
            "wait",
            "--for=condition=Ready",
            "pod/web-0",
            "--timeout=90s",
        ],
    );
    assert_eq!(
        ok(kc, &["exec", "web-0", "--", "cat", "/data/file"]),
        "kept\n"
    );
    // The volume is in the node's data dir.
    let pv = ok(
        kc,
        &[
            "get",
            "pvc",
            "data-web-0",
            "-o",
            "jsonpath={.spec.volumeName}",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(data.join("node/local-path").join(pv.trim()).join("file")).unwrap(),
        "kept\n"
    );
    binder.abort();
    let status = up.terminate().await;
    assert!(status.success(), "drover exit status {status}");
}
