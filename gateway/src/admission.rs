//! Admission: what the API server decides about an object after defaulting and
//! validation and before it is written (Kubernetes' admission plugins `Priority`,
//! `LimitRanger` and `ResourceQuota`), and the `pods/eviction` subresource that honours
//! PodDisruptionBudgets.
//!
//! The decisions are pure functions ([`priority`], [`limit_range`], [`eviction`] and
//! `bus_schema::quota`); this module reads what they need from the store and carries
//! them out. Quota is charged by a compare-and-swap of the quota's `status.used` before
//! the object is written, so concurrent creates serialise on the quota as they do in
//! Kubernetes; a create that fails after its charge leaves the quota high until the
//! quota controller recomputes it from the objects that exist.
//!
//! Reads are live store reads (the objects admission needs are few per namespace).
//! Objects that controllers write straight to the store are not admitted here.

pub mod eviction;
pub mod limit_range;
pub mod priority;

use std::collections::HashMap;

use actix_web::HttpResponse;
use bus_schema::quota::{self, ResourceList};
use bus_schema::{KindInfo, kinds};
use drover_store::{DeleteOptions, ListOptions, Store, StoreError};
use serde_json::{Value, json};

use crate::status::ApiError;

/// Compare-and-swap rounds for one quota charge or one budget decrement.
const CAS_ATTEMPTS: usize = 16;

fn kind_of(group: &str, name: &str) -> &'static KindInfo {
    kinds::by_group_kind(group, name).expect("admission kinds are in KINDS")
}

fn is(kind: &KindInfo, group: &str, name: &str) -> bool {
    kind.group == group && kind.kind == name
}

/// 403 Forbidden as admission plugins word it: `pods "x" is forbidden: <why>`.
pub fn forbidden(kind: &KindInfo, name: &str, why: &str) -> ApiError {
    ApiError {
        code: 403,
        reason: "Forbidden",
        message: format!("{} {name:?} is forbidden: {why}", kind.group_resource()),
        details: Some(json!({"name": name, "group": kind.group, "kind": kind.plural})),
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

/// Admits a create of `obj`: defaults and validates it (a 422 comes before any 403),
/// resolves pod priority, applies LimitRange defaults and limits, and charges quotas
/// (only checks them on a dry run). `obj` is changed in place.
pub async fn admit_create(
    store: &Store,
    kind: &'static KindInfo,
    obj: &mut Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    bus_schema::defaults::apply(kind, obj);
    let name = drover_store::object::name(obj).to_string();
    if let Err(errors) = bus_schema::validation::validate_object(kind, obj) {
        let err = StoreError::Invalid {
            kind: kind.group_resource(),
            name: name.clone(),
            errors,
        };
        return Err(ApiError::from_store(kind, &name, err));
    }
    let namespace = drover_store::object::namespace(obj).map(str::to_string);
    if is(kind, "scheduling.k8s.io", "PriorityClass") {
        let existing = list(store, kind, None).await?;
        priority::check_class(obj, &existing).map_err(|why| forbidden(kind, &name, &why))?;
    }
    let Some(ns) = namespace.filter(|_| kind.namespaced) else {
        return Ok(());
    };
    if is(kind, "", "Pod") {
        let classes = list(store, kind_priority_class(), None).await?;
        let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
        let resolved =
            priority::resolve(&spec, &classes).map_err(|why| forbidden(kind, &name, &why))?;
        if let Some(spec) = obj.get_mut("spec") {
            priority::apply(spec, &resolved);
        }
        let ranges = list(store, kind_of("", "LimitRange"), Some(&ns)).await?;
        if limit_range::default_pod(obj, &ranges) {
            // The QoS class follows the resources LimitRange filled in, as it does in
            // Kubernetes (computed after admission there).
            let qos = obj.get("spec").map(bus_schema::defaults::qos_class);
            if let (Some(q), Some(status)) = (qos, obj.get_mut("status")) {
                status["qosClass"] = json!(q);
            }
        }
        let errors = limit_range::validate_pod(obj, &ranges);
        if !errors.is_empty() {
            return Err(forbidden(kind, &name, &limit_range::aggregate(&errors)));
        }
    }
    if is(kind, "", "PersistentVolumeClaim") {
        let ranges = list(store, kind_of("", "LimitRange"), Some(&ns)).await?;
        let errors = limit_range::validate_pvc(obj, &ranges);
        if !errors.is_empty() {
            return Err(forbidden(kind, &name, &limit_range::aggregate(&errors)));
        }
    }
    charge_quotas(store, kind, &ns, None, obj, dry_run).await
}

fn kind_priority_class() -> &'static KindInfo {
    kind_of("scheduling.k8s.io", "PriorityClass")
}

/// Admits an update of `current` to `obj` (not status writes): PriorityClass rules,
/// LimitRange limits of PersistentVolumeClaims, and quota charges for what the update
/// adds (a grown claim). Pods' resources cannot change on update, so they are not
/// re-checked, as in Kubernetes.
pub async fn admit_update(
    store: &Store,
    kind: &'static KindInfo,
    current: &Value,
    obj: &mut Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    let name = drover_store::object::name(obj).to_string();
    if is(kind, "scheduling.k8s.io", "PriorityClass") {
        let existing = list(store, kind, None).await?;
        priority::check_class(obj, &existing).map_err(|why| forbidden(kind, &name, &why))?;
        return Ok(());
    }
    let Some(ns) = drover_store::object::namespace(obj)
        .map(str::to_string)
        .filter(|_| kind.namespaced)
    else {
        return Ok(());
    };
    if is(kind, "", "PersistentVolumeClaim") {
        let ranges = list(store, kind_of("", "LimitRange"), Some(&ns)).await?;
        let errors = limit_range::validate_pvc(obj, &ranges);
        if !errors.is_empty() {
            return Err(forbidden(kind, &name, &limit_range::aggregate(&errors)));
        }
    }
    charge_quotas(store, kind, &ns, Some(current), obj, dry_run).await
}

/// Checks every quota of the namespace that covers `obj` and charges what it adds
/// (its usage on create, the growth on update) to each by CAS, re-deciding on conflict.
async fn charge_quotas(
    store: &Store,
    kind: &'static KindInfo,
    ns: &str,
    old: Option<&Value>,
    obj: &Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    let quota_kind = kind_quota();
    let quotas = list(store, quota_kind, Some(ns)).await?;
    if quotas.is_empty() {
        return Ok(());
    }
    let name = drover_store::object::name(obj).to_string();
    let usage = quota::usage(kind, obj);
    let delta = match old {
        Some(old) => quota::subtract_non_negative(&usage, &quota::usage(kind, old)),
        None => usage,
    };
    let covering: Vec<&Value> = quotas
        .iter()
        .filter(|q| quota::quota_covers(q.get("spec"), kind, obj))
        .collect();
    if old.is_none() && is(kind, "", "Pod") {
        for q in &covering {
            let hard = quota::parse_list(q.pointer("/spec/hard"));
            if let Some(detail) = quota::missing_requirements(&hard, obj) {
                let denied = quota::QuotaDenied::Missing {
                    quota: drover_store::object::name(q).to_string(),
                    detail,
                };
                return Err(forbidden(kind, &name, &denied.to_string()));
            }
        }
    }
    for q in covering {
        charge_one(store, kind, ns, q.clone(), &delta, &name, dry_run).await?;
    }
    Ok(())
}

fn kind_quota() -> &'static KindInfo {
    kind_of("", "ResourceQuota")
}

async fn charge_one(
    store: &Store,
    kind: &'static KindInfo,
    ns: &str,
    mut q: Value,
    delta: &ResourceList,
    name: &str,
    dry_run: bool,
) -> Result<(), ApiError> {
    let quota_kind = kind_quota();
    let quota_name = drover_store::object::name(&q).to_string();
    for attempt in 0..CAS_ATTEMPTS {
        if attempt > 0 {
            q = match store.get(quota_kind, Some(ns), &quota_name).await {
                Ok(q) => q,
                // Deleted meanwhile: nothing to charge.
                Err(StoreError::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(ApiError::from_store(quota_kind, &quota_name, e)),
            };
        }
        let hard = quota::parse_list(q.pointer("/spec/hard"));
        let mut used = quota::parse_list(q.pointer("/status/used"));
        if hard.keys().any(|k| !used.contains_key(k)) {
            // A new quota (or new hard resources) that the controller has not counted
            // yet: count now rather than refuse with "status unknown" as Kubernetes does.
            used = count_used(store, ns, &q, &hard).await?;
        }
        let new_used = match quota::admit(&quota_name, &hard, &used, delta) {
            Ok(None) => return Ok(()),
            Ok(Some(new_used)) => new_used,
            Err(denied) => return Err(forbidden(kind, name, &denied.to_string())),
        };
        if dry_run {
            return Ok(());
        }
        q["status"] = json!({
            "hard": quota::render_list(&hard),
            "used": quota::render_list(&quota::mask(&new_used, hard.keys())),
        });
        match store.update(quota_kind, q.clone()).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(ApiError::from_store(quota_kind, &quota_name, e)),
        }
    }
    Err(ApiError {
        code: 409,
        reason: "Conflict",
        message: format!(
            "Operation cannot be fulfilled on resourcequotas {quota_name:?}: the quota keeps changing; retry"
        ),
        details: None,
    })
}

/// What the objects of the namespace use of a quota's hard resources (the quota
/// controller's computation, done here for a quota it has not seen yet).
async fn count_used(
    store: &Store,
    ns: &str,
    q: &Value,
    hard: &ResourceList,
) -> Result<ResourceList, ApiError> {
    let mut usages = Vec::new();
    for counted in quota::counted_kinds(hard) {
        for obj in list(store, counted, Some(ns)).await? {
            if quota::quota_covers(q.get("spec"), counted, &obj) {
                usages.push(quota::usage(counted, &obj));
            }
        }
    }
    Ok(quota::used_from(hard, &usages))
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
