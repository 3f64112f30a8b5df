//! `deploy-bench`: how long a Deployment of N replicas takes from its create call to
//! every pod Running (and to the Deployment reporting them all available), and how many
//! store writes that costs per pod.
//!
//! Everything is real except the containers: its own nats-server with fsync before every
//! acknowledgement (`sync_interval: always`, as `drover up` runs it), the store, the
//! controllers as `drover up` starts them (`Controllers::start`), the real scheduler, and
//! `--nodes` hollow node agents (the real NodeActor and PodActors over the hollow
//! runtime, which starts a container at once). All in this process, on 127.0.0.1.
//!
//! Writes are counted exactly: every store write is one message in its kind's JetStream
//! stream, so the writes of the run are the growth of every stream's last sequence.
//! The node agents' own periodic writes (leases, node status) go on during the run; they
//! are measured over an idle window before the create and subtracted, and shown.
//! Not a test: it measures and prints markdown.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use drover_bench::servers;
use drover_controllers::Controllers;
use drover_node::{FleetConfig, run_hollow_fleet};
use drover_store::{Store, StoreConfig, WatchEvent, WatchOptions, object};
use futures::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Hang guard for the whole run (never a measurement bound).
const GUARD: Duration = Duration::from_secs(1800);

#[derive(Parser, Debug)]
#[command(about = "Deployment created -> all pods Running, and store writes per pod")]
struct Args {
    /// Replicas of the Deployment.
    #[arg(long, default_value_t = 1000)]
    replicas: usize,
    /// Hollow node agents.
    #[arg(long, default_value_t = 50)]
    nodes: usize,
    /// Idle window before the create that measures the agents' background writes.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    tokio::time::timeout(GUARD, run(args))
        .await
        .context("the bench hit its hang guard")?
}

fn kind(group: &str, kind: &str) -> &'static bus_schema::KindInfo {
    bus_schema::kinds::by_group_kind(group, kind).expect("a built-in kind")
}

/// Last sequence of every JetStream stream (one per kind bucket), by stream name.
async fn sequences(js: &async_nats::jetstream::Context) -> Result<BTreeMap<String, u64>> {
    let infos: Vec<_> = js.streams().try_collect().await?;
    Ok(infos
        .into_iter()
        .map(|i| (i.config.name, i.state.last_sequence))
        .collect())
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(name, seq)| (name.clone(), seq - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, d)| *d > 0)
        .collect()
}

async fn run(args: Args) -> Result<()> {
    let (nats, client) = servers::start_nats().await?;
    let js = async_nats::jetstream::new(client.clone());
    let store = Store::new(client, StoreConfig::default()).await?;
    let controllers = Controllers::start(store.clone());
    let scheduler = drover_scheduler::scheduler::start(store.clone());
    let t = Instant::now();
    let fleet = run_hollow_fleet(store.clone(), args.nodes, FleetConfig::default()).await?;
    eprintln!(
        "{} hollow nodes registered in {:.1} s",
        args.nodes,
        t.elapsed().as_secs_f64()
    );

    // Background: what the agents write with nothing to do.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_from = sequences(&js).await?;
    let idle_t = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let idle = delta(&idle_from, &sequences(&js).await?);
    let idle_s = idle_t.elapsed().as_secs_f64();
    let idle_rate: BTreeMap<String, f64> = idle
        .iter()
        .map(|(k, v)| (k.clone(), *v as f64 / idle_s))
        .collect();

    let pods = kind("", "Pod");
    let deployments = kind("apps", "Deployment");
    let from_rv = store.revision(pods).await?;
    let mut watch = store
        .watch(pods, Some("default"), from_rv, WatchOptions::default())
        .await?;
    let before = sequences(&js).await?;
    let t0 = Instant::now();
    store.create(deployments, deployment(args.replicas)).await?;
    let created_s = t0.elapsed().as_secs_f64();

    // Each pod: when it was first seen, bound, and Running.
    let mut seen: HashMap<String, Instant> = HashMap::new();
    let mut bound: HashMap<String, Instant> = HashMap::new();
    let mut running: HashMap<String, Instant> = HashMap::new();
    while running.len() < args.replicas {
        let Some(event) = watch.next().await else {
            bail!("the pods watch ended");
        };
        let (WatchEvent::Added(p) | WatchEvent::Modified(p)) = event? else {
            continue;
        };
        let name = object::name(&p).to_string();
        let now = Instant::now();
        seen.entry(name.clone()).or_insert(now);
        if p.pointer("/spec/nodeName").is_some_and(|n| n != "") {
            bound.entry(name.clone()).or_insert(now);
        }
        if p.pointer("/status/phase").and_then(Value::as_str) == Some("Running") {
            running.entry(name).or_insert(now);
        }
    }
    let all_running = t0.elapsed();
    // The Deployment's own view: every replica updated and available.
    let all_available = loop {
        let d = store.get(deployments, Some("default"), "bench").await?;
        let available = d
            .pointer("/status/availableReplicas")
            .and_then(Value::as_u64);
        if available == Some(args.replicas as u64) {
            break t0.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Let the last status writes land before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let run_s = t0.elapsed().as_secs_f64();
    let writes = delta(&before, &sequences(&js).await?);

    let mut to_running = Histogram::<u64>::new(3)?;
    let mut create_to_running = Histogram::<u64>::new(3)?;
    for (name, at) in &running {
        to_running.record(at.duration_since(t0).as_millis() as u64)?;
        if let Some(s) = seen.get(name) {
            create_to_running.record(at.saturating_duration_since(*s).as_millis() as u64)?;
        }
    }
    let last_seen = seen
        .values()
        .max()
        .map(|t| t.duration_since(t0))
        .unwrap_or_default();
    let last_bound = bound
        .values()
        .max()
        .map(|t| t.duration_since(t0))
        .unwrap_or_default();

    println!(
        "| replicas | hollow nodes | create acked | last pod created | last pod bound | all Running | Deployment available | pod Running after Deployment create p50 / p99 | pod object created -> Running p50 / p99 |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {:.0} ms | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.2} s / {:.2} s | {:.0} ms / {:.0} ms |",
        args.replicas,
        args.nodes,
        created_s * 1000.0,
        last_seen.as_secs_f64(),
        last_bound.as_secs_f64(),
        all_running.as_secs_f64(),
        all_available.as_secs_f64(),
        to_running.value_at_quantile(0.5) as f64 / 1000.0,
        to_running.value_at_quantile(0.99) as f64 / 1000.0,
        create_to_running.value_at_quantile(0.5) as f64,
        create_to_running.value_at_quantile(0.99) as f64,
    );
    println!();
    println!(
        "Store writes from the create until {run_s:.1} s (all available + 2 s), per stream; background = the agents' idle rate over {idle_s:.0} s times the run's length:"
    );
    println!();
    println!("| stream | writes | background | writes - background | per pod |");
    println!("|---|---:|---:|---:|---:|");
    let (mut total, mut total_bg) = (0f64, 0f64);
    for (name, n) in &writes {
        let bg = idle_rate.get(name).copied().unwrap_or(0.0) * run_s;
        let net = (*n as f64 - bg).max(0.0);
        total += net;
        total_bg += bg;
        println!(
            "| {name} | {n} | {bg:.0} | {net:.0} | {:.2} |",
            net / args.replicas as f64
        );
    }
    println!(
        "| **all** | {} | {total_bg:.0} | {total:.0} | **{:.2}** |",
        writes.values().sum::<u64>(),
        total / args.replicas as f64
    );

    scheduler.stop().await;
    fleet.stop().await;
    drop(controllers);
    nats.stop().await;
    Ok(())
}

/// A Deployment of `replicas` hollow pods, one container each with small requests (50
/// nodes of the hollow fleet's default capacity hold 1,000 of them).
fn deployment(replicas: usize) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bench", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "bench"}},
            "template": {
                "metadata": {"labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "c", "image": "hollow:1",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
            }
        }
    })
}
