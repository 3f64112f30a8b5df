//! Typed access to JSON that reports a wrong type as an `Invalid` error at the field's path
//! instead of failing, so one malformed field never hides the other problems.

use serde_json::{Map, Value};

use super::{FieldError, FieldErrors, FieldPath};

/// Bad values of the wrong type are printed as JSON, cut to this many bytes.
const MAX_RENDERED_VALUE_LEN: usize = 256;

/// A JSON object.
pub(super) type Obj = Map<String, Value>;

/// Collects errors while walking one object.
#[derive(Default)]
pub(super) struct Ctx {
    errs: Vec<FieldError>,
}

impl Ctx {
    pub(super) fn push(&mut self, error: FieldError) {
        self.errs.push(error);
    }

    pub(super) fn into_result(self) -> Result<(), FieldErrors> {
        if self.errs.is_empty() {
            Ok(())
        } else {
            Err(FieldErrors(self.errs))
        }
    }

    fn wrong_type(&mut self, value: &Value, path: &FieldPath, expected: &str) {
        self.push(FieldError::invalid(
            path,
            render_json(value),
            format!("must be {expected}"),
        ));
    }

    /// A string field; absent or `null` is `None`, another type is reported.
    pub(super) fn str_at<'a>(
        &mut self,
        value: Option<&'a Value>,
        path: &FieldPath,
    ) -> Option<&'a str> {
        match value? {
            Value::Null => None,
            Value::String(s) => Some(s),
            other => {
                self.wrong_type(other, path, "a string");
                None
            }
        }
    }

    /// A required string field: absent, `null` or `""` is reported as `Required`, another
    /// type as `Invalid`; either way `None`.
    pub(super) fn required_str_at<'a>(
        &mut self,
        value: Option<&'a Value>,
        path: &FieldPath,
    ) -> Option<&'a str> {
        match value {
            None | Some(Value::Null) => {
                self.push(FieldError::required(path));
                None
            }
            Some(Value::String(s)) if s.is_empty() => {
                self.push(FieldError::required(path));
                None
            }
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                self.wrong_type(other, path, "a string");
                None
            }
        }
    }

    /// An object field; absent or `null` is `None`, another type is reported.
    pub(super) fn obj_at<'a>(
        &mut self,
        value: Option<&'a Value>,
        path: &FieldPath,
    ) -> Option<&'a Obj> {
        match value? {
            Value::Null => None,
            Value::Object(m) => Some(m),
            other => {
                self.wrong_type(other, path, "an object");
                None
            }
        }
    }

    /// An array field; absent or `null` is empty, another type is reported (and empty).
    pub(super) fn array_at<'a>(
        &mut self,
        value: Option<&'a Value>,
        path: &FieldPath,
    ) -> &'a [Value] {
        match value {
            None | Some(Value::Null) => &[],
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.wrong_type(other, path, "an array");
                &[]
            }
        }
    }

    /// An integer field; absent or `null` is `None`, another type or a fraction is reported.
    pub(super) fn int_at(&mut self, value: Option<&Value>, path: &FieldPath) -> Option<i64> {
        match value? {
            Value::Null => None,
            Value::Number(n) => match n.as_i64() {
                Some(i) => Some(i),
                None => {
                    self.wrong_type(&Value::Number(n.clone()), path, "an integer");
                    None
                }
            },
            other => {
                self.wrong_type(other, path, "an integer");
                None
            }
        }
    }

    /// An int32 field: like [`Ctx::int_at`], and out-of-range values are reported.
    pub(super) fn int32_at(&mut self, value: Option<&Value>, path: &FieldPath) -> Option<i64> {
        let i = self.int_at(value, path)?;
        if i32::try_from(i).is_err() {
            self.push(FieldError::invalid(
                path,
                i.to_string(),
                "must be a 32-bit integer",
            ));
            return None;
        }
        Some(i)
    }

    /// A boolean field; absent or `null` is `None`, another type is reported.
    pub(super) fn bool_at(&mut self, value: Option<&Value>, path: &FieldPath) -> Option<bool> {
        match value? {
            Value::Null => None,
            Value::Bool(b) => Some(*b),
            other => {
                self.wrong_type(other, path, "a boolean");
                None
            }
        }
    }

    /// A `map[string]string` field (labels, annotations, data): entries whose value is not a
    /// string are reported at `path[key]` and skipped.
    pub(super) fn str_map_at<'a>(
        &mut self,
        value: Option<&'a Value>,
        path: &FieldPath,
    ) -> Vec<(&'a str, &'a str)> {
        let Some(map) = self.obj_at(value, path) else {
            return Vec::new();
        };
        let mut entries = Vec::with_capacity(map.len());
        for (key, value) in map {
            match value {
                Value::String(s) => entries.push((key.as_str(), s.as_str())),
                other => self.wrong_type(other, &path.key(key), "a string"),
            }
        }
        entries
    }

    /// A list of strings (finalizers, command): non-strings are reported at `path[i]`.
    pub(super) fn str_list_at<'a>(
        &mut self,
        value: Option<&'a Value>,
        path: &FieldPath,
    ) -> Vec<&'a str> {
        let items = self.array_at(value, path);
        let mut out = Vec::with_capacity(items.len());
        for (idx, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.as_str()),
                other => self.wrong_type(other, &path.index(idx), "a string"),
            }
        }
        out
    }

    /// An int-or-string field (ports, `maxSurge`); absent or `null` is `None`.
    pub(super) fn int_or_string_at<'a>(
        &mut self,
        value: Option<&'a Value>,
        path: &FieldPath,
    ) -> Option<IntOrString<'a>> {
        match value? {
            Value::Null => None,
            Value::String(s) => Some(IntOrString::Str(s)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Some(IntOrString::Int(i)),
                None => {
                    self.wrong_type(&Value::Number(n.clone()), path, "an integer or a string");
                    None
                }
            },
            other => {
                self.wrong_type(other, path, "an integer or a string");
                None
            }
        }
    }

    /// The items of an array of objects, each with its path; items that are not objects are
    /// reported and skipped.
    pub(super) fn obj_items_at<'a>(
        &mut self,
        value: Option<&'a Value>,
        path: &FieldPath,
    ) -> Vec<(FieldPath, &'a Obj)> {
        let items = self.array_at(value, path);
        let mut out = Vec::with_capacity(items.len());
        for (idx, item) in items.iter().enumerate() {
            let item_path = path.index(idx);
            if let Some(obj) = self.obj_at(Some(item), &item_path) {
                out.push((item_path, obj));
            } else if item.is_null() {
                self.wrong_type(item, &item_path, "an object");
            }
        }
        out
    }
}

/// A Kubernetes `IntOrString`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IntOrString<'a> {
    Int(i64),
    Str(&'a str),
}

impl IntOrString<'_> {
    /// The value as a bad value for errors: numbers bare, strings as they are.
    pub(super) fn render(&self) -> String {
        match self {
            Self::Int(i) => i.to_string(),
            Self::Str(s) => (*s).to_string(),
        }
    }
}

/// Compact JSON for a bad value of the wrong type, shortened if huge.
pub(super) fn render_json(value: &Value) -> String {
    let mut text = value.to_string();
    if text.len() > MAX_RENDERED_VALUE_LEN {
        let mut cut = MAX_RENDERED_VALUE_LEN;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// Whether a field is absent, `null` or `""` (as opposed to holding a value of some type).
pub(super) fn is_blank(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    }
}

/// Looks `key` up in an optional object.
pub(super) fn get<'a>(obj: Option<&'a Obj>, key: &str) -> Option<&'a Value> {
    obj.and_then(|o| o.get(key))
}
