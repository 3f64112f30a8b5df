//! `svc-bench`: Service load balancing side by side, on one machine, as root.
//!
//! For each N services (and each iptables flavour asked for) the binary re-executes itself
//! under `unshare --net` (a fresh network namespace that dies with the child; nothing
//! leaves it: VIPs in 10.96.0.0/12 are blackholed, or routed to a dummy device while the
//! iptables rules run). The child joins a fresh child cgroup v2, loads drover's BPF
//! socket load balancer there (pins under a unique /sys/fs/bpf directory), programs N
//! services with 3 endpoints each, generates kube-proxy's iptables rules for the same N
//! services and measures:
//! - connect + 16-byte request + 6-byte reply, one connection at a time and with a few
//!   concurrent clients, to the backend directly, to a VIP through the BPF program and to
//!   a VIP through the iptables DNAT chains (the last service of KUBE-SERVICES and a
//!   random one);
//! - the time to apply one service change: one `upsert_service` vs `iptables-restore` of
//!   the full ruleset (and of the changed chains only) with one endpoint replaced.
//!
//! The parent prints markdown tables for BENCHMARKS.md and removes the child's pins and
//! cgroup whatever happened to the child. See `scripts/bench-svc`.

mod child;
mod rules;
mod stats;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

/// Which `iptables-restore` builds the kube-proxy rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// iptables-nft: the iptables syntax translated to nf_tables (Debian's default).
    Nft,
    /// iptables-legacy: the x_tables blob replaced whole.
    Legacy,
}

impl Flavour {
    fn parse(s: &str) -> Result<Self> {
        match s {
            "nft" => Ok(Flavour::Nft),
            "legacy" => Ok(Flavour::Legacy),
            other => bail!("unknown iptables flavour {other:?} (nft or legacy)"),
        }
    }

    /// The name on the command line and in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Nft => "nft",
            Flavour::Legacy => "legacy",
        }
    }

    /// The restore binary.
    pub fn restore(self) -> &'static str {
        match self {
            Flavour::Nft => "iptables-nft-restore",
            Flavour::Legacy => "iptables-legacy-restore",
        }
    }

    fn version(self) -> String {
        let bin = match self {
            Flavour::Nft => "iptables-nft",
            Flavour::Legacy => "iptables-legacy",
        };
        Command::new(bin)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|e| format!("{bin}: {e}"))
    }
}

/// Knobs shared by the parent and its children.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Service counts, one child each.
    pub services: Vec<usize>,
    /// iptables flavours, one child per count each.
    pub flavours: Vec<Flavour>,
    /// The largest count run with iptables-nft (whose restore of 10k services' rules
    /// took over 14 minutes here); larger counts run with legacy only.
    pub nft_max: usize,
    /// Sequential connections per path.
    pub conns: usize,
    /// Concurrent clients for the rate run.
    pub concurrency: usize,
    /// BPF service changes timed.
    pub changes: usize,
    /// Full iptables-restore repetitions per N (0: by N).
    pub full_reps: usize,
    /// Names this run's pins and cgroups (default: the process id).
    pub run_id: String,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            services: vec![1_000, 10_000, 50_000],
            flavours: vec![Flavour::Legacy, Flavour::Nft],
            nft_max: 1_000,
            conns: 4_000,
            concurrency: 4,
            changes: 2_000,
            full_reps: 0,
            run_id: std::process::id().to_string(),
        }
    }
}

const USAGE: &str = "usage: svc-bench [--services 1000,10000,50000] [--iptables legacy,nft] [--nft-max 1000] \
[--conns 4000] [--concurrency 4] [--changes 2000] [--full-reps N] [--run-id ID]";

/// A child's run: service count, iptables flavour, tag naming its pins and cgroup.
type ChildRun = (usize, Flavour, String);

fn parse(args: &[String]) -> Result<(Opts, Option<ChildRun>)> {
    let mut o = Opts::default();
    let mut child = None;
    let mut it = args.iter();
    let num = |v: Option<&String>, what: &str| -> Result<usize> {
        v.with_context(|| format!("{what} needs a value\n{USAGE}"))?
            .replace('_', "")
            .parse()
            .with_context(|| format!("{what}: not a number\n{USAGE}"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--services" => {
                let v = it.next().context(USAGE)?;
                o.services = v
                    .split(',')
                    .map(|s| s.replace('_', "").parse())
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("--services {v}\n{USAGE}"))?;
                if o.services.iter().any(|n| !(1..=60_000).contains(n)) {
                    bail!(
                        "--services: each count must be 1..=60000 (the BPF services map holds 65536)"
                    );
                }
            }
            "--iptables" => {
                let v = it.next().context(USAGE)?;
                o.flavours = v.split(',').map(Flavour::parse).collect::<Result<_>>()?;
            }
            "--nft-max" => o.nft_max = num(it.next(), "--nft-max")?,
            "--conns" => o.conns = num(it.next(), "--conns")?.max(100),
            "--concurrency" => o.concurrency = num(it.next(), "--concurrency")?.clamp(1, 64),
            "--changes" => o.changes = num(it.next(), "--changes")?.max(10),
            "--full-reps" => o.full_reps = num(it.next(), "--full-reps")?,
            "--run-id" => {
                let v = it.next().context(USAGE)?;
                ensure!(
                    !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric()),
                    "--run-id: letters and digits only"
                );
                o.run_id = v.clone();
            }
            "--child" => {
                let n = num(it.next(), "--child")?;
                let f = Flavour::parse(it.next().context(USAGE)?)?;
                let tag = it.next().context(USAGE)?.clone();
                child = Some((n, f, tag));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok((o, child))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (opts, child) = parse(&args)?;
    if let Some((n, flavour, tag)) = child {
        return child::run(n, flavour, &tag, &opts);
    }
    let exe = std::env::current_exe().context("the bench binary's path")?;
    machine(&opts);
    let mut conn_rows = Vec::new();
    let mut apply_rows = Vec::new();
    let mut failed = Vec::new();
    for &flavour in &opts.flavours {
        for &n in &opts.services {
            if flavour == Flavour::Nft && n > opts.nft_max {
                eprintln!(
                    "== {n} services, iptables-nft: skipped (over --nft-max {}) ==",
                    opts.nft_max
                );
                continue;
            }
            let tag = format!("{}-{n}-{}", opts.run_id, flavour.name());
            eprintln!("== {n} services, iptables-{} ==", flavour.name());
            let mut cmd = Command::new("unshare");
            cmd.args(["--net", "--"])
                .arg(&exe)
                .args(&args)
                .args(["--child", &n.to_string(), flavour.name(), &tag])
                .stdout(Stdio::piped());
            let mut c = cmd
                .spawn()
                .context("running unshare (util-linux; the bench needs root)")?;
            let out = c.stdout.take().context("the child's stdout")?;
            for line in BufReader::new(out).lines() {
                let line = line.context("reading the child's results")?;
                if let Some(row) = line.strip_prefix("conn\t") {
                    conn_rows.push(row.to_string());
                } else if let Some(row) = line.strip_prefix("apply\t") {
                    apply_rows.push(row.to_string());
                } else {
                    println!("{line}");
                }
            }
            let status = c.wait().context("waiting for the child")?;
            // The child cleans up after itself; this covers a child that was killed.
            child::cleanup(&tag);
            if !status.success() {
                failed.push(format!("{n} services, {}: {status}", flavour.name()));
            }
        }
    }
    println!();
    println!(
        "| N | iptables | path | netfilter in netns | 1 conn: median | p99 | vs direct | conn/s (1 client) | conn/s ({} clients) | p99 ({} clients) |",
        opts.concurrency, opts.concurrency
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &conn_rows {
        println!("{r}");
    }
    println!();
    println!(
        "| N | iptables | BPF: one change, median | p99 | map writes/change | iptables-restore full, median (min-max, runs) | --noflush changed chains, median (min-max, runs) | BPF: program N services | iptables-restore: first load | rules (nat) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &apply_rows {
        println!("{r}");
    }
    if !failed.is_empty() {
        bail!("runs failed: {}", failed.join("; "));
    }
    Ok(())
}

/// Prints what the numbers were taken on.
fn machine(opts: &Opts) {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "machine: {cpu}, {cores} cores, kernel {}",
        read("/proc/sys/kernel/osrelease").trim()
    );
    for f in &opts.flavours {
        println!("{}", f.version());
    }
    println!(
        "per path: {} sequential connections, {} more over {} concurrent clients, 10 interleaved rounds; {} BPF changes",
        opts.conns,
        opts.conns * 2,
        opts.concurrency,
        opts.changes
    );
}

/// Where cgroup2 is mounted (/sys/fs/cgroup/unified on hybrid machines).
pub fn cgroup_root() -> Result<PathBuf> {
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| PathBuf::from(f[1]))
        .context("no cgroup2 mount (the BPF programs attach to a cgroup v2)")
}
