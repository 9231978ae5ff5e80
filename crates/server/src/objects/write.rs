//! Create (POST, and apply of an object that does not exist yet) and update (PUT with
//! `resourceVersion`, and the last step of every patch).

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use policy::{AdmissionResult, Operation};
use store::{Compare, KeyValue, Op, OpResult};

use super::{
    Params, Target, admit, check_namespace, check_type, decode_for_write, encode_for_store,
    meta_mut, meta_str, parse_body, sync_admission, validate, written_response,
};
use crate::app::AppState;
use crate::auth::{Principal, Verb, authorize, check_subresource, node_may_access};
use crate::error::{ApiError, ApiResult};
use crate::field_validation::with_warnings;
use crate::registry::{self, Mutation, Registry, object_key};

pub(super) async fn create(
    state: AppState,
    who: Principal,
    target: Target,
    q: Params,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response> {
    // Permission before reading the body: parsing and field validation cost work.
    authorize(&who, Verb::Create, target.kind, target.ns(), None)?;
    let mut value = parse_body(headers, body)?;
    let warnings = q.field_validation()?.apply(target.kind, &mut value);
    let response = create_value(&state, &who, target, q.dry_run()?, value, "create").await?;
    Ok(with_warnings(response, &warnings))
}

/// Create `value` (already parsed) at `target` (a collection). Shared by POST and apply.
pub(crate) async fn create_value(
    state: &AppState,
    who: &Principal,
    mut target: Target,
    dry_run: bool,
    mut value: Value,
    verb: &str,
) -> ApiResult<Response> {
    check_type(&target, &mut value)?;
    check_namespace(&target, &mut value)?;
    {
        let meta = meta_mut(&mut value)?;
        let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty()
            && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
        {
            let generated = generate_name(prefix);
            meta.insert("name".into(), Value::String(generated));
        }
        if let Some(url_name) = &target.name {
            let body_name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
            if body_name != url_name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name:?}) does not match the name in the URL ({url_name:?})"
                )));
            }
        }
        for server_field in ["uid", "resourceVersion", "creationTimestamp", "generation"] {
            meta.remove(server_field);
        }
        meta.insert(
            "uid".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
        meta.insert(
            "creationTimestamp".into(),
            Value::String(registry::now_rfc3339()),
        );
        meta.insert("generation".into(), json!(1));
    }
    // Status belongs to controllers and agents: it is written through /status only.
    if target.kind.has_status
        && let Some(obj) = value.as_object_mut()
    {
        obj.remove("status");
    }
    // Permission first, so that a caller who may not write learns nothing from validation.
    let name = meta_str(&value, "name").unwrap_or_default().to_owned();
    authorize(who, Verb::Create, target.kind, target.ns(), Some(&name))?;
    let value = validate(&target, value)?;
    let site_warnings = crate::queues::flavor_site_warnings(state, target.kind, &value).await?;
    crate::queues::check_cohort_parent(state, target.kind, &value).await?;
    crate::node_restriction::check(who, None, &value)?;
    state.policies.check(target.kind, &value)?;
    let admission = admit(
        state,
        who,
        target.kind,
        super::Request { verb, dry_run },
        Operation::Create,
        Some(&value),
        None,
    )
    .await?;
    target.name = Some(name.clone());
    let key = target.key();
    let bytes = encode_for_store(state, &value)?;
    if dry_run {
        let (existing, _) = state.store().get(&key).await?;
        if existing.is_some() {
            return Err(ApiError::already_exists(target.kind.plural, &name));
        }
        let mut value = value;
        crate::secrets::present(&state.secrets, who, &mut value)?;
        return Ok(with_warnings(
            written_response(StatusCode::CREATED, &value, &admission),
            &site_warnings,
        ));
    }
    let mut compares = vec![Compare::Absent(key.clone())];
    let project_key = target
        .ns()
        .map(|ns| object_key(api::kinds::PROJECT, None, ns));
    if let Some(pk) = &project_key {
        compares.push(Compare::Exists(pk.clone()));
    }
    let audit = crate::admission_audit::with_warnings(
        Registry::audit_record(who, verb, target.kind, target.ns(), &name, Some(&bytes)),
        &admission,
    );
    let resp = state
        .registry
        .commit(Mutation::new(compares, vec![Op::put(key, bytes)], audit))
        .await?;
    if !resp.succeeded {
        let exists = matches!(resp.results.first(), Some(OpResult::Get(Some(_))));
        if exists {
            return Err(ApiError::already_exists(target.kind.plural, &name));
        }
        return Err(ApiError::not_found(
            "projects",
            target.ns().unwrap_or_default(),
        ));
    }
    let mut stored = value;
    if let Some(OpResult::Put { kv, .. }) = resp.results.first() {
        registry::set_resource_version(&mut stored, kv.mod_revision);
        sync_admission(state, target.kind, kv.mod_revision).await;
    }
    crate::secrets::present(&state.secrets, who, &mut stored)?;
    Ok(with_warnings(
        written_response(StatusCode::CREATED, &stored, &admission),
        &site_warnings,
    ))
}

fn generate_name(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

pub(super) async fn put(
    state: AppState,
    who: Principal,
    target: Target,
    q: Params,
    headers: &HeaderMap,
    body: &[u8],
    status: bool,
) -> ApiResult<Response> {
    authorize(
        &who,
        Verb::Update,
        target.kind,
        target.ns(),
        target.name.as_deref(),
    )?;
    check_subresource(&who, target.kind, status, Verb::Update)?;
    let mut value = parse_body(headers, body)?;
    let warnings = q.field_validation()?.apply(target.kind, &mut value);
    check_type(&target, &mut value)?;
    check_namespace(&target, &mut value)?;
    let body_name = meta_str(&value, "name").unwrap_or_default();
    if body_name != target.name() {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name:?}) does not match the name in the URL ({:?})",
            target.name()
        )));
    }
    let expected = match meta_str(&value, "resourceVersion") {
        Some(rv) => Some(parse_rv(rv)?),
        None => None,
    };
    let (current, _) = state.store().get(&target.key()).await?;
    let Some(current) = current else {
        return Err(ApiError::not_found(target.kind.plural, target.name()));
    };
    let Some(expected) = expected else {
        let name = target.name().to_owned();
        return Err(ApiError::invalid(
            target.kind.kind,
            &name,
            &api::FieldErrors(vec![api::FieldError {
                field: "metadata.resourceVersion".into(),
                message: "must be specified for an update: read the object, change it, and send it back with its resourceVersion".into(),
                line: None,
                column: None,
            }]),
        ));
    };
    let (stored, admission, more) = update_value(
        &state,
        &who,
        &target,
        &current,
        value,
        status,
        expected,
        q.dry_run()?,
        "update",
    )
    .await?;
    let mut warnings = warnings;
    warnings.extend(more);
    Ok(with_warnings(
        written_response(StatusCode::OK, &stored, &admission),
        &warnings,
    ))
}

pub(super) fn parse_rv(rv: &str) -> ApiResult<i64> {
    rv.parse::<i64>().map_err(|_| {
        ApiError::bad_request(format!(
            "metadata.resourceVersion {rv:?} is not valid: copy it unchanged from the object you read"
        ))
    })
}

/// Replace the object at `current` with `candidate` (main resource) or take only its
/// status (`status == true`), guarded by `expected` (the `resourceVersion` the caller read).
/// Returns the stored object, admission's answer, and warnings about references that do
/// not resolve yet (a queue flavour's sites).
#[allow(clippy::too_many_arguments)]
pub(super) async fn update_value(
    state: &AppState,
    who: &Principal,
    target: &Target,
    current: &KeyValue,
    candidate: Value,
    status: bool,
    expected: i64,
    dry_run: bool,
    verb: &str,
) -> ApiResult<(Value, AdmissionResult, Vec<String>)> {
    let old = decode_for_write(state, current)?;
    if !node_may_access(who, &old) {
        return Err(ApiError::not_found(target.kind.plural, target.name()));
    }
    let mut next = if status {
        let mut next = old.clone();
        match candidate.get("status") {
            Some(s) => next["status"] = s.clone(),
            None => {
                if let Some(o) = next.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        next
    } else {
        let mut next = candidate;
        match old.get("status") {
            Some(s) if target.kind.has_status => next["status"] = s.clone(),
            _ if target.kind.has_status => {
                if let Some(o) = next.as_object_mut() {
                    o.remove("status");
                }
            }
            _ => {}
        }
        next
    };
    {
        // Server-owned metadata comes from the stored object.
        let old_meta = old.get("metadata").cloned().unwrap_or_default();
        let meta = meta_mut(&mut next)?;
        for field in ["uid", "creationTimestamp", "generation"] {
            match old_meta.get(field) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
        meta.remove("resourceVersion");
    }
    let mut next = validate(target, next)?;
    let site_warnings = if status {
        Vec::new()
    } else {
        crate::queues::check_cohort_parent(state, target.kind, &next).await?;
        crate::queues::flavor_site_warnings(state, target.kind, &next).await?
    };
    crate::node_restriction::check(who, Some(&old), &next)?;
    let admission = if status {
        // Status is written by controllers and agents; policies judge what users declare.
        AdmissionResult::default()
    } else {
        state.policies.check(target.kind, &next)?;
        admit(
            state,
            who,
            target.kind,
            super::Request { verb, dry_run },
            Operation::Update,
            Some(&next),
            Some(&old),
        )
        .await?
    };
    if next.get("spec") != old.get("spec") {
        let generation = old
            .get("metadata")
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        next["metadata"]["generation"] = json!(generation + 1);
    }
    // Nothing changed: answer the stored object without a write (and without an audit entry).
    let mut unchanged = old.clone();
    if let Some(m) = unchanged.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    if dry_run || unchanged == next {
        if unchanged == next && expected != current.mod_revision {
            return Err(ApiError::conflict(target.kind.plural, target.name()));
        }
        registry::set_resource_version(&mut next, current.mod_revision);
        crate::secrets::present(&state.secrets, who, &mut next)?;
        return Ok((next, admission, site_warnings));
    }
    let key = target.key();
    let bytes = encode_for_store(state, &next)?;
    let verb = if status {
        format!("{verb}-status")
    } else {
        verb.to_owned()
    };
    let audit = crate::admission_audit::with_warnings(
        Registry::audit_record(
            who,
            &verb,
            target.kind,
            target.ns(),
            target.name(),
            Some(&bytes),
        ),
        &admission,
    );
    let resp = state
        .registry
        .commit(Mutation::new(
            vec![Compare::ModRevision(key.clone(), expected)],
            vec![Op::put(key, bytes)],
            audit,
        ))
        .await?;
    if !resp.succeeded {
        return Err(match resp.results.first() {
            Some(OpResult::Get(None)) => ApiError::not_found(target.kind.plural, target.name()),
            _ => ApiError::conflict(target.kind.plural, target.name()),
        });
    }
    if let Some(OpResult::Put { kv, .. }) = resp.results.first() {
        registry::set_resource_version(&mut next, kv.mod_revision);
        if !status {
            sync_admission(state, target.kind, kv.mod_revision).await;
        }
    }
    crate::secrets::present(&state.secrets, who, &mut next)?;
    Ok((next, admission, site_warnings))
}
