//! YAML on the wire: request bodies sent as `application/yaml` and responses for clients
//! that `Accept` it. Handlers work on JSON only; this module converts at the edges.

use actix_web::HttpResponse;
use actix_web::http::header::{CONTENT_TYPE, HeaderValue};
use serde_json::Value;

use crate::status::ApiError;

/// Whether a media type (parameters allowed) is YAML.
pub fn is_yaml_media_type(media_type: &str) -> bool {
    let essence = media_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/yaml")
}

/// Parses a YAML document (JSON is YAML too) into JSON bytes; 400 when it is not YAML
/// or holds something JSON cannot (non-string keys, several documents).
pub fn yaml_to_json_bytes(body: &[u8]) -> Result<actix_web::web::Bytes, ApiError> {
    let value: Value = serde_norway::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))?;
    serde_json::to_vec(&value)
        .map(actix_web::web::Bytes::from)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))
}

/// Renders a JSON value as YAML text.
pub fn to_yaml(value: &Value) -> String {
    serde_norway::to_string(value).unwrap_or_default()
}

/// Turns a complete JSON response into YAML (same status and headers). Streaming
/// responses (watches) and non-JSON bodies pass through unchanged.
pub async fn json_response_to_yaml(resp: HttpResponse) -> HttpResponse {
    let is_json = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let streaming = resp.headers().contains_key("transfer-encoding");
    if !is_json || streaming {
        return resp;
    }
    let (head, body) = resp.into_parts();
    let bytes = match actix_web::body::to_bytes(body).await {
        Ok(b) => b,
        Err(_) => return HttpResponse::InternalServerError().finish(),
    };
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => return head.set_body(bytes).map_into_boxed_body(),
    };
    let mut out = head.set_body(to_yaml(&value)).map_into_boxed_body();
    out.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        for (mt, yaml) in [
            ("application/yaml", true),
            ("application/yaml; charset=utf-8", true),
            ("APPLICATION/YAML", true),
            ("application/json", false),
            ("application/apply-patch+yaml", false),
            ("", false),
        ] {
            assert_eq!(is_yaml_media_type(mt), yaml, "{mt}");
        }
    }

    #[test]
    fn yaml_bodies() {
        let ok = yaml_to_json_bytes(
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: \"1\"\n",
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&ok).unwrap();
        assert_eq!(v["metadata"]["name"], "a");
        assert_eq!(v["data"]["k"], "1");
        assert_eq!(yaml_to_json_bytes(b"a: [").unwrap_err().code, 400);
        assert_eq!(yaml_to_json_bytes(b"{1: 2}: x").unwrap_err().code, 400);
        let text = to_yaml(&serde_json::json!({"kind": "Status", "code": 404}));
        assert!(text.contains("kind: Status"), "{text}");
    }
}
