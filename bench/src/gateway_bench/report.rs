//! The gateway bench's markdown: context, the side-by-side table, the fixed-rate table,
//! the watchers' footprint and every round's spread.

use std::fmt::Write as _;
use std::time::Duration;

use super::open_loop::FixedRate;
use super::phases::{Params, RoundResults};
use crate::report::{Environment, fmt_bytes, fmt_latency, fmt_mib, fmt_rate, thousands};
use crate::workload::{Footprint, Measurement};

/// The goal the fixed-rate run is read against: mutating p99 under this at the offered
/// rate.
pub const MUTATING_P99_GOAL: Duration = Duration::from_millis(25);

/// Everything the report says besides the numbers.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// Machine and versions.
    pub env: &'a Environment,
    /// Sizes of the run.
    pub params: &'a Params,
    /// Encoded size of a freshly created pod as the workload sends it (before the
    /// server-set fields).
    pub object_bytes: usize,
}

/// "+1.23 ms" (or "−…" when the gateway was faster).
fn fmt_added(gateway: Duration, store: Duration) -> String {
    if gateway >= store {
        format!("+{}", fmt_latency(gateway - store))
    } else {
        format!("−{}", fmt_latency(store - gateway))
    }
}

fn cells(m: Option<&Measurement>) -> [String; 3] {
    match m {
        Some(m) => [fmt_latency(m.p50), fmt_latency(m.p99), fmt_rate(&m.rate)],
        None => ["—".into(), "—".into(), "—".into()],
    }
}

fn row<'a>(r: Option<&'a RoundResults>, label: &str) -> Option<&'a Measurement> {
    r.and_then(|r| r.closed.rows.iter().find(|(l, _)| l == label))
        .map(|(_, m)| m)
}

fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

/// The results as markdown.
pub fn render(
    ctx: &Context<'_>,
    gateway_rounds: &[RoundResults],
    store_rounds: &[RoundResults],
) -> String {
    let (env, params) = (ctx.env, ctx.params);
    let rounds = gateway_rounds.len().max(store_rounds.len());
    let gateway_median = RoundResults::median(gateway_rounds);
    let store_median = RoundResults::median(store_rounds);
    let (gateway, store) = (gateway_median.as_ref(), store_median.as_ref());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Run of {}: `gateway-bench` (crate `drover-bench`).\n",
        env.date
    );
    let _ = writeln!(
        out,
        "- Machine: {} CPUs ({}), {:.1} GiB RAM, {}.",
        env.n_cpus, env.cpu_model, env.memory_gib, env.kernel
    );
    let _ = writeln!(out, "- Versions: {}.", env.nats_version);
    if let (Some(before), Some(after)) = (&env.disk_before, &env.disk_after) {
        let _ = writeln!(
            out,
            "- Disk under the data dir, back-to-back 1 KiB write + fdatasync: {} before the rounds, {} after.",
            before.describe(),
            after.describe()
        );
    }
    let _ = writeln!(
        out,
        "- Durability: JetStream file store with `sync_interval: always` (fsync before every ack, \
         the store's default as `drover up` configures it), R1, one nats-server on 127.0.0.1 with \
         its data in a temp dir. Both sides write through the same store, so a write is durable \
         before either side answers."
    );
    let _ = writeln!(
        out,
        "- Method: {rounds} round(s), each in a fresh bench process with one fresh nats-server \
         per side; within a round the sides take turns phase by phase (who goes first alternates \
         from phase to phase and round to round), so the machine's drift hits both alike; every \
         cell is the median over the rounds. The gateway runs in the bench process as `drover up` \
         starts it (actix-web, 2 workers, rustls TLS, bearer token, watch cache); the client is \
         hyper's HTTP/1.1 keep-alive pool over TLS in the same process, and decodes every answer \
         into a `serde_json::Value`. The store side calls `drover_store::Store` from the same \
         number of tasks and gets decoded values too. Server, client and nats-server share the \
         machine's CPUs."
    );
    let _ = writeln!(
        out,
        "- Workload: ~{b} B pods (MessagePack as sent; the same objects on both sides). \
         {s} creates, gets and patches at 1 client; {n} creates, {g} gets and {n} patches at \
         {c} clients; {l} lists of the {n}-pod namespace. A patch is a JSON merge patch of one \
         label (`PATCH` with `application/merge-patch+json`); on the store it is a get, the \
         label set, and a compare-and-swap update. Watch rows: the writer replaces one pod \
         through the store (the same on both sides, so only delivery differs), {ww} writes for \
         1 watcher and {fw} writes for {w} watchers, one write at a time; latency runs from \
         the writer holding the store's acknowledgement to the watcher's decoded event (an \
         event that arrives first counts as 0).",
        b = ctx.object_bytes,
        s = params.serial_ops,
        n = params.pods,
        g = params.gets,
        c = params.clients,
        l = params.lists,
        ww = params.watch_writes,
        fw = params.fanout_writes,
        w = params.watchers,
    );
    if let (Some(g), Some(s)) = (gateway, store) {
        let _ = writeln!(
            out,
            "- A patched pod as stored: {} B written through the gateway (its `managedFields` \
             entry included), {} B written directly.",
            g.stored_pod_bytes, s.stored_pod_bytes
        );
    }
    for (label, share) in gateway
        .iter()
        .flat_map(|g| g.early_deliveries.iter())
        .filter(|(_, share)| *share > 0.0)
    {
        let _ = writeln!(
            out,
            "- Note: {} of the deliveries of \"{label}\" through the gateway reached the watcher before the writer had its ack.",
            percent(*share)
        );
    }
    for (label, share) in store
        .iter()
        .flat_map(|s| s.early_deliveries.iter())
        .filter(|(_, share)| *share > 0.0)
    {
        let _ = writeln!(
            out,
            "- Note: {} of the deliveries of \"{label}\" on the store reached the watcher before the writer had its ack.",
            percent(*share)
        );
    }

    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| operation | gateway p50 | gateway p99 | gateway rate | store p50 | store p99 | store rate | p50 added by the gateway |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    let labels: Vec<&String> = gateway
        .or(store)
        .map(|r| r.closed.rows.iter().map(|(l, _)| l).collect())
        .unwrap_or_default();
    for label in labels {
        let (g, s) = (row(gateway, label), row(store, label));
        let [g50, g99, grate] = cells(g);
        let [s50, s99, srate] = cells(s);
        let added = match (g, s) {
            (Some(g), Some(s)) => fmt_added(g.p50, s.p50),
            _ => "—".into(),
        };
        let _ = writeln!(
            out,
            "| {label} | {g50} | {g99} | {grate} | {s50} | {s99} | {srate} | {added} |"
        );
    }

    let _ = writeln!(
        out,
        "\nFixed rate: mutating requests (creates and label patches alternating) offered at \
         {} req/s for {:.0} s, open loop (each request has a scheduled send time; latency runs \
         from it, so time spent waiting for one of the {} connections counts), median of the rounds. \
         CPU per request is user + system time over the run divided by the requests sent; the bench \
         process holds the client and, on the gateway side, the gateway, whose HTTP worker threads \
         (TLS, HTTP, JSON, handlers) are shown apart (its NATS I/O and watch cache run on the \
         process's shared tokio threads with the client):\n",
        thousands(u64::from(params.rate_per_s)),
        params.rate_duration.as_secs_f64(),
        params.clients
    );
    let _ = writeln!(
        out,
        "| side | offered | achieved | p50 | p99 | p99.9 | max | errors | CPU/request: bench process (of it: gateway workers) | CPU/request: nats-server | p99 < {} |",
        fmt_latency(MUTATING_P99_GOAL)
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for (name, side) in [("gateway", gateway), ("store", store)] {
        if let Some(r) = side {
            let f = &r.fixed_rate;
            let _ = writeln!(
                out,
                "| {name} | {} req/s | {} req/s | {} | {} | {} | {} | {} | {} | {} | {} |",
                thousands(f.offered_per_s.round() as u64),
                thousands(f.achieved_per_s.round() as u64),
                fmt_latency(f.p50),
                fmt_latency(f.p99),
                fmt_latency(f.p999),
                fmt_latency(f.max),
                f.errors,
                match f.gateway_workers_cpu_per_request {
                    Some(workers) => format!(
                        "{} ({})",
                        cpu(f.bench_cpu_per_request),
                        fmt_latency(workers)
                    ),
                    None => cpu(f.bench_cpu_per_request),
                },
                cpu(f.server_cpu_per_request),
                verdict(f)
            );
        }
    }
    for (name, side) in [("gateway", gateway), ("store", store)] {
        if let Some(e) = side.and_then(|r| r.fixed_rate.first_error.as_ref()) {
            let _ = writeln!(out, "\nFirst fixed-rate error ({name}): `{e}`");
        }
    }

    let fp = |r: Option<&RoundResults>| r.map(|r| r.closed.footprint.clone()).unwrap_or_default();
    let (gf, sf): (Footprint, Footprint) = (fp(gateway), fp(store));
    let _ = writeln!(out, "\n| {} watchers | gateway | store |", params.watchers);
    let _ = writeln!(out, "|---|---:|---:|");
    let setup = |f: &Footprint| {
        if f.watchers > 0 {
            fmt_latency(f.setup)
        } else {
            "—".into()
        }
    };
    let _ = writeln!(
        out,
        "| setup (until every watch was confirmed: response head / consumer created) | {} | {} |",
        setup(&gf),
        setup(&sf)
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
        "| the side's nats-server RSS with the watchers open | {} | {} |",
        server_rss(&gf),
        server_rss(&sf)
    );
    render_spread(&mut out, gateway_rounds, store_rounds);
    out
}

fn cpu(per_request: Option<Duration>) -> String {
    per_request.map_or_else(|| "—".into(), fmt_latency)
}

/// Whether a fixed-rate run met [`MUTATING_P99_GOAL`] at the offered rate.
pub fn verdict(f: &FixedRate) -> &'static str {
    // Met only when the offered load was carried (within 2%) without errors.
    let carried = f.achieved_per_s >= f.offered_per_s * 0.98 && f.errors == 0;
    if f.p99 < MUTATING_P99_GOAL && carried {
        "met"
    } else {
        "not met"
    }
}

/// One round's cell of a per-round row.
type Cell = fn(&RoundResults) -> String;

/// Every round's throughput and fixed-rate p99, so the machine's noise is visible.
fn render_spread(out: &mut String, gateway_rounds: &[RoundResults], store_rounds: &[RoundResults]) {
    if gateway_rounds.len().max(store_rounds.len()) < 2 {
        return;
    }
    let _ = writeln!(out, "\nEach round, in run order:\n");
    let _ = writeln!(out, "| operation | gateway | store |");
    let _ = writeln!(out, "|---|---|---|");
    let joined = |values: Vec<String>| {
        if values.is_empty() {
            "—".to_string()
        } else {
            values.join(" / ")
        }
    };
    let first = gateway_rounds.first().or(store_rounds.first());
    for (label, m) in first.map(|r| r.closed.rows.as_slice()).unwrap_or_default() {
        let Some(unit) = m.rate.as_ref().map(|r| r.unit.as_str()) else {
            continue;
        };
        let each = |rounds: &[RoundResults]| {
            joined(
                rounds
                    .iter()
                    .filter_map(|r| row(Some(r), label))
                    .filter_map(|m| m.rate.as_ref())
                    .map(|r| thousands(r.per_s.round() as u64))
                    .collect(),
            )
        };
        let _ = writeln!(
            out,
            "| {label} ({unit}) | {} | {} |",
            each(gateway_rounds),
            each(store_rounds)
        );
    }
    let fixed = |rounds: &[RoundResults], cell: Cell| joined(rounds.iter().map(cell).collect());
    let cells: [(&str, Cell); 3] = [
        ("fixed rate, achieved (req/s)", |r| {
            thousands(r.fixed_rate.achieved_per_s.round() as u64)
        }),
        ("fixed rate, p99", |r| fmt_latency(r.fixed_rate.p99)),
        ("disk just before the fixed-rate run (syncs/s)", |r| {
            r.disk_before_fixed_rate
                .as_ref()
                .map(|p| thousands(p.per_s.round() as u64))
                .unwrap_or_else(|| "—".into())
        }),
    ];
    for (label, cell) in cells {
        let _ = writeln!(
            out,
            "| {label} | {} | {} |",
            fixed(gateway_rounds, cell),
            fixed(store_rounds, cell)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_latency_is_signed() {
        let ms = Duration::from_millis;
        assert_eq!(fmt_added(ms(3), ms(1)), "+2.00 ms");
        assert_eq!(fmt_added(ms(1), ms(3)), "−2.00 ms");
        assert_eq!(fmt_added(ms(1), ms(1)), "+0 µs");
    }

    #[test]
    fn the_goal_needs_the_rate_carried() {
        let run = |achieved: f64, p99_ms: u64, errors: usize| FixedRate {
            offered_per_s: 1000.0,
            achieved_per_s: achieved,
            p99: Duration::from_millis(p99_ms),
            errors,
            ..FixedRate::default()
        };
        assert_eq!(verdict(&run(999.0, 10, 0)), "met");
        assert_eq!(verdict(&run(999.0, 30, 0)), "not met");
        assert_eq!(verdict(&run(600.0, 10, 0)), "not met");
        assert_eq!(verdict(&run(999.0, 10, 3)), "not met");
    }
}
