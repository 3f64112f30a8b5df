//! HorizontalPodAutoscaler `autoscaling/v2` (stored) <-> `autoscaling/v1`, following
//! Kubernetes' `pkg/apis/autoscaling/v1/conversion.go`.
//!
//! v1 has one metric, `targetCPUUtilizationPercentage`: the first cpu `Resource` metric of
//! v2 with an `averageUtilization`. Everything else v2 holds travels in annotations of the
//! v1 object, so a v1 client that reads an object and writes it back loses nothing:
//! the other metrics (in v1's metric shape), every current metric, the conditions and the
//! behavior. On the way back the annotations are read and removed. The behavior
//! annotation holds Kubernetes' *internal* behavior type marshalled without JSON tags, so
//! its keys are Go field names (`ScaleDown`, `StabilizationWindowSeconds`); they are read
//! back case-insensitively, as Go's `encoding/json` does.
//!
//! Kubernetes' quirks are kept on purpose, since clients see them: a v1 object without
//! any metric means cpu at 80 %, `minReplicas` defaults to 1, and quantities v1 declares
//! as plain values (`currentAverageValue`, an object metric's `targetValue`) come back
//! as `"0"` when v2 had none.

use serde_json::{Map, Value, json};

use crate::validation::{FieldError, FieldErrors};

/// Annotation holding the v2 metrics v1 cannot express (`autoscaling.MetricSpecsAnnotation`).
pub const METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
/// Annotation holding every current metric (`autoscaling.MetricStatusesAnnotation`).
pub const CURRENT_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
/// Annotation holding the conditions (`autoscaling.HorizontalPodAutoscalerConditionsAnnotation`).
pub const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
/// Annotation holding the behavior (`autoscaling.BehaviorSpecsAnnotation`).
pub const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";
/// The cpu utilization a v1 object without any metric targets.
pub const DEFAULT_CPU_UTILIZATION: i64 = 80;

const ROUND_TRIP_ANNOTATIONS: [&str; 4] = [
    METRICS_ANNOTATION,
    CURRENT_METRICS_ANNOTATION,
    CONDITIONS_ANNOTATION,
    BEHAVIOR_ANNOTATION,
];

const V1: &str = "autoscaling/v1";
const V2: &str = "autoscaling/v2";

/// A field that is present and not `null`.
fn field<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// Copies `obj[from]` to `out[to]` when present.
fn copy(out: &mut Map<String, Value>, to: &str, obj: &Value, from: &str) {
    if let Some(v) = field(obj, from) {
        out.insert(to.to_string(), v.clone());
    }
}

/// A quantity Go declares as a value, not a pointer: absent marshals as `"0"`.
fn quantity(obj: &Value, key: &str) -> Value {
    field(obj, key).cloned().unwrap_or_else(|| json!("0"))
}

fn string(obj: &Value, key: &str) -> Value {
    field(obj, key).cloned().unwrap_or_else(|| json!(""))
}

/// `CrossVersionObjectReference`: the same shape in both versions.
fn object_ref(obj: &Value) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), string(obj, "kind"));
    out.insert("name".into(), string(obj, "name"));
    copy(&mut out, "apiVersion", obj, "apiVersion");
    Value::Object(out)
}

fn annotations_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    obj.get_mut("metadata")?
        .get_mut("annotations")?
        .as_object_mut()
}

/// Removes the round-trip annotations (an annotations map left empty goes too): on the
/// way out only the ones this conversion writes may be there, on the way in they became
/// fields.
fn drop_round_trip_annotations(obj: &mut Value) {
    let Some(annotations) = annotations_mut(obj) else {
        return;
    };
    let n_removed = ROUND_TRIP_ANNOTATIONS
        .iter()
        .filter(|k| annotations.remove(**k).is_some())
        .count();
    if n_removed > 0
        && annotations.is_empty()
        && let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.remove("annotations");
    }
}

fn set_annotation(obj: &mut Value, key: &str, value: &Value) {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    let meta = &mut obj["metadata"];
    if !meta.get("annotations").is_some_and(Value::is_object) {
        meta["annotations"] = json!({});
    }
    meta["annotations"][key] = Value::String(value.to_string());
}

fn is_cpu_resource(metric: &Value) -> bool {
    metric.get("type").and_then(Value::as_str) == Some("Resource")
        && metric.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
}

fn is_cpu_utilization(metric: &Value) -> bool {
    is_cpu_resource(metric)
        && metric
            .pointer("/resource/target/averageUtilization")
            .is_some_and(|v| !v.is_null())
}

fn cpu_utilization_metric(percent: &Value) -> Value {
    json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}}})
}

/// v2 `MetricSpec` -> v1 `MetricSpec`.
fn metric_spec_to_v1(m: &Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), string(m, "type"));
    let empty = json!({});
    if let Some(src) = field(m, "object") {
        let target = field(src, "target").unwrap_or(&empty);
        let mut v = Map::new();
        v.insert(
            "target".into(),
            object_ref(field(src, "describedObject").unwrap_or(&empty)),
        );
        v.insert("metricName".into(), metric_name(src));
        v.insert("targetValue".into(), quantity(target, "value"));
        copy_selector(&mut v, "selector", src);
        copy(&mut v, "averageValue", target, "averageValue");
        out.insert("object".into(), Value::Object(v));
    }
    if let Some(src) = field(m, "pods") {
        let target = field(src, "target").unwrap_or(&empty);
        let mut v = Map::new();
        v.insert("metricName".into(), metric_name(src));
        v.insert(
            "targetAverageValue".into(),
            quantity(target, "averageValue"),
        );
        copy_selector(&mut v, "selector", src);
        out.insert("pods".into(), Value::Object(v));
    }
    for key in ["resource", "containerResource"] {
        if let Some(src) = field(m, key) {
            let target = field(src, "target").unwrap_or(&empty);
            let mut v = Map::new();
            v.insert("name".into(), string(src, "name"));
            copy(
                &mut v,
                "targetAverageUtilization",
                target,
                "averageUtilization",
            );
            copy(&mut v, "targetAverageValue", target, "averageValue");
            if key == "containerResource" {
                v.insert("container".into(), string(src, "container"));
            }
            out.insert(key.into(), Value::Object(v));
        }
    }
    if let Some(src) = field(m, "external") {
        let target = field(src, "target").unwrap_or(&empty);
        let mut v = Map::new();
        v.insert("metricName".into(), metric_name(src));
        copy_selector(&mut v, "metricSelector", src);
        copy(&mut v, "targetValue", target, "value");
        copy(&mut v, "targetAverageValue", target, "averageValue");
        out.insert("external".into(), Value::Object(v));
    }
    Value::Object(out)
}

/// v2 `MetricStatus` -> v1 `MetricStatus`.
fn metric_status_to_v1(m: &Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), string(m, "type"));
    let empty = json!({});
    if let Some(src) = field(m, "object") {
        let current = field(src, "current").unwrap_or(&empty);
        let mut v = Map::new();
        v.insert(
            "target".into(),
            object_ref(field(src, "describedObject").unwrap_or(&empty)),
        );
        v.insert("metricName".into(), metric_name(src));
        v.insert("currentValue".into(), quantity(current, "value"));
        copy_selector(&mut v, "selector", src);
        copy(&mut v, "averageValue", current, "averageValue");
        out.insert("object".into(), Value::Object(v));
    }
    if let Some(src) = field(m, "pods") {
        let current = field(src, "current").unwrap_or(&empty);
        let mut v = Map::new();
        v.insert("metricName".into(), metric_name(src));
        v.insert(
            "currentAverageValue".into(),
            quantity(current, "averageValue"),
        );
        copy_selector(&mut v, "selector", src);
        out.insert("pods".into(), Value::Object(v));
    }
    for key in ["resource", "containerResource"] {
        if let Some(src) = field(m, key) {
            let current = field(src, "current").unwrap_or(&empty);
            let mut v = Map::new();
            v.insert("name".into(), string(src, "name"));
            copy(
                &mut v,
                "currentAverageUtilization",
                current,
                "averageUtilization",
            );
            v.insert(
                "currentAverageValue".into(),
                quantity(current, "averageValue"),
            );
            if key == "containerResource" {
                v.insert("container".into(), string(src, "container"));
            }
            out.insert(key.into(), Value::Object(v));
        }
    }
    if let Some(src) = field(m, "external") {
        let current = field(src, "current").unwrap_or(&empty);
        let mut v = Map::new();
        v.insert("metricName".into(), metric_name(src));
        copy_selector(&mut v, "metricSelector", src);
        v.insert("currentValue".into(), quantity(current, "value"));
        copy(&mut v, "currentAverageValue", current, "averageValue");
        out.insert("external".into(), Value::Object(v));
    }
    Value::Object(out)
}

fn metric_name(src: &Value) -> Value {
    src.get("metric")
        .map(|m| string(m, "name"))
        .unwrap_or_else(|| json!(""))
}

fn copy_selector(out: &mut Map<String, Value>, to: &str, src: &Value) {
    if let Some(s) = src.get("metric").and_then(|m| field(m, "selector")) {
        out.insert(to.into(), s.clone());
    }
}

/// v2 `MetricIdentifier` from a v1 metric's name and selector fields.
fn identifier(src: &Value, selector_key: &str) -> Value {
    let mut id = Map::new();
    id.insert("name".into(), string(src, "metricName"));
    copy(&mut id, "selector", src, selector_key);
    Value::Object(id)
}

/// v1 `MetricSpec` -> v2 `MetricSpec`.
fn metric_spec_to_v2(m: &Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), string(m, "type"));
    let empty = json!({});
    if let Some(src) = field(m, "object") {
        let mut target = Map::new();
        let kind = if field(src, "averageValue").is_some() {
            "AverageValue"
        } else {
            "Value"
        };
        target.insert("type".into(), json!(kind));
        target.insert("value".into(), quantity(src, "targetValue"));
        copy(&mut target, "averageValue", src, "averageValue");
        out.insert(
            "object".into(),
            json!({
                "describedObject": object_ref(field(src, "target").unwrap_or(&empty)),
                "metric": identifier(src, "selector"),
                "target": target,
            }),
        );
    }
    if let Some(src) = field(m, "pods") {
        out.insert(
            "pods".into(),
            json!({
                "metric": identifier(src, "selector"),
                "target": {"type": "AverageValue", "averageValue": quantity(src, "targetAverageValue")},
            }),
        );
    }
    for key in ["resource", "containerResource"] {
        if let Some(src) = field(m, key) {
            let mut target = Map::new();
            let kind = if field(src, "targetAverageUtilization").is_some() {
                "Utilization"
            } else {
                "AverageValue"
            };
            target.insert("type".into(), json!(kind));
            copy(
                &mut target,
                "averageUtilization",
                src,
                "targetAverageUtilization",
            );
            copy(&mut target, "averageValue", src, "targetAverageValue");
            let mut v = Map::new();
            v.insert("name".into(), string(src, "name"));
            if key == "containerResource" {
                v.insert("container".into(), string(src, "container"));
            }
            v.insert("target".into(), Value::Object(target));
            out.insert(key.into(), Value::Object(v));
        }
    }
    if let Some(src) = field(m, "external") {
        let mut target = Map::new();
        let kind = if field(src, "targetValue").is_some() {
            "Value"
        } else {
            "AverageValue"
        };
        target.insert("type".into(), json!(kind));
        copy(&mut target, "value", src, "targetValue");
        copy(&mut target, "averageValue", src, "targetAverageValue");
        out.insert(
            "external".into(),
            json!({"metric": identifier(src, "metricSelector"), "target": target}),
        );
    }
    Value::Object(out)
}

/// v1 `MetricStatus` -> v2 `MetricStatus`.
fn metric_status_to_v2(m: &Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), string(m, "type"));
    let empty = json!({});
    if let Some(src) = field(m, "object") {
        let mut current = Map::new();
        current.insert("value".into(), quantity(src, "currentValue"));
        copy(&mut current, "averageValue", src, "averageValue");
        out.insert(
            "object".into(),
            json!({
                "describedObject": object_ref(field(src, "target").unwrap_or(&empty)),
                "metric": identifier(src, "selector"),
                "current": current,
            }),
        );
    }
    if let Some(src) = field(m, "pods") {
        out.insert(
            "pods".into(),
            json!({
                "metric": identifier(src, "selector"),
                "current": {"averageValue": quantity(src, "currentAverageValue")},
            }),
        );
    }
    for key in ["resource", "containerResource"] {
        if let Some(src) = field(m, key) {
            let mut current = Map::new();
            current.insert("averageValue".into(), quantity(src, "currentAverageValue"));
            copy(
                &mut current,
                "averageUtilization",
                src,
                "currentAverageUtilization",
            );
            let mut v = Map::new();
            v.insert("name".into(), string(src, "name"));
            if key == "containerResource" {
                v.insert("container".into(), string(src, "container"));
            }
            v.insert("current".into(), Value::Object(current));
            out.insert(key.into(), Value::Object(v));
        }
    }
    if let Some(src) = field(m, "external") {
        let mut current = Map::new();
        current.insert("value".into(), quantity(src, "currentValue"));
        copy(&mut current, "averageValue", src, "currentAverageValue");
        out.insert(
            "external".into(),
            json!({"metric": identifier(src, "metricSelector"), "current": current}),
        );
    }
    Value::Object(out)
}

/// The behavior as Go marshals the internal type: Go field names, `null` for unset
/// pointers and lists.
fn behavior_to_annotation(b: &Value) -> Value {
    let rules = |r: Option<&Value>| -> Value {
        let Some(r) = r.filter(|r| r.is_object()) else {
            return Value::Null;
        };
        let policies = match field(r, "policies").and_then(Value::as_array) {
            Some(ps) => Value::Array(
                ps.iter()
                    .map(|p| {
                        json!({
                            "Type": string(p, "type"),
                            "Value": field(p, "value").cloned().unwrap_or(json!(0)),
                            "PeriodSeconds": field(p, "periodSeconds").cloned().unwrap_or(json!(0)),
                        })
                    })
                    .collect(),
            ),
            None => Value::Null,
        };
        let mut out = Map::new();
        out.insert(
            "StabilizationWindowSeconds".into(),
            field(r, "stabilizationWindowSeconds")
                .cloned()
                .unwrap_or(Value::Null),
        );
        out.insert(
            "SelectPolicy".into(),
            field(r, "selectPolicy").cloned().unwrap_or(Value::Null),
        );
        out.insert("Policies".into(), policies);
        // Newer than the Go type drover follows (1.32); kept so nothing is lost.
        copy(&mut out, "Tolerance", r, "tolerance");
        Value::Object(out)
    };
    json!({"ScaleUp": rules(b.get("scaleUp")), "ScaleDown": rules(b.get("scaleDown"))})
}

/// `encoding/json`'s key matching: exact, else case-insensitive.
fn get_ci<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    map.get(key)
        .or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

/// The inverse of [`behavior_to_annotation`]; `Err` names what is malformed.
fn behavior_from_annotation(b: &Value) -> Result<Value, &'static str> {
    if !b.is_object() {
        return Err("must be a JSON object");
    }
    let rules = |r: &Value| -> Result<Value, &'static str> {
        if !r.is_object() {
            return Err("scaling rules must be JSON objects");
        }
        let mut out = Map::new();
        if let Some(w) = get_ci(r, "StabilizationWindowSeconds") {
            out.insert("stabilizationWindowSeconds".into(), int32(w)?);
        }
        if let Some(p) = get_ci(r, "SelectPolicy") {
            out.insert("selectPolicy".into(), str_value(p)?);
        }
        if let Some(ps) = get_ci(r, "Policies") {
            let ps = ps.as_array().ok_or("policies must be a JSON array")?;
            let converted: Result<Vec<Value>, &'static str> = ps
                .iter()
                .map(|p| {
                    Ok(json!({
                        "type": get_ci(p, "Type").map(str_value).transpose()?.unwrap_or(json!("")),
                        "value": get_ci(p, "Value").map(int32).transpose()?.unwrap_or(json!(0)),
                        "periodSeconds": get_ci(p, "PeriodSeconds").map(int32).transpose()?.unwrap_or(json!(0)),
                    }))
                })
                .collect();
            out.insert("policies".into(), Value::Array(converted?));
        }
        if let Some(t) = get_ci(r, "Tolerance") {
            out.insert("tolerance".into(), t.clone());
        }
        Ok(Value::Object(out))
    };
    let mut out = Map::new();
    if let Some(r) = get_ci(b, "ScaleUp") {
        out.insert("scaleUp".into(), rules(r)?);
    }
    if let Some(r) = get_ci(b, "ScaleDown") {
        out.insert("scaleDown".into(), rules(r)?);
    }
    Ok(Value::Object(out))
}

fn int32(v: &Value) -> Result<Value, &'static str> {
    v.as_i64()
        .filter(|n| i32::try_from(*n).is_ok())
        .map(|n| json!(n))
        .ok_or("integers must be 32-bit integers")
}

fn str_value(v: &Value) -> Result<Value, &'static str> {
    v.as_str().map(|s| json!(s)).ok_or("must be a string")
}

/// Stored `autoscaling/v2` -> `autoscaling/v1` (`Convert_autoscaling_HorizontalPodAutoscaler_To_v1_...`).
pub(super) fn v2_to_v1(v2: &Value) -> Value {
    let mut out = match v2 {
        Value::Object(_) => v2.clone(),
        _ => json!({}),
    };
    out["apiVersion"] = json!(V1);
    drop_round_trip_annotations(&mut out);
    let empty = json!({});
    let spec = field(v2, "spec").unwrap_or(&empty);
    let metrics: &[Value] = field(spec, "metrics")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);

    let mut v1_spec = Map::new();
    v1_spec.insert(
        "scaleTargetRef".into(),
        object_ref(field(spec, "scaleTargetRef").unwrap_or(&empty)),
    );
    copy(&mut v1_spec, "minReplicas", spec, "minReplicas");
    v1_spec.insert(
        "maxReplicas".into(),
        field(spec, "maxReplicas").cloned().unwrap_or(json!(0)),
    );
    // The first cpu Resource metric decides, with or without a utilization.
    if let Some(cpu) = metrics.iter().find(|m| is_cpu_resource(m))
        && let Some(percent) = cpu
            .pointer("/resource/target/averageUtilization")
            .filter(|v| !v.is_null())
    {
        v1_spec.insert("targetCPUUtilizationPercentage".into(), percent.clone());
    }
    out["spec"] = Value::Object(v1_spec);

    let status = field(v2, "status");
    let current: &[Value] = status
        .and_then(|s| field(s, "currentMetrics"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let conditions: &[Value] = status
        .and_then(|s| field(s, "conditions"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    if let Some(status) = status {
        let mut v1_status = Map::new();
        copy(
            &mut v1_status,
            "observedGeneration",
            status,
            "observedGeneration",
        );
        copy(&mut v1_status, "lastScaleTime", status, "lastScaleTime");
        for key in ["currentReplicas", "desiredReplicas"] {
            v1_status.insert(key.into(), field(status, key).cloned().unwrap_or(json!(0)));
        }
        // No early exit in Kubernetes: the last cpu utilization wins.
        if let Some(u) = current
            .iter()
            .filter(|m| is_cpu_resource(m))
            .filter_map(|m| m.pointer("/resource/current/averageUtilization"))
            .rfind(|v| !v.is_null())
        {
            v1_status.insert("currentCPUUtilizationPercentage".into(), u.clone());
        }
        out["status"] = Value::Object(v1_status);
    }

    let others: Vec<Value> = metrics
        .iter()
        .filter(|m| !is_cpu_utilization(m))
        .map(metric_spec_to_v1)
        .collect();
    if !others.is_empty() {
        set_annotation(&mut out, METRICS_ANNOTATION, &Value::Array(others));
    }
    if !current.is_empty() {
        let statuses = current.iter().map(metric_status_to_v1).collect();
        set_annotation(
            &mut out,
            CURRENT_METRICS_ANNOTATION,
            &Value::Array(statuses),
        );
    }
    if !conditions.is_empty() {
        set_annotation(
            &mut out,
            CONDITIONS_ANNOTATION,
            &Value::Array(conditions.to_vec()),
        );
    }
    if let Some(b) = field(spec, "behavior") {
        set_annotation(&mut out, BEHAVIOR_ANNOTATION, &behavior_to_annotation(b));
    }
    out
}

/// Checks the JSON types of the fields v1 declares, so a wrong type is a field error in
/// v1's terms rather than garbage in v2.
fn check_v1_types(v1: &Value, errs: &mut Vec<FieldError>) {
    let render = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut wrong = |path: &str, v: &Value, expected: &str| {
        errs.push(FieldError::invalid(
            path,
            render(v),
            format!("must be {expected}"),
        ));
    };
    let is_int32 = |v: &Value| v.as_i64().is_some_and(|n| i32::try_from(n).is_ok());
    let check_obj =
        |path: &str, v: Option<&Value>, wrong: &mut dyn FnMut(&str, &Value, &str)| match v {
            Some(v) if !v.is_null() && !v.is_object() => {
                wrong(path, v, "an object");
                false
            }
            Some(v) => v.is_object(),
            None => false,
        };
    if check_obj("spec", v1.get("spec"), &mut wrong) {
        let spec = &v1["spec"];
        if check_obj(
            "spec.scaleTargetRef",
            spec.get("scaleTargetRef"),
            &mut wrong,
        ) {
            for key in ["kind", "name", "apiVersion"] {
                if let Some(v) = field(&spec["scaleTargetRef"], key)
                    && !v.is_string()
                {
                    wrong(&format!("spec.scaleTargetRef.{key}"), v, "a string");
                }
            }
        }
        for key in [
            "minReplicas",
            "maxReplicas",
            "targetCPUUtilizationPercentage",
        ] {
            if let Some(v) = field(spec, key)
                && !is_int32(v)
            {
                wrong(&format!("spec.{key}"), v, "a 32-bit integer");
            }
        }
    }
    if check_obj("status", v1.get("status"), &mut wrong) {
        let status = &v1["status"];
        for key in [
            "currentReplicas",
            "desiredReplicas",
            "currentCPUUtilizationPercentage",
        ] {
            if let Some(v) = field(status, key)
                && !is_int32(v)
            {
                wrong(&format!("status.{key}"), v, "a 32-bit integer");
            }
        }
        if let Some(v) = field(status, "observedGeneration")
            && !v.is_i64()
        {
            wrong("status.observedGeneration", v, "an integer");
        }
        if let Some(v) = field(status, "lastScaleTime")
            && !v.is_string()
        {
            wrong("status.lastScaleTime", v, "a string");
        }
    }
}

/// A round-trip annotation's value parsed as JSON, or the field error saying it is not.
fn annotation_json(
    v1: &Value,
    key: &str,
    errs: &mut Vec<FieldError>,
    expect_array: bool,
) -> Option<Value> {
    let raw = v1.pointer("/metadata/annotations")?.get(key)?;
    let path = format!("metadata.annotations[{key}]");
    let Some(text) = raw.as_str() else {
        errs.push(FieldError::invalid(
            path,
            raw.to_string(),
            "must be a string",
        ));
        return None;
    };
    match serde_json::from_str::<Value>(text) {
        Ok(v) if !expect_array || v.is_array() || v.is_null() => Some(v),
        Ok(_) => {
            errs.push(FieldError::invalid(path, text, "must be a JSON array"));
            None
        }
        Err(e) => {
            errs.push(FieldError::invalid(
                path,
                text,
                format!("must be JSON: {e}"),
            ));
            None
        }
    }
}

fn array_items(v: Option<Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    }
}

/// `autoscaling/v1` -> stored `autoscaling/v2` (`Convert_v1_HorizontalPodAutoscaler_To_autoscaling_...`,
/// with v1's defaulting of `minReplicas`).
pub(super) fn v1_to_v2(v1: &Value) -> Result<Value, FieldErrors> {
    let mut errs = Vec::new();
    if !v1.is_object() {
        errs.push(FieldError::invalid(
            "",
            v1.to_string(),
            "must be a JSON object",
        ));
        return Err(FieldErrors(errs));
    }
    check_v1_types(v1, &mut errs);
    let other_metrics = annotation_json(v1, METRICS_ANNOTATION, &mut errs, true);
    let current_metrics = annotation_json(v1, CURRENT_METRICS_ANNOTATION, &mut errs, true);
    let conditions = annotation_json(v1, CONDITIONS_ANNOTATION, &mut errs, true);
    let behavior = match annotation_json(v1, BEHAVIOR_ANNOTATION, &mut errs, false) {
        Some(Value::Null) | None => None,
        Some(b) => match behavior_from_annotation(&b) {
            Ok(b) => Some(b),
            Err(why) => {
                errs.push(FieldError::invalid(
                    format!("metadata.annotations[{BEHAVIOR_ANNOTATION}]"),
                    b.to_string(),
                    why,
                ));
                None
            }
        },
    };
    if !errs.is_empty() {
        return Err(FieldErrors(errs));
    }

    let mut out = v1.clone();
    out["apiVersion"] = json!(V2);
    drop_round_trip_annotations(&mut out);
    let empty = json!({});
    let spec = field(v1, "spec").unwrap_or(&empty);
    let mut v2_spec = Map::new();
    v2_spec.insert(
        "scaleTargetRef".into(),
        object_ref(field(spec, "scaleTargetRef").unwrap_or(&empty)),
    );
    v2_spec.insert(
        "minReplicas".into(),
        field(spec, "minReplicas").cloned().unwrap_or(json!(1)),
    );
    v2_spec.insert(
        "maxReplicas".into(),
        field(spec, "maxReplicas").cloned().unwrap_or(json!(0)),
    );
    // The metrics from the annotation first, then the cpu target.
    let mut metrics: Vec<Value> = array_items(other_metrics)
        .iter()
        .map(metric_spec_to_v2)
        .collect();
    if let Some(percent) = field(spec, "targetCPUUtilizationPercentage") {
        metrics.push(cpu_utilization_metric(percent));
    }
    if metrics.is_empty() {
        metrics.push(cpu_utilization_metric(&json!(DEFAULT_CPU_UTILIZATION)));
    }
    v2_spec.insert("metrics".into(), Value::Array(metrics));
    if let Some(b) = behavior {
        v2_spec.insert("behavior".into(), b);
    }
    out["spec"] = Value::Object(v2_spec);

    if let Some(status) = field(v1, "status") {
        let mut v2_status = Map::new();
        copy(
            &mut v2_status,
            "observedGeneration",
            status,
            "observedGeneration",
        );
        copy(&mut v2_status, "lastScaleTime", status, "lastScaleTime");
        // v2's `currentReplicas` is `omitempty`: a zero is not written.
        if let Some(n) = field(status, "currentReplicas").filter(|n| n.as_i64() != Some(0)) {
            v2_status.insert("currentReplicas".into(), n.clone());
        }
        v2_status.insert(
            "desiredReplicas".into(),
            field(status, "desiredReplicas")
                .cloned()
                .unwrap_or(json!(0)),
        );
        // The annotation has more than the cpu percentage: it wins.
        let current: Vec<Value> = match current_metrics {
            Some(m) => array_items(Some(m)).iter().map(metric_status_to_v2).collect(),
            None => field(status, "currentCPUUtilizationPercentage")
                .map(|u| {
                    vec![json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": u}}})]
                })
                .unwrap_or_default(),
        };
        if !current.is_empty() {
            v2_status.insert("currentMetrics".into(), Value::Array(current));
        }
        let conditions = array_items(conditions);
        if !conditions.is_empty() {
            v2_status.insert("conditions".into(), Value::Array(conditions));
        }
        out["status"] = Value::Object(v2_status);
    }
    Ok(out)
}
