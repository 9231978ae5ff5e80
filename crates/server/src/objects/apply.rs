//! PATCH: JSON merge patches, JSON patches and server-side apply (a whole manifest whose
//! spec, labels and annotations replace the stored ones; an apply of an object that does
//! not exist creates it).

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::write::{create_value, parse_rv, update_value};
use super::{
    Params, Target, check_namespace, check_type, content_type, decode_for_write, meta_str,
    parse_body, written_response,
};
use crate::app::AppState;
use crate::auth::{Principal, Verb, authorize, check_subresource};
use crate::error::{ApiError, ApiResult};
use crate::field_validation::with_warnings;

enum PatchKind {
    Merge,
    Json,
    Apply,
}

fn patch_kind(headers: &HeaderMap) -> ApiResult<PatchKind> {
    match content_type(headers) {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            Ok(PatchKind::Merge)
        }
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
        other => Err(ApiError::unsupported_media_type(format!(
            "patch content type {other:?} is not supported: use application/merge-patch+json, \
             application/json-patch+json or application/apply-patch+yaml"
        ))),
    }
}

pub(super) async fn patch(
    state: AppState,
    who: Principal,
    target: Target,
    q: Params,
    headers: &HeaderMap,
    body: &[u8],
    status: bool,
) -> ApiResult<Response> {
    // Permission before reading the body: parsing and field validation cost work.
    authorize(
        &who,
        Verb::Patch,
        target.kind,
        target.ns(),
        target.name.as_deref(),
    )?;
    check_subresource(&who, target.kind, status, Verb::Patch)?;
    let kind = patch_kind(headers)?;
    let dry_run = q.dry_run()?;
    let validation = q.field_validation()?;
    let patch_value = match kind {
        PatchKind::Apply => {
            let mut h = HeaderMap::new();
            h.insert(
                CONTENT_TYPE,
                "application/yaml".parse().expect("valid header"),
            );
            let manifest = parse_body(&h, body)?;
            // Server-side apply sends whole manifests: as kube-apiserver, refuse one that
            // does not say what it is rather than guess.
            for field in ["apiVersion", "kind"] {
                if manifest
                    .get(field)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    return Err(ApiError::bad_request(format!(
                        "{field} must be set in an apply patch (application/apply-patch+yaml): \
                         send the whole manifest, with apiVersion: {} and kind: {}",
                        api::API_VERSION,
                        target.kind.kind
                    )));
                }
            }
            manifest
        }
        _ => parse_body(&HeaderMap::new(), body)?,
    };
    // Optimistic retries: a patch without a resourceVersion applies to the latest object.
    for _ in 0..8 {
        let (current, _) = state.store().get(&target.key()).await?;
        let Some(current) = current else {
            if matches!(kind, PatchKind::Apply) && !status {
                let collection = Target {
                    kind: target.kind,
                    namespace: target.namespace.clone(),
                    name: target.name.clone(),
                };
                let mut value = patch_value;
                let warnings = validation.apply(target.kind, &mut value);
                let response =
                    create_value(&state, &who, collection, dry_run, value, "apply").await?;
                return Ok(with_warnings(response, &warnings));
            }
            return Err(ApiError::not_found(target.kind.plural, target.name()));
        };
        // A Secret's patch applies to its values, which are sealed again on the way out.
        let old = decode_for_write(&state, &current)?;
        let mut next = old.clone();
        match kind {
            PatchKind::Merge => json_patch::merge(&mut next, &patch_value),
            PatchKind::Json => {
                let ops: json_patch::Patch =
                    serde_json::from_value(patch_value.clone()).map_err(|e| {
                        ApiError::bad_request(format!("the JSON patch is not valid: {e}"))
                    })?;
                json_patch::patch(&mut next, &ops).map_err(|e| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        format!("the JSON patch cannot be applied: {e}"),
                    )
                })?;
            }
            PatchKind::Apply => {
                let mut manifest = patch_value.clone();
                check_type(&target, &mut manifest)?;
                check_namespace(&target, &mut manifest)?;
                apply_manifest(&mut next, &manifest, status);
            }
        }
        check_namespace(&target, &mut next)?;
        let warnings = validation.apply(target.kind, &mut next);
        let pinned = meta_str(&next, "resourceVersion")
            .filter(|rv| Some(*rv) != meta_str(&old, "resourceVersion"))
            .map(parse_rv)
            .transpose()?;
        let expected = pinned.unwrap_or(current.mod_revision);
        let verb = if matches!(kind, PatchKind::Apply) {
            "apply"
        } else {
            "patch"
        };
        match update_value(
            &state, &who, &target, &current, next, status, expected, dry_run, verb,
        )
        .await
        {
            Err(e) if e.reason == "Conflict" && pinned.is_none() => continue,
            Err(e) => return Err(e),
            Ok((stored, admission, more)) => {
                let mut warnings = warnings;
                warnings.extend(more);
                return Ok(with_warnings(
                    written_response(StatusCode::OK, &stored, &admission),
                    &warnings,
                ));
            }
        }
    }
    Err(ApiError::conflict(target.kind.plural, target.name()))
}

/// Apply a whole manifest onto the stored object: the manifest's spec, labels and
/// annotations replace the stored ones; status and server-owned metadata stay.
fn apply_manifest(object: &mut Value, manifest: &Value, status: bool) {
    if status {
        if let Some(s) = manifest.get("status") {
            object["status"] = s.clone();
        }
        return;
    }
    match manifest.get("spec") {
        Some(spec) => object["spec"] = spec.clone(),
        None => {
            if let Some(o) = object.as_object_mut() {
                o.remove("spec");
            }
        }
    }
    for field in ["labels", "annotations"] {
        match manifest.get("metadata").and_then(|m| m.get(field)) {
            Some(v) => object["metadata"][field] = v.clone(),
            None => {
                if let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove(field);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn apply_replaces_spec_and_labels_but_keeps_status() {
        let mut stored = json!({
            "metadata": {"name": "a", "labels": {"x": "1"}, "uid": "u"},
            "spec": {"replicas": 1, "old": true},
            "status": {"phase": "Running"}
        });
        let manifest =
            json!({"metadata": {"name": "a", "labels": {"y": "2"}}, "spec": {"replicas": 2}});
        apply_manifest(&mut stored, &manifest, false);
        assert_eq!(stored["spec"], json!({"replicas": 2}));
        assert_eq!(stored["metadata"]["labels"], json!({"y": "2"}));
        assert_eq!(stored["metadata"]["uid"], json!("u"));
        assert_eq!(stored["status"]["phase"], json!("Running"));
    }
}
