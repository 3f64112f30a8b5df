//! Rules for drover's own kinds (`drover.io/v1`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::names::name_is_dns1035_label;
use super::value::Ctx;
use super::{FieldError, FieldPath};

/// Spec rule for `TrafficSplit`: a root service and backends with `u32` weights, every
/// service name a valid Service name, no backend twice.
pub(super) fn validate_traffic_split(cx: &mut Ctx, spec: Option<&Value>, path: &FieldPath) {
    let Some(spec) = cx.obj_at(spec, path) else {
        if spec.is_none_or(Value::is_null) {
            cx.push(FieldError::required(path));
        }
        return;
    };
    check_service_name(cx, spec.get("service"), &path.child("service"));
    let mut seen = BTreeSet::new();
    for (backend_path, backend) in cx.obj_items_at(spec.get("backends"), &path.child("backends")) {
        let service_path = backend_path.child("service");
        if let Some(service) = check_service_name(cx, backend.get("service"), &service_path)
            && !seen.insert(service)
        {
            cx.push(FieldError::duplicate(&service_path, service));
        }
        let weight_path = backend_path.child("weight");
        match cx.int_at(backend.get("weight"), &weight_path) {
            None if backend.get("weight").is_none_or(Value::is_null) => {
                cx.push(FieldError::required(&weight_path));
            }
            Some(weight) if u32::try_from(weight).is_err() => cx.push(FieldError::invalid(
                &weight_path,
                weight.to_string(),
                format!("must be between 0 and {}, inclusive", u32::MAX),
            )),
            _ => {}
        }
    }
}

/// A required Service name; returns it when present.
fn check_service_name<'a>(
    cx: &mut Ctx,
    value: Option<&'a Value>,
    path: &FieldPath,
) -> Option<&'a str> {
    let name = cx.str_at(value, path).unwrap_or("");
    if name.is_empty() {
        if value.is_none_or(Value::is_null) || value.is_some_and(Value::is_string) {
            cx.push(FieldError::required(path));
        }
        return None;
    }
    for msg in name_is_dns1035_label(name, false) {
        cx.push(FieldError::invalid(path, name, msg));
    }
    Some(name)
}
