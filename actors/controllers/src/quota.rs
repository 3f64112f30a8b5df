//! The ResourceQuota status controller: recomputes every quota's `status.hard` (a copy
//! of `spec.hard`) and `status.used` from the objects of its namespace, so that what
//! admission charged converges to what exists after deletes, failed creates and pods
//! that finished. Writes only when the status changed. The arithmetic is
//! `bus_schema::quota`, shared with the gateway's admission.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bus_schema::KindInfo;
use bus_schema::quota::{self, ResourceList};
use drover_store::{ListOptions, Store, StoreError};
use serde_json::{Value, json};

/// Every namespace with a quota is recomputed this often (objects of kinds without a
/// watch here, `count/<anything>`, and charges of creates that then failed, converge
/// within this).
pub const RESYNC_EVERY: Duration = Duration::from_secs(15);
/// Compare-and-swap rounds for one status write.
const CAS_ATTEMPTS: usize = 8;

/// The kinds whose changes make a namespace's quotas stale at once (quotas first):
/// pods (the hot path: finished and deleted pods free quota) and claims. Every watch is
/// one more JetStream consumer per bucket, so the object counts of other kinds
/// (`configmaps`, `services`, `count/...`) converge at the [`RESYNC_EVERY`] recount
/// instead. Moving this onto the shared controller cache (`runtime::Cache`) would
/// remove those consumers; not done yet.
pub fn watched_kinds() -> Vec<&'static KindInfo> {
    [
        ("", "ResourceQuota"),
        ("", "Pod"),
        ("", "PersistentVolumeClaim"),
    ]
    .iter()
    .filter_map(|(g, k)| bus_schema::kinds::by_group_kind(g, k))
    .collect()
}

/// The status a quota should have given the objects (of the kinds it counts) in its
/// namespace.
pub fn desired_status(quota: &Value, objects: &[(&'static KindInfo, Value)]) -> Value {
    let hard = quota::parse_list(quota.pointer("/spec/hard"));
    let usages: Vec<ResourceList> = objects
        .iter()
        .filter(|(kind, obj)| quota::quota_covers(quota.get("spec"), kind, obj))
        .map(|(kind, obj)| quota::usage(kind, obj))
        .collect();
    let used = quota::used_from(&hard, &usages);
    json!({"hard": quota::render_list(&hard), "used": quota::render_list(&used)})
}

/// Whether `status` differs from what the quota holds (quantities compared by amount, so
/// `1000m` and `1` are the same and cause no write).
pub fn status_differs(quota: &Value, status: &Value) -> bool {
    ["hard", "used"].iter().any(|field| {
        quota::parse_list(quota.pointer(&format!("/status/{field}")))
            .into_iter()
            .map(|(k, v)| (k, v.nano_value()))
            .collect::<Vec<_>>()
            != quota::parse_list(status.get(*field))
                .into_iter()
                .map(|(k, v)| (k, v.nano_value()))
                .collect::<Vec<_>>()
    })
}

/// How long a recount that lowers a quota's usage waits to be confirmed before it is
/// written. Admission charges a quota before it writes the object, so a recount that
/// runs in between sees the charge but not the object; a lower count is written only
/// when a second recount this much later, on an unchanged quota, agrees.
pub const CONFIRM_DECREASE_AFTER: Duration = Duration::from_secs(1);

/// Whether `status` lowers some used amount the quota holds.
pub fn lowers_usage(quota: &Value, status: &Value) -> bool {
    let held = quota::parse_list(quota.pointer("/status/used"));
    quota::parse_list(status.get("used"))
        .iter()
        .any(|(k, v)| held.get(k).is_some_and(|h| v < h))
}

/// A recount waiting for confirmation: the quota's resourceVersion, the status
/// recounted, and when.
type PendingRecount = (String, Value, Instant);

/// Recounts waiting for confirmation, by `<namespace>/<name>`.
type Pending = Arc<Mutex<HashMap<String, PendingRecount>>>;

/// Whether a recount may be written now. A recount that lowers usage is written only
/// when the same recount was seen on the same quota revision at least
/// [`CONFIRM_DECREASE_AFTER`] before (`pending`: that revision, that recount, and how
/// long ago); otherwise it is remembered and the namespace looked at again.
pub fn confirmed(
    pending: Option<(&str, &Value, Duration)>,
    quota_rv: &str,
    status: &Value,
    lowers: bool,
) -> bool {
    !lowers
        || pending.is_some_and(|(rv, s, age)| {
            rv == quota_rv && s == status && age >= CONFIRM_DECREASE_AFTER
        })
}

/// Recomputes every quota of `namespace`.
async fn reconcile_namespace(
    store: Store,
    namespace: String,
    pending: Pending,
) -> Result<Option<Duration>, StoreError> {
    let quota_kind =
        bus_schema::kinds::by_group_kind("", "ResourceQuota").expect("ResourceQuota is in KINDS");
    let ns = Some(namespace.as_str());
    let quotas = store
        .list(quota_kind, ns, &ListOptions::default())
        .await?
        .items;
    let mut again = None;
    for q in quotas {
        let name = drover_store::object::name(&q).to_string();
        let key = format!("{namespace}/{name}");
        let mut current = q;
        for _ in 0..CAS_ATTEMPTS {
            let hard = quota::parse_list(current.pointer("/spec/hard"));
            let mut objects = Vec::new();
            for kind in quota::counted_kinds(&hard) {
                let listed = store.list(kind, ns, &ListOptions::default()).await?;
                objects.extend(listed.items.into_iter().map(|o| (kind, o)));
            }
            let status = desired_status(&current, &objects);
            let rv = drover_store::object::meta_str(&current, "resourceVersion")
                .unwrap_or("")
                .to_string();
            let write_now = {
                let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
                if !status_differs(&current, &status) {
                    pending.remove(&key);
                    false
                } else {
                    let seen = pending
                        .get(&key)
                        .map(|(rv, s, at)| (rv.as_str(), s, at.elapsed()));
                    if confirmed(seen, &rv, &status, lowers_usage(&current, &status)) {
                        pending.remove(&key);
                        true
                    } else {
                        // Keep the first sighting of this recount: its age confirms it.
                        let same = seen.is_some_and(|(r, s, _)| r == rv && *s == status);
                        if !same {
                            pending.insert(key.clone(), (rv, status.clone(), Instant::now()));
                        }
                        again = Some(CONFIRM_DECREASE_AFTER);
                        false
                    }
                }
            };
            if !write_now {
                break;
            }
            current["status"] = status;
            match store.update(quota_kind, current.clone()).await {
                Ok(_) | Err(StoreError::NotFound { .. }) => break,
                // Admission charged meanwhile: count again against the new state.
                Err(StoreError::Conflict { .. }) => {
                    current = match store.get(quota_kind, ns, &name).await {
                        Ok(q) => q,
                        Err(StoreError::NotFound { .. }) => break,
                        Err(e) => return Err(e),
                    };
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(again)
}

/// Runs the controller until the task is aborted.
pub async fn run(store: Store) {
    let pending = Pending::default();
    crate::namespaced::run(store, watched_kinds(), RESYNC_EVERY, move |store, ns| {
        reconcile_namespace(store, ns, pending.clone())
    })
    .await
}

#[cfg(test)]
mod tests;
