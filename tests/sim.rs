//! `drover sim` against a real `drover up`: hollow nodes register as Ready Nodes with
//! distinct pod CIDRs and their bound pods reach Running, seen through kubectl; with
//! `--gossip-seed` they join the control plane's gossip (real SWIM over loopback UDP),
//! seen through `drover members`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Running, Up};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_registers_hollow_nodes_and_runs_their_pods() {
    let running = Running::start().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_drover"))
        .args([
            "sim",
            "--nats",
            &running.nats_url,
            "--nodes",
            "5",
            "--pods-per-node",
            "2",
            "--exit-when-ready",
        ])
        .output()
        .await
        .expect("drover sim");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "drover sim failed:\n{stderr}");
    assert!(stderr.contains("10 pods Running"), "{stderr}");

    let kubectl = |args: &[&str]| {
        let out = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &running.kubeconfig)
            .output()
            .expect("kubectl on PATH");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let nodes = kubectl(&["get", "nodes", "--no-headers"]);
    assert_eq!(nodes.lines().count(), 5, "{nodes}");
    assert!(nodes.lines().all(|l| l.contains(" Ready")), "{nodes}");
    let cidrs = kubectl(&["get", "nodes", "-o", "jsonpath={.items[*].spec.podCIDR}"]);
    let mut unique: Vec<&str> = cidrs.split_whitespace().collect();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 5, "{cidrs}");
    let pods = kubectl(&[
        "get",
        "pods",
        "-l",
        "drover.io/sim=true",
        "-o",
        "wide",
        "--no-headers",
    ]);
    assert_eq!(
        pods.lines().filter(|l| l.contains("Running")).count(),
        10,
        "{pods}"
    );
    running.stop().await;
}

/// `drover members -o json` as name -> status; empty while the view is not served yet.
fn members(kubeconfig: &str) -> BTreeMap<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["members", "-o", "json", "--kubeconfig", kubeconfig])
        .output()
        .expect("drover members");
    if !out.status.success() {
        return BTreeMap::new();
    }
    let view: Value = serde_json::from_slice(&out.stdout).expect("members json");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_nodes_join_the_control_planes_gossip() {
    let gossip = format!("127.0.0.1:{}", drover_testkit::free_port());
    let mut cp = Running::start_with(&["--gossip-bind", &gossip]).await;
    let kubeconfig = cp.kubeconfig.clone();
    cp.up.wait_for("control plane joined the gossip").await;

    let mut sim = Up::spawn_drover(&[
        "sim",
        "--nats",
        &cp.nats_url,
        "--nodes",
        "5",
        "--gossip-seed",
        &gossip,
    ]);
    // The first hollow node sees the other four and the control plane.
    let seen = sim.wait_for("drover sim: gossip:").await;
    assert!(seen.contains(": 6 members alive"), "{seen}");

    // The control plane's own view, through the gateway: the five hollow nodes alive.
    let started = Instant::now();
    let view = loop {
        let view = members(&kubeconfig);
        let alive: Vec<&String> = view
            .iter()
            .filter(|(name, status)| name.starts_with("hollow-") && *status == "alive")
            .map(|(name, _)| name)
            .collect();
        if alive.len() == 5 {
            break view;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the control plane does not see 5 hollow nodes alive: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        view.len(),
        6,
        "5 hollow nodes and the control plane: {view:?}"
    );

    // A stopped fleet leaves gracefully: the control plane sees every node down.
    assert!(sim.terminate().await.success());
    let started = Instant::now();
    loop {
        let view = members(&kubeconfig);
        let down = view
            .iter()
            .filter(|(name, status)| name.starts_with("hollow-") && *status == "down")
            .count();
        if down == 5 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the control plane does not see the 5 hollow nodes down: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cp.stop().await;
}
