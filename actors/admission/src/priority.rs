//! Priority admission (Kubernetes' `Priority` plugin): a pod's `priorityClassName`
//! resolves to `spec.priority` and `spec.preemptionPolicy` from its PriorityClass; a pod
//! without a class gets the global default class, if any. Pure: the shell passes the
//! PriorityClass objects in.

use serde_json::{Value, json};

/// Built-in classes that exist without objects, as on every Kubernetes cluster.
pub const SYSTEM_CLASSES: &[(&str, i64)] = &[
    ("system-cluster-critical", 2_000_000_000),
    ("system-node-critical", 2_000_001_000),
];

/// What a pod without a class and without a global default gets.
const DEFAULT_PRIORITY: i64 = 0;
/// The preemption policy of a class that does not name one.
const DEFAULT_PREEMPTION: &str = "PreemptLowerPriority";

/// What the admission writes into a pod's spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The class name to record (the default class for a pod that named none).
    pub class_name: Option<String>,
    /// `spec.priority`.
    pub priority: i64,
    /// `spec.preemptionPolicy`.
    pub preemption_policy: String,
}

/// The class a pod named, or the global default (lowest value when several claim it).
fn class(name: &str, classes: &[Value]) -> Option<(String, i64, String)> {
    if let Some((n, v)) = SYSTEM_CLASSES.iter().find(|(n, _)| *n == name) {
        return Some((n.to_string(), *v, DEFAULT_PREEMPTION.into()));
    }
    classes
        .iter()
        .find(|c| drover_store::object::name(c) == name)
        .map(describe)
}

fn describe(c: &Value) -> (String, i64, String) {
    (
        drover_store::object::name(c).to_string(),
        c.get("value").and_then(Value::as_i64).unwrap_or(0),
        c.get("preemptionPolicy")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_PREEMPTION)
            .to_string(),
    )
}

/// The global default class, if one exists.
pub fn global_default(classes: &[Value]) -> Option<&Value> {
    classes
        .iter()
        .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
        .min_by_key(|c| c.get("value").and_then(Value::as_i64).unwrap_or(0))
}

/// Resolves the priority of a pod with `spec`; the error is the Forbidden message body.
pub fn resolve(spec: &Value, classes: &[Value]) -> Result<Resolved, String> {
    let named = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let (class_name, priority, policy) = match named {
        Some(name) => match class(name, classes) {
            Some((n, v, p)) => (Some(n), v, p),
            None => return Err(format!("no PriorityClass with name {name} was found")),
        },
        None => match global_default(classes).map(describe) {
            Some((n, v, p)) => (Some(n), v, p),
            None => (None, DEFAULT_PRIORITY, DEFAULT_PREEMPTION.to_string()),
        },
    };
    if let Some(given) = spec.get("priority").filter(|v| !v.is_null())
        && given.as_i64() != Some(priority)
    {
        return Err(format!(
            "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
        ));
    }
    if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
        && given != policy
    {
        return Err(format!(
            "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
        ));
    }
    Ok(Resolved {
        class_name,
        priority,
        preemption_policy: policy,
    })
}

/// Writes a resolution into a pod spec.
pub fn apply(spec: &mut Value, resolved: &Resolved) {
    let Some(spec) = spec.as_object_mut() else {
        return;
    };
    if let Some(name) = &resolved.class_name {
        spec.insert("priorityClassName".into(), json!(name));
    }
    spec.insert("priority".into(), json!(resolved.priority));
    spec.insert("preemptionPolicy".into(), json!(resolved.preemption_policy));
}

/// Checks a PriorityClass being written: only one may be the global default, and the
/// built-in names are taken. The error is the Forbidden message body.
pub fn check_class(class: &Value, existing: &[Value]) -> Result<(), String> {
    let name = drover_store::object::name(class);
    if SYSTEM_CLASSES.iter().any(|(n, _)| *n == name) {
        return Err(format!(
            "{name} is a built-in PriorityClass and cannot be created or changed"
        ));
    }
    if class.get("globalDefault").and_then(Value::as_bool) == Some(true)
        && let Some(other) = existing.iter().find(|c| {
            c.get("globalDefault").and_then(Value::as_bool) == Some(true)
                && drover_store::object::name(c) != name
        })
    {
        return Err(format!(
            "PriorityClass {} is already marked as default. Only one default can exist",
            drover_store::object::name(other)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
