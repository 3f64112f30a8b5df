//! The Job controller: runs a Job's pods to completion. The decisions (counting, which
//! pods to create or delete, conditions, deadlines, TTL) are in `core`, without I/O;
//! this module reads the Job and its pods from the cache, carries a `core::Plan` out
//! against the store and records events.
//!
//! Order of writes in one reconcile, each safe to repeat: the Job's generated selector
//! (once), the status (so finished pods are recorded as uncounted before they lose the
//! tracking finalizer), the finalizer removals, pod deletions, pod creations, and finally
//! the Job's own deletion when its TTL after finishing ran out.

pub mod core;

use std::sync::Arc;
use std::time::Duration;

use bus_schema::KindInfo;
use drover_admission::Admission;
use drover_store::{DeleteOptions, StoreError, object};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{JobSpec, JobStatus};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use self::core::{
    COMPLETION_INDEX, CONTROLLER_UID, JOB_NAME, LEGACY_CONTROLLER_UID, LEGACY_JOB_NAME,
    TRACKING_FINALIZER,
};
pub use self::core::{JobConfig, PodInfo};
use crate::runtime::kinds::{jobs, pods};
use crate::runtime::{
    self, Action, Context, EventType, ObjectKey, ReconcileError, Reconciler, Watch, owner,
};

/// How long a reconcile waits for the cache to show its own writes.
const CACHE_WAIT: Duration = Duration::from_secs(10);
/// Reconciles of different Jobs at once.
const WORKERS: usize = 4;
/// Compare-and-swap rounds for one pod's finalizer removal.
const CAS_ATTEMPTS: usize = 5;

/// The kinds the Job controller needs in the shared cache.
pub fn kinds() -> Vec<&'static KindInfo> {
    vec![jobs(), pods()]
}

/// Starts the Job controller with Kubernetes' default settings.
pub fn start(ctx: &Context) -> Vec<JoinHandle<()>> {
    start_with(ctx, JobConfig::default())
}

/// Starts the Job controller with `config` (tests shorten the replacement backoff).
pub fn start_with(ctx: &Context, config: JobConfig) -> Vec<JoinHandle<()>> {
    let ctx = ctx.for_component("job-controller");
    vec![runtime::run(JobController { config }, ctx, WORKERS)]
}

/// The Job reconciler.
pub struct JobController {
    config: JobConfig,
}

impl Reconciler for JobController {
    fn name(&self) -> &'static str {
        "job"
    }

    fn kind(&self) -> &'static KindInfo {
        jobs()
    }

    fn watches(&self) -> Vec<Watch> {
        vec![Watch::owned(pods(), jobs())]
    }

    async fn reconcile(&self, key: &ObjectKey, ctx: &Context) -> Result<Action, ReconcileError> {
        let Some(job) = ctx.cache.get(jobs(), key) else {
            release_orphans(ctx, key, None).await?;
            return Ok(Action::await_change());
        };
        let uid = object::meta_str(&job, "uid")
            .unwrap_or_default()
            .to_string();
        release_orphans(ctx, key, Some(&uid)).await?;
        if object::is_terminating(&job) {
            // The garbage collector deletes the pods; they must not wait for a count.
            for pod in owned_pods(ctx, &uid) {
                if object::finalizers(&pod)
                    .iter()
                    .any(|f| f == TRACKING_FINALIZER)
                {
                    remove_finalizer(ctx, &pod).await?;
                }
            }
            return Ok(Action::await_change());
        }
        let job = match with_generated_selector(&job) {
            Some(updated) => {
                let stored = ctx.store.update(jobs(), updated).await?;
                wait(ctx, jobs(), &stored).await?;
                Arc::new(stored)
            }
            None => job,
        };
        let spec: JobSpec = match job.get("spec") {
            Some(s) => runtime::decode(jobs(), s)?,
            None => return Ok(Action::await_change()),
        };
        let status: JobStatus = match job.get("status") {
            Some(s) if !s.is_null() => runtime::decode(jobs(), s)?,
            _ => JobStatus::default(),
        };
        let owned = owned_pods(ctx, &uid);
        let infos: Vec<PodInfo> = owned.iter().map(|p| pod_info(p)).collect();
        let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_default();
        let plan = self::core::plan(&spec, &status, &infos, now, &self.config);

        let mut job = job;
        if plan.status != status {
            let mut updated = (*job).clone();
            updated["status"] = serde_json::to_value(&plan.status)
                .map_err(|e| ReconcileError::Other(format!("cannot encode the job status: {e}")))?;
            let stored = ctx.store.update(jobs(), updated).await?;
            wait(ctx, jobs(), &stored).await?;
            job = Arc::new(stored);
        }
        for name in &plan.remove_finalizers {
            if let Some(pod) = owned.iter().find(|p| object::name(p) == name) {
                remove_finalizer(ctx, pod).await?;
            }
        }
        for (name, pod_uid) in &plan.delete {
            delete_pod(ctx, &job, key, name, pod_uid).await?;
        }
        let mut last_created = None;
        // Job pods pass admission (priority, LimitRange, quota) as any create does.
        let mut admission = None;
        for index in &plan.create {
            let pod = new_pod(&job, *index);
            let admission = match &mut admission {
                Some(a) => a,
                None => admission
                    .insert(Admission::load(&ctx.store, pods(), object::namespace(&job)).await?),
            };
            match admission.create(&ctx.store, pod).await {
                Ok(created) => {
                    ctx.events.record(
                        jobs(),
                        &job,
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {}", object::name(&created)),
                    );
                    last_created = Some(created);
                }
                Err(error) => {
                    ctx.events.record(
                        jobs(),
                        &job,
                        EventType::Warning,
                        "FailedCreate",
                        format!("Error creating: {error}"),
                    );
                    return Err(error.into());
                }
            }
        }
        if let Some(created) = last_created {
            wait(ctx, pods(), &created).await?;
        }
        for event in &plan.events {
            ctx.events.record(
                jobs(),
                &job,
                event.type_,
                event.reason,
                event.message.clone(),
            );
        }
        if plan.delete_job {
            let opts = DeleteOptions {
                uid: Some(uid.clone()),
                ..Default::default()
            };
            // Background propagation: the garbage collector removes the pods.
            match ctx
                .store
                .delete(jobs(), key.namespace.as_deref(), &key.name, &opts)
                .await
            {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(StoreError::Conflict { reason, .. }) if reason.contains("uid") => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(Action::await_change());
        }
        Ok(match plan.requeue_after {
            // A second more, so the deadline has passed by the clock's second precision.
            Some(after) => Action::requeue(after + Duration::from_secs(1)),
            None => Action::await_change(),
        })
    }
}

async fn wait(
    ctx: &Context,
    kind: &'static KindInfo,
    stored: &Value,
) -> Result<(), ReconcileError> {
    ctx.cache
        .wait_for_revision(kind, runtime::revision_of(stored), CACHE_WAIT)
        .await
}

fn owned_pods(ctx: &Context, job_uid: &str) -> Vec<Arc<Value>> {
    ctx.cache
        .owned_by(pods(), job_uid)
        .into_iter()
        .filter(|p| owner::is_controlled_by(p, job_uid))
        .collect()
}

/// Pods that name a Job `key` as controller which is gone (or has another uid now) lose
/// the tracking finalizer, so they are not kept forever.
async fn release_orphans(
    ctx: &Context,
    key: &ObjectKey,
    current_uid: Option<&str>,
) -> Result<(), ReconcileError> {
    let orphans: Vec<Arc<Value>> = ctx
        .cache
        .list(pods(), key.namespace.as_deref())
        .into_iter()
        .filter(|p| {
            object::finalizers(p)
                .iter()
                .any(|f| f == TRACKING_FINALIZER)
        })
        .filter(|p| owner::controller_key(p, jobs()).as_ref() == Some(key))
        .filter(|p| current_uid.is_none_or(|uid| !owner::is_controlled_by(p, uid)))
        .collect();
    for pod in orphans {
        remove_finalizer(ctx, &pod).await?;
    }
    Ok(())
}

/// The Job with Kubernetes' generated selector and template labels, when it has no
/// selector and does not ask for a manual one; None when there is nothing to add.
pub fn with_generated_selector(job: &Value) -> Option<Value> {
    let manual = job.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true);
    if manual || job.pointer("/spec/selector").is_some_and(|s| !s.is_null()) {
        return None;
    }
    let uid = object::meta_str(job, "uid")?;
    let name = object::name(job);
    let mut job = job.clone();
    job["spec"]["selector"] = json!({"matchLabels": {CONTROLLER_UID: uid}});
    let template = job["spec"].get_mut("template").filter(|t| t.is_object())?;
    let meta = template
        .as_object_mut()?
        .entry("metadata")
        .or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    let labels = meta
        .as_object_mut()?
        .entry("labels")
        .or_insert_with(|| json!({}));
    if !labels.is_object() {
        *labels = json!({});
    }
    let labels = labels.as_object_mut()?;
    for (k, v) in [
        (CONTROLLER_UID, uid),
        (JOB_NAME, name),
        (LEGACY_CONTROLLER_UID, uid),
        (LEGACY_JOB_NAME, name),
    ] {
        labels.insert(k.into(), json!(v));
    }
    let template_labels = Value::Object(labels.clone());
    // The API server gives a Job without labels its template's labels.
    let meta = object::meta_mut(&mut job);
    if meta
        .get("labels")
        .and_then(Value::as_object)
        .is_none_or(|l| l.is_empty())
    {
        meta.insert("labels".into(), template_labels);
    }
    Some(job)
}

fn pod_info(pod: &Value) -> PodInfo {
    let status = pod.get("status");
    let str_at = |ptr: &str| pod.pointer(ptr).and_then(Value::as_str);
    let parse_time = |v: Option<&Value>| v.and_then(Value::as_str).and_then(|s| s.parse().ok());
    let containers = ["containerStatuses", "initContainerStatuses"]
        .into_iter()
        .filter_map(|f| status.and_then(|s| s.get(f)).and_then(Value::as_array))
        .flatten();
    let mut restarts = 0;
    let mut finished: Option<Timestamp> = None;
    for c in containers {
        restarts += c.get("restartCount").and_then(Value::as_i64).unwrap_or(0) as i32;
        let at = parse_time(c.pointer("/state/terminated/finishedAt"));
        finished = finished.max(at);
    }
    PodInfo {
        name: object::name(pod).to_string(),
        uid: object::meta_str(pod, "uid").unwrap_or_default().to_string(),
        phase: str_at("/status/phase").unwrap_or("Pending").to_string(),
        terminating: object::is_terminating(pod),
        ready: status
            .and_then(|s| s.get("conditions"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True"),
        index: pod
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(COMPLETION_INDEX))
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok()),
        has_finalizer: object::finalizers(pod)
            .iter()
            .any(|f| f == TRACKING_FINALIZER),
        restarts,
        created: parse_time(pod.pointer("/metadata/creationTimestamp")),
        finished,
    }
}

/// A new pod of `job` from its template (with completion `index` for Indexed Jobs).
pub fn new_pod(job: &Value, index: Option<i32>) -> Value {
    let name = object::name(job);
    let template = job.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut meta = template.get("metadata").cloned().unwrap_or(json!({}));
    if !meta.is_object() {
        meta = json!({});
    }
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    meta["generateName"] = json!(match index {
        Some(i) => format!("{name}-{i}-"),
        None => format!("{name}-"),
    });
    meta["namespace"] = json!(object::namespace(job).unwrap_or("default"));
    meta["ownerReferences"] = json!([owner::controller_reference(jobs(), job)]);
    meta["finalizers"] = json!([TRACKING_FINALIZER]);
    for drop in ["name", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(m) = meta.as_object_mut() {
            m.remove(drop);
        }
    }
    if let Some(i) = index {
        for field in ["annotations", "labels"] {
            if !meta[field].is_object() {
                meta[field] = json!({});
            }
            meta[field][COMPLETION_INDEX] = json!(i.to_string());
        }
        if spec
            .get("hostname")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            spec["hostname"] = json!(format!("{name}-{i}"));
        }
        for list in ["initContainers", "containers"] {
            let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
                continue;
            };
            for c in containers {
                if !c["env"].is_array() {
                    c["env"] = json!([]);
                }
                if let Some(env) = c["env"].as_array_mut() {
                    env.retain(|e| e["name"] != "JOB_COMPLETION_INDEX");
                    env.push(json!({"name": "JOB_COMPLETION_INDEX", "value": i.to_string()}));
                }
            }
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

async fn delete_pod(
    ctx: &Context,
    job: &Value,
    key: &ObjectKey,
    name: &str,
    uid: &str,
) -> Result<(), ReconcileError> {
    let grace = ctx
        .cache
        .get(
            pods(),
            &ObjectKey::namespaced(key.namespace.as_deref().unwrap_or("default"), name),
        )
        .and_then(|p| object::default_grace(&p));
    let opts = DeleteOptions {
        uid: Some(uid.to_string()),
        grace_period_seconds: grace,
        ..Default::default()
    };
    match ctx
        .store
        .delete(pods(), key.namespace.as_deref(), name, &opts)
        .await
    {
        Ok(_) => {
            ctx.events.record(
                jobs(),
                job,
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted pod: {name}"),
            );
            Ok(())
        }
        Err(StoreError::NotFound { .. }) => Ok(()),
        Err(StoreError::Conflict { reason, .. }) if reason.contains("uid") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes the tracking finalizer from `pod` (compare-and-swap, re-reading on conflict).
async fn remove_finalizer(ctx: &Context, pod: &Value) -> Result<(), ReconcileError> {
    let kind = pods();
    let mut current = pod.clone();
    for _ in 0..CAS_ATTEMPTS {
        let Some(list) = current
            .pointer_mut("/metadata/finalizers")
            .and_then(Value::as_array_mut)
        else {
            return Ok(());
        };
        let before = list.len();
        list.retain(|f| f != TRACKING_FINALIZER);
        if list.len() == before {
            return Ok(());
        }
        if list.is_empty() {
            object::meta_mut(&mut current).remove("finalizers");
        }
        match ctx.store.update(kind, current.clone()).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(StoreError::Conflict { .. }) => {
                match ctx
                    .store
                    .get(kind, object::namespace(pod), object::name(pod))
                    .await
                {
                    Ok(fresh)
                        if object::meta_str(&fresh, "uid") == object::meta_str(pod, "uid") =>
                    {
                        current = fresh;
                    }
                    Ok(_) | Err(StoreError::NotFound { .. }) => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ReconcileError::Other(format!(
        "pod {} kept changing while its finalizer was removed",
        object::name(pod)
    )))
}
