//! kubectl's `rollout status|history|undo` against StatefulSets and DaemonSets: the
//! gateway harness (real nats-server, store, gateway over TLS, the controllers), hollow
//! node agents and the workload tests' binder standing in for the scheduler.

mod common;
#[path = "../../actors/controllers/tests/common/mod.rs"]
mod workload;

use common::Cluster;

const STS: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  replicas: 2
  serviceName: web
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: "busybox:1"}]
"#;

const DS: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: c, image: "busybox:1"}]
"#;

fn image(c: &Cluster, what: &str) -> String {
    c.ok(&[
        "get",
        what,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ])
}

fn rollout_cycle(c: &Cluster, what: &str, done: &str) {
    let out = c.ok(&["rollout", "status", what, "--timeout=60s"]);
    assert!(out.contains(done), "{out}");
    c.ok(&["set", "image", what, "c=busybox:2"]);
    let out = c.ok(&["rollout", "status", what, "--timeout=60s"]);
    assert!(out.contains(done), "{out}");
    let history = c.ok(&["rollout", "history", what]);
    let revisions: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    let one = c.ok(&["rollout", "history", what, "--revision=1"]);
    assert!(one.contains("busybox:1"), "{one}");
    let out = c.ok(&["rollout", "undo", what]);
    assert!(out.contains("rolled back"), "{out}");
    assert_eq!(image(c, what), "busybox:1");
    let out = c.ok(&["rollout", "status", what, "--timeout=60s"]);
    assert!(out.contains(done), "{out}");
    // Revision 1 became revision 3 (no duplicate).
    let history = c.ok(&["rollout", "history", what]);
    let revisions: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["2", "3"], "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_status_history_undo() {
    let c = Cluster::start().await;
    let binder = tokio::spawn(workload::bind_forever(c.store.clone()));
    let mut agents = Vec::new();
    for idx in 0..2 {
        agents.push(workload::start_node(&c.store, idx, &[], &[]).await);
    }
    let sts = c.write("sts.yaml", STS);
    let ds = c.write("ds.yaml", DS);
    // kubectl runs blocking; the cluster lives on the runtime's other worker.
    let c = tokio::task::spawn_blocking(move || {
        c.ok(&["apply", "-f", &sts]);
        rollout_cycle(&c, "statefulset/web", "roll out complete");
        let pods = c.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ]);
        assert_eq!(
            pods.split_whitespace().collect::<Vec<_>>(),
            ["busybox:1", "busybox:1"]
        );
        c.ok(&["apply", "-f", &ds]);
        rollout_cycle(&c, "daemonset/agent", "successfully rolled out");
        c
    })
    .await
    .unwrap();
    binder.abort();
    for a in agents {
        a.stop().await;
    }
    drop(c);
}
