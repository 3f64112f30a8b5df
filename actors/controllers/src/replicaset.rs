//! The ReplicaSet controller: keeps `spec.replicas` active pods matching the selector,
//! as Kubernetes' `pkg/controller/replicaset` does. It adopts orphan pods the selector
//! matches and releases its pods that no longer match, creates missing pods from the
//! template in slow-start batches (1, 2, 4, ...), deletes surplus pods least useful first
//! ([`pods::pods_to_delete`]), ignores terminating pods in every count, and writes
//! `status` (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas with
//! `minReadySeconds`, observedGeneration, the `ReplicaFailure` condition) only when it
//! changed. Events: SuccessfulCreate, SuccessfulDelete, FailedCreate, FailedDelete.
//!
//! Pods are created without `spec.nodeName` (unless the template has one): the scheduler
//! binds them. Read-your-writes through [`Cache::wait_for_revision`] replaces the
//! expectations of kube-controller-manager: a reconcile returns only once the cache
//! holds what it wrote, so the next one cannot create the same pods again.

pub mod pods;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bus_schema::KindInfo;
use bus_schema::selector::LabelSelector;
use drover_admission::Admission;
use drover_store::{DeleteOptions, DeleteOutcome, StoreError};
use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub use crate::runtime::kinds::{pods as pods_kind, replicasets};
use crate::runtime::{
    Action, Cache, CacheEvent, Context, EventType, ObjectKey, ReconcileError, Reconciler, Watch,
    decode, owner, revision_of,
};

/// How long a reconcile waits for the cache to show its own writes.
pub const CACHE_WAIT: Duration = Duration::from_secs(10);
/// Concurrent reconciles of ReplicaSets (Kubernetes' `--concurrent-replicaset-syncs`).
pub const WORKERS: usize = 5;
/// The condition type set while pods cannot be created or deleted.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Kinds the ReplicaSet controller needs in the shared cache.
pub fn kinds() -> Vec<&'static KindInfo> {
    vec![replicasets(), pods_kind()]
}

/// Starts the ReplicaSet controller on `ctx` (events from `replicaset-controller`).
pub fn start(ctx: &Context) -> Vec<JoinHandle<()>> {
    vec![crate::runtime::run(
        ReplicaSetController,
        ctx.for_component("replicaset-controller"),
        WORKERS,
    )]
}

/// The reconciler.
pub struct ReplicaSetController;

/// The keys of the objects of `owner_kind` in `obj`'s namespace whose selector matches
/// `obj`'s labels (orphans are claimed by any owner whose selector matches them).
pub fn matching_owners(
    cache: &Cache,
    owner_kind: &'static KindInfo,
    obj: &Value,
) -> Vec<ObjectKey> {
    let labels = drover_store::object::labels(obj);
    let ns = drover_store::object::namespace(obj);
    cache
        .list(owner_kind, ns)
        .iter()
        .filter(|o| selector_of(o).is_some_and(|s| !s.is_empty() && s.matches(&labels)))
        .map(|o| ObjectKey::of(o))
        .collect()
}

/// `spec.selector` of a workload as a [`LabelSelector`] (None when missing or invalid).
pub fn selector_of(obj: &Value) -> Option<LabelSelector> {
    let sel: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
        serde_json::from_value(obj.pointer("/spec/selector")?.clone()).ok()?;
    LabelSelector::from_k8s(&sel).ok()
}

/// Maps a change of a child to its controller of `owner_kind`, or, for an orphan, to every
/// owner whose selector matches it.
pub fn child_to_owners(
    owner_kind: &'static KindInfo,
) -> impl Fn(&Cache, &CacheEvent) -> Vec<ObjectKey> + Send + Sync + 'static {
    move |cache, event| {
        let mut keys = Vec::new();
        for obj in [event.old.as_deref(), event.new.as_deref()]
            .into_iter()
            .flatten()
        {
            match owner::controller_ref(obj) {
                Some(_) => keys.extend(owner::controller_key(obj, owner_kind)),
                None => keys.extend(matching_owners(cache, owner_kind, obj)),
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }
}

impl Reconciler for ReplicaSetController {
    fn name(&self) -> &'static str {
        "replicaset"
    }

    fn kind(&self) -> &'static KindInfo {
        replicasets()
    }

    fn watches(&self) -> Vec<Watch> {
        vec![Watch::mapped(pods_kind(), child_to_owners(replicasets()))]
    }

    async fn reconcile(&self, key: &ObjectKey, ctx: &Context) -> Result<Action, ReconcileError> {
        let Some(rs) = ctx.cache.get(replicasets(), key) else {
            return Ok(Action::await_change());
        };
        reconcile(&rs, ctx).await
    }
}

async fn reconcile(rs: &Arc<Value>, ctx: &Context) -> Result<Action, ReconcileError> {
    let kind = replicasets();
    let typed: ReplicaSet = decode(kind, rs)?;
    let spec = typed.spec.clone();
    let uid = drover_store::object::meta_str(rs, "uid")
        .unwrap_or_default()
        .to_string();
    let ns = drover_store::object::namespace(rs)
        .unwrap_or("default")
        .to_string();
    let selector = match LabelSelector::from_k8s(&spec.selector) {
        Ok(s) if !s.is_empty() => s,
        _ => {
            // Validation rejects these; an object that got past it waits for a fix.
            tracing::warn!(message = "replicaset has an empty or invalid selector", object.ref = %ObjectKey::of(rs));
            return Ok(Action::await_change());
        }
    };
    let rs_terminating = drover_store::object::is_terminating(rs);

    // Claim: keep matching pods, release non-matching ones, adopt matching orphans.
    let mut owned: Vec<Arc<Value>> = Vec::new();
    let mut adopt: Vec<Arc<Value>> = Vec::new();
    let mut release: Vec<Arc<Value>> = Vec::new();
    for pod in ctx.cache.list(pods_kind(), Some(&ns)) {
        let matches = selector.matches(&drover_store::object::labels(&pod));
        match owner::controller_uid(&pod) {
            Some(u) if u == uid => {
                if matches {
                    owned.push(pod);
                } else if !rs_terminating {
                    release.push(pod);
                }
            }
            Some(_) => {}
            None => {
                if matches && !rs_terminating && !drover_store::object::is_terminating(&pod) {
                    adopt.push(pod);
                }
            }
        }
    }
    let mut last_pod_rev = 0;
    for pod in &release {
        last_pod_rev = last_pod_rev.max(set_owner(ctx, pod, &uid, None).await?);
    }
    if !adopt.is_empty() && can_adopt(ctx, kind, rs, &uid).await? {
        let reference = owner::controller_reference(kind, rs);
        for pod in adopt {
            let rev = set_owner(ctx, &pod, &uid, Some(&reference)).await?;
            last_pod_rev = last_pod_rev.max(rev);
            if rev > 0 {
                owned.push(pod);
            }
        }
    }

    let active: Vec<&Value> = owned
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| pods::is_active(p))
        .collect();
    let want = usize::try_from(spec.replicas.unwrap_or(1).max(0)).unwrap_or(0);
    let mut failure: Option<(&'static str, String)> = None;
    if !rs_terminating {
        if active.len() < want {
            let n = (want - active.len()).min(pods::BURST_REPLICAS);
            let (rev, err) = create_pods(ctx, rs, &typed, n).await;
            last_pod_rev = last_pod_rev.max(rev);
            if let Some(e) = err {
                failure = Some(("FailedCreate", e));
            }
        } else if active.len() > want {
            let n = (active.len() - want).min(pods::BURST_REPLICAS);
            let victims: Vec<&Value> = pods::pods_to_delete(&active, n)
                .into_iter()
                .map(|i| active[i])
                .collect();
            let (rev, err) = delete_pods(ctx, rs, &victims).await;
            last_pod_rev = last_pod_rev.max(rev);
            if let Some(e) = err {
                failure = Some(("FailedDelete", e));
            }
        }
    }
    if last_pod_rev > 0 {
        ctx.cache
            .wait_for_revision(pods_kind(), last_pod_rev, CACHE_WAIT)
            .await?;
    }

    // Status, from the pods as they were before this reconcile's writes (the writes'
    // own events bring the next reconcile, as in Kubernetes).
    let now = Timestamp::now();
    let min_ready =
        Duration::from_secs(u64::try_from(spec.min_ready_seconds.unwrap_or(0).max(0)).unwrap_or(0));
    let template_labels: BTreeMap<String, String> = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let mut ready = 0;
    let mut available = 0;
    let mut fully_labeled = 0;
    let mut next_check: Option<Duration> = None;
    for pod in &active {
        let labels = drover_store::object::labels(pod);
        if template_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
        {
            fully_labeled += 1;
        }
        if pods::is_ready(pod) {
            ready += 1;
        }
        match pods::availability(pod, min_ready, now) {
            (true, _) => available += 1,
            (false, Some(wait)) => {
                next_check = Some(next_check.map_or(wait, |w: Duration| w.min(wait)))
            }
            (false, None) => {}
        }
    }
    let old_status = typed.status.clone().unwrap_or_default();
    let mut conditions: Vec<ReplicaSetCondition> =
        old_status.conditions.clone().unwrap_or_default();
    let has_failure = conditions
        .iter()
        .any(|c| c.type_.as_deref() == Some(REPLICA_FAILURE));
    match &failure {
        Some((reason, message)) if !has_failure => conditions.push(ReplicaSetCondition {
            type_: Some(REPLICA_FAILURE.into()),
            status: Some("True".into()),
            reason: Some((*reason).into()),
            message: Some(message.clone()),
            last_transition_time: Some(Time(now)),
        }),
        None if has_failure => conditions.retain(|c| c.type_.as_deref() != Some(REPLICA_FAILURE)),
        _ => {}
    }
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let status = ReplicaSetStatus {
        replicas: count(active.len()),
        fully_labeled_replicas: Some(count(fully_labeled)),
        ready_replicas: Some(count(ready)),
        available_replicas: Some(count(available)),
        observed_generation: typed.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: old_status.terminating_replicas,
    };
    if status != old_status {
        write_status(ctx, kind, rs, &status).await?;
    }
    if let Some((_, message)) = failure {
        return Err(ReconcileError::Other(message));
    }
    Ok(next_check.map_or(Action::await_change(), |d| {
        Action::requeue(d + Duration::from_millis(100))
    }))
}

/// Writes `status` over the cached object (CAS on its resourceVersion) and waits until
/// the cache shows it.
pub(crate) async fn write_status<S: serde::Serialize>(
    ctx: &Context,
    kind: &'static KindInfo,
    obj: &Value,
    status: &S,
) -> Result<Value, ReconcileError> {
    let mut next = obj.clone();
    next["status"] =
        serde_json::to_value(status).map_err(|e| ReconcileError::Other(e.to_string()))?;
    write(ctx, kind, next).await
}

/// Updates `obj` (CAS on its resourceVersion) and waits until the cache shows it.
pub(crate) async fn write(
    ctx: &Context,
    kind: &'static KindInfo,
    obj: Value,
) -> Result<Value, ReconcileError> {
    let stored = ctx.store.update(kind, obj).await?;
    ctx.cache
        .wait_for_revision(kind, revision_of(&stored), CACHE_WAIT)
        .await?;
    Ok(stored)
}

/// Whether `owner` may adopt: read live, it is the same object and not being deleted
/// (Kubernetes' `RecheckDeletionTimestamp`), so a stale cache cannot adopt for a
/// deleted owner.
pub(crate) async fn can_adopt(
    ctx: &Context,
    kind: &'static KindInfo,
    owner_obj: &Value,
    uid: &str,
) -> Result<bool, ReconcileError> {
    match ctx
        .store
        .get(
            kind,
            drover_store::object::namespace(owner_obj),
            drover_store::object::name(owner_obj),
        )
        .await
    {
        Ok(live) => Ok(drover_store::object::meta_str(&live, "uid") == Some(uid)
            && !drover_store::object::is_terminating(&live)),
        Err(StoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Adopts (`reference` given) or releases `child` by rewriting its ownerReferences with
/// CAS on the cached version; returns the written revision (0 when nothing was written:
/// someone else changed it first, the next reconcile looks again).
pub(crate) async fn set_owner_of(
    ctx: &Context,
    kind: &'static KindInfo,
    child: &Value,
    owner_uid: &str,
    reference: Option<&Value>,
) -> Result<u64, ReconcileError> {
    let mut next = child.clone();
    let meta = drover_store::object::meta_mut(&mut next);
    let mut refs: Vec<Value> = meta
        .get("ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
    if let Some(r) = reference {
        refs.push(r.clone());
    }
    if refs.is_empty() {
        meta.remove("ownerReferences");
    } else {
        meta.insert("ownerReferences".into(), Value::Array(refs));
    }
    match ctx.store.update(kind, next).await {
        Ok(stored) => Ok(revision_of(&stored)),
        Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

async fn set_owner(
    ctx: &Context,
    pod: &Value,
    uid: &str,
    reference: Option<&Value>,
) -> Result<u64, ReconcileError> {
    set_owner_of(ctx, pods_kind(), pod, uid, reference).await
}

/// The pod a ReplicaSet creates from its template (Kubernetes' `GetPodFromTemplate`).
fn pod_from_template(rs: &Value, typed: &ReplicaSet) -> Value {
    let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut metadata = serde_json::Map::new();
    metadata.insert(
        "generateName".into(),
        json!(format!("{}-", drover_store::object::name(rs))),
    );
    metadata.insert(
        "namespace".into(),
        json!(
            typed
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into())
        ),
    );
    for field in ["labels", "annotations"] {
        if let Some(v) = template.pointer(&format!("/metadata/{field}")) {
            metadata.insert(field.into(), v.clone());
        }
    }
    metadata.insert(
        "ownerReferences".into(),
        json!([owner::controller_reference(replicasets(), rs)]),
    );
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    })
}

/// Creates `n` pods in slow-start batches; returns the highest revision written and the
/// first error (later batches are skipped after one fails). Every pod passes admission
/// first (priority, LimitRange defaults, quota), as a create through the API server
/// does: the pods of a batch are admitted one after the other (each quota charge sees
/// the one before), then the admitted ones are written together. A refused pod is not
/// written; its `FailedCreate` event carries the refusal.
async fn create_pods(
    ctx: &Context,
    rs: &Value,
    typed: &ReplicaSet,
    n: usize,
) -> (u64, Option<String>) {
    let kind = replicasets();
    let template = pod_from_template(rs, typed);
    let mut admission = match Admission::load(
        &ctx.store,
        pods_kind(),
        drover_store::object::namespace(&template),
    )
    .await
    {
        Ok(a) => a,
        Err(e) => {
            failed_create(ctx, rs, &e);
            return (0, Some(e.to_string()));
        }
    };
    let mut last_rev = 0;
    for batch in pods::slow_start_batches(n) {
        let mut admitted = Vec::with_capacity(batch);
        let mut error = None;
        for _ in 0..batch {
            let mut pod = template.clone();
            drover_admission::name_from_generate(&mut pod);
            match admission.admit_create(&ctx.store, &mut pod, false).await {
                Ok(()) => admitted.push(pod),
                Err(e) => {
                    failed_create(ctx, rs, &e);
                    error = Some(e.to_string());
                    break;
                }
            }
        }
        let results = join_all(
            admitted
                .into_iter()
                .map(|pod| ctx.store.create(pods_kind(), pod)),
        )
        .await;
        for result in results {
            match result {
                Ok(stored) => {
                    last_rev = last_rev.max(revision_of(&stored));
                    ctx.events.record(
                        kind,
                        rs,
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {}", drover_store::object::name(&stored)),
                    );
                }
                Err(e) => {
                    failed_create(ctx, rs, &e);
                    error.get_or_insert(e.to_string());
                }
            }
        }
        if error.is_some() {
            return (last_rev, error);
        }
    }
    (last_rev, None)
}

/// The `FailedCreate` event of a pod that could not be created.
fn failed_create(ctx: &Context, rs: &Value, error: &dyn std::fmt::Display) {
    ctx.events.record(
        replicasets(),
        rs,
        EventType::Warning,
        "FailedCreate",
        format!("Error creating: {error}"),
    );
}

/// Deletes `victims` (uid precondition, the pod's own grace period); returns the highest
/// revision to wait for and the first error.
async fn delete_pods(ctx: &Context, rs: &Value, victims: &[&Value]) -> (u64, Option<String>) {
    let kind = replicasets();
    let deletes = victims.iter().map(|pod| async move {
        let opts = DeleteOptions {
            uid: drover_store::object::meta_str(pod, "uid").map(str::to_string),
            grace_period_seconds: drover_store::object::default_grace(pod),
            ..Default::default()
        };
        let name = drover_store::object::name(pod);
        let result = ctx
            .store
            .delete(
                pods_kind(),
                drover_store::object::namespace(pod),
                name,
                &opts,
            )
            .await;
        (*pod, result)
    });
    let mut last_rev = 0;
    let mut error = None;
    for (pod, result) in join_all(deletes).await {
        let name = drover_store::object::name(pod);
        match result {
            Ok(outcome) => {
                match outcome {
                    DeleteOutcome::Terminating(now) => last_rev = last_rev.max(revision_of(&now)),
                    DeleteOutcome::Deleted(_) => {
                        // Gone: wait until the cache forgets it, so it is not counted again.
                        let _ = ctx
                            .cache
                            .wait_absent(pods_kind(), &ObjectKey::of(pod), CACHE_WAIT)
                            .await;
                    }
                }
                ctx.events.record(
                    kind,
                    rs,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                );
            }
            Err(StoreError::NotFound { .. }) => {}
            Err(StoreError::Conflict { reason, .. }) if reason.contains("uid") => {}
            Err(e) => {
                ctx.events.record(
                    kind,
                    rs,
                    EventType::Warning,
                    "FailedDelete",
                    format!("Error deleting: {e}"),
                );
                error.get_or_insert(e.to_string());
            }
        }
    }
    (last_rev, error)
}
