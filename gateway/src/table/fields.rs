//! Reading fields of wire-shape JSON without trusting it: every accessor has a default that
//! is what a Go printer sees for an absent field (empty string, zero, empty list), so a
//! missing or wrongly typed field can never panic a printer.

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::duration::human_duration_between;

/// The value at a JSON pointer (`/spec/nodeName`), unless absent or `null`.
pub(super) fn at<'a>(value: &'a Value, pointer: &str) -> Option<&'a Value> {
    value.pointer(pointer).filter(|v| !v.is_null())
}

/// The string at `pointer`, if it is one.
pub(super) fn opt_str<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    at(value, pointer).and_then(Value::as_str)
}

/// The string at `pointer`, or `""`.
pub(super) fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    opt_str(value, pointer).unwrap_or("")
}

/// The string at `pointer`, or `default` when absent or empty.
pub(super) fn str_or<'a>(value: &'a Value, pointer: &str, default: &'a str) -> &'a str {
    match str_at(value, pointer) {
        "" => default,
        s => s,
    }
}

/// The integer at `pointer`, if it is a number. Fractions are truncated, as a lenient
/// decoder would; integers beyond `i64` saturate.
pub(super) fn opt_int(value: &Value, pointer: &str) -> Option<i64> {
    let v = at(value, pointer)?;
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    if v.as_u64().is_some() {
        return Some(i64::MAX);
    }
    // `as` saturates and maps NaN to 0, which is the lenient reading we want.
    v.as_f64().map(|f| f as i64)
}

/// The integer at `pointer`, or 0.
pub(super) fn int_at(value: &Value, pointer: &str) -> i64 {
    opt_int(value, pointer).unwrap_or(0)
}

/// The boolean at `pointer`, if it is one.
pub(super) fn opt_bool(value: &Value, pointer: &str) -> Option<bool> {
    at(value, pointer).and_then(Value::as_bool)
}

/// The boolean at `pointer`, or `false`.
pub(super) fn bool_at(value: &Value, pointer: &str) -> bool {
    opt_bool(value, pointer).unwrap_or(false)
}

/// The array at `pointer`, or an empty slice.
pub(super) fn arr_at<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    match at(value, pointer) {
        Some(Value::Array(items)) => items,
        _ => &[],
    }
}

/// The object at `pointer`, if it is one.
pub(super) fn obj_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a Map<String, Value>> {
    at(value, pointer).and_then(Value::as_object)
}

/// Whether `pointer` names an object: a Go pointer-to-struct field that is set.
pub(super) fn has_obj(value: &Value, pointer: &str) -> bool {
    obj_at(value, pointer).is_some()
}

/// How many entries the map (or list) at `pointer` has; 0 for anything else.
pub(super) fn len_at(value: &Value, pointer: &str) -> usize {
    match at(value, pointer) {
        Some(Value::Object(map)) => map.len(),
        Some(Value::Array(items)) => items.len(),
        _ => 0,
    }
}

/// The RFC 3339 timestamp at `pointer`, if present and parseable.
pub(super) fn time_at(value: &Value, pointer: &str) -> Option<Timestamp> {
    opt_str(value, pointer).and_then(|s| s.parse().ok())
}

/// `metadata.name`, or `""`.
pub(super) fn name(object: &Value) -> &str {
    str_at(object, "/metadata/name")
}

/// `metadata.creationTimestamp`, if set.
pub(super) fn creation_timestamp(object: &Value) -> Option<Timestamp> {
    time_at(object, "/metadata/creationTimestamp")
}

/// Whether `metadata.deletionTimestamp` is set: deletion has been requested.
pub(super) fn is_deleting(object: &Value) -> bool {
    at(object, "/metadata/deletionTimestamp").is_some()
}

/// A label or annotation value; keys contain `/`, so they cannot go in a pointer.
pub(super) fn meta_entry<'a>(object: &'a Value, map: &str, key: &str) -> Option<&'a str> {
    obj_at(object, &format!("/metadata/{map}"))?
        .get(key)
        .and_then(Value::as_str)
}

/// Time elapsed from `time` to `now` (`translateTimestampSince`), `<unknown>` without one.
pub(super) fn since(time: Option<Timestamp>, now: Timestamp) -> String {
    match time {
        Some(t) => human_duration_between(t, now),
        None => "<unknown>".to_string(),
    }
}

/// The AGE cell: time since `metadata.creationTimestamp`.
pub(super) fn age(object: &Value, now: Timestamp) -> String {
    since(creation_timestamp(object), now)
}

/// A `resource.Quantity` as printed, `"0"` when absent (the zero quantity).
pub(super) fn quantity(value: Option<&Value>) -> String {
    quantity_or(value, "0")
}

/// A `resource.Quantity` as printed, `absent` when missing. Quantities arrive in canonical
/// form from the API, so the wire string is what `Quantity.String()` would produce.
pub(super) fn quantity_or(value: Option<&Value>, absent: &str) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => absent.to_string(),
    }
}

/// An `IntOrString` as printed (`2`, `50%`), if present.
pub(super) fn int_or_string(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.as_i64().map_or_else(|| n.to_string(), |i| i.to_string())),
        _ => None,
    }
}

/// Comma-joined container names and images of a pod spec (`layoutContainerCells`).
pub(super) fn container_cells(pod_spec: Option<&Value>) -> (String, String) {
    let containers = pod_spec.map_or(&[][..], |spec| arr_at(spec, "/containers"));
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, "/image")).collect();
    (names.join(","), images.join(","))
}
