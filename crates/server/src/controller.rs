//! The error of in-process controllers (node lifecycle, compaction, the policy audit; the
//! scheduler can adopt it), kept apart from the HTTP [`ApiError`]: a controller's failure
//! is read in the server log, so it keeps its cause chain, which [`Report`] prints
//! (`ApiError::internal` answers clients without the detail, and a log line of it said
//! nothing but "an internal error occurred").
//!
//! Conversions: from [`StoreError`], [`ReadError`] and [`ApiError`] (the handlers' helpers a
//! controller shares, such as admission), so `?` works in a controller; and to
//! [`ApiError`], for a handler that calls controller code (`placement_api` calls the
//! scheduler's fleet snapshot).

use std::fmt;

use store::StoreError;

use crate::error::ApiError;
use crate::registry::ReadError;

/// Why a controller's step failed.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("the store failed")]
    Store(#[from] StoreError),
    #[error("stored object {key} does not decode")]
    Decode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// A helper shared with the handlers refused (admission, a missing object).
    #[error("{}", .0.message)]
    Api(ApiError),
    /// Anything else, said in words.
    #[error("{0}")]
    Other(String),
}

impl ControllerError {
    pub fn other(message: impl Into<String>) -> Self {
        Self::Other(message.into())
    }
}

impl From<ReadError> for ControllerError {
    fn from(err: ReadError) -> Self {
        match err {
            ReadError::Store(e) => Self::Store(e),
            ReadError::Corrupt { key, source } => Self::Decode { key, source },
        }
    }
}

impl From<ApiError> for ControllerError {
    fn from(err: ApiError) -> Self {
        Self::Api(err)
    }
}

impl From<ControllerError> for ApiError {
    fn from(err: ControllerError) -> Self {
        match err {
            ControllerError::Store(e) => ApiError::from(e),
            ControllerError::Api(e) => e,
            other => ApiError::internal(Report(&other)),
        }
    }
}

/// An error with its causes, `outer: cause: root cause` (like anyhow's `{:#}`), for log
/// lines: `tracing::warn!(error = %Report(&e), "…")`.
pub struct Report<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_prints_the_cause_chain() {
        let source = serde_json::from_slice::<serde_json::Value>(b"{").unwrap_err();
        let e = ControllerError::Decode {
            key: "/registry/nodes/n1".into(),
            source,
        };
        let text = Report(&e).to_string();
        assert!(
            text.starts_with("stored object /registry/nodes/n1 does not decode: EOF"),
            "{text}"
        );
    }

    #[test]
    fn api_errors_keep_their_status() {
        let e = ControllerError::from(ApiError::not_found("nodes", "n1"));
        assert_eq!(Report(&e).to_string(), "nodes \"n1\" not found");
        assert_eq!(ApiError::from(e).code, axum::http::StatusCode::NOT_FOUND);
    }
}
