//! Admission as the API serves it: creates and updates pass `drover_admission` (the
//! `Priority`, `LimitRanger` and `ResourceQuota` plugins, shared with the controllers,
//! whose creates pass the same admission), whose refusals become `Status` responses here;
//! and the `pods/eviction` subresource that honours PodDisruptionBudgets.
//!
//! The eviction decision is a pure function ([`eviction`]); this module reads what it
//! needs from the store and carries it out with a CAS on the budget.

pub mod eviction;

use std::collections::HashMap;

use actix_web::HttpResponse;
use bus_schema::{KindInfo, kinds};
use drover_admission::AdmissionError;
use drover_store::{DeleteOptions, ListOptions, Store, StoreError};
use serde_json::{Value, json};

use crate::status::ApiError;

/// Compare-and-swap rounds for one budget decrement.
const CAS_ATTEMPTS: usize = 16;

fn kind_of(group: &str, name: &str) -> &'static KindInfo {
    kinds::by_group_kind(group, name).expect("admission kinds are in KINDS")
}

/// 403 Forbidden as admission plugins word it: `pods "x" is forbidden: <why>`.
pub fn forbidden(kind: &KindInfo, name: &str, why: &str) -> ApiError {
    from_admission(drover_admission::forbidden(kind, name, why))
}

/// The `Status` of an admission error.
pub fn from_admission(err: AdmissionError) -> ApiError {
    match err {
        AdmissionError::Refused(r) => ApiError {
            code: r.code,
            reason: r.reason,
            message: r.message,
            details: r.details,
        },
        AdmissionError::Store { kind, name, source } => ApiError::from_store(kind, &name, source),
    }
}

async fn list(
    store: &Store,
    kind: &'static KindInfo,
    namespace: Option<&str>,
) -> Result<Vec<Value>, ApiError> {
    store
        .list(kind, namespace, &ListOptions::default())
        .await
        .map(|l| l.items)
        .map_err(|e| ApiError::from_store(kind, "", e))
}

/// Admits a create of `obj` ([`drover_admission::admit_create`]): defaulting,
/// validation (a 422 comes before any 403), priority, LimitRange, quota charge (only a
/// check on a dry run). `obj` is changed in place.
pub async fn admit_create(
    store: &Store,
    kind: &'static KindInfo,
    obj: &mut Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    drover_admission::admit_create(store, kind, obj, dry_run)
        .await
        .map_err(from_admission)
}

/// Admits an update of `current` to `obj` (not status writes;
/// [`drover_admission::admit_update`]).
pub async fn admit_update(
    store: &Store,
    kind: &'static KindInfo,
    current: &Value,
    obj: &mut Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    drover_admission::admit_update(store, kind, current, obj, dry_run)
        .await
        .map_err(from_admission)
}

pub use drover_admission::allocator::DEFAULT_SERVICE_CIDR;

/// Sets the CIDR Services' cluster IPs come from in this process (`drover up
/// --service-cluster-ip-range`); node ports stay 30000-32767, the range validation knows.
pub fn configure_service_cidr(cidr: &str) -> Result<(), drover_admission::allocator::RangeError> {
    let mut ranges = drover_admission::services::ranges();
    ranges.cluster_ips = drover_admission::allocator::Range::service_cidr(cidr)?;
    drover_admission::services::configure(ranges);
    Ok(())
}

/// Gives back the cluster IP and node ports a Service held in `dropped` and no longer
/// holds in `kept` (`Value::Null` after a delete): after an update or delete is written,
/// and for what a create or update that failed to be written had claimed. A failure
/// here does not fail the request (the write it follows stands); the value stays taken
/// until a request names it (see `drover_admission::services`).
pub async fn release_services(
    store: &Store,
    kind: &'static KindInfo,
    kept: &Value,
    dropped: &Value,
) {
    if !kind.group.is_empty() || kind.kind != "Service" {
        return;
    }
    if let Err(e) = drover_admission::services::release(store, kept, dropped).await {
        tracing::warn!(message = "service allocation not released", error = %e);
    }
}

/// POST `pods/{name}/eviction`: deletes the pod if its PodDisruptionBudget allows,
/// charging the budget first (CAS on its status); 429 when it does not.
pub async fn evict(
    store: &Store,
    namespace: &str,
    pod_name: &str,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let pods = kind_of("", "Pod");
    let eviction: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?
    };
    if !eviction.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    if let Some(k) = eviction.get("kind").and_then(Value::as_str)
        && k != "Eviction"
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind (Eviction)"
        )));
    }
    match drover_store::object::meta_str(&eviction, "name") {
        Some(n) if !n.is_empty() && n != pod_name => {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Eviction object",
            ));
        }
        _ => {}
    }
    let options = eviction
        .get("deleteOptions")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let dry_run = match q.get("dryRun").map(String::as_str) {
        Some("All") => true,
        None | Some("") => options
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All")),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported dryRun value {other:?}: supported values are \"All\""
            )));
        }
    };
    let pdb_kind = kind_of("policy", "PodDisruptionBudget");
    let mut pod = None;
    for attempt in 0..=CAS_ATTEMPTS {
        if attempt == CAS_ATTEMPTS {
            return Err(ApiError {
                code: 409,
                reason: "Conflict",
                message: "the disruption budget keeps changing; retry the eviction".into(),
                details: None,
            });
        }
        let current = store
            .get(pods, Some(namespace), pod_name)
            .await
            .map_err(|e| ApiError::from_store(pods, pod_name, e))?;
        let pdbs = list(store, pdb_kind, Some(namespace)).await?;
        let now = drover_store::object::now_rfc3339();
        let now = now.as_str().unwrap_or_default();
        match eviction::decide(&current, &pdbs, now) {
            eviction::Decision::Delete => {
                pod = Some(current);
                break;
            }
            eviction::Decision::Refuse(e) if e.code == 403 => {
                return Err(forbidden(pdb_kind, "", &e.message));
            }
            eviction::Decision::Refuse(e) => return Err(e),
            eviction::Decision::Charge { pdb, status } => {
                if dry_run {
                    pod = Some(current);
                    break;
                }
                let Some(mut obj) = pdbs
                    .into_iter()
                    .find(|p| drover_store::object::name(p) == pdb)
                else {
                    continue;
                };
                obj["status"] = status;
                match store.update(pdb_kind, obj).await {
                    Ok(_) => {
                        pod = Some(current);
                        break;
                    }
                    Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => continue,
                    Err(e) => return Err(ApiError::from_store(pdb_kind, &pdb, e)),
                }
            }
        }
    }
    let pod = pod.unwrap_or(Value::Null);
    let delete = DeleteOptions {
        uid: options
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: options
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        grace_period_seconds: options
            .get("gracePeriodSeconds")
            .and_then(Value::as_i64)
            .or_else(|| drover_store::object::default_grace(&pod)),
        add_finalizers: Vec::new(),
    };
    if !dry_run {
        match store.delete(pods, Some(namespace), pod_name, &delete).await {
            Ok(_) => {}
            Err(e) => return Err(ApiError::from_store(pods, pod_name, e)),
        }
    }
    Ok(HttpResponse::Created().json(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}
