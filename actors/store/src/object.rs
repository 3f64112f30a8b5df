//! Helpers for reading and writing the metadata of an object held as JSON. The store is
//! kind-agnostic: every kind, built-in or drover's own, is a `serde_json::Value` with a
//! standard `metadata`.

use bus_schema::KindInfo;
use serde_json::{Map, Value};

/// Returns `metadata` as a map, creating it when missing or not an object.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let map = obj.as_object_mut().expect("just made an object");
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("just made an object")
}

/// Reads a string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// `metadata.name`, or empty.
pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

/// `metadata.namespace`, when set and non-empty.
pub fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace").filter(|s| !s.is_empty())
}

/// `metadata.finalizers` as strings (non-strings are ignored; validation reports them).
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `kind` is core/v1 Namespace.
pub fn is_namespace(kind: &KindInfo) -> bool {
    kind.group.is_empty() && kind.kind == "Namespace"
}

/// Whether `kind` is core/v1 Pod.
pub fn is_pod(kind: &KindInfo) -> bool {
    kind.group.is_empty() && kind.kind == "Pod"
}

/// Grace period of a pod deleted without one: 0 for a pod no node runs (nothing to
/// stop), else its `terminationGracePeriodSeconds`, 30 by default (as in Kubernetes).
pub const DEFAULT_POD_GRACE_SECONDS: i64 = 30;

/// The grace period a delete without one gives this pod (`None`: delete at once).
pub fn default_grace(pod: &Value) -> Option<i64> {
    let bound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    bound.then(|| {
        pod.pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(DEFAULT_POD_GRACE_SECONDS)
    })
}

/// Whether finalizers keep a terminating object in the store: `metadata.finalizers`, and
/// for a Namespace also `spec.finalizers` (the namespace controller empties those once the
/// namespace's content is gone, as in Kubernetes).
pub fn blocks_removal(kind: &KindInfo, obj: &Value) -> bool {
    !finalizers(obj).is_empty()
        || is_namespace(kind)
            && obj
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty())
}

/// `metadata.labels` as a map of strings.
pub fn labels(obj: &Value) -> std::collections::BTreeMap<String, String> {
    obj.get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `metadata.deletionTimestamp` is set.
pub fn is_terminating(obj: &Value) -> bool {
    obj.get("metadata")
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(|v| !v.is_null())
}

/// The part of an object that `metadata.generation` tracks: everything except
/// `metadata`, `status`, `apiVersion` and `kind` (the "spec", for kinds that have one, and
/// top-level data such as a ConfigMap's `data`).
pub fn spec_part(obj: &Value) -> Map<String, Value> {
    obj.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The current time in the Kubernetes wire form (RFC 3339, seconds).
pub fn now_rfc3339() -> Value {
    let now = jiff::Timestamp::now();
    let secs = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
    serde_json::to_value(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(secs))
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spec_part_excludes_metadata_and_status() {
        let o = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"x":1},"status":{"y":2}});
        assert_eq!(Value::Object(spec_part(&o)), json!({"spec":{"x":1}}));
    }

    #[test]
    fn meta_mut_repairs_non_objects() {
        let mut o = json!({"metadata": 5});
        meta_mut(&mut o).insert("name".into(), json!("x"));
        assert_eq!(name(&o), "x");
        let mut s = json!("str");
        meta_mut(&mut s);
        assert!(s.get("metadata").is_some());
    }

    #[test]
    fn now_is_rfc3339_seconds() {
        let v = now_rfc3339();
        let s = v.as_str().unwrap();
        assert!(s.ends_with('Z') && !s.contains('.'), "{s}");
    }
}
