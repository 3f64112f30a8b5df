//! The scheduler's shell: one task owns the [`Snapshot`] and the [`SchedulingQueue`],
//! applies the informers' changes, runs one [`cycle::schedule`] per popped pod and hands
//! binds to the binder task (up to [`SchedulerConfig::binds_in_flight`] at once), which
//! writes them in atomic batches: the store's fsynced write is the bottleneck, not the
//! decision, and a batch is one request and one commit for many binds. A pod is *assumed* on its node as
//! soon as it is chosen, so the next decision already counts it; a failed bind forgets
//! the assumption and requeues the pod.
//!
//! Which pods it schedules: no `spec.nodeName`, not terminating, not finished, no
//! scheduling gates, and `spec.schedulerName` empty, `default-scheduler` or `drover`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use drover_store::{DeleteOptions, Store, StoreError, WatchEvent, object};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cycle::{self, Cursor};
use crate::events::{self, EventWork};
use crate::informer::{self, Change};
use crate::message;
use crate::preempt::{self, Preemption};
use crate::queue::SchedulingQueue;
use crate::snapshot::{NodeInfo, PodInfo, PodKey, Snapshot};

/// Scheduler names this scheduler serves (`spec.schedulerName`; empty is the default).
pub const SCHEDULER_NAMES: &[&str] = &["", "default-scheduler", "drover"];
/// Binds in flight at once (see [`SchedulerConfig::binds_in_flight`]).
pub const DEFAULT_BINDS_IN_FLIGHT: usize = 1024;
/// Most binds written in one atomic batch ([`Store::update_batch`]).
pub const MAX_BIND_BATCH: usize = 256;
/// Bind batches in flight at once: while they are written, the next binds queue up and
/// form the next batch, so batches grow with the load and stay single binds when idle.
const BIND_BATCHES_IN_FLIGHT: usize = 4;
/// Single binds in flight when batching is off (`bind_batch` 1).
const SINGLE_BINDS_IN_FLIGHT: usize = 64;
/// Event writes in flight at once.
pub const DEFAULT_EVENT_WRITERS: usize = 2;
/// Changes buffered between the informers and the loop.
pub const CHANGE_BUFFER: usize = 8192;
/// Decisions made before the loop looks at its channels again.
const DECISIONS_PER_TURN: usize = 128;
/// The loop wakes at least this often (backoff and unschedulable flushes).
const TICK: Duration = Duration::from_secs(1);

/// Scheduler settings, one place.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Binds in flight at once (decided, not yet acknowledged). They are written in
    /// atomic batches of up to [`MAX_BIND_BATCH`], so more in flight means fewer,
    /// larger writes.
    pub binds_in_flight: usize,
    /// Seed of the tie-breaking RNG (a run replays given the same events).
    pub seed: u64,
    /// Event writes in flight at once.
    pub event_writers: usize,
    /// Write the `Scheduled` event for every bound pod (best effort).
    pub scheduled_events: bool,
    /// Most binds in one atomic batch; 1 writes every bind on its own.
    pub bind_batch: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            binds_in_flight: DEFAULT_BINDS_IN_FLIGHT,
            seed: 0,
            event_writers: DEFAULT_EVENT_WRITERS,
            scheduled_events: true,
            bind_batch: MAX_BIND_BATCH,
        }
    }
}

/// Counters, for benchmarks and introspection.
#[derive(Debug, Default)]
pub struct Stats {
    /// Scheduling cycles run (one per popped pod).
    pub decisions: AtomicU64,
    /// Time spent in scheduling cycles (filter, score, preemption), in nanoseconds.
    pub decide_nanos: AtomicU64,
    /// Binds the store acknowledged.
    pub bound: AtomicU64,
    /// Binds that failed (conflict, pod gone, store error).
    pub bind_failures: AtomicU64,
    /// Cycles that found no node.
    pub unschedulable: AtomicU64,
    /// Victims deleted by preemption.
    pub preempted: AtomicU64,
    /// Events written.
    pub events_written: AtomicU64,
    /// Events dropped because the writer's queue was full.
    pub events_dropped: AtomicU64,
}

/// The running scheduler; stops when dropped or [`Scheduler::stop`]ped.
pub struct Scheduler {
    tasks: Vec<JoinHandle<()>>,
    stats: Arc<Stats>,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Scheduler {
    /// Starts the scheduler with `config`.
    pub fn start_with(store: Store, config: SchedulerConfig) -> Scheduler {
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::channel(CHANGE_BUFFER);
        let mut tasks: Vec<JoinHandle<()>> = followed_kinds()
            .iter()
            .map(|kind| tokio::spawn(informer::run(store.clone(), kind, tx.clone())))
            .collect();
        let (events, writer) =
            events::start_writer(store.clone(), config.event_writers, stats.clone());
        tasks.push(writer);
        let shell = Shell::new(store, config, stats.clone(), events);
        tasks.push(tokio::spawn(shell.run(rx)));
        Scheduler { tasks, stats }
    }

    /// The counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Stops every task.
    pub async fn stop(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }
}

/// Starts the scheduler with the default settings.
pub fn start(store: Store) -> Scheduler {
    Scheduler::start_with(store, SchedulerConfig::default())
}

fn pods_kind() -> &'static bus_schema::KindInfo {
    bus_schema::kinds::of::<Pod>()
}

fn followed_kinds() -> [&'static bus_schema::KindInfo; 4] {
    [
        bus_schema::kinds::of::<k8s_openapi::api::core::v1::Node>(),
        pods_kind(),
        bus_schema::kinds::of::<PersistentVolumeClaim>(),
        bus_schema::kinds::of::<PersistentVolume>(),
    ]
}

/// An unbound pod this scheduler owns.
struct Pending {
    info: PodInfo,
    obj: Value,
}

/// A pod assumed on a node while (or after) its bind is written.
struct Flight {
    node: String,
    /// Set once the store acknowledged: older unbound watch events are stale.
    bound_rv: Option<u64>,
}

enum BindOutcome {
    Bound(u64),
    Gone,
    Failed(StoreError),
}

struct BindResult {
    key: PodKey,
    /// namespace, name, uid (for the Scheduled event).
    pod: (String, String, String),
    node: String,
    outcome: BindOutcome,
}

struct Shell {
    store: Store,
    config: SchedulerConfig,
    stats: Arc<Stats>,
    events: mpsc::Sender<EventWork>,
    snap: Snapshot,
    queue: SchedulingQueue,
    cursor: Cursor,
    rng: StdRng,
    pending: HashMap<PodKey, Pending>,
    flights: HashMap<PodKey, Flight>,
    n_binding: usize,
    synced: std::collections::BTreeSet<&'static str>,
    start: Instant,
    binds: mpsc::UnboundedSender<BindJob>,
    results_rx: Option<mpsc::Receiver<BindResult>>,
}

/// A decided bind on its way to the binder.
struct BindJob {
    key: PodKey,
    /// namespace, name, uid (for the Scheduled event).
    pod: (String, String, String),
    node: String,
    /// The pod as seen (its resourceVersion is the bind's precondition).
    obj: Value,
}

impl Shell {
    fn new(
        store: Store,
        config: SchedulerConfig,
        stats: Arc<Stats>,
        events: mpsc::Sender<EventWork>,
    ) -> Shell {
        let (results_tx, results_rx) = mpsc::channel(config.binds_in_flight.max(1) * 2);
        let (binds, jobs) = mpsc::unbounded_channel();
        tokio::spawn(binder(
            store.clone(),
            jobs,
            results_tx,
            config.bind_batch.max(1),
        ));
        Shell {
            store,
            rng: StdRng::seed_from_u64(config.seed),
            config,
            stats,
            events,
            snap: Snapshot::default(),
            queue: SchedulingQueue::default(),
            cursor: Cursor::default(),
            pending: HashMap::new(),
            flights: HashMap::new(),
            n_binding: 0,
            synced: Default::default(),
            start: Instant::now(),
            binds,
            results_rx: Some(results_rx),
        }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn ready(&self) -> bool {
        self.synced.len() == followed_kinds().len()
            && self.n_binding < self.config.binds_in_flight.max(1)
    }

    async fn run(mut self, mut changes: mpsc::Receiver<Change>) {
        let mut results = self.results_rx.take().expect("set in new");
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut budget = DECISIONS_PER_TURN;
            while budget > 0 && self.ready() {
                let now = self.now();
                let Some(key) = self.queue.pop(now) else {
                    break;
                };
                self.schedule_one(key);
                budget -= 1;
            }
            if self.ready() && self.queue.has_active() {
                // More to decide: take what already arrived, without waiting.
                while let Ok(c) = changes.try_recv() {
                    self.apply(c);
                }
                while let Ok(r) = results.try_recv() {
                    self.bound(r);
                }
                tokio::task::yield_now().await;
                continue;
            }
            let wake = self
                .queue
                .next_backoff_end()
                .map(|t| self.start + t)
                .unwrap_or_else(|| Instant::now() + TICK);
            tokio::select! {
                c = changes.recv() => {
                    let Some(c) = c else { return };
                    self.apply(c);
                    while let Ok(c) = changes.try_recv() {
                        self.apply(c);
                    }
                }
                r = results.recv() => {
                    if let Some(r) = r {
                        self.bound(r);
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = self.now();
                    self.queue.flush(now);
                }
                _ = tick.tick() => {
                    let now = self.now();
                    self.queue.flush(now);
                }
            }
        }
    }

    // ---- cache ---------------------------------------------------------------------

    fn apply(&mut self, change: Change) {
        let now = self.now();
        match change {
            Change::Listed(kind, objects) => {
                self.synced.insert(kind.plural);
                match kind.plural {
                    "nodes" => {
                        let names: std::collections::BTreeSet<String> = objects
                            .iter()
                            .map(|o| object::name(o).to_string())
                            .collect();
                        let gone: Vec<String> = self
                            .snap
                            .node_names()
                            .iter()
                            .filter(|n| !names.contains(*n))
                            .cloned()
                            .collect();
                        for n in gone {
                            self.snap.remove_node(&n);
                        }
                        for o in &objects {
                            self.apply_node(o, false);
                        }
                    }
                    "pods" => {
                        let keys: std::collections::HashSet<PodKey> = objects
                            .iter()
                            .map(|o| {
                                crate::snapshot::pod_key(
                                    object::namespace(o).unwrap_or("default"),
                                    object::name(o),
                                )
                            })
                            .collect();
                        let gone: Vec<PodKey> = self
                            .snap
                            .pods()
                            .map(|p| p.key())
                            .chain(self.pending.keys().cloned())
                            .filter(|k| !keys.contains(k))
                            .collect();
                        for k in gone {
                            self.forget_pod(&k);
                        }
                        for o in &objects {
                            self.apply_pod(o, false);
                        }
                    }
                    "persistentvolumeclaims" => {
                        for o in &objects {
                            self.snap.upsert_claim(o);
                        }
                    }
                    _ => {
                        for o in &objects {
                            self.snap.upsert_volume(o);
                        }
                    }
                }
                self.queue.on_cluster_event(now);
            }
            Change::Event(kind, event) => {
                let (obj, deleted) = match event {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => (o, false),
                    WatchEvent::Deleted(o) => (o, true),
                    WatchEvent::Bookmark(_) => return,
                };
                match kind.plural {
                    "nodes" => self.apply_node(&obj, deleted),
                    "pods" => self.apply_pod(&obj, deleted),
                    "persistentvolumeclaims" => {
                        if deleted {
                            self.snap.remove_claim(
                                object::namespace(&obj).unwrap_or_default(),
                                object::name(&obj),
                            );
                        } else {
                            self.snap.upsert_claim(&obj);
                            self.queue.on_cluster_event(now);
                        }
                    }
                    _ => {
                        if deleted {
                            self.snap.remove_volume(object::name(&obj));
                        } else {
                            self.snap.upsert_volume(&obj);
                            self.queue.on_cluster_event(now);
                        }
                    }
                }
            }
        }
    }

    fn apply_node(&mut self, obj: &Value, deleted: bool) {
        if deleted {
            self.snap.remove_node(object::name(obj));
            return;
        }
        let Some(node) = NodeInfo::from_value(obj) else {
            return;
        };
        // Heartbeats change only condition timestamps: not a reason to retry pods.
        let changed = self.snap.node(&node.name).is_none_or(|old| {
            !old.exists
                || old.labels != node.labels
                || old.taints != node.taints
                || old.unschedulable != node.unschedulable
                || old.allocatable != node.allocatable
        });
        self.snap.upsert_node(node);
        if changed {
            let now = self.now();
            self.queue.on_cluster_event(now);
        }
    }

    fn forget_pod(&mut self, key: &str) {
        let was_placed = self.snap.remove_pod(key).is_some();
        self.pending.remove(key);
        self.queue.remove(key);
        self.flights.remove(key);
        if was_placed {
            let now = self.now();
            self.queue.on_cluster_event(now);
        }
    }

    fn apply_pod(&mut self, obj: &Value, deleted: bool) {
        let Some(info) = PodInfo::from_value(obj) else {
            return;
        };
        let key = info.key();
        if deleted {
            self.forget_pod(&key);
            return;
        }
        if !info.node_name.is_empty() || info.finished {
            // Bound (by us, confirmed, or by someone else) or done.
            self.flights.remove(&key);
            self.pending.remove(&key);
            self.queue.remove(&key);
            let was_placed = self.snap.node_of(&key).is_some();
            let finished = info.finished;
            self.snap.place_pod(info);
            if finished && was_placed {
                let now = self.now();
                self.queue.on_cluster_event(now);
            }
            return;
        }
        let rv: u64 = info.resource_version.parse().unwrap_or(0);
        if let Some(flight) = self.flights.get(&key) {
            // Our bind is in flight or done: an unbound view is older (keep the newest
            // for a retry if the bind fails).
            if flight.bound_rv.is_none_or(|b| rv < b) {
                if flight.bound_rv.is_none()
                    && let Some(p) = self.pending.get_mut(&key)
                {
                    p.info = info;
                    p.obj = obj.clone();
                }
                return;
            }
        }
        let ours = SCHEDULER_NAMES.contains(&info.scheduler_name.as_str());
        if info.terminating || !ours || info.gated {
            self.snap.set_nominated(&info);
            self.pending.remove(&key);
            self.queue.remove(&key);
            return;
        }
        self.snap.set_nominated(&info);
        let now = self.now();
        let spec_changed = self.pending.get(&key).is_none_or(|p| {
            p.obj.get("spec") != obj.get("spec")
                || p.obj["metadata"].get("labels") != obj["metadata"].get("labels")
        });
        // A status-only change (our own condition write) is no reason to retry.
        if spec_changed {
            self.queue.add(&key, info.priority, now);
        }
        self.pending.insert(
            key,
            Pending {
                info,
                obj: obj.clone(),
            },
        );
    }

    // ---- decisions -----------------------------------------------------------------

    fn schedule_one(&mut self, key: PodKey) {
        let Some(pending) = self.pending.get(&key) else {
            self.queue.remove(&key);
            return;
        };
        let t0 = std::time::Instant::now();
        let result = cycle::schedule(&self.snap, &pending.info, &mut self.cursor, &mut self.rng);
        self.stats.decisions.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(node) => {
                let mut assumed = pending.info.clone();
                assumed.node_name = node.clone();
                let obj = pending.obj.clone();
                self.snap.place_pod(assumed);
                self.flights.insert(
                    key.clone(),
                    Flight {
                        node: node.clone(),
                        bound_rv: None,
                    },
                );
                self.stats
                    .decide_nanos
                    .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                self.n_binding += 1;
                let pod = (
                    pending.info.namespace.clone(),
                    pending.info.name.clone(),
                    pending.info.uid.clone(),
                );
                // The binder ends only when this sender is dropped.
                let _ = self.binds.send(BindJob {
                    key,
                    pod,
                    node,
                    obj,
                });
            }
            Err(diagnosis) => {
                let info = pending.info.clone();
                let obj = pending.obj.clone();
                let fit = diagnosis.fit_error();
                let decision = preempt::preempt(&mut self.snap, &info, &diagnosis);
                self.stats
                    .decide_nanos
                    .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                self.stats.unschedulable.fetch_add(1, Ordering::Relaxed);
                let now = self.now();
                let (msg, nominate) = match decision {
                    Preemption::Failed(post) => {
                        (message::failed_scheduling(&fit, Some(&post)), None)
                    }
                    Preemption::Nominate { node, victims } => {
                        self.stats
                            .preempted
                            .fetch_add(victims.len() as u64, Ordering::Relaxed);
                        self.preempt_victims(&info, &node, victims);
                        // The room is held for it: record the nomination now.
                        let mut nominated = info.clone();
                        nominated.nominated_node = node.clone();
                        self.snap.set_nominated(&nominated);
                        (fit, Some(node))
                    }
                };
                tracing::debug!(message = "pod unschedulable", pod = %key, reason = %msg);
                self.queue.unschedulable(&key, now);
                self.record_failure(&info, obj, msg, nominate);
            }
        }
    }

    fn preempt_victims(&mut self, preemptor: &PodInfo, node: &str, victims: Vec<Arc<PodInfo>>) {
        for v in victims {
            self.event(EventWork {
                namespace: v.namespace.clone(),
                name: v.name.clone(),
                uid: v.uid.clone(),
                type_: "Normal",
                reason: "Preempted",
                message: format!("Preempted by pod {} on node {node}", preemptor.uid),
            });
            let store = self.store.clone();
            tokio::spawn(async move {
                let opts = DeleteOptions {
                    uid: Some(v.uid.clone()),
                    grace_period_seconds: Some(
                        v.grace_seconds.unwrap_or(object::DEFAULT_POD_GRACE_SECONDS),
                    ),
                    ..Default::default()
                };
                match store
                    .delete(pods_kind(), Some(&v.namespace), &v.name, &opts)
                    .await
                {
                    Ok(_) | Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
                    Err(error) => {
                        tracing::warn!(message = "deleting a preemption victim failed", pod = %v.key(), %error)
                    }
                }
            });
        }
    }

    /// PodScheduled=False with the message (only when it changed) and a FailedScheduling
    /// Event (aggregated by the writer).
    fn record_failure(
        &mut self,
        info: &PodInfo,
        obj: Value,
        msg: String,
        nominate: Option<String>,
    ) {
        let current = scheduled_condition(&obj);
        let same = current.is_some_and(|c| {
            c.get("status").and_then(Value::as_str) == Some("False")
                && c.get("reason").and_then(Value::as_str) == Some("Unschedulable")
                && c.get("message").and_then(Value::as_str) == Some(msg.as_str())
        });
        let nominated_now = obj
            .pointer("/status/nominatedNodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let nominate_changed = nominate.as_deref().is_some_and(|n| n != nominated_now);
        self.event(EventWork {
            namespace: info.namespace.clone(),
            name: info.name.clone(),
            uid: info.uid.clone(),
            type_: "Warning",
            reason: "FailedScheduling",
            message: msg.clone(),
        });
        if same && !nominate_changed {
            return;
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut obj = obj;
            set_scheduled_condition(&mut obj, "False", Some("Unschedulable"), Some(&msg));
            if let Some(node) = nominate {
                obj["status"]["nominatedNodeName"] = json!(node);
            }
            match store.update(pods_kind(), obj).await {
                Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                Err(error) => tracing::warn!(message = "pod status write failed", %error),
            }
        });
    }

    fn event(&self, work: EventWork) {
        if self.events.try_send(work).is_err() {
            self.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn bound(&mut self, result: BindResult) {
        self.n_binding = self.n_binding.saturating_sub(1);
        let key = result.key;
        match result.outcome {
            BindOutcome::Bound(rv) => {
                self.stats.bound.fetch_add(1, Ordering::Relaxed);
                if let Some(f) = self.flights.get_mut(&key) {
                    f.bound_rv = Some(rv);
                }
                self.queue.done(&key);
                self.pending.remove(&key);
                if self.config.scheduled_events {
                    let (namespace, name, uid) = result.pod;
                    self.event(EventWork {
                        message: format!(
                            "Successfully assigned {namespace}/{name} to {}",
                            result.node
                        ),
                        namespace,
                        name,
                        uid,
                        type_: "Normal",
                        reason: "Scheduled",
                    });
                }
            }
            BindOutcome::Gone => {
                self.stats.bind_failures.fetch_add(1, Ordering::Relaxed);
                self.forget_pod(&key);
            }
            BindOutcome::Failed(error) => {
                self.stats.bind_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(message = "bind failed; requeued", pod = %key, %error);
                // Forget the assumption (unless the watch already placed the pod for
                // real, which removed the flight).
                if let Some(flight) = self.flights.remove(&key)
                    && self.snap.node_of(&key) == Some(flight.node.as_str())
                {
                    self.snap.remove_pod(&key);
                }
                let now = self.now();
                if self.pending.contains_key(&key) {
                    self.queue.retry(&key, now);
                } else {
                    self.queue.remove(&key);
                }
            }
        }
    }
}

fn scheduled_condition(obj: &Value) -> Option<&Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
        })
}

/// Sets the PodScheduled condition, keeping its transition time when the status is the
/// same.
fn set_scheduled_condition(
    obj: &mut Value,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) {
    let now = object::now_rfc3339();
    let previous = scheduled_condition(obj).cloned();
    let transition = match &previous {
        Some(p) if p.get("status").and_then(Value::as_str) == Some(status) => {
            p.get("lastTransitionTime").cloned().unwrap_or(now.clone())
        }
        _ => now.clone(),
    };
    let mut cond = json!({
        "type": "PodScheduled",
        "status": status,
        "lastProbeTime": null,
        "lastTransitionTime": transition,
    });
    if let Some(r) = reason {
        cond["reason"] = json!(r);
    }
    if let Some(m) = message {
        cond["message"] = json!(m);
    }
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    let status_obj = obj["status"].as_object_mut().expect("object");
    let conds = status_obj.entry("conditions").or_insert_with(|| json!([]));
    if !conds.is_array() {
        *conds = json!([]);
    }
    let list = conds.as_array_mut().expect("array");
    list.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
    list.push(cond);
    if status_obj.get("phase").is_none() {
        status_obj.insert("phase".into(), json!("Pending"));
    }
}

/// Writes binds in atomic batches: takes a batch slot, then everything queued by then
/// (up to `max_batch`), and writes it with [`Store::update_batch`] while the next batch
/// gathers. With `max_batch` 1, every bind is its own [`Store::update`] (64 in flight,
/// the scheduler's former way, kept for comparison). Ends when the scheduler drops its
/// sender.
async fn binder(
    store: Store,
    mut jobs: mpsc::UnboundedReceiver<BindJob>,
    results: mpsc::Sender<BindResult>,
    max_batch: usize,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(if max_batch == 1 {
        SINGLE_BINDS_IN_FLIGHT
    } else {
        BIND_BATCHES_IN_FLIGHT
    }));
    while let Some(first) = jobs.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (store, results) = (store.clone(), results.clone());
        tokio::spawn(async move {
            let entries: Vec<(Value, Value)> = batch
                .iter()
                .map(|j| (j.obj.clone(), bound_pod(j.obj.clone(), &j.node)))
                .collect();
            let outcomes = if max_batch == 1 {
                let (_, changed): (Vec<Value>, Vec<Value>) = entries.into_iter().unzip();
                futures::future::join_all(changed.into_iter().map(|c| store.update(pods_kind(), c)))
                    .await
            } else {
                store.update_batch(pods_kind(), entries).await
            };
            drop(slot);
            for (job, outcome) in batch.into_iter().zip(outcomes) {
                let outcome = match outcome {
                    Ok(stored) => BindOutcome::Bound(
                        object::meta_str(&stored, "resourceVersion")
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0),
                    ),
                    Err(StoreError::NotFound { .. }) => BindOutcome::Gone,
                    Err(e) => BindOutcome::Failed(e),
                };
                let result = BindResult {
                    key: job.key,
                    pod: job.pod,
                    node: job.node,
                    outcome,
                };
                if results.send(result).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The binding write's content: spec.nodeName and PodScheduled=True together, written
/// as one compare-and-swap of the pod as it was seen (like the binding subresource).
fn bound_pod(mut obj: Value, node: &str) -> Value {
    obj["spec"]["nodeName"] = json!(node);
    set_scheduled_condition(&mut obj, "True", None, None);
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        status.remove("nominatedNodeName");
    }
    obj
}

/// Runs the scheduler (default settings) for as long as the calling task lives: aborting
/// the task drops the [`Scheduler`], which stops it. For supervisors that hold
/// `JoinHandle`s (drover-controllers).
pub async fn run(store: Store) {
    let _scheduler = start(store);
    std::future::pending::<()>().await
}
