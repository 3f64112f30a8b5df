//! The store's error type. Each variant says whether a caller may retry and what the
//! failed call did to stored state (always: nothing, unless stated).

use bus_schema::validation::FieldErrors;

/// Errors returned by [`crate::Store`] operations.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist. Not retryable; nothing was written.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// `plural.group` of the kind.
        kind: String,
        /// Object name.
        name: String,
    },
    /// Create of a name that exists. Not retryable; nothing was written.
    #[error("{kind} {name:?} already exists")]
    AlreadyExists {
        /// `plural.group` of the kind.
        kind: String,
        /// Object name.
        name: String,
    },
    /// The resourceVersion (or a precondition) did not match the stored object: someone
    /// else wrote first. Retryable after re-reading; nothing was written.
    #[error("operation cannot be fulfilled on {kind} {name:?}: {reason}")]
    Conflict {
        /// `plural.group` of the kind.
        kind: String,
        /// Object name.
        name: String,
        /// What did not match.
        reason: String,
    },
    /// The object failed validation; every problem is listed. Not retryable.
    #[error("{kind} {name:?} is invalid: {errors}")]
    Invalid {
        /// `plural.group` of the kind.
        kind: String,
        /// Object name (may be empty with generateName).
        name: String,
        /// Every problem with its field path.
        errors: FieldErrors,
    },
    /// The encoded object is larger than the store accepts. Not retryable.
    #[error("object is too large: {size} bytes, the limit is {limit} bytes")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A watch asked for a revision the bucket no longer holds. Not retryable with the
    /// same revision: re-list and watch from the list's resourceVersion.
    #[error("too old resource version: {requested} (oldest available {oldest})")]
    Gone {
        /// The revision asked for.
        requested: u64,
        /// The oldest revision still held.
        oldest: u64,
    },
    /// The request itself is malformed (bad continue token, selector, resourceVersion).
    /// Not retryable.
    #[error("{0}")]
    BadRequest(String),
    /// A stored value could not be decoded. Not retryable; the value is left as it is.
    #[error("stored {kind} {key:?} could not be decoded: {reason}")]
    Corrupt {
        /// `plural.group` of the kind.
        kind: String,
        /// KV key.
        key: String,
        /// Decoder message.
        reason: String,
    },
    /// NATS or JetStream failed (connection, timeout, no quorum). Retryable; the write
    /// may or may not have been applied unless the error says it was not acknowledged.
    #[error("nats: {0}")]
    Nats(String),
}

impl StoreError {
    /// Whether retrying the same call (after re-reading, for conflicts) can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Conflict { .. } | StoreError::Nats(_))
    }

    pub(crate) fn nats(e: impl std::fmt::Display) -> StoreError {
        StoreError::Nats(e.to_string())
    }
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
