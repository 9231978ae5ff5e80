//! DELETE with `DeleteOptions` (preconditions, dry run). A project is deleted only once
//! nothing lives in it: there is no cascading delete.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use policy::Operation;
use store::{Compare, Op, OpResult};

use super::write::parse_rv;
use super::{Params, Target, admit, meta_str, sync_admission, written_response};
use crate::app::AppState;
use crate::auth::{Principal, Verb, authorize};
use crate::error::{ApiError, ApiResult};
use crate::registry::{Mutation, Registry, decode, kind_prefix};

/// Reads and commits of one delete without a resourceVersion precondition, at most.
const DELETE_ATTEMPTS: u32 = 8;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteOptions {
    #[serde(default)]
    preconditions: Option<Preconditions>,
    #[serde(default)]
    dry_run: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Preconditions {
    resource_version: Option<String>,
    uid: Option<String>,
}

pub(crate) async fn delete(
    state: AppState,
    who: Principal,
    target: Target,
    q: Params,
    body: &[u8],
) -> ApiResult<Response> {
    authorize(
        &who,
        Verb::Delete,
        target.kind,
        target.ns(),
        target.name.as_deref(),
    )?;
    let options: DeleteOptions = if body.is_empty() {
        DeleteOptions::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("DeleteOptions are not valid: {e}")))?
    };
    let dry_run = q.dry_run()?
        || options
            .dry_run
            .as_ref()
            .is_some_and(|d| d.iter().any(|x| x == "All"));
    let key = target.key();
    // Without a resourceVersion precondition a delete is not a compare-and-swap for the
    // caller: a write that lands between the read and the commit (a controller's status
    // update) is read again, not answered with 409, as kube-apiserver's GuaranteedUpdate
    // retries. Bounded, for a key that never stops changing.
    let mut attempts = 0;
    let (object, admission, resp) = loop {
        attempts += 1;
        let (current, _) = state.store().get(&key).await?;
        let current =
            current.ok_or_else(|| ApiError::not_found(target.kind.plural, target.name()))?;
        let object = decode(&current)?;
        let mut expected = current.mod_revision;
        let mut pinned = false;
        if let Some(p) = &options.preconditions {
            if let Some(uid) = &p.uid
                && meta_str(&object, "uid") != Some(uid)
            {
                return Err(ApiError::conflict(target.kind.plural, target.name()));
            }
            if let Some(rv) = &p.resource_version {
                expected = parse_rv(rv)?;
                pinned = true;
            }
        }
        if target.kind == api::kinds::PROJECT {
            ensure_project_empty(&state, target.name()).await?;
        }
        let admission = admit(
            &state,
            &who,
            target.kind,
            super::Request {
                verb: "delete",
                dry_run,
            },
            Operation::Delete,
            None,
            Some(&object),
        )
        .await?;
        if dry_run {
            let mut object = object;
            crate::secrets::present(&state.secrets, &who, &mut object)?;
            return Ok(written_response(StatusCode::OK, &object, &admission));
        }
        let audit = crate::admission_audit::with_warnings(
            Registry::audit_record(
                &who,
                "delete",
                target.kind,
                target.ns(),
                target.name(),
                None,
            ),
            &admission,
        );
        let resp = state
            .registry
            .commit(Mutation::new(
                vec![Compare::ModRevision(key.clone(), expected)],
                vec![Op::Delete(key.clone())],
                audit,
            ))
            .await?;
        if resp.succeeded {
            break (object, admission, resp);
        }
        if pinned || attempts >= DELETE_ATTEMPTS {
            return Err(match resp.results.first() {
                Some(OpResult::Get(None)) => ApiError::not_found(target.kind.plural, target.name()),
                _ => ApiError::conflict(target.kind.plural, target.name()),
            });
        }
    };
    sync_admission(&state, target.kind, resp.revision).await;
    let mut object = object;
    crate::secrets::present(&state.secrets, &who, &mut object)?;
    Ok(written_response(StatusCode::OK, &object, &admission))
}

/// A project is deleted only when nothing lives in it any more.
async fn ensure_project_empty(state: &AppState, project: &str) -> ApiResult<()> {
    for kind in api::KINDS.iter().filter(|k| k.namespaced()) {
        let count = state
            .store()
            .count(&kind_prefix(kind, Some(project)))
            .await?;
        if count > 0 {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "project {project:?} still holds {} {}: delete them first \
                     (meridian delete {} --all -n {project})",
                    count, kind.plural, kind.singular
                ),
            ));
        }
    }
    Ok(())
}
