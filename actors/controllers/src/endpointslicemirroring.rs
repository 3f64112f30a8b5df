//! The EndpointSlice mirroring controller (Kubernetes' `endpointslicemirroring`): a
//! Service without a selector whose user writes a v1 Endpoints object by hand gets
//! discovery.k8s.io/v1 EndpointSlices mirrored from it (managed by
//! `endpointslicemirroring-controller.k8s.io`), so everything that reads slices (DNS,
//! the service proxy) sees those endpoints too. The slices follow the Endpoints through
//! updates and go when it goes, when the Service goes, or when the Service gains a
//! selector (its slices then come from the EndpointSlice controller).
//!
//! Decisions are in [`core`]; this module reads the shared cache (keyed by Endpoints),
//! writes only the slices that changed, and waits for the cache to show its writes.

pub mod core;

use serde_json::Value;
use tokio::task::JoinHandle;

use crate::endpointslice::{CACHE_WAIT, endpoint_slices, endpoints, services};
use crate::runtime::{
    Action, Cache, CacheEvent, Context, EventType, ObjectKey, ReconcileError, Reconciler, Watch,
};

/// Concurrent reconciles (Kubernetes' `--mirroring-concurrent-service-endpoint-syncs`).
pub const WORKERS: usize = 5;

/// Kinds the controller needs in the shared cache.
pub fn kinds() -> Vec<&'static bus_schema::KindInfo> {
    vec![endpoints(), services(), endpoint_slices()]
}

/// Starts the controller on `ctx` (events from `endpointslice-mirroring-controller`).
pub fn start(ctx: &Context) -> Vec<JoinHandle<()>> {
    vec![crate::runtime::run(
        MirroringController,
        ctx.for_component("endpointslice-mirroring-controller"),
        WORKERS,
    )]
}

/// The reconciler (keyed by Endpoints, which shares its name with its Service).
pub struct MirroringController;

/// A Service change reconciles the Endpoints of the same name.
fn service_to_endpoints(_: &Cache, event: &CacheEvent) -> Vec<ObjectKey> {
    event
        .latest()
        .map(|s| ObjectKey::of(s))
        .into_iter()
        .collect()
}

/// A mirrored slice reconciles the Endpoints it was mirrored from (before and after a
/// change, in case its labels moved).
fn slice_to_endpoints(_: &Cache, event: &CacheEvent) -> Vec<ObjectKey> {
    let mut keys: Vec<ObjectKey> = [event.old.as_deref(), event.new.as_deref()]
        .into_iter()
        .flatten()
        .filter(|s| {
            s.pointer("/metadata/labels/endpointslice.kubernetes.io~1managed-by")
                .and_then(Value::as_str)
                == Some(core::MANAGED_BY)
        })
        .filter_map(|s| {
            let name = s
                .pointer("/metadata/labels/kubernetes.io~1service-name")
                .and_then(Value::as_str)?;
            Some(crate::runtime::controller::same_namespace_key(s, name))
        })
        .collect();
    keys.dedup();
    keys
}

impl Reconciler for MirroringController {
    fn name(&self) -> &'static str {
        "endpointslicemirroring"
    }

    fn kind(&self) -> &'static bus_schema::KindInfo {
        endpoints()
    }

    fn watches(&self) -> Vec<Watch> {
        vec![
            Watch::mapped(services(), service_to_endpoints),
            Watch::mapped(endpoint_slices(), slice_to_endpoints),
        ]
    }

    async fn reconcile(&self, key: &ObjectKey, ctx: &Context) -> Result<Action, ReconcileError> {
        let eps = ctx.cache.get(endpoints(), key);
        let service = ctx.cache.get(services(), key);
        let existing = ctx.cache.list(endpoint_slices(), key.namespace.as_deref());
        let existing: Vec<&Value> = existing
            .iter()
            .map(|s| s.as_ref())
            .filter(|s| core::is_mirrored_slice(s, &key.name))
            .collect();
        let mirror = match &eps {
            Some(eps) if core::should_mirror(Some(eps), service.as_deref()) => {
                core::plan(eps, &existing)
            }
            // Not (or no longer) mirrored: whatever was mirrored goes.
            _ => core::Mirror {
                plan: crate::endpointslice::core::SlicePlan {
                    delete: existing
                        .iter()
                        .map(|s| {
                            let meta = |f| drover_store::object::meta_str(s, f).unwrap_or("");
                            (meta("name").to_string(), meta("uid").to_string())
                        })
                        .collect(),
                    ..Default::default()
                },
                ..Default::default()
            },
        };
        if let Some(eps) = &eps {
            if mirror.invalid_addresses > 0 {
                ctx.events.record(
                    endpoints(),
                    eps,
                    EventType::Warning,
                    "InvalidIPAddress",
                    format!(
                        "Skipped {} invalid IP addresses when mirroring to EndpointSlices",
                        mirror.invalid_addresses
                    ),
                );
            }
            if mirror.skipped_addresses > 0 {
                ctx.events.record(
                    endpoints(),
                    eps,
                    EventType::Warning,
                    "TooManyAddressesToMirror",
                    format!(
                        "A max of {} addresses can be mirrored to EndpointSlices per Endpoints subset. {} addresses were skipped",
                        core::MAX_ENDPOINTS_PER_SUBSET,
                        mirror.skipped_addresses
                    ),
                );
            }
        }
        if mirror.plan.is_empty() {
            return Ok(Action::await_change());
        }
        let written = crate::endpointslice::write_slices(ctx, key, mirror.plan).await?;
        if written > 0 {
            ctx.cache
                .wait_for_revision(endpoint_slices(), written, CACHE_WAIT)
                .await?;
        }
        Ok(Action::await_change())
    }
}
