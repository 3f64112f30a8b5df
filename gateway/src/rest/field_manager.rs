//! The HTTP side of field management: which manager a write is recorded under, and
//! server-side apply requests (`application/apply-patch+yaml`). The semantics live in
//! [`crate::apply`]; this module reads query parameters and bodies and maps errors to
//! Kubernetes `Status`es.

use std::collections::HashMap;

use actix_web::HttpRequest;
use bus_schema::KindInfo;
use serde_json::{Value, json};

use crate::apply::{self, ApplyError, Conflict};
use crate::patch::PatchType;
use crate::status::ApiError;

/// Resolves the manager of a create, update or patch into `q["fieldManager"]`, where
/// the handlers read it ([`of`]): an explicit `fieldManager` is checked, a missing one is
/// the user agent up to its first `/` (`kubectl`), as the API server does. Server-side
/// apply gets no default: it needs an explicit manager ([`apply`] says so). `force` is
/// refused on anything but an apply, as by the API server's options validation.
pub(super) fn resolve(
    req: &HttpRequest,
    q: &mut HashMap<String, String>,
    verb: &str,
) -> Result<(), ApiError> {
    let options = match verb {
        "create" => "CreateOptions",
        "update" => "UpdateOptions",
        "patch" => "PatchOptions",
        _ => return Ok(()),
    };
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let is_apply = verb == "patch"
        && PatchType::from_content_type(header("content-type")) == Some(PatchType::Apply);
    if verb == "patch" && !is_apply && q.contains_key("force") {
        return Err(invalid_options(
            options,
            "force",
            "FieldValueForbidden",
            "force: Forbidden: may not be specified for non-apply patch",
        ));
    }
    match q.get("fieldManager").filter(|m| !m.is_empty()) {
        Some(field_manager) => apply::validate_field_manager(field_manager).map_err(|message| {
            let reason = if message.contains("Too long") {
                "FieldValueTooLong"
            } else {
                "FieldValueInvalid"
            };
            invalid_options(options, "fieldManager", reason, &message)
        }),
        None if is_apply => Ok(()),
        None => {
            let manager = apply::manager_from_user_agent(header("user-agent"));
            q.insert("fieldManager".to_owned(), manager);
            Ok(())
        }
    }
}

/// The manager [`resolve`] settled on.
pub(super) fn of(q: &HashMap<String, String>) -> &str {
    q.get("fieldManager").map_or("", String::as_str)
}

/// Records a non-apply write of `obj` over `current` (`None` for a create) by `manager`
/// in `obj`'s `managedFields`.
pub(super) fn track(
    kind: &KindInfo,
    current: Option<&Value>,
    obj: &mut Value,
    manager: &str,
    status_only: bool,
) {
    let subresource = status_only.then_some("status");
    apply::track_update(kind.kind, current, obj, manager, subresource, &now());
}

/// Sets the `managedFields` of an update's result `obj`: tracked for `manager`, or, for a
/// server-side apply (`None`), those the apply computed (`applied_fields`; the status
/// subresource builds `obj` from the stored object, so they must be put back).
pub(super) fn record(
    kind: &KindInfo,
    current: &Value,
    obj: &mut Value,
    manager: Option<&str>,
    status_only: bool,
    applied_fields: Option<Value>,
) {
    match (manager, applied_fields) {
        (Some(manager), _) => track(kind, Some(current), obj, manager, status_only),
        (None, Some(fields)) => {
            drover_store::object::meta_mut(obj).insert("managedFields".into(), fields);
        }
        (None, None) => {
            drover_store::object::meta_mut(obj).remove("managedFields");
        }
    }
}

/// The object a server-side apply request makes of `current` (`None`: the object named
/// `name` does not exist and the result creates it). Needs an explicit `fieldManager`;
/// honours `force=true`; `status_only` applies to the status subresource.
pub(super) fn apply(
    kind: &KindInfo,
    name: &str,
    current: Option<&Value>,
    body: &[u8],
    q: &HashMap<String, String>,
    status_only: bool,
) -> Result<Value, ApiError> {
    let Some(manager) = q.get("fieldManager").filter(|m| !m.is_empty()) else {
        return Err(invalid_options(
            "PatchOptions",
            "fieldManager",
            "FieldValueRequired",
            "fieldManager: Required value: is required for apply patch",
        ));
    };
    let force = q.get("force").is_some_and(|v| v == "true" || v == "1");
    let applied = parse_configuration(body)?;
    if let Some(applied_name) = applied.pointer("/metadata/name").and_then(Value::as_str)
        && applied_name != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({applied_name}) does not match the name on the URL ({name})"
        )));
    }
    let subresource = status_only.then_some("status");
    let mut obj = apply::server_side_apply(
        kind.kind,
        current,
        &applied,
        manager,
        force,
        subresource,
        &now(),
    )
    .map_err(|error| match error {
        ApplyError::Conflicts(conflicts) => conflict(&conflicts),
        ApplyError::Invalid(message) => ApiError::bad_request(message),
    })?;
    if drover_store::object::meta_str(&obj, "name").is_none() {
        drover_store::object::meta_mut(&mut obj).insert("name".into(), json!(name));
    }
    Ok(obj)
}

/// The time recorded in `managedFields` entries.
fn now() -> String {
    drover_store::object::now_rfc3339()
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// An apply configuration: JSON (what kubectl sends) or YAML.
fn parse_configuration(body: &[u8]) -> Result<Value, ApiError> {
    let parsed = serde_json::from_slice::<Value>(body).or_else(|json_error| {
        serde_norway::from_slice::<Value>(body)
            .map_err(|yaml_error| format!("not JSON ({json_error}) nor YAML ({yaml_error})"))
    });
    match parsed {
        Ok(value) if value.is_object() => Ok(value),
        Ok(_) => Err(ApiError::bad_request(
            "the apply configuration must be an object",
        )),
        Err(why) => Err(ApiError::bad_request(format!(
            "the apply configuration is invalid: {why}"
        ))),
    }
}

/// 409 Conflict with one `FieldManagerConflict` cause per field, as the API server
/// answers an apply that would change fields other managers own.
fn conflict(conflicts: &[Conflict]) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {}", c.manager_description()),
                "field": c.field,
            })
        })
        .collect();
    ApiError {
        code: 409,
        reason: "Conflict",
        message: apply::conflict_message(conflicts),
        details: Some(json!({ "causes": causes })),
    }
}

/// 422 for invalid request options (`PatchOptions.meta.k8s.io "" is invalid: ...`).
fn invalid_options(options: &str, field: &str, reason: &str, message: &str) -> ApiError {
    let cause_message = message
        .strip_prefix(&format!("{field}: "))
        .unwrap_or(message);
    ApiError {
        code: 422,
        reason: "Invalid",
        message: format!("{options}.meta.k8s.io \"\" is invalid: {message}"),
        details: Some(json!({
            "group": "meta.k8s.io",
            "kind": options,
            "causes": [{"reason": reason, "message": cause_message, "field": field}],
        })),
    }
}
