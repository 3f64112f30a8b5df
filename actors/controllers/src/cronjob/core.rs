//! The CronJob controller's decisions, without I/O: given the CronJob's schedule and
//! settings, the Jobs it controls and the time, which Job to start (for which scheduled
//! time), which Jobs to delete (`Replace`, history limits), the new status, the events and
//! when to look again.

use std::time::Duration;

use jiff::Timestamp;

use super::schedule::{MAX_MISSED, Schedule, next_runs};
use crate::runtime::EventType;

/// How many seconds past a scheduled time the requeue lands, so the clock has passed it.
pub const REQUEUE_SLACK: Duration = Duration::from_millis(100);

/// `spec.concurrencyPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Concurrency {
    /// Jobs may overlap.
    Allow,
    /// A run is skipped while a Job is active.
    Forbid,
    /// A new run replaces the active Jobs.
    Replace,
}

impl Concurrency {
    /// From the spec's string (`Allow` when absent or unknown; validation rejects unknown).
    pub fn parse(s: Option<&str>) -> Concurrency {
        match s {
            Some("Forbid") => Concurrency::Forbid,
            Some("Replace") => Concurrency::Replace,
            _ => Concurrency::Allow,
        }
    }
}

/// A Job the CronJob controls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildJob {
    /// Name.
    pub name: String,
    /// Uid.
    pub uid: String,
    /// Some(true) when Complete, Some(false) when Failed, None while running.
    pub succeeded: Option<bool>,
    /// status.startTime (history is pruned oldest first).
    pub start: Option<Timestamp>,
    /// status.completionTime of a Complete Job.
    pub completion: Option<Timestamp>,
    /// Whether it is being deleted.
    pub terminating: bool,
}

/// Everything the decision needs.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// The parsed schedule.
    pub schedule: &'a Schedule,
    /// metadata.creationTimestamp.
    pub created: Timestamp,
    /// status.lastScheduleTime.
    pub last_schedule: Option<Timestamp>,
    /// status.lastSuccessfulTime.
    pub last_successful: Option<Timestamp>,
    /// Names in status.active before this reconcile.
    pub listed_active: Vec<String>,
    /// spec.startingDeadlineSeconds.
    pub starting_deadline: Option<i64>,
    /// spec.suspend.
    pub suspend: bool,
    /// spec.concurrencyPolicy.
    pub concurrency: Concurrency,
    /// spec.successfulJobsHistoryLimit.
    pub successful_limit: usize,
    /// spec.failedJobsHistoryLimit.
    pub failed_limit: usize,
    /// The Jobs it controls.
    pub jobs: &'a [ChildJob],
    /// The time.
    pub now: Timestamp,
}

/// One event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub type_: EventType,
    /// Reason.
    pub reason: &'static str,
    /// Message.
    pub message: String,
}

/// What to do: delete `delete`, create a Job for `create`, then write the status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Start a Job for this scheduled time.
    pub create: Option<Timestamp>,
    /// Jobs to delete (name, uid), with background propagation.
    pub delete: Vec<(String, String)>,
    /// Names for status.active (running Jobs, and the one `create` starts).
    pub active: Vec<String>,
    /// status.lastScheduleTime.
    pub last_schedule: Option<Timestamp>,
    /// status.lastSuccessfulTime.
    pub last_successful: Option<Timestamp>,
    /// Events.
    pub events: Vec<Event>,
    /// When the next scheduled time comes.
    pub requeue_at: Option<Timestamp>,
}

/// The name of the Job for `scheduled`: `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

fn rfc1123(t: Timestamp) -> String {
    t.strftime("%a, %d %b %Y %H:%M:%S %z").to_string()
}

/// Decides for one CronJob named `name`.
pub fn plan(name: &str, input: &Input<'_>) -> Plan {
    let mut out = Plan {
        last_schedule: input.last_schedule,
        last_successful: input.last_successful,
        ..Plan::default()
    };
    for job in input.jobs {
        match job.succeeded {
            None if !job.terminating => out.active.push(job.name.clone()),
            None => {}
            Some(ok) => {
                if input.listed_active.contains(&job.name) {
                    out.events.push(Event {
                        type_: EventType::Normal,
                        reason: "SawCompletedJob",
                        message: format!(
                            "Saw completed job: {}, condition: {}",
                            job.name,
                            if ok { "Complete" } else { "Failed" }
                        ),
                    });
                }
                if ok && let Some(done) = job.completion {
                    out.last_successful = Some(out.last_successful.map_or(done, |t| t.max(done)));
                }
            }
        }
    }
    prune_history(input, &mut out);
    if input.suspend {
        return out;
    }
    let mut earliest = input.last_schedule.unwrap_or(input.created);
    if let Some(deadline) = input.starting_deadline
        && let Ok(cutoff) = input
            .now
            .checked_sub(jiff::SignedDuration::from_secs(deadline))
        && cutoff > earliest
    {
        earliest = cutoff;
    }
    let runs = next_runs(input.schedule, earliest, input.now);
    out.requeue_at = runs.next;
    if runs.missed > MAX_MISSED {
        out.events.push(Event {
            type_: EventType::Warning,
            reason: "TooManyMissedTimes",
            message: format!(
                "too many missed start times: {}. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                runs.missed
            ),
        });
    }
    let Some(scheduled) = runs.most_recent else {
        return out;
    };
    if let Some(deadline) = input.starting_deadline
        && scheduled
            .checked_add(jiff::SignedDuration::from_secs(deadline))
            .is_ok_and(|late| late < input.now)
    {
        out.events.push(Event {
            type_: EventType::Warning,
            reason: "MissSchedule",
            message: format!(
                "Missed scheduled time to start a job: {}",
                rfc1123(scheduled)
            ),
        });
        return out;
    }
    let name_for = job_name(name, scheduled);
    if input.last_schedule == Some(scheduled) || input.jobs.iter().any(|j| j.name == name_for) {
        return out;
    }
    match input.concurrency {
        Concurrency::Forbid if !out.active.is_empty() => {
            out.events.push(Event {
                type_: EventType::Normal,
                reason: "JobAlreadyActive",
                message: "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            });
            return out;
        }
        Concurrency::Replace => {
            for job in input.jobs.iter().filter(|j| out.active.contains(&j.name)) {
                out.delete.push((job.name.clone(), job.uid.clone()));
            }
            out.active.clear();
        }
        _ => {}
    }
    out.create = Some(scheduled);
    out.active.push(name_for);
    out.last_schedule = Some(scheduled);
    out
}

/// Deletes the oldest finished Jobs beyond the history limits.
fn prune_history(input: &Input<'_>, out: &mut Plan) {
    for (ok, limit) in [(true, input.successful_limit), (false, input.failed_limit)] {
        let mut finished: Vec<&ChildJob> = input
            .jobs
            .iter()
            .filter(|j| j.succeeded == Some(ok) && !j.terminating)
            .collect();
        if finished.len() <= limit {
            continue;
        }
        // Oldest first; a Job that never started counts as the newest.
        finished.sort_by(|a, b| {
            (a.start.is_none(), a.start, &a.name).cmp(&(b.start.is_none(), b.start, &b.name))
        });
        let n_delete = finished.len() - limit;
        for job in finished.into_iter().take(n_delete) {
            out.delete.push((job.name.clone(), job.uid.clone()));
        }
    }
}

#[cfg(test)]
mod tests;
