//! `ConfigMap` and `Secret` rules: data keys become file names, and the whole payload must
//! fit in one object (1 MiB).

use std::collections::BTreeSet;

use super::value::{Ctx, Obj};
use super::{FieldError, FieldPath, is_config_map_key};

/// Largest payload of a ConfigMap or Secret, in bytes.
pub(super) const MAX_DATA_SIZE_BYTES: usize = 1024 * 1024;

/// Spec rule for `ConfigMap` objects (their payload is top-level `data`/`binaryData`).
pub(super) fn validate_config_map(cx: &mut Ctx, root: &Obj) {
    let data_path = FieldPath::new("data");
    let binary_path = FieldPath::new("binaryData");
    let data = cx.str_map_at(root.get("data"), &data_path);
    let binary = cx.str_map_at(root.get("binaryData"), &binary_path);
    let binary_keys: BTreeSet<&str> = binary.iter().map(|(key, _)| *key).collect();
    let mut total_bytes = 0usize;
    for (key, value) in &data {
        let key_path = data_path.key(key);
        for msg in is_config_map_key(key) {
            cx.push(FieldError::invalid(&key_path, *key, msg));
        }
        if binary_keys.contains(key) {
            cx.push(FieldError::invalid(
                &key_path,
                *key,
                "duplicate of key present in binaryData",
            ));
        }
        total_bytes = total_bytes.saturating_add(value.len());
    }
    for (key, value) in &binary {
        let key_path = binary_path.key(key);
        for msg in is_config_map_key(key) {
            cx.push(FieldError::invalid(&key_path, *key, msg));
        }
        total_bytes = total_bytes.saturating_add(checked_base64_len(cx, value, &key_path));
    }
    if total_bytes > MAX_DATA_SIZE_BYTES {
        // The empty path means "the whole object", as in Kubernetes.
        cx.push(FieldError::too_long("", MAX_DATA_SIZE_BYTES));
    }
    cx.bool_at(root.get("immutable"), &FieldPath::new("immutable"));
}

/// Spec rule for `Secret` objects.
pub(super) fn validate_secret(cx: &mut Ctx, root: &Obj) {
    let data_path = FieldPath::new("data");
    let string_data_path = FieldPath::new("stringData");
    let data = cx.str_map_at(root.get("data"), &data_path);
    let string_data = cx.str_map_at(root.get("stringData"), &string_data_path);
    let mut total_bytes = 0usize;
    for (key, value) in &data {
        let key_path = data_path.key(key);
        for msg in is_config_map_key(key) {
            cx.push(FieldError::invalid(&key_path, *key, msg));
        }
        total_bytes = total_bytes.saturating_add(checked_base64_len(cx, value, &key_path));
    }
    // Kubernetes merges stringData into data before validating; reporting the field the user
    // actually wrote is clearer.
    for (key, value) in &string_data {
        for msg in is_config_map_key(key) {
            cx.push(FieldError::invalid(string_data_path.key(key), *key, msg));
        }
        total_bytes = total_bytes.saturating_add(value.len());
    }
    if total_bytes > MAX_DATA_SIZE_BYTES {
        cx.push(FieldError::too_long(&data_path, MAX_DATA_SIZE_BYTES));
    }

    let type_path = FieldPath::new("type");
    let secret_type = cx.str_at(root.get("type"), &type_path).unwrap_or("");
    let required_keys: &[&str] = match secret_type {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        _ => &[],
    };
    for required in required_keys {
        let present = data
            .iter()
            .chain(&string_data)
            .any(|(key, _)| key == required);
        if !present {
            cx.push(FieldError::required(data_path.key(required)));
        }
    }
    cx.bool_at(root.get("immutable"), &FieldPath::new("immutable"));
}

/// Decoded length of a base64 value (`[]byte` fields travel as standard, padded base64);
/// reports a malformed one without echoing it, since it may be a secret.
fn checked_base64_len(cx: &mut Ctx, value: &str, path: &FieldPath) -> usize {
    match base64_decoded_len(value) {
        Some(len) => len,
        None => {
            let mut error = FieldError::invalid(
                path,
                "",
                "must be base64-encoded (standard alphabet, padded)",
            );
            error.bad_value = None;
            cx.push(error);
            value.len()
        }
    }
}

/// Decoded length of standard padded base64, `None` if malformed.
pub(super) fn base64_decoded_len(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let padding = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    if padding > 2 {
        return None;
    }
    let body = &bytes[..bytes.len() - padding];
    let valid = body
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    valid.then(|| bytes.len() / 4 * 3 - padding)
}
