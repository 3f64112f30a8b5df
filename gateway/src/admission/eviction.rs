//! The eviction subresource's decision (Kubernetes' `pods/eviction` REST storage): may a
//! pod be deleted now without breaking its PodDisruptionBudget, and how the budget's
//! status is charged when it may. Pure: the shell passes in the pod, the namespace's
//! budgets and the time, and carries the decision out with a CAS on the budget.

use std::collections::BTreeMap;

use bus_schema::selector::LabelSelector;
use serde_json::{Value, json};

use crate::status::ApiError;

/// Reason of the Status cause that names the budget (`policy/v1.DisruptionBudgetCause`).
pub const DISRUPTION_BUDGET_CAUSE: &str = "DisruptionBudget";
/// Seconds a client is told to wait while a budget's status is behind its spec.
const RETRY_PROCESSING_SECONDS: i64 = 10;
/// Evictions recorded in a budget that its controller has not confirmed yet, at most
/// (Kubernetes' `MaxDisruptedPodSize`).
pub const MAX_DISRUPTED_PODS: usize = 2000;

/// What to do with an eviction.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Delete the pod; no budget is involved (none matches, or the pod is not running).
    Delete,
    /// Write `status` to the budget `pdb` (compare-and-swap on its resourceVersion), then
    /// delete the pod.
    Charge {
        /// The budget's name.
        pdb: String,
        /// Its new status.
        status: Value,
    },
    /// Refuse the eviction.
    Refuse(ApiError),
}

/// Whether a budget's selector selects a pod with `labels` (an empty selector selects
/// every pod of the namespace in policy/v1; a missing one selects none).
pub fn selects(pdb: &Value, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = pdb.pointer("/spec/selector").filter(|s| !s.is_null()) else {
        return false;
    };
    let Ok(sel) = serde_json::from_value(sel.clone()) else {
        return false;
    };
    LabelSelector::from_k8s(&sel).is_ok_and(|s| s.matches(labels))
}

/// Whether a pod's Ready condition is True.
pub fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// A pod no budget protects: not started (Pending), finished, or already terminating.
fn ignores_budget(pod: &Value) -> bool {
    drover_store::object::is_terminating(pod)
        || matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Pending" | "Succeeded" | "Failed") | None
        )
}

fn int(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn too_many_requests(message: String, cause: Option<String>, retry_after: i64) -> ApiError {
    let mut details = json!({});
    if let Some(c) = cause {
        details["causes"] = json!([{"reason": DISRUPTION_BUDGET_CAUSE, "message": c}]);
    }
    if retry_after > 0 {
        details["retryAfterSeconds"] = json!(retry_after);
    }
    ApiError {
        code: 429,
        reason: "TooManyRequests",
        message,
        details: Some(details),
    }
}

/// Decides the eviction of `pod` given every budget of its namespace; `now` is the
/// RFC 3339 time recorded in `status.disruptedPods`.
pub fn decide(pod: &Value, pdbs: &[Value], now: &str) -> Decision {
    if ignores_budget(pod) {
        return Decision::Delete;
    }
    let labels = drover_store::object::labels(pod);
    let matching: Vec<&Value> = pdbs.iter().filter(|p| selects(p, &labels)).collect();
    let pdb = match matching.as_slice() {
        [] => return Decision::Delete,
        [one] => *one,
        _ => {
            return Decision::Refuse(ApiError {
                code: 500,
                reason: "InternalError",
                message: "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
                details: None,
            });
        }
    };
    let name = drover_store::object::name(pdb).to_string();
    if !is_ready(pod) {
        let always = pdb
            .pointer("/spec/unhealthyPodEvictionPolicy")
            .and_then(Value::as_str)
            == Some("AlwaysAllow");
        let desired = int(pdb, "/status/desiredHealthy");
        if always || (int(pdb, "/status/currentHealthy") >= desired && desired > 0) {
            // An unready pod is not counted healthy: evicting it spends no budget.
            return Decision::Delete;
        }
    }
    let generation = int(pdb, "/metadata/generation");
    if int(pdb, "/status/observedGeneration") < generation {
        return Decision::Refuse(too_many_requests(
            format!(
                "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {name} is still being processed by the server."
            ),
            None,
            RETRY_PROCESSING_SECONDS,
        ));
    }
    let allowed = int(pdb, "/status/disruptionsAllowed");
    if allowed < 0 {
        return Decision::Refuse(ApiError::forbidden("pdb disruptions allowed is negative"));
    }
    let disrupted = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len());
    if disrupted > MAX_DISRUPTED_PODS {
        return Decision::Refuse(ApiError::forbidden(
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Decision::Refuse(too_many_requests(
            "Cannot evict pod as it would violate the pod's disruption budget.".into(),
            Some(format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                int(pdb, "/status/desiredHealthy"),
                int(pdb, "/status/currentHealthy")
            )),
            0,
        ));
    }
    let mut status = pdb.get("status").cloned().unwrap_or_else(|| json!({}));
    status["disruptionsAllowed"] = json!(allowed - 1);
    if !status.get("disruptedPods").is_some_and(Value::is_object) {
        status["disruptedPods"] = json!({});
    }
    status["disruptedPods"][drover_store::object::name(pod)] = json!(now);
    if allowed - 1 == 0 {
        set_insufficient(&mut status, generation, now);
    }
    Decision::Charge { pdb: name, status }
}

/// Sets the `DisruptionAllowed` condition to False (`InsufficientPods`), keeping its
/// transition time when it already was.
fn set_insufficient(status: &mut Value, generation: i64, now: &str) {
    let conditions = status
        .as_object_mut()
        .map(|s| s.entry("conditions").or_insert_with(|| json!([])));
    let Some(Value::Array(conditions)) = conditions else {
        return;
    };
    let wanted = json!({"type": "DisruptionAllowed", "status": "False",
        "reason": "InsufficientPods", "message": "", "observedGeneration": generation,
        "lastTransitionTime": now});
    match conditions
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("DisruptionAllowed"))
    {
        Some(c) if c.get("status").and_then(Value::as_str) == Some("False") => {
            c["reason"] = json!("InsufficientPods");
        }
        Some(c) => *c = wanted,
        None => conditions.push(wanted),
    }
}

#[cfg(test)]
mod tests;
