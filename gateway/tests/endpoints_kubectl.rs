//! EndpointSlices and Endpoints through kubectl: a Deployment exposed by `kubectl expose`
//! gets its slice and Endpoints from the controllers, and `kubectl get endpointslices` /
//! `kubectl get endpoints` show them with Kubernetes' columns. Hollow node agents run the
//! pods and a test-only binder stands in for the scheduler.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use drover_node::{FleetConfig, run_hollow_fleet};
use serde_json::Value;

const NODES: usize = 2;

/// Polls kubectl until `cond` holds on its output; returns that output (a guard of 60 s
/// fails the test; the loop ends as soon as the condition holds).
fn eventually(c: &Cluster, args: &[&str], what: &str, cond: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = c.ok(args);
        if cond(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for: {what}; last output:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_endpointslices_and_endpoints() {
    let c = Cluster::start().await;
    let _fleet = run_hollow_fleet(c.store.clone(), NODES, FleetConfig::default())
        .await
        .unwrap();
    let binder = tokio::spawn(common::bind_round_robin(c.store.clone(), NODES));
    tokio::task::block_in_place(|| scenario(&c));
    binder.abort();
}

fn ready_endpoints(out: &str) -> usize {
    let list: Value = serde_json::from_str(out).unwrap();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        .filter(|e| e["conditions"]["ready"] == true)
        .count()
}

fn scenario(c: &Cluster) {
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1",
        "--replicas=2",
    ]);
    c.ok(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--target-port=8080",
    ]);
    let by_service = "-l=kubernetes.io/service-name=web";
    let out = eventually(
        c,
        &["get", "endpointslices", by_service, "-o", "json"],
        "two ready endpoints",
        |out| ready_endpoints(out) == 2,
    );
    let list: Value = serde_json::from_str(&out).unwrap();
    let slice = &list["items"][0];
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["ports"][0]["port"], 8080);

    // The tables: NAME ADDRESSTYPE PORTS ENDPOINTS AGE and NAME ENDPOINTS AGE.
    let table = c.ok(&["get", "endpointslices", by_service]);
    let header = table.lines().next().unwrap_or_default();
    for column in ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"] {
        assert!(header.contains(column), "{table}");
    }
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with("web-"), "{table}");
    assert!(row.contains("IPv4") && row.contains("8080"), "{table}");
    let endpoints = eventually(
        c,
        &["get", "endpoints", "web"],
        "two addresses in the Endpoints table",
        |out| out.matches(":8080").count() == 2,
    );
    assert!(
        endpoints
            .lines()
            .next()
            .unwrap_or_default()
            .contains("ENDPOINTS"),
        "{endpoints}"
    );

    // Scaling down shows in both.
    c.ok(&["scale", "deployment", "web", "--replicas=1"]);
    eventually(
        c,
        &["get", "endpointslices", by_service, "-o", "json"],
        "one endpoint",
        |out| {
            let list: Value = serde_json::from_str(out).unwrap();
            list["items"][0]["endpoints"].as_array().map_or(0, Vec::len) == 1
        },
    );
    eventually(c, &["get", "endpoints", "web"], "one address", |out| {
        out.matches(":8080").count() == 1
    });
}
