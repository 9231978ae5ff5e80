//! Request bodies as JSON values: the format a `Content-Type` names and the decoder for
//! it. YAML goes through [`crate::yaml`] (alias expansion and nesting bounded); JSON
//! through serde_json (nesting bounded at 128 by serde_json itself).

use serde_json::Value;

use crate::yaml::{self, YamlError};

/// The format of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Yaml,
}

impl BodyFormat {
    /// The format of a media type without parameters (`application/json`,
    /// `application/apply-patch+yaml`, ...); an empty one is JSON. `None`: not supported.
    pub fn from_media_type(media_type: &str) -> Option<BodyFormat> {
        if media_type.ends_with("yaml") {
            Some(BodyFormat::Yaml)
        } else if media_type.ends_with("json") || media_type.is_empty() {
            Some(BodyFormat::Json)
        } else {
            None
        }
    }
}

/// Why a body could not be decoded; the message says what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is empty")]
    Empty,
    #[error("the request body is not valid JSON: {0}")]
    Json(String),
    #[error("the request body is not valid YAML: {0}")]
    Yaml(#[source] YamlError),
}

/// Decodes a request body. YAML is one document.
pub fn decode_body(format: BodyFormat, body: &[u8]) -> Result<Value, BodyError> {
    if body.is_empty() {
        return Err(BodyError::Empty);
    }
    match format {
        BodyFormat::Json => {
            serde_json::from_slice(body).map_err(|e| BodyError::Json(e.to_string()))
        }
        BodyFormat::Yaml => yaml::from_slice(body).map_err(BodyError::Yaml),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        use BodyFormat::*;
        assert_eq!(BodyFormat::from_media_type("application/json"), Some(Json));
        assert_eq!(BodyFormat::from_media_type(""), Some(Json));
        assert_eq!(
            BodyFormat::from_media_type("application/merge-patch+json"),
            Some(Json)
        );
        assert_eq!(
            BodyFormat::from_media_type("application/apply-patch+yaml"),
            Some(Yaml)
        );
        assert_eq!(BodyFormat::from_media_type("text/plain"), None);
    }

    #[test]
    fn errors_name_the_format() {
        assert_eq!(
            decode_body(BodyFormat::Json, b"").unwrap_err(),
            BodyError::Empty
        );
        let e = decode_body(BodyFormat::Json, b"{").unwrap_err().to_string();
        assert!(e.starts_with("the request body is not valid JSON: "), "{e}");
        let bomb = crate::yaml::tests::billion_laughs();
        let e = decode_body(BodyFormat::Yaml, bomb.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "the request body is not valid YAML: YAML aliases expand beyond the limit"
            ),
            "{e}"
        );
    }
}
