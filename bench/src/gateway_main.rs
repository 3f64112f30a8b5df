//! `gateway-bench`: drover's gateway over HTTPS side by side with the same operations on
//! the store directly, plus a fixed-rate run of mutating requests. Not a test: it
//! measures and prints a markdown table (see BENCHMARKS.md; run it with
//! `scripts/bench-gateway`).
//!
//! Each round runs in a fresh child process of this binary with one fresh nats-server
//! per side (started on 127.0.0.1 with a temp data dir, stopped by PID, also on error or
//! Ctrl-C). Within a round the sides take turns phase by phase, who goes first
//! alternating, so that the shared machine's drift (mostly the disk's sync rate) hits
//! both alike; the table reports the median of the rounds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use drover_bench::gateway_bench::https::ApiClient;
use drover_bench::gateway_bench::phases::{self, Params, RoundResults, SideUnderTest};
use drover_bench::gateway_bench::report;
use drover_bench::gateway_bench::side::{AnySide, GatewaySide, StoreSide, pods_kind};
use drover_bench::servers::{self, RoundProcess};
use drover_bench::workload::{PodFactory, TARGET_OBJECT_BYTES};
use drover_bench::{disk, report::Environment};
use drover_gateway::auth::{Auth, MastersOnly};
use drover_gateway::pki::Pki;
use drover_gateway::{Gateway, GatewayConfig};
use drover_store::{Store, StoreConfig};
use serde::{Deserialize, Serialize};
use tokio::signal::unix::SignalKind;

/// Full-run sizes; `--quick` uses the `QUICK_*` ones.
const FULL_PODS: usize = 1000;
const FULL_SERIAL_OPS: usize = 200;
const FULL_GETS: usize = 2000;
const FULL_LISTS: usize = 20;
const FULL_WATCH_WRITES: usize = 200;
const FULL_WATCHERS: usize = 1000;
const FULL_FANOUT_WRITES: usize = 50;
const FULL_RATE_SECONDS: f64 = 10.0;
const FULL_ROUNDS: usize = 5;
const QUICK_PODS: usize = 200;
const QUICK_SERIAL_OPS: usize = 50;
const QUICK_GETS: usize = 400;
const QUICK_LISTS: usize = 5;
const QUICK_WATCH_WRITES: usize = 30;
const QUICK_WATCHERS: usize = 100;
const QUICK_FANOUT_WRITES: usize = 10;
const QUICK_RATE_SECONDS: f64 = 2.0;
const QUICK_ROUNDS: usize = 1;
/// Clients in flight in the concurrent phases and connections of the fixed-rate run.
const DEFAULT_CLIENTS: usize = 50;
/// Offered load of the fixed-rate run (the goal: mutating p99 under 25 ms at this rate).
const DEFAULT_RATE_PER_S: u32 = 1000;
/// How long the disk's durable-write rate is probed, before and after the rounds.
const DISK_PROBE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SideName {
    Gateway,
    Store,
}

impl SideName {
    fn name(self) -> &'static str {
        match self {
            SideName::Gateway => "gateway",
            SideName::Store => "store",
        }
    }
}

/// drover's gateway over HTTPS vs the same operations on its store.
#[derive(Debug, Parser)]
#[command(name = "gateway-bench")]
struct Args {
    /// Small sizes, a 2 s fixed-rate run and one round, for a smoke run (explicit
    /// sizes still win).
    #[arg(long)]
    quick: bool,
    /// Pods in the main set, created concurrently, listed and patched [default: 1000,
    /// quick 200].
    #[arg(long)]
    pods: Option<usize>,
    /// Operations of each one-client phase [default: 200, quick 50].
    #[arg(long)]
    serial_ops: Option<usize>,
    /// Clients in flight in the concurrent phases (connections in the fixed-rate run).
    #[arg(long, default_value_t = DEFAULT_CLIENTS)]
    clients: usize,
    /// Gets at `--clients` clients [default: 2000, quick 400].
    #[arg(long)]
    gets: Option<usize>,
    /// Full lists of the main set [default: 20, quick 5].
    #[arg(long)]
    lists: Option<usize>,
    /// Writes observed by the single watcher [default: 200, quick 30].
    #[arg(long)]
    watch_writes: Option<usize>,
    /// Watchers in the fan-out phase [default: 1000, quick 100].
    #[arg(long)]
    watchers: Option<usize>,
    /// Writes observed by every fan-out watcher [default: 50, quick 10].
    #[arg(long)]
    fanout_writes: Option<usize>,
    /// Offered load of the fixed-rate run, mutating requests per second.
    #[arg(long, default_value_t = DEFAULT_RATE_PER_S)]
    rate: u32,
    /// Length of the fixed-rate run in seconds [default: 10, quick 2].
    #[arg(long)]
    rate_seconds: Option<f64>,
    /// Rounds per side; the table shows the median [default: 5, quick 1].
    #[arg(long)]
    rounds: Option<usize>,
    /// Run only this side.
    #[arg(long, value_enum)]
    only: Option<SideName>,
    /// Also write the results (markdown) to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Internal: run round N (0-based) and write its results (JSON) to `--out`.
    #[arg(long, hide = true, requires = "out")]
    round: Option<usize>,
    /// Internal: where a round writes its results.
    #[arg(long, hide = true)]
    out: Option<PathBuf>,
}

impl Args {
    fn params(&self) -> Params {
        let pick = |explicit: Option<usize>, full: usize, quick: usize| {
            explicit.unwrap_or(if self.quick { quick } else { full })
        };
        let rate_seconds = self.rate_seconds.unwrap_or(if self.quick {
            QUICK_RATE_SECONDS
        } else {
            FULL_RATE_SECONDS
        });
        Params {
            // The watch phases write to pods 0 and 1.
            pods: pick(self.pods, FULL_PODS, QUICK_PODS).max(2),
            serial_ops: pick(self.serial_ops, FULL_SERIAL_OPS, QUICK_SERIAL_OPS).max(1),
            clients: self.clients.max(1),
            gets: pick(self.gets, FULL_GETS, QUICK_GETS).max(1),
            lists: pick(self.lists, FULL_LISTS, QUICK_LISTS).max(1),
            watch_writes: pick(self.watch_writes, FULL_WATCH_WRITES, QUICK_WATCH_WRITES).max(1),
            watchers: pick(self.watchers, FULL_WATCHERS, QUICK_WATCHERS).max(1),
            fanout_writes: pick(self.fanout_writes, FULL_FANOUT_WRITES, QUICK_FANOUT_WRITES).max(1),
            rate_per_s: self.rate.max(1),
            rate_duration: Duration::from_secs_f64(rate_seconds.max(0.1)),
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
    // On Ctrl-C or SIGTERM the future is dropped: the nats-server guard kills its server,
    // and round processes get SIGTERM (see `RoundProcess`) and do the same for theirs.
    tokio::select! {
        result = async {
            match (args.round, &args.out) {
                (Some(round), Some(out)) => run_round(&args, round, out).await,
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
    let mut env = Environment::collect();
    env.disk_before = Some(disk::probe(DISK_PROBE)?);
    let object_bytes = PodFactory::new(TARGET_OBJECT_BYTES)?.encoded_len()?;
    eprintln!("gateway-bench: {params:?}, {rounds} round(s), pods of {object_bytes} B");
    let scratch = tempfile::Builder::new()
        .prefix("drover-bench-rounds-")
        .tempdir()?;
    let mut gateway_rounds = Vec::new();
    let mut store_rounds = Vec::new();
    for round in 0..rounds {
        eprintln!("gateway-bench: round {}/{rounds}", round + 1);
        let out = scratch.path().join(format!("round-{round}.json"));
        let results = run_child(args, &params, round, &out).await?;
        for (side, result) in results {
            match side {
                SideName::Gateway => gateway_rounds.push(result),
                SideName::Store => store_rounds.push(result),
            }
        }
    }

    env.disk_after = Some(disk::probe(DISK_PROBE)?);
    let ctx = report::Context {
        env: &env,
        params: &params,
        object_bytes,
    };
    let markdown = report::render(&ctx, &gateway_rounds, &store_rounds);
    println!("{markdown}");
    if let Some(path) = &args.markdown {
        std::fs::write(path, &markdown).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("gateway-bench: wrote {}", path.display());
    }
    Ok(())
}

/// Runs round `round` in a fresh process of this binary.
async fn run_child(
    args: &Args,
    params: &Params,
    round: usize,
    out: &Path,
) -> Result<Vec<(SideName, RoundResults)>> {
    let exe = std::env::current_exe().context("finding the gateway-bench binary")?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["--round", &round.to_string()])
        .arg("--out")
        .arg(out)
        .args(["--pods", &params.pods.to_string()])
        .args(["--serial-ops", &params.serial_ops.to_string()])
        .args(["--clients", &params.clients.to_string()])
        .args(["--gets", &params.gets.to_string()])
        .args(["--lists", &params.lists.to_string()])
        .args(["--watch-writes", &params.watch_writes.to_string()])
        .args(["--watchers", &params.watchers.to_string()])
        .args(["--fanout-writes", &params.fanout_writes.to_string()])
        .args(["--rate", &params.rate_per_s.to_string()])
        .args([
            "--rate-seconds",
            &params.rate_duration.as_secs_f64().to_string(),
        ])
        .stdin(Stdio::null());
    if let Some(only) = args.only {
        cmd.args(["--only", only.name()]);
    }
    let mut child = RoundProcess(cmd.spawn().context("starting a round")?);
    let status = child.0.wait().await.context("running a round")?;
    if !status.success() {
        bail!("round {} failed ({status})", round + 1);
    }
    let json = std::fs::read(out).with_context(|| format!("reading {}", out.display()))?;
    Ok(serde_json::from_slice(&json)?)
}

/// A side's servers, stopped in `stop` (or by their guards' `Drop` on error).
struct Running {
    nats: servers::ServerGuard,
    gateway: Option<Gateway>,
    // Holds the generated CA and token until the round ends.
    _pki_dir: Option<tempfile::TempDir>,
}

impl Running {
    async fn stop(self) {
        if let Some(gateway) = self.gateway {
            gateway.stop().await;
        }
        self.nats.stop().await;
    }
}

/// Starts `side` on its own fresh nats-server (and, for the gateway, the gateway).
async fn start_side(side: SideName) -> Result<(SideUnderTest, Running)> {
    let (nats, client) = servers::start_nats().await?;
    let store = Store::new(client, StoreConfig::default()).await?;
    // Create the pods bucket up front on both sides, so no measured operation pays for it.
    store
        .ensure_buckets(std::slice::from_ref(pods_kind()))
        .await?;
    let server_pid = nats.pid();
    match side {
        SideName::Gateway => {
            let pki_dir = tempfile::Builder::new()
                .prefix("drover-bench-pki-")
                .tempdir()?;
            let pki = Pki::load_or_create(&pki_dir.path().join("pki"), &[])?;
            let auth = Arc::new(Auth::new(pki.admin_token.clone(), Box::new(MastersOnly)));
            let bind: SocketAddr = "127.0.0.1:0".parse()?;
            let gateway = Gateway::start(
                store.clone(),
                GatewayConfig {
                    bind,
                    tls: pki.clone(),
                    auth,
                },
            )
            .await
            .context("starting the gateway")?;
            let running = Running {
                nats,
                gateway: Some(gateway),
                _pki_dir: Some(pki_dir),
            };
            let addr = running.gateway.as_ref().map(|g| g.addr);
            let api = ApiClient::new(
                addr.context("gateway address")?,
                &pki.ca_pem,
                &pki.admin_token,
            )?;
            let gateway_side = GatewaySide::new(api).await?;
            let under_test = SideUnderTest {
                side: AnySide::Gateway(gateway_side),
                writer: store,
                server_pid,
            };
            Ok((under_test, running))
        }
        SideName::Store => {
            let under_test = SideUnderTest {
                side: AnySide::Store(StoreSide::new(store.clone())),
                writer: store,
                server_pid,
            };
            let running = Running {
                nats,
                gateway: None,
                _pki_dir: None,
            };
            Ok((under_test, running))
        }
    }
}

/// Child: one round, every side on its own fresh nats-server, the sides taking turns.
async fn run_round(args: &Args, round: usize, out: &Path) -> Result<()> {
    let params = args.params();
    let factory = PodFactory::new(TARGET_OBJECT_BYTES)?;
    let names: Vec<SideName> = [SideName::Gateway, SideName::Store]
        .into_iter()
        .filter(|s| args.only.is_none_or(|only| only == *s))
        .collect();
    let mut sides = Vec::new();
    let mut running = Vec::new();
    for name in &names {
        let (side, servers) = start_side(*name)
            .await
            .with_context(|| format!("starting the {} side", name.name()))?;
        sides.push(side);
        running.push(servers);
    }
    let results = phases::run(&sides, round, &params, &factory).await;
    drop(sides);
    for servers in running {
        servers.stop().await;
    }
    let named: Vec<(SideName, RoundResults)> = names.into_iter().zip(results?).collect();
    std::fs::write(out, serde_json::to_vec(&named)?)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
