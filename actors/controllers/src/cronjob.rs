//! The CronJob controller: starts a Job from `spec.jobTemplate` at each scheduled time.
//! Cron syntax and evaluation are in [`schedule`], the decisions (missed runs, deadlines,
//! concurrency policy, history limits) in `core`, both without I/O; this module reads
//! the CronJob and its Jobs from the cache, carries the plan out and requeues at the next
//! scheduled time.
//!
//! The time comes from a [`Clock`], so tests can move it forward instead of waiting for
//! a real minute.

pub mod core;
pub mod schedule;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus_schema::KindInfo;
use drover_admission::AdmissionError;
use drover_store::{DeleteOptions, StoreError, object};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJobSpec, CronJobStatus};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use self::core::{ChildJob, Concurrency, Input, REQUEUE_SLACK};
use crate::runtime::kinds::{cronjobs, jobs};
use crate::runtime::{
    self, Action, Context, EventType, ObjectKey, ReconcileError, Reconciler, Watch, owner,
};
use schedule::Schedule;

/// The annotation with the time a Job was scheduled for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// How long a reconcile waits for the cache to show its own writes.
const CACHE_WAIT: Duration = Duration::from_secs(10);
/// Reconciles of different CronJobs at once.
const WORKERS: usize = 2;
/// How often a [`ManualClock`]'s controller looks at the time (it cannot know when a
/// test moves it).
pub const MANUAL_CLOCK_POLL: Duration = Duration::from_millis(50);

/// Where the controller gets the time.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;
    /// How long to wait in real time before this clock shows `at`.
    fn until(&self, at: Timestamp) -> Duration;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn until(&self, at: Timestamp) -> Duration {
        let ms = at.as_millisecond() - Timestamp::now().as_millisecond();
        Duration::from_millis(ms.max(0) as u64)
    }
}

/// A clock that moves only when told (tests).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: Timestamp) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: Mutex::new(now),
        })
    }

    /// Sets the time.
    pub fn set(&self, now: Timestamp) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn until(&self, _at: Timestamp) -> Duration {
        MANUAL_CLOCK_POLL
    }
}

/// The kinds the CronJob controller needs in the shared cache.
pub fn kinds() -> Vec<&'static KindInfo> {
    vec![cronjobs(), jobs()]
}

/// Starts the CronJob controller on the system clock.
pub fn start(ctx: &Context) -> Vec<JoinHandle<()>> {
    start_with(ctx, Arc::new(SystemClock))
}

/// Starts the CronJob controller on `clock`.
pub fn start_with(ctx: &Context, clock: Arc<dyn Clock>) -> Vec<JoinHandle<()>> {
    let ctx = ctx.for_component("cronjob-controller");
    vec![runtime::run(CronJobController { clock }, ctx, WORKERS)]
}

/// The CronJob reconciler.
pub struct CronJobController {
    clock: Arc<dyn Clock>,
}

fn parse_time(v: Option<&Value>) -> Option<Timestamp> {
    v.and_then(Value::as_str).and_then(|s| s.parse().ok())
}

fn child(job: &Value) -> ChildJob {
    let condition = |t: &str| {
        job.pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| c["type"] == t && c["status"] == "True")
    };
    ChildJob {
        name: object::name(job).to_string(),
        uid: object::meta_str(job, "uid").unwrap_or_default().to_string(),
        succeeded: if condition("Complete") {
            Some(true)
        } else if condition("Failed") {
            Some(false)
        } else {
            None
        },
        start: parse_time(job.pointer("/status/startTime")),
        completion: parse_time(job.pointer("/status/completionTime")),
        terminating: object::is_terminating(job),
    }
}

/// The reference status.active holds for a Job.
fn job_ref(job: &Value) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": object::name(job),
        "namespace": object::namespace(job).unwrap_or("default"),
        "uid": object::meta_str(job, "uid").unwrap_or_default(),
        "resourceVersion": object::meta_str(job, "resourceVersion").unwrap_or_default(),
    })
}

/// The Job a CronJob starts for `scheduled`.
pub fn new_job(cronjob: &Value, schedule: &Schedule, scheduled: Timestamp) -> Value {
    let template = cronjob
        .pointer("/spec/jobTemplate")
        .cloned()
        .unwrap_or(json!({}));
    let mut annotations = template
        .pointer("/metadata/annotations")
        .filter(|a| a.is_object())
        .cloned()
        .unwrap_or(json!({}));
    annotations[SCHEDULED_TIMESTAMP] = json!(schedule.rfc3339(scheduled));
    let mut meta = json!({
        "name": self::core::job_name(object::name(cronjob), scheduled),
        "namespace": object::namespace(cronjob).unwrap_or("default"),
        "annotations": annotations,
        "ownerReferences": [owner::controller_reference(cronjobs(), cronjob)],
    });
    if let Some(labels) = template
        .pointer("/metadata/labels")
        .filter(|l| l.is_object())
    {
        meta["labels"] = labels.clone();
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    })
}

impl Reconciler for CronJobController {
    fn name(&self) -> &'static str {
        "cronjob"
    }

    fn kind(&self) -> &'static KindInfo {
        cronjobs()
    }

    fn watches(&self) -> Vec<Watch> {
        vec![Watch::owned(jobs(), cronjobs())]
    }

    async fn reconcile(&self, key: &ObjectKey, ctx: &Context) -> Result<Action, ReconcileError> {
        let Some(cj) = ctx.cache.get(cronjobs(), key) else {
            return Ok(Action::await_change());
        };
        if object::is_terminating(&cj) {
            return Ok(Action::await_change());
        }
        let spec: CronJobSpec = match cj.get("spec") {
            Some(s) => runtime::decode(cronjobs(), s)?,
            None => return Ok(Action::await_change()),
        };
        let status: CronJobStatus = match cj.get("status") {
            Some(s) if !s.is_null() => runtime::decode(cronjobs(), s)?,
            _ => CronJobStatus::default(),
        };
        let zone = match schedule::time_zone(spec.time_zone.as_deref().unwrap_or("")) {
            Ok(z) => z,
            Err(error) => {
                let zone = spec.time_zone.clone().unwrap_or_default();
                ctx.events.record(
                    cronjobs(),
                    &cj,
                    EventType::Warning,
                    "UnknownTimeZone",
                    format!("invalid timeZone: {zone:?}: {error}"),
                );
                return Ok(Action::await_change());
            }
        };
        let schedule = match Schedule::parse(&spec.schedule, zone) {
            Ok(s) => s,
            Err(error) => {
                ctx.events.record(
                    cronjobs(),
                    &cj,
                    EventType::Warning,
                    "UnparseableSchedule",
                    format!("unparseable schedule: {:?} : {error}", spec.schedule),
                );
                return Ok(Action::await_change());
            }
        };
        let uid = object::meta_str(&cj, "uid").unwrap_or_default().to_string();
        let owned: Vec<Arc<Value>> = ctx
            .cache
            .owned_by(jobs(), &uid)
            .into_iter()
            .filter(|j| owner::is_controlled_by(j, &uid))
            .collect();
        let children: Vec<ChildJob> = owned.iter().map(|j| child(j)).collect();
        let listed_active: Vec<String> = status
            .active
            .iter()
            .flatten()
            .filter_map(|r| r.name.clone())
            .collect();
        let input = Input {
            schedule: &schedule,
            created: parse_time(cj.pointer("/metadata/creationTimestamp"))
                .unwrap_or_else(|| self.clock.now()),
            last_schedule: status.last_schedule_time.as_ref().map(|t| t.0),
            last_successful: status.last_successful_time.as_ref().map(|t| t.0),
            listed_active,
            starting_deadline: spec.starting_deadline_seconds,
            suspend: spec.suspend == Some(true),
            concurrency: Concurrency::parse(spec.concurrency_policy.as_deref()),
            successful_limit: spec.successful_jobs_history_limit.unwrap_or(3).max(0) as usize,
            failed_limit: spec.failed_jobs_history_limit.unwrap_or(1).max(0) as usize,
            jobs: &children,
            now: self.clock.now(),
        };
        let plan = self::core::plan(object::name(&cj), &input);
        for event in &plan.events {
            ctx.events.record(
                cronjobs(),
                &cj,
                event.type_,
                event.reason,
                event.message.clone(),
            );
        }
        for (name, job_uid) in &plan.delete {
            let opts = DeleteOptions {
                uid: Some(job_uid.clone()),
                ..Default::default()
            };
            match ctx
                .store
                .delete(jobs(), key.namespace.as_deref(), name, &opts)
                .await
            {
                Ok(_) => ctx.events.record(
                    cronjobs(),
                    &cj,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted job {name}"),
                ),
                Err(StoreError::NotFound { .. }) => {}
                Err(StoreError::Conflict { reason, .. }) if reason.contains("uid") => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut created: Option<Value> = None;
        if let Some(scheduled) = plan.create {
            let job = new_job(&cj, &schedule, scheduled);
            // Jobs pass admission (quota on count/jobs.batch) as any create does.
            match drover_admission::create(&ctx.store, jobs(), job).await {
                Ok(stored) => {
                    ctx.events.record(
                        cronjobs(),
                        &cj,
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created job {}", object::name(&stored)),
                    );
                    ctx.cache
                        .wait_for_revision(jobs(), runtime::revision_of(&stored), CACHE_WAIT)
                        .await?;
                    created = Some(stored);
                }
                Err(AdmissionError::Store {
                    source: StoreError::AlreadyExists { name, .. },
                    ..
                }) => {
                    // Ours from an earlier reconcile whose status write was lost: fine.
                    let existing = ctx
                        .store
                        .get(jobs(), key.namespace.as_deref(), &name)
                        .await?;
                    if !owner::is_controlled_by(&existing, &uid) {
                        ctx.events.record(
                            cronjobs(),
                            &cj,
                            EventType::Warning,
                            "FailedCreate",
                            format!("Error creating job: job {name} already exists and is not owned by this cronjob"),
                        );
                        return Ok(Action::await_change());
                    }
                    created = Some(existing);
                }
                Err(error) => {
                    ctx.events.record(
                        cronjobs(),
                        &cj,
                        EventType::Warning,
                        "FailedCreate",
                        format!("Error creating job: {error}"),
                    );
                    return Err(error.into());
                }
            }
        }

        // status.active: keep the references already listed (no churn), add new ones.
        let previous: Vec<Value> = cj
            .pointer("/status/active")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let active: Vec<Value> = plan
            .active
            .iter()
            .filter_map(|name| {
                previous
                    .iter()
                    .find(|r| r["name"] == name.as_str())
                    .cloned()
                    .or_else(|| {
                        owned
                            .iter()
                            .map(|j| &**j)
                            .chain(created.as_ref())
                            .find(|j| object::name(j) == name)
                            .map(job_ref)
                    })
            })
            .collect();
        let mut new_status = cj
            .get("status")
            .cloned()
            .filter(Value::is_object)
            .unwrap_or(json!({}));
        let time =
            |t: Option<Timestamp>| t.map(|t| json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
        if active.is_empty() {
            if let Some(m) = new_status.as_object_mut() {
                m.remove("active");
            }
        } else {
            new_status["active"] = json!(active);
        }
        if let Some(t) = time(plan.last_schedule) {
            new_status["lastScheduleTime"] = t;
        }
        if let Some(t) = time(plan.last_successful) {
            new_status["lastSuccessfulTime"] = t;
        }
        if cj.get("status") != Some(&new_status) {
            let mut updated = (*cj).clone();
            updated["status"] = new_status;
            let stored = ctx.store.update(cronjobs(), updated).await?;
            ctx.cache
                .wait_for_revision(cronjobs(), runtime::revision_of(&stored), CACHE_WAIT)
                .await?;
        }
        Ok(match plan.requeue_at {
            Some(at) => Action::requeue(self.clock.until(at) + REQUEUE_SLACK),
            None => Action::await_change(),
        })
    }
}
