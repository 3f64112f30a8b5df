//! The `scale` subresource (autoscaling/v1 `Scale`) of Deployments, ReplicaSets and
//! StatefulSets: a view of `spec.replicas`, `status.replicas` and the label selector,
//! writable only in `spec.replicas`. `kubectl scale` and the HPA use it.

use bus_schema::KindInfo;
use serde_json::{Value, json};

use crate::status::ApiError;

/// The Scale view of a scalable object.
pub fn to_scale(obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let pick = |k: &str| meta.get(k).cloned().unwrap_or(Value::Null);
    let mut metadata = json!({
        "name": pick("name"),
        "namespace": pick("namespace"),
        "uid": pick("uid"),
        "resourceVersion": pick("resourceVersion"),
        "creationTimestamp": pick("creationTimestamp"),
    });
    if let Some(m) = metadata.as_object_mut() {
        m.retain(|_, v| !v.is_null());
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector_string(obj.pointer("/spec/selector").unwrap_or(&Value::Null)),
        },
    })
}

/// A `LabelSelector` object as the string form selectors are written in
/// (`app=web,tier in (a,b),!canary`).
pub fn selector_string(selector: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    for expr in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
        let values: Vec<&str> = expr
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match expr.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

/// Writes a Scale's `spec.replicas` into the object it views. The write is a
/// compare-and-swap on the Scale's resourceVersion when it has one, else on the
/// object's own.
pub fn apply_scale(kind: &KindInfo, current: &Value, scale: &Value) -> Result<Value, ApiError> {
    let name = drover_store::object::name(current);
    let replicas = match scale.pointer("/spec/replicas") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_i64().ok_or_else(|| {
            ApiError::bad_request(format!(
                "Scale in version \"v1\" cannot be handled as a Scale: spec.replicas must be an integer, got {v}"
            ))
        })?,
    };
    if replicas < 0 || replicas > i64::from(i32::MAX) {
        return Err(ApiError::invalid(
            kind,
            name,
            vec![
                json!({"reason": "FieldValueInvalid", "message": format!("Invalid value: {replicas}: must be greater than or equal to 0"), "field": "spec.replicas"}),
            ],
            &format!(
                "spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
            ),
        ));
    }
    let mut updated = current.clone();
    updated["spec"]["replicas"] = json!(replicas);
    if let Some(rv) =
        drover_store::object::meta_str(scale, "resourceVersion").filter(|s| !s.is_empty())
    {
        drover_store::object::meta_mut(&mut updated).insert("resourceVersion".into(), json!(rv));
    }
    Ok(updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_render_like_kubectl() {
        let cases = [
            (json!({"matchLabels": {"app": "web"}}), "app=web"),
            (
                json!({"matchLabels": {"a": "1", "b": "2"}, "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["x", "y"]},
                    {"key": "env", "operator": "NotIn", "values": ["prod"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                    {"key": "team", "operator": "Exists"}]}),
                "a=1,b=2,tier in (x,y),env notin (prod),!canary,team",
            ),
            (Value::Null, ""),
        ];
        for (sel, want) in cases {
            assert_eq!(selector_string(&sel), want);
        }
    }

    #[test]
    fn scale_view_and_write() {
        let kind = bus_schema::kinds::by_group_kind("apps", "Deployment").unwrap();
        let d = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u", "resourceVersion": "7"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 1}});
        let s = to_scale(&d);
        assert_eq!(s["spec"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=web");
        assert_eq!(s["metadata"]["resourceVersion"], "7");
        let w = apply_scale(kind, &d, &json!({"spec": {"replicas": 5}})).unwrap();
        assert_eq!(w["spec"]["replicas"], 5);
        assert_eq!(w["metadata"]["resourceVersion"], "7");
        let pinned = apply_scale(
            kind,
            &d,
            &json!({"metadata": {"resourceVersion": "6"}, "spec": {"replicas": 5}}),
        )
        .unwrap();
        assert_eq!(pinned["metadata"]["resourceVersion"], "6");
        let bad = apply_scale(kind, &d, &json!({"spec": {"replicas": -1}})).unwrap_err();
        assert_eq!(bad.code, 422);
        assert_eq!(
            apply_scale(kind, &d, &json!({"spec": {"replicas": "x"}}))
                .unwrap_err()
                .code,
            400
        );
    }
}
