//! The workload, identical for both systems: the objects it writes, the phases it runs
//! and what each phase measures.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::backend::Backend;
use crate::servers;

/// Namespace of the objects created at concurrency 1.
pub const SERIAL_NAMESPACE: &str = "serial";
/// Namespace of the main object set (created concurrently, then read, updated, listed
/// and watched).
pub const NAMESPACE: &str = "default";
/// Annotation whose value tells watchers which write they are seeing.
pub const MARKER_ANNOTATION: &str = "bench.drover.io/marker";
/// creationTimestamp the etcd side stores (same length as the one drover sets).
pub const FIXED_TIMESTAMP: &str = "2026-01-01T00:00:00Z";
/// Size the encoded objects are padded to.
pub const TARGET_OBJECT_BYTES: usize = 1024;

/// Longest any single operation may take before the run is declared stuck.
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest all watchers may take to see one write.
const FANOUT_TIMEOUT: Duration = Duration::from_secs(60);

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct Params {
    /// Objects created per create phase (and listed).
    pub objects: usize,
    /// Clients in flight in the concurrent phases.
    pub concurrency: usize,
    /// Random reads.
    pub gets: usize,
    /// Full lists.
    pub list_repeats: usize,
    /// Writes seen by the single watcher.
    pub watch_updates: usize,
    /// Watchers of the fan-out phase.
    pub watchers: usize,
    /// Writes seen by every watcher of the fan-out phase.
    pub fanout_writes: usize,
}

/// Builds the pod-like objects both systems store: valid pods (one container with name
/// and image, env, labels, a port) padded by an annotation to ~[`TARGET_OBJECT_BYTES`]
/// once encoded as drover stores them.
#[derive(Debug, Clone)]
pub struct PodFactory {
    padding: String,
}

impl PodFactory {
    /// Chooses the padding so that a typical object encodes to `target` bytes.
    pub fn new(target: usize) -> Result<PodFactory> {
        let mut factory = PodFactory {
            padding: String::new(),
        };
        let bare = factory.encoded_len()?;
        // The padding string's own msgpack header grows by a byte or two with its length.
        factory.padding = "p".repeat(target.saturating_sub(bare + 2));
        Ok(factory)
    }

    /// A pod named `pod-<idx>` in `namespace`, carrying `marker`.
    pub fn pod(&self, namespace: &str, idx: usize, marker: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name(idx),
                "namespace": namespace,
                "labels": {"app": "bench", "tier": "web", "shard": format!("s{}", idx % 8)},
                "annotations": {MARKER_ANNOTATION: marker, "bench.drover.io/padding": self.padding},
            },
            "spec": {
                "containers": [{
                    "name": "app",
                    "image": "registry.example/bench/app:1.0",
                    "env": [
                        {"name": "MODE", "value": "bench"},
                        {"name": "LOG_LEVEL", "value": "info"},
                        {"name": "SHARD", "value": format!("{}", idx % 8)},
                    ],
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                }],
                "restartPolicy": "Always",
            },
        })
    }

    /// Encoded size of a typical object as stored (with the server-set fields).
    pub fn encoded_len(&self) -> Result<usize> {
        let mut obj = self.pod(NAMESPACE, 1, "u-1000");
        let meta = drover_store::object::meta_mut(&mut obj);
        meta.insert("uid".into(), Value::String(uid_for("pod-000001")));
        meta.insert(
            "creationTimestamp".into(),
            Value::String(FIXED_TIMESTAMP.into()),
        );
        meta.insert("generation".into(), Value::from(1));
        Ok(bus_schema::envelope::encode_body(&obj)?.len())
    }
}

/// Name of the object with index `idx`.
pub fn pod_name(idx: usize) -> String {
    format!("pod-{idx:06}")
}

/// A uuid-shaped uid derived from a name (the etcd side has no store to make one).
pub fn uid_for(name: &str) -> String {
    let h = fnv1a(name.as_bytes());
    let l = fnv1a(&h.to_le_bytes());
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (l >> 48) & 0xfff,
        l & 0xffff_ffff_ffff
    )
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A deterministic spread of `i` over `0..n` (splitmix64), for "random" reads that
/// replay identically on both systems.
pub fn spread(i: usize, n: usize) -> usize {
    let mut z = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % n as u64) as usize
}

/// One row's numbers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Throughput, when the row has one.
    pub rate: Option<Rate>,
}

/// A throughput with its unit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rate {
    /// Units per second.
    pub per_s: f64,
    /// What is counted, e.g. `ops/s`.
    pub unit: String,
}

/// What the fan-out phase cost in setup and memory.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Footprint {
    /// Watchers opened.
    pub watchers: usize,
    /// Time to open all of them (until the system confirmed each).
    pub setup: Duration,
    /// Growth of the server's resident memory with the watchers open.
    pub server_rss_growth: Option<i64>,
    /// The server's resident memory with the watchers open.
    pub server_rss: Option<i64>,
    /// The bench process's resident memory with the watchers open. A growth figure
    /// would mislead here: the allocator hands back what earlier phases freed while the
    /// watchers are being set up.
    pub bench_rss: Option<i64>,
}

/// Everything measured on one system, rows in a fixed order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SystemResults {
    /// (operation, numbers).
    pub rows: Vec<(String, Measurement)>,
    /// The fan-out phase's footprint.
    pub footprint: Footprint,
    /// Deviations from the system as shipped, for the report.
    pub notes: Vec<String>,
}

impl SystemResults {
    /// The cell-by-cell median of several rounds (each number on its own: a row's p50,
    /// p99 and rate may come from different rounds). Rows follow the first round.
    pub fn median(rounds: &[SystemResults]) -> Option<SystemResults> {
        let first = rounds.first()?;
        let rows = first
            .rows
            .iter()
            .map(|(label, m)| {
                let same: Vec<&Measurement> = rounds
                    .iter()
                    .filter_map(|r| r.rows.iter().find(|(l, _)| l == label).map(|(_, m)| m))
                    .collect();
                let rate = m.rate.as_ref().map(|rate| Rate {
                    per_s: median_f64(same.iter().filter_map(|m| m.rate.as_ref().map(|r| r.per_s))),
                    unit: rate.unit.clone(),
                });
                let p50 = median_duration(same.iter().map(|m| m.p50));
                let p99 = median_duration(same.iter().map(|m| m.p99));
                (label.clone(), Measurement { p50, p99, rate })
            })
            .collect();
        let footprints: Vec<&Footprint> = rounds.iter().map(|r| &r.footprint).collect();
        let footprint = Footprint {
            watchers: first.footprint.watchers,
            setup: median_duration(footprints.iter().map(|f| f.setup)),
            server_rss_growth: median_i64(footprints.iter().filter_map(|f| f.server_rss_growth)),
            server_rss: median_i64(footprints.iter().filter_map(|f| f.server_rss)),
            bench_rss: median_i64(footprints.iter().filter_map(|f| f.bench_rss)),
        };
        let mut notes: Vec<String> = rounds
            .iter()
            .flat_map(|r| r.notes.iter().cloned())
            .collect();
        notes.dedup();
        Some(SystemResults {
            rows,
            footprint,
            notes,
        })
    }
}

/// The median of `values` (the upper one of an even count; 0 when empty).
pub fn median_f64(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The median of `values` (the upper one of an even count; zero when empty).
pub fn median_duration(values: impl Iterator<Item = Duration>) -> Duration {
    let mut v: Vec<Duration> = values.collect();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// The median of `values` (the upper one of an even count; `None` when empty).
pub fn median_i64(values: impl Iterator<Item = i64>) -> Option<i64> {
    let mut v: Vec<i64> = values.collect();
    v.sort();
    v.get(v.len() / 2).copied()
}

/// A latency histogram in microseconds (1 µs to 10 min, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    // Microseconds, 1 us to 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

/// Records `d` in `h` (at least 1 µs).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(d.as_micros().try_into().unwrap_or(u64::MAX).max(1));
}

/// The p50 and p99 of `h`, with `rate`.
pub fn measurement(h: &Histogram<u64>, rate: Option<Rate>) -> Measurement {
    Measurement {
        p50: Duration::from_micros(h.value_at_quantile(0.50)),
        p99: Duration::from_micros(h.value_at_quantile(0.99)),
        rate,
    }
}

/// Runs `n_ops` operations `op(0..n_ops)` from `concurrency` clients; returns the latency
/// histogram and the wall time of the whole batch.
pub async fn run_ops<F, Fut>(
    n_ops: usize,
    concurrency: usize,
    op: F,
) -> Result<(Histogram<u64>, Duration)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (op, next) = (op.clone(), next.clone());
        workers.spawn(async move {
            let mut hist = new_histogram();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n_ops {
                    return Ok::<_, anyhow::Error>(hist);
                }
                let t0 = Instant::now();
                tokio::time::timeout(OP_TIMEOUT, op(i))
                    .await
                    .with_context(|| format!("operation {i} took over {OP_TIMEOUT:?}"))??;
                record(&mut hist, t0.elapsed());
            }
        });
    }
    let mut all = new_histogram();
    while let Some(joined) = workers.join_next().await {
        all.add(joined??)?;
    }
    Ok((all, started.elapsed()))
}

/// `n` units over `elapsed`, as a rate in `unit`.
pub fn ops_rate(n: usize, elapsed: Duration, unit: &'static str) -> Option<Rate> {
    Some(Rate {
        per_s: n as f64 / elapsed.as_secs_f64(),
        unit: unit.to_string(),
    })
}

/// Runs every phase against `backend`. `server_pid` is the server's process, for its
/// memory.
pub async fn run<B: Backend>(
    backend: &B,
    params: &Params,
    factory: &PodFactory,
    server_pid: Option<u32>,
) -> Result<SystemResults> {
    let mut results = SystemResults::default();
    let n = params.objects;
    let c = params.concurrency;
    let progress = |what: &str, elapsed: Duration| {
        eprintln!(
            "store-bench:   {what} done in {:.1}s",
            elapsed.as_secs_f64()
        )
    };

    // Create, one client.
    let (b, f) = (backend.clone(), factory.clone());
    let (hist, elapsed) = run_ops(n, 1, move |i| {
        let (b, obj) = (b.clone(), f.pod(SERIAL_NAMESPACE, i, "c-0"));
        async move { b.create(obj).await.map(drop) }
    })
    .await
    .context("create, concurrency 1")?;
    progress("create c=1", elapsed);
    results.rows.push((
        "create, 1 client".into(),
        measurement(&hist, ops_rate(n, elapsed, "ops/s")),
    ));

    // Create, `c` clients; keep every object's revision for the CAS updates.
    let revisions: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let (b, f, revs) = (backend.clone(), factory.clone(), revisions.clone());
    let (hist, elapsed) = run_ops(n, c, move |i| {
        let (b, obj, revs) = (b.clone(), f.pod(NAMESPACE, i, "c-0"), revs.clone());
        async move {
            revs[i].store(b.create(obj).await?, Ordering::Relaxed);
            Ok(())
        }
    })
    .await
    .context("create, concurrent")?;
    progress(&format!("create c={c}"), elapsed);
    results.rows.push((
        format!("create, {c} clients"),
        measurement(&hist, ops_rate(n, elapsed, "ops/s")),
    ));

    // Get random existing objects.
    let b = backend.clone();
    let (hist, elapsed) = run_ops(params.gets, c, move |i| {
        let b = b.clone();
        async move {
            let obj = b.get(NAMESPACE, &pod_name(spread(i, n))).await?;
            anyhow::ensure!(
                obj.get("spec").is_some(),
                "get returned an object without spec"
            );
            Ok(())
        }
    })
    .await
    .context("get")?;
    progress("get", elapsed);
    results.rows.push((
        format!("get, {c} clients"),
        measurement(&hist, ops_rate(params.gets, elapsed, "ops/s")),
    ));

    // Compare-and-swap updates, each client on its own objects.
    let (b, f, revs) = (backend.clone(), factory.clone(), revisions.clone());
    let (hist, elapsed) = run_ops(n, c, move |i| {
        let (b, obj, revs) = (
            b.clone(),
            f.pod(NAMESPACE, i, &format!("u-{i}")),
            revs.clone(),
        );
        async move {
            let new_rev = b.update(obj, revs[i].load(Ordering::Relaxed)).await?;
            revs[i].store(new_rev, Ordering::Relaxed);
            Ok(())
        }
    })
    .await
    .context("update")?;
    progress("update", elapsed);
    results.rows.push((
        format!("update (CAS), {c} clients"),
        measurement(&hist, ops_rate(n, elapsed, "ops/s")),
    ));

    // Full lists of the namespace, one at a time.
    let b = backend.clone();
    let (hist, elapsed) = run_ops(params.list_repeats, 1, move |_| {
        let b = b.clone();
        async move {
            let count = b.list(NAMESPACE).await?;
            anyhow::ensure!(count == n, "list returned {count} objects, expected {n}");
            Ok(())
        }
    })
    .await
    .context("list")?;
    progress("list", elapsed);
    results.rows.push((
        format!("list {n} objects"),
        measurement(
            &hist,
            ops_rate(n * params.list_repeats, elapsed, "objects/s"),
        ),
    ));

    // Watches: from the newest revision, so nothing is replayed.
    let mut newest = revisions
        .iter()
        .map(|r| r.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let mut key0_rev = revisions[0].load(Ordering::Relaxed);
    let single = fan_out(
        backend,
        factory,
        1,
        params.watch_updates,
        0,
        &mut key0_rev,
        newest,
        None,
    )
    .await
    .context("watch, one watcher")?;
    progress("watch", single.elapsed);
    results.rows.push((
        "watch: write → event, 1 watcher".into(),
        measurement(&single.per_watcher, None),
    ));
    newest = newest.max(key0_rev);

    let mut key1_rev = revisions[1].load(Ordering::Relaxed);
    let many = fan_out(
        backend,
        factory,
        params.watchers,
        params.fanout_writes,
        1,
        &mut key1_rev,
        newest,
        server_pid,
    )
    .await
    .with_context(|| format!("watch, {} watchers", params.watchers))?;
    progress("fan-out", many.elapsed);
    let w = params.watchers;
    results.rows.push((
        format!("fan-out: write → last of {w} watchers"),
        measurement(&many.last_watcher, None),
    ));
    let deliveries = w * params.fanout_writes;
    results.rows.push((
        format!("fan-out: write → each of {w} watchers"),
        measurement(
            &many.per_watcher,
            ops_rate(deliveries, many.elapsed, "events/s"),
        ),
    ));
    results.footprint = many.footprint;
    Ok(results)
}

struct FanOut {
    /// Write start to each watcher's receipt.
    per_watcher: Histogram<u64>,
    /// Write start to the last watcher's receipt.
    last_watcher: Histogram<u64>,
    /// Wall time of the measured writes.
    elapsed: Duration,
    footprint: Footprint,
}

/// Opens `n_watchers` watches after revision `after`, then updates object `key_idx`
/// `n_writes` times, one at a time, each time waiting until every watcher has seen the
/// write. One unmeasured warm-up write comes first.
#[allow(clippy::too_many_arguments)]
async fn fan_out<B: Backend>(
    backend: &B,
    factory: &PodFactory,
    n_watchers: usize,
    n_writes: usize,
    key_idx: usize,
    key_rev: &mut u64,
    after: u64,
    server_pid: Option<u32>,
) -> Result<FanOut> {
    let server_rss_before = server_pid.and_then(servers::rss_bytes_of_pid);
    let setup_started = Instant::now();
    let streams = backend.watch_many(NAMESPACE, after, n_watchers).await?;
    let setup = setup_started.elapsed();
    anyhow::ensure!(
        streams.len() == n_watchers,
        "opened {} watches, wanted {n_watchers}",
        streams.len()
    );

    // Each watcher notes when it decoded each write; the writer collects.
    let tag = format!("w{n_watchers}");
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let mut watchers = JoinSet::new();
    for mut stream in streams {
        let (seen_tx, tag) = (seen_tx.clone(), tag.clone());
        watchers.spawn(async move {
            while let Some(event) = stream.next().await {
                let obj = event?;
                let at = Instant::now();
                if let Some(write_idx) = marker_of(&obj, &tag) {
                    let _ = seen_tx.send((write_idx, at));
                }
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    drop(seen_tx);

    let mut per_watcher = new_histogram();
    let mut last_watcher = new_histogram();
    let mut footprint = Footprint {
        watchers: n_watchers,
        setup,
        ..Footprint::default()
    };
    let mut measured_from = Instant::now();
    for write_idx in 0..=n_writes {
        let obj = factory.pod(NAMESPACE, key_idx, &format!("{tag}-{write_idx}"));
        let t0 = Instant::now();
        *key_rev = tokio::time::timeout(OP_TIMEOUT, backend.update(obj, *key_rev))
            .await
            .context("update timed out")??;
        let mut n_seen = 0;
        let mut last = t0;
        let deadline = tokio::time::Instant::from_std(t0 + FANOUT_TIMEOUT);
        while n_seen < n_watchers {
            match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
                Ok(Some((idx, at))) if idx == write_idx => {
                    n_seen += 1;
                    last = last.max(at);
                    if write_idx > 0 {
                        record(&mut per_watcher, at.saturating_duration_since(t0));
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
            footprint.server_rss_growth = delta(server_rss, server_rss_before);
            footprint.server_rss = server_rss.map(|b| b as i64);
            footprint.bench_rss = servers::own_rss_bytes().map(|b| b as i64);
            measured_from = Instant::now();
        } else {
            record(&mut last_watcher, last.saturating_duration_since(t0));
        }
    }
    let elapsed = measured_from.elapsed();
    watchers.abort_all();
    Ok(FanOut {
        per_watcher,
        last_watcher,
        elapsed,
        footprint,
    })
}

/// `after - before` when both are known.
pub fn delta(after: Option<u64>, before: Option<u64>) -> Option<i64> {
    Some(after? as i64 - before? as i64)
}

/// Stops every watcher and returns the first error one of them ended with.
pub async fn first_error(watchers: &mut JoinSet<Result<()>>) -> Option<String> {
    watchers.abort_all();
    while let Some(joined) = watchers.join_next().await {
        if let Ok(Err(e)) = joined {
            return Some(format!("{e:#}"));
        }
    }
    None
}

/// The write index in `obj`'s marker when the marker has this phase's tag.
pub fn marker_of(obj: &Value, tag: &str) -> Option<usize> {
    let marker = obj
        .get("metadata")?
        .get("annotations")?
        .get(MARKER_ANNOTATION)?
        .as_str()?;
    marker.strip_prefix(tag)?.strip_prefix('-')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_padded_to_the_target_size() {
        let factory = PodFactory::new(TARGET_OBJECT_BYTES).unwrap();
        let len = factory.encoded_len().unwrap();
        assert!(len.abs_diff(TARGET_OBJECT_BYTES) <= 4, "{len}");
    }

    #[test]
    fn uids_look_like_uuids_and_are_stable() {
        let uid = uid_for("pod-000001");
        assert_eq!(uid.len(), 36, "{uid}");
        assert_eq!(uid, uid_for("pod-000001"));
        assert_ne!(uid, uid_for("pod-000002"));
    }

    #[test]
    fn markers_match_only_their_phase() {
        let factory = PodFactory::new(0).unwrap();
        let obj = factory.pod(NAMESPACE, 3, "w1000-17");
        assert_eq!(marker_of(&obj, "w1000"), Some(17));
        assert_eq!(marker_of(&obj, "w1"), None);
    }

    #[test]
    fn median_is_taken_cell_by_cell() {
        let round = |p50_us: u64, p99_us: u64, rate: f64| SystemResults {
            rows: vec![(
                "get".into(),
                Measurement {
                    p50: Duration::from_micros(p50_us),
                    p99: Duration::from_micros(p99_us),
                    rate: Some(Rate {
                        per_s: rate,
                        unit: "ops/s".into(),
                    }),
                },
            )],
            ..SystemResults::default()
        };
        let m =
            SystemResults::median(&[round(10, 90, 5.0), round(30, 70, 1.0), round(20, 80, 3.0)])
                .unwrap();
        let (_, get) = &m.rows[0];
        assert_eq!(
            (get.p50, get.p99),
            (Duration::from_micros(20), Duration::from_micros(80))
        );
        assert_eq!(get.rate.as_ref().map(|r| r.per_s), Some(3.0));
    }

    #[test]
    fn spread_stays_in_range() {
        assert!((0..10_000).all(|i| spread(i, 7) < 7));
    }
}
