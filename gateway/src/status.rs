//! Kubernetes `Status` responses: every error the API returns is one, with the HTTP code,
//! a machine-readable reason and, for invalid objects, one cause per field error.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use bus_schema::KindInfo;
use drover_store::StoreError;
use serde_json::{Value, json};

/// An API error ready to be rendered as a `Status`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason` (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `Status.details`, when there is one.
    pub details: Option<Value>,
}

impl ApiError {
    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 400,
            reason: "BadRequest",
            message: message.into(),
            details: None,
        }
    }

    /// 404 NotFound for a path that names no resource.
    pub fn not_found_path(path: &str) -> ApiError {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("the server could not find the requested resource ({path})"),
            details: None,
        }
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(verb: &str, what: &str) -> ApiError {
        ApiError {
            code: 405,
            reason: "MethodNotAllowed",
            message: format!("{verb} is not supported on {what}"),
            details: None,
        }
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> ApiError {
        ApiError {
            code: 401,
            reason: "Unauthorized",
            message: "Unauthorized".into(),
            details: None,
        }
    }

    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 403,
            reason: "Forbidden",
            message: message.into(),
            details: None,
        }
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(ct: &str) -> ApiError {
        ApiError {
            code: 415,
            reason: "UnsupportedMediaType",
            message: format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {ct:?})"
            ),
            details: None,
        }
    }

    /// 422 Invalid for a bad `DeleteOptions` (or other options) field.
    pub fn invalid_options(field: &str, detail: &str) -> ApiError {
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("DeleteOptions.meta.k8s.io \"\" is invalid: {field}: {detail}"),
            details: Some(json!({"group": "meta.k8s.io", "kind": "DeleteOptions",
                "causes": [{"reason": "FieldValueNotSupported", "message": detail, "field": field}]})),
        }
    }

    /// 422 Invalid with causes.
    pub fn invalid(kind: &KindInfo, name: &str, causes: Vec<Value>, summary: &str) -> ApiError {
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{} {name:?} is invalid: {summary}", kind.kind),
            details: Some(
                json!({"name": name, "group": kind.group, "kind": kind.kind, "causes": causes}),
            ),
        }
    }

    /// Maps a store error for an object of `kind` named `name`.
    pub fn from_store(kind: &KindInfo, name: &str, err: StoreError) -> ApiError {
        let details = || Some(json!({"name": name, "group": kind.group, "kind": kind.plural}));
        let gr = kind.group_resource();
        match err {
            StoreError::NotFound { .. } => ApiError {
                code: 404,
                reason: "NotFound",
                message: format!("{gr} {name:?} not found"),
                details: details(),
            },
            StoreError::AlreadyExists { name, .. } => ApiError {
                code: 409,
                reason: "AlreadyExists",
                message: format!("{gr} {name:?} already exists"),
                details: Some(json!({"name": name, "group": kind.group, "kind": kind.plural})),
            },
            StoreError::Conflict { reason, .. } => ApiError {
                code: 409,
                reason: "Conflict",
                message: format!("Operation cannot be fulfilled on {gr} {name:?}: {reason}"),
                details: details(),
            },
            StoreError::Invalid { name, errors, .. } => {
                let causes = errors
                    .0
                    .iter()
                    .map(|e| json!({"reason": e.reason(), "message": e.body(), "field": e.field}))
                    .collect();
                let summary = errors
                    .0
                    .iter()
                    .map(|e| e.message())
                    .collect::<Vec<_>>()
                    .join(", ");
                let summary = if errors.0.len() > 1 {
                    format!("[{summary}]")
                } else {
                    summary
                };
                ApiError::invalid(kind, &name, causes, &summary)
            }
            StoreError::TooLarge { size, limit } => ApiError {
                code: 413,
                reason: "RequestEntityTooLarge",
                message: format!(
                    "request entity too large: the object is {size} bytes, the limit is {limit}"
                ),
                details: details(),
            },
            StoreError::Gone { requested, oldest } => ApiError {
                code: 410,
                reason: "Expired",
                message: format!("too old resource version: {requested} ({oldest})"),
                details: None,
            },
            StoreError::BadRequest(message) => ApiError::bad_request(message),
            e @ StoreError::Corrupt { .. } => ApiError {
                code: 500,
                reason: "InternalError",
                message: e.to_string(),
                details: details(),
            },
            StoreError::Nats(message) => ApiError {
                code: 503,
                reason: "ServiceUnavailable",
                message: format!("the store is unavailable, retry: {message}"),
                details: Some(json!({"retryAfterSeconds": 1})),
            },
        }
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }

    /// The HTTP response.
    pub fn response(&self) -> HttpResponse {
        HttpResponse::build(
            StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        )
        .json(self.to_status())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl actix_web::ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
    fn error_response(&self) -> HttpResponse {
        self.response()
    }
}

/// A `Status` of success (delete responses for objects that are gone).
pub fn success(kind: &KindInfo, name: &str, uid: Option<&str>) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
           "details": {"name": name, "group": kind.group, "kind": kind.plural, "uid": uid}})
}
