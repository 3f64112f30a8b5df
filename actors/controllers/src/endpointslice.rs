//! The EndpointSlice and Endpoints controllers (one reconciler, as both follow the same
//! Services and pods): for every Service with a selector, the pods it selects become
//! discovery.k8s.io/v1 EndpointSlices (at most 100 endpoints each, grouped by port set,
//! owned by the Service, labelled `kubernetes.io/service-name` and managed by
//! `endpointslice-controller.k8s.io`) and the legacy v1 Endpoints object of the same
//! name, as Kubernetes' `pkg/controller/endpointslice` and `pkg/controller/endpoint` do.
//! Services without a selector (and ExternalName ones) are left alone: their Endpoints
//! and slices are the user's.
//!
//! Every decision is in [`core`] (I/O-free); this module reads the shared cache, writes
//! only the slices that changed (compare-and-swap on resourceVersion, uid precondition
//! on delete) and waits for the cache to show its writes before the next reconcile.

pub mod core;

use std::collections::BTreeMap;
use std::time::Duration;

use bus_schema::KindInfo;
use drover_store::{DeleteOptions, StoreError};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::runtime::kinds::{nodes, pods};
use crate::runtime::{
    Action, Cache, CacheEvent, Context, EventType, ObjectKey, ReconcileError, Reconciler, Watch,
    revision_of,
};

/// How long a reconcile waits for the cache to show its own writes.
pub const CACHE_WAIT: Duration = Duration::from_secs(10);
/// Concurrent reconciles of Services (Kubernetes' `--concurrent-service-endpoint-syncs`).
pub const WORKERS: usize = 5;
/// The Node label that gives an endpoint its zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

fn served(group: &str, plural: &str) -> &'static KindInfo {
    bus_schema::kinds::by_group_resource(group, plural)
        .unwrap_or_else(|| panic!("{plural}.{group} is a served kind"))
}

/// core/v1 Service.
pub fn services() -> &'static KindInfo {
    served("", "services")
}
/// core/v1 Endpoints.
pub fn endpoints() -> &'static KindInfo {
    served("", "endpoints")
}
/// discovery.k8s.io/v1 EndpointSlice.
pub fn endpoint_slices() -> &'static KindInfo {
    served("discovery.k8s.io", "endpointslices")
}

/// Kinds the controller needs in the shared cache.
pub fn kinds() -> Vec<&'static KindInfo> {
    vec![services(), pods(), nodes(), endpoint_slices(), endpoints()]
}

/// Starts the controller on `ctx` (events from `endpointslice-controller`).
pub fn start(ctx: &Context) -> Vec<JoinHandle<()>> {
    vec![crate::runtime::run(
        EndpointSliceController,
        ctx.for_component("endpointslice-controller"),
        WORKERS,
    )]
}

/// The reconciler (keyed by Service).
pub struct EndpointSliceController;

/// The Services in a pod's namespace whose selector matches the pod before or after
/// the change.
fn pod_to_services(cache: &Cache, event: &CacheEvent) -> Vec<ObjectKey> {
    let Some(ns) = event
        .latest()
        .and_then(|p| drover_store::object::namespace(p))
    else {
        return Vec::new();
    };
    let mut keys: Vec<ObjectKey> = cache
        .list(services(), Some(ns))
        .iter()
        .filter(|s| {
            core::managed_selector(s).is_some_and(|sel| {
                [event.old.as_deref(), event.new.as_deref()]
                    .into_iter()
                    .flatten()
                    .any(|p| core::selects(&sel, p))
            })
        })
        .map(|s| ObjectKey::of(s))
        .collect();
    keys.sort();
    keys
}

fn zone_of(node: Option<&Value>) -> Option<&str> {
    node?.pointer("/metadata/labels")?.get(ZONE_LABEL)?.as_str()
}

/// A Node whose zone changed reconciles every Service (rare: zones are set at
/// registration).
fn node_to_services(cache: &Cache, event: &CacheEvent) -> Vec<ObjectKey> {
    if zone_of(event.old.as_deref()) == zone_of(event.new.as_deref()) {
        return Vec::new();
    }
    cache
        .list(services(), None)
        .iter()
        .map(|s| ObjectKey::of(s))
        .collect()
}

/// An Endpoints object belongs to the Service of the same name, when there is one: an
/// Endpoints written before its (selectorless) Service must not look like the leftover of
/// a deleted Service.
fn endpoints_to_service(cache: &Cache, event: &CacheEvent) -> Vec<ObjectKey> {
    event
        .latest()
        .map(|e| ObjectKey::of(e))
        .filter(|key| cache.get(services(), key).is_some())
        .into_iter()
        .collect()
}

impl Reconciler for EndpointSliceController {
    fn name(&self) -> &'static str {
        "endpointslice"
    }

    fn kind(&self) -> &'static KindInfo {
        services()
    }

    fn watches(&self) -> Vec<Watch> {
        vec![
            Watch::mapped(pods(), pod_to_services),
            Watch::mapped(nodes(), node_to_services),
            Watch::owned(endpoint_slices(), services()),
            Watch::mapped(endpoints(), endpoints_to_service),
        ]
    }

    async fn reconcile(&self, key: &ObjectKey, ctx: &Context) -> Result<Action, ReconcileError> {
        let Some(service) = ctx.cache.get(services(), key) else {
            // The Service is gone: its Endpoints go too (its slices follow their
            // ownerReference through the garbage collector).
            if let Some(current) = ctx.cache.get(endpoints(), key) {
                delete(ctx, endpoints(), &current).await?;
            }
            return Ok(Action::await_change());
        };
        if core::managed_selector(&service).is_none()
            || drover_store::object::is_terminating(&service)
        {
            return Ok(Action::await_change());
        }
        let ns = key.namespace.as_deref();
        let pods = ctx.cache.list(pods(), ns);
        let pods: Vec<&Value> = pods.iter().map(|p| p.as_ref()).collect();
        let zones: BTreeMap<String, String> = ctx
            .cache
            .list(nodes(), None)
            .iter()
            .filter_map(|n| {
                Some((
                    drover_store::object::name(n).to_string(),
                    zone_of(Some(n))?.to_string(),
                ))
            })
            .collect();
        let existing = ctx.cache.list(endpoint_slices(), ns);
        let existing: Vec<&Value> = existing
            .iter()
            .map(|s| s.as_ref())
            .filter(|s| core::is_managed_slice(s, &key.name))
            .collect();

        if let Some(plan) = core::plan_slices(&service, &pods, &zones, &existing) {
            let written = write_slices(ctx, key, plan).await.inspect_err(|e| {
                warn_on(ctx, &service, e, "FailedToUpdateEndpointSlices", || {
                    format!("Error updating Endpoint Slices for Service {key}: {e}")
                })
            })?;
            if written > 0 {
                ctx.cache
                    .wait_for_revision(endpoint_slices(), written, CACHE_WAIT)
                    .await?;
            }
        }
        if let Some(desired) = core::desired_endpoints(&service, &pods) {
            let current = ctx.cache.get(endpoints(), key);
            if let Some(next) = core::endpoints_update(&desired, current.as_deref()) {
                let stored = match current {
                    Some(_) => ctx.store.update(endpoints(), next).await,
                    None => ctx.store.create(endpoints(), next).await,
                }
                .map_err(ReconcileError::from)
                .inspect_err(|e| {
                    warn_on(ctx, &service, e, "FailedToUpdateEndpoint", || {
                        format!("Failed to update endpoint {key}: {e}")
                    })
                })?;
                ctx.cache
                    .wait_for_revision(endpoints(), revision_of(&stored), CACHE_WAIT)
                    .await?;
            }
        }
        Ok(Action::await_change())
    }
}

/// Carries a slice plan out (deletes first, so a reused name cannot collide); returns
/// the highest revision written (0 when only deletes or nothing).
pub(crate) async fn write_slices(
    ctx: &Context,
    key: &ObjectKey,
    plan: core::SlicePlan,
) -> Result<u64, ReconcileError> {
    let ns = key.namespace.as_deref();
    for (name, uid) in &plan.delete {
        let opts = DeleteOptions {
            uid: Some(uid.clone()),
            ..Default::default()
        };
        match ctx.store.delete(endpoint_slices(), ns, name, &opts).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(StoreError::Conflict { reason, .. }) if reason.contains("uid") => {}
            Err(e) => return Err(e.into()),
        }
        let slice_key = ObjectKey {
            namespace: key.namespace.clone(),
            name: name.clone(),
        };
        ctx.cache
            .wait_absent(endpoint_slices(), &slice_key, CACHE_WAIT)
            .await?;
    }
    let mut last = 0;
    for slice in plan.update {
        let stored = ctx.store.update(endpoint_slices(), slice).await?;
        last = last.max(revision_of(&stored));
    }
    for slice in plan.create {
        let stored = ctx.store.create(endpoint_slices(), slice).await?;
        last = last.max(revision_of(&stored));
    }
    Ok(last)
}

/// A Warning event on the Service for a failed write; a conflict or a lagging cache (a
/// stale read, retried shortly with the newer state) is routine and not reported.
fn warn_on(
    ctx: &Context,
    service: &Value,
    error: &ReconcileError,
    reason: &str,
    message: impl FnOnce() -> String,
) {
    let routine = matches!(
        error,
        ReconcileError::Store(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. })
            | ReconcileError::CacheLag { .. }
    );
    if !routine {
        ctx.events
            .record(services(), service, EventType::Warning, reason, message());
    }
}

/// Deletes `obj` if it is still the object with its uid.
async fn delete(ctx: &Context, kind: &'static KindInfo, obj: &Value) -> Result<(), ReconcileError> {
    let opts = DeleteOptions {
        uid: drover_store::object::meta_str(obj, "uid").map(str::to_string),
        ..Default::default()
    };
    let key = ObjectKey::of(obj);
    match ctx
        .store
        .delete(kind, key.namespace.as_deref(), &key.name, &opts)
        .await
    {
        Ok(_) | Err(StoreError::NotFound { .. }) => {}
        Err(StoreError::Conflict { reason, .. }) if reason.contains("uid") => {}
        Err(e) => return Err(e.into()),
    }
    ctx.cache.wait_absent(kind, &key, CACHE_WAIT).await
}
