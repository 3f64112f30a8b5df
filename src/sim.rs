//! `drover sim`: a fleet of hollow nodes (the node agent over the hollow runtime, no
//! processes) in one process against a running control plane, with optional pods bound to
//! each node, for scale tests of everything above the node.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use drover_node::fleet::FleetGossip;
use drover_node::{FleetConfig, run_hollow_fleet};
use drover_store::{Store, StoreConfig};
use serde_json::json;

/// Arguments of `drover sim`.
#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// NATS URL of the control plane (`drover up` listens on 4222 by default).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// Number of hollow nodes.
    #[arg(long, default_value_t = 10)]
    pub nodes: usize,
    /// Pods created per node (bound to it, in namespace `default`).
    #[arg(long, default_value_t = 0)]
    pub pods_per_node: usize,
    /// Cluster CIDR the nodes' /24 pod CIDRs come from (a /16 holds 256 nodes).
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// Exit once every node is registered and every pod Running (for scripts and tests).
    #[arg(long)]
    pub exit_when_ready: bool,
    /// Join every hollow node to the gossip (SWIM over UDP, a port per node) through this
    /// member, e.g. the control plane's `--gossip-bind` (repeatable or comma-separated).
    #[arg(long = "gossip-seed", value_name = "ADDR:PORT", value_delimiter = ',')]
    pub gossip_seeds: Vec<std::net::SocketAddr>,
    /// The IP the hollow nodes' gossip sockets bind.
    #[arg(long, default_value = "127.0.0.1", requires = "gossip_seeds")]
    pub gossip_bind_ip: std::net::IpAddr,
    /// Run the bus heartbeat and StatefulSet fence on every hollow node (costly: a server
    /// round trip per node every 500 ms).
    #[arg(long, requires = "gossip_seeds")]
    pub fence: bool,
}

/// How long `drover sim` waits for its first node to see the whole fleet in the gossip
/// before it reports what it sees and goes on.
const GOSSIP_SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `--exit-when-ready` waits for the pods before giving up.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the fleet until SIGINT/SIGTERM (or until ready with `--exit-when-ready`).
pub async fn run(args: SimArgs) -> Result<()> {
    let started = Instant::now();
    let client = async_nats::connect(&args.nats)
        .await
        .with_context(|| format!("connecting to {}", args.nats))?;
    let store = Store::new(client, StoreConfig::default()).await?;
    let gossip = (!args.gossip_seeds.is_empty()).then(|| FleetGossip {
        seeds: args.gossip_seeds.clone(),
        bind_ip: args.gossip_bind_ip,
        // The fleet and the seeds' side (at least the control plane).
        expected_members: u32::try_from(args.nodes + 1).unwrap_or(u32::MAX),
        fence: args.fence,
        ..FleetGossip::default()
    });
    let config = FleetConfig {
        cluster_cidr: args.cluster_cidr.clone(),
        gossip,
        ..FleetConfig::default()
    };
    let fleet = run_hollow_fleet(store.clone(), args.nodes, config).await?;
    eprintln!(
        "drover sim: {} hollow nodes registered in {} ms",
        args.nodes,
        started.elapsed().as_millis()
    );
    if let Some(m) = fleet.agents.first().and_then(|a| a.membership()) {
        // Every node and (usually) one member per seed, such as the control plane.
        let seen = settle_gossip(m, args.nodes + args.gossip_seeds.len()).await;
        eprintln!(
            "drover sim: gossip: {seen} members alive as seen by {} after {} ms",
            fleet.agents[0].node_name(),
            started.elapsed().as_millis()
        );
    }
    let pods = bus_schema::kinds::by_group_kind("", "Pod").context("Pod kind")?;
    let pods_started = Instant::now();
    for agent in &fleet.agents {
        for i in 0..args.pods_per_node {
            let name = format!("{}-pod-{i}", agent.node_name());
            let pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default", "labels": {"drover.io/sim": "true"}},
                "spec": {"nodeName": agent.node_name(), "containers": [{"name": "c", "image": "hollow:1"}]}});
            match store.create(pods, pod).await {
                Ok(_) | Err(drover_store::StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let want = args.nodes * args.pods_per_node;
    if want > 0 {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let listed = store
                .list(pods, Some("default"), &drover_store::ListOptions::default())
                .await?;
            let running = listed
                .items
                .iter()
                .filter(|p| p.pointer("/metadata/labels/drover.io~1sim").is_some())
                .filter(|p| p.pointer("/status/phase").and_then(|v| v.as_str()) == Some("Running"))
                .count();
            if running >= want {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {running} of {want} pods Running after {READY_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!(
            "drover sim: {want} pods Running in {} ms",
            pods_started.elapsed().as_millis()
        );
    }
    if !args.exit_when_ready {
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm.recv() => {}
        }
    }
    fleet.stop().await;
    Ok(())
}

/// Waits (at most [`GOSSIP_SETTLE_TIMEOUT`]) until `member` sees `want` members alive
/// (itself included); returns how many it sees alive then.
async fn settle_gossip(member: &drover_membership::Membership, want: usize) -> usize {
    let alive = |ms: &[drover_membership::Member]| {
        ms.iter()
            .filter(|m| m.state == drover_membership::MemberState::Alive)
            .count()
    };
    let mut view = member.watch();
    let wait = view.wait_for(|ms| alive(ms) >= want);
    let _ = tokio::time::timeout(GOSSIP_SETTLE_TIMEOUT, wait).await;
    alive(&member.members())
}
