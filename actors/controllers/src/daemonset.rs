//! The DaemonSet controller: one pod per eligible node ([`core::fit`]), each created
//! without `nodeName` but with required node affinity `matchFields metadata.name In
//! [node]` (and the default daemon tolerations), so the scheduler binds it as Kubernetes
//! does since 1.12; RollingUpdate under `maxUnavailable` or OnDelete; the template's
//! history as ControllerRevisions ([`crate::revision`]); status counts.
//!
//! Node changes (added, removed, labels, taints) reconcile every DaemonSet.

pub mod core;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bus_schema::KindInfo;
use bus_schema::selector::LabelSelector;
use drover_admission::{Admission, AdmissionError};
use drover_store::{DeleteOptions, StoreError, object};
use k8s_openapi::api::core::v1::{Node, PodSpec};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::revision::{self, CACHE_WAIT, REVISION_LABEL};
use crate::runtime::kinds::{controller_revisions as revisions, daemonsets, nodes, pods};
use crate::runtime::{
    self, Action, Context, EventType, ObjectKey, ReconcileError, Reconciler, Watch, owner,
    revision_of,
};
use crate::statefulset::pod_health;
use core::{DaemonPod, Fit, NodeInfo, Strategy};

/// The kinds this controller needs cached.
pub fn kinds() -> Vec<&'static KindInfo> {
    vec![daemonsets(), pods(), nodes(), revisions()]
}

/// Starts the controller.
pub fn start(ctx: &Context) -> Vec<JoinHandle<()>> {
    vec![runtime::run(
        DaemonSetController,
        ctx.for_component("daemonset-controller"),
        4,
    )]
}

/// The DaemonSet reconciler.
pub struct DaemonSetController;

impl Reconciler for DaemonSetController {
    fn name(&self) -> &'static str {
        "daemonset"
    }
    fn kind(&self) -> &'static KindInfo {
        daemonsets()
    }
    fn watches(&self) -> Vec<Watch> {
        vec![
            Watch::owned(pods(), daemonsets()),
            Watch::owned(revisions(), daemonsets()),
            Watch::mapped(nodes(), |cache, event| {
                // Only what decides placement matters: not the heartbeats.
                let placement = |n: Option<&Arc<Value>>| {
                    n.map(|n| {
                        (
                            n.pointer("/metadata/labels").cloned(),
                            n.pointer("/spec/taints").cloned(),
                        )
                    })
                };
                if event.old.is_some()
                    && event.new.is_some()
                    && placement(event.old.as_ref()) == placement(event.new.as_ref())
                {
                    return Vec::new();
                }
                cache
                    .list(daemonsets(), None)
                    .iter()
                    .map(|d| ObjectKey::of(d))
                    .collect()
            }),
        ]
    }
    async fn reconcile(&self, key: &ObjectKey, ctx: &Context) -> Result<Action, ReconcileError> {
        let Some(ds) = ctx.cache.get(daemonsets(), key) else {
            return Ok(Action::await_change());
        };
        if object::is_terminating(&ds) {
            return Ok(Action::await_change());
        }
        reconcile_ds(ctx, &ds).await
    }
}

fn node_info(node: &Value) -> Option<NodeInfo> {
    let node: Node = serde_json::from_value(node.clone()).ok()?;
    Some(NodeInfo {
        name: node.metadata.name.unwrap_or_default(),
        labels: node.metadata.labels.unwrap_or_default(),
        taints: node.spec.and_then(|s| s.taints).unwrap_or_default(),
    })
}

/// The node a daemon pod is for: its nodeName, or the node of its matchFields affinity.
pub fn target_node(pod: &Value) -> Option<String> {
    if let Some(n) = pod.pointer("/spec/nodeName").and_then(Value::as_str)
        && !n.is_empty()
    {
        return Some(n.to_string());
    }
    let terms = pod
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")?
        .as_array()?;
    terms.iter().find_map(|t| {
        t.get("matchFields")?.as_array()?.iter().find_map(|r| {
            (r["key"] == "metadata.name" && r["operator"] == "In")
                .then(|| r.pointer("/values/0")?.as_str().map(str::to_string))
                .flatten()
        })
    })
}

/// The daemon pod for `node` from `template` at revision hash `hash`.
pub fn new_pod(ds: &Value, template: &Value, hash: &str, node: &str) -> Value {
    let mut metadata = template
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for f in ["name", "uid", "resourceVersion", "creationTimestamp"] {
        metadata.remove(f);
    }
    metadata.insert(
        "generateName".into(),
        json!(format!("{}-", object::name(ds))),
    );
    metadata.insert(
        "namespace".into(),
        json!(object::namespace(ds).unwrap_or("default")),
    );
    let labels = metadata.entry("labels").or_insert_with(|| json!({}));
    if !labels.is_object() {
        *labels = json!({});
    }
    labels[REVISION_LABEL] = json!(hash);
    metadata.insert(
        "ownerReferences".into(),
        json!([owner::controller_reference(daemonsets(), ds)]),
    );
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    if !spec.is_object() {
        spec = json!({});
    }
    // Kubernetes' ReplaceDaemonSetPodNodeNameNodeAffinity: the node terms become one
    // term naming this node (the controller already checked the label terms).
    let affinity = spec
        .as_object_mut()
        .map(|s| s.entry("affinity").or_insert_with(|| json!({})))
        .filter(|a| a.is_object());
    if let Some(affinity) = affinity {
        let na = affinity
            .as_object_mut()
            .map(|a| a.entry("nodeAffinity").or_insert_with(|| json!({})));
        if let Some(na) = na.filter(|n| n.is_object()) {
            na["requiredDuringSchedulingIgnoredDuringExecution"] = json!({"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
            ]});
        }
    }
    let typed: PodSpec = serde_json::from_value(spec.clone()).unwrap_or_default();
    let tolerations = core::with_default_tolerations(
        typed.tolerations.as_deref().unwrap_or(&[]),
        typed.host_network.unwrap_or(false),
    );
    spec["tolerations"] = serde_json::to_value(tolerations).unwrap_or(json!([]));
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

async fn reconcile_ds(ctx: &Context, ds: &Value) -> Result<Action, ReconcileError> {
    let name = object::name(ds).to_string();
    let uid = object::meta_str(ds, "uid").unwrap_or_default().to_string();
    let selector = ds
        .pointer("/spec/selector")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .and_then(|s| LabelSelector::from_k8s(&s).ok());
    let template_labels = object::labels(ds.pointer("/spec/template").unwrap_or(&Value::Null));
    if !selector.is_some_and(|s| s.matches(&template_labels)) {
        ctx.events.record(
            daemonsets(),
            ds,
            EventType::Warning,
            "SelectingAll",
            "selector does not match template labels or cannot be read",
        );
        return Ok(Action::await_change());
    }
    let min_ready = ds
        .pointer("/spec/minReadySeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let owned = || -> Vec<Arc<Value>> {
        ctx.cache
            .owned_by(pods(), &uid)
            .into_iter()
            .filter(|p| owner::is_controlled_by(p, &uid))
            .collect()
    };
    let in_use: BTreeSet<String> = owned()
        .iter()
        .filter_map(|p| {
            object::labels(p)
                .get(REVISION_LABEL)
                .map(|h| format!("{name}-{h}"))
        })
        .collect();
    let (update, _) = revision::sync(ctx, daemonsets(), ds, &in_use).await?;
    let hash = update
        .strip_prefix(&format!("{name}-"))
        .unwrap_or(&update)
        .to_string();
    let template_spec: PodSpec = ds
        .pointer("/spec/template/spec")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default();
    let fits: BTreeMap<String, Fit> = ctx
        .cache
        .list(nodes(), None)
        .iter()
        .filter_map(|n| node_info(n))
        .map(|n| (n.name.clone(), core::fit(&template_spec, &n)))
        .collect();
    let now = jiff::Timestamp::now();
    let daemon_pods = |list: &[Arc<Value>]| -> Vec<DaemonPod> {
        list.iter()
            .map(|p| {
                let (ready, available) = pod_health(p, min_ready, now);
                let phase = p.pointer("/status/phase").and_then(Value::as_str);
                DaemonPod {
                    name: object::name(p).to_string(),
                    node: target_node(p).unwrap_or_default(),
                    hash: object::labels(p)
                        .get(REVISION_LABEL)
                        .cloned()
                        .unwrap_or_default(),
                    terminating: object::is_terminating(p),
                    failed: matches!(phase, Some("Failed" | "Succeeded")),
                    ready,
                    available,
                    created: object::meta_str(p, "creationTimestamp")
                        .unwrap_or_default()
                        .to_string(),
                }
            })
            .collect()
    };
    let current = owned();
    let strategy = match ds
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
    {
        Some("OnDelete") => Strategy::OnDelete,
        _ => {
            let desired = fits.values().filter(|f| f.should_run).count() as i64;
            let max = core::resolve_max_unavailable(
                ds.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable"),
                desired,
            )
            .unwrap_or(1);
            Strategy::RollingUpdate {
                max_unavailable: max,
            }
        }
    };
    let plan = core::plan(&fits, &daemon_pods(&current), &hash, strategy);
    let template = ds.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut admission = None;
    for node in &plan.create {
        let pod = new_pod(ds, &template, &hash, node);
        // Daemon pods pass admission (priority, LimitRange, quota) as any create does.
        let admission = match &mut admission {
            Some(a) => a,
            None => {
                admission.insert(Admission::load(&ctx.store, pods(), object::namespace(ds)).await?)
            }
        };
        match admission.create(&ctx.store, pod).await {
            Ok(stored) => {
                ctx.events.record(
                    daemonsets(),
                    ds,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {}", object::name(&stored)),
                );
                ctx.cache
                    .wait_for_revision(pods(), revision_of(&stored), CACHE_WAIT)
                    .await?;
            }
            Err(AdmissionError::Store {
                source: StoreError::Invalid { errors, .. },
                ..
            }) => {
                ctx.events.record(
                    daemonsets(),
                    ds,
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating: {errors}"),
                );
                return Ok(Action::await_change());
            }
            // Refused (quota, priority, limits): retried with backoff.
            Err(e @ AdmissionError::Refused(_)) => {
                ctx.events.record(
                    daemonsets(),
                    ds,
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating: {e}"),
                );
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        }
    }
    for pod_name in &plan.delete {
        let Some(pod) = current.iter().find(|p| object::name(p) == pod_name) else {
            continue;
        };
        let opts = DeleteOptions {
            uid: object::meta_str(pod, "uid").map(str::to_string),
            grace_period_seconds: object::default_grace(pod),
            ..DeleteOptions::default()
        };
        match ctx
            .store
            .delete(pods(), object::namespace(pod), pod_name, &opts)
            .await
        {
            Ok(outcome) => {
                ctx.events.record(
                    daemonsets(),
                    ds,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {pod_name}"),
                );
                match outcome {
                    drover_store::DeleteOutcome::Terminating(last) => {
                        ctx.cache
                            .wait_for_revision(pods(), revision_of(&last), CACHE_WAIT)
                            .await?
                    }
                    drover_store::DeleteOutcome::Deleted(_) => {
                        ctx.cache
                            .wait_absent(pods(), &ObjectKey::of(pod), CACHE_WAIT)
                            .await?
                    }
                }
            }
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }

    let c = core::counts(&fits, &daemon_pods(&owned()), &hash);
    let mut status = ds
        .get("status")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    status["observedGeneration"] = json!(
        ds.pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1)
    );
    status["desiredNumberScheduled"] = json!(c.desired);
    status["currentNumberScheduled"] = json!(c.current);
    status["numberMisscheduled"] = json!(c.misscheduled);
    status["numberReady"] = json!(c.ready);
    status["updatedNumberScheduled"] = json!(c.updated);
    status["numberAvailable"] = json!(c.available);
    status["numberUnavailable"] = json!(c.unavailable);
    if ds.get("status") != Some(&status) {
        let mut updated = ds.clone();
        updated["status"] = status;
        let stored = ctx.store.update(daemonsets(), updated).await?;
        ctx.cache
            .wait_for_revision(daemonsets(), revision_of(&stored), CACHE_WAIT)
            .await?;
    }
    if min_ready > 0 && c.available < c.ready {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(Action::await_change())
}
