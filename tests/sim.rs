//! `drover sim` against a real `drover up`: hollow nodes register as Ready Nodes with
//! distinct pod CIDRs and their bound pods reach Running, seen through kubectl.

mod common;

use std::process::Command;

use common::Running;

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
