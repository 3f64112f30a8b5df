//! The node lifecycle controller, driven by gossip membership instead of Lease expiry.
//!
//! The control plane's own [`drover_membership::Membership`] view says which node agents
//! are alive; a member's name is its Node's name. When a member is declared down, the
//! controller taints its Node `node.kubernetes.io/unreachable` (NoSchedule and NoExecute),
//! sets `Ready` Unknown and `GossipReachable` False, marks the node's pods not ready
//! (Kubernetes' `MarkPodsNotReady`: their `Ready` condition False, so Services stop sending
//! them traffic, the ones that tolerate the taint included), and evicts them in QoS order
//! (BestEffort first) as their tolerations allow: a graceful delete, so their controllers
//! replace them at once. StatefulSet pods (and pods left terminating) are force-deleted only
//! under the fencing rule ([`core::fence_wait`]): the node has been down, and silent on the
//! bus heartbeat subject, for its advertised fence timeout plus [`core::FENCE_MARGIN`], by
//! which time the node agent has stopped them itself. When the member is alive again the
//! taints go and `Ready` returns to True if this controller had set it Unknown.
//!
//! Members without a Node (the control plane itself) are ignored, and Nodes that are not
//! in the view (agents that run without gossip) are left alone. A member that drops out of
//! the view after being down (foca forgets down members) stays down here.
//!
//! **Invariant**: one task makes every decision and carries every write out, in order,
//! and re-reads the live membership view and heartbeat times right before each forced
//! delete. A "mark up" therefore never races a fencing delete decided earlier: the delete
//! either ran before the task saw the member alive, or it is dropped.
//!
//! Decisions are I/O-free in [`core`]; this module keeps the clocks (when a member was
//! first seen down, when each node's last heartbeat arrived) and does the writes.

pub mod core;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus_schema::KindInfo;
use drover_membership::{Member, MemberState};
use drover_store::{DeleteOptions, DeleteOutcome, StoreError};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::core::{Decision, EvictionKind, Fence, NodeView, Reach};
use crate::runtime::kinds::{nodes, pods};
use crate::runtime::{Context, EventType, ObjectKey, revision_of};

/// How often the time-based rules are looked at while some node is down.
pub const DEFAULT_TICK: Duration = Duration::from_millis(250);
/// Every node in the view is looked at again this often even when nothing changed.
pub const RESYNC_EVERY: Duration = Duration::from_secs(30);
/// Delay before resubscribing to heartbeats after the bus failed.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);
/// How long to wait for the cache to show the controller's own Node write.
const CACHE_CATCH_UP: Duration = Duration::from_secs(5);

/// The membership view the controller follows (`Membership::watch()`).
pub type MembershipView = watch::Receiver<Arc<Vec<Member>>>;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct LifecycleConfig {
    /// How often time-based rules are re-checked while some node is down.
    pub tick: Duration,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig { tick: DEFAULT_TICK }
    }
}

/// The kinds the controller reads from the shared cache.
pub fn kinds() -> Vec<&'static KindInfo> {
    vec![nodes(), pods()]
}

/// Starts the controller (events from `node-controller`, as in Kubernetes) and its
/// heartbeat follower. The cache in `ctx` must follow [`kinds`].
pub fn start(
    ctx: &Context,
    membership: MembershipView,
    config: LifecycleConfig,
) -> Vec<JoinHandle<()>> {
    let heartbeats = Heartbeats::default();
    vec![
        tokio::spawn(follow_heartbeats(ctx.store.clone(), heartbeats.clone())),
        tokio::spawn(run(
            ctx.for_component("node-controller"),
            membership,
            heartbeats,
            config,
        )),
    ]
}

/// When each node's last bus heartbeat arrived.
#[derive(Clone, Default)]
struct Heartbeats(Arc<Mutex<HashMap<String, Instant>>>);

impl Heartbeats {
    fn record(&self, node: String) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node, Instant::now());
    }

    fn age(&self, node: &str) -> Option<Duration> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .map(Instant::elapsed)
    }
}

/// Records every node heartbeat on the bus, resubscribing when the bus fails.
async fn follow_heartbeats(store: drover_store::Store, heartbeats: Heartbeats) {
    loop {
        match store
            .nats_client()
            .subscribe(bus_schema::subjects::NODE_HEARTBEAT_ALL)
            .await
        {
            Ok(mut sub) => {
                while let Some(msg) = sub.next().await {
                    if let Some(node) = bus_schema::subjects::parse_node_heartbeat(&msg.subject) {
                        heartbeats.record(node);
                    }
                }
                tracing::warn!(message = "node heartbeat subscription ended; resubscribing");
            }
            Err(error) => {
                tracing::warn!(message = "cannot follow node heartbeats; retrying", %error);
            }
        }
        tokio::time::sleep(RESUBSCRIBE_AFTER).await;
    }
}

/// What the controller remembers of one member.
#[derive(Clone, Debug)]
struct Tracked {
    state: MemberState,
    /// When this controller first saw it down (reset when it is seen alive or suspect).
    down_since: Option<Instant>,
    fence_timeout_ms: u32,
    /// Uids of its pods marked not ready since `down_since` (reset with it).
    marked_not_ready: BTreeSet<String>,
}

/// Applies a new view to what is tracked. Names no longer in the view keep their record.
fn track(tracked: &mut BTreeMap<String, Tracked>, view: &[Member], now: Instant) {
    let names: BTreeSet<&str> = view.iter().map(|m| &*m.name).collect();
    for name in names {
        let Some(member) = core::member_of(view, name) else {
            continue;
        };
        let previous = tracked.remove(name);
        let (down_since, marked_not_ready) = match (member.state, previous) {
            (
                MemberState::Down,
                Some(Tracked {
                    down_since: Some(since),
                    marked_not_ready,
                    ..
                }),
            ) => (Some(since), marked_not_ready),
            (MemberState::Down, _) => (Some(now), BTreeSet::new()),
            (MemberState::Alive | MemberState::Suspect, _) => (None, BTreeSet::new()),
        };
        tracked.insert(
            name.to_string(),
            Tracked {
                state: member.state,
                down_since,
                fence_timeout_ms: member.metadata.fence_timeout_ms,
                marked_not_ready,
            },
        );
    }
}

struct Controller {
    ctx: Context,
    membership: MembershipView,
    heartbeats: Heartbeats,
    tracked: BTreeMap<String, Tracked>,
    /// Some write of the last round failed: the next round looks at every node again.
    failed: bool,
}

async fn run(
    ctx: Context,
    membership: MembershipView,
    heartbeats: Heartbeats,
    config: LifecycleConfig,
) {
    let mut node_changes = ctx.cache.subscribe(nodes());
    let mut pod_changes = ctx.cache.subscribe(pods());
    ctx.cache.wait_synced().await;
    let mut c = Controller {
        ctx,
        membership,
        heartbeats,
        tracked: BTreeMap::new(),
        failed: false,
    };
    let mut membership_open = true;
    let mut next_resync = Instant::now() + RESYNC_EVERY;
    // Alive and suspect nodes change only with the view or their Node; the ticks and pod
    // changes in between concern down nodes alone.
    let mut only_down = false;
    loop {
        let view = c.membership.borrow_and_update().clone();
        track(&mut c.tracked, &view, Instant::now());
        let recheck = c.round(only_down).await;
        let down: BTreeSet<String> = c
            .tracked
            .iter()
            .filter(|(_, t)| t.state == MemberState::Down)
            .map(|(n, _)| n.clone())
            .collect();
        let wake = match recheck {
            Some(r) if !down.is_empty() => Some(r.min(config.tick)),
            _ if !down.is_empty() || c.failed => Some(config.tick),
            _ => None,
        };
        let wait_until = wake.map_or(next_resync, |w| (Instant::now() + w).min(next_resync));
        // Wait for something that can change a decision: the view, a Node, a pod of a
        // down node, or a deadline.
        loop {
            tokio::select! {
                changed = c.membership.changed(), if membership_open => {
                    if changed.is_err() {
                        tracing::warn!(message = "membership view closed; node lifecycle keeps its last view");
                        membership_open = false;
                        continue;
                    }
                    only_down = false;
                    break;
                }
                event = node_changes.recv() => match event {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        only_down = false;
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                event = pod_changes.recv() => match event {
                    Ok(e) if !e.latest().is_some_and(|p| down.contains(node_name(p))) => continue,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        only_down = true;
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tokio::time::sleep_until(wait_until) => {
                    only_down = Instant::now() < next_resync;
                    if !only_down {
                        next_resync = Instant::now() + RESYNC_EVERY;
                    }
                    break;
                }
            }
        }
        // Coalesce a burst into one round.
        while node_changes.try_recv().is_ok() {
            only_down = false;
        }
        while pod_changes.try_recv().is_ok() {}
        only_down &= !c.failed;
    }
}

fn node_name(pod: &Value) -> &str {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl Controller {
    /// Decides and acts on every tracked node that has a Node (only the down ones when
    /// `only_down`); returns the soonest recheck.
    async fn round(&mut self, only_down: bool) -> Option<Duration> {
        let now = Instant::now();
        let down: BTreeSet<&str> = self
            .tracked
            .iter()
            .filter(|(_, t)| t.state == MemberState::Down)
            .map(|(n, _)| n.as_str())
            .collect();
        let mut pods_by_node: BTreeMap<String, Vec<Arc<Value>>> = BTreeMap::new();
        if !down.is_empty() {
            for pod in self.ctx.cache.list(pods(), None) {
                let name = node_name(&pod);
                if down.contains(name) {
                    pods_by_node.entry(name.to_string()).or_default().push(pod);
                }
            }
        }
        let mut recheck: Option<Duration> = None;
        self.failed = false;
        let names: Vec<(String, Tracked)> = self
            .tracked
            .iter()
            .filter(|(_, t)| !only_down || t.state == MemberState::Down)
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        for (name, tracked) in names {
            let Some(stored) = self.ctx.cache.get(nodes(), &ObjectKey::cluster(&name)) else {
                continue;
            };
            let node: Node = match Node::deserialize(&*stored) {
                Ok(n) => n,
                Err(error) => {
                    tracing::debug!(message = "skipping a Node that does not decode", node = %name, %error);
                    continue;
                }
            };
            let reach = match (tracked.state, tracked.down_since) {
                (MemberState::Alive, _) => Reach::Alive,
                (MemberState::Suspect, _) | (MemberState::Down, None) => Reach::Suspect,
                (MemberState::Down, Some(since)) => Reach::Down {
                    down_for: now.saturating_duration_since(since),
                },
            };
            let pod_values = pods_by_node.remove(&name).unwrap_or_default();
            let typed: Vec<Pod> = pod_values
                .iter()
                .filter_map(|p| Pod::deserialize(&**p).ok())
                .collect();
            let view = NodeView {
                node: &node,
                reach,
                fence_timeout_ms: tracked.fence_timeout_ms,
                heartbeat_age: self.heartbeats.age(&name),
                marked_not_ready: &tracked.marked_not_ready,
            };
            let decision = core::decide(&view, &typed, Timestamp::now());
            if let Some(r) = decision.recheck_after {
                recheck = Some(recheck.map_or(r, |x: Duration| x.min(r)));
            }
            let mut marked = Vec::new();
            if let Err(error) = self
                .act(&name, &stored, &pod_values, decision, &mut marked)
                .await
            {
                tracing::warn!(message = "node lifecycle action failed; retrying on the next round", node = %name, %error);
                // A failed write is retried at the next tick (or the next change).
                self.failed = true;
            }
            if let Some(t) = self.tracked.get_mut(&name)
                && t.down_since == tracked.down_since
            {
                t.marked_not_ready.extend(marked);
            }
        }
        recheck
    }

    /// Carries a decision out: the Node first (taints before evictions), then the pods'
    /// readiness, then the evictions (also when marking failed: they matter more). The
    /// uids marked not ready go into `marked_uids`.
    async fn act(
        &self,
        name: &str,
        stored: &Value,
        node_pods: &[Arc<Value>],
        decision: Decision,
        marked_uids: &mut Vec<String>,
    ) -> Result<(), StoreError> {
        if decision.taints.is_some() || decision.conditions.is_some() {
            let mut obj = stored.clone();
            if let Some(taints) = &decision.taints {
                set_path(&mut obj, "spec", "taints", to_value(taints));
            }
            if let Some(conditions) = &decision.conditions {
                set_path(&mut obj, "status", "conditions", to_value(conditions));
            }
            // The cached resourceVersion makes this a compare-and-swap: a decision taken
            // on a stale Node fails with a conflict and is taken again.
            let written = self.ctx.store.update(nodes(), obj).await?;
            if let Some((reason, message)) = &decision.node_event {
                self.ctx.events.record(
                    nodes(),
                    &written,
                    EventType::Normal,
                    reason,
                    message.clone(),
                );
            }
            let _ = self
                .ctx
                .cache
                .wait_for_revision(nodes(), revision_of(&written), CACHE_CATCH_UP)
                .await;
        }
        let marking = self
            .mark_not_ready(name, node_pods, decision.not_ready, marked_uids)
            .await;
        let mut marked = 0;
        let mut gone: Vec<ObjectKey> = Vec::new();
        for eviction in decision.evictions {
            let Some(pod) = node_pods
                .iter()
                .find(|p| drover_store::object::meta_str(p, "uid") == Some(eviction.uid.as_str()))
            else {
                continue;
            };
            let grace = match eviction.kind {
                EvictionKind::Graceful => drover_store::object::default_grace(pod),
                EvictionKind::Force => {
                    if !self.still_fenced(name) {
                        continue;
                    }
                    Some(0)
                }
            };
            let (reason, message, type_) = match eviction.kind {
                EvictionKind::Graceful => (
                    "TaintManagerEviction",
                    format!(
                        "Marking for deletion Pod {}/{}",
                        eviction.namespace, eviction.name
                    ),
                    EventType::Normal,
                ),
                EvictionKind::Force => (
                    "NodeFenced",
                    format!(
                        "Force-deleting Pod {}/{}: node {name} is down and silent past its fence timeout",
                        eviction.namespace, eviction.name
                    ),
                    EventType::Warning,
                ),
            };
            let opts = DeleteOptions {
                uid: Some(eviction.uid.clone()),
                grace_period_seconds: grace,
                ..Default::default()
            };
            match self
                .ctx
                .store
                .delete(pods(), Some(&eviction.namespace), &eviction.name, &opts)
                .await
            {
                Ok(outcome) => {
                    tracing::info!(message = "evicted", pod = %format!("{}/{}", eviction.namespace, eviction.name), node = %name, kind = ?eviction.kind);
                    self.ctx.events.record(pods(), pod, type_, reason, message);
                    match outcome {
                        DeleteOutcome::Terminating(v) => {
                            marked = marked.max(revision_of(&v));
                        }
                        DeleteOutcome::Deleted(_) => {
                            gone.push(ObjectKey::namespaced(&eviction.namespace, &eviction.name))
                        }
                    }
                }
                // Gone already, or a new pod took the name: nothing to do.
                Err(StoreError::NotFound { .. }) => {}
                Err(StoreError::Conflict { reason, .. }) if reason.contains("uid") => {}
                Err(e) => return Err(e),
            }
        }
        // Read our writes: the next round (250 ms on) must not see these pods as they
        // were and delete them again.
        if marked > 0 {
            let _ = self
                .ctx
                .cache
                .wait_for_revision(pods(), marked, CACHE_CATCH_UP)
                .await;
        }
        for key in gone {
            let _ = self
                .ctx
                .cache
                .wait_absent(pods(), &key, CACHE_CATCH_UP)
                .await;
        }
        marking
    }

    /// Writes the pods' `Ready` False in one batch (one commit for the lot), each a
    /// compare-and-swap on the cached pod: a pod that changed meanwhile is decided again
    /// in the next round (its change triggers one). Events `NodeNotReady` on the pods, as
    /// Kubernetes records them.
    async fn mark_not_ready(
        &self,
        name: &str,
        node_pods: &[Arc<Value>],
        not_ready: Vec<core::NotReady>,
        marked: &mut Vec<String>,
    ) -> Result<(), StoreError> {
        let mut entries = Vec::new();
        let mut uids = Vec::new();
        for mark in not_ready {
            let Some(pod) = node_pods
                .iter()
                .find(|p| drover_store::object::meta_str(p, "uid") == Some(mark.uid.as_str()))
            else {
                continue;
            };
            let current = (**pod).clone();
            let mut changed = current.clone();
            let Some(conditions) = changed
                .pointer_mut("/status/conditions")
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            let Some(slot) = conditions
                .iter_mut()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
            else {
                continue;
            };
            *slot = to_value(&mark.ready);
            entries.push((current, changed));
            uids.push(mark);
        }
        if entries.is_empty() {
            return Ok(());
        }
        let results = self.ctx.store.update_batch(pods(), entries).await;
        let mut latest = 0;
        let mut failure = None;
        for (mark, result) in uids.into_iter().zip(results) {
            match result {
                Ok(written) => {
                    tracing::info!(message = "marked not ready", pod = %format!("{}/{}", mark.namespace, mark.name), node = %name);
                    latest = latest.max(revision_of(&written));
                    self.ctx.events.record(
                        pods(),
                        &written,
                        EventType::Warning,
                        "NodeNotReady",
                        "Node is not ready",
                    );
                    marked.push(mark.uid);
                }
                // Changed or gone meanwhile: the next round decides on what is there.
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                Err(e) => failure = Some(e),
            }
        }
        // Read our writes, so the next round does not decide on the pods as they were.
        if latest > 0 {
            let _ = self
                .ctx
                .cache
                .wait_for_revision(pods(), latest, CACHE_CATCH_UP)
                .await;
        }
        failure.map_or(Ok(()), Err)
    }

    /// Re-checks the fencing rule on the live view and heartbeats right before a forced
    /// delete (see the module's invariant).
    fn still_fenced(&self, name: &str) -> bool {
        let live = self.membership.borrow();
        if core::member_of(&live, name).is_some_and(|m| m.state != MemberState::Down) {
            return false;
        }
        let Some(tracked) = self.tracked.get(name) else {
            return false;
        };
        let Some(since) = tracked.down_since else {
            return false;
        };
        core::fence_wait(
            tracked.fence_timeout_ms,
            since.elapsed(),
            self.heartbeats.age(name),
        ) == Fence::Now
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Sets `obj[section][field]`, creating `section` when it is missing or not an object.
fn set_path(obj: &mut Value, section: &str, field: &str, value: Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    let entry = root
        .entry(section)
        .or_insert_with(|| Value::Object(Default::default()));
    if !entry.is_object() {
        *entry = Value::Object(Default::default());
    }
    if let Some(map) = entry.as_object_mut() {
        map.insert(field.to_string(), value);
    }
}
