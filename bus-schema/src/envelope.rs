//! The wire envelope of every drover bus message: a MessagePack body (named fields, via
//! `rmp_serde::to_vec_named`, because `k8s-openapi` types do not round-trip through the
//! compact array form) plus NATS headers for the W3C `traceparent`, the schema version
//! and the sender.
//!
//! Decoding never panics: anything that is not a well-formed envelope of a supported
//! schema version comes back as a [`DecodeError`] for the caller to log and drop.

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

/// Schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Header carrying the W3C trace context (`00-<trace-id>-<parent-id>-<flags>`).
pub const HEADER_TRACEPARENT: &str = "traceparent";
/// Header carrying the schema version of the body.
pub const HEADER_SCHEMA: &str = "Drover-Schema";
/// Header naming the sending component (e.g. `gateway/host-a`, `store`).
pub const HEADER_SENDER: &str = "Drover-Sender";

/// Metadata that travels in headers next to a body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Sending component.
    pub sender: String,
    /// W3C `traceparent`, when the message belongs to a trace.
    pub traceparent: Option<String>,
}

/// Why a message could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The body could not be serialized. Not retryable: the value itself is unsupported.
    #[error("encoding message body: {0}")]
    Body(#[from] rmp_serde::encode::Error),
    /// A header value contained characters NATS headers cannot carry. Not retryable.
    #[error("invalid header value for {header}")]
    Header {
        /// Name of the header.
        header: &'static str,
    },
}

/// Why a received message was rejected. Never retryable: the message is logged and dropped.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The message has no headers or no schema header.
    #[error("missing {HEADER_SCHEMA} header")]
    MissingSchema,
    /// The schema header is not a version this build reads.
    #[error("unsupported schema version {0:?} (this build reads {SCHEMA_VERSION})")]
    UnsupportedSchema(String),
    /// The body is not valid MessagePack for the expected type.
    #[error("decoding message body: {0}")]
    Body(#[from] rmp_serde::decode::Error),
}

/// Encodes a body into MessagePack bytes (named-field maps).
pub fn encode_body<T: Serialize + ?Sized>(body: &T) -> Result<Bytes, EncodeError> {
    Ok(Bytes::from(rmp_serde::to_vec_named(body)?))
}

/// Decodes a MessagePack body.
pub fn decode_body<T: DeserializeOwned>(payload: &[u8]) -> Result<T, DecodeError> {
    Ok(rmp_serde::from_slice(payload)?)
}

/// Builds the headers for a message with the given metadata.
pub fn headers(meta: &Meta) -> Result<HeaderMap, EncodeError> {
    let mut map = HeaderMap::new();
    map.insert(HEADER_SCHEMA, SCHEMA_VERSION.to_string().as_str());
    if !is_header_safe(&meta.sender) {
        return Err(EncodeError::Header {
            header: HEADER_SENDER,
        });
    }
    map.insert(HEADER_SENDER, meta.sender.as_str());
    if let Some(tp) = &meta.traceparent {
        if !is_valid_traceparent(tp) {
            return Err(EncodeError::Header {
                header: HEADER_TRACEPARENT,
            });
        }
        map.insert(HEADER_TRACEPARENT, tp.as_str());
    }
    Ok(map)
}

/// Encodes a body and its headers, ready for `publish_with_headers`.
pub fn encode<T: Serialize + ?Sized>(
    body: &T,
    meta: &Meta,
) -> Result<(HeaderMap, Bytes), EncodeError> {
    Ok((headers(meta)?, encode_body(body)?))
}

/// Checks the schema header and reads the metadata. A missing `traceparent` is fine; a
/// malformed one is dropped (tracing must never make a message undeliverable).
pub fn decode_meta(headers: Option<&HeaderMap>) -> Result<Meta, DecodeError> {
    let headers = headers.ok_or(DecodeError::MissingSchema)?;
    let schema = headers
        .get(HEADER_SCHEMA)
        .ok_or(DecodeError::MissingSchema)?;
    if schema.as_str().trim() != SCHEMA_VERSION.to_string() {
        return Err(DecodeError::UnsupportedSchema(
            schema.as_str().chars().take(32).collect(),
        ));
    }
    let sender = headers
        .get(HEADER_SENDER)
        .map(|v| v.as_str().to_string())
        .unwrap_or_default();
    let traceparent = headers
        .get(HEADER_TRACEPARENT)
        .map(|v| v.as_str().to_string())
        .filter(|tp| is_valid_traceparent(tp));
    Ok(Meta {
        sender,
        traceparent,
    })
}

/// Decodes a whole message: headers first, then the body.
pub fn decode<T: DeserializeOwned>(
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<(Meta, T), DecodeError> {
    let meta = decode_meta(headers)?;
    Ok((meta, decode_body(payload)?))
}

/// W3C trace context version 00: `00-<32 hex, not all 0>-<16 hex, not all 0>-<2 hex>`.
pub fn is_valid_traceparent(tp: &str) -> bool {
    let parts: Vec<&str> = tp.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2)
}

fn is_header_safe(v: &str) -> bool {
    v.bytes().all(|b| (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
    use proptest::prelude::*;

    fn pod() -> Pod {
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some("busybox".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn pod_round_trips() {
        let meta = Meta {
            sender: "test/a".into(),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        };
        let (h, body) = encode(&pod(), &meta).unwrap();
        let (meta2, pod2): (Meta, Pod) = decode(Some(&h), &body).unwrap();
        assert_eq!(meta, meta2);
        assert_eq!(pod(), pod2);
    }

    #[test]
    fn rejects_missing_and_future_schema() {
        let body = encode_body(&pod()).unwrap();
        assert!(matches!(
            decode::<Pod>(None, &body),
            Err(DecodeError::MissingSchema)
        ));
        let mut h = HeaderMap::new();
        h.insert(HEADER_SCHEMA, "99");
        assert!(matches!(
            decode::<Pod>(Some(&h), &body),
            Err(DecodeError::UnsupportedSchema(_))
        ));
    }

    #[test]
    fn malformed_traceparent_is_dropped_not_fatal() {
        let mut h = headers(&Meta {
            sender: "x".into(),
            traceparent: None,
        })
        .unwrap();
        h.insert(HEADER_TRACEPARENT, "garbage");
        let meta = decode_meta(Some(&h)).unwrap();
        assert_eq!(meta.traceparent, None);
        assert!(
            headers(&Meta {
                sender: "x".into(),
                traceparent: Some("nope".into())
            })
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let h = headers(&Meta::default()).unwrap();
            let _ = decode::<Pod>(Some(&h), &bytes);
            let _ = decode::<serde_json::Value>(Some(&h), &bytes);
            let _ = decode::<crate::drover::TrafficSplit>(Some(&h), &bytes);
        }
    }
}
