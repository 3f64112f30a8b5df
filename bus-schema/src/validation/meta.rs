//! `metadata` rules shared by every kind (Kubernetes' `ValidateObjectMeta`), plus the label,
//! annotation and label-selector rules that specs reuse.

use serde_json::Value;

use super::names::{name_is_dns1035_label, name_is_dns1123_label, name_is_dns1123_subdomain};
use super::value::{Ctx, Obj, get, is_blank};
use super::{FieldError, FieldPath, is_dns1123_label, is_qualified_name, is_valid_label_value};
use crate::kinds::KindInfo;

/// Annotations may total this many bytes of keys and values.
pub(super) const TOTAL_ANNOTATION_SIZE_LIMIT_BYTES: usize = 256 * 1024;

/// What later rules need to know about the metadata.
#[derive(Debug, Default)]
pub(super) struct MetaFacts {
    /// `metadata.name`, when it is a string.
    pub name: Option<String>,
}

type NameRule = fn(&str, bool) -> Vec<String>;

/// The rule object names of `kind` follow.
fn name_rule(kind: &KindInfo) -> NameRule {
    match (kind.group, kind.kind) {
        ("", "Namespace") => name_is_dns1123_label,
        // Kubernetes requires a DNS-1035 label (leading letter) for services, because the
        // name becomes an environment variable prefix and a DNS label.
        ("", "Service") => name_is_dns1035_label,
        _ => name_is_dns1123_subdomain,
    }
}

/// Checks `metadata` and returns the facts later rules need.
pub(super) fn validate_object_meta(cx: &mut Ctx, kind: &KindInfo, root: &Obj) -> MetaFacts {
    let path = FieldPath::new("metadata");
    let meta = cx.obj_at(root.get("metadata"), &path);
    let rule = name_rule(kind);

    let generate_name_path = path.child("generateName");
    let generate_name = cx
        .str_at(get(meta, "generateName"), &generate_name_path)
        .unwrap_or("");
    if !generate_name.is_empty() {
        for msg in rule(generate_name, true) {
            cx.push(FieldError::invalid(&generate_name_path, generate_name, msg));
        }
    }

    let name_path = path.child("name");
    let raw_name = get(meta, "name");
    let name = cx.str_at(raw_name, &name_path).unwrap_or("");
    if name.is_empty() {
        // The store fills the name in from generateName before it stores the object.
        if generate_name.is_empty() && is_blank(raw_name) {
            cx.push(
                FieldError::required(&name_path).with_detail("name or generateName is required"),
            );
        }
    } else {
        for msg in rule(name, false) {
            cx.push(FieldError::invalid(&name_path, name, msg));
        }
    }

    let namespace_path = path.child("namespace");
    let namespace = cx
        .str_at(get(meta, "namespace"), &namespace_path)
        .unwrap_or("");
    if !namespace.is_empty() {
        if kind.namespaced {
            for msg in is_dns1123_label(namespace) {
                cx.push(FieldError::invalid(&namespace_path, namespace, msg));
            }
        } else {
            cx.push(FieldError::forbidden(
                &namespace_path,
                "not allowed on this type",
            ));
        }
    }

    let generation_path = path.child("generation");
    if let Some(generation) = cx.int_at(get(meta, "generation"), &generation_path) {
        validate_nonnegative(cx, generation, &generation_path);
    }

    validate_labels(cx, get(meta, "labels"), &path.child("labels"));
    validate_annotations(cx, get(meta, "annotations"), &path.child("annotations"));
    validate_owner_references(
        cx,
        get(meta, "ownerReferences"),
        &path.child("ownerReferences"),
    );

    let finalizers_path = path.child("finalizers");
    for finalizer in cx.str_list_at(get(meta, "finalizers"), &finalizers_path) {
        for msg in is_qualified_name(finalizer) {
            cx.push(FieldError::invalid(&finalizers_path, finalizer, msg));
        }
    }

    MetaFacts {
        name: (!name.is_empty()).then(|| name.to_string()),
    }
}

/// `must be greater than or equal to 0` for a negative `value`.
pub(super) fn validate_nonnegative(cx: &mut Ctx, value: i64, path: &FieldPath) {
    if value < 0 {
        cx.push(FieldError::invalid(
            path,
            value.to_string(),
            "must be greater than or equal to 0",
        ));
    }
}

/// Label keys must be qualified names and values valid label values; like Kubernetes, both
/// kinds of error are reported at the map's path with the key or value as the bad value.
/// Returns the well-typed entries.
pub(super) fn validate_labels<'a>(
    cx: &mut Ctx,
    labels: Option<&'a Value>,
    path: &FieldPath,
) -> Vec<(&'a str, &'a str)> {
    let entries = cx.str_map_at(labels, path);
    for (key, value) in &entries {
        for msg in is_qualified_name(key) {
            cx.push(FieldError::invalid(path, *key, msg));
        }
        for msg in is_valid_label_value(value) {
            cx.push(FieldError::invalid(path, *value, msg));
        }
    }
    entries
}

/// Annotation keys are qualified names (case-insensitively) and all keys and values together
/// may not exceed 256 KiB.
pub(super) fn validate_annotations(cx: &mut Ctx, annotations: Option<&Value>, path: &FieldPath) {
    let entries = cx.str_map_at(annotations, path);
    let mut total_bytes = 0usize;
    for (key, value) in &entries {
        for msg in is_qualified_name(&key.to_lowercase()) {
            cx.push(FieldError::invalid(path, *key, msg));
        }
        total_bytes = total_bytes.saturating_add(key.len() + value.len());
    }
    if total_bytes > TOTAL_ANNOTATION_SIZE_LIMIT_BYTES {
        cx.push(FieldError::too_long(
            path,
            TOTAL_ANNOTATION_SIZE_LIMIT_BYTES,
        ));
    }
}

/// Owner references need apiVersion, kind, name and uid, and at most one may be the
/// controller. Kubernetes reports these at the list's path, without an index.
fn validate_owner_references(cx: &mut Ctx, refs: Option<&Value>, path: &FieldPath) {
    let mut controllers = Vec::new();
    for (item_path, owner) in cx.obj_items_at(refs, path) {
        let api_version = cx
            .str_at(owner.get("apiVersion"), &item_path.child("apiVersion"))
            .unwrap_or("");
        let version = api_version.rsplit_once('/').map_or(api_version, |(_, v)| v);
        if version.is_empty() {
            cx.push(FieldError::invalid(
                path.child("apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        for field in ["kind", "name", "uid"] {
            let value = cx
                .str_at(owner.get(field), &item_path.child(field))
                .unwrap_or("");
            if value.is_empty() {
                cx.push(FieldError::invalid(
                    path.child(field),
                    value,
                    "must not be empty",
                ));
            }
        }
        let is_controller = cx
            .bool_at(owner.get("controller"), &item_path.child("controller"))
            .unwrap_or(false);
        if is_controller {
            let kind = owner.get("kind").and_then(Value::as_str).unwrap_or("");
            let name = owner.get("name").and_then(Value::as_str).unwrap_or("");
            controllers.push(format!("{kind}/{name}"));
        }
    }
    if controllers.len() > 1 {
        cx.push(FieldError::invalid(
            path,
            controllers.join(", "),
            format!(
                "Only one reference can have Controller set to true. Found \"true\" in references for {}",
                controllers.join(" and ")
            ),
        ));
    }
}

/// Checks a `LabelSelector` (`matchLabels`, `matchExpressions`) the way Kubernetes'
/// `ValidateLabelSelector` does. Returns whether it had any requirement at all.
pub(super) fn validate_label_selector(cx: &mut Ctx, selector: &Obj, path: &FieldPath) -> bool {
    let match_labels = validate_labels(cx, selector.get("matchLabels"), &path.child("matchLabels"));
    let expressions_path = path.child("matchExpressions");
    let expressions = cx.obj_items_at(selector.get("matchExpressions"), &expressions_path);
    let n_requirements = match_labels.len() + expressions.len();
    for (expr_path, expr) in expressions {
        let operator_path = expr_path.child("operator");
        let values_path = expr_path.child("values");
        let operator = cx
            .str_at(expr.get("operator"), &operator_path)
            .unwrap_or("");
        let values = cx.str_list_at(expr.get("values"), &values_path);
        match operator {
            "In" | "NotIn" => {
                if values.is_empty() {
                    cx.push(
                        FieldError::required(&values_path)
                            .with_detail("must be specified when `operator` is 'In' or 'NotIn'"),
                    );
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    cx.push(FieldError::forbidden(
                        &values_path,
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            _ => cx.push(FieldError::invalid(
                &operator_path,
                operator,
                "not a valid selector operator",
            )),
        }
        let key_path = expr_path.child("key");
        let key = cx.str_at(expr.get("key"), &key_path).unwrap_or("");
        for msg in is_qualified_name(key) {
            cx.push(FieldError::invalid(&key_path, key, msg));
        }
        for (value_idx, value) in values.iter().enumerate() {
            for msg in is_valid_label_value(value) {
                cx.push(FieldError::invalid(
                    values_path.index(value_idx),
                    *value,
                    msg,
                ));
            }
        }
    }
    n_requirements > 0
}
