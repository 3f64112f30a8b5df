//! The Kubernetes patch types as pure functions over `serde_json::Value`.
//!
//! The PATCH handler picks one with [`PatchType::from_content_type`], applies it to the
//! stored object with [`apply_json_patch`], [`apply_merge_patch`] or
//! [`apply_strategic_merge_patch`], then validates and stores the result like an update.
//! Nothing here does I/O or looks at the store; errors carry the HTTP status the handler
//! should answer with ([`PatchError::status_code`]). Server-side apply
//! (`application/apply-patch+yaml`) is only recognized here; [`crate::apply`] implements it with
//! the same list metadata.

pub(crate) mod schema;
mod strategic;
#[cfg(test)]
mod tests;

use serde_json::Value;

/// Most operations one JSON patch may carry; the apiserver's `maxJSONPatchOperations`.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Why a patch could not be applied. No variant is retryable with the same body, and the
/// target is never modified (every function works on a copy).
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The body is not JSON, or not the shape its content type requires (a JSON patch that
    /// is not a list of operations, a merge patch that is not an object, a malformed or
    /// unknown strategic-merge directive). HTTP 400.
    #[error("invalid patch: {0}")]
    InvalidPatch(String),
    /// A JSON patch `test` operation found a different value. HTTP 422.
    #[error("json patch test failed: {0}")]
    TestFailed(String),
    /// A JSON patch operation's `path` or `from` does not exist in the object. HTTP 422.
    #[error("json patch path not found: {0}")]
    PathNotFound(String),
    /// The patch is well formed but cannot apply to this object (a `move` into its own
    /// child, a strategic merge of lists of lists). HTTP 422.
    #[error("patch cannot be applied: {0}")]
    Unprocessable(String),
    /// A JSON patch with more than [`MAX_JSON_PATCH_OPERATIONS`] operations. HTTP 413.
    #[error("json patch has {0} operations, more than the {MAX_JSON_PATCH_OPERATIONS} allowed")]
    TooManyOperations(usize),
    /// Strategic merge patch on a kind without built-in patch metadata (custom and drover.io
    /// kinds, unknown kind names); the client should use a merge or JSON patch. HTTP 415.
    #[error(
        "strategic merge patch is not supported for kind {0}; use application/merge-patch+json or application/json-patch+json"
    )]
    UnsupportedForKind(String),
    /// The stored object is not a JSON object: a bug in the caller or the store, not the
    /// client's fault. HTTP 500.
    #[error("invalid target: {0}")]
    InvalidTarget(String),
}

impl PatchError {
    /// The HTTP status the gateway answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::InvalidPatch(_) => 400,
            PatchError::TestFailed(_)
            | PatchError::PathNotFound(_)
            | PatchError::Unprocessable(_) => 422,
            PatchError::TooManyOperations(_) => 413,
            PatchError::UnsupportedForKind(_) => 415,
            PatchError::InvalidTarget(_) => 500,
        }
    }
}

/// The patch content types of the Kubernetes API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json` (built-in kinds only).
    Strategic,
    /// `application/apply-patch+yaml`: server-side apply, implemented by [`crate::apply`].
    Apply,
}

impl PatchType {
    /// Every patch type, in the order the apiserver lists them in its 415 message.
    pub const ALL: [PatchType; 4] = [
        PatchType::Json,
        PatchType::Merge,
        PatchType::Strategic,
        PatchType::Apply,
    ];

    /// The patch type of a `Content-Type` header value; parameters such as
    /// `; charset=utf-8` and letter case are ignored. `None` for any other media type.
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        PatchType::ALL
            .into_iter()
            .find(|patch_type| media_type.eq_ignore_ascii_case(patch_type.content_type()))
    }

    /// The media type naming this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Strategic => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Applies an `application/json-patch+json` body (RFC 6902) to a copy of `target`.
/// Operations apply in order; if one fails, none takes effect.
pub fn apply_json_patch(target: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let operations: json_patch::Patch = serde_json::from_slice(patch)
        .map_err(|error| PatchError::InvalidPatch(format!("not a json patch: {error}")))?;
    if operations.0.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations(operations.0.len()));
    }
    let mut patched = target.clone();
    // `patch_unsafe` skips the crate's undo log: on error the half-patched copy is dropped.
    json_patch::patch_unsafe(&mut patched, &operations).map_err(json_patch_error)?;
    Ok(patched)
}

fn json_patch_error(error: json_patch::PatchError) -> PatchError {
    let message = format!(
        "operation {} at {}: {}",
        error.operation,
        error.path,
        error.kind.to_string().to_lowercase()
    );
    match error.kind {
        json_patch::PatchErrorKind::TestFailed => PatchError::TestFailed(message),
        json_patch::PatchErrorKind::InvalidPointer
        | json_patch::PatchErrorKind::InvalidFromPointer => PatchError::PathNotFound(message),
        _ => PatchError::Unprocessable(message),
    }
}

/// Applies an `application/merge-patch+json` body (RFC 7386) to a copy of `target`:
/// `null` deletes a key, objects merge recursively, anything else (arrays included)
/// replaces. The body must be an object: RFC 7386 would let any other value replace the
/// whole document, which is never a valid API object.
pub fn apply_merge_patch(target: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let patch = parse_object(patch, "merge patch")?;
    let mut patched = target.clone();
    json_patch::merge(&mut patched, &patch);
    Ok(patched)
}

/// Applies an `application/strategic-merge-patch+json` body to a copy of `target`, an object
/// of built-in kind `kind` ("Pod", "Deployment", ...; see
/// [`supports_strategic_merge_patch`]). Semantics are the apiserver's: see the
/// `strategic` module.
pub fn apply_strategic_merge_patch(
    kind: &str,
    target: &Value,
    patch: &[u8],
) -> Result<Value, PatchError> {
    let schema =
        schema::for_kind(kind).ok_or_else(|| PatchError::UnsupportedForKind(kind.to_owned()))?;
    let patch = parse_object(patch, "strategic merge patch")?;
    strategic::apply(schema, target, patch)
}

/// Whether [`apply_strategic_merge_patch`] accepts `kind`.
pub fn supports_strategic_merge_patch(kind: &str) -> bool {
    schema::for_kind(kind).is_some()
}

/// The kinds [`apply_strategic_merge_patch`] accepts.
pub fn strategic_merge_patch_kinds() -> impl Iterator<Item = &'static str> {
    schema::kinds()
}

/// Parses a patch body that must be a JSON object.
fn parse_object(body: &[u8], what: &str) -> Result<Value, PatchError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| PatchError::InvalidPatch(format!("{what} is not json: {error}")))?;
    if !value.is_object() {
        return Err(PatchError::InvalidPatch(format!(
            "{what} must be a json object"
        )));
    }
    Ok(value)
}
