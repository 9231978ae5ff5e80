//! The one HTTP error type. Every handler returns [`ApiError`]; it becomes a Kubernetes
//! `Status` object here and nowhere else.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use api::{FieldErrors, Status, StatusCause, StatusDetails};

/// An error answered to a client. 4xx errors say exactly what was wrong; internal errors are
/// logged with their detail and answered without it.
#[derive(Debug)]
pub struct ApiError {
    pub code: StatusCode,
    pub reason: &'static str,
    pub message: String,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub causes: Vec<StatusCause>,
}

impl ApiError {
    pub fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            kind: None,
            name: None,
            causes: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// `plural "name" not found`, as Kubernetes words it.
    pub fn not_found(plural: &str, name: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{plural} \"{name}\" not found"),
        );
        e.kind = Some(plural.to_owned());
        e.name = Some(name.to_owned());
        e
    }

    pub fn not_found_path(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource {path}"),
        )
    }

    pub fn already_exists(plural: &str, name: &str) -> Self {
        let mut e = Self::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{plural} \"{name}\" already exists"),
        );
        e.kind = Some(plural.to_owned());
        e.name = Some(name.to_owned());
        e
    }

    pub fn conflict(plural: &str, name: &str) -> Self {
        let mut e = Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {plural} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again"
            ),
        );
        e.kind = Some(plural.to_owned());
        e.name = Some(name.to_owned());
        e
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message)
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "Expired", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            message,
        )
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            message,
        )
    }

    /// 507: the store's disk is full (etcd's NOSPACE). The message says what to do.
    pub fn insufficient_storage(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "InsufficientStorage",
            message,
        )
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "Timeout", message)
    }

    /// Anything unexpected: log the detail, answer without it.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "an internal error occurred; the server log has the detail",
        )
    }

    /// A 422 that lists every invalid field.
    pub fn invalid(kind: &str, name: &str, errors: &FieldErrors) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {errors}"),
        );
        e.kind = Some(kind.to_owned());
        e.name = Some(name.to_owned());
        e.causes = errors
            .0
            .iter()
            .map(|f| StatusCause {
                reason: "FieldValueInvalid".to_owned(),
                message: f.message.clone(),
                field: f.field.clone(),
            })
            .collect();
        e
    }

    /// The Kubernetes `Status` object for this error.
    pub fn to_status(&self) -> Status {
        let mut status = Status::failure(self.code.as_u16(), self.reason, &self.message);
        if self.kind.is_some() || self.name.is_some() || !self.causes.is_empty() {
            status.details = Some(StatusDetails {
                name: self.name.clone().unwrap_or_default(),
                group: api::GROUP.to_owned(),
                kind: self.kind.clone().unwrap_or_default(),
                causes: self.causes.clone(),
                ..StatusDetails::default()
            });
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code.as_u16(),
            self.reason,
            self.message
        )
    }
}

impl From<store::StoreError> for ApiError {
    fn from(err: store::StoreError) -> Self {
        match err {
            store::StoreError::Compacted { .. } => ApiError::expired(err.to_string()),
            store::StoreError::FutureRevision { .. } => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "Timeout", err.to_string())
            }
            // Not logged here: the store logs entering and leaving the state once.
            store::StoreError::NoSpace(no_space) => {
                ApiError::insufficient_storage(no_space.to_string())
            }
            // The write would exceed the store's per-transaction limit (etcd's request
            // size): the client's object is too big, nothing was written.
            store::StoreError::TooLarge { .. } => ApiError::too_large(err.to_string()),
            // The same for etcd's --max-txn-ops: one request's change needs more operations
            // than one transaction holds (batched controller writes split to fit).
            store::StoreError::TooManyOps { .. } => ApiError::too_large(err.to_string()),
            // Only controllers write fenced; a handler calling controller code (a drain,
            // say) on a replica that just lost the lead answers that it may be retried.
            store::StoreError::Fenced { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                err.to_string(),
            ),
            // etcd unreachable or not answering (a quorum lost, a partition): the client
            // may retry; the detail (endpoints tried) goes to the log.
            #[cfg(feature = "etcd")]
            store::StoreError::Backend(source)
                if source
                    .downcast_ref::<store::etcd::EtcdError>()
                    .is_some_and(store::etcd::EtcdError::is_unavailable) =>
            {
                tracing::warn!(error = %source, "the store is unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "the store (etcd) is unavailable; retry later",
                )
            }
            store::StoreError::Closed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the server is shutting down",
            ),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = axum::Json(self.to_status()).into_response();
        *response.status_mut() = self.code;
        response
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;
