//! The Job controller's decisions, without I/O: given the Job, the pods it controls (as
//! [`PodInfo`]) and the time, what the status becomes, which pods to create or delete,
//! which pods lose the tracking finalizer, which events to record and when to look again.
//!
//! Accounting follows Kubernetes' finalizer tracking: every pod carries
//! [`TRACKING_FINALIZER`]; a finished pod's uid is first written to
//! `status.uncountedTerminatedPods`, then its finalizer is removed, and once the pod is
//! gone or has lost the finalizer the uid moves to the `succeeded`/`failed` counters. A pod
//! is therefore counted exactly once, even when it is deleted right after it finished or
//! the controller restarts between the steps.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus, UncountedTerminatedPods};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::runtime::EventType;

/// The finalizer that keeps a finished pod until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Annotation and label with an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Label with the Job's uid (selector of a generated selector).
pub const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
/// Label with the Job's name.
pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";
/// The labels before the `batch.kubernetes.io/` prefix, still set by Kubernetes.
pub const LEGACY_CONTROLLER_UID: &str = "controller-uid";
/// Legacy label with the Job's name.
pub const LEGACY_JOB_NAME: &str = "job-name";
/// Kubernetes' default delay before a failed pod is replaced (doubling per failure).
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(10);
/// The longest delay before a failed pod is replaced.
pub const MAX_BACKOFF: Duration = Duration::from_secs(360);

/// Condition reasons and messages as Kubernetes writes them.
pub const REASON_BACKOFF_LIMIT: &str = "BackoffLimitExceeded";
const MESSAGE_BACKOFF_LIMIT: &str = "Job has reached the specified backoff limit";
/// Reason of a Job that ran past activeDeadlineSeconds.
pub const REASON_DEADLINE: &str = "DeadlineExceeded";
const MESSAGE_DEADLINE: &str = "Job was active longer than specified deadline";
const REASON_COMPLETIONS: &str = "CompletionsReached";
const MESSAGE_COMPLETIONS: &str = "Reached expected number of succeeded pods";

/// What the controller needs to know about one pod it controls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    /// Pod name.
    pub name: String,
    /// Pod uid.
    pub uid: String,
    /// `status.phase` (`Pending` when absent).
    pub phase: String,
    /// Whether the pod has a deletionTimestamp.
    pub terminating: bool,
    /// Whether its Ready condition is True.
    pub ready: bool,
    /// Its completion index (Indexed Jobs), when the annotation parses.
    pub index: Option<i32>,
    /// Whether it still carries [`TRACKING_FINALIZER`].
    pub has_finalizer: bool,
    /// Container restarts (counted against backoffLimit under `OnFailure`).
    pub restarts: i32,
    /// When it was created (newest pods are deleted first).
    pub created: Option<Timestamp>,
    /// When it finished, for failed pods (the replacement backoff counts from here).
    pub finished: Option<Timestamp>,
}

impl PodInfo {
    fn succeeded(&self) -> bool {
        self.phase == "Succeeded"
    }

    /// Failed as Kubernetes counts it: phase Failed, or deleted before it succeeded
    /// (an orphaned pod never reaches Failed).
    fn failed(&self) -> bool {
        self.phase == "Failed" || (self.terminating && !self.succeeded())
    }

    fn finished(&self) -> bool {
        self.succeeded() || self.failed()
    }

    /// Running or about to: counted in `status.active`.
    fn active(&self) -> bool {
        !self.terminating && !self.finished()
    }
}

/// Settings of the controller (not of a Job).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobConfig {
    /// Delay before the first failed pod is replaced; doubles with each failure.
    pub backoff_base: Duration,
}

impl Default for JobConfig {
    fn default() -> JobConfig {
        JobConfig {
            backoff_base: DEFAULT_BACKOFF_BASE,
        }
    }
}

/// One event to record about the Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub type_: EventType,
    /// Reason (`Completed`, `BackoffLimitExceeded`).
    pub reason: &'static str,
    /// Message.
    pub message: String,
}

/// What to do, in this order: write `status` (when it changed), remove finalizers,
/// delete pods, create pods, delete the Job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The new status.
    pub status: JobStatus,
    /// Pods to create: their completion index (None for NonIndexed).
    pub create: Vec<Option<i32>>,
    /// Pods to delete: (name, uid).
    pub delete: Vec<(String, String)>,
    /// Pods whose tracking finalizer goes, after `status` is written.
    pub remove_finalizers: Vec<String>,
    /// Events.
    pub events: Vec<Event>,
    /// Look again after this long (deadline, backoff, TTL).
    pub requeue_after: Option<Duration>,
    /// The TTL after finishing ran out: delete the Job.
    pub delete_job: bool,
}

fn condition_true(status: &JobStatus, type_: &str) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == type_ && c.status == "True")
}

fn find_condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Sets condition `type_` to `status` (keeping the transition time when it does not change).
fn set_condition(
    st: &mut JobStatus,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let conditions = st.conditions.get_or_insert_with(Vec::new);
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status == status {
            return;
        }
        c.status = status.to_string();
        c.reason = Some(reason.to_string());
        c.message = Some(message.to_string());
        c.last_probe_time = Some(Time(now));
        c.last_transition_time = Some(Time(now));
        return;
    }
    conditions.push(JobCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    });
}

/// Parses `completedIndexes` ("1,3-5") into a set; bad parts are skipped.
pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(i) = part.parse() {
                    out.insert(i);
                }
            }
        }
    }
    out
}

/// Formats a set of indexes as Kubernetes does: ascending ranges, `1,3-5`.
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

fn duration_until(now: Timestamp, at: Timestamp) -> Duration {
    let secs = at.as_millisecond() - now.as_millisecond();
    Duration::from_millis(secs.max(0) as u64)
}

fn add_secs(t: Timestamp, secs: i64) -> Timestamp {
    t.checked_add(jiff::SignedDuration::from_secs(secs))
        .unwrap_or(t)
}

/// Decides what to do for a Job with `spec` and current `status`, controlling `pods`.
pub fn plan(
    spec: &JobSpec,
    status: &JobStatus,
    pods: &[PodInfo],
    now: Timestamp,
    config: &JobConfig,
) -> Plan {
    let mut st = status.clone();
    let mut out = Plan::default();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6).max(0);
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");

    // ---- accounting --------------------------------------------------------------
    let by_uid: BTreeMap<&str, &PodInfo> = pods.iter().map(|p| (p.uid.as_str(), p)).collect();
    let uncounted = st.uncounted_terminated_pods.take().unwrap_or_default();
    let mut unc_succeeded: Vec<String> = Vec::new();
    let mut unc_failed: Vec<String> = Vec::new();
    let mut succeeded = st.succeeded.unwrap_or(0);
    let mut failed = st.failed.unwrap_or(0);
    // Uids whose finalizer is gone are counted now; the rest stay uncounted.
    for (list, counter, keep) in [
        (
            uncounted.succeeded.unwrap_or_default(),
            &mut succeeded,
            &mut unc_succeeded,
        ),
        (
            uncounted.failed.unwrap_or_default(),
            &mut failed,
            &mut unc_failed,
        ),
    ] {
        for uid in list {
            match by_uid.get(uid.as_str()) {
                Some(p) if p.has_finalizer => keep.push(uid),
                _ => *counter += 1,
            }
        }
    }
    let mut completed: BTreeSet<i32> = st
        .completed_indexes
        .as_deref()
        .map(parse_indexes)
        .unwrap_or_default();
    let in_range = |i: i32| completions.is_some_and(|c| (0..c).contains(&i));
    for p in pods.iter().filter(|p| p.has_finalizer && p.finished()) {
        if p.succeeded() {
            if !unc_succeeded.contains(&p.uid) {
                unc_succeeded.push(p.uid.clone());
            }
            if indexed && let Some(i) = p.index.filter(|i| in_range(*i)) {
                completed.insert(i);
            }
        } else if !unc_failed.contains(&p.uid) {
            unc_failed.push(p.uid.clone());
        }
        out.remove_finalizers.push(p.name.clone());
    }
    let succeeded_total = succeeded + unc_succeeded.len() as i32;
    let failed_total = failed + unc_failed.len() as i32;
    st.succeeded = Some(succeeded);
    st.failed = Some(failed);
    st.uncounted_terminated_pods = if unc_succeeded.is_empty() && unc_failed.is_empty() {
        // Kubernetes reports an empty object once tracking began.
        Some(UncountedTerminatedPods::default())
    } else {
        Some(UncountedTerminatedPods {
            succeeded: (!unc_succeeded.is_empty()).then_some(unc_succeeded),
            failed: (!unc_failed.is_empty()).then_some(unc_failed),
        })
    };
    if indexed {
        st.completed_indexes = Some(format_indexes(&completed));
    }

    let active: Vec<&PodInfo> = pods.iter().filter(|p| p.active()).collect();
    let terminating = pods
        .iter()
        .filter(|p| p.terminating && p.phase != "Succeeded" && p.phase != "Failed")
        .count() as i32;
    let all_counted = st
        .uncounted_terminated_pods
        .as_ref()
        .is_none_or(|u| u.succeeded.is_none() && u.failed.is_none());

    // ---- finished Jobs -------------------------------------------------------------
    let finished = condition_true(&st, "Complete") || condition_true(&st, "Failed");
    if finished {
        delete_all(&active, &mut out);
        write_counts(&mut st, &active, terminating, &out);
        ttl(spec, &st, now, &mut out);
        out.status = st;
        return out;
    }

    // ---- terminal decisions --------------------------------------------------------
    if !condition_true(&st, "FailureTarget") && !condition_true(&st, "SuccessCriteriaMet") {
        let restarts: i32 = if on_failure {
            active.iter().map(|p| p.restarts).sum()
        } else {
            0
        };
        let past_on_failure = on_failure
            && if backoff_limit == 0 {
                restarts > 0
            } else {
                restarts >= backoff_limit
            };
        let deadline_at = spec
            .active_deadline_seconds
            .zip(st.start_time.as_ref())
            .map(|(secs, start)| add_secs(start.0, secs));
        let mut failure = None;
        if failed_total > backoff_limit || past_on_failure {
            failure = Some((REASON_BACKOFF_LIMIT, MESSAGE_BACKOFF_LIMIT));
        } else if let Some(at) = deadline_at.filter(|_| spec.suspend != Some(true)) {
            if at <= now {
                failure = Some((REASON_DEADLINE, MESSAGE_DEADLINE));
            } else {
                out.requeue_after = Some(duration_until(now, at));
            }
        }
        if let Some((reason, message)) = failure {
            set_condition(&mut st, "FailureTarget", "True", reason, message, now);
        }
    }
    if let Some(target) = find_condition(&st, "FailureTarget").cloned() {
        delete_all(&active, &mut out);
        if active.is_empty() && terminating == 0 && all_counted {
            let reason = target.reason.clone().unwrap_or_default();
            let message = target.message.clone().unwrap_or_default();
            set_condition(&mut st, "Failed", "True", &reason, &message, now);
            out.events.push(Event {
                type_: EventType::Warning,
                reason: if reason == REASON_DEADLINE {
                    REASON_DEADLINE
                } else {
                    REASON_BACKOFF_LIMIT
                },
                message,
            });
            ttl(spec, &st, now, &mut out);
        }
        write_counts(&mut st, &active, terminating, &out);
        out.status = st;
        return out;
    }

    let success = if indexed {
        completions.is_some_and(|c| completed.len() as i32 >= c)
    } else {
        match completions {
            Some(c) => succeeded_total >= c,
            // A work queue: done when one pod succeeded and none is left running.
            None => succeeded_total > 0 && active.is_empty(),
        }
    };
    if success || condition_true(&st, "SuccessCriteriaMet") {
        set_condition(
            &mut st,
            "SuccessCriteriaMet",
            "True",
            REASON_COMPLETIONS,
            MESSAGE_COMPLETIONS,
            now,
        );
        delete_all(&active, &mut out);
        if active.is_empty() && terminating == 0 && all_counted {
            set_condition(
                &mut st,
                "Complete",
                "True",
                REASON_COMPLETIONS,
                MESSAGE_COMPLETIONS,
                now,
            );
            st.completion_time = Some(Time(now));
            out.events.push(Event {
                type_: EventType::Normal,
                reason: "Completed",
                message: "Job completed".into(),
            });
            ttl(spec, &st, now, &mut out);
        }
        write_counts(&mut st, &active, terminating, &out);
        out.status = st;
        return out;
    }

    // ---- suspend -------------------------------------------------------------------
    if spec.suspend == Some(true) {
        delete_all(&active, &mut out);
        if !condition_true(&st, "Suspended") {
            set_condition(
                &mut st,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            );
            out.events.push(Event {
                type_: EventType::Normal,
                reason: "Suspended",
                message: "Job suspended".into(),
            });
        }
        // The deadline counts from the resume.
        st.start_time = None;
        out.requeue_after = None;
        write_counts(&mut st, &active, terminating, &out);
        out.status = st;
        return out;
    }
    if condition_true(&st, "Suspended") {
        set_condition(
            &mut st,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now,
        );
        out.events.push(Event {
            type_: EventType::Normal,
            reason: "Resumed",
            message: "Job resumed".into(),
        });
    }
    if st.start_time.is_none() {
        st.start_time = Some(Time(now));
        if let Some(secs) = spec.active_deadline_seconds {
            out.requeue_after = Some(Duration::from_secs(secs.max(0) as u64));
        }
    }

    // ---- pods to create or delete ---------------------------------------------------
    let mut want_new: Vec<Option<i32>> = Vec::new();
    if indexed {
        let completions = completions.unwrap_or(0);
        let mut seen: BTreeSet<i32> = BTreeSet::new();
        let mut keep = 0;
        // Oldest first, so a duplicate index loses its newest pod.
        let mut by_age = active.clone();
        by_age.sort_by_key(|p| (p.created, p.name.clone()));
        let mut extra: Vec<&PodInfo> = Vec::new();
        for p in by_age {
            match p.index {
                Some(i)
                    if (0..completions).contains(&i)
                        && !completed.contains(&i)
                        && seen.insert(i) =>
                {
                    keep += 1
                }
                _ => extra.push(p),
            }
        }
        let mut excess = (keep - parallelism).max(0);
        // Over parallelism (it was lowered): drop the highest indexes.
        let mut kept: Vec<&PodInfo> = active
            .iter()
            .copied()
            .filter(|p| !extra.iter().any(|e| e.uid == p.uid))
            .collect();
        kept.sort_by_key(|p| std::cmp::Reverse(p.index));
        for p in kept {
            if excess == 0 {
                break;
            }
            extra.push(p);
            excess -= 1;
        }
        for p in extra {
            out.delete.push((p.name.clone(), p.uid.clone()));
        }
        let room = (parallelism - keep.min(parallelism)).max(0) as usize;
        want_new = (0..completions)
            .filter(|i| !completed.contains(i) && !seen.contains(i))
            .take(room)
            .map(Some)
            .collect();
    } else {
        let n_active = active.len() as i32;
        let want = match completions {
            Some(c) => parallelism.min((c - succeeded_total).max(0)),
            // After a success no new pods start; the running ones may finish.
            None if succeeded_total > 0 => n_active.min(parallelism),
            None => parallelism,
        };
        if n_active > want {
            let mut victims = active.clone();
            // Not ready and pending pods go first, then the newest.
            victims.sort_by_key(|p| (p.ready, p.phase == "Running", std::cmp::Reverse(p.created)));
            for p in victims.into_iter().take((n_active - want) as usize) {
                out.delete.push((p.name.clone(), p.uid.clone()));
            }
        } else {
            want_new = vec![None; (want - n_active) as usize];
        }
    }
    if !want_new.is_empty() && failed_total > 0 {
        // Replace failed pods after an exponential backoff, as Kubernetes does.
        let exp = (failed_total - 1).clamp(0, 16) as u32;
        let delay = config
            .backoff_base
            .saturating_mul(1u32 << exp)
            .min(MAX_BACKOFF);
        let last_failure = pods
            .iter()
            .filter(|p| p.failed())
            .filter_map(|p| p.finished)
            .max();
        if let Some(at) = last_failure {
            let ready_at = at
                .checked_add(jiff::SignedDuration::try_from(delay).unwrap_or_default())
                .unwrap_or(at);
            if ready_at > now {
                want_new.clear();
                let wait = duration_until(now, ready_at);
                out.requeue_after = Some(out.requeue_after.map_or(wait, |r| r.min(wait)));
            }
        }
    }
    out.create = want_new;
    write_counts(&mut st, &active, terminating, &out);
    out.status = st;
    out
}

fn delete_all(active: &[&PodInfo], out: &mut Plan) {
    for p in active {
        out.delete.push((p.name.clone(), p.uid.clone()));
    }
}

/// `active`, `ready` and `terminating` after the plan's deletions (created pods show up
/// in the next reconcile, from the cache).
fn write_counts(st: &mut JobStatus, active: &[&PodInfo], terminating: i32, out: &Plan) {
    let deleted = |p: &&&PodInfo| out.delete.iter().any(|(_, uid)| uid == &p.uid);
    let n_deleted = active.iter().filter(deleted).count() as i32;
    st.active = Some(active.len() as i32 - n_deleted);
    st.ready = Some(active.iter().filter(|p| p.ready && !deleted(p)).count() as i32);
    st.terminating = Some(terminating + n_deleted);
}

/// ttlSecondsAfterFinished: delete the finished Job once it ran out, or look again then.
fn ttl(spec: &JobSpec, st: &JobStatus, now: Timestamp, out: &mut Plan) {
    let Some(secs) = spec.ttl_seconds_after_finished else {
        return;
    };
    let finished_at = st.completion_time.as_ref().map(|t| t.0).or_else(|| {
        find_condition(st, "Failed")
            .or_else(|| find_condition(st, "Complete"))
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0)
    });
    let Some(at) = finished_at.map(|t| add_secs(t, i64::from(secs))) else {
        return;
    };
    if at <= now {
        out.delete_job = true;
    } else {
        out.requeue_after = Some(duration_until(now, at));
    }
}

#[cfg(test)]
mod tests;
