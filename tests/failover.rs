//! Failover end to end: `drover up` (control plane, its own gossip member) and three real
//! `drover agent`s (containerd, runc, CNI), each in its own network namespace on one fabric
//! bridge, kubectl as the client. One scenario, in phases:
//!
//! 1. 5% packet loss on every node for a minute: no node is declared down (no Node gets
//!    the unreachable taint or `GossipReachable=False` at any time).
//! 2. A partition (iptables inside the node's namespace) of the node running the
//!    StatefulSet pod `db-0`: the node is declared down, fences itself, and `db-0` runs
//!    elsewhere; the Deployment's pods there are replaced. Every `db-0` instance appends
//!    its uptime to its own file on a hostPath volume every 20 ms, and no two instances'
//!    lifetimes overlap. Healed, the node rejoins and removes its stale pods.
//! 3. SIGSTOP of the agent now running `db-0` (a gray failure): its fence guard kills
//!    `db-0` there, the node is declared down, `db-0` and the Deployment's pods run
//!    elsewhere; on SIGCONT it rejoins, the taints go, and it removes its stale pods.
//! 4. `kill -9` of a node's whole process tree (agent, containerd, shims, containers): its
//!    Deployment pods run elsewhere.
//!
//! Waits are bounded by generous guards; nothing asserts on timing.

mod common;

/// [`common::poll_until`] with this test's guard.
async fn wait_until<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    common::poll_until(what, GUARD, f).await
}

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Purge, Up, kubectl, ok};
use drover_node::containerd::ContainerdPaths;
use drover_testkit::cgroup::remove_tree;
use drover_testkit::fabric::{Fabric, HOST_IP};
use drover_testkit::free_port;
use serde_json::Value;

const IMAGE: &str = "localhost/busybox:latest";
const APPLETS: &[&str] = &["sh", "sleep", "echo", "cat", "true", "mkdir", "hostname"];
/// Failure guard for waits; never a timing assertion.
const GUARD: Duration = Duration::from_secs(120);
/// The agents' fence timeout (short, so the scenario is quick).
const FENCE_MS: &str = "3000";
const NODES: usize = 3;
const GOSSIP_PORT: u16 = 7946;

#[test]
fn failover_with_three_real_agents() {
    if !drover_testkit::netns::enter("failover_with_three_real_agents") {
        return;
    }
    drover_testkit::init_tracing();
    let cgroups = Cgroups(format!("drover-failover-{}", std::process::id()));
    let fabric = Fabric::new(NODES);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario(&fabric, &cgroups));
}

/// Removes the pods' cgroups (every hierarchy) under the test's root on drop.
struct Cgroups(String);

impl Drop for Cgroups {
    fn drop(&mut self) {
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.flatten() {
                remove_tree(&h.path().join(&self.0));
            }
        }
    }
}

fn node_name(i: usize) -> String {
    format!("node-{i}")
}

/// One node: its agent process (None once killed) and its containerd purge guard.
struct Node {
    agent: Option<Up>,
    data: PathBuf,
    _purge: Purge,
}

fn spawn_agent(fabric: &Fabric, i: usize, nats: &str, data: &Path, cgroups: &Cgroups) -> Up {
    let node = fabric.node(i);
    let args: Vec<String> = vec![
        "agent".into(),
        "--nats".into(),
        nats.into(),
        "--node-name".into(),
        node_name(i),
        "--data-dir".into(),
        data.display().to_string(),
        "--no-service-proxy".into(),
        "--node-address".into(),
        node.ip().to_string(),
        "--cgroup-root".into(),
        format!("/{}/node-{i}", cgroups.0),
        "--gossip-bind".into(),
        format!("{}:{GOSSIP_PORT}", node.ip()),
        "--gossip-seed".into(),
        format!("{HOST_IP}:{GOSSIP_PORT}"),
        "--fence-timeout-ms".into(),
        FENCE_MS.into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Up::spawn_drover_in(node, &args, "info,async_nats=warn")
}

fn pods(kc: &str) -> Vec<Value> {
    let out = ok(kc, &["get", "pods", "-o", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

fn node_of(p: &Value) -> &str {
    p.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn is_running(p: &Value) -> bool {
    p.pointer("/metadata/deletionTimestamp").is_none()
        && p.pointer("/status/phase").and_then(Value::as_str) == Some("Running")
}

fn is_web(p: &Value) -> bool {
    p.pointer("/metadata/labels/app").and_then(Value::as_str) == Some("web")
}

/// The nodes of the 3 web pods, once exactly 3 run, none on `avoid`.
fn web_placement(kc: &str, avoid: Option<&str>) -> Option<Vec<String>> {
    let all = pods(kc);
    let running: Vec<String> = all
        .iter()
        .filter(|p| is_web(p) && is_running(p))
        .map(|p| node_of(p).to_string())
        .collect();
    (running.len() == 3 && avoid.is_none_or(|a| running.iter().all(|n| n != a))).then_some(running)
}

/// The node `db-0` runs on, when it runs.
fn db_node(kc: &str) -> Option<String> {
    pods(kc)
        .into_iter()
        .find(|p| {
            p.pointer("/metadata/name").and_then(Value::as_str) == Some("db-0") && is_running(p)
        })
        .map(|p| node_of(&p).to_string())
}

fn node_json(kc: &str, name: &str) -> Value {
    serde_json::from_str(&ok(kc, &["get", "node", name, "-o", "json"])).unwrap()
}

fn is_down(node: &Value) -> bool {
    let tainted = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .is_some_and(|ts| {
            ts.iter()
                .any(|t| t["key"] == "node.kubernetes.io/unreachable")
        });
    let unreachable = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "GossipReachable" && c["status"] == "False")
        });
    tainted || unreachable
}

/// `drover members` (through the gateway) as name -> status.
fn members(kc: &str) -> BTreeMap<String, String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["members", "-o", "json", "--kubeconfig", kc])
        .output()
        .unwrap();
    if !out.status.success() {
        return BTreeMap::new();
    }
    let view: Value = serde_json::from_slice(&out.stdout).unwrap();
    view["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or("").to_string(),
                m["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Every `db-0` instance's lifetime from its file: (first, last) uptime in seconds.
fn db_lifetimes(shared: &Path) -> BTreeMap<String, (f64, f64)> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(shared).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("db-0-") {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let samples: Vec<f64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
            out.insert(name, (*first, *last));
        }
    }
    out
}

/// Panics if two `db-0` instances were ever alive at once (their sample intervals overlap).
fn assert_one_identity(shared: &Path) -> usize {
    let lives = db_lifetimes(shared);
    let v: Vec<(&String, &(f64, f64))> = lives.iter().collect();
    for (i, (a, (a0, a1))) in v.iter().enumerate() {
        for (b, (b0, b1)) in &v[i + 1..] {
            assert!(
                a1 < b0 || b1 < a0,
                "two db-0 instances ran at once: {a} {a0}..{a1} and {b} {b0}..{b1}"
            );
        }
    }
    lives.len()
}

/// After `node` was cut off (`how`): it is declared down, `db-0` runs elsewhere, the web
/// pods run off it, and `instances` db-0 instances have run, never two at once. Returns
/// db-0's new node.
async fn node_fails_over(
    kc: &str,
    shared: &Path,
    node: &str,
    how: &str,
    instances: usize,
) -> String {
    let cut = Instant::now();
    wait_until(&format!("{node} declared down ({how})"), || {
        is_down(&node_json(kc, node)).then_some(())
    })
    .await;
    eprintln!("{how}: {node} declared down after {:?}", cut.elapsed());
    let db_home = wait_until(&format!("db-0 running off {node}"), || {
        db_node(kc).filter(|n| n != node)
    })
    .await;
    eprintln!("{how}: db-0 running on {db_home} after {:?}", cut.elapsed());
    wait_until(&format!("web pods running off {node}"), || {
        web_placement(kc, Some(node))
    })
    .await;
    // Let the new instance write a while, then check the lifetimes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(assert_one_identity(shared), instances, "{how}");
    db_home
}

/// After `node` is reachable again: no longer down, and its agent has stopped and removed
/// its stale pods (the evicted web pods, the replaced db-0).
async fn node_comes_back(kc: &str, shared: &Path, node: &str, instances: usize) {
    wait_until(&format!("{node} back"), || {
        (!is_down(&node_json(kc, node))).then_some(())
    })
    .await;
    wait_until(&format!("no pods left on {node}"), || {
        pods(kc).iter().all(|p| node_of(p) != node).then_some(())
    })
    .await;
    assert_eq!(assert_one_identity(shared), instances, "{node} back");
}

fn manifests(dir: &Path, shared: &Path) -> PathBuf {
    let path = dir.join("workloads.yaml");
    std::fs::write(
        &path,
        format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: {IMAGE}
        imagePullPolicy: Never
        command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  replicas: 1
  serviceName: db
  selector:
    matchLabels: {{app: db}}
  template:
    metadata:
      labels: {{app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: {IMAGE}
        imagePullPolicy: Never
        # Every instance appends the machine's uptime to its own file every 20 ms.
        command: ["sh", "-c", "f=/shared/$(hostname)-$(cat /proc/sys/kernel/random/uuid); while true; do read up rest < /proc/uptime; echo $up >> $f; sleep 0.02; done"]
        volumeMounts:
        - {{name: shared, mountPath: /shared}}
      volumes:
      - name: shared
        hostPath: {{path: {shared}, type: Directory}}
"#,
            shared = shared.display()
        ),
    )
    .unwrap();
    path
}

async fn scenario(fabric: &Fabric, cgroups: &Cgroups) {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let nats_port = free_port().to_string();
    let api_port = free_port().to_string();
    let cp_data = dir.path().join("cp");
    let mut up = Up::spawn(&[
        "--data-dir",
        cp_data.to_str().unwrap(),
        "--nats-address",
        &HOST_IP.to_string(),
        "--nats-port",
        &nats_port,
        "--api-port",
        &api_port,
        "--gossip-bind",
        &format!("{HOST_IP}:{GOSSIP_PORT}"),
    ]);
    let kubeconfig = up.kubeconfig().await;
    let kc = kubeconfig.as_str();
    let nats = format!("nats://{HOST_IP}:{nats_port}");

    let archive = common::busybox_archive(dir.path(), IMAGE, APPLETS);

    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..NODES {
        let data = dir.path().join(node_name(i));
        let purge = Purge(ContainerdPaths::new(&data));
        let mut agent = spawn_agent(fabric, i, &nats, &data, cgroups);
        agent
            .wait_for(&format!("node {} ready", node_name(i)))
            .await;
        common::import_image(&archive, &data);
        nodes.push(Node {
            agent: Some(agent),
            data,
            _purge: purge,
        });
    }
    // Everyone sees everyone: the control plane's view has the 3 nodes alive.
    wait_until("3 nodes alive in drover members", || {
        let m = members(kc);
        ((0..NODES).all(|i| m.get(&node_name(i)).map(String::as_str) == Some("alive")))
            .then_some(())
    })
    .await;

    let manifest = manifests(dir.path(), &shared);
    ok(kc, &["apply", "-f", manifest.to_str().unwrap()]);
    ok(
        kc,
        &["rollout", "status", "deployment/web", "--timeout=120s"],
    );
    let db_home = wait_until("db-0 running", || db_node(kc)).await;

    // 1. 5% loss on every node for a minute: nobody is declared down. Besides polling,
    // each node's GossipReachable condition must not have moved at all (a down and back
    // up between two polls would change its lastTransitionTime).
    let transitions = |kc: &str| -> Vec<String> {
        (0..NODES)
            .map(|i| {
                let n = node_json(kc, &node_name(i));
                n.pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "GossipReachable"))
                    .map(|c| format!("{}@{}", c["status"], c["lastTransitionTime"]))
                    .unwrap_or_default()
            })
            .collect()
    };
    let before_soak = wait_until("GossipReachable=True on every node", || {
        let t = transitions(kc);
        t.iter().all(|c| c.starts_with("\"True\"@")).then_some(t)
    })
    .await;
    for i in 0..NODES {
        fabric.set_loss(i, 5.0);
    }
    let soak = Instant::now();
    let mut checks = 0;
    while soak.elapsed() < Duration::from_secs(60) {
        for i in 0..NODES {
            let n = node_json(kc, &node_name(i));
            assert!(!is_down(&n), "node-{i} declared down under 5% loss: {n}");
        }
        checks += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for i in 0..NODES {
        fabric.set_loss(i, 0.0);
    }
    assert_eq!(
        transitions(kc),
        before_soak,
        "a node's gossip condition changed during the loss"
    );
    eprintln!("5% loss for 60 s: {checks} checks of {NODES} nodes, none down");

    // 2. Partition the node running db-0.
    let victim: usize = db_home.strip_prefix("node-").unwrap().parse().unwrap();
    assert_eq!(assert_one_identity(&shared), 1, "one db-0 instance before");
    fabric.partition(victim);
    node_fails_over(kc, &shared, &db_home, "partition", 2).await;
    fabric.heal(victim);
    node_comes_back(kc, &shared, &db_home, 2).await;

    // 3. SIGSTOP of the agent now running db-0 (a gray failure): the frozen agent cannot
    // fence, its fence guard does; the node is declared down, db-0 and the web pods run
    // elsewhere, and on SIGCONT the agent rejoins and stops its stale pods.
    let frozen_name = db_node(kc).unwrap();
    let frozen: usize = frozen_name.strip_prefix("node-").unwrap().parse().unwrap();
    let pid = nodes[frozen].agent.as_ref().unwrap().pid();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let db_home = node_fails_over(kc, &shared, &frozen_name, "SIGSTOP", 3).await;
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    node_comes_back(kc, &shared, &frozen_name, 3).await;

    // 4. kill -9 of a node's whole process tree: agent, containerd, fence guard, shims and
    // containers.
    let doomed = (0..NODES)
        .find(|i| node_name(*i) != db_home && *i != frozen)
        .unwrap_or(frozen);
    let agent = nodes[doomed].agent.take().unwrap();
    let kill = Instant::now();
    agent.kill9_tree().await;
    drover_node::host::purge(&ContainerdPaths::new(&nodes[doomed].data));
    wait_until("web pods running off the killed node", || {
        web_placement(kc, Some(&node_name(doomed)))
    })
    .await;
    eprintln!(
        "kill -9: {}'s web pods running elsewhere after {:?}",
        node_name(doomed),
        kill.elapsed()
    );
    assert_eq!(assert_one_identity(&shared), 3);

    let (code, _, _) = kubectl(kc, &["delete", "statefulset", "db", "--wait=false"]);
    assert_eq!(code, 0);
    for n in nodes.iter_mut() {
        if let Some(a) = n.agent.take() {
            a.terminate().await;
        }
    }
    up.terminate().await;
}
