//! The rollout arithmetic of the Deployment controller, free of I/O: how far a
//! RollingUpdate may surge and dip, how many replicas the new ReplicaSet gets per step,
//! how many each old ReplicaSet loses, proportional scaling of a Deployment scaled in the
//! middle of a rollout, the template hash, and the completion / progress tests behind the
//! `Progressing` condition. Semantics follow Kubernetes' `pkg/controller/deployment`
//! (`util/deployment_util.go`, `rolling.go`, `sync.go`).

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

/// Why a rollout parameter cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    /// `maxSurge` / `maxUnavailable` is a string that is not a percentage (not retryable
    /// until the Deployment changes; nothing was written).
    #[error("invalid value for IntOrString: invalid type: string is not a percentage: {0:?}")]
    NotAPercentage(String),
}

/// A RollingUpdate's limits resolved against the desired replica count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fenceposts {
    /// Pods allowed above the desired count.
    pub max_surge: i32,
    /// Pods allowed below the desired count.
    pub max_unavailable: i32,
}

/// An int, or a percentage of `total` rounded up (`round_up`) or down, as Kubernetes'
/// `GetScaledValueFromIntOrPercent`.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, RolloutError> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| RolloutError::NotAPercentage(s.clone()))?;
            let product = percent * i64::from(total);
            let scaled = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            Ok(scaled.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
        }
    }
}

/// Resolves `maxSurge` (rounded up) and `maxUnavailable` (rounded down) against
/// `desired`; when both come to 0 one pod may be unavailable, or a rollout could never
/// make progress (Kubernetes' `ResolveFenceposts`).
pub fn resolve_fenceposts(
    max_surge: &IntOrString,
    max_unavailable: &IntOrString,
    desired: i32,
) -> Result<Fenceposts, RolloutError> {
    let surge = scaled_value(max_surge, desired, true)?;
    let mut unavailable = scaled_value(max_unavailable, desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok(Fenceposts {
        max_surge: surge.max(0),
        max_unavailable: unavailable.max(0),
    })
}

/// The strategy parameters the arithmetic needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Replace pods gradually within the fenceposts.
    RollingUpdate(Fenceposts),
    /// Remove every old pod before creating new ones.
    Recreate,
}

impl Strategy {
    /// Pods allowed above `replicas` (0 for Recreate).
    pub fn max_surge(&self) -> i32 {
        match self {
            Strategy::RollingUpdate(f) => f.max_surge,
            Strategy::Recreate => 0,
        }
    }

    /// Pods allowed below `replicas`, never more than `replicas` (0 for Recreate, as
    /// Kubernetes' `MaxUnavailable`).
    pub fn max_unavailable(&self, replicas: i32) -> i32 {
        match self {
            Strategy::RollingUpdate(f) if replicas > 0 => f.max_unavailable.min(replicas),
            _ => 0,
        }
    }
}

/// What the arithmetic needs to know about one ReplicaSet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RsState {
    /// Name (for the result and for ordering ties).
    pub name: String,
    /// Creation order key (RFC 3339 creationTimestamp sorts as text).
    pub created: String,
    /// `spec.replicas`.
    pub spec_replicas: i32,
    /// `status.replicas`.
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// The `deployment.kubernetes.io/max-replicas` annotation.
    pub max_replicas: Option<i32>,
}

/// Sum of `spec.replicas`.
pub fn spec_total(rss: &[&RsState]) -> i32 {
    rss.iter().map(|r| r.spec_replicas).sum()
}

/// Pods the ReplicaSets have or are asked for: per ReplicaSet the larger of
/// `spec.replicas` and `status.replicas` (a scaled-down ReplicaSet still has its pods
/// until its controller deletes them and says so).
pub fn pods_total(rss: &[&RsState]) -> i32 {
    rss.iter().map(|r| r.spec_replicas.max(r.replicas)).sum()
}

/// `spec.replicas` for the new ReplicaSet in the next RollingUpdate step: up to
/// `replicas + maxSurge` pods in all ReplicaSets, never above `replicas` (Kubernetes'
/// `NewRSNewReplicas`). `all_pods` is [`pods_total`]: unlike Kubernetes, which adds up
/// `spec.replicas` only, pods an old ReplicaSet has not deleted yet count too, so the
/// surge holds for pods that exist, not only for pods asked for. Recreate gives the new
/// ReplicaSet everything at once.
pub fn new_rs_replicas(strategy: Strategy, replicas: i32, all_pods: i32, new_spec: i32) -> i32 {
    match strategy {
        Strategy::Recreate => replicas,
        Strategy::RollingUpdate(f) => {
            let max_total = replicas + f.max_surge;
            if all_pods >= max_total {
                return new_spec;
            }
            let up = (max_total - all_pods).min(replicas - new_spec);
            new_spec + up.max(0)
        }
    }
}

/// New `spec.replicas` of each old ReplicaSet (same order as `olds`, which must be
/// oldest first) in one RollingUpdate step: first unhealthy replicas are dropped, then
/// available ones, never taking the available count below `replicas - maxUnavailable`
/// (Kubernetes' `reconcileOldReplicaSets`, `cleanupUnhealthyReplicas`,
/// `scaleDownOldReplicaSetsForRollingUpdate`). One deliberate difference: a
/// ReplicaSet's available count is taken as at most its `spec.replicas`, so a status
/// that has not caught up with an earlier scale-down cannot justify another one (the
/// pods it counts are already being deleted).
pub fn old_rs_replicas(
    replicas: i32,
    max_unavailable: i32,
    new: Option<&RsState>,
    olds: &[&RsState],
) -> Vec<i32> {
    let avail = |r: &RsState| r.available.min(r.spec_replicas).max(0);
    let mut sizes: Vec<i32> = olds.iter().map(|r| r.spec_replicas).collect();
    let old_total: i32 = sizes.iter().sum();
    if old_total == 0 {
        return sizes;
    }
    let new_spec = new.map_or(0, |n| n.spec_replicas);
    let all_total = old_total + new_spec;
    let min_available = replicas - max_unavailable;
    let new_unavailable = new.map_or(0, |n| n.spec_replicas - avail(n));
    let max_scaled_down = all_total - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return sizes;
    }
    // Unhealthy replicas first: removing them costs no availability.
    let mut cleaned = 0;
    for (size, rs) in sizes.iter_mut().zip(olds) {
        if cleaned >= max_scaled_down {
            break;
        }
        if *size == 0 || *size == avail(rs) {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(*size - avail(rs)).max(0);
        *size -= down;
        cleaned += down;
    }
    // Then available ones, down to the minimum availability.
    let available: i32 = olds.iter().map(|r| avail(r)).sum::<i32>() + new.map_or(0, avail);
    if available <= min_available {
        return sizes;
    }
    let to_scale_down = available - min_available;
    let mut scaled = 0;
    for size in sizes.iter_mut() {
        if scaled >= to_scale_down {
            break;
        }
        if *size == 0 {
            continue;
        }
        let down = (*size).min(to_scale_down - scaled);
        *size -= down;
        scaled += down;
    }
    sizes
}

/// The ReplicaSet that alone has pods, or the newest when none has (Kubernetes'
/// `FindActiveOrLatest`); `None` when several have pods. `olds` must be oldest first.
pub fn active_or_latest<'a>(new: Option<&'a RsState>, olds: &[&'a RsState]) -> Option<&'a RsState> {
    let mut active = new
        .into_iter()
        .chain(olds.iter().copied())
        .filter(|r| r.spec_replicas > 0);
    match (active.next(), active.next()) {
        (Some(one), None) => Some(one),
        (None, _) => new.or_else(|| olds.last().copied()),
        _ => None,
    }
}

/// New sizes (by name) for a Deployment scaled to `replicas` while several ReplicaSets
/// have pods: the difference to `replicas + maxSurge` is spread in proportion to each
/// ReplicaSet's share of its `max-replicas` annotation (falling back to
/// `deployment_status_replicas`), the rest to the largest (Kubernetes' `scale`,
/// `GetProportion`). `rss` are the ReplicaSets with pods.
pub fn proportional_sizes(
    replicas: i32,
    max_surge: i32,
    deployment_status_replicas: i32,
    rss: &[&RsState],
) -> Vec<(String, i32)> {
    let total = spec_total(rss);
    let allowed = if replicas > 0 {
        replicas + max_surge
    } else {
        0
    };
    let to_add = allowed - total;
    let mut order: Vec<&RsState> = rss.to_vec();
    // Scaling up favours the largest, newest first; scaling down the largest, oldest first.
    order.sort_by(|a, b| {
        b.spec_replicas.cmp(&a.spec_replicas).then_with(|| {
            if to_add > 0 {
                b.created.cmp(&a.created).then_with(|| b.name.cmp(&a.name))
            } else {
                a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name))
            }
        })
    });
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = Vec::with_capacity(order.len());
    for rs in &order {
        let mut size = rs.spec_replicas;
        if to_add != 0 && rs.spec_replicas != 0 && to_add != added {
            let fraction = if replicas == 0 {
                -rs.spec_replicas
            } else {
                let annotated = rs.max_replicas.unwrap_or(deployment_status_replicas);
                if annotated <= 0 {
                    0
                } else {
                    let target =
                        f64::from(rs.spec_replicas) * f64::from(allowed) / f64::from(annotated);
                    target.round() as i32 - rs.spec_replicas
                }
            };
            let left = to_add - added;
            let proportion = if to_add > 0 {
                fraction.min(left)
            } else {
                fraction.max(left)
            };
            size += proportion;
            added += proportion;
        }
        sizes.push((rs.name.clone(), size));
    }
    if let Some(first) = sizes.first_mut()
        && to_add != 0
    {
        first.1 = (first.1 + to_add - added).max(0);
    }
    sizes
}

/// The status counts a Deployment's ReplicaSets add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Pods of every ReplicaSet (`status.replicas`).
    pub replicas: i32,
    /// Pods of the new ReplicaSet.
    pub updated: i32,
    /// Ready pods.
    pub ready: i32,
    /// Available pods.
    pub available: i32,
    /// `spec.replicas` of every ReplicaSet minus available (never negative).
    pub unavailable: i32,
}

/// Adds up the counts (Kubernetes' `calculateStatus`).
pub fn counts(new: Option<&RsState>, all: &[&RsState]) -> Counts {
    let available: i32 = all.iter().map(|r| r.available).sum();
    Counts {
        replicas: all.iter().map(|r| r.replicas).sum(),
        updated: new.map_or(0, |n| n.replicas),
        ready: all.iter().map(|r| r.ready).sum(),
        available,
        unavailable: (spec_total(all) - available).max(0),
    }
}

/// Whether the rollout is done: every pod updated and available, nothing old left
/// (Kubernetes' `DeploymentComplete`).
pub fn complete(replicas: i32, c: &Counts, observed_generation_current: bool) -> bool {
    c.updated == replicas
        && c.replicas == replicas
        && c.available == replicas
        && observed_generation_current
}

/// Whether `new` shows progress over `old` (more updated, ready or available pods, or
/// fewer old ones), which renews the progress deadline (Kubernetes'
/// `DeploymentProgressing`).
pub fn progressing(old: &Counts, new: &Counts) -> bool {
    new.updated > old.updated
        || (new.replicas - new.updated) < (old.replicas - old.updated)
        || new.ready > old.ready
        || new.available > old.available
}

/// The hash that names a Deployment's ReplicaSet for `template` (the pod template
/// without its `pod-template-hash` label) and the Deployment's `collisionCount`:
/// FNV-1a (32 bit) over the canonical JSON, its decimal digits spelled in Kubernetes'
/// safe alphabet, as Kubernetes' `ComputeHash` + `SafeEncodeString` shape it.
pub fn template_hash(template: &Value, collision_count: Option<i32>) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    // serde_json's map is ordered by key, so this text is canonical.
    let mut text = serde_json::to_string(template).unwrap_or_default();
    if let Some(c) = collision_count {
        text.push_str(&c.to_string());
    }
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash.to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// `value` without nulls, `false`, `0`, `""`, empty objects and empty lists, at any
/// depth: two templates that differ only in those are the same template, as Kubernetes'
/// semantic equality (`EqualIgnoreHash`) sees typed Go objects, where an omitted field
/// and its zero value are one thing (`kubectl rollout undo` sends a template with
/// `creationTimestamp: null` and without `stdin: false` where the stored one differs).
pub fn semantic(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), semantic(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(semantic).collect()),
        other => other.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
