//! The workload, identical for both sides: the phases it runs in order and what each
//! measures. Objects are the store bench's ~1 KiB pods ([`PodFactory`]).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use drover_store::Store;
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::open_loop::{self, FixedRate};
use super::side::{AnySide, Side, pods_kind};
use crate::disk::{self, SyncProbe};
use crate::report::fmt_latency;
use crate::servers;
use crate::workload::{
    Footprint, Measurement, OP_TIMEOUT, PodFactory, SystemResults, delta, first_error, marker_of,
    measurement, median_f64, new_histogram, ops_rate, pod_name, record, run_ops, spread,
};

/// Namespace of the pods created by one client.
pub const SERIAL_NAMESPACE: &str = "serial";
/// Namespace of the main pod set (created concurrently, then read, listed, patched and
/// watched). It exists in every cluster.
pub const NAMESPACE: &str = "default";
/// Namespace of the pods the fixed-rate run creates.
pub const RATE_NAMESPACE: &str = "rate";
/// Label the patches set.
pub const PATCH_LABEL: &str = "bench.drover.io/patched";
/// Name prefix of the gateway's HTTP worker threads (actix-server's).
const GATEWAY_WORKER_THREADS: &str = "actix";
/// How long the disk's sync rate is probed just before the fixed-rate run.
const ROUND_DISK_PROBE: Duration = Duration::from_millis(500);
/// Longest all watchers may take to see one write.
const FANOUT_TIMEOUT: Duration = Duration::from_secs(60);

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct Params {
    /// Pods in the main set (created by `clients` clients, listed, patched).
    pub pods: usize,
    /// Operations of each one-client phase (create, get, patch).
    pub serial_ops: usize,
    /// Clients in flight in the concurrent phases (and connections in the fixed-rate run).
    pub clients: usize,
    /// Reads in the concurrent get phase.
    pub gets: usize,
    /// Full lists of the main set.
    pub lists: usize,
    /// Writes observed by the single watcher.
    pub watch_writes: usize,
    /// Watchers of the fan-out phase.
    pub watchers: usize,
    /// Writes observed by every fan-out watcher.
    pub fanout_writes: usize,
    /// Offered load of the fixed-rate run, requests per second.
    pub rate_per_s: u32,
    /// Length of the fixed-rate run.
    pub rate_duration: Duration,
}

impl Params {
    /// Requests in the fixed-rate run.
    pub fn rate_requests(&self) -> usize {
        (f64::from(self.rate_per_s) * self.rate_duration.as_secs_f64()).round() as usize
    }
}

/// Everything measured on one side in one round.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RoundResults {
    /// Closed-loop rows (operation, numbers) in a fixed order, and the fan-out footprint.
    pub closed: SystemResults,
    /// The fixed-rate run.
    pub fixed_rate: FixedRate,
    /// Per watch row: the share of deliveries that reached the watcher before the writer
    /// had its acknowledgement (their latency counts as zero).
    pub early_deliveries: Vec<(String, f64)>,
    /// The disk's durable-write rate just before the fixed-rate run (it drifts on a
    /// shared machine, and the run's writes are bound by it).
    pub disk_before_fixed_rate: Option<SyncProbe>,
    /// Size of a patched pod as stored (MessagePack), read back from the store: what this
    /// side's writes leave in the store (the gateway adds `managedFields`).
    pub stored_pod_bytes: usize,
}

impl RoundResults {
    /// The cell-by-cell median of several rounds.
    pub fn median(rounds: &[RoundResults]) -> Option<RoundResults> {
        let first = rounds.first()?;
        let closed: Vec<SystemResults> = rounds.iter().map(|r| r.closed.clone()).collect();
        let fixed: Vec<FixedRate> = rounds.iter().map(|r| r.fixed_rate.clone()).collect();
        let early_deliveries = first
            .early_deliveries
            .iter()
            .map(|(label, _)| {
                let shares = rounds.iter().filter_map(|r| {
                    r.early_deliveries
                        .iter()
                        .find(|(l, _)| l == label)
                        .map(|(_, share)| *share)
                });
                (label.clone(), median_f64(shares))
            })
            .collect();
        Some(RoundResults {
            closed: SystemResults::median(&closed)?,
            fixed_rate: FixedRate::median(&fixed),
            early_deliveries,
            disk_before_fixed_rate: None,
            stored_pod_bytes: first.stored_pod_bytes,
        })
    }
}

fn progress(side: &str, what: &str, elapsed: Duration) {
    eprintln!(
        "gateway-bench:   {side}: {what} done in {:.1}s",
        elapsed.as_secs_f64()
    );
}

/// Runs `n_ops` operations from `clients` clients on side `side_name`; returns the row; the rate
/// counts `units_per_op` units of `unit` per operation.
async fn closed_phase<F, Fut>(
    side_name: &str,
    label: String,
    n_ops: usize,
    clients: usize,
    units_per_op: usize,
    unit: &'static str,
    op: F,
) -> Result<(String, Measurement)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let (hist, elapsed) = run_ops(n_ops, clients, op)
        .await
        .with_context(|| format!("{side_name}: {label}"))?;
    progress(side_name, &label, elapsed);
    let rate = ops_rate(n_ops * units_per_op, elapsed, unit);
    Ok((label, measurement(&hist, rate)))
}

/// One side of a round: how to reach the pods, the store its watch phases write through
/// (the side's own store, the same code on both sides, so only delivery differs), and
/// its nats-server's PID (for its memory).
pub struct SideUnderTest {
    /// The side.
    pub side: AnySide,
    /// The store behind the side.
    pub writer: Store,
    /// The side's own nats-server.
    pub server_pid: Option<u32>,
}

/// The sides in the order they take phase `phase_idx` of round `round`: who goes first
/// alternates from phase to phase and from round to round, so a drift of the shared
/// machine (the disk's sync rate moves by 10x within minutes) hits every side alike.
pub fn turn_order(n_sides: usize, round: usize, phase_idx: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n_sides).collect();
    if (round + phase_idx) % 2 == 1 {
        order.reverse();
    }
    order
}

/// Runs every phase on every side, the sides taking turns phase by phase; returns one
/// result per side, in the order of `sides`.
pub async fn run(
    sides: &[SideUnderTest],
    round: usize,
    params: &Params,
    factory: &PodFactory,
) -> Result<Vec<RoundResults>> {
    let mut results: Vec<RoundResults> = sides.iter().map(|_| RoundResults::default()).collect();
    let mut phase_idx = 0;
    let mut turns = || {
        phase_idx += 1;
        turn_order(sides.len(), round, phase_idx)
    };
    let (n, c, s) = (params.pods, params.clients, params.serial_ops);

    for side_idx in turns() {
        for namespace in [SERIAL_NAMESPACE, NAMESPACE, RATE_NAMESPACE] {
            sides[side_idx]
                .side
                .ensure_namespace(namespace)
                .await
                .with_context(|| {
                    format!(
                        "{}: creating namespace {namespace}",
                        sides[side_idx].side.name()
                    )
                })?;
        }
    }

    for side_idx in turns() {
        let (sd, f) = (sides[side_idx].side.clone(), factory.clone());
        let row = closed_phase(
            sides[side_idx].side.name(),
            "create, 1 client".into(),
            s,
            1,
            1,
            "ops/s",
            move |i| {
                let (sd, pod) = (sd.clone(), f.pod(SERIAL_NAMESPACE, i, "c-0"));
                async move { sd.create(pod).await.map(drop) }
            },
        );
        results[side_idx].closed.rows.push(row.await?);
    }

    for side_idx in turns() {
        let (sd, f) = (sides[side_idx].side.clone(), factory.clone());
        let label = format!("create, {c} clients");
        let row = closed_phase(
            sides[side_idx].side.name(),
            label,
            n,
            c,
            1,
            "ops/s",
            move |i| {
                let (sd, pod) = (sd.clone(), f.pod(NAMESPACE, i, "c-0"));
                async move { sd.create(pod).await.map(drop) }
            },
        );
        results[side_idx].closed.rows.push(row.await?);
    }

    for (clients, n_gets) in [(1, s), (c, params.gets)] {
        for side_idx in turns() {
            let sd = sides[side_idx].side.clone();
            let label = if clients == 1 {
                "get, 1 client".to_string()
            } else {
                format!("get, {clients} clients")
            };
            let row = closed_phase(
                sides[side_idx].side.name(),
                label,
                n_gets,
                clients,
                1,
                "ops/s",
                move |i| {
                    let sd = sd.clone();
                    async move {
                        let pod = sd.get(NAMESPACE, &pod_name(spread(i, n))).await?;
                        anyhow::ensure!(pod.get("spec").is_some(), "a pod without spec");
                        Ok(())
                    }
                },
            );
            results[side_idx].closed.rows.push(row.await?);
        }
    }

    for side_idx in turns() {
        let sd = sides[side_idx].side.clone();
        let label = format!("list {n} pods, 1 client");
        let row = closed_phase(
            sides[side_idx].side.name(),
            label,
            params.lists,
            1,
            n,
            "pods/s",
            move |_| {
                let sd = sd.clone();
                async move {
                    let count = sd.list(NAMESPACE).await?;
                    anyhow::ensure!(count == n, "listed {count} pods, expected {n}");
                    Ok(())
                }
            },
        );
        results[side_idx].closed.rows.push(row.await?);
    }

    // Each client patches its own pods, so no two patches race for one pod.
    for (clients, n_patches, tag) in [(1, s, "p1"), (c, n, "pc")] {
        for side_idx in turns() {
            let sd = sides[side_idx].side.clone();
            let label = if clients == 1 {
                "patch (merge, a label), 1 client".to_string()
            } else {
                format!("patch (merge, a label), {clients} clients")
            };
            let row = closed_phase(
                sides[side_idx].side.name(),
                label,
                n_patches,
                clients,
                1,
                "ops/s",
                move |i| {
                    let sd = sd.clone();
                    async move {
                        let value = format!("{tag}-{i}");
                        let name = pod_name(i % n);
                        sd.patch_label(NAMESPACE, &name, PATCH_LABEL, &value)
                            .await
                            .map(drop)
                    }
                },
            );
            results[side_idx].closed.rows.push(row.await?);
        }
    }
    for (side_idx, side) in sides.iter().enumerate() {
        results[side_idx].stored_pod_bytes = stored_bytes(&side.writer, &pod_name(n - 1)).await?;
    }

    for side_idx in turns() {
        let side = &sides[side_idx];
        let single = watch_phase(side, factory, 1, params.watch_writes, 0)
            .await
            .with_context(|| format!("{}: watch, 1 watcher", side.side.name()))?;
        progress(side.side.name(), "watch, 1 watcher", single.elapsed);
        let label = "watch: write ack → event, 1 watcher".to_string();
        results[side_idx]
            .early_deliveries
            .push((label.clone(), single.early_share()));
        results[side_idx]
            .closed
            .rows
            .push((label, measurement(&single.per_watcher, None)));
    }

    let w = params.watchers;
    for side_idx in turns() {
        let side = &sides[side_idx];
        let many = watch_phase(side, factory, w, params.fanout_writes, 1)
            .await
            .with_context(|| format!("{}: watch, {w} watchers", side.side.name()))?;
        progress(
            side.side.name(),
            &format!("watch, {w} watchers"),
            many.elapsed,
        );
        let label = format!("watch: write ack → event, each of {w} watchers");
        let result = &mut results[side_idx];
        result
            .early_deliveries
            .push((label.clone(), many.early_share()));
        let deliveries = w * params.fanout_writes;
        let rate = ops_rate(deliveries, many.elapsed, "events/s");
        result
            .closed
            .rows
            .push((label, measurement(&many.per_watcher, rate)));
        result.closed.rows.push((
            format!("watch: write ack → last of {w} watchers"),
            measurement(&many.last_watcher, None),
        ));
        result.closed.footprint = many.footprint;
    }

    for side_idx in turns() {
        let probe = tokio::task::spawn_blocking(|| disk::probe(ROUND_DISK_PROBE)).await?;
        results[side_idx].disk_before_fixed_rate = probe.ok();
        let server_pid = sides[side_idx].server_pid;
        let cpu_before = (
            servers::own_cpu_time(),
            server_pid.and_then(servers::cpu_time_of_pid),
            servers::own_threads_cpu_time(GATEWAY_WORKER_THREADS),
        );
        let mut fixed_rate = fixed_rate_run(&sides[side_idx].side, factory, params).await;
        let cpu_after = (
            servers::own_cpu_time(),
            server_pid.and_then(servers::cpu_time_of_pid),
            servers::own_threads_cpu_time(GATEWAY_WORKER_THREADS),
        );
        let per_request = |before: Option<Duration>, after: Option<Duration>| {
            let used = after?.checked_sub(before?)?;
            Some(used / u32::try_from(fixed_rate.sent.max(1)).ok()?)
        };
        fixed_rate.bench_cpu_per_request = per_request(cpu_before.0, cpu_after.0);
        fixed_rate.server_cpu_per_request = per_request(cpu_before.1, cpu_after.1);
        if matches!(sides[side_idx].side, AnySide::Gateway(_)) {
            fixed_rate.gateway_workers_cpu_per_request = per_request(cpu_before.2, cpu_after.2);
        }
        results[side_idx].fixed_rate = fixed_rate;
        let f = &results[side_idx].fixed_rate;
        eprintln!(
            "gateway-bench:   {}: fixed rate: {:.0} req/s achieved, p50 {}, p99 {}, {} errors",
            sides[side_idx].side.name(),
            f.achieved_per_s,
            fmt_latency(f.p50),
            fmt_latency(f.p99),
            f.errors
        );
    }
    Ok(results)
}

/// Mutating requests at the offered rate, alternating creates (new pods) and label
/// patches (round-robin over the main set).
async fn fixed_rate_run<S: Side>(side: &S, factory: &PodFactory, params: &Params) -> FixedRate {
    let n = params.pods;
    let (sd, f) = (side.clone(), factory.clone());
    open_loop::run(
        f64::from(params.rate_per_s),
        params.rate_requests(),
        params.clients,
        move |i| {
            let (sd, f) = (sd.clone(), f.clone());
            async move {
                if i % 2 == 0 {
                    sd.create(f.pod(RATE_NAMESPACE, i / 2, "r-0")).await?;
                } else {
                    let name = pod_name((i / 2) % n);
                    sd.patch_label(NAMESPACE, &name, PATCH_LABEL, &format!("r-{i}"))
                        .await?;
                }
                Ok(())
            }
        },
    )
    .await
}

/// Encoded size of a main-set pod as stored.
async fn stored_bytes(store: &Store, name: &str) -> Result<usize> {
    let pod = store.get(pods_kind(), Some(NAMESPACE), name).await?;
    Ok(bus_schema::envelope::encode_body(&pod)?.len())
}

struct WatchPhase {
    /// Write acknowledgement to each watcher's decoded event.
    per_watcher: Histogram<u64>,
    /// Write acknowledgement to the last watcher's decoded event.
    last_watcher: Histogram<u64>,
    /// Deliveries that arrived before the acknowledgement, and all deliveries measured.
    early: (usize, usize),
    /// Wall time of the measured writes.
    elapsed: Duration,
    footprint: Footprint,
}

impl WatchPhase {
    fn early_share(&self) -> f64 {
        let (early, all) = self.early;
        if all == 0 {
            0.0
        } else {
            early as f64 / all as f64
        }
    }
}

/// Opens `n_watchers` watches on the side from the pods' current revision, then replaces
/// pod `key_idx` through the side's store `n_writes` times, one at a time, each time waiting
/// until every watcher has seen the write. Latency runs from the moment `writer` has the
/// store's acknowledgement (the write is durable) to the watcher's decoded event. One
/// unmeasured warm-up write comes first.
async fn watch_phase(
    under_test: &SideUnderTest,
    factory: &PodFactory,
    n_watchers: usize,
    n_writes: usize,
    key_idx: usize,
) -> Result<WatchPhase> {
    let SideUnderTest {
        side,
        writer,
        server_pid,
    } = under_test;
    let server_pid = *server_pid;
    let kind = pods_kind();
    let name = pod_name(key_idx);
    let current = writer.get(kind, Some(NAMESPACE), &name).await?;
    let mut revision = drover_store::object::meta_str(&current, "resourceVersion")
        .unwrap_or("")
        .to_string();
    let after = writer.revision(kind).await?;

    let server_rss_before = server_pid.and_then(servers::rss_bytes_of_pid);
    let setup_started = Instant::now();
    let streams = side.watch_many(NAMESPACE, after, n_watchers).await?;
    let setup = setup_started.elapsed();
    anyhow::ensure!(
        streams.len() == n_watchers,
        "opened {} watches, wanted {n_watchers}",
        streams.len()
    );

    // Each watcher notes when it decoded each write; the writer collects.
    let tag = format!("g{n_watchers}");
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let mut watchers = JoinSet::new();
    for mut stream in streams {
        let (seen_tx, tag) = (seen_tx.clone(), tag.clone());
        watchers.spawn(async move {
            while let Some(event) = stream.next().await {
                let obj: Value = event?;
                let at = Instant::now();
                if let Some(write_idx) = marker_of(&obj, &tag) {
                    let _ = seen_tx.send((write_idx, at));
                }
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    drop(seen_tx);

    let mut phase = WatchPhase {
        per_watcher: new_histogram(),
        last_watcher: new_histogram(),
        early: (0, 0),
        elapsed: Duration::ZERO,
        footprint: Footprint {
            watchers: n_watchers,
            setup,
            ..Footprint::default()
        },
    };
    let mut measured_from = Instant::now();
    for write_idx in 0..=n_writes {
        let mut pod = factory.pod(NAMESPACE, key_idx, &format!("{tag}-{write_idx}"));
        drover_store::object::meta_mut(&mut pod)
            .insert("resourceVersion".into(), Value::String(revision.clone()));
        let written = tokio::time::timeout(OP_TIMEOUT, writer.update(kind, pod))
            .await
            .context("a write timed out")??;
        let acked = Instant::now();
        revision = drover_store::object::meta_str(&written, "resourceVersion")
            .unwrap_or("")
            .to_string();
        let mut n_seen = 0;
        let mut last = acked;
        let deadline = tokio::time::Instant::from_std(acked + FANOUT_TIMEOUT);
        while n_seen < n_watchers {
            match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
                Ok(Some((idx, at))) if idx == write_idx => {
                    n_seen += 1;
                    last = last.max(at);
                    if write_idx > 0 {
                        record(&mut phase.per_watcher, at.saturating_duration_since(acked));
                        phase.early.1 += 1;
                        if at < acked {
                            phase.early.0 += 1;
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => bail!(
                    "every watcher ended; first error: {:?}",
                    first_error(&mut watchers).await
                ),
                Err(_) => bail!(
                    "only {n_seen} of {n_watchers} watchers saw write {write_idx} within {FANOUT_TIMEOUT:?}; first watcher error: {:?}",
                    first_error(&mut watchers).await
                ),
            }
        }
        if write_idx == 0 {
            // After the warm-up every watcher has buffers and a decoded event behind it.
            let server_rss = server_pid.and_then(servers::rss_bytes_of_pid);
            phase.footprint.server_rss_growth = delta(server_rss, server_rss_before);
            phase.footprint.server_rss = server_rss.map(|b| b as i64);
            phase.footprint.bench_rss = servers::own_rss_bytes().map(|b| b as i64);
            measured_from = Instant::now();
        } else {
            record(
                &mut phase.last_watcher,
                last.saturating_duration_since(acked),
            );
        }
    }
    phase.elapsed = measured_from.elapsed();
    watchers.abort_all();
    Ok(phase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_take_turns_going_first() {
        assert_eq!(turn_order(2, 0, 1), vec![1, 0]);
        assert_eq!(turn_order(2, 0, 2), vec![0, 1]);
        assert_eq!(turn_order(2, 1, 1), vec![0, 1]);
        assert_eq!(turn_order(1, 0, 1), vec![0]);
        // Over an even number of rounds every phase has each side first equally often.
        for phase_idx in 1..12 {
            let firsts = (0..4).filter(|r| turn_order(2, *r, phase_idx)[0] == 0);
            assert_eq!(firsts.count(), 2);
        }
    }
}
