//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`).
//!
//! kubectl's typed generators (`kubectl create namespace|configmap|secret|serviceaccount|
//! service|deployment|job|cronjob`, `kubectl run`, `kubectl expose`) send built-in objects
//! as protobuf, not JSON. The wire format is the magic `k8s\0`, then a `runtime.Unknown`
//! whose `raw` is the object encoded with its kind's message from Kubernetes'
//! `generated.proto`. This module decodes that into the same JSON every other client
//! sends, so the handlers never see protobuf; responses stay JSON (every client that sends
//! protobuf also accepts JSON).
//!
//! The decoder is table-driven ([`schema`]: field numbers and types of the messages those
//! generators send) over a small hand-written wire reader. A field the tables do not know
//! is skipped when it holds a zero value (Go writes every non-pointer field, set or not)
//! and refused otherwise, with a 415 asking for JSON: nothing a client set is silently
//! lost. As with JSON's `omitempty`, empty strings and zero timestamps are left out.

mod schema;

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::status::ApiError;
use schema::{Card, Msg, Ty};

/// The media type kubectl's typed clients send.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8; 4] = b"k8s\0";

/// Nesting deeper than this is refused (bounds the recursion on hostile input).
const MAX_DEPTH: usize = 32;

/// Whether a Content-Type (parameters allowed) is Kubernetes protobuf.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|e| e.trim().eq_ignore_ascii_case(MEDIA_TYPE))
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
enum DecodeError {
    /// The bytes are not valid protobuf for the message.
    #[error("{0}")]
    Malformed(String),
    /// Valid, but holds a field drover cannot decode yet.
    #[error("{0}")]
    Unsupported(String),
}

fn malformed(what: impl Into<String>) -> DecodeError {
    DecodeError::Malformed(what.into())
}

/// Decodes a Kubernetes protobuf body into JSON bytes: 400 for malformed input, 415 for
/// a kind or field drover has no decoder for (the client can send JSON instead).
pub fn decode(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    decode_value(body)
        .map(|v| v.to_string().into_bytes())
        .map_err(|e| match e {
            DecodeError::Malformed(m) => {
                ApiError::bad_request(format!("the protobuf request body cannot be decoded: {m}"))
            }
            DecodeError::Unsupported(m) => ApiError {
                code: 415,
                reason: "UnsupportedMediaType",
                message: format!("{m}; send the object as application/json"),
                details: None,
            },
        })
}

fn decode_value(body: &[u8]) -> Result<Value, DecodeError> {
    let envelope = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| malformed("missing the k8s protobuf prefix"))?;
    let mut unknown = Map::new();
    let mut raw: &[u8] = &[];
    let mut reader = Reader(envelope);
    while let Some((num, wire)) = reader.tag()? {
        match (num, wire) {
            (2, Wire::Len(b)) => raw = b,
            _ => {
                if let Some(field) = schema::UNKNOWN.field(num) {
                    decode_field(&schema::UNKNOWN, field, wire, &mut unknown, 0)?;
                }
            }
        }
    }
    let text = |k: &str| {
        unknown
            .get("typeMeta")
            .and_then(|t| t.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    if unknown
        .get("contentEncoding")
        .and_then(Value::as_str)
        .is_some_and(|e| !e.is_empty())
    {
        return Err(DecodeError::Unsupported(
            "compressed protobuf bodies are not supported".into(),
        ));
    }
    let msg = schema::kind(&api_version, &kind).ok_or_else(|| {
        DecodeError::Unsupported(format!(
            "drover does not decode {kind:?} in {api_version:?} from protobuf"
        ))
    })?;
    let mut obj = decode_message(msg, raw, 0)?;
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), json!(api_version));
        map.insert("kind".into(), json!(kind));
    }
    Ok(obj)
}

/// One field's payload on the wire.
#[derive(Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&byte, rest) = self
                .0
                .split_first()
                .ok_or_else(|| malformed("truncated varint"))?;
            self.0 = rest;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.0.len() {
            return Err(malformed("truncated field"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// The next field's number and payload, `None` at the end.
    fn tag(&mut self) -> Result<Option<(u32, Wire<'a>)>, DecodeError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let num = u32::try_from(key >> 3).map_err(|_| malformed("field number out of range"))?;
        if num == 0 {
            return Err(malformed("field number 0"));
        }
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                Wire::Fixed64(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            }
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| malformed("length out of range"))?;
                Wire::Len(self.take(len)?)
            }
            5 => {
                let b = self.take(4)?;
                Wire::Fixed32(u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
            }
            other => return Err(malformed(format!("unsupported wire type {other}"))),
        };
        Ok(Some((num, wire)))
    }
}

fn decode_message(msg: &'static Msg, bytes: &[u8], depth: usize) -> Result<Value, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(malformed("nested too deeply"));
    }
    let mut out = Map::new();
    let mut reader = Reader(bytes);
    while let Some((num, wire)) = reader.tag()? {
        match msg.field(num) {
            Some(field) => decode_field(msg, field, wire, &mut out, depth)?,
            None => {
                let zero = match wire {
                    Wire::Varint(v) | Wire::Fixed64(v) => v == 0,
                    Wire::Fixed32(v) => v == 0,
                    Wire::Len(b) => b.is_empty(),
                };
                if !zero {
                    return Err(DecodeError::Unsupported(format!(
                        "field {num} of {} is not supported in protobuf bodies yet",
                        msg.name
                    )));
                }
            }
        }
    }
    // Kubernetes' JSON leaves out what the protobuf had to write as zero values.
    out.retain(|_, v| !matches!(v, Value::Null) && v != "");
    Ok(Value::Object(out))
}

fn decode_field(
    msg: &'static Msg,
    field: &schema::Field,
    wire: Wire<'_>,
    out: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), DecodeError> {
    match field.card {
        Card::One => {
            let v = scalar(msg, field, field.ty, wire, depth)?;
            out.insert(field.name.to_string(), v);
        }
        Card::Many => {
            let v = scalar(msg, field, field.ty, wire, depth)?;
            let slot = out
                .entry(field.name.to_string())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = slot {
                items.push(v);
            }
        }
        Card::Map => {
            let Wire::Len(entry) = wire else {
                return Err(malformed(format!(
                    "{}.{}: map entry is not a message",
                    msg.name, field.name
                )));
            };
            let (mut key, mut value) = (String::new(), None);
            let mut reader = Reader(entry);
            while let Some((num, w)) = reader.tag()? {
                match num {
                    1 => match scalar(msg, field, Ty::Str, w, depth)? {
                        Value::String(s) => key = s,
                        _ => return Err(malformed("map key is not a string")),
                    },
                    2 => value = Some(map_value(msg, field, w, depth)?),
                    _ => {}
                }
            }
            let value = value.unwrap_or_else(|| match field.ty {
                Ty::Str | Ty::Bytes | Ty::Quantity => json!(""),
                _ => Value::Null,
            });
            let slot = out
                .entry(field.name.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = slot {
                m.insert(key, value);
            }
        }
    }
    Ok(())
}

/// A map's value: unlike fields, an empty string is a value (a ConfigMap key may hold "").
fn map_value(
    msg: &'static Msg,
    field: &schema::Field,
    wire: Wire<'_>,
    depth: usize,
) -> Result<Value, DecodeError> {
    scalar(msg, field, field.ty, wire, depth)
}

fn scalar(
    msg: &'static Msg,
    field: &schema::Field,
    ty: Ty,
    wire: Wire<'_>,
    depth: usize,
) -> Result<Value, DecodeError> {
    let wrong = || malformed(format!("{}.{}: unexpected wire type", msg.name, field.name));
    Ok(match (ty, wire) {
        (Ty::Str, Wire::Len(b)) => json!(
            std::str::from_utf8(b)
                .map_err(|_| malformed(format!("{}.{}: not UTF-8", msg.name, field.name)))?
        ),
        (Ty::Bytes, Wire::Len(b)) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        (Ty::Bool, Wire::Varint(v)) => json!(v != 0),
        // int32 and int64 are both varints; negative int32s arrive sign-extended to 64 bits.
        (Ty::Int, Wire::Varint(v)) => json!(v as i64),
        (Ty::Msg(inner), Wire::Len(b)) => decode_message(inner, b, depth + 1)?,
        (Ty::Time, Wire::Len(b)) => time(b)?,
        (Ty::IntOrString, Wire::Len(b)) => match int_or_string(b)? {
            // A Service port's targetPort is a Go value, written even when unset; its zero
            // means "the port" (defaulting fills it). Elsewhere IntOrStrings are pointers.
            v if v == 0 && field.name == "targetPort" => Value::Null,
            v => v,
        },
        (Ty::Quantity, Wire::Len(b)) => {
            let mut r = Reader(b);
            let mut out = json!("");
            while let Some((num, w)) = r.tag()? {
                if let (1, Wire::Len(s)) = (num, w) {
                    out = json!(
                        std::str::from_utf8(s).map_err(|_| malformed("quantity is not UTF-8"))?
                    );
                }
            }
            out
        }
        (Ty::RawJson, Wire::Len(b)) => {
            let mut r = Reader(b);
            let mut out = Value::Null;
            while let Some((num, w)) = r.tag()? {
                if let (1, Wire::Len(raw)) = (num, w) {
                    out = serde_json::from_slice(raw)
                        .map_err(|e| malformed(format!("embedded JSON: {e}")))?;
                }
            }
            out
        }
        (Ty::Skip, _) => Value::Null,
        _ => return Err(wrong()),
    })
}

fn time(bytes: &[u8]) -> Result<Value, DecodeError> {
    let (mut seconds, mut nanos) = (0i64, 0i64);
    let mut r = Reader(bytes);
    while let Some((num, w)) = r.tag()? {
        match (num, w) {
            (1, Wire::Varint(v)) => seconds = v as i64,
            (2, Wire::Varint(v)) => nanos = v as i64,
            _ => {}
        }
    }
    if seconds == 0 && nanos == 0 {
        return Ok(Value::Null);
    }
    let nanos = i32::try_from(nanos).map_err(|_| malformed("time: nanoseconds out of range"))?;
    let ts = jiff::Timestamp::new(seconds, nanos).map_err(|e| malformed(format!("time: {e}")))?;
    Ok(json!(format!("{ts:.0}")))
}

fn int_or_string(bytes: &[u8]) -> Result<Value, DecodeError> {
    let (mut is_string, mut int_val, mut str_val) = (false, 0i64, String::new());
    let mut r = Reader(bytes);
    while let Some((num, w)) = r.tag()? {
        match (num, w) {
            (1, Wire::Varint(v)) => is_string = v == 1,
            (2, Wire::Varint(v)) => int_val = i64::from(v as i32),
            (3, Wire::Len(s)) => {
                str_val = std::str::from_utf8(s)
                    .map_err(|_| malformed("intOrString is not UTF-8"))?
                    .to_string();
            }
            _ => {}
        }
    }
    Ok(if is_string {
        json!(str_val)
    } else {
        json!(int_val)
    })
}

#[cfg(test)]
mod tests;
