//! StatefulSet fencing on the node side: the bus heartbeat, and the node stopping its own
//! StatefulSet pods once it has been cut off from the bus for its fence timeout.
//!
//! The agent publishes an empty message on its heartbeat subject
//! ([`bus_schema::subjects::node_heartbeat`]) every [`bus_schema::subjects::NODE_HEARTBEAT_INTERVAL_MS`],
//! then sends a request to [`bus_schema::subjects::node_bus_probe`], which nobody serves:
//! the server's "no responders" answer proves it processed the heartbeat sent before it on
//! the same connection. (`Client::flush` would not do: it returns once the bytes are in the
//! socket, which a partitioned node's kernel happily accepts.) The control
//! plane's node lifecycle controller force-deletes a down node's StatefulSet pods (and so
//! lets the StatefulSet controller recreate them elsewhere) only when the node is down in
//! the gossip *and* no heartbeat of it arrived for the node's fence timeout plus a margin.
//! The node, for its part, is [`FenceState::Fenced`] once no round trip has succeeded for the
//! fence timeout: its PodActors kill the containers of StatefulSet pods at once and start
//! none. The two clocks start from the same event (the last heartbeat that got through), so
//! the node has stopped its copy before the control plane makes another one.
//!
//! Why the bus and not the gossip decides: a node that still hears some gossip peers may be
//! in an island the control plane cannot reach (the control plane then declares every
//! member of the island down), so gossip contact proves nothing about what the control
//! plane will do; heartbeats the control plane itself receives do. See ARCHITECTURE.md.
//!
//! Leaving the fence needs the bus back *and* the Node without the
//! `node.kubernetes.io/unreachable` taint: the lifecycle controller removes it only after
//! the node is alive again, in the same task that force-deletes, so every deletion it
//! decided is in the store before the taint goes. A StatefulSet pod is then re-read from the
//! store before its containers start again (its watch may lag), and torn down if it is gone.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_store::Store;

pub mod guard;
use k8s_openapi::api::core::v1::Node;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The taint the node lifecycle controller puts on a node that is down.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// Default fence timeout: how long a node may be cut off from the bus before it stops its
/// StatefulSet pods. Long enough to ride out a NATS restart, short against the issue's
/// seconds-scale failover.
pub const DEFAULT_FENCE_TIMEOUT: Duration =
    Duration::from_millis(crate::agent::DEFAULT_FENCE_TIMEOUT_MS as u64);

/// Whether the node's StatefulSet pods may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceState {
    /// The node is in touch with the bus (or fencing is off).
    Open,
    /// The node was cut off from the bus for its fence timeout: StatefulSet pods are
    /// stopped and none start until the fence opens.
    Fenced,
}

/// The agent's end of the pipe to its fence guard ([`guard`]).
#[derive(Clone)]
pub struct GuardLink(Arc<Mutex<std::process::ChildStdin>>);

impl std::fmt::Debug for GuardLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuardLink")
    }
}

impl GuardLink {
    /// Wraps the guard process's stdin.
    pub fn new(stdin: std::process::ChildStdin) -> GuardLink {
        GuardLink(Arc::new(Mutex::new(stdin)))
    }

    /// Writes one line; a guard that is gone is logged, not an error for the agent.
    fn send(&self, line: &str) {
        use std::io::Write;
        let mut w = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = w.write_all(line.as_bytes()).and_then(|()| w.flush()) {
            tracing::debug!(message = "writing to the fence guard failed", %error);
        }
    }
}

/// The cgroup parents of the node's StatefulSet pods, kept by their PodActors and passed to
/// the fence guard.
#[derive(Clone, Debug, Default)]
pub struct StatefulCgroups(Arc<Mutex<(u64, BTreeSet<String>)>>);

impl StatefulCgroups {
    /// Adds a pod's cgroup parent; removed again when the returned guard drops.
    pub fn register(&self, cgroup_parent: String) -> Registered {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if inner.1.insert(cgroup_parent.clone()) {
            inner.0 += 1;
        }
        Registered {
            set: self.clone(),
            cgroup_parent,
        }
    }

    /// The set and its version (bumped on every change).
    pub fn snapshot(&self) -> (u64, Vec<String>) {
        let inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (inner.0, inner.1.iter().cloned().collect())
    }
}

/// A registered StatefulSet pod cgroup; unregisters on drop.
#[derive(Debug)]
pub struct Registered {
    set: StatefulCgroups,
    cgroup_parent: String,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut inner = self.set.0.lock().unwrap_or_else(|e| e.into_inner());
        if inner.1.remove(&self.cgroup_parent) {
            inner.0 += 1;
        }
    }
}

/// The fence's settings.
#[derive(Clone, Debug)]
pub struct FenceConfig {
    /// How long without a heartbeat reaching the server before the node fences itself;
    /// zero turns fencing off (and the control plane then never recreates this node's
    /// StatefulSet pods by itself).
    pub timeout: Duration,
    /// Heartbeat period.
    pub heartbeat_interval: Duration,
    /// The fence guard process, told `ok` after every heartbeat that got through while the
    /// fence is open and the StatefulSet pods' cgroups when they change; `None` runs none
    /// (a frozen agent then cannot fence).
    pub guard: Option<GuardLink>,
}

impl Default for FenceConfig {
    fn default() -> Self {
        FenceConfig {
            timeout: DEFAULT_FENCE_TIMEOUT,
            heartbeat_interval: Duration::from_millis(
                bus_schema::subjects::NODE_HEARTBEAT_INTERVAL_MS,
            ),
            guard: None,
        }
    }
}

/// The fence's next state (pure).
///
/// * `since_last_ok`: time since the last heartbeat known to have reached the server,
///   measured *before* this round's heartbeat (a node waking from a pause longer than the
///   timeout must fence, even though the heartbeat it sends on waking gets through);
/// * `bus_ok`: this round's heartbeat got through;
/// * `unreachable_taint`: whether the Node carries the unreachable taint, `None` when it
///   could not be read.
pub fn next_state(
    current: FenceState,
    timeout: Duration,
    since_last_ok: Duration,
    bus_ok: bool,
    unreachable_taint: Option<bool>,
) -> FenceState {
    if timeout.is_zero() {
        return FenceState::Open;
    }
    match current {
        FenceState::Open if since_last_ok >= timeout => FenceState::Fenced,
        FenceState::Open => FenceState::Open,
        FenceState::Fenced if bus_ok && unreachable_taint == Some(false) => FenceState::Open,
        FenceState::Fenced => FenceState::Fenced,
    }
}

/// Whether a Node carries the unreachable taint (any effect).
pub fn has_unreachable_taint(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == UNREACHABLE_TAINT))
}

/// Whether a pod belongs to a StatefulSet (the pods the fence stops).
pub fn is_statefulset_pod(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.metadata.owner_references.as_ref().is_some_and(|refs| {
        refs.iter()
            .any(|r| r.kind == "StatefulSet" && r.controller == Some(true))
    })
}

/// A fence that never closes (fencing off: hollow agents in tests, `--fence-timeout-ms 0`).
pub fn always_open() -> watch::Receiver<FenceState> {
    let (tx, rx) = watch::channel(FenceState::Open);
    // The receiver keeps the value after the sender is gone; `changed` then errors, which
    // waiters treat as "never changes".
    drop(tx);
    rx
}

/// Starts the heartbeat and the fence; the receiver follows the fence state.
pub fn start(
    store: Store,
    node: String,
    config: FenceConfig,
    stateful: StatefulCgroups,
) -> (watch::Receiver<FenceState>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(FenceState::Open);
    let task = tokio::spawn(run(store, node, config, stateful, tx));
    (rx, task)
}

async fn run(
    store: Store,
    node: String,
    config: FenceConfig,
    stateful: StatefulCgroups,
    tx: watch::Sender<FenceState>,
) {
    let mut guard_version = None;
    let client = store.nats_client().clone();
    let subject = bus_schema::subjects::node_heartbeat(&node);
    let probe = bus_schema::subjects::node_bus_probe(&node);
    let interval = config.heartbeat_interval.max(Duration::from_millis(10));
    // A heartbeat that takes longer than a period did not get through in time; bounding
    // each round keeps the fence within about two periods of its deadline (the control
    // plane's margin, `FENCE_MARGIN` in the lifecycle controller, covers that and the kill).
    let attempt_timeout = interval;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_ok = Instant::now();
    let nodes = bus_schema::kinds::of::<Node>();
    loop {
        tick.tick().await;
        let since_last_ok = last_ok.elapsed();
        let sent = tokio::time::timeout(attempt_timeout, async {
            client
                .publish(subject.clone(), bytes::Bytes::new())
                .await
                .map_err(|e| e.to_string())?;
            // A round trip to the server (see `node_bus_probe`): "no responders" is the
            // expected answer; anything else (a responder, an error) is not proof.
            match client.request(probe.clone(), bytes::Bytes::new()).await {
                Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => Ok(()),
                Err(e) => Err(e.to_string()),
                Ok(_) => Err("unexpected responder on the bus probe subject".to_string()),
            }
        })
        .await;
        let bus_ok = matches!(sent, Ok(Ok(())));
        if bus_ok {
            last_ok = Instant::now();
        }
        let current = *tx.borrow();
        let taint = if current == FenceState::Fenced && bus_ok {
            match store.get(nodes, None, &node).await {
                Ok(obj) => serde_json::from_value::<Node>(obj)
                    .ok()
                    .map(|n| has_unreachable_taint(&n)),
                Err(error) => {
                    tracing::debug!(message = "reading the Node while fenced failed", %error);
                    None
                }
            }
        } else {
            None
        };
        let next = next_state(current, config.timeout, since_last_ok, bus_ok, taint);
        if next != current {
            match next {
                FenceState::Fenced => tracing::warn!(
                    message =
                        "cut off from the bus for the fence timeout: stopping StatefulSet pods",
                    since_last_heartbeat_ms = since_last_ok.as_millis() as u64,
                    fence_timeout_ms = config.timeout.as_millis() as u64,
                ),
                FenceState::Open => tracing::info!(
                    message = "bus back and the node not marked unreachable: fence open"
                ),
            }
            if tx.send(next).is_err() {
                return;
            }
        }
        if let Some(guard) = &config.guard {
            let (version, cgroups) = stateful.snapshot();
            if guard_version != Some(version) {
                guard.send(&format!("cgroups {}\n", cgroups.join("\t")));
                guard_version = Some(version);
            }
            if bus_ok && next == FenceState::Open {
                guard.send("ok\n");
            }
        }
    }
}

#[cfg(test)]
mod tests;
