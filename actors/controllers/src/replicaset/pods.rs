//! The ReplicaSet controller's decisions about pods, free of I/O: which pods count, which
//! are ready and available (`minReadySeconds`), which to delete first when scaling down,
//! and the slow-start batch sizes for creating many at once. Semantics follow
//! Kubernetes' `pkg/controller/controller_utils.go` (`ActivePodsWithRanks`,
//! `slowStartBatch`) and `pkg/api/v1/pod` (`IsPodAvailable`).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

/// The first batch of a slow start (Kubernetes' `SlowStartInitialBatchSize`).
pub const SLOW_START_INITIAL_BATCH: usize = 1;
/// Most pods created or deleted by one reconcile (Kubernetes' `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// Whether a pod counts toward a ReplicaSet's replicas: not terminating, not finished.
pub fn is_active(pod: &Value) -> bool {
    !drover_store::object::is_terminating(pod) && !matches!(phase(pod), "Succeeded" | "Failed")
}

/// `status.phase` ("" when absent).
pub fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The pod's `Ready` condition when it is `True`: its lastTransitionTime (None when the
/// pod is not ready; a ready pod without a time counts as ready since forever).
fn ready_since(pod: &Value) -> Option<Option<Timestamp>> {
    let cond = pod
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))?;
    if cond.get("status").and_then(Value::as_str) != Some("True") {
        return None;
    }
    Some(
        cond.get("lastTransitionTime")
            .and_then(Value::as_str)
            .and_then(|t| t.parse().ok()),
    )
}

/// Whether the pod is Ready.
pub fn is_ready(pod: &Value) -> bool {
    ready_since(pod).is_some()
}

/// Whether the pod has been Ready for `min_ready` at `now`; when it is ready but not yet
/// long enough, how long until it is (the reconcile requeues after that).
pub fn availability(pod: &Value, min_ready: Duration, now: Timestamp) -> (bool, Option<Duration>) {
    let Some(since) = ready_since(pod) else {
        return (false, None);
    };
    if min_ready.is_zero() {
        return (true, None);
    }
    let Some(since) = since else {
        return (true, None);
    };
    let ready_for = now.duration_since(since);
    let ready_for = Duration::try_from(ready_for).unwrap_or(Duration::ZERO);
    if ready_for >= min_ready {
        (true, None)
    } else {
        (false, Some(min_ready - ready_for))
    }
}

/// Highest restart count of the pod's containers.
fn restarts(pod: &Value) -> i64 {
    pod.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
        .max()
        .unwrap_or(0)
}

fn node_name(pod: &Value) -> &str {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn phase_rank(pod: &Value) -> u8 {
    match phase(pod) {
        "Pending" | "" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

/// Compares two pods for deletion: `Less` means `a` goes first. Unscheduled before
/// scheduled, Pending before Unknown before Running, not ready before ready, more pods
/// of the same owner on its node before fewer (`rank`), ready for less time before more,
/// more restarts before fewer, newer before older (Kubernetes' `ActivePodsWithRanks`).
pub fn delete_first(a: (&Value, usize), b: (&Value, usize)) -> Ordering {
    let (pa, ra) = a;
    let (pb, rb) = b;
    let assigned = |p: &Value| !node_name(p).is_empty();
    assigned(pa)
        .cmp(&assigned(pb))
        .then_with(|| phase_rank(pa).cmp(&phase_rank(pb)))
        .then_with(|| is_ready(pa).cmp(&is_ready(pb)))
        .then_with(|| rb.cmp(&ra))
        .then_with(
            || match (ready_since(pa).flatten(), ready_since(pb).flatten()) {
                // Ready for less time (a later transition) goes first.
                (Some(ta), Some(tb)) => tb.cmp(&ta),
                _ => Ordering::Equal,
            },
        )
        .then_with(|| restarts(pb).cmp(&restarts(pa)))
        .then_with(|| {
            let created = |p: &Value| {
                drover_store::object::meta_str(p, "creationTimestamp")
                    .unwrap_or("")
                    .to_string()
            };
            created(pb).cmp(&created(pa))
        })
        .then_with(|| drover_store::object::name(pa).cmp(drover_store::object::name(pb)))
}

/// The `n` pods of `pods` (one owner's active pods) to delete first.
pub fn pods_to_delete(pods: &[&Value], n: usize) -> Vec<usize> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in pods {
        let node = node_name(p);
        if !node.is_empty() {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let rank = |p: &Value| per_node.get(node_name(p)).copied().unwrap_or(0);
    let mut order: Vec<usize> = (0..pods.len()).collect();
    order.sort_by(|&i, &j| delete_first((pods[i], rank(pods[i])), (pods[j], rank(pods[j]))));
    order.truncate(n);
    order
}

/// Batch sizes for creating `count` pods: 1, 2, 4, ... (the last one smaller), so a
/// failing create (a quota, a bad template) costs one write, not `count`.
pub fn slow_start_batches(count: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let mut remaining = count;
    let mut size = SLOW_START_INITIAL_BATCH.min(remaining);
    while size > 0 {
        batches.push(size);
        remaining -= size;
        size = (2 * size).min(remaining);
    }
    batches
}

#[cfg(test)]
mod tests;
