//! Kubernetes-style validation of API objects: every problem is collected with its field
//! path (`spec.containers[0].ports[1].containerPort`) instead of stopping at the first.
//!
//! Objects are checked as `serde_json::Value`, so one code path serves every kind, built-in
//! or drover's own, and a wrong JSON type anywhere becomes an `Invalid` error rather than a
//! decode failure. Messages, reasons and paths follow Kubernetes so that `kubectl` users see
//! what they would see against a real API server; where drover deliberately differs, the
//! code says why.
//!
//! Entry point: [`validate_object`]. The name and value rules ([`is_dns1123_label`],
//! [`is_qualified_name`], ...) and [`parse_quantity`] are public because the gateway and the
//! selector parser use them too.

mod config;
mod drover;
mod meta;
mod names;
mod pod;
mod quantity;
mod service;
mod value;
mod workloads;

#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::Value;

use crate::kinds::KindInfo;

pub use names::{
    is_config_map_key, is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_env_var_name,
    is_qualified_name, is_valid_label_value, is_valid_port_name,
};
pub use quantity::{Quantity, QuantityFormat, parse_quantity};

use value::Ctx;

/// The kind of problem a [`FieldError`] reports; mirrors Kubernetes' `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldErrorType {
    /// A required field is missing or empty.
    Required,
    /// A value is malformed or out of range.
    Invalid,
    /// A value is not one of a fixed set of supported values.
    NotSupported,
    /// A value that must be unique appears more than once.
    Duplicate,
    /// A value is longer than allowed.
    TooLong,
    /// A list has more items than allowed.
    TooMany,
    /// A field may not be set (in this context).
    Forbidden,
    /// A reference points at something that does not exist (e.g. a volume mount's volume).
    NotFound,
}

impl FieldErrorType {
    /// Kubernetes `StatusCause` reason, e.g. `FieldValueRequired`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Duplicate => "FieldValueDuplicate",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::Forbidden => "FieldValueForbidden",
            Self::NotFound => "FieldValueNotFound",
        }
    }

    /// The phrase Kubernetes puts in messages, e.g. `Required value`.
    pub fn phrase(self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::Invalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::Duplicate => "Duplicate value",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Forbidden => "Forbidden",
            Self::NotFound => "Not found",
        }
    }
}

/// One problem with one field of an object.
///
/// `bad_value` holds a string value as it was (unquoted) and any other JSON value as compact
/// JSON; [`FieldError::message`] quotes the former and prints the latter bare, as
/// Kubernetes prints Go strings and numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the offending field, e.g. `spec.containers[0].image`; empty for the whole object.
    pub field: String,
    /// What kind of problem it is.
    pub error_type: FieldErrorType,
    /// The offending value, when Kubernetes would print one.
    pub bad_value: Option<String>,
    /// Human-readable explanation; may be empty.
    pub detail: String,
}

impl FieldError {
    fn new(
        field: impl Into<String>,
        error_type: FieldErrorType,
        bad_value: Option<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            error_type,
            bad_value,
            detail: detail.into(),
        }
    }

    /// `field: Required value`; add an explanation with [`FieldError::with_detail`].
    pub fn required(field: impl Into<String>) -> Self {
        Self::new(field, FieldErrorType::Required, None, "")
    }

    /// `field: Invalid value: "value": detail`.
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(field, FieldErrorType::Invalid, Some(value.into()), detail)
    }

    /// `field: Unsupported value: "value": supported values: "a", "b"`.
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<String>,
        supported: &[&str],
    ) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|v| go_quote(v)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(
            field,
            FieldErrorType::NotSupported,
            Some(value.into()),
            detail,
        )
    }

    /// `field: Duplicate value: "value"`.
    pub fn duplicate(field: impl Into<String>, value: impl Into<String>) -> Self {
        Self::new(field, FieldErrorType::Duplicate, Some(value.into()), "")
    }

    /// `field: Not found: "value"`.
    pub fn not_found(field: impl Into<String>, value: impl Into<String>) -> Self {
        Self::new(field, FieldErrorType::NotFound, Some(value.into()), "")
    }

    /// `field: Too long: may not be more than N bytes`.
    pub fn too_long(field: impl Into<String>, max_bytes: usize) -> Self {
        let unit = if max_bytes == 1 { "byte" } else { "bytes" };
        let detail = format!("may not be more than {max_bytes} {unit}");
        Self::new(field, FieldErrorType::TooLong, None, detail)
    }

    /// `field: Too many: N: must have at most M items`.
    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Self {
        let unit = if max == 1 { "item" } else { "items" };
        let detail = format!("must have at most {max} {unit}");
        Self::new(
            field,
            FieldErrorType::TooMany,
            Some(actual.to_string()),
            detail,
        )
    }

    /// `field: Forbidden: detail`.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(field, FieldErrorType::Forbidden, None, detail)
    }

    /// The same error with `detail` replaced.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// Kubernetes `StatusCause` reason: `FieldValueRequired`, `FieldValueInvalid`,
    /// `FieldValueNotSupported`, `FieldValueDuplicate`, `FieldValueTooLong`,
    /// `FieldValueTooMany`, `FieldValueForbidden` or `FieldValueNotFound`.
    pub fn reason(&self) -> &'static str {
        self.error_type.reason()
    }

    /// The message without the field path (Kubernetes' `ErrorBody`), which is what a
    /// `StatusCause.message` carries: `Invalid value: "Foo": a lowercase RFC 1123 ...`.
    pub fn body(&self) -> String {
        let mut body = self.error_type.phrase().to_string();
        let shows_value = !matches!(
            self.error_type,
            FieldErrorType::Required | FieldErrorType::Forbidden | FieldErrorType::TooLong
        );
        if let (true, Some(value)) = (shows_value, &self.bad_value) {
            body.push_str(": ");
            body.push_str(&render_bad_value(value));
        }
        if !self.detail.is_empty() {
            body.push_str(": ");
            body.push_str(&self.detail);
        }
        body
    }

    /// Kubernetes-style message, e.g. `spec.containers[0].image: Required value`.
    pub fn message(&self) -> String {
        if self.field.is_empty() {
            self.body()
        } else {
            format!("{}: {}", self.field, self.body())
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// Every problem found in one object. Displays like a Kubernetes aggregate error: the single
/// message when there is one, `[a, b]` when there are several (duplicates shown once).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", aggregate_message(&self.0))]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    /// The errors, in the order they were found.
    pub fn iter(&self) -> std::slice::Iter<'_, FieldError> {
        self.0.iter()
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (a `FieldErrors` returned by [`validate_object`] never is).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a FieldErrors {
    type Item = &'a FieldError;
    type IntoIter = std::slice::Iter<'a, FieldError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

fn aggregate_message(errors: &[FieldError]) -> String {
    if let [only] = errors {
        return only.message();
    }
    let mut seen = std::collections::HashSet::new();
    let mut messages = Vec::new();
    for error in errors {
        let message = error.message();
        if seen.insert(message.clone()) {
            messages.push(message);
        }
    }
    match messages.as_slice() {
        [] => String::new(),
        [only] => only.clone(),
        _ => format!("[{}]", messages.join(", ")),
    }
}

/// Renders a bad value as Kubernetes does with `%q` for strings and `%v` for numbers:
/// anything that parses as a non-string JSON value (number, bool, object, array) is printed
/// bare, everything else is quoted.
fn render_bad_value(value: &str) -> String {
    let may_be_json = value.bytes().next().is_some_and(|b| {
        b == b'-' || b == b'{' || b == b'[' || b == b't' || b == b'f' || b.is_ascii_digit()
    });
    if may_be_json
        && serde_json::from_str::<Value>(value).is_ok_and(|v| !v.is_string() && !v.is_null())
    {
        value.to_string()
    } else {
        go_quote(value)
    }
}

/// Quotes like Go's `strconv.Quote` for the characters that matter in messages.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A field path built like Kubernetes' `field.Path`: `spec.containers[0].resources.limits[cpu]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FieldPath(String);

impl FieldPath {
    /// A path starting at the top-level field `name`.
    pub fn new(name: &str) -> Self {
        Self(name.to_string())
    }

    /// `self.name`.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_string())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    /// `self[index]`.
    pub fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    /// `self[key]`, for map entries.
    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<FieldPath> for String {
    fn from(path: FieldPath) -> String {
        path.0
    }
}

impl From<&FieldPath> for String {
    fn from(path: &FieldPath) -> String {
        path.0.clone()
    }
}

/// Validates a whole object of `kind` (as JSON) for create or update: `apiVersion`/`kind`,
/// metadata, and the kind's spec rules. Returns `Ok(())` or every error found.
///
/// The checks are stateless: rules that need the stored object (immutable fields) or
/// cluster state (node-port allocation) belong to the store.
pub fn validate_object(kind: &KindInfo, obj: &Value) -> Result<(), FieldErrors> {
    let mut cx = Ctx::default();
    match obj.as_object() {
        None => cx.push(FieldError::invalid(
            "",
            value::render_json(obj),
            "must be a JSON object",
        )),
        Some(root) => {
            check_type_meta(&mut cx, kind, root);
            let meta = meta::validate_object_meta(&mut cx, kind, root);
            validate_kind(&mut cx, kind, root, &meta);
        }
    }
    cx.into_result()
}

fn check_type_meta(cx: &mut Ctx, kind: &KindInfo, root: &serde_json::Map<String, Value>) {
    let api_version = kind.api_version();
    let expected = [("apiVersion", api_version.as_str()), ("kind", kind.kind)];
    for (field, want) in expected {
        let path = FieldPath::new(field);
        if let Some(got) = cx.required_str_at(root.get(field), &path)
            && got != want
        {
            cx.push(FieldError::invalid(&path, got, format!("must be {want}")));
        }
    }
}

/// Dispatches to the per-kind spec rules; kinds without any only get the metadata checks.
fn validate_kind(
    cx: &mut Ctx,
    kind: &KindInfo,
    root: &serde_json::Map<String, Value>,
    meta: &meta::MetaFacts,
) {
    type SpecRule = fn(&mut Ctx, Option<&serde_json::Map<String, Value>>, &FieldPath);
    let spec_path = FieldPath::new("spec");
    let raw_spec = root.get("spec");
    let rule: SpecRule = match (kind.group, kind.kind) {
        ("", "ConfigMap") => return config::validate_config_map(cx, root),
        ("", "Secret") => return config::validate_secret(cx, root),
        ("drover.io", "TrafficSplit") => {
            return drover::validate_traffic_split(cx, raw_spec, &spec_path);
        }
        ("", "Pod") => pod::validate_pod,
        ("", "Service") => service::validate_service,
        ("apps", "Deployment") => workloads::validate_deployment,
        ("apps", "ReplicaSet") => workloads::validate_replica_set,
        ("apps", "StatefulSet") => workloads::validate_stateful_set,
        ("apps", "DaemonSet") => workloads::validate_daemon_set,
        ("batch", "Job") => workloads::validate_job,
        ("batch", "CronJob") => {
            workloads::validate_cron_job_name(cx, meta);
            workloads::validate_cron_job
        }
        _ => return,
    };
    let spec = cx.obj_at(raw_spec, &spec_path);
    rule(cx, spec, &spec_path);
}
