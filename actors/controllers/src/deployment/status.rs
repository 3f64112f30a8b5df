//! A Deployment's status and conditions, free of I/O: the counts, `Available`,
//! `Progressing` (NewReplicaSetCreated, FoundNewReplicaSet, ReplicaSetUpdated,
//! NewReplicaSetAvailable, ProgressDeadlineExceeded, DeploymentPaused, DeploymentResumed)
//! and `ReplicaFailure`, as Kubernetes' `syncRolloutStatus`, `calculateStatus` and
//! `checkPausedConditions` set them. The clock is a parameter.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::rollout::{self, Counts};

/// Condition types and reasons (Kubernetes' `deployment_util.go`).
pub mod reason {
    /// Condition type: enough pods available.
    pub const AVAILABLE: &str = "Available";
    /// Condition type: the rollout moves (or timed out).
    pub const PROGRESSING: &str = "Progressing";
    /// Condition type: a ReplicaSet cannot create or delete pods.
    pub const REPLICA_FAILURE: &str = "ReplicaFailure";
    /// Available=True.
    pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
    /// Available=False.
    pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
    /// Progressing: the controller created the new ReplicaSet.
    pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
    /// Progressing: the controller found the new ReplicaSet.
    pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
    /// Progressing: pods moved.
    pub const RS_UPDATED: &str = "ReplicaSetUpdated";
    /// Progressing: the rollout is complete.
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    /// Progressing=False: no progress within progressDeadlineSeconds.
    pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
    /// Progressing=Unknown: paused.
    pub const PAUSED: &str = "DeploymentPaused";
    /// Progressing=Unknown: resumed.
    pub const RESUMED: &str = "DeploymentResumed";
}

/// A condition stamped `now`.
pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: Some(type_.into()),
        status: Some(status.into()),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// The condition of `type_`, if any.
pub fn get<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_.as_deref() == Some(type_))
}

/// Removes the condition of `type_`.
pub fn remove(status: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = status.conditions.as_mut() {
        c.retain(|c| c.type_.as_deref() != Some(type_));
        if c.is_empty() {
            status.conditions = None;
        }
    }
}

/// Sets `cond` unless one with the same status and reason is there; keeps the
/// transition time when only the reason changes (Kubernetes' `SetDeploymentCondition`).
pub fn set(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    let type_ = cond.type_.clone().unwrap_or_default();
    if let Some(current) = get(status, &type_) {
        if current.status == cond.status && current.reason == cond.reason {
            return;
        }
        if current.status == cond.status {
            cond.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove(status, &type_);
    status.conditions.get_or_insert_with(Vec::new).push(cond);
}

/// The status the counts give, with `Available` set and other conditions kept
/// (Kubernetes' `calculateStatus`).
pub fn calculate(
    old: &DeploymentStatus,
    generation: Option<i64>,
    replicas: i32,
    max_unavailable: i32,
    counts: &Counts,
    now: Timestamp,
) -> DeploymentStatus {
    let mut status = DeploymentStatus {
        observed_generation: generation,
        replicas: Some(counts.replicas),
        updated_replicas: Some(counts.updated),
        ready_replicas: Some(counts.ready),
        available_replicas: Some(counts.available),
        unavailable_replicas: Some(counts.unavailable),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: old.terminating_replicas,
    };
    if counts.available >= replicas - max_unavailable {
        set(
            &mut status,
            condition(
                reason::AVAILABLE,
                "True",
                reason::MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set(
            &mut status,
            condition(
                reason::AVAILABLE,
                "False",
                reason::MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    status
}

/// The counts recorded in a status.
pub fn counts_of(status: &DeploymentStatus) -> Counts {
    Counts {
        replicas: status.replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        ready: status.ready_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
        unavailable: status.unavailable_replicas.unwrap_or(0),
    }
}

/// Whether the rollout has run past its deadline at `now` (Kubernetes'
/// `DeploymentTimedOut`).
pub fn timed_out(status: &DeploymentStatus, deadline: Option<Duration>, now: Timestamp) -> bool {
    let (Some(deadline), Some(cond)) = (deadline, get(status, reason::PROGRESSING)) else {
        return false;
    };
    match cond.reason.as_deref() {
        Some(reason::NEW_RS_AVAILABLE) => false,
        Some(reason::TIMED_OUT) => true,
        _ => cond
            .last_update_time
            .as_ref()
            .is_some_and(|t| since(t.0, now) > deadline),
    }
}

fn since(t: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(t)).unwrap_or(Duration::ZERO)
}

/// What the rollout status should be, and when to look again for the deadline
/// (Kubernetes' `syncRolloutStatus` + `requeueStuckDeployment`).
pub struct RolloutInput<'a> {
    /// The Deployment's current status.
    pub old: &'a DeploymentStatus,
    /// `calculate`d from the ReplicaSets.
    pub calculated: DeploymentStatus,
    /// `spec.replicas`.
    pub replicas: i32,
    /// Whether the Deployment's generation is observed by `calculated`.
    pub generation_observed: bool,
    /// `progressDeadlineSeconds` (None: no deadline).
    pub deadline: Option<Duration>,
    /// The new ReplicaSet's name.
    pub new_rs: Option<&'a str>,
    /// Deployment name (messages when there is no new ReplicaSet).
    pub name: &'a str,
    /// A `ReplicaFailure` condition of a ReplicaSet (new first), if any: (reason, message).
    pub rs_failure: Option<(String, String)>,
    /// The clock.
    pub now: Timestamp,
}

/// See [`RolloutInput`].
pub fn rollout_status(input: RolloutInput<'_>) -> (DeploymentStatus, Option<Duration>) {
    let RolloutInput {
        old,
        mut calculated,
        replicas,
        generation_observed,
        deadline,
        new_rs,
        name,
        rs_failure,
        now,
    } = input;
    let subject = |verb: &str| match new_rs {
        Some(rs) => format!("ReplicaSet {rs:?} {verb}"),
        None => format!("Deployment {name:?} {verb}"),
    };
    if deadline.is_none() {
        remove(&mut calculated, reason::PROGRESSING);
    }
    let current = get(old, reason::PROGRESSING).cloned();
    let counts = counts_of(&calculated);
    let is_complete = counts.replicas == counts.updated
        && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(reason::NEW_RS_AVAILABLE);
    if deadline.is_some() && !is_complete {
        if rollout::complete(replicas, &counts, generation_observed) {
            set(
                &mut calculated,
                condition(
                    reason::PROGRESSING,
                    "True",
                    reason::NEW_RS_AVAILABLE,
                    subject("has successfully progressed."),
                    now,
                ),
            );
        } else if rollout::progressing(&counts_of(old), &counts) {
            let mut cond = condition(
                reason::PROGRESSING,
                "True",
                reason::RS_UPDATED,
                subject("is progressing."),
                now,
            );
            // Progress renews lastUpdateTime even with an unchanged reason (the deadline
            // counts from it), so this bypasses `set`.
            if let Some(c) = &current
                && c.status.as_deref() == Some("True")
            {
                cond.last_transition_time = c.last_transition_time.clone();
            }
            remove(&mut calculated, reason::PROGRESSING);
            calculated
                .conditions
                .get_or_insert_with(Vec::new)
                .push(cond);
        } else if timed_out(old, deadline, now) {
            set(
                &mut calculated,
                condition(
                    reason::PROGRESSING,
                    "False",
                    reason::TIMED_OUT,
                    subject("has timed out progressing."),
                    now,
                ),
            );
        }
    }
    match rs_failure {
        Some((reason, message)) => set(
            &mut calculated,
            condition(reason::REPLICA_FAILURE, "True", &reason, message, now),
        ),
        None => remove(&mut calculated, reason::REPLICA_FAILURE),
    }
    // Look again when the deadline would pass without progress.
    let requeue = match (deadline, get(&calculated, reason::PROGRESSING)) {
        (Some(deadline), Some(c))
            if !matches!(
                c.reason.as_deref(),
                Some(reason::NEW_RS_AVAILABLE | reason::TIMED_OUT)
            ) =>
        {
            let from = c.last_update_time.as_ref().map_or(now, |t| t.0);
            Some(deadline.saturating_sub(since(from, now)) + Duration::from_secs(1))
        }
        _ => None,
    };
    (calculated, requeue)
}

/// Sets `Progressing` to DeploymentPaused / DeploymentResumed when `paused` changed;
/// a timed-out rollout keeps its condition (Kubernetes' `checkPausedConditions`).
/// Returns whether the status changed.
pub fn paused_condition(
    status: &mut DeploymentStatus,
    paused: bool,
    has_deadline: bool,
    now: Timestamp,
) -> bool {
    if !has_deadline {
        return false;
    }
    let current = get(status, reason::PROGRESSING);
    let current_reason = current.and_then(|c| c.reason.as_deref());
    if current_reason == Some(reason::TIMED_OUT) {
        return false;
    }
    let paused_exists = current_reason == Some(reason::PAUSED);
    if paused && !paused_exists {
        set(
            status,
            condition(
                reason::PROGRESSING,
                "Unknown",
                reason::PAUSED,
                "Deployment is paused".into(),
                now,
            ),
        );
        true
    } else if !paused && paused_exists {
        set(
            status,
            condition(
                reason::PROGRESSING,
                "Unknown",
                reason::RESUMED,
                "Deployment is resumed".into(),
                now,
            ),
        );
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests;
