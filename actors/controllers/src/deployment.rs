//! The Deployment controller, as Kubernetes' `pkg/controller/deployment`: one
//! ReplicaSet per pod template (named `<deployment>-<template hash>`, with the
//! `pod-template-hash` label in its selector and template), RollingUpdate within
//! maxSurge / maxUnavailable or Recreate, `minReadySeconds` (through the ReplicaSets'
//! available counts), `progressDeadlineSeconds`, revision annotations
//! (`deployment.kubernetes.io/revision`, `revision-history`), annotations such as
//! `kubernetes.io/change-cause` copied to the new ReplicaSet, cleanup of old ReplicaSets
//! beyond `revisionHistoryLimit`, `spec.paused` (scaling works, rollouts wait),
//! proportional scaling mid-rollout, status and conditions, and ScalingReplicaSet events.
//!
//! The arithmetic is in [`rollout`], the status and conditions in [`status`]; this file
//! reads the cache and writes the store. `kubectl rollout undo` needs nothing here: it
//! copies an old ReplicaSet's template into the Deployment, whose ReplicaSet then becomes
//! the new one again (its revision moves to the top, the old number to `revision-history`).

pub mod rollout;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bus_schema::KindInfo;
use bus_schema::selector::LabelSelector;
use drover_store::{DeleteOptions, StoreError};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::replicaset::{
    self, CACHE_WAIT, can_adopt, child_to_owners, pods_kind, replicasets, set_owner_of, write,
};
pub use crate::runtime::kinds::deployments;
use crate::runtime::{
    Action, Context, EventType, ObjectKey, ReconcileError, Reconciler, Watch, decode, owner,
    revision_of,
};
use rollout::{RsState, Strategy};

/// The revision of a ReplicaSet, and of the Deployment (its newest).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions of a ReplicaSet that became new again (a rollback).
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// `spec.replicas` of the Deployment when it last sized this ReplicaSet.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `replicas + maxSurge` of the Deployment when it last sized this ReplicaSet.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// The label (and selector term) naming a ReplicaSet's template.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Concurrent reconciles (Kubernetes' `--concurrent-deployment-syncs`).
pub const WORKERS: usize = 5;

/// Deployment annotations never copied to a ReplicaSet (Kubernetes' `skipCopyAnnotation`).
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// Kinds the Deployment and ReplicaSet controllers need in the shared cache.
pub fn kinds() -> Vec<&'static KindInfo> {
    vec![deployments(), replicasets(), pods_kind()]
}

/// Starts the Deployment controller on `ctx` (events from `deployment-controller`).
pub fn start(ctx: &Context) -> Vec<JoinHandle<()>> {
    vec![crate::runtime::run(
        DeploymentController,
        ctx.for_component("deployment-controller"),
        WORKERS,
    )]
}

/// The reconciler.
pub struct DeploymentController;

impl Reconciler for DeploymentController {
    fn name(&self) -> &'static str {
        "deployment"
    }

    fn kind(&self) -> &'static KindInfo {
        deployments()
    }

    fn watches(&self) -> Vec<Watch> {
        vec![
            Watch::mapped(replicasets(), child_to_owners(deployments())),
            // Recreate waits for old pods to be gone: their removal reconciles the owner.
            Watch::mapped(pods_kind(), |cache, event| {
                if event.new.is_some() {
                    return Vec::new();
                }
                event
                    .old
                    .as_deref()
                    .and_then(|pod| owner::controller_key(pod, replicasets()))
                    .and_then(|rs| cache.get(replicasets(), &rs))
                    .and_then(|rs| owner::controller_key(&rs, deployments()))
                    .into_iter()
                    .collect()
            }),
        ]
    }

    async fn reconcile(&self, key: &ObjectKey, ctx: &Context) -> Result<Action, ReconcileError> {
        let Some(d) = ctx.cache.get(deployments(), key) else {
            return Ok(Action::await_change());
        };
        let Some(mut sync) = Sync::new(ctx, &d)? else {
            return Ok(Action::await_change());
        };
        sync.run().await
    }
}

/// One ReplicaSet as the sync sees it.
#[derive(Clone)]
struct Rs {
    obj: Value,
    state: RsState,
    uid: String,
    revision: i64,
}

impl Rs {
    fn new(obj: Value) -> Rs {
        let int = |path: &str| obj.pointer(path).and_then(Value::as_i64).unwrap_or(0) as i32;
        let annotation = |k: &str| annotations(&obj).get(k).and_then(|v| v.parse::<i64>().ok());
        let state = RsState {
            name: drover_store::object::name(&obj).to_string(),
            created: drover_store::object::meta_str(&obj, "creationTimestamp")
                .unwrap_or("")
                .to_string(),
            spec_replicas: obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1) as i32,
            replicas: int("/status/replicas"),
            ready: int("/status/readyReplicas"),
            available: int("/status/availableReplicas"),
            max_replicas: annotation(MAX_REPLICAS).map(|v| v as i32),
        };
        Rs {
            uid: drover_store::object::meta_str(&obj, "uid")
                .unwrap_or("")
                .to_string(),
            revision: annotation(REVISION).unwrap_or(0),
            state,
            obj,
        }
    }

    /// The template without the hash label, in [`rollout::semantic`] form, to compare
    /// with the Deployment's.
    fn template_without_hash(&self) -> Value {
        let mut t = self
            .obj
            .pointer("/spec/template")
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(labels) = t
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            labels.remove(POD_TEMPLATE_HASH);
        }
        rollout::semantic(&t)
    }

    fn desired_annotation(&self) -> Option<i32> {
        annotations(&self.obj)
            .get(DESIRED_REPLICAS)
            .and_then(|v| v.parse().ok())
    }
}

fn annotations(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn set_annotation(obj: &mut Value, key: &str, value: &str) -> bool {
    let meta = drover_store::object::meta_mut(obj);
    let map = meta.entry("annotations").or_insert_with(|| json!({}));
    if !map.is_object() {
        *map = json!({});
    }
    let map = map.as_object_mut().expect("an object");
    if map.get(key).and_then(Value::as_str) == Some(value) {
        return false;
    }
    map.insert(key.into(), json!(value));
    true
}

struct Sync<'a> {
    ctx: &'a Context,
    /// The Deployment as last read or written.
    d: Value,
    typed: Deployment,
    /// Its status as this sync will write it.
    status: DeploymentStatus,
    replicas: i32,
    strategy: Strategy,
    paused: bool,
    deadline: Option<Duration>,
    rss: Vec<Rs>,
    now: Timestamp,
}

impl<'a> Sync<'a> {
    /// Reads the Deployment; None when it cannot be acted on (an event says why).
    fn new(ctx: &'a Context, d: &Arc<Value>) -> Result<Option<Sync<'a>>, ReconcileError> {
        let kind = deployments();
        let typed: Deployment = decode(kind, d)?;
        let spec = typed.spec.clone();
        let replicas = spec.replicas.unwrap_or(1).max(0);
        let strategy = match spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) {
            Some("Recreate") => Strategy::Recreate,
            _ => {
                let ru = spec
                    .strategy
                    .as_ref()
                    .and_then(|s| s.rolling_update.clone())
                    .unwrap_or_default();
                let quarter = IntOrString::String("25%".into());
                match rollout::resolve_fenceposts(
                    ru.max_surge.as_ref().unwrap_or(&quarter),
                    ru.max_unavailable.as_ref().unwrap_or(&quarter),
                    replicas,
                ) {
                    Ok(f) => Strategy::RollingUpdate(f),
                    Err(e) => {
                        ctx.events.record(
                            kind,
                            d,
                            EventType::Warning,
                            "InvalidStrategy",
                            e.to_string(),
                        );
                        return Ok(None);
                    }
                }
            }
        };
        let deadline = spec
            .progress_deadline_seconds
            .filter(|s| *s != i32::MAX && *s >= 0)
            .map(|s| Duration::from_secs(s as u64));
        Ok(Some(Sync {
            ctx,
            d: d.as_ref().clone(),
            status: typed.status.clone().unwrap_or_default(),
            replicas,
            strategy,
            paused: spec.paused.unwrap_or(false),
            deadline,
            typed,
            rss: Vec::new(),
            now: Timestamp::now(),
        }))
    }

    fn name(&self) -> &str {
        drover_store::object::name(&self.d)
    }

    fn uid(&self) -> String {
        drover_store::object::meta_str(&self.d, "uid")
            .unwrap_or("")
            .to_string()
    }

    fn template(&self) -> Value {
        self.d
            .pointer("/spec/template")
            .cloned()
            .unwrap_or(Value::Null)
    }

    async fn run(&mut self) -> Result<Action, ReconcileError> {
        let selector = LabelSelector::from_k8s(&self.typed.spec.selector).ok();
        let Some(selector) = selector.filter(|s| !s.is_empty()) else {
            self.ctx.events.record(
                deployments(),
                &self.d,
                EventType::Warning,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            );
            return Ok(Action::await_change());
        };
        self.claim(&selector).await?;
        if drover_store::object::is_terminating(&self.d) {
            let (new, _) = self.split();
            return self.write_plain_status(new).await;
        }
        if status::paused_condition(
            &mut self.status,
            self.paused,
            self.deadline.is_some(),
            self.now,
        ) {
            self.write_deployment().await?;
        }
        if self.paused || self.is_scaling_event() {
            return self.sync_scale().await;
        }
        match self.strategy {
            Strategy::Recreate => self.recreate().await,
            Strategy::RollingUpdate(_) => self.rolling().await,
        }
    }

    /// Keeps matching controlled ReplicaSets, releases non-matching, adopts matching orphans.
    async fn claim(&mut self, selector: &LabelSelector) -> Result<(), ReconcileError> {
        let uid = self.uid();
        let ns = drover_store::object::namespace(&self.d)
            .unwrap_or("default")
            .to_string();
        let terminating = drover_store::object::is_terminating(&self.d);
        let mut adopt = Vec::new();
        let mut last = 0;
        for rs in self.ctx.cache.list(replicasets(), Some(&ns)) {
            let matches = selector.matches(&drover_store::object::labels(&rs));
            match owner::controller_uid(&rs) {
                Some(u) if u == uid => {
                    if matches {
                        self.rss.push(Rs::new(rs.as_ref().clone()));
                    } else if !terminating {
                        last =
                            last.max(set_owner_of(self.ctx, replicasets(), &rs, &uid, None).await?);
                    }
                }
                Some(_) => {}
                None if matches && !terminating && !drover_store::object::is_terminating(&rs) => {
                    adopt.push(rs)
                }
                None => {}
            }
        }
        if !adopt.is_empty() && can_adopt(self.ctx, deployments(), &self.d, &uid).await? {
            let reference = owner::controller_reference(deployments(), &self.d);
            for rs in adopt {
                let rev =
                    set_owner_of(self.ctx, replicasets(), &rs, &uid, Some(&reference)).await?;
                if rev > 0 {
                    last = last.max(rev);
                    self.rss.push(Rs::new(rs.as_ref().clone()));
                }
            }
        }
        if last > 0 {
            self.ctx
                .cache
                .wait_for_revision(replicasets(), last, CACHE_WAIT)
                .await?;
        }
        // Oldest first everywhere below.
        self.rss.sort_by(|a, b| {
            a.state
                .created
                .cmp(&b.state.created)
                .then_with(|| a.state.name.cmp(&b.state.name))
        });
        Ok(())
    }

    /// Index of the new ReplicaSet (the oldest whose template is the Deployment's) and
    /// the indices of the others.
    fn split(&self) -> (Option<usize>, Vec<usize>) {
        let template = rollout::semantic(&self.template());
        let new = self
            .rss
            .iter()
            .position(|rs| rs.template_without_hash() == template);
        let olds = (0..self.rss.len()).filter(|i| Some(*i) != new).collect();
        (new, olds)
    }

    fn is_scaling_event(&self) -> bool {
        self.rss
            .iter()
            .filter(|rs| rs.state.spec_replicas > 0)
            .any(|rs| rs.desired_annotation().is_some_and(|d| d != self.replicas))
    }

    async fn write_deployment(&mut self) -> Result<(), ReconcileError> {
        self.d["status"] =
            serde_json::to_value(&self.status).map_err(|e| ReconcileError::Other(e.to_string()))?;
        self.d = write(self.ctx, deployments(), self.d.clone()).await?;
        Ok(())
    }

    /// Finds (and brings up to date) or, with `create`, creates the new ReplicaSet.
    async fn new_replica_set(&mut self, create: bool) -> Result<Option<usize>, ReconcileError> {
        let (new, olds) = self.split();
        let max_old_revision = olds
            .iter()
            .map(|&i| self.rss[i].revision)
            .max()
            .unwrap_or(0);
        let next_revision = (max_old_revision + 1).to_string();
        let d_annotations = annotations(&self.d);
        if let Some(i) = new {
            let mut obj = self.rss[i].obj.clone();
            let mut changed = false;
            for (k, v) in &d_annotations {
                if !NOT_COPIED.contains(&k.as_str()) {
                    changed |= set_annotation(&mut obj, k, v);
                }
            }
            let current = self.rss[i].revision;
            if current < max_old_revision + 1 {
                changed |= set_annotation(&mut obj, REVISION, &next_revision);
                // It was new before (a rollback): remember the revision it had.
                if current > 0 {
                    let history = annotations(&obj)
                        .get(REVISION_HISTORY)
                        .cloned()
                        .unwrap_or_default();
                    let history = if history.is_empty() {
                        current.to_string()
                    } else {
                        format!("{history},{current}")
                    };
                    set_annotation(&mut obj, REVISION_HISTORY, &history);
                }
            }
            if changed {
                self.rss[i] = Rs::new(write(self.ctx, replicasets(), obj).await?);
            }
            let revision = self.rss[i].revision.to_string();
            let mut d_changed = set_annotation(&mut self.d, REVISION, &revision);
            if self.deadline.is_some()
                && status::get(&self.status, status::reason::PROGRESSING).is_none()
            {
                let msg = format!("Found new replica set {:?}", self.rss[i].state.name);
                status::set(
                    &mut self.status,
                    status::condition(
                        status::reason::PROGRESSING,
                        "True",
                        status::reason::FOUND_NEW_RS,
                        msg,
                        self.now,
                    ),
                );
                d_changed = true;
            }
            if d_changed {
                self.write_deployment().await?;
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        let template = self.template();
        let hash =
            rollout::template_hash(&rollout::semantic(&template), self.status.collision_count);
        let name = format!("{}-{hash}", self.name());
        let mut rs_template = template.clone();
        if !rs_template["metadata"].is_object() {
            rs_template["metadata"] = json!({});
        }
        if !rs_template["metadata"]["labels"].is_object() {
            rs_template["metadata"]["labels"] = json!({});
        }
        rs_template["metadata"]["labels"][POD_TEMPLATE_HASH] = json!(hash);
        let mut selector = self
            .d
            .pointer("/spec/selector")
            .cloned()
            .unwrap_or(json!({}));
        if !selector["matchLabels"].is_object() {
            selector["matchLabels"] = json!({});
        }
        selector["matchLabels"][POD_TEMPLATE_HASH] = json!(hash);
        let olds_refs: Vec<&RsState> = olds.iter().map(|&i| &self.rss[i].state).collect();
        let size = rollout::new_rs_replicas(
            self.strategy,
            self.replicas,
            rollout::pods_total(&olds_refs),
            0,
        );
        let mut rs_annotations: BTreeMap<String, String> = d_annotations
            .into_iter()
            .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
            .collect();
        rs_annotations.insert(REVISION.into(), next_revision.clone());
        rs_annotations.insert(DESIRED_REPLICAS.into(), self.replicas.to_string());
        rs_annotations.insert(
            MAX_REPLICAS.into(),
            (self.replicas + self.strategy.max_surge()).to_string(),
        );
        let mut rs_obj = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": drover_store::object::namespace(&self.d).unwrap_or("default"),
                "labels": rs_template["metadata"]["labels"].clone(),
                "annotations": rs_annotations,
                "ownerReferences": [owner::controller_reference(deployments(), &self.d)],
            },
            "spec": {
                "replicas": size,
                "minReadySeconds": self.d.pointer("/spec/minReadySeconds").cloned().unwrap_or(json!(0)),
                "selector": selector,
                "template": rs_template,
            },
        });
        let created = match self.ctx.store.create(replicasets(), rs_obj.take()).await {
            Ok(created) => created,
            Err(StoreError::AlreadyExists { .. }) => {
                let live = self
                    .ctx
                    .store
                    .get(
                        replicasets(),
                        drover_store::object::namespace(&self.d),
                        &name,
                    )
                    .await?;
                let existing = Rs::new(live.clone());
                if owner::is_controlled_by(&live, &self.uid())
                    && existing.template_without_hash() == rollout::semantic(&template)
                {
                    // Ours, the cache had not shown it yet.
                    self.ctx
                        .cache
                        .wait_for_revision(replicasets(), revision_of(&live), CACHE_WAIT)
                        .await?;
                    self.rss.push(existing);
                    return Ok(Some(self.rss.len() - 1));
                }
                self.status.collision_count = Some(self.status.collision_count.unwrap_or(0) + 1);
                self.write_deployment().await?;
                return Err(ReconcileError::Other(format!(
                    "replica set {name} exists with another template; collisionCount raised"
                )));
            }
            Err(e) => {
                let msg = format!("Failed to create new replica set {name:?}: {e}");
                self.ctx.events.record(
                    deployments(),
                    &self.d,
                    EventType::Warning,
                    "ReplicaSetCreateError",
                    msg.clone(),
                );
                if self.deadline.is_some() {
                    status::set(
                        &mut self.status,
                        status::condition(
                            status::reason::PROGRESSING,
                            "False",
                            "ReplicaSetCreateError",
                            msg,
                            self.now,
                        ),
                    );
                    self.write_deployment().await?;
                }
                return Err(e.into());
            }
        };
        self.ctx
            .cache
            .wait_for_revision(replicasets(), revision_of(&created), CACHE_WAIT)
            .await?;
        if size > 0 {
            self.ctx.events.record(
                deployments(),
                &self.d,
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} to {size} from 0"),
            );
        }
        set_annotation(&mut self.d, REVISION, &next_revision);
        if self.deadline.is_some() {
            let msg = format!("Created new replica set {name:?}");
            status::set(
                &mut self.status,
                status::condition(
                    status::reason::PROGRESSING,
                    "True",
                    status::reason::NEW_RS_CREATED,
                    msg,
                    self.now,
                ),
            );
        }
        self.write_deployment().await?;
        self.rss.push(Rs::new(created));
        Ok(Some(self.rss.len() - 1))
    }

    /// Sets ReplicaSet `i` to `size` replicas (and its replica annotations); whether the
    /// size changed.
    async fn scale(&mut self, i: usize, size: i32) -> Result<bool, ReconcileError> {
        let size = size.max(0);
        let old = self.rss[i].state.spec_replicas;
        let mut obj = self.rss[i].obj.clone();
        let mut changed = old != size;
        obj["spec"]["replicas"] = json!(size);
        changed |= set_annotation(&mut obj, DESIRED_REPLICAS, &self.replicas.to_string());
        changed |= set_annotation(
            &mut obj,
            MAX_REPLICAS,
            &(self.replicas + self.strategy.max_surge()).to_string(),
        );
        if !changed {
            return Ok(false);
        }
        self.rss[i] = Rs::new(write(self.ctx, replicasets(), obj).await?);
        if old != size {
            let op = if size > old { "up" } else { "down" };
            self.ctx.events.record(
                deployments(),
                &self.d,
                EventType::Normal,
                "ScalingReplicaSet",
                format!(
                    "Scaled {op} replica set {} to {size} from {old}",
                    self.rss[i].state.name
                ),
            );
        }
        Ok(old != size)
    }

    /// Scaling (and a paused Deployment): resize without rolling (Kubernetes' `sync`).
    async fn sync_scale(&mut self) -> Result<Action, ReconcileError> {
        let new = self.new_replica_set(false).await?;
        let (_, olds) = self.split();
        let new_state = new.map(|i| self.rss[i].state.clone());
        let old_states: Vec<RsState> = olds.iter().map(|&i| self.rss[i].state.clone()).collect();
        let old_refs: Vec<&RsState> = old_states.iter().collect();
        if let Some(target) = rollout::active_or_latest(new_state.as_ref(), &old_refs) {
            let i = self.index_of(&target.name);
            // Also when only its replica annotations are behind, or every sync would
            // look like a scaling event.
            self.scale(i, self.replicas).await?;
        } else if new.is_some_and(|i| self.is_saturated(i)) {
            for &i in &olds {
                if self.rss[i].state.spec_replicas > 0 {
                    self.scale(i, 0).await?;
                }
            }
        } else if matches!(self.strategy, Strategy::RollingUpdate(_)) {
            let active: Vec<RsState> = self
                .rss
                .iter()
                .filter(|r| r.state.spec_replicas > 0)
                .map(|r| r.state.clone())
                .collect();
            let refs: Vec<&RsState> = active.iter().collect();
            let sizes = rollout::proportional_sizes(
                self.replicas,
                self.strategy.max_surge(),
                self.status.replicas.unwrap_or(0),
                &refs,
            );
            for (name, size) in sizes {
                let i = self.index_of(&name);
                self.scale(i, size).await?;
            }
        }
        if self.paused {
            self.cleanup().await?;
        }
        self.write_plain_status(new).await
    }

    fn index_of(&self, name: &str) -> usize {
        self.rss
            .iter()
            .position(|r| r.state.name == name)
            .expect("a listed replica set")
    }

    fn is_saturated(&self, i: usize) -> bool {
        let rs = &self.rss[i];
        rs.state.spec_replicas == self.replicas
            && rs.desired_annotation() == Some(self.replicas)
            && rs.state.available == self.replicas
    }

    async fn rolling(&mut self) -> Result<Action, ReconcileError> {
        let Some(new) = self.new_replica_set(true).await? else {
            return Ok(Action::await_change());
        };
        let (_, olds) = self.split();
        // Scale the new ReplicaSet up (or down to the desired count).
        let new_state = self.rss[new].state.clone();
        let target = if new_state.spec_replicas > self.replicas {
            self.replicas
        } else {
            let all: Vec<&RsState> = self.rss.iter().map(|r| &r.state).collect();
            rollout::new_rs_replicas(
                self.strategy,
                self.replicas,
                rollout::pods_total(&all),
                new_state.spec_replicas,
            )
        };
        if target != new_state.spec_replicas && self.scale(new, target).await? {
            return self.write_rollout_status(Some(new)).await;
        }
        // Then the old ones down.
        let new_state = self.rss[new].state.clone();
        let old_states: Vec<RsState> = olds.iter().map(|&i| self.rss[i].state.clone()).collect();
        let old_refs: Vec<&RsState> = old_states.iter().collect();
        let sizes = rollout::old_rs_replicas(
            self.replicas,
            self.strategy.max_unavailable(self.replicas),
            Some(&new_state),
            &old_refs,
        );
        let mut scaled_down = false;
        for (&i, size) in olds.iter().zip(sizes) {
            if size != self.rss[i].state.spec_replicas {
                scaled_down |= self.scale(i, size).await?;
            }
        }
        if scaled_down {
            return self.write_rollout_status(Some(new)).await;
        }
        if self.complete(Some(new)) {
            self.cleanup().await?;
        }
        self.write_rollout_status(Some(new)).await
    }

    async fn recreate(&mut self) -> Result<Action, ReconcileError> {
        let new = self.new_replica_set(false).await?;
        let (_, olds) = self.split();
        let mut scaled_down = false;
        for &i in &olds {
            if self.rss[i].state.spec_replicas > 0 {
                scaled_down |= self.scale(i, 0).await?;
            }
        }
        if scaled_down || self.old_pods_running(&olds) {
            return self.write_rollout_status(new).await;
        }
        let new = match new {
            Some(i) => i,
            None => match self.new_replica_set(true).await? {
                Some(i) => i,
                None => return Ok(Action::await_change()),
            },
        };
        if self.rss[new].state.spec_replicas != self.replicas {
            self.scale(new, self.replicas).await?;
        }
        if self.complete(Some(new)) {
            self.cleanup().await?;
        }
        self.write_rollout_status(Some(new)).await
    }

    /// Whether any pod of an old ReplicaSet still runs or waits to (Recreate starts new
    /// pods only after every old one is gone).
    fn old_pods_running(&self, olds: &[usize]) -> bool {
        olds.iter().any(|&i| {
            self.rss[i].state.replicas > 0
                || self
                    .ctx
                    .cache
                    .owned_by(pods_kind(), &self.rss[i].uid)
                    .iter()
                    .any(|p| !matches!(replicaset::pods::phase(p), "Succeeded" | "Failed"))
        })
    }

    fn counts(&self, new: Option<usize>) -> rollout::Counts {
        let all: Vec<&RsState> = self.rss.iter().map(|r| &r.state).collect();
        rollout::counts(new.map(|i| &self.rss[i].state), &all)
    }

    fn complete(&self, new: Option<usize>) -> bool {
        rollout::complete(self.replicas, &self.counts(new), true)
    }

    /// Deletes the oldest ReplicaSets without pods beyond `revisionHistoryLimit`.
    async fn cleanup(&mut self) -> Result<(), ReconcileError> {
        let Some(limit) = self.typed.spec.revision_history_limit else {
            return Ok(());
        };
        let (_, olds) = self.split();
        let mut alive: Vec<&Rs> = olds
            .iter()
            .map(|&i| &self.rss[i])
            .filter(|r| !drover_store::object::is_terminating(&r.obj))
            .collect();
        let excess = alive.len() as i64 - i64::from(limit.max(0));
        if excess <= 0 {
            return Ok(());
        }
        alive.sort_by_key(|r| (r.revision, r.state.created.clone()));
        let mut deleted = Vec::new();
        for rs in alive.into_iter().take(excess as usize) {
            let observed = rs
                .obj
                .pointer("/status/observedGeneration")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let generation = rs
                .obj
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if rs.state.replicas != 0 || rs.state.spec_replicas != 0 || generation > observed {
                continue;
            }
            let opts = DeleteOptions {
                uid: Some(rs.uid.clone()),
                ..Default::default()
            };
            match self
                .ctx
                .store
                .delete(
                    replicasets(),
                    drover_store::object::namespace(&rs.obj),
                    &rs.state.name,
                    &opts,
                )
                .await
            {
                Ok(_) | Err(StoreError::NotFound { .. }) => deleted.push(rs.state.name.clone()),
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for name in deleted {
            let key = ObjectKey {
                namespace: drover_store::object::namespace(&self.d).map(str::to_string),
                name: name.clone(),
            };
            self.ctx
                .cache
                .wait_absent(replicasets(), &key, CACHE_WAIT)
                .await?;
            self.rss.retain(|r| r.state.name != name);
        }
        Ok(())
    }

    fn generation(&self) -> Option<i64> {
        self.d
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
    }

    /// Writes the counts and Available only (scaling, paused, deleting).
    async fn write_plain_status(&mut self, new: Option<usize>) -> Result<Action, ReconcileError> {
        let max_unavailable = self.strategy.max_unavailable(self.replicas);
        let next = status::calculate(
            &self.status,
            self.generation(),
            self.replicas,
            max_unavailable,
            &self.counts(new),
            self.now,
        );
        self.store_status(next).await?;
        Ok(Action::await_change())
    }

    /// Writes the status with the Progressing and ReplicaFailure conditions; requeues for
    /// the progress deadline.
    async fn write_rollout_status(&mut self, new: Option<usize>) -> Result<Action, ReconcileError> {
        let max_unavailable = self.strategy.max_unavailable(self.replicas);
        let calculated = status::calculate(
            &self.status,
            self.generation(),
            self.replicas,
            max_unavailable,
            &self.counts(new),
            self.now,
        );
        let failure = new
            .into_iter()
            .chain(0..self.rss.len())
            .find_map(|i| {
                self.rss[i]
                    .obj
                    .pointer("/status/conditions")?
                    .as_array()?
                    .iter()
                    .find(|c| {
                        c.get("type").and_then(Value::as_str) == Some(replicaset::REPLICA_FAILURE)
                            && c.get("status").and_then(Value::as_str) == Some("True")
                    })
                    .cloned()
            })
            .map(|c| {
                let s = |f: &str| c.get(f).and_then(Value::as_str).unwrap_or("").to_string();
                (s("reason"), s("message"))
            });
        let name = self.name().to_string();
        let new_name = new.map(|i| self.rss[i].state.name.clone());
        let old = self.status.clone();
        let (next, requeue) = status::rollout_status(status::RolloutInput {
            old: &old,
            calculated,
            replicas: self.replicas,
            generation_observed: true,
            deadline: self.deadline,
            new_rs: new_name.as_deref(),
            name: &name,
            rs_failure: failure,
            now: self.now,
        });
        self.store_status(next).await?;
        Ok(requeue.map_or(Action::await_change(), Action::requeue))
    }

    async fn store_status(&mut self, next: DeploymentStatus) -> Result<(), ReconcileError> {
        let stored: DeploymentStatus = self.typed_status_of_d();
        self.status = next;
        if stored != self.status {
            self.write_deployment().await?;
        }
        Ok(())
    }

    fn typed_status_of_d(&self) -> DeploymentStatus {
        self.d
            .get("status")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .unwrap_or_default()
    }
}
