//! The run's context (date, machine, versions, durability) and the markdown tables.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use crate::disk::SyncProbe;
use crate::workload::{Footprint, Measurement, Params, Rate, SystemResults};

/// Where and with what the run happened.
#[derive(Debug, Clone)]
pub struct Environment {
    /// When the run started (UTC).
    pub date: String,
    /// Logical CPUs available to the bench.
    pub n_cpus: usize,
    /// CPU model name.
    pub cpu_model: String,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// `uname -srm`.
    pub kernel: String,
    /// `nats-server --version`.
    pub nats_version: String,
    /// First line of `etcd --version`.
    pub etcd_version: String,
    /// The disk's durable-write rate before the rounds.
    pub disk_before: Option<SyncProbe>,
    /// The disk's durable-write rate after the rounds.
    pub disk_after: Option<SyncProbe>,
}

impl Environment {
    /// Reads the machine and the server versions.
    pub fn collect() -> Environment {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Environment {
            date: jiff::Timestamp::now()
                .strftime("%Y-%m-%d %H:%M UTC")
                .to_string(),
            n_cpus: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(0),
            cpu_model,
            memory_gib: mem_kib / (1024.0 * 1024.0),
            kernel: first_line_of("uname", &["-srm"]),
            nats_version: first_line_of("nats-server", &["--version"]),
            etcd_version: first_line_of("etcd", &["--version"]),
            disk_before: None,
            disk_after: None,
        }
    }
}

fn first_line_of(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            text.lines().next().unwrap_or("").trim().to_string()
        }
        Err(e) => format!("unavailable ({e})"),
    }
}

/// Latency in a readable unit.
pub fn fmt_latency(d: Duration) -> String {
    let us = d.as_micros();
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..10_000 => format!("{:.2} ms", d.as_secs_f64() * 1e3),
        10_000..1_000_000 => format!("{:.1} ms", d.as_secs_f64() * 1e3),
        _ => format!("{:.2} s", d.as_secs_f64()),
    }
}

/// A rate with thousands separators and its unit; a dash for none.
pub fn fmt_rate(rate: &Option<Rate>) -> String {
    match rate {
        Some(r) => format!("{} {}", thousands(r.per_s.round() as u64), r.unit),
        None => "—".into(),
    }
}

/// `n` with thousands separators.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A signed byte count in MiB; a dash when unknown.
pub fn fmt_bytes(b: Option<i64>) -> String {
    match b {
        Some(b) => format!("{:+.1} MiB", b as f64 / (1024.0 * 1024.0)),
        None => "—".into(),
    }
}

/// Bytes as whole MiB; a dash when unknown.
pub fn fmt_mib(b: Option<i64>) -> String {
    match b {
        Some(b) => format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0)),
        None => "—".into(),
    }
}

fn cells(m: Option<&Measurement>) -> [String; 3] {
    match m {
        Some(m) => [fmt_latency(m.p50), fmt_latency(m.p99), fmt_rate(&m.rate)],
        None => ["—".into(), "—".into(), "—".into()],
    }
}

/// The results as markdown: context, the latency/throughput table, the watcher table.
pub fn render(
    env: &Environment,
    params: &Params,
    object_bytes: usize,
    drover_rounds: &[SystemResults],
    etcd_rounds: &[SystemResults],
) -> String {
    let rounds = drover_rounds.len().max(etcd_rounds.len());
    let drover_median = SystemResults::median(drover_rounds);
    let etcd_median = SystemResults::median(etcd_rounds);
    let (drover, etcd) = (drover_median.as_ref(), etcd_median.as_ref());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Run of {}: `store-bench` (crate `drover-bench`).\n",
        env.date
    );
    let _ = writeln!(
        out,
        "- Machine: {} CPUs ({}), {:.1} GiB RAM, {}.",
        env.n_cpus, env.cpu_model, env.memory_gib, env.kernel
    );
    let _ = writeln!(
        out,
        "- Versions: {}; {} (Debian `etcd-server`).",
        env.nats_version, env.etcd_version
    );
    if let (Some(before), Some(after)) = (&env.disk_before, &env.disk_after) {
        let _ = writeln!(
            out,
            "- Disk under the data dirs, back-to-back 1 KiB write + fdatasync: {} before the rounds, {} after.",
            before.describe(),
            after.describe()
        );
    }
    let _ = writeln!(
        out,
        "- Durability: drover = JetStream file store with `sync_interval: always` (fsync before every ack), \
         R1, one nats-server; etcd = default (WAL fsync per commit), one member. Both on 127.0.0.1, \
         data in a temp dir on the same disk."
    );
    let _ = writeln!(
        out,
        "- Method: {rounds} round(s) per system, each in a fresh bench process against a fresh server, \
         systems one at a time and alternating who goes first; every cell is the median over the rounds. \
         The client (Rust, tokio, async-nats / etcd-client) runs on the same machine as the server."
    );
    let _ = writeln!(
        out,
        "- Workload: {n} pods of {object_bytes} B each as stored (MessagePack; the same bytes in both), \
         {c} clients in the concurrent rows, {gets} random gets, {lists} lists, {wu} writes for the single \
         watcher, {ww} watchers x {fw} writes for fan-out. Latency is per operation as the client sees it; \
         watch latency runs from the start of the write to the watcher's decoded event.",
        n = params.objects,
        c = params.concurrency,
        gets = params.gets,
        lists = params.list_repeats,
        wu = params.watch_updates,
        ww = params.watchers,
        fw = params.fanout_writes,
    );
    for note in drover
        .iter()
        .chain(etcd.iter())
        .flat_map(|r| r.notes.iter())
    {
        let _ = writeln!(out, "- Note: {note}.");
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| operation | drover p50 | drover p99 | drover rate | etcd p50 | etcd p99 | etcd rate |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    let labels: Vec<&String> = drover
        .or(etcd)
        .map(|r| r.rows.iter().map(|(l, _)| l).collect())
        .unwrap_or_default();
    for label in labels {
        let find = |r: Option<&SystemResults>| {
            r.and_then(|r| {
                r.rows
                    .iter()
                    .find(|(l, _)| l == label)
                    .map(|(_, m)| m.clone())
            })
        };
        let [d50, d99, drate] = cells(find(drover).as_ref());
        let [e50, e99, erate] = cells(find(etcd).as_ref());
        let _ = writeln!(
            out,
            "| {label} | {d50} | {d99} | {drate} | {e50} | {e99} | {erate} |"
        );
    }
    let fp = |r: Option<&SystemResults>| r.map(|r| r.footprint.clone()).unwrap_or_default();
    let (df, ef): (Footprint, Footprint) = (fp(drover), fp(etcd));
    let setup = |f: &Footprint| {
        if f.watchers > 0 {
            fmt_latency(f.setup)
        } else {
            "—".into()
        }
    };
    let _ = writeln!(out, "\n| {} watchers | drover | etcd |", params.watchers);
    let _ = writeln!(out, "|---|---:|---:|");
    let _ = writeln!(
        out,
        "| setup (until the server confirmed every watch) | {} | {} |",
        setup(&df),
        setup(&ef)
    );
    let server_rss = |f: &Footprint| match (f.server_rss, f.server_rss_growth) {
        (Some(_), Some(_)) => format!(
            "{} ({} for the watchers)",
            fmt_mib(f.server_rss),
            fmt_bytes(f.server_rss_growth)
        ),
        _ => "—".into(),
    };
    let _ = writeln!(
        out,
        "| server RSS with the watchers open | {} | {} |",
        server_rss(&df),
        server_rss(&ef)
    );
    let _ = writeln!(
        out,
        "| bench (client) process RSS with the watchers open | {} | {} |",
        fmt_mib(df.bench_rss),
        fmt_mib(ef.bench_rss)
    );
    render_spread(&mut out, drover_rounds, etcd_rounds);
    out
}

/// Every round's throughput, so the noise of the machine is visible next to the medians.
fn render_spread(out: &mut String, drover_rounds: &[SystemResults], etcd_rounds: &[SystemResults]) {
    if drover_rounds.len().max(etcd_rounds.len()) < 2 {
        return;
    }
    let _ = writeln!(out, "\nThroughput of each round, in run order:\n");
    let _ = writeln!(out, "| operation | drover | etcd |");
    let _ = writeln!(out, "|---|---|---|");
    let first = drover_rounds.first().or(etcd_rounds.first());
    for (label, m) in first.map(|r| r.rows.as_slice()).unwrap_or_default() {
        let Some(unit) = m.rate.as_ref().map(|r| r.unit.as_str()) else {
            continue;
        };
        let each = |rounds: &[SystemResults]| {
            let rates: Vec<String> = rounds
                .iter()
                .filter_map(|r| r.rows.iter().find(|(l, _)| l == label))
                .filter_map(|(_, m)| m.rate.as_ref())
                .map(|r| thousands(r.per_s.round() as u64))
                .collect();
            if rates.is_empty() {
                "—".into()
            } else {
                rates.join(" / ")
            }
        };
        let _ = writeln!(
            out,
            "| {label} ({unit}) | {} | {} |",
            each(drover_rounds),
            each(etcd_rounds)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(fmt_latency(Duration::from_micros(640)), "640 µs");
        assert_eq!(fmt_latency(Duration::from_micros(1_234)), "1.23 ms");
        assert_eq!(fmt_latency(Duration::from_micros(45_670)), "45.7 ms");
        assert_eq!(fmt_latency(Duration::from_millis(2_500)), "2.50 s");
        assert_eq!(fmt_bytes(Some(-3 * 1024 * 1024 / 2)), "-1.5 MiB");
    }
}
