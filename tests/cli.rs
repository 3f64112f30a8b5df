//! The client verbs end to end: a real `drover up`, then the `drover` binary's `apply`,
//! `get`, `describe`, `delete` and `events` against it with `--kubeconfig`, checked on
//! their stdout, stderr and exit codes.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::Running;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// Generous bound on one CLI command (they take milliseconds on a warm machine).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
data:
  color: blue
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
---
apiVersion: v1
kind: Pod
metadata:
  name: solo
  namespace: demo
  labels:
    app: solo
    tier: backend
spec:
  containers:
  - name: main
    image: busybox:1.36
    ports:
    - containerPort: 8080
"#;

#[derive(Debug)]
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `drover ARGS --kubeconfig KC`, feeding `stdin` when given.
async fn drover(kubeconfig: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .args(["--kubeconfig", kubeconfig])
        .env("RUST_LOG", "warn")
        .env_remove("KUBECONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning drover");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).await.unwrap();
        drop(pipe);
    }
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("drover {args:?} did not finish"))
        .unwrap();
    let out = Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("$ drover {}\n{}{}", args.join(" "), out.stdout, out.stderr);
    out
}

/// Runs a command that must succeed and returns its stdout.
async fn ok(kubeconfig: &str, args: &[&str]) -> String {
    let out = drover(kubeconfig, args, None).await;
    assert_eq!(out.code, 0, "drover {args:?} failed: {}", out.stderr);
    out.stdout
}

/// `drover apply -f -` with `manifest`; must succeed.
async fn apply(kubeconfig: &str, manifest: &str) -> String {
    let out = drover(kubeconfig, &["apply", "-f", "-"], Some(manifest)).await;
    assert_eq!(out.code, 0, "apply failed: {}", out.stderr);
    out.stdout
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// The cells of a printed table's lines, split on runs of spaces.
fn columns(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn event_manifest(name: &str, pod: &str, reason: &str, message: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Event",
  "metadata": {{"name": "{name}", "namespace": "demo"}},
  "involvedObject": {{"apiVersion": "v1", "kind": "Pod", "name": "{pod}", "namespace": "demo"}},
  "reason": "{reason}", "message": "{message}", "type": "Normal",
  "source": {{"component": "cli-test"}},
  "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z", "count": 1}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_get_describe_delete_against_drover_up() {
    drover_testkit::init_tracing();
    let cluster = Running::start().await;
    let kc = cluster.kubeconfig.as_str();

    // apply: multi-document YAML, in order, printed like kubectl.
    let out = apply(kc, MANIFEST).await;
    assert_eq!(
        lines(&out),
        [
            "namespace/demo created",
            "configmap/settings created",
            "deployment.apps/web created",
            "pod/solo created",
        ]
    );
    // The same manifest again changes nothing (and writes nothing).
    let out = apply(kc, MANIFEST).await;
    assert_eq!(
        lines(&out),
        [
            "namespace/demo unchanged",
            "configmap/settings unchanged",
            "deployment.apps/web unchanged",
            "pod/solo unchanged",
        ]
    );
    // A changed object is configured; a file on disk and JSON work too.
    let changed = MANIFEST.replace("color: blue", "color: green");
    let file = cluster.dir.path().join("app.yaml");
    std::fs::write(&file, &changed).unwrap();
    let out = ok(kc, &["apply", "-f", file.to_str().unwrap()]).await;
    assert!(out.contains("configmap/settings configured"), "{out}");
    assert!(out.contains("deployment.apps/web unchanged"), "{out}");
    let json_list = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "extra", "namespace": "demo", "labels": {"app": "solo"}}, "data": {"a": "1"}}
    ]}"#;
    assert_eq!(apply(kc, json_list).await, "configmap/extra created\n");

    // get: the server's table as columns (the Deployment's own pods are left out: the
    // ReplicaSet controller names them).
    let out = ok(kc, &["get", "pods", "-n", "demo", "-l", "app=solo"]).await;
    let table = lines(&out);
    assert_eq!(
        columns(table[0]),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    assert_eq!(table.len(), 2, "{out}");
    assert_eq!(columns(table[1])[..3], ["solo", "0/1", "Pending"]);
    // Columns are aligned: every line has its second column at the same offset.
    let offset = table[0].find("READY").unwrap();
    assert_eq!(&table[1][offset..offset + 3], "0/1", "{out}");
    // Short names, other groups, -o wide.
    let out = ok(kc, &["get", "deploy", "-n", "demo"]).await;
    assert_eq!(
        columns(lines(&out)[0]),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    assert_eq!(columns(lines(&out)[1])[0], "web");
    let out = ok(kc, &["get", "po", "-n", "demo", "-o", "wide"]).await;
    assert!(columns(lines(&out)[0]).contains(&"NODE"), "{out}");
    // Namespace from the object's kubeconfig context by default ("default": empty).
    let out = drover(kc, &["get", "pods"], None).await;
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr
            .contains("No resources found in default namespace."),
        "{}",
        out.stderr
    );
    // -A adds a NAMESPACE column; cluster-scoped kinds list without one.
    let out = ok(kc, &["get", "configmaps", "-A"]).await;
    assert_eq!(columns(lines(&out)[0])[..2], ["NAMESPACE", "NAME"]);
    assert!(
        out.lines().any(|l| columns(l)[..2] == ["demo", "settings"]),
        "{out}"
    );
    let out = ok(kc, &["get", "ns"]).await;
    assert!(
        out.lines().any(|l| columns(l).first() == Some(&"demo")),
        "{out}"
    );
    // -l selects by label, across kinds' own tables.
    let out = ok(
        kc,
        &[
            "get", "pods,cm", "-n", "demo", "-l", "app=solo", "-o", "name",
        ],
    )
    .await;
    assert_eq!(lines(&out), ["pod/solo", "configmap/extra"]);
    let out = ok(kc, &["get", "pods", "-n", "demo", "-l", "tier=frontend"]).await;
    assert_eq!(out, "");
    let out = ok(
        kc,
        &[
            "get",
            "pods",
            "-n",
            "demo",
            "--field-selector",
            "metadata.name=solo",
            "-o",
            "name",
        ],
    )
    .await;
    assert_eq!(out, "pod/solo\n");
    // -o yaml / json of one object, and of a list.
    let out = ok(kc, &["get", "pod", "solo", "-n", "demo", "-o", "json"]).await;
    let pod: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["metadata"]["labels"]["tier"], "backend");
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let out = ok(
        kc,
        &["get", "deployment.apps/web", "-n", "demo", "-o", "yaml"],
    )
    .await;
    assert!(out.contains("kind: Deployment\n"), "{out}");
    assert!(out.contains("replicas: 2"), "{out}");
    let out = ok(kc, &["get", "cm", "-n", "demo", "-o", "json"]).await;
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["kind"], "List");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["extra", "settings"]);
    assert_eq!(list["items"][0]["kind"], "ConfigMap");

    // describe: sections with labels, containers and the pod's events.
    let event = event_manifest("solo.1", "solo", "Pulled", "Container image busybox pulled");
    assert_eq!(apply(kc, &event).await, "event/solo.1 created\n");
    let other = event_manifest("other.1", "someone-else", "Killing", "not about solo");
    apply(kc, &other).await;
    let out = ok(kc, &["describe", "pod", "solo", "-n", "demo"]).await;
    assert!(out.starts_with("Name:"), "{out}");
    assert!(
        out.lines().any(|l| columns(l) == ["Namespace:", "demo"]),
        "{out}"
    );
    assert!(
        out.lines().any(|l| columns(l) == ["Labels:", "app=solo"]),
        "{out}"
    );
    assert!(out.lines().any(|l| columns(l) == ["tier=backend"]), "{out}");
    assert!(
        out.lines().any(|l| columns(l) == ["Status:", "Pending"]),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| columns(l) == ["Image:", "busybox:1.36"]),
        "{out}"
    );
    assert!(
        out.lines().any(|l| columns(l) == ["Port:", "8080/TCP"]),
        "{out}"
    );
    let events_at = out.find("Events:").expect("an Events section");
    let events = &out[events_at..];
    assert!(events.contains("Pulled"), "{out}");
    assert!(events.contains("Container image busybox pulled"), "{out}");
    assert!(events.contains("cli-test"), "{out}");
    assert!(!events.contains("Killing"), "another object's event: {out}");
    let out = ok(kc, &["describe", "deploy", "web", "-n", "demo"]).await;
    assert!(out.contains("2 desired"), "{out}");
    assert!(
        out.lines().any(|l| columns(l) == ["Selector:", "app=web"]),
        "{out}"
    );
    assert!(out.contains("Events:"), "{out}");
    assert!(!uid.is_empty());

    // Errors read like kubectl's and exit 1.
    let out = drover(kc, &["get", "pod", "missing", "-n", "demo"], None).await;
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        "Error from server (NotFound): pods \"missing\" not found"
    );
    let out = drover(kc, &["describe", "deploy", "nope", "-n", "demo"], None).await;
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        "Error from server (NotFound): deployments.apps \"nope\" not found"
    );
    let out = drover(kc, &["get", "widgets"], None).await;
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        "error: the server doesn't have a resource type \"widgets\""
    );

    // delete: by name (one missing: reported, the rest still go, exit 1), by -l, by -f.
    let out = drover(kc, &["delete", "cm", "extra", "ghost", "-n", "demo"], None).await;
    assert_eq!(out.code, 1);
    assert_eq!(out.stdout, "configmap \"extra\" deleted\n");
    assert_eq!(
        out.stderr.trim(),
        "Error from server (NotFound): configmaps \"ghost\" not found"
    );
    let out = ok(
        kc,
        &["delete", "events", "-l", "nothing=here", "-n", "demo"],
    )
    .await;
    assert_eq!(out, "");
    let out = ok(
        kc,
        &[
            "delete",
            "pods",
            "-n",
            "demo",
            "-l",
            "tier=backend",
            "--grace-period",
            "0",
        ],
    )
    .await;
    assert_eq!(out, "pod \"solo\" deleted\n");
    let out = ok(
        kc,
        &[
            "delete",
            "event/solo.1",
            "event/other.1",
            "-n",
            "demo",
            "--cascade",
            "foreground",
        ],
    )
    .await;
    assert_eq!(
        lines(&out),
        ["event \"solo.1\" deleted", "event \"other.1\" deleted"]
    );
    let manifest_without_ns: String = MANIFEST
        .split("---")
        .filter(|doc| !doc.contains("kind: Namespace") && !doc.contains("kind: Pod"))
        .collect::<Vec<_>>()
        .join("---");
    let file = cluster.dir.path().join("rest.yaml");
    std::fs::write(&file, manifest_without_ns).unwrap();
    let out = ok(kc, &["delete", "-f", file.to_str().unwrap()]).await;
    assert_eq!(
        lines(&out),
        [
            "configmap \"settings\" deleted",
            "deployment.apps \"web\" deleted"
        ]
    );
    let out = drover(kc, &["get", "deploy", "web", "-n", "demo"], None).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("(NotFound)"), "{}", out.stderr);

    cluster.stop().await;
}

/// A long-running `drover ... -w` whose stdout lines arrive on a channel.
struct Follower {
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Follower {
    fn spawn(kubeconfig: &str, args: &[&str]) -> Follower {
        let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(args)
            .args(["--kubeconfig", kubeconfig])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning drover");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                eprintln!("[follow] {line}");
                let _ = tx.send(line);
            }
        });
        Follower { child, lines }
    }

    /// The next line containing `needle`; fails the test after a generous bound.
    async fn line_with(&mut self, needle: &str) -> String {
        let found = tokio::time::timeout(COMMAND_TIMEOUT, async {
            while let Some(line) = self.lines.recv().await {
                if line.contains(needle) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            Ok(None) => panic!(
                "the watch ended before printing {needle:?}: {:?}",
                self.child.try_wait()
            ),
            Err(_) => panic!("no line with {needle:?}"),
        }
    }

    async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_get_watch_print_new_objects() {
    drover_testkit::init_tracing();
    let cluster = Running::start().await;
    let kc = cluster.kubeconfig.as_str();
    apply(
        kc,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n",
    )
    .await;

    // No events yet: the table form says so; -w waits for them.
    let out = drover(kc, &["events", "-n", "demo"], None).await;
    assert_eq!(out.code, 0);
    assert!(
        out.stderr.contains("No events found in demo namespace."),
        "{}",
        out.stderr
    );

    let mut events = Follower::spawn(kc, &["events", "-n", "demo", "-w"]);
    let mut pods = Follower::spawn(kc, &["get", "pods", "-n", "demo", "-w"]);
    apply(
        kc,
        &event_manifest("a.1", "a", "FirstReason", "first message"),
    )
    .await;
    // Whether the watch's list or its stream saw it, the row comes with the header.
    let header = events.line_with("LAST SEEN").await;
    assert_eq!(
        columns(&header),
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    let row = events.line_with("FirstReason").await;
    assert!(
        row.contains("pod/a") && row.contains("first message"),
        "{row}"
    );
    // After the first row the watch is surely running: the next one arrives on it.
    apply(
        kc,
        &event_manifest("b.1", "b", "SecondReason", "second message"),
    )
    .await;
    let row = events.line_with("SecondReason").await;
    assert!(row.contains("pod/b"), "{row}");

    apply(
        kc,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: watched\n  namespace: demo\nspec:\n  containers:\n  - name: c\n    image: busybox\n",
    )
    .await;
    let row = pods.line_with("watched").await;
    assert_eq!(columns(&row)[..3], ["watched", "0/1", "Pending"]);

    // Across all namespaces the table gains a NAMESPACE column.
    let out = ok(kc, &["events", "-A"]).await;
    assert_eq!(columns(lines(&out)[0])[..3], ["NAMESPACE", "LAST", "SEEN"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("demo ") && l.contains("SecondReason")),
        "{out}"
    );

    events.stop().await;
    pods.stop().await;
    cluster.stop().await;
}
