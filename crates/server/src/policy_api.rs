//! Compliance and policy endpoints (Meridian-specific, under `/meridian/v1`):
//!
//! - `GET /meridian/v1/compliance/status`: the summary by policy and by framework, the
//!   last full audit and the policies that are broken;
//! - `GET /meridian/v1/compliance/findings[?policy=P]`: the findings;
//! - `GET /meridian/v1/compliance/report?format=oscal|json`: evidence, OSCAL
//!   `assessment-results` or plain JSON;
//! - `POST /meridian/v1/policy/eval`: admission's decision on objects (one, an array or a
//!   List) and what the `audit` policies find, without writing anything.
//!
//! Every caller who can read may use them; a project-scoped token sees the findings of
//! its project and of global objects only.

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use api::kinds::Enforcement;
use policy::{
    AdmissionRequest, AuditOptions, Auditor, ComplianceSummary, Finding, Operation, oscal,
};

use crate::app::AppState;
use crate::auth::{Principal, Verb, authorize};
use crate::error::{ApiError, ApiResult};
use crate::policies;
use crate::registry::{self, object_key};

/// Objects one eval request may carry.
pub const MAX_EVAL_OBJECTS: usize = 1_000;
/// Objects of one eval request with `explain`: an explanation evaluates every prefix of
/// every body of every matching policy, hundreds of evaluations per object.
pub const MAX_EXPLAIN_OBJECTS: usize = 10;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/meridian/v1/compliance/status", get(status))
        .route("/meridian/v1/compliance/findings", get(findings))
        .route("/meridian/v1/compliance/report", get(report))
        .route("/meridian/v1/policy/eval", post(eval))
}

/// Findings the caller may see.
fn visible(state: &AppState, who: &Principal) -> (Vec<Finding>, u64) {
    let (mut findings, dropped) = state.policies.findings();
    if let Some(project) = &who.project {
        findings.retain(|f| f.object.namespace.as_deref().is_none_or(|ns| ns == project));
    }
    (findings, dropped)
}

async fn status(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    authorize(&who, Verb::List, api::kinds::POLICY, None, None)?;
    let (findings, dropped) = visible(&state, &who);
    let view = state.policies.view();
    let summary = ComplianceSummary::new(&findings, view.policies.values(), dropped);
    Ok(Json(json!({
        "summary": summary.to_json(),
        "audit": policies::report_json(&state.policies.audit_report()),
        "broken": view.broken.iter().map(|(p, e)| json!({"policy": p, "error": e})).collect::<Vec<_>>(),
        "revision": state.policies.revision(),
    })))
}

#[derive(Debug, Deserialize)]
struct FindingsQuery {
    policy: Option<String>,
    format: Option<String>,
}

async fn findings(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<FindingsQuery>,
) -> ApiResult<Json<Value>> {
    authorize(&who, Verb::List, api::kinds::POLICY, None, None)?;
    let (mut findings, dropped) = visible(&state, &who);
    if let Some(p) = &q.policy {
        findings.retain(|f| &*f.policy == p.as_str());
    }
    findings.sort_by(|a, b| a.report_order().cmp(&b.report_order()));
    Ok(Json(json!({
        "findings": policy::findings_to_json(&findings),
        "dropped": dropped,
    })))
}

async fn report(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<FindingsQuery>,
) -> ApiResult<Json<Value>> {
    authorize(&who, Verb::List, api::kinds::POLICY, None, None)?;
    let (mut findings, dropped) = visible(&state, &who);
    findings.sort_by(|a, b| a.report_order().cmp(&b.report_order()));
    let view = state.policies.view();
    let audit = state.policies.audit_report();
    match q.format.as_deref().unwrap_or("oscal") {
        "oscal" => {
            let end = audit.finished.unwrap_or_else(Timestamp::now);
            let start = findings
                .iter()
                .map(|f| f.first_seen)
                .min()
                .or(audit.started)
                .unwrap_or(end)
                .min(end);
            let meta = oscal::ReportMetadata {
                title: "Meridian continuous compliance audit".to_owned(),
                version: format!("revision {}", state.policies.revision()),
                start,
                end: end.max(Timestamp::now()),
            };
            let doc = oscal::assessment_results(
                &findings,
                view.policies.values(),
                &meta,
                &mut oscal::UuidGen::random(),
            );
            Ok(Json(doc))
        }
        "json" => {
            let summary = ComplianceSummary::new(&findings, view.policies.values(), dropped);
            Ok(Json(json!({
                "summary": summary.to_json(),
                "audit": policies::report_json(&audit),
                "findings": policy::findings_to_json(&findings),
            })))
        }
        other => Err(ApiError::bad_request(format!(
            "format {other:?} is not known: use format=oscal or format=json"
        ))),
    }
}

/// Evaluates objects as admission would, and against the `audit` policies as the audit
/// would, writing nothing.
///
/// The decision (`admission`, `message`, the `deny` and `warn` violations, `errors`) is
/// [`policy::PolicySet::admit`]'s, the very function admission calls, on the same input:
/// the caller as `input.actor`; `CREATE`, or `UPDATE` with the stored object as
/// `input.oldObject` when the object exists (what `meridian apply` would do); a Secret
/// redacted to its keys; an Allocation with its Workload. So a broken `deny` policy
/// refuses here as it does at admission (it fails closed), where the audit's evaluator
/// would read its runtime error as "undefined" and say nothing. Violations of `audit`
/// policies, which admission does not evaluate, come from the audit's evaluator and do
/// not change the decision.
/// Query of `POST /meridian/v1/policy/eval`.
#[derive(Debug, Default, serde::Deserialize)]
struct EvalQuery {
    /// `full` (or `fails`): add, per matching policy, which bodies of its violation rules
    /// held and the statement where the others stopped.
    #[serde(default)]
    explain: Option<String>,
}

async fn eval(
    State(state): State<AppState>,
    who: Principal,
    axum::extract::Query(query): axum::extract::Query<EvalQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    authorize(&who, Verb::List, api::kinds::POLICY, None, None)?;
    let explain = match query.explain.as_deref() {
        None | Some("" | "off" | "none") => false,
        Some("full" | "fails") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "explain={other:?}: use full, fails or off"
            )));
        }
    };
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the eval body is not JSON: {e}")))?;
    let items = match value {
        Value::Array(items) => items,
        Value::Object(ref o) if o.get("kind").and_then(Value::as_str) == Some("List") => o
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        other => vec![other],
    };
    if explain && items.len() > MAX_EXPLAIN_OBJECTS {
        return Err(ApiError::too_large(format!(
            "{} objects in one eval request with explain; explain at most {MAX_EXPLAIN_OBJECTS} at a time",
            items.len()
        )));
    }
    if items.len() > MAX_EVAL_OBJECTS {
        return Err(ApiError::too_large(format!(
            "{} objects in one eval request; send at most {MAX_EVAL_OBJECTS}",
            items.len()
        )));
    }
    let mut objects = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let mut obj = api::validate::object_from_value(item)
            .map_err(|errors| ApiError::bad_request(format!("item {i}: {errors}")))?
            .to_value();
        let kind = api::lookup_kind(obj["kind"].as_str().unwrap_or_default())
            .ok_or_else(|| ApiError::bad_request(format!("item {i}: unknown kind")))?;
        if kind.namespaced() && obj.pointer("/metadata/namespace").is_none() {
            obj["metadata"]["namespace"] =
                Value::String(who.project.clone().unwrap_or_else(|| "default".to_owned()));
        }
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
        authorize(&who, Verb::Get, kind, ns, None)?;
        objects.push(obj);
    }
    let view = state.policies.view();
    let audit_only: Vec<&str> = view
        .set
        .iter()
        .filter(|p| p.enforcement() == Enforcement::Audit)
        .map(|p| p.name())
        .collect();
    let audit_set = view.set.subset(&audit_only);
    let actor = policies::actor(&who);
    let mut results = Vec::with_capacity(objects.len());
    for obj in &objects {
        let mut subject = obj.clone();
        crate::secrets::redact(&mut subject);
        let old = stored(&state, &subject).await?;
        let workload = policies::allocation_workload(&state, &subject).await;
        let operation = if old.is_some() {
            Operation::Update
        } else {
            Operation::Create
        };
        let request = AdmissionRequest {
            operation,
            object: Some(&subject),
            old_object: old.as_ref(),
            actor: Some(&actor),
            fleet: &view.fleet,
            workload: workload.as_ref(),
        };
        let admission = view.set.admit(&request);
        let explanations: Option<Vec<Value>> = explain.then(|| {
            view.set
                .explain(&request)
                .into_iter()
                .map(|(p, found)| match found {
                    Ok(bodies) => json!({
                        "policy": p.name(),
                        "enforcement": p.enforcement().to_string(),
                        "bodies": bodies,
                    }),
                    Err(e) => json!({
                        "policy": p.name(),
                        "enforcement": p.enforcement().to_string(),
                        "error": e.to_string(),
                    }),
                })
                .collect()
        });
        let mut auditor = Auditor::new(&audit_set, &view.fleet, AuditOptions::default());
        let audited = auditor.evaluate(&subject, workload.as_ref());
        let (_, audit_errors) = auditor.finish();
        let violations: Vec<Value> = admission
            .denied
            .iter()
            .chain(&admission.warnings)
            .chain(audited.iter().flat_map(|r| &r.violations))
            .map(policy::Violation::to_json)
            .collect();
        let errors: Vec<Value> = admission
            .errors
            .iter()
            .map(|e| json!({"policy": &*e.policy, "message": e.error.to_string()}))
            .chain(
                audit_errors
                    .iter()
                    .map(|e| json!({"policy": &*e.policy, "message": e.to_string()})),
            )
            .collect();
        let evaluated =
            admission.evaluated as u64 + audited.as_ref().map_or(0, |r| u64::from(r.evaluated));
        let mut result = json!({
            "object": {
                "kind": obj["kind"],
                "namespace": obj.pointer("/metadata/namespace"),
                "name": obj.pointer("/metadata/name"),
            },
            "operation": operation.as_str(),
            "evaluated": evaluated,
            "admission": if admission.allowed() { "allowed" } else { "denied" },
            "message": admission.denial_message(),
            "violations": violations,
            "errors": errors,
        });
        if let Some(e) = explanations {
            result["explanations"] = Value::Array(e);
        }
        results.push(result);
    }
    Ok(Json(json!({ "results": results })))
}

/// The stored version of `object`, redacted as admission sees it, if it exists.
async fn stored(state: &AppState, object: &Value) -> ApiResult<Option<Value>> {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .and_then(api::lookup_kind);
    let name = object.pointer("/metadata/name").and_then(Value::as_str);
    let (Some(kind), Some(name)) = (kind, name) else {
        return Ok(None);
    };
    let ns = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str);
    let (kv, _) = state.store().get(&object_key(kind, ns, name)).await?;
    let Some(kv) = kv else { return Ok(None) };
    let mut value = registry::decode(&kv)?;
    crate::secrets::redact(&mut value);
    Ok(Some(value))
}
