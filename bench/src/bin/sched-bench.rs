//! `sched-bench`: scheduler throughput and per-pod scheduling latency, in the shape of
//! Kubernetes' scheduler_perf: N Node objects (no agents; the scheduler needs no
//! kubelet), then N x pods-per-node pods, all against drover's real store (its own
//! nats-server with `sync_interval: always`, as `drover up` runs it) and the real
//! scheduler in this process.
//!
//! Two modes:
//! - `streaming` (default): pods are created (`--create-parallel` in flight) while the
//!   scheduler runs; latency is create acknowledged -> bind seen by a watch.
//! - `backlog`: every pod is created first, then the scheduler starts; measures the
//!   scheduler draining a backlog (no create writes competing for the disk).
//!
//! Reports pods bound per second (store-bound), the scheduler's decision throughput
//! (decisions per second of time spent deciding, no I/O), and latency p50/p99.
//! Not a test: it measures and prints markdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use drover_bench::servers;
use drover_scheduler::{Scheduler, SchedulerConfig};
use drover_store::{Store, StoreConfig, WatchEvent, WatchOptions, object};
use futures::StreamExt;
use hdrhistogram::Histogram;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

/// Hang guard for the whole run (never a measurement bound).
const GUARD: Duration = Duration::from_secs(1800);

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Mode {
    Streaming,
    Backlog,
}

#[derive(Parser, Debug)]
#[command(about = "Scheduler throughput and latency against drover's store (scheduler_perf style)")]
struct Args {
    /// Node objects.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Pods per node.
    #[arg(long, default_value_t = 30)]
    pods_per_node: usize,
    /// streaming (create while scheduling) or backlog (create all, then schedule).
    #[arg(long, value_enum, default_value_t = Mode::Streaming)]
    mode: Mode,
    /// Creates in flight.
    #[arg(long, default_value_t = 64)]
    create_parallel: usize,
    /// Binds in flight in the scheduler.
    #[arg(long, default_value_t = drover_scheduler::scheduler::DEFAULT_BINDS_IN_FLIGHT)]
    binds_in_flight: usize,
    /// Do not write the `Scheduled` event per pod.
    #[arg(long)]
    no_scheduled_events: bool,
    /// Most binds per atomic batch (1: every bind its own write, 64 in flight).
    #[arg(long, default_value_t = drover_scheduler::scheduler::MAX_BIND_BATCH)]
    bind_batch: usize,
}

fn pods_kind() -> &'static bus_schema::KindInfo {
    bus_schema::kinds::of::<Pod>()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    tokio::time::timeout(GUARD, run(args))
        .await
        .context("the bench hit its hang guard")?
}

async fn run(args: Args) -> Result<()> {
    let (nats, client) = servers::start_nats().await?;
    let store = Store::new(client, StoreConfig::default()).await?;
    let n_pods = args.nodes * args.pods_per_node;

    let t = Instant::now();
    create_all(
        args.create_parallel,
        (0..args.nodes).map(node),
        &store,
        bus_schema::kinds::of::<Node>(),
    )
    .await?;
    let nodes_s = t.elapsed().as_secs_f64();
    eprintln!("{} nodes created in {nodes_s:.1} s", args.nodes);

    let config = SchedulerConfig {
        binds_in_flight: args.binds_in_flight,
        scheduled_events: !args.no_scheduled_events,
        bind_batch: args.bind_batch,
        ..SchedulerConfig::default()
    };
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let from_rv = store.revision(pods_kind()).await?;
    // The observer: a watch on pods records when each is first seen bound.
    let watch = store
        .watch(pods_kind(), None, from_rv, WatchOptions::default())
        .await?;
    let observer = tokio::spawn(observe(watch, n_pods));

    let mut scheduler: Option<Scheduler> = None;
    if args.mode == Mode::Streaming {
        scheduler = Some(Scheduler::start_with(store.clone(), config.clone()));
    }
    let t_create = Instant::now();
    {
        let created = created.clone();
        let store2 = store.clone();
        futures::stream::iter((0..n_pods).map(|i| {
            let store = store2.clone();
            let created = created.clone();
            async move {
                let name = format!("pod-{i:06}");
                store.create(pods_kind(), pod(&name)).await?;
                created.lock().unwrap().insert(name, Instant::now());
                anyhow::Ok(())
            }
        }))
        .buffer_unordered(args.create_parallel)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    }
    let create_s = t_create.elapsed().as_secs_f64();
    eprintln!("{n_pods} pods created in {create_s:.1} s");
    let t_sched = Instant::now();
    if scheduler.is_none() {
        scheduler = Some(Scheduler::start_with(store.clone(), config));
    }
    let scheduler = scheduler.expect("started");
    let bound_at: HashMap<String, Instant> = observer.await??;
    let stats = scheduler.stats();
    let all_bound = bound_at.values().max().copied().unwrap_or(t_sched);
    let first_bound = bound_at.values().min().copied().unwrap_or(t_sched);

    let created = created.lock().unwrap().clone();
    let mut latency = Histogram::<u64>::new(3)?;
    for (name, at) in &bound_at {
        if let Some(c) = created.get(name) {
            latency.record(at.saturating_duration_since(*c).as_micros() as u64)?;
        }
    }
    let start = if args.mode == Mode::Streaming {
        t_create
    } else {
        t_sched
    };
    let window = all_bound.saturating_duration_since(start).as_secs_f64();
    let bind_window = all_bound
        .saturating_duration_since(first_bound)
        .as_secs_f64();
    let decisions = stats.decisions.load(std::sync::atomic::Ordering::Relaxed);
    let decide_s = stats
        .decide_nanos
        .load(std::sync::atomic::Ordering::Relaxed) as f64
        / 1e9;
    println!(
        "| nodes | pods | mode | bind batch | pods bound/s (first create or scheduler start -> last bind) | bound/s (first -> last bind) | decisions/s (CPU time deciding) | mean decision | latency p50 | latency p99 | events written / dropped |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {:?} | {} | {:.0} | {:.0} | {:.0} | {:.0} µs | {:.0} ms | {:.0} ms | {} / {} |",
        args.nodes,
        bound_at.len(),
        args.mode,
        args.bind_batch,
        bound_at.len() as f64 / window.max(1e-9),
        bound_at.len() as f64 / bind_window.max(1e-9),
        decisions as f64 / decide_s.max(1e-9),
        decide_s * 1e6 / decisions.max(1) as f64,
        latency.value_at_quantile(0.5) as f64 / 1000.0,
        latency.value_at_quantile(0.99) as f64 / 1000.0,
        stats
            .events_written
            .load(std::sync::atomic::Ordering::Relaxed),
        stats
            .events_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    eprintln!(
        "nodes {nodes_s:.1} s; creates {create_s:.1} s ({:.0}/s); bind failures {}",
        n_pods as f64 / create_s,
        stats
            .bind_failures
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    scheduler.stop().await;
    nats.stop().await;
    Ok(())
}

/// Follows the pods watch until `n` pods were seen bound; when each was first seen so.
async fn observe(mut watch: drover_store::Watch, n: usize) -> Result<HashMap<String, Instant>> {
    let mut bound = HashMap::with_capacity(n);
    while bound.len() < n {
        let Some(event) = watch.next().await else {
            bail!("the pods watch ended");
        };
        if let WatchEvent::Added(o) | WatchEvent::Modified(o) = event?
            && o.pointer("/spec/nodeName").is_some_and(|v| v != "")
        {
            bound
                .entry(object::name(&o).to_string())
                .or_insert_with(Instant::now);
        }
    }
    Ok(bound)
}

async fn create_all(
    parallel: usize,
    objects: impl Iterator<Item = Value>,
    store: &Store,
    kind: &'static bus_schema::KindInfo,
) -> Result<()> {
    futures::stream::iter(objects.map(|o| {
        let store = store.clone();
        async move { store.create(kind, o).await.map(|_| ()) }
    }))
    .buffer_unordered(parallel)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    Ok(())
}

/// A Node like a kubelet registers (32 cpu, 128 GiB, 110 pods), Ready, in one of 10
/// zones.
fn node(i: usize) -> Value {
    let name = format!("node-{i:05}");
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": format!("zone-{}", i % 10)}},
        "spec": {},
        "status": {
            "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
            "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    })
}

/// scheduler_perf's default pod: one container requesting 100m cpu and 500Mi memory.
fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]}
    })
}
