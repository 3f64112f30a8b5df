//! The node lifecycle controller's decisions, without I/O: what a node's taints and
//! conditions should be given what gossip says about it, which of its pods to mark not
//! ready, which to evict (gracefully or by force) and when to look again. Time comes in as values (`now`, how
//! long the node has been down, how old its last bus heartbeat is), so every rule is a
//! table test.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use drover_membership::{Member, MemberState};

use crate::daemonset::core::tolerates;

/// The taint key of a node the control plane cannot reach (Kubernetes' `TaintNodeUnreachable`).
pub const UNREACHABLE_TAINT_KEY: &str = "node.kubernetes.io/unreachable";
/// The condition type drover adds to say what gossip thinks of the node.
pub const GOSSIP_CONDITION: &str = "GossipReachable";
/// `Ready`'s reason while the controller holds it Unknown (as Kubernetes' node lifecycle
/// controller writes it); only a Ready with this reason is set back to True.
pub const REASON_STATUS_UNKNOWN: &str = "NodeStatusUnknown";
/// `Ready`'s message while the node is down.
pub const MESSAGE_STATUS_UNKNOWN: &str = "Node declared down by gossip membership.";
/// `Ready`'s reason when the controller sets it back (the node agent's own reason).
pub const REASON_READY: &str = "KubeletReady";
/// `Ready`'s message when the controller sets it back.
pub const MESSAGE_READY: &str = "drover node agent is posting ready status";
/// `GossipReachable`'s reason while the member is alive.
pub const REASON_MEMBER_ALIVE: &str = "MemberAlive";
/// `GossipReachable`'s reason while the member is down.
pub const REASON_MEMBER_DOWN: &str = "MemberDown";
/// Added to a node's advertised fence timeout before its StatefulSet pods are
/// force-deleted: covers the node's clock running slow and its last heartbeat's flight.
pub const FENCE_MARGIN: Duration = Duration::from_secs(2);

/// What gossip says about a node, as the controller tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// The member is alive.
    Alive,
    /// The member is suspected; nothing changes until it is declared down or refutes.
    Suspect,
    /// The member was declared down `down_for` ago (as first seen by this controller).
    Down {
        /// How long since the controller first saw it down.
        down_for: Duration,
    },
}

/// One node as the controller sees it.
#[derive(Clone, Debug)]
pub struct NodeView<'a> {
    /// The stored Node.
    pub node: &'a Node,
    /// What gossip says.
    pub reach: Reach,
    /// The fence timeout the member advertises (ms); 0: the node never fences itself.
    pub fence_timeout_ms: u32,
    /// How long since the node's last bus heartbeat reached this controller (`None`: none
    /// seen since the controller started).
    pub heartbeat_age: Option<Duration>,
    /// Uids of the node's pods this controller already marked not ready while the node
    /// has been down this time: they are not marked again (see [`Decision::not_ready`]).
    pub marked_not_ready: &'a BTreeSet<String>,
}

/// How a pod is evicted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictionKind {
    /// A delete with the pod's grace period: it is marked terminating, its controller
    /// replaces it, and the node agent finishes it if the node comes back.
    Graceful,
    /// A delete with grace 0 (uid precondition): the object is gone at once. Only after
    /// the node's fence window, when the node has stopped the pod itself.
    Force,
}

/// One pod to delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eviction {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The uid the delete is conditioned on.
    pub uid: String,
    /// Graceful or forced.
    pub kind: EvictionKind,
}

/// One pod to mark not ready (Kubernetes' `MarkPodsNotReady`).
#[derive(Clone, Debug, PartialEq)]
pub struct NotReady {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The uid the pod had when decided (the write is a compare-and-swap besides).
    pub uid: String,
    /// The pod's `Ready` condition as it is to be stored: status False, the transition
    /// time now, reason, message and probe time as they were.
    pub ready: PodCondition,
}

/// What to do about one node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// The node's new `spec.taints`, when they change.
    pub taints: Option<Vec<Taint>>,
    /// The node's new `status.conditions`, when they change.
    pub conditions: Option<Vec<NodeCondition>>,
    /// A Node event (reason, message) for a Ready transition this decision makes.
    pub node_event: Option<(&'static str, String)>,
    /// Pods of a down node whose `Ready` condition is to become False, so the
    /// EndpointSlice controller stops listing them as ready (serving) endpoints. As in
    /// Kubernetes, only an existing `Ready` condition that is not False already is
    /// changed, nothing else in the status; pods that tolerate the node's unreachable
    /// taint, and terminating ones, included. Not: finished pods (no longer endpoints),
    /// pods force-deleted by this decision, and pods in
    /// [`NodeView::marked_not_ready`] (marked once this time: if a node agent still
    /// reachable over the bus reports them ready again, it is believed rather than
    /// fought). Written after the node, before the evictions, in one batch.
    pub not_ready: Vec<NotReady>,
    /// Pods to delete, BestEffort first, then Burstable, then Guaranteed. Carried out only
    /// once the node write (if any) has succeeded, so the taint is in place first.
    pub evictions: Vec<Eviction>,
    /// When a time-based rule (a tolerationSeconds, the fence window) next becomes due.
    pub recheck_after: Option<Duration>,
}

/// The state of a node name in a gossip view: alive if any of its entries is alive (a
/// restarted member's new identity next to its old, down one), else suspect if any is,
/// else down. Returns the entry that decided, for its metadata; `None` when the name is
/// not in the view.
pub fn member_of<'a>(view: &'a [Member], name: &str) -> Option<&'a Member> {
    let rank = |s: MemberState| match s {
        MemberState::Alive => 0,
        MemberState::Suspect => 1,
        MemberState::Down => 2,
    };
    view.iter()
        .filter(|m| *m.name == *name)
        .min_by_key(|m| rank(m.state))
}

/// Decides one node. `pods` are the pods bound to it (`spec.nodeName`); `now` is the wall
/// clock, for taint and condition times and tolerationSeconds.
pub fn decide(view: &NodeView, pods: &[Pod], now: Timestamp) -> Decision {
    match view.reach {
        Reach::Suspect => Decision::default(),
        Reach::Alive => decide_alive(view.node, now),
        Reach::Down { down_for } => decide_down(view, down_for, pods, now),
    }
}

fn taints_of(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
}

fn conditions_of(node: &Node) -> Vec<NodeCondition> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
}

/// Sets condition `type_` to (status, reason, message); returns whether anything changed.
/// The transition time moves only when the status does; an equal status and reason is
/// left alone (the message too), so a condition is never rewritten for nothing.
fn set_condition(
    conditions: &mut Vec<NodeCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == status && c.reason.as_deref() == Some(reason) => false,
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Some(Time(now));
            }
            c.status = status.into();
            c.reason = Some(reason.into());
            c.message = Some(message.into());
            true
        }
        None => {
            conditions.push(NodeCondition {
                type_: type_.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_transition_time: Some(Time(now)),
                last_heartbeat_time: None,
            });
            true
        }
    }
}

fn decide_alive(node: &Node, now: Timestamp) -> Decision {
    let mut decision = Decision::default();
    let taints = taints_of(node);
    let kept: Vec<Taint> = taints
        .iter()
        .filter(|t| t.key != UNREACHABLE_TAINT_KEY)
        .cloned()
        .collect();
    if kept.len() != taints.len() {
        decision.taints = Some(kept);
    }
    let mut conditions = conditions_of(node);
    let mut changed = set_condition(
        &mut conditions,
        GOSSIP_CONDITION,
        "True",
        REASON_MEMBER_ALIVE,
        "Node is alive in gossip membership.",
        now,
    );
    // Ready goes back to True only where this controller set it Unknown: a node whose
    // agent reports NotReady for its own reasons keeps that.
    let ours = conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.reason.as_deref() == Some(REASON_STATUS_UNKNOWN));
    if ours {
        changed |= set_condition(
            &mut conditions,
            "Ready",
            "True",
            REASON_READY,
            MESSAGE_READY,
            now,
        );
        decision.node_event = Some((
            "NodeReady",
            format!("Node {} status is now: NodeReady", name_of(node)),
        ));
    }
    if changed {
        decision.conditions = Some(conditions);
    }
    decision
}

fn name_of(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or_default()
}

fn unreachable_taint(effect: &str, now: Timestamp) -> Taint {
    Taint {
        key: UNREACHABLE_TAINT_KEY.into(),
        effect: effect.into(),
        time_added: Some(Time(now)),
        value: None,
    }
}

fn decide_down(view: &NodeView, down_for: Duration, pods: &[Pod], now: Timestamp) -> Decision {
    let node = view.node;
    let mut decision = Decision::default();
    let mut taints = taints_of(node);
    let mut taints_changed = false;
    for effect in ["NoSchedule", "NoExecute"] {
        if !taints
            .iter()
            .any(|t| t.key == UNREACHABLE_TAINT_KEY && t.effect == effect)
        {
            taints.push(unreachable_taint(effect, now));
            taints_changed = true;
        }
    }
    let no_execute = taints
        .iter()
        .find(|t| t.key == UNREACHABLE_TAINT_KEY && t.effect == "NoExecute")
        .cloned()
        .unwrap_or_else(|| unreachable_taint("NoExecute", now));
    if taints_changed {
        decision.taints = Some(taints);
    }

    let mut conditions = conditions_of(node);
    let ready_changed = set_condition(
        &mut conditions,
        "Ready",
        "Unknown",
        REASON_STATUS_UNKNOWN,
        MESSAGE_STATUS_UNKNOWN,
        now,
    );
    let gossip_changed = set_condition(
        &mut conditions,
        GOSSIP_CONDITION,
        "False",
        REASON_MEMBER_DOWN,
        "Node is declared down by gossip membership.",
        now,
    );
    if ready_changed {
        decision.node_event = Some((
            "NodeNotReady",
            format!("Node {} status is now: NodeNotReady", name_of(node)),
        ));
    }
    if ready_changed || gossip_changed {
        decision.conditions = Some(conditions);
    }

    let fence = fence_wait(view.fence_timeout_ms, down_for, view.heartbeat_age);
    let mut due: Vec<(u8, String, String, Eviction)> = Vec::new();
    let mut recheck: Option<Duration> = None;
    let mut later = |d: Duration| recheck = Some(recheck.map_or(d, |r: Duration| r.min(d)));
    for pod in pods {
        let Some(facts) = PodFacts::of(pod) else {
            continue;
        };
        if facts.terminal {
            continue;
        }
        let kind = if facts.terminating {
            // The node will never finish it; once it has fenced itself the object can go.
            match fence {
                Fence::Now => EvictionKind::Force,
                Fence::After(d) => {
                    later(d);
                    continue;
                }
                Fence::Never => continue,
            }
        } else {
            match toleration_wait(&pod_tolerations(pod), &no_execute, now) {
                None => continue,
                Some(wait) if !wait.is_zero() => {
                    later(wait);
                    continue;
                }
                Some(_) if !facts.stateful => EvictionKind::Graceful,
                // FENCING RULE: the StatefulSet controller recreates a pod under the same
                // name as soon as the old object is gone, so it may go only when the node
                // has certainly stopped it.
                Some(_) => match fence {
                    Fence::Now => EvictionKind::Force,
                    Fence::After(d) => {
                        later(d);
                        continue;
                    }
                    Fence::Never => continue,
                },
            }
        };
        due.push((
            facts.qos_rank,
            facts.namespace.clone(),
            facts.name.clone(),
            Eviction {
                namespace: facts.namespace,
                name: facts.name,
                uid: facts.uid,
                kind,
            },
        ));
    }
    due.sort_by(|a, b| (a.0, &a.1, &a.2).cmp(&(b.0, &b.1, &b.2)));
    decision.evictions = due.into_iter().map(|(_, _, _, e)| e).collect();
    decision.recheck_after = recheck;
    let forced: BTreeSet<&str> = decision
        .evictions
        .iter()
        .filter(|e| e.kind == EvictionKind::Force)
        .map(|e| e.uid.as_str())
        .collect();
    decision.not_ready = pods
        .iter()
        .filter_map(|pod| {
            let facts = PodFacts::of(pod)?;
            if facts.terminal
                || forced.contains(facts.uid.as_str())
                || view.marked_not_ready.contains(&facts.uid)
            {
                return None;
            }
            let ready = not_ready_condition(pod, now)?;
            Some(NotReady {
                namespace: facts.namespace,
                name: facts.name,
                uid: facts.uid,
                ready,
            })
        })
        .collect();
    decision
}

/// The pod's `Ready` condition turned False at `now`, or `None` when it has none or it
/// is False already (Kubernetes' `MarkPodsNotReady` with `UpdatePodCondition`: only the
/// status and, with it, the transition time change).
pub fn not_ready_condition(pod: &Pod, now: Timestamp) -> Option<PodCondition> {
    let ready = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    if ready.status == "False" {
        return None;
    }
    Some(PodCondition {
        status: "False".into(),
        last_transition_time: Some(Time(now)),
        ..ready.clone()
    })
}

/// When a down node's pods may be force-deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fence {
    /// The node has been down and silent on the bus for its fence timeout plus the margin.
    Now,
    /// Not yet; this much longer at the earliest (a heartbeat may push it back).
    After(Duration),
    /// The node does not fence (timeout 0): its pods wait for it, as in Kubernetes.
    Never,
}

/// The fencing rule: force deletion is allowed once the node has been down for its fence
/// timeout plus [`FENCE_MARGIN`] and no bus heartbeat of it arrived for as long (by then the
/// node, cut off from the bus, has stopped its StatefulSet pods itself).
pub fn fence_wait(
    fence_timeout_ms: u32,
    down_for: Duration,
    heartbeat_age: Option<Duration>,
) -> Fence {
    if fence_timeout_ms == 0 {
        return Fence::Never;
    }
    let fence = Duration::from_millis(u64::from(fence_timeout_ms)) + FENCE_MARGIN;
    let wait = fence
        .saturating_sub(down_for)
        .max(heartbeat_age.map_or(Duration::ZERO, |age| fence.saturating_sub(age)));
    if wait.is_zero() {
        Fence::Now
    } else {
        Fence::After(wait)
    }
}

/// How long until a pod with `tolerations` must leave a node tainted `taint` (NoExecute):
/// zero when it does not tolerate it, `None` when it tolerates it forever, else the
/// smallest tolerationSeconds counted from the taint's timeAdded (Kubernetes'
/// `getMinTolerationTime`: a toleration with seconds <= 0 means at once, one without
/// seconds only counts when no matching toleration has any).
pub fn toleration_wait(
    tolerations: &[Toleration],
    taint: &Taint,
    now: Timestamp,
) -> Option<Duration> {
    let matching: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
    if matching.is_empty() {
        return Some(Duration::ZERO);
    }
    let seconds = matching.iter().filter_map(|t| t.toleration_seconds).min()?;
    if seconds <= 0 {
        return Some(Duration::ZERO);
    }
    let added = taint.time_added.as_ref().map_or(now, |t| t.0);
    let deadline = added
        .checked_add(jiff::SignedDuration::from_secs(seconds))
        .unwrap_or(Timestamp::MAX);
    let left = now.duration_until(deadline);
    Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
}

fn pod_tolerations(pod: &Pod) -> Vec<Toleration> {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default()
}

/// What the eviction rules need of a pod.
struct PodFacts {
    namespace: String,
    name: String,
    uid: String,
    terminal: bool,
    terminating: bool,
    stateful: bool,
    qos_rank: u8,
}

impl PodFacts {
    /// `None` for a pod without name or uid (nothing could be deleted safely).
    fn of(pod: &Pod) -> Option<PodFacts> {
        let meta = &pod.metadata;
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        Some(PodFacts {
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            name: meta.name.clone().filter(|n| !n.is_empty())?,
            uid: meta.uid.clone().filter(|u| !u.is_empty())?,
            terminal: matches!(phase, Some("Succeeded" | "Failed")),
            terminating: meta.deletion_timestamp.is_some(),
            stateful: meta
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.kind == "StatefulSet"),
            qos_rank: qos_rank(pod),
        })
    }
}

/// Eviction order: BestEffort (0), Burstable (1), Guaranteed (2); `status.qosClass` when
/// set, else computed from the spec as the API server would.
pub fn qos_rank(pod: &Pod) -> u8 {
    let stored = pod.status.as_ref().and_then(|s| s.qos_class.clone());
    let class = stored.unwrap_or_else(|| {
        let spec = serde_json::to_value(pod.spec.clone().unwrap_or_default()).unwrap_or_default();
        bus_schema::defaults::qos_class(&spec).to_string()
    });
    match class.as_str() {
        "BestEffort" => 0,
        "Burstable" => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests;
