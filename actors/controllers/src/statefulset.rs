//! The StatefulSet controller: pods `<set>-<ordinal>` with stable identity (hostname,
//! subdomain = `serviceName`, and per-ordinal claims `<template>-<set>-<ordinal>` that
//! outlive the pod), created and updated in the order [`core`] decides, with the pod
//! template's history kept as ControllerRevisions ([`crate::revision`]).
//!
//! One reconcile: read the set, its pods and claims from the cache, sync the revision
//! history, plan, carry out the steps (claims before their pod; deletes with the pod's
//! grace period and a uid precondition), and write the status when it changed. Every
//! write is followed by a wait for the cache to show it, so the next reconcile never
//! repeats it.

pub mod core;

use std::collections::BTreeSet;
use std::time::Duration;

use bus_schema::KindInfo;
use bus_schema::selector::LabelSelector;
use drover_admission::AdmissionError;
use drover_store::{DeleteOptions, StoreError, object};
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;

use crate::revision::{self, CACHE_WAIT, REVISION_LABEL};
use crate::runtime::kinds::{
    controller_revisions as revisions, persistent_volume_claims as claims, pods,
    statefulsets as sets,
};
use crate::runtime::{
    self, Action, Context, EventType, ObjectKey, ReconcileError, Reconciler, Watch, owner,
    revision_of,
};
use core::{PodState, Rev, SetSpec, Step, Strategy};

/// Pod label with the pod's own name (for per-pod Services).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Pod label with the ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The kinds this controller needs cached.
pub fn kinds() -> Vec<&'static KindInfo> {
    vec![sets(), pods(), claims(), revisions()]
}

/// Starts the controller.
pub fn start(ctx: &Context) -> Vec<JoinHandle<()>> {
    vec![runtime::run(
        StatefulSetController,
        ctx.for_component("statefulset-controller"),
        4,
    )]
}

/// The StatefulSet reconciler.
pub struct StatefulSetController;

impl Reconciler for StatefulSetController {
    fn name(&self) -> &'static str {
        "statefulset"
    }
    fn kind(&self) -> &'static KindInfo {
        sets()
    }
    fn watches(&self) -> Vec<Watch> {
        vec![
            Watch::owned(pods(), sets()),
            Watch::owned(revisions(), sets()),
        ]
    }
    async fn reconcile(&self, key: &ObjectKey, ctx: &Context) -> Result<Action, ReconcileError> {
        let Some(set) = ctx.cache.get(sets(), key) else {
            // Gone: the garbage collector removes its pods and revisions.
            return Ok(Action::await_change());
        };
        if object::is_terminating(&set) {
            return Ok(Action::await_change());
        }
        reconcile_set(ctx, &set).await
    }
}

fn is_true_condition<'a>(pod: &'a Value, type_: &str) -> Option<&'a Value> {
    pod.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

/// Running and Ready, and whether Ready for `min_ready` seconds at `now`.
pub fn pod_health(pod: &Value, min_ready: i64, now: jiff::Timestamp) -> (bool, bool) {
    let running = pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running");
    let Some(ready) = is_true_condition(pod, "Ready").filter(|_| running) else {
        return (false, false);
    };
    if min_ready <= 0 {
        return (true, true);
    }
    let since = ready
        .get("lastTransitionTime")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let available = since.is_some_and(|t| now.as_second() - t.as_second() >= min_ready);
    (true, available)
}

fn pod_state(pod: &Value, ordinal: i64, min_ready: i64, now: jiff::Timestamp) -> PodState {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    let (running_ready, available) = pod_health(pod, min_ready, now);
    PodState {
        ordinal,
        revision: object::labels(pod)
            .get(REVISION_LABEL)
            .cloned()
            .unwrap_or_default(),
        terminating: object::is_terminating(pod),
        running_ready,
        available,
        failed: matches!(phase, Some("Failed" | "Succeeded")),
    }
}

fn spec_of(set: &Value, current: String, update: String) -> SetSpec {
    let i = |p: &str, d: i64| set.pointer(p).and_then(Value::as_i64).unwrap_or(d);
    let strategy = match set
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
    {
        Some("OnDelete") => Strategy::OnDelete,
        _ => Strategy::RollingUpdate {
            partition: i("/spec/updateStrategy/rollingUpdate/partition", 0).max(0),
        },
    };
    SetSpec {
        replicas: i("/spec/replicas", 1).max(0),
        start: i("/spec/ordinals/start", 0).max(0),
        parallel: set
            .pointer("/spec/podManagementPolicy")
            .and_then(Value::as_str)
            == Some("Parallel"),
        strategy,
        current,
        update,
    }
}

/// The claim name of template `template` for the pod of `ordinal`.
pub fn claim_name(template: &str, set: &str, ordinal: i64) -> String {
    format!("{template}-{set}-{ordinal}")
}

fn claim_templates(set: &Value) -> Vec<Value> {
    set.pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The pod of `ordinal` made from `template` (the revision's template) and `revision`.
pub fn new_pod(set: &Value, template: &Value, revision: &str, ordinal: i64) -> Value {
    let name = object::name(set);
    let pod_name = format!("{name}-{ordinal}");
    let mut metadata = template
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for f in [
        "name",
        "generateName",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        metadata.remove(f);
    }
    metadata.insert("name".into(), json!(pod_name));
    metadata.insert(
        "namespace".into(),
        json!(object::namespace(set).unwrap_or("default")),
    );
    let labels = metadata.entry("labels").or_insert_with(|| json!({}));
    if !labels.is_object() {
        *labels = json!({});
    }
    labels[POD_NAME_LABEL] = json!(pod_name);
    labels[POD_INDEX_LABEL] = json!(ordinal.to_string());
    labels[REVISION_LABEL] = json!(revision);
    metadata.insert(
        "ownerReferences".into(),
        json!([owner::controller_reference(sets(), set)]),
    );
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    if !spec.is_object() {
        spec = json!({});
    }
    spec["hostname"] = json!(pod_name);
    if let Some(service) = set.pointer("/spec/serviceName").and_then(Value::as_str)
        && !service.is_empty()
    {
        spec["subdomain"] = json!(service);
    }
    // Every claim template becomes the volume of the same name (replacing a template
    // volume of that name, as Kubernetes does).
    let mut volumes: Vec<Value> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for t in claim_templates(set) {
        let Some(tname) = t.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        volumes.retain(|v| v.get("name").and_then(Value::as_str) != Some(tname));
        volumes.push(json!({
            "name": tname,
            "persistentVolumeClaim": {"claimName": claim_name(tname, name, ordinal)},
        }));
    }
    if !volumes.is_empty() {
        spec["volumes"] = Value::Array(volumes);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

/// The claims the pod of `ordinal` needs: `(name, object to create)`.
pub fn new_claims(set: &Value, ordinal: i64) -> Vec<(String, Value)> {
    let name = object::name(set);
    let selector_labels = set
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let delete_with_set = set
        .pointer("/spec/persistentVolumeClaimRetentionPolicy/whenDeleted")
        .and_then(Value::as_str)
        == Some("Delete");
    claim_templates(set)
        .into_iter()
        .filter_map(|t| {
            let tname = t.pointer("/metadata/name")?.as_str()?.to_string();
            let cname = claim_name(&tname, name, ordinal);
            let mut labels: Map<String, Value> = t
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            labels.extend(selector_labels.clone());
            let mut metadata = json!({
                "name": cname,
                "namespace": object::namespace(set).unwrap_or("default"),
                "labels": labels,
            });
            if let Some(a) = t.pointer("/metadata/annotations") {
                metadata["annotations"] = a.clone();
            }
            if delete_with_set {
                metadata["ownerReferences"] = json!([owner::controller_reference(sets(), set)]);
            }
            let claim = json!({
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": metadata,
                "spec": t.get("spec").cloned().unwrap_or(json!({})),
            });
            Some((cname, claim))
        })
        .collect()
}

async fn reconcile_set(ctx: &Context, set: &Value) -> Result<Action, ReconcileError> {
    let name = object::name(set).to_string();
    let uid = object::meta_str(set, "uid").unwrap_or_default().to_string();
    let selector = match set
        .pointer("/spec/selector")
        .map(|s| serde_json::from_value(s.clone()))
    {
        Some(Ok(s)) => LabelSelector::from_k8s(&s).ok(),
        _ => None,
    };
    let Some(selector) = selector else {
        ctx.events.record(
            sets(),
            set,
            EventType::Warning,
            "InvalidSelector",
            "the statefulset's selector cannot be read",
        );
        return Ok(Action::await_change());
    };
    let template_labels = object::labels(set.pointer("/spec/template").unwrap_or(&Value::Null));
    if !selector.matches(&template_labels) {
        ctx.events.record(
            sets(),
            set,
            EventType::Warning,
            "InvalidSelector",
            "selector does not match template labels",
        );
        return Ok(Action::await_change());
    }
    let min_ready = set
        .pointer("/spec/minReadySeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);

    let owned_pods = || -> Vec<(i64, std::sync::Arc<Value>)> {
        ctx.cache
            .owned_by(pods(), &uid)
            .into_iter()
            .filter(|p| owner::is_controlled_by(p, &uid))
            .filter_map(|p| {
                let (parent, ordinal) = core::parse_ordinal(object::name(&p))?;
                (parent == name).then_some((ordinal, p.clone()))
            })
            .collect()
    };

    // History first: the update revision is what new pods are made from.
    let mut in_use: BTreeSet<String> = owned_pods()
        .iter()
        .filter_map(|(_, p)| object::labels(p).get(REVISION_LABEL).cloned())
        .collect();
    let status_current = set
        .pointer("/status/currentRevision")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !status_current.is_empty() {
        in_use.insert(status_current.clone());
    }
    let (update, _) = revision::sync(ctx, sets(), set, &in_use).await?;
    let history = revision::owned(ctx, set);
    let current = if history.iter().any(|r| r.name == status_current) {
        status_current
    } else {
        update.clone()
    };
    let template_of = |rev: &str| -> Value {
        history
            .iter()
            .find(|r| r.name == rev)
            .and_then(|r| revision::template_of(&r.data))
            .unwrap_or_else(|| set.pointer("/spec/template").cloned().unwrap_or(json!({})))
    };
    let spec = spec_of(set, current.clone(), update.clone());

    let now = jiff::Timestamp::now();
    let states: Vec<PodState> = owned_pods()
        .iter()
        .map(|(o, p)| pod_state(p, *o, min_ready, now))
        .collect();
    let plan = core::plan(&spec, &states);
    for step in &plan.steps {
        match *step {
            Step::Create(ordinal, rev) => {
                let rev_name = match rev {
                    Rev::Current => &current,
                    Rev::Update => &update,
                };
                if !ensure_claims(ctx, set, ordinal).await? {
                    break;
                }
                let pod = new_pod(set, &template_of(rev_name), rev_name, ordinal);
                let pod_name = object::name(&pod).to_string();
                // Set pods pass admission (priority, LimitRange, quota) as any create
                // does.
                match drover_admission::create(&ctx.store, pods(), pod).await {
                    Ok(stored) => {
                        ctx.events.record(
                            sets(),
                            set,
                            EventType::Normal,
                            "SuccessfulCreate",
                            format!("create Pod {pod_name} in StatefulSet {name} successful"),
                        );
                        ctx.cache
                            .wait_for_revision(pods(), revision_of(&stored), CACHE_WAIT)
                            .await?;
                    }
                    // The old pod of this name is still being removed; its deletion
                    // reconciles the set again.
                    Err(AdmissionError::Store {
                        source: StoreError::AlreadyExists { .. },
                        ..
                    }) => {}
                    Err(AdmissionError::Store {
                        source: StoreError::Invalid { errors, .. },
                        ..
                    }) => {
                        ctx.events.record(
                            sets(),
                            set,
                            EventType::Warning,
                            "FailedCreate",
                            format!(
                                "create Pod {pod_name} in StatefulSet {name} failed error: {errors}"
                            ),
                        );
                        return Ok(Action::await_change());
                    }
                    // Refused (quota, priority, limits): retried with backoff.
                    Err(e @ AdmissionError::Refused(_)) => {
                        ctx.events.record(
                            sets(),
                            set,
                            EventType::Warning,
                            "FailedCreate",
                            format!(
                                "create Pod {pod_name} in StatefulSet {name} failed error: {e}"
                            ),
                        );
                        return Err(e.into());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Step::Delete(ordinal) => {
                let Some((_, pod)) = owned_pods().into_iter().find(|(o, _)| *o == ordinal) else {
                    continue;
                };
                delete_pod(ctx, set, &pod).await?;
            }
        }
    }
    if plan.steps.is_empty() {
        tracing::debug!(message = "statefulset waits", set = %ObjectKey::of(set), waiting = ?plan.waiting);
    }
    delete_scaled_claims(ctx, set, &spec, &owned_pods()).await?;

    // Status from what the cache holds now.
    let states: Vec<PodState> = owned_pods()
        .iter()
        .map(|(o, p)| pod_state(p, *o, min_ready, now))
        .collect();
    let c = core::counts(&spec, &states);
    let mut status = set.get("status").cloned().unwrap_or(json!({}));
    if !status.is_object() {
        status = json!({});
    }
    status["observedGeneration"] = json!(
        set.pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1)
    );
    status["replicas"] = json!(c.replicas);
    status["readyReplicas"] = json!(c.ready);
    status["availableReplicas"] = json!(c.available);
    status["currentReplicas"] = json!(c.current);
    status["updatedReplicas"] = json!(c.updated);
    status["currentRevision"] = json!(c.current_revision);
    status["updateRevision"] = json!(c.update_revision);
    status["collisionCount"] = json!(
        set.pointer("/status/collisionCount")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    );
    if set.get("status") != Some(&status) {
        let mut updated = set.clone();
        updated["status"] = status;
        let stored = ctx.store.update(sets(), updated).await?;
        ctx.cache
            .wait_for_revision(sets(), revision_of(&stored), CACHE_WAIT)
            .await?;
    }
    // Availability changes with time alone when minReadySeconds is set.
    if min_ready > 0 && c.available < c.ready {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(Action::await_change())
}

/// Creates the claims of `ordinal` that do not exist; false when one is being deleted
/// (the pod must wait, as in Kubernetes).
async fn ensure_claims(ctx: &Context, set: &Value, ordinal: i64) -> Result<bool, ReconcileError> {
    let namespace = object::namespace(set).unwrap_or("default");
    for (cname, claim) in new_claims(set, ordinal) {
        let key = ObjectKey::namespaced(namespace, &cname);
        if let Some(existing) = ctx.cache.get(claims(), &key) {
            if object::is_terminating(&existing) {
                ctx.events.record(
                    sets(),
                    set,
                    EventType::Warning,
                    "FailedCreate",
                    format!("pvc {cname} is being deleted"),
                );
                return Ok(false);
            }
            continue;
        }
        // Claims pass admission (LimitRange, quota) as any create does.
        match drover_admission::create(&ctx.store, claims(), claim).await {
            Ok(stored) => {
                ctx.events.record(
                    sets(),
                    set,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!(
                        "create Claim {cname} Pod {}-{ordinal} in StatefulSet {} success",
                        object::name(set),
                        object::name(set)
                    ),
                );
                ctx.cache
                    .wait_for_revision(claims(), revision_of(&stored), CACHE_WAIT)
                    .await?;
            }
            Err(AdmissionError::Store {
                source: StoreError::AlreadyExists { .. },
                ..
            }) => {}
            Err(AdmissionError::Store {
                source: StoreError::Invalid { errors, .. },
                ..
            }) => {
                ctx.events.record(
                    sets(),
                    set,
                    EventType::Warning,
                    "FailedCreate",
                    format!(
                        "create Claim {cname} for StatefulSet {} failed error: {errors}",
                        object::name(set)
                    ),
                );
                return Ok(false);
            }
            // Refused (quota, limits): retried with backoff.
            Err(e @ AdmissionError::Refused(_)) => {
                ctx.events.record(
                    sets(),
                    set,
                    EventType::Warning,
                    "FailedCreate",
                    format!(
                        "create Claim {cname} for StatefulSet {} failed error: {e}",
                        object::name(set)
                    ),
                );
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

async fn delete_pod(ctx: &Context, set: &Value, pod: &Value) -> Result<(), ReconcileError> {
    let pod_name = object::name(pod).to_string();
    let opts = DeleteOptions {
        uid: object::meta_str(pod, "uid").map(str::to_string),
        grace_period_seconds: object::default_grace(pod),
        ..DeleteOptions::default()
    };
    match ctx
        .store
        .delete(pods(), object::namespace(pod), &pod_name, &opts)
        .await
    {
        Ok(outcome) => {
            ctx.events.record(
                sets(),
                set,
                EventType::Normal,
                "SuccessfulDelete",
                format!(
                    "delete Pod {pod_name} in StatefulSet {} successful",
                    object::name(set)
                ),
            );
            let (drover_store::DeleteOutcome::Deleted(last)
            | drover_store::DeleteOutcome::Terminating(last)) = outcome;
            let key = ObjectKey::of(pod);
            if object::is_terminating(&last) {
                ctx.cache
                    .wait_for_revision(pods(), revision_of(&last), CACHE_WAIT)
                    .await?;
            } else {
                ctx.cache.wait_absent(pods(), &key, CACHE_WAIT).await?;
            }
            Ok(())
        }
        Err(StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// With `whenScaled: Delete`, the claims of ordinals scaled away go once their pod has.
async fn delete_scaled_claims(
    ctx: &Context,
    set: &Value,
    spec: &SetSpec,
    pods_now: &[(i64, std::sync::Arc<Value>)],
) -> Result<(), ReconcileError> {
    if set
        .pointer("/spec/persistentVolumeClaimRetentionPolicy/whenScaled")
        .and_then(Value::as_str)
        != Some("Delete")
    {
        return Ok(());
    }
    let name = object::name(set);
    let namespace = object::namespace(set).unwrap_or("default");
    let end = spec.start + spec.replicas;
    for t in claim_templates(set) {
        let Some(tname) = t.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        let prefix = format!("{tname}-{name}-");
        for claim in ctx.cache.list(claims(), Some(namespace)) {
            let cname = object::name(&claim);
            let Some(ordinal) = cname
                .strip_prefix(&prefix)
                .and_then(|o| o.parse::<i64>().ok())
            else {
                continue;
            };
            if (spec.start..end).contains(&ordinal)
                || pods_now.iter().any(|(o, _)| *o == ordinal)
                || object::is_terminating(&claim)
            {
                continue;
            }
            match ctx
                .store
                .delete(
                    claims(),
                    Some(namespace),
                    cname,
                    &DeleteOptions {
                        uid: object::meta_str(&claim, "uid").map(str::to_string),
                        ..DeleteOptions::default()
                    },
                )
                .await
            {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}
