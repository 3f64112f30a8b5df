//! The PodDisruptionBudget status controller: for every budget, the pods its selector
//! matches, how many are expected (`minAvailable` as a number: the matching pods;
//! percentages and `maxUnavailable`: the scale of the pods' controllers), how many must
//! stay healthy, how many are healthy (Ready, not terminating, not just evicted), and so
//! how many disruptions are allowed now. The eviction subresource in the gateway reads
//! and decrements `disruptionsAllowed`; `disruptedPods` records those evictions until
//! the pod is gone or [`DISRUPTION_TIMEOUT`] passes. The arithmetic is I/O-free.

use std::collections::BTreeMap;
use std::time::Duration;

use bus_schema::KindInfo;
use bus_schema::selector::LabelSelector;
use drover_store::{ListOptions, Store, StoreError};
use jiff::Timestamp;
use serde_json::{Map, Value, json};

/// How long an eviction recorded in `status.disruptedPods` keeps its pod out of the
/// healthy count when the pod is not deleted (Kubernetes' `DeletionTimeout`).
pub const DISRUPTION_TIMEOUT: Duration = Duration::from_secs(120);
/// Every namespace with a budget is recomputed this often.
pub const RESYNC_EVERY: Duration = Duration::from_secs(30);
/// Compare-and-swap rounds for one status write.
const CAS_ATTEMPTS: usize = 8;

/// What the controller needs to know of one matching pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodState {
    /// Pod name.
    pub name: String,
    /// Ready condition True.
    pub ready: bool,
    /// deletionTimestamp set.
    pub terminating: bool,
    /// The top controller of the pod (uid) and its desired replicas, when it has one.
    pub scale: Option<(String, i64)>,
}

/// The kinds whose changes make a namespace's budgets stale at once (budgets first).
/// A change of a controller's replicas (which only percentage and `maxUnavailable`
/// budgets read) shows at the [`RESYNC_EVERY`] recount or with the pods it creates or
/// deletes; one watch fewer per kind is one JetStream consumer fewer.
pub fn watched_kinds() -> Vec<&'static KindInfo> {
    [("policy", "PodDisruptionBudget"), ("", "Pod")]
        .iter()
        .filter_map(|(g, k)| bus_schema::kinds::by_group_kind(g, k))
        .collect()
}

/// Whether a budget selects a pod with `labels` (policy/v1: an empty selector selects
/// every pod of the namespace, a missing one none).
pub fn selects(pdb: &Value, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = pdb.pointer("/spec/selector").filter(|s| !s.is_null()) else {
        return false;
    };
    let Ok(sel) = serde_json::from_value(sel.clone()) else {
        return false;
    };
    LabelSelector::from_k8s(&sel).is_ok_and(|s| s.matches(labels))
}

fn controller_ref(obj: &Value) -> Option<&Value> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
}

fn find_by_uid<'a>(controllers: &'a [Value], kind: &str, uid: &str) -> Option<&'a Value> {
    controllers.iter().find(|c| {
        c.get("kind").and_then(Value::as_str) == Some(kind)
            && drover_store::object::meta_str(c, "uid") == Some(uid)
    })
}

fn replicas(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// The top controller of `pod` among `controllers` (ReplicaSet -> its Deployment,
/// StatefulSet, ReplicationController) with its desired replicas.
pub fn scale_of(pod: &Value, controllers: &[Value]) -> Option<(String, i64)> {
    let owner = controller_ref(pod)?;
    let kind = owner.get("kind").and_then(Value::as_str)?;
    let uid = owner.get("uid").and_then(Value::as_str)?;
    let found = find_by_uid(controllers, kind, uid)?;
    if kind == "ReplicaSet"
        && let Some(dep_ref) = controller_ref(found)
        && dep_ref.get("kind").and_then(Value::as_str) == Some("Deployment")
        && let Some(dep_uid) = dep_ref.get("uid").and_then(Value::as_str)
        && let Some(dep) = find_by_uid(controllers, "Deployment", dep_uid)
    {
        return Some((dep_uid.to_string(), replicas(dep)));
    }
    match kind {
        "ReplicaSet" | "StatefulSet" | "ReplicationController" => {
            Some((uid.to_string(), replicas(found)))
        }
        _ => None,
    }
}

/// The state of a pod as the budget sees it.
pub fn pod_state(pod: &Value, controllers: &[Value]) -> PodState {
    let ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        });
    PodState {
        name: drover_store::object::name(pod).to_string(),
        ready,
        terminating: drover_store::object::is_terminating(pod),
        scale: scale_of(pod, controllers),
    }
}

/// An int-or-percent value scaled to `total`, rounded up (`GetScaledValueFromIntOrPercent`
/// with roundUp, as the disruption controller uses it).
fn scaled(value: &Value, total: i64) -> Result<i64, String> {
    if let Some(n) = value.as_i64() {
        return Ok(n);
    }
    let s = value.as_str().unwrap_or("");
    let pct: i64 = s
        .strip_suffix('%')
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
    Ok((pct * total + 99).div_euclid(100))
}

/// Whether a value is a percentage (needs the controllers' scale).
fn is_percent(value: Option<&Value>) -> bool {
    value.and_then(Value::as_str).is_some()
}

/// Whether a budget needs the scale of its pods' controllers.
pub fn needs_scale(pdb: &Value) -> bool {
    let spec = pdb.get("spec");
    let max_unavailable = spec
        .and_then(|s| s.get("maxUnavailable"))
        .filter(|v| !v.is_null());
    max_unavailable.is_some() || is_percent(spec.and_then(|s| s.get("minAvailable")))
}

/// (expected pods, desired healthy) of a budget over its pods.
pub fn expected_and_desired(pdb: &Value, pods: &[PodState]) -> Result<(i64, i64), String> {
    let spec = pdb.get("spec");
    let min_available = spec
        .and_then(|s| s.get("minAvailable"))
        .filter(|v| !v.is_null());
    let max_unavailable = spec
        .and_then(|s| s.get("maxUnavailable"))
        .filter(|v| !v.is_null());
    let expected_scale = || -> Result<i64, String> {
        let mut by_controller: BTreeMap<&str, i64> = BTreeMap::new();
        for p in pods {
            match &p.scale {
                Some((uid, n)) => {
                    by_controller.insert(uid, *n);
                }
                None => return Err(format!("found no controllers for pod {:?}", p.name)),
            }
        }
        Ok(by_controller.values().sum())
    };
    match (max_unavailable, min_available) {
        (Some(max), _) => {
            let expected = expected_scale()?;
            let max = scaled(max, expected)?;
            Ok((expected, (expected - max).max(0)))
        }
        (None, Some(min)) if min.is_i64() => Ok((pods.len() as i64, scaled(min, 0)?)),
        (None, Some(min)) => {
            let expected = expected_scale()?;
            Ok((expected, scaled(min, expected)?))
        }
        (None, None) => Ok((pods.len() as i64, 0)),
    }
}

fn parse_time(v: &Value) -> Option<Timestamp> {
    v.as_str()?.parse().ok()
}

fn rfc3339(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

/// The status a budget should have now, and when to look again (the earliest expiry of
/// a recorded disruption).
pub fn desired_status(pdb: &Value, pods: &[PodState], now: Timestamp) -> (Value, Option<Duration>) {
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let timeout = jiff::SignedDuration::try_from(DISRUPTION_TIMEOUT).unwrap_or_default();
    let mut disrupted = Map::new();
    let mut recheck: Option<Duration> = None;
    let recorded = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object);
    for (name, at) in recorded.into_iter().flatten() {
        let Some(pod) = pods.iter().find(|p| &p.name == name) else {
            continue;
        };
        let Some(at_time) = parse_time(at) else {
            continue;
        };
        if pod.terminating {
            continue;
        }
        let expires = at_time.checked_add(timeout).unwrap_or(at_time);
        if expires <= now {
            continue;
        }
        let left = Duration::try_from(expires.duration_since(now)).unwrap_or_default();
        recheck = Some(recheck.map_or(left, |r| r.min(left)));
        disrupted.insert(name.clone(), at.clone());
    }
    let current_healthy = pods
        .iter()
        .filter(|p| p.ready && !p.terminating && !disrupted.contains_key(&p.name))
        .count() as i64;
    let (status, condition) = match expected_and_desired(pdb, pods) {
        Ok((expected, desired)) => {
            let allowed = if expected <= 0 {
                0
            } else {
                (current_healthy - desired).max(0)
            };
            let condition = if allowed > 0 {
                ("True", "SufficientPods", String::new())
            } else {
                ("False", "InsufficientPods", String::new())
            };
            (
                json!({"observedGeneration": generation, "disruptionsAllowed": allowed,
                       "currentHealthy": current_healthy, "desiredHealthy": desired,
                       "expectedPods": expected}),
                condition,
            )
        }
        // Fail safe: no disruptions while the budget cannot be evaluated.
        Err(message) => (
            json!({"observedGeneration": generation, "disruptionsAllowed": 0,
                   "currentHealthy": current_healthy, "desiredHealthy": 0, "expectedPods": 0}),
            ("False", "SyncFailed", message),
        ),
    };
    let mut status = status;
    if !disrupted.is_empty() {
        status["disruptedPods"] = Value::Object(disrupted);
    }
    let (cond_status, reason, message) = condition;
    let previous = pdb
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("DisruptionAllowed"))
        });
    let transition = match previous {
        Some(p) if p.get("status").and_then(Value::as_str) == Some(cond_status) => p
            .get("lastTransitionTime")
            .cloned()
            .unwrap_or_else(|| json!(rfc3339(now))),
        _ => json!(rfc3339(now)),
    };
    status["conditions"] = json!([{"type": "DisruptionAllowed", "status": cond_status,
        "reason": reason, "message": message, "observedGeneration": generation,
        "lastTransitionTime": transition}]);
    (status, recheck)
}

/// Recomputes every budget of `namespace`.
pub async fn reconcile_namespace(
    store: Store,
    namespace: String,
) -> Result<Option<Duration>, StoreError> {
    let kind = |g, k| bus_schema::kinds::by_group_kind(g, k).expect("kinds are in KINDS");
    let pdb_kind = kind("policy", "PodDisruptionBudget");
    let ns = Some(namespace.as_str());
    let all = ListOptions::default();
    let pdbs = store.list(pdb_kind, ns, &all).await?.items;
    if pdbs.is_empty() {
        return Ok(None);
    }
    let pods = store.list(kind("", "Pod"), ns, &all).await?.items;
    let mut controllers = Vec::new();
    if pdbs.iter().any(needs_scale) {
        for (g, k) in [
            ("apps", "ReplicaSet"),
            ("apps", "Deployment"),
            ("apps", "StatefulSet"),
            ("", "ReplicationController"),
        ] {
            let kind = kind(g, k);
            for mut c in store.list(kind, ns, &all).await?.items {
                c["kind"] = json!(kind.kind);
                controllers.push(c);
            }
        }
    }
    let mut recheck: Option<Duration> = None;
    for pdb in pdbs {
        let name = drover_store::object::name(&pdb).to_string();
        let mut current = pdb;
        for _ in 0..CAS_ATTEMPTS {
            let states: Vec<PodState> = pods
                .iter()
                .filter(|p| selects(&current, &drover_store::object::labels(p)))
                .map(|p| pod_state(p, &controllers))
                .collect();
            let (status, again) = desired_status(&current, &states, Timestamp::now());
            if let Some(a) = again {
                recheck = Some(recheck.map_or(a, |r| r.min(a)));
            }
            if current.get("status") == Some(&status) {
                break;
            }
            current["status"] = status;
            match store.update(pdb_kind, current.clone()).await {
                Ok(_) | Err(StoreError::NotFound { .. }) => break,
                // An eviction charged the budget meanwhile: decide again on its state.
                Err(StoreError::Conflict { .. }) => {
                    current = match store.get(pdb_kind, ns, &name).await {
                        Ok(p) => p,
                        Err(StoreError::NotFound { .. }) => break,
                        Err(e) => return Err(e),
                    };
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(recheck)
}

/// Runs the controller until the task is aborted.
pub async fn run(store: Store) {
    crate::namespaced::run(store, watched_kinds(), RESYNC_EVERY, reconcile_namespace).await
}

#[cfg(test)]
mod tests;
