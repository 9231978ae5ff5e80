//! Which object a URL addresses. The global paths (`{BASE}/{plural}[/{name}]`) and the
//! project-scoped ones (`{BASE}/namespaces/{ns}/{plural}[/{name}]`) are served by the same
//! handlers: [`TargetPath`] extracts either, [`TargetPath::resolve`] checks it against the
//! kind's scope.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use api::KindInfo;

use super::BASE;
use crate::error::{ApiError, ApiResult};
use crate::registry::object_key;

/// The path parameters of a resource route, before they are checked.
pub(super) struct TargetPath {
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
}

impl TargetPath {
    /// The object (or collection) addressed: 404 for an unknown kind or a path of the
    /// wrong scope.
    pub(super) fn resolve(self) -> ApiResult<Target> {
        Target::resolve(&self.plural, self.namespace, self.name)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TargetPath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(mut params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self {
            plural: params.remove("plural").unwrap_or_default(),
            namespace: params.remove("ns"),
            name: params.remove("name"),
        })
    }
}

/// The object an endpoint addresses.
pub struct Target {
    pub kind: &'static KindInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Target {
    pub(crate) fn resolve(
        plural: &str,
        namespace: Option<String>,
        name: Option<String>,
    ) -> ApiResult<Self> {
        let kind = api::KINDS
            .iter()
            .find(|k| k.plural == plural)
            .ok_or_else(|| ApiError::not_found_path(&format!("{BASE}/{plural}")))?;
        match (kind.namespaced(), &namespace) {
            (false, Some(_)) => {
                return Err(ApiError::not_found_path(&format!(
                    "{BASE}/namespaces/…/{plural} ({} is not project-scoped)",
                    kind.kind
                )));
            }
            (true, None) if name.is_some() => {
                return Err(ApiError::not_found_path(&format!(
                    "{BASE}/{plural}/… ({} is project-scoped: use {BASE}/namespaces/PROJECT/{plural}/NAME)",
                    kind.kind
                )));
            }
            _ => {}
        }
        Ok(Self {
            kind,
            namespace,
            name,
        })
    }

    pub(crate) fn ns(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    pub(crate) fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    pub(crate) fn key(&self) -> String {
        object_key(self.kind, self.ns(), self.name())
    }
}
