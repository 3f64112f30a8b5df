//! The swagger 2.0 document in the protobuf encoding kubectl asks for
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`): gnostic's
//! `openapi.v2.Document` message (`openapiv2/OpenAPIv2.proto` in google/gnostic-models).
//!
//! kubectl reads only this encoding of v2. It needs it where v3 cannot answer: client-side
//! validation of `kind: List` manifests (kubectl validates each item against the v2 models
//! instead of asking the server), `kubectl explain --output plaintext-openapiv2`, and the
//! patch-type lookup of `kubectl apply`.
//!
//! The encoder walks the JSON document the gateway already serves and writes the message
//! fields by number, the way gnostic's JSON-to-proto conversion fills them: extensions
//! (`x-...`) and free-form values (`default`, `enum`) become `Any` messages whose `yaml`
//! holds the value as JSON text (JSON is YAML). Keys the document does not use, and that
//! the message has no field for, are skipped. No dependency: the wire format needed here is
//! varints, 64-bit doubles and length-delimited fields.

use serde_json::{Map, Value};

/// A protobuf message being written.
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;

impl Writer {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
    }

    fn tag(&mut self, field: u32, wire_type: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire_type));
    }

    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.tag(field, LENGTH_DELIMITED);
        self.varint(bytes.len() as u64);
        self.buf.extend_from_slice(bytes);
    }

    /// A string field; proto3 leaves the empty string out.
    fn string(&mut self, field: u32, value: &str) {
        if !value.is_empty() {
            self.bytes(field, value.as_bytes());
        }
    }

    /// A nested message, written even when empty: presence matters (an object schema
    /// with `properties: {}` is a kind, one without is a map).
    fn message(&mut self, field: u32, write: impl FnOnce(&mut Writer)) {
        let mut child = Writer::default();
        write(&mut child);
        self.bytes(field, &child.buf);
    }

    fn bool(&mut self, field: u32, value: bool) {
        if value {
            self.tag(field, VARINT);
            self.varint(1);
        }
    }

    fn double(&mut self, field: u32, value: f64) {
        if value != 0.0 {
            self.tag(field, FIXED64);
            self.buf.extend_from_slice(&value.to_le_bytes());
        }
    }

    fn int64(&mut self, field: u32, value: i64) {
        if value != 0 {
            self.tag(field, VARINT);
            // Two's complement, as protobuf encodes a negative int64.
            self.varint(value as u64);
        }
    }

    /// `string` for a JSON string value, nothing otherwise.
    fn string_of(&mut self, field: u32, value: Option<&Value>) {
        if let Some(Value::String(s)) = value {
            self.string(field, s);
        }
    }

    /// `repeated string` from a JSON array of strings.
    fn strings_of(&mut self, field: u32, value: Option<&Value>) {
        for item in value.and_then(Value::as_array).into_iter().flatten() {
            if let Value::String(s) = item {
                self.bytes(field, s.as_bytes());
            }
        }
    }

    fn bool_of(&mut self, field: u32, value: Option<&Value>) {
        self.bool(field, value.and_then(Value::as_bool).unwrap_or(false));
    }

    fn double_of(&mut self, field: u32, value: Option<&Value>) {
        self.double(field, value.and_then(Value::as_f64).unwrap_or(0.0));
    }

    fn int64_of(&mut self, field: u32, value: Option<&Value>) {
        self.int64(field, value.and_then(Value::as_i64).unwrap_or(0));
    }

    /// An `Any` message: the value as YAML (written as JSON).
    fn any(&mut self, field: u32, value: &Value) {
        self.message(field, |w| w.string(2, &value.to_string()));
    }

    /// `repeated NamedAny vendor_extension`: every `x-` key of `map`.
    fn extensions(&mut self, field: u32, map: &Map<String, Value>) {
        for (key, value) in map.iter().filter(|(k, _)| k.starts_with("x-")) {
            self.message(field, |w| {
                w.string(1, key);
                w.any(2, value);
            });
        }
    }
}

/// Encodes a swagger 2.0 JSON document as gnostic's `openapi.v2.Document`.
pub(crate) fn encode_document(document: &Value) -> Vec<u8> {
    let mut w = Writer::default();
    let Some(doc) = document.as_object() else {
        return w.buf;
    };
    w.string_of(1, doc.get("swagger"));
    if let Some(Value::Object(info)) = doc.get("info") {
        w.message(2, |w| {
            w.string_of(1, info.get("title"));
            w.string_of(2, info.get("version"));
            w.string_of(3, info.get("description"));
            w.extensions(7, info);
        });
    }
    w.string_of(3, doc.get("host"));
    w.string_of(4, doc.get("basePath"));
    w.strings_of(5, doc.get("schemes"));
    w.strings_of(6, doc.get("consumes"));
    w.strings_of(7, doc.get("produces"));
    if let Some(Value::Object(paths)) = doc.get("paths") {
        w.message(8, |w| {
            w.extensions(1, paths);
            for (path, item) in paths.iter().filter(|(k, _)| k.starts_with('/')) {
                w.message(2, |w| {
                    w.string(1, path);
                    w.message(2, |w| path_item(w, item));
                });
            }
        });
    }
    if let Some(Value::Object(definitions)) = doc.get("definitions") {
        w.message(9, |w| named_schemas(w, 1, definitions));
    }
    for requirement in doc
        .get("security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(requirement) = requirement.as_object() else {
            continue;
        };
        w.message(12, |w| {
            for (name, scopes) in requirement {
                w.message(1, |w| {
                    w.string(1, name);
                    w.message(2, |w| w.strings_of(1, Some(scopes)));
                });
            }
        });
    }
    if let Some(Value::Object(definitions)) = doc.get("securityDefinitions") {
        w.message(13, |w| {
            for (name, definition) in definitions {
                w.message(1, |w| {
                    w.string(1, name);
                    w.message(2, |w| security_definition(w, definition));
                });
            }
        });
    }
    w.extensions(16, doc);
    w.buf
}

/// `SecurityDefinitionsItem`: only the API-key and basic kinds the gateway could use.
fn security_definition(w: &mut Writer, definition: &Value) {
    let Some(d) = definition.as_object() else {
        return;
    };
    match d.get("type").and_then(Value::as_str) {
        Some("apiKey") => w.message(2, |w| {
            w.string_of(1, d.get("type"));
            w.string_of(2, d.get("name"));
            w.string_of(3, d.get("in"));
            w.string_of(4, d.get("description"));
            w.extensions(5, d);
        }),
        Some("basic") => w.message(1, |w| {
            w.string_of(1, d.get("type"));
            w.string_of(2, d.get("description"));
            w.extensions(3, d);
        }),
        _ => {}
    }
}

fn path_item(w: &mut Writer, item: &Value) {
    let Some(item) = item.as_object() else {
        return;
    };
    w.string_of(1, item.get("$ref"));
    for (field, method) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (6, "options"),
        (7, "head"),
        (8, "patch"),
    ] {
        if let Some(Value::Object(op)) = item.get(method) {
            w.message(field, |w| operation(w, op));
        }
    }
    parameters(w, 9, item.get("parameters"));
    w.extensions(10, item);
}

fn operation(w: &mut Writer, op: &Map<String, Value>) {
    w.strings_of(1, op.get("tags"));
    w.string_of(2, op.get("summary"));
    w.string_of(3, op.get("description"));
    w.string_of(5, op.get("operationId"));
    w.strings_of(6, op.get("produces"));
    w.strings_of(7, op.get("consumes"));
    parameters(w, 8, op.get("parameters"));
    if let Some(Value::Object(responses)) = op.get("responses") {
        w.message(9, |w| {
            for (code, response) in responses.iter().filter(|(k, _)| !k.starts_with("x-")) {
                w.message(1, |w| {
                    w.string(1, code);
                    w.message(2, |w| response_value(w, response));
                });
            }
            w.extensions(2, responses);
        });
    }
    w.strings_of(10, op.get("schemes"));
    w.bool_of(11, op.get("deprecated"));
    w.extensions(13, op);
}

/// `ResponseValue`: a reference or a `Response`.
fn response_value(w: &mut Writer, response: &Value) {
    let Some(r) = response.as_object() else {
        return;
    };
    if let Some(Value::String(reference)) = r.get("$ref") {
        w.message(2, |w| w.string(1, reference));
        return;
    }
    w.message(1, |w| {
        w.string_of(1, r.get("description"));
        if let Some(schema) = r.get("schema") {
            // SchemaItem.schema
            w.message(2, |w| w.message(1, |w| self::schema(w, schema)));
        }
        w.extensions(5, r);
    });
}

/// `repeated ParametersItem` from a JSON array of parameters.
fn parameters(w: &mut Writer, field: u32, list: Option<&Value>) {
    for param in list.and_then(Value::as_array).into_iter().flatten() {
        let Some(p) = param.as_object() else {
            continue;
        };
        w.message(field, |w| parameters_item(w, p));
    }
}

fn parameters_item(w: &mut Writer, p: &Map<String, Value>) {
    if let Some(Value::String(reference)) = p.get("$ref") {
        w.message(2, |w| w.string(1, reference));
        return;
    }
    // ParametersItem.parameter
    w.message(1, |w| match p.get("in").and_then(Value::as_str) {
        Some("body") => w.message(1, |w| {
            w.string_of(1, p.get("description"));
            w.string_of(2, p.get("name"));
            w.string_of(3, p.get("in"));
            w.bool_of(4, p.get("required"));
            if let Some(schema) = p.get("schema") {
                w.message(5, |w| self::schema(w, schema));
            }
            w.extensions(6, p);
        }),
        // NonBodyParameter: header = 1, formData = 2, query = 3, path = 4.
        Some("query") => w.message(2, |w| w.message(3, |w| query_or_form(w, p))),
        Some("formData") => w.message(2, |w| w.message(2, |w| query_or_form(w, p))),
        Some("path") => w.message(2, |w| w.message(4, |w| path_or_header(w, p))),
        Some("header") => w.message(2, |w| w.message(1, |w| path_or_header(w, p))),
        _ => {}
    });
}

/// `QueryParameterSubSchema` and `FormDataParameterSubSchema` (same field numbers).
fn query_or_form(w: &mut Writer, p: &Map<String, Value>) {
    w.bool_of(1, p.get("required"));
    w.string_of(2, p.get("in"));
    w.string_of(3, p.get("description"));
    w.string_of(4, p.get("name"));
    w.bool_of(5, p.get("allowEmptyValue"));
    w.string_of(6, p.get("type"));
    w.string_of(7, p.get("format"));
    w.string_of(9, p.get("collectionFormat"));
    primitive_constraints(w, 10, p);
    w.extensions(23, p);
}

/// `PathParameterSubSchema` and `HeaderParameterSubSchema` (same field numbers).
fn path_or_header(w: &mut Writer, p: &Map<String, Value>) {
    w.bool_of(1, p.get("required"));
    w.string_of(2, p.get("in"));
    w.string_of(3, p.get("description"));
    w.string_of(4, p.get("name"));
    w.string_of(5, p.get("type"));
    w.string_of(6, p.get("format"));
    w.string_of(8, p.get("collectionFormat"));
    primitive_constraints(w, 9, p);
    w.extensions(22, p);
}

/// `default` .. `enum` of a parameter sub-schema: twelve fields in the same order in every
/// such message, starting at `first` (the number of `default`).
fn primitive_constraints(w: &mut Writer, first: u32, p: &Map<String, Value>) {
    if let Some(default) = p.get("default") {
        w.any(first, default);
    }
    w.double_of(first + 1, p.get("maximum"));
    w.bool_of(first + 2, p.get("exclusiveMaximum"));
    w.double_of(first + 3, p.get("minimum"));
    w.bool_of(first + 4, p.get("exclusiveMinimum"));
    w.int64_of(first + 5, p.get("maxLength"));
    w.int64_of(first + 6, p.get("minLength"));
    w.string_of(first + 7, p.get("pattern"));
    w.int64_of(first + 8, p.get("maxItems"));
    w.int64_of(first + 9, p.get("minItems"));
    w.bool_of(first + 10, p.get("uniqueItems"));
    for value in p
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.any(first + 11, value);
    }
    w.double_of(first + 12, p.get("multipleOf"));
}

/// `repeated NamedSchema` (`Definitions`, `Properties`).
fn named_schemas(w: &mut Writer, field: u32, schemas: &Map<String, Value>) {
    for (name, schema) in schemas {
        w.message(field, |w| {
            w.string(1, name);
            w.message(2, |w| self::schema(w, schema));
        });
    }
}

/// The JSON schema keys [`schema`] encodes, besides `x-` extensions (the tests check that
/// the generated schemas use no other).
#[cfg(test)]
pub(crate) const SCHEMA_KEYS: &[&str] = &[
    "$ref",
    "format",
    "title",
    "description",
    "default",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "enum",
    "additionalProperties",
    "type",
    "items",
    "allOf",
    "properties",
    "discriminator",
    "readOnly",
    "example",
];

fn schema(w: &mut Writer, schema: &Value) {
    let Some(s) = schema.as_object() else {
        return;
    };
    w.string_of(1, s.get("$ref"));
    w.string_of(2, s.get("format"));
    w.string_of(3, s.get("title"));
    w.string_of(4, s.get("description"));
    if let Some(default) = s.get("default") {
        w.any(5, default);
    }
    w.double_of(6, s.get("multipleOf"));
    w.double_of(7, s.get("maximum"));
    w.bool_of(8, s.get("exclusiveMaximum"));
    w.double_of(9, s.get("minimum"));
    w.bool_of(10, s.get("exclusiveMinimum"));
    w.int64_of(11, s.get("maxLength"));
    w.int64_of(12, s.get("minLength"));
    w.string_of(13, s.get("pattern"));
    w.int64_of(14, s.get("maxItems"));
    w.int64_of(15, s.get("minItems"));
    w.bool_of(16, s.get("uniqueItems"));
    w.int64_of(17, s.get("maxProperties"));
    w.int64_of(18, s.get("minProperties"));
    w.strings_of(19, s.get("required"));
    for value in s
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.any(20, value);
    }
    match s.get("additionalProperties") {
        Some(Value::Bool(allowed)) => w.message(21, |w| {
            // A oneof member is present even when false.
            w.tag(2, VARINT);
            w.varint(u64::from(*allowed));
        }),
        Some(sub @ Value::Object(_)) => w.message(21, |w| w.message(1, |w| self::schema(w, sub))),
        _ => {}
    }
    match s.get("type") {
        Some(Value::String(ty)) => w.message(22, |w| w.string(1, ty)),
        Some(types @ Value::Array(_)) => w.message(22, |w| w.strings_of(1, Some(types))),
        _ => {}
    }
    match s.get("items") {
        Some(item @ Value::Object(_)) => w.message(23, |w| w.message(1, |w| self::schema(w, item))),
        Some(Value::Array(items)) => w.message(23, |w| {
            for item in items {
                w.message(1, |w| self::schema(w, item));
            }
        }),
        _ => {}
    }
    for sub in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(24, |w| self::schema(w, sub));
    }
    if let Some(Value::Object(properties)) = s.get("properties") {
        w.message(25, |w| named_schemas(w, 1, properties));
    }
    w.string_of(26, s.get("discriminator"));
    w.bool_of(27, s.get("readOnly"));
    if let Some(example) = s.get("example") {
        w.any(30, example);
    }
    w.extensions(31, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn varints_and_nested_messages_follow_the_wire_format() {
        let mut w = Writer::default();
        w.varint(300);
        assert_eq!(w.buf, [0xAC, 0x02]);

        // Document{swagger: "2.0", definitions: {a: {type: object, properties: {}}}}
        let bytes = encode_document(&json!({
            "swagger": "2.0",
            "definitions": {"a": {"type": "object", "properties": {}}},
        }));
        let schema = [
            0xB2, 0x01, 0x08, b'\n', 0x06, b'o', b'b', b'j', b'e', b'c', b't', 0xCA, 0x01, 0x00,
        ];
        let mut expected = vec![0x0A, 0x03, b'2', b'.', b'0'];
        // field 9 (definitions) > field 1 (NamedSchema) > name "a", value = schema
        let named = [
            &[0x0A, 0x01, b'a', 0x12, schema.len() as u8][..],
            &schema[..],
        ]
        .concat();
        let definitions = [&[0x0A, named.len() as u8][..], &named[..]].concat();
        expected.extend([0x4A, definitions.len() as u8]);
        expected.extend(definitions);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn extensions_and_free_form_values_are_any_messages_holding_json() {
        let mut w = Writer::default();
        schema(
            &mut w,
            &json!({"x-kubernetes-int-or-string": true, "additionalProperties": false}),
        );
        // additionalProperties (21) = {boolean (2): 0}
        assert!(
            w.buf
                .windows(5)
                .any(|b| b == [0xAA, 0x01, 0x02, 0x10, 0x00])
        );
        // vendor_extension (31) = {name, value: Any{yaml (2): "true"}}
        let any = [0x12, 0x06, 0x12, 0x04, b't', b'r', b'u', b'e'];
        assert!(w.buf.windows(any.len()).any(|b| b == any));
    }
}
