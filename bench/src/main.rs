//! `store-bench`: drover's store (JetStream KV, fsync per write) side by side with etcd
//! 3.4 (fsync per commit), same workload, same object bytes. Not a test: it measures
//! and prints a markdown table (see BENCHMARKS.md; run it with `scripts/bench-store`).
//!
//! Each (system, round) runs in a fresh child process of this binary with a fresh server,
//! so neither system inherits the other's heap, runtime or page cache state; rounds
//! alternate which system goes first, and the table reports the median of the rounds.
//! Every server is started by the bench on 127.0.0.1 with a temp data dir and stopped by
//! PID, also on error or Ctrl-C.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use tokio::signal::unix::SignalKind;

use drover_bench::backend::drover::DroverBackend;
use drover_bench::backend::etcd::EtcdBackend;
use drover_bench::servers::RoundProcess;
use drover_bench::workload::{Params, PodFactory, SystemResults};
use drover_bench::{disk, report, servers, workload};

/// Full-run sizes; `--quick` uses the `QUICK_*` ones.
const FULL_OBJECTS: usize = 2000;
const FULL_WATCHERS: usize = 1000;
const FULL_LIST_REPEATS: usize = 20;
const FULL_WATCH_UPDATES: usize = 500;
const FULL_FANOUT_WRITES: usize = 200;
const FULL_ROUNDS: usize = 5;
const QUICK_OBJECTS: usize = 200;
const QUICK_WATCHERS: usize = 100;
const QUICK_LIST_REPEATS: usize = 5;
const QUICK_WATCH_UPDATES: usize = 50;
const QUICK_FANOUT_WRITES: usize = 20;
const QUICK_ROUNDS: usize = 1;
/// Clients in flight in the concurrent phases.
const DEFAULT_CONCURRENCY: usize = 32;
/// How long the disk's durable-write rate is probed, before and after the rounds.
const DISK_PROBE: Duration = Duration::from_secs(2);
/// Random gets per object.
const GETS_PER_OBJECT: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum System {
    Drover,
    Etcd,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Drover => "drover",
            System::Etcd => "etcd",
        }
    }
}

/// drover store vs etcd 3.4 at equal durability.
#[derive(Debug, Parser)]
#[command(name = "store-bench")]
struct Args {
    /// Small sizes and one round, for a smoke run (explicit sizes still win).
    #[arg(long)]
    quick: bool,
    /// Objects per create phase (also the list size) [default: 2000, quick 200].
    #[arg(long)]
    objects: Option<usize>,
    /// Watchers in the fan-out phase [default: 1000, quick 100].
    #[arg(long)]
    watchers: Option<usize>,
    /// Clients in flight in the concurrent phases.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// Full lists [default: 20, quick 5].
    #[arg(long)]
    list_repeats: Option<usize>,
    /// Writes observed by the single watcher [default: 500, quick 50].
    #[arg(long)]
    watch_updates: Option<usize>,
    /// Writes observed by every fan-out watcher [default: 200, quick 20].
    #[arg(long)]
    fanout_writes: Option<usize>,
    /// Rounds per system; the table shows the median [default: 5, quick 1].
    #[arg(long)]
    rounds: Option<usize>,
    /// Run only this system.
    #[arg(long, value_enum)]
    only: Option<System>,
    /// Also write the results (markdown) to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Leave the pods bucket's consumer limit as drover-store creates it (nats-server
    /// 2.15: 1,000 per stream), which makes 1,000 watchers fail.
    #[arg(long)]
    keep_consumer_limit: bool,
    /// Internal: run one round of this system and write its results (JSON) to `--out`.
    #[arg(long, value_enum, hide = true, requires = "out")]
    round_of: Option<System>,
    /// Internal: where a round writes its results.
    #[arg(long, hide = true)]
    out: Option<PathBuf>,
}

impl Args {
    fn params(&self) -> Params {
        let pick = |explicit: Option<usize>, full: usize, quick: usize| {
            explicit.unwrap_or(if self.quick { quick } else { full })
        };
        let objects = pick(self.objects, FULL_OBJECTS, QUICK_OBJECTS).max(2);
        Params {
            objects,
            concurrency: self.concurrency.max(1),
            gets: objects * GETS_PER_OBJECT,
            list_repeats: pick(self.list_repeats, FULL_LIST_REPEATS, QUICK_LIST_REPEATS).max(1),
            watch_updates: pick(self.watch_updates, FULL_WATCH_UPDATES, QUICK_WATCH_UPDATES).max(1),
            watchers: pick(self.watchers, FULL_WATCHERS, QUICK_WATCHERS).max(1),
            fanout_writes: pick(self.fanout_writes, FULL_FANOUT_WRITES, QUICK_FANOUT_WRITES).max(1),
        }
    }

    fn rounds(&self) -> usize {
        self.rounds
            .unwrap_or(if self.quick {
                QUICK_ROUNDS
            } else {
                FULL_ROUNDS
            })
            .max(1)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut terminate = tokio::signal::unix::signal(SignalKind::terminate())?;
    // On Ctrl-C or SIGTERM the future is dropped: server guards kill their servers, and
    // round processes get SIGTERM (see `RoundProcess`) and do the same for theirs.
    tokio::select! {
        result = async {
            match (args.round_of, &args.out) {
                (Some(system), Some(out)) => run_round(&args, system, out).await,
                _ => run_all(&args).await,
            }
        } => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; servers stopped"),
        _ = terminate.recv() => bail!("terminated; servers stopped"),
    }
}

/// Parent: runs every round in a child process, then prints the medians.
async fn run_all(args: &Args) -> Result<()> {
    let params = args.params();
    let rounds = args.rounds();
    let mut env = report::Environment::collect();
    env.disk_before = Some(disk::probe(DISK_PROBE)?);
    let object_bytes = PodFactory::new(workload::TARGET_OBJECT_BYTES)?.encoded_len()?;
    eprintln!("store-bench: {params:?}, {rounds} round(s), objects of {object_bytes} B");
    let systems: Vec<System> = [System::Drover, System::Etcd]
        .into_iter()
        .filter(|s| args.only.is_none_or(|only| only == *s))
        .collect();

    let scratch = tempfile::Builder::new()
        .prefix("drover-bench-rounds-")
        .tempdir()?;
    let mut drover_rounds = Vec::new();
    let mut etcd_rounds = Vec::new();
    for round in 0..rounds {
        // Alternate who goes first, so slow drifts of a shared machine hit both alike.
        let mut order = systems.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for system in order {
            eprintln!(
                "store-bench: round {}/{rounds}: {}",
                round + 1,
                system.name()
            );
            let out = scratch
                .path()
                .join(format!("{}-{round}.json", system.name()));
            let results = run_child(args, &params, system, &out).await?;
            eprintln!("store-bench:   {}", summary(&results));
            match system {
                System::Drover => drover_rounds.push(results),
                System::Etcd => etcd_rounds.push(results),
            }
        }
    }

    env.disk_after = Some(disk::probe(DISK_PROBE)?);
    let markdown = report::render(&env, &params, object_bytes, &drover_rounds, &etcd_rounds);
    println!("{markdown}");
    if let Some(path) = &args.markdown {
        std::fs::write(path, &markdown).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("store-bench: wrote {}", path.display());
    }
    Ok(())
}

/// One line per round: every throughput.
fn summary(results: &SystemResults) -> String {
    let rates: Vec<String> = results
        .rows
        .iter()
        .filter_map(|(label, m)| {
            m.rate
                .as_ref()
                .map(|r| format!("{label}: {:.0} {}", r.per_s, r.unit))
        })
        .collect();
    rates.join("; ")
}

/// Runs one round of `system` in a fresh process of this binary.
async fn run_child(
    args: &Args,
    params: &Params,
    system: System,
    out: &std::path::Path,
) -> Result<SystemResults> {
    let exe = std::env::current_exe().context("finding the store-bench binary")?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("--round-of")
        .arg(system.name())
        .arg("--out")
        .arg(out)
        .arg("--objects")
        .arg(params.objects.to_string())
        .arg("--watchers")
        .arg(params.watchers.to_string())
        .arg("--concurrency")
        .arg(params.concurrency.to_string())
        .arg("--list-repeats")
        .arg(params.list_repeats.to_string())
        .arg("--watch-updates")
        .arg(params.watch_updates.to_string())
        .arg("--fanout-writes")
        .arg(params.fanout_writes.to_string())
        .stdin(Stdio::null());
    if args.keep_consumer_limit {
        cmd.arg("--keep-consumer-limit");
    }
    let mut round = RoundProcess(cmd.spawn().context("starting a round")?);
    let status = round.0.wait().await.context("running a round")?;
    if !status.success() {
        bail!("{} round failed ({status})", system.name());
    }
    let json = std::fs::read(out).with_context(|| format!("reading {}", out.display()))?;
    Ok(serde_json::from_slice(&json)?)
}

/// Child: one round of one system against a fresh server.
async fn run_round(args: &Args, system: System, out: &std::path::Path) -> Result<()> {
    let params = args.params();
    let factory = PodFactory::new(workload::TARGET_OBJECT_BYTES)?;
    let results = match system {
        System::Drover => {
            let (nats, client) = servers::start_nats().await?;
            let (backend, note) = DroverBackend::new(client, !args.keep_consumer_limit).await?;
            let mut results = workload::run(&backend, &params, &factory, nats.pid())
                .await
                .context("drover")?;
            results.notes.extend(note);
            drop(backend);
            nats.stop().await;
            results
        }
        System::Etcd => {
            let (server, client, url) = servers::start_etcd().await?;
            let backend = EtcdBackend::new(&client, url);
            let results = workload::run(&backend, &params, &factory, server.pid())
                .await
                .context("etcd")?;
            drop((backend, client));
            server.stop().await;
            results
        }
    };
    std::fs::write(out, serde_json::to_vec(&results)?)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
