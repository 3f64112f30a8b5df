//! `fieldValidation` (Strict / Warn / Ignore): what happens to fields a body carries that
//! the kind's schema does not declare.
//!
//! As in Kubernetes: `Strict` refuses the request (400, every unknown field named by its
//! path), `Warn` (the default) drops them and says so in `Warning` headers, `Ignore` drops
//! them silently. Unknown fields are never stored. Checked against the same schemas
//! `/openapi` serves; schema-less parts (`x-kubernetes-preserve-unknown-fields`, free-form
//! maps, RawExtension) accept anything. Bodies of create, update and the object-shaped
//! patches (merge, strategic merge, apply) are checked; patch directives (`$patch`,
//! `$setElementOrder/...`) are not fields. JSON patches are not checked (their paths
//! address the object; Kubernetes checks the result, drover does not yet).

use std::collections::HashMap;

use bus_schema::KindInfo;
use serde_json::{Map, Value};

use crate::status::ApiError;

/// What to do with unknown fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Drop them silently.
    Ignore,
    /// Drop them and warn (Kubernetes' default).
    Warn,
    /// Refuse the request.
    Strict,
}

/// Reads `fieldValidation` from the query; a value Kubernetes does not know is a 400.
pub fn mode(q: &HashMap<String, String>) -> Result<Mode, ApiError> {
    match q.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => Ok(Mode::Warn),
        Some("Ignore") => Ok(Mode::Ignore),
        Some("Strict") => Ok(Mode::Strict),
        Some(other) => Err(ApiError::bad_request(format!(
            "fieldValidation parameter unsupported: {other}; valid values are Ignore, Warn and Strict"
        ))),
    }
}

/// Nesting deeper than this is not checked (bodies are bounded by the 3 MiB limit; this
/// bounds the recursion).
const MAX_DEPTH: usize = 64;

/// Removes from `obj` every field the schema of `kind` does not declare; returns their
/// paths (`spec.containers[0].imagePullPolcy`), in document order.
pub fn prune_unknown(kind: &KindInfo, obj: &mut Value) -> Vec<String> {
    let set = crate::openapi::schema_set();
    let Some(root) = set
        .kinds
        .iter()
        .find(|k| std::ptr::eq(k.kind, kind))
        .and_then(|k| set.definitions.get(&k.object))
    else {
        return Vec::new();
    };
    let mut found = Vec::new();
    walk(&set.definitions, root, obj, "", 0, &mut found);
    found
}

/// Follows `$ref`s and single-schema `allOf`/`anyOf`/`oneOf` wrappers to the schema that
/// says what a value holds.
fn resolve<'a>(
    defs: &'a std::collections::BTreeMap<String, Value>,
    mut schema: &'a Value,
) -> &'a Value {
    for _ in 0..16 {
        if let Some(name) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.rsplit('/').next())
        {
            match defs.get(name) {
                Some(s) => {
                    schema = s;
                    continue;
                }
                None => return &Value::Null,
            }
        }
        let wrapped = ["allOf", "anyOf", "oneOf"].iter().find_map(|k| {
            let options: Vec<&Value> = schema
                .get(*k)?
                .as_array()?
                .iter()
                .filter(|s| s.get("type").and_then(Value::as_str) != Some("null"))
                .collect();
            (options.len() == 1).then(|| options[0])
        });
        match wrapped {
            Some(inner) => schema = inner,
            None => return schema,
        }
    }
    schema
}

fn walk(
    defs: &std::collections::BTreeMap<String, Value>,
    schema: &Value,
    value: &mut Value,
    path: &str,
    depth: usize,
    found: &mut Vec<String>,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let schema = resolve(defs, schema);
    if schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                check_object(defs, properties, map, path, depth, found);
            } else if let Some(values) =
                schema.get("additionalProperties").filter(|v| v.is_object())
            {
                for (key, v) in map.iter_mut() {
                    walk(defs, values, v, &format!("{path}[{key}]"), depth + 1, found);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    walk(
                        defs,
                        item_schema,
                        v,
                        &format!("{path}[{i}]"),
                        depth + 1,
                        found,
                    );
                }
            }
        }
        _ => {}
    }
}

fn check_object(
    defs: &std::collections::BTreeMap<String, Value>,
    properties: &Map<String, Value>,
    map: &mut Map<String, Value>,
    path: &str,
    depth: usize,
    found: &mut Vec<String>,
) {
    let mut unknown = Vec::new();
    for (key, v) in map.iter_mut() {
        let child = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        // Strategic-merge and apply directives are instructions, not fields.
        if key.starts_with('$') || (path.is_empty() && (key == "apiVersion" || key == "kind")) {
            continue;
        }
        match properties.get(key) {
            Some(s) => walk(defs, s, v, &child, depth + 1, found),
            None => {
                found.push(child);
                unknown.push(key.clone());
            }
        }
    }
    for key in unknown {
        map.remove(&key);
    }
}

/// Applies `mode` to a body: the pruned body and the warnings to send, or the 400 of a
/// Strict request with unknown fields.
pub fn check(kind: &KindInfo, mode: Mode, body: &mut Value) -> Result<Vec<String>, ApiError> {
    let unknown = prune_unknown(kind, body);
    if unknown.is_empty() || mode == Mode::Ignore {
        return Ok(Vec::new());
    }
    let listed: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect();
    match mode {
        Mode::Strict => Err(ApiError::bad_request(format!(
            "{kind_name} in version {version:?} cannot be handled as a {kind_name}: strict decoding error: {fields}",
            kind_name = kind.kind,
            version = kind.version,
            fields = listed.join(", ")
        ))),
        _ => Ok(listed),
    }
}

/// A `Warning` header value (RFC 7234 warn-code 299, as the apiserver sends).
pub fn warning_header(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("299 - \"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn kind(k: &str) -> &'static KindInfo {
        bus_schema::kinds::KINDS
            .iter()
            .find(|i| i.kind == k)
            .unwrap()
    }

    #[test]
    fn unknown_fields_are_found_by_path_and_pruned() {
        let cases = [
            (
                "Pod",
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"any": "thing"}},
                    "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolcy": "x", "ports": [{"containerPort": 80, "hostPot": 1}]}],
                        "nodeSelector": {"k": "v"}, "bogus": true}}),
                vec![
                    "spec.bogus",
                    "spec.containers[0].imagePullPolcy",
                    "spec.containers[0].ports[0].hostPot",
                ],
            ),
            (
                "ConfigMap",
                json!({"metadata": {"name": "c", "nmae": "x"}, "data": {"a": "b"}, "extra": 1}),
                vec!["extra", "metadata.nmae"],
            ),
            (
                "Deployment",
                json!({"spec": {"replicas": 1, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "1"}}}]}},
                    "selector": {"matchLabels": {"a": "b"}}, "$setElementOrder/x": []}}),
                vec![],
            ),
            (
                "Service",
                json!({"spec": {"ports": [{"port": 80, "targetPort": "http"}], "selector": {"a": "b"}}}),
                vec![],
            ),
        ];
        for (k, mut obj, want) in cases {
            let mut got = prune_unknown(kind(k), &mut obj);
            got.sort();
            assert_eq!(got, want, "{k}");
            assert!(prune_unknown(kind(k), &mut obj).is_empty(), "{k}: pruned");
        }
    }

    #[test]
    fn modes() {
        let body = || json!({"metadata": {"name": "c"}, "extra": 1});
        let cm = kind("ConfigMap");
        let mut b = body();
        assert!(check(cm, Mode::Ignore, &mut b).unwrap().is_empty());
        assert!(b.get("extra").is_none());
        let mut b = body();
        assert_eq!(
            check(cm, Mode::Warn, &mut b).unwrap(),
            vec!["unknown field \"extra\""]
        );
        let err = check(cm, Mode::Strict, &mut body()).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(
            err.message
                .contains("strict decoding error: unknown field \"extra\""),
            "{}",
            err.message
        );
        let q = |v: &str| HashMap::from([("fieldValidation".to_string(), v.to_string())]);
        assert_eq!(mode(&HashMap::new()).unwrap(), Mode::Warn);
        assert_eq!(mode(&q("Strict")).unwrap(), Mode::Strict);
        assert_eq!(mode(&q("strict")).unwrap_err().code, 400);
        assert_eq!(
            warning_header("unknown field \"a\""),
            "299 - \"unknown field \\\"a\\\"\""
        );
    }
}
