//! LimitRange admission (Kubernetes' `LimitRanger` plugin): container defaults
//! (`default` -> limits, `defaultRequest` -> requests) filled into pods, then `min`, `max`
//! and `maxLimitRequestRatio` checked per container, per pod and per
//! PersistentVolumeClaim. Pure: the shell passes the namespace's LimitRanges in.

use bus_schema::quota::{ResourceList, parse_list, pod_requests_limits, render_list};
use bus_schema::validation::Quantity;
use serde_json::{Map, Value};

/// One `spec.limits[]` item, with the defaults Kubernetes fills into LimitRanges
/// (`default` from `max`, `defaultRequest` from `default` and then `min`, for Container
/// items).
#[derive(Debug, Clone, Default)]
struct Item {
    kind: String,
    min: ResourceList,
    max: ResourceList,
    default: ResourceList,
    default_request: ResourceList,
    ratio: ResourceList,
}

fn items(ranges: &[Value]) -> Vec<Item> {
    let mut out = Vec::new();
    for range in ranges {
        let limits = range.pointer("/spec/limits").and_then(Value::as_array);
        for l in limits.into_iter().flatten() {
            let mut item = Item {
                kind: l
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                min: parse_list(l.get("min")),
                max: parse_list(l.get("max")),
                default: parse_list(l.get("default")),
                default_request: parse_list(l.get("defaultRequest")),
                ratio: parse_list(l.get("maxLimitRequestRatio")),
            };
            if item.kind == "Container" {
                for (k, v) in &item.max {
                    item.default.entry(k.clone()).or_insert(*v);
                }
                for (k, v) in item.default.iter().chain(&item.min) {
                    item.default_request.entry(k.clone()).or_insert(*v);
                }
            }
            out.push(item);
        }
    }
    out
}

/// Fills container defaults into a pod (containers and init containers). A container
/// that sets a limit but no request keeps requesting its limit, as Kubernetes' pod
/// defaulting makes it do before LimitRanger runs. Returns whether anything changed.
pub fn default_pod(pod: &mut Value, ranges: &[Value]) -> bool {
    let items: Vec<Item> = items(ranges)
        .into_iter()
        .filter(|i| i.kind == "Container")
        .collect();
    if items.is_empty() {
        return false;
    }
    let mut changed = false;
    for list in ["containers", "initContainers"] {
        let Some(containers) = pod
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in containers.iter_mut().filter(|c| c.is_object()) {
            let mut limits = parse_list(c.pointer("/resources/limits"));
            let mut requests = parse_list(c.pointer("/resources/requests"));
            let before = (limits.clone(), requests.clone());
            // The first LimitRange that names a resource wins, as in Kubernetes.
            for item in &items {
                for (k, v) in &item.default {
                    limits.entry(k.clone()).or_insert(*v);
                }
            }
            for item in &items {
                for (k, v) in &item.default_request {
                    let own_limit = before.0.get(k).copied();
                    requests.entry(k.clone()).or_insert(own_limit.unwrap_or(*v));
                }
            }
            if (limits.clone(), requests.clone()) == before {
                continue;
            }
            changed = true;
            let resources = c.as_object_mut().map(|o| {
                o.entry("resources")
                    .or_insert_with(|| Value::Object(Map::new()))
            });
            if let Some(Value::Object(r)) = resources {
                merge(r, "limits", &limits);
                merge(r, "requests", &requests);
            }
        }
    }
    changed
}

/// Sets the quantities of `list` that `resources[field]` lacks, keeping the client's
/// own spelling of the ones it set.
fn merge(resources: &mut Map<String, Value>, field: &str, list: &ResourceList) {
    if list.is_empty() {
        return;
    }
    let entry = resources
        .entry(field)
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    if let (Some(map), Value::Object(rendered)) = (entry.as_object_mut(), render_list(list)) {
        for (k, v) in rendered {
            map.entry(k).or_insert(v);
        }
    }
}

fn min_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let Some(req) = requests.get(name) else {
        return Some(format!(
            "minimum {name} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if req < enforced {
        return Some(format!(
            "minimum {name} usage per {kind} is {enforced}, but request is {req}"
        ));
    }
    match limits.get(name) {
        Some(lim) if lim < enforced => Some(format!(
            "minimum {name} usage per {kind} is {enforced}, but limit is {lim}"
        )),
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let Some(lim) = limits.get(name) else {
        return Some(format!(
            "maximum {name} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if lim > enforced {
        return Some(format!(
            "maximum {name} usage per {kind} is {enforced}, but limit is {lim}"
        ));
    }
    match requests.get(name) {
        Some(req) if req > enforced => Some(format!(
            "maximum {name} usage per {kind} is {enforced}, but request is {req}"
        )),
        _ => None,
    }
}

fn ratio_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let req = requests.get(name).map_or(0, Quantity::milli_value);
    let lim = limits.get(name).map_or(0, Quantity::milli_value);
    if req == 0 {
        return Some(format!(
            "{name} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
        ));
    }
    if lim == 0 {
        return Some(format!(
            "{name} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
        ));
    }
    // lim / req > enforced, compared exactly in integers.
    if lim * 1000 > enforced.milli_value() * req {
        return Some(format!(
            "{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {:.6}",
            lim as f64 / req as f64
        ));
    }
    None
}

/// The checks of one item against one set of requests and limits.
fn check_item(
    item: &Item,
    requests: &ResourceList,
    limits: &ResourceList,
    suffix: &str,
    out: &mut Vec<String>,
) {
    let kind = item.kind.as_str();
    let mut push = |e: Option<String>| {
        if let Some(e) = e {
            out.push(format!("{e}{suffix}"));
        }
    };
    for (name, q) in &item.min {
        push(min_constraint(kind, name, q, requests, limits));
    }
    for (name, q) in &item.max {
        push(max_constraint(kind, name, q, requests, limits));
    }
    for (name, q) in &item.ratio {
        push(ratio_constraint(kind, name, q, requests, limits));
    }
}

/// Every violation of a (defaulted) pod, in Kubernetes' words; a container's violation
/// names the container.
pub fn validate_pod(pod: &Value, ranges: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for item in items(ranges) {
        match item.kind.as_str() {
            "Container" => {
                for list in ["containers", "initContainers"] {
                    let containers = pod
                        .pointer(&format!("/spec/{list}"))
                        .and_then(Value::as_array);
                    for c in containers.into_iter().flatten() {
                        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                        check_item(
                            &item,
                            &parse_list(c.pointer("/resources/requests")),
                            &parse_list(c.pointer("/resources/limits")),
                            &format!(" (container {name:?})"),
                            &mut out,
                        );
                    }
                }
            }
            "Pod" => {
                let (requests, limits) = pod_requests_limits(pod);
                check_item(&item, &requests, &limits, "", &mut out);
            }
            _ => {}
        }
    }
    out
}

/// Every violation of a PersistentVolumeClaim's storage request.
pub fn validate_pvc(pvc: &Value, ranges: &[Value]) -> Vec<String> {
    let requests = parse_list(pvc.pointer("/spec/resources/requests"));
    let mut out = Vec::new();
    for item in items(ranges)
        .iter()
        .filter(|i| i.kind == "PersistentVolumeClaim")
    {
        let kind = item.kind.as_str();
        for (name, min) in &item.min {
            match requests.get(name) {
                None => out.push(format!(
                    "minimum {name} usage per {kind} is {min}.  No request is specified"
                )),
                Some(req) if req < min => out.push(format!(
                    "minimum {name} usage per {kind} is {min}, but request is {req}"
                )),
                Some(_) => {}
            }
        }
        for (name, max) in &item.max {
            match requests.get(name) {
                None => out.push(format!(
                    "maximum {name} usage per {kind} is {max}.  No request is specified"
                )),
                Some(req) if req > max => out.push(format!(
                    "maximum {name} usage per {kind} is {max}, but request is {req}"
                )),
                Some(_) => {}
            }
        }
    }
    out
}

/// Kubernetes' aggregate error text: one error as it is, several in brackets.
pub fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests;
