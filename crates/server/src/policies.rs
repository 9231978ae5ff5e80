//! Policy admission and the continuous audit: the server side of the `policy` crate.
//!
//! [`PolicyEngine`] holds the compiled policies and the read-only fleet context (sites,
//! projects, node sites) that admission needs, and the audit's findings. One controller
//! task ([`run`]) keeps it current from a watch on `/registry/`, so that every server
//! replica sees policies stored through any other:
//!
//! - a Policy is compiled once when stored (a module that does not compile is refused at
//!   the API with 422 and the Rego line and column, [`check_policy`]) and again by the
//!   controller when the watch delivers it; requests evaluate clones of the prepared
//!   engines, never a rebuilt one;
//! - a write of a Policy, Site, Project or Node waits (at most [`SYNC_TIMEOUT`]) until the
//!   controller has seen its revision before it answers, so the next request is judged
//!   by what the previous one stored (read-your-writes for admission);
//! - the audit is incremental (each changed object against every policy that applies to
//!   it; each changed policy against every object) and runs in full at start-up and every
//!   [`PolicyOptions::audit_interval`]. Every audit evaluation runs on one thread of
//!   the lowest CPU priority, in watch order (`audit_thread`), never on a request
//!   thread: under load the audit falls behind, admission does not slow down. Findings
//!   live in memory, bounded by
//!   [`StoreLimits`], and are rebuilt by the full run after a restart, so `first seen`
//!   restarts with the server.
//!
//! Admission runs on create, update (not on `/status` writes, which only controllers and
//! agents make) and delete of every kind, for every caller including the scheduler's own
//! Allocations. A `deny` policy that cannot be evaluated fails closed; see the `policy`
//! crate for the contract.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::watch;

use policy::{
    Actor, AdmissionRequest, AdmissionResult, AuditError, AuditOptions, AuditPage, CompileOptions,
    CompiledPolicy, FindingStore, FleetContext, Operation, PolicySet, StoreLimits,
};
use store::{EventKind, Revision};

use crate::app::AppState;
use crate::audit_thread::AuditThread;
use crate::auth::Principal;
use crate::controller::{ControllerError, Report};
use crate::error::{ApiError, ApiResult};
use crate::registry::{self, ReadView, object_key};

/// How long a write of a Policy, Site, Project or Node waits for admission to see it.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// Kinds whose changes admission depends on.
const CONTEXT_KINDS: [&api::KindInfo; 4] = [
    api::kinds::POLICY,
    api::kinds::SITE,
    api::kinds::PROJECT,
    api::kinds::NODE,
];

/// Tuning of admission and the audit.
#[derive(Clone, Debug)]
pub struct PolicyOptions {
    pub compile: CompileOptions,
    /// A full audit runs this often (and at start-up).
    pub audit_interval: Duration,
    /// Threads of a full audit.
    pub audit_threads: usize,
    /// Objects read, decoded and audited per page by a full or per-policy audit.
    pub audit_page: usize,
    pub limits: StoreLimits,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            compile: CompileOptions::default(),
            audit_interval: Duration::from_secs(10 * 60),
            audit_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            audit_page: AUDIT_PAGE,
            limits: StoreLimits::default(),
        }
    }
}

/// What admission evaluates against: replaced as a whole on every change.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub set: PolicySet,
    pub fleet: FleetContext,
    /// Every stored Policy by name, compiled or not.
    pub policies: BTreeMap<String, api::Policy>,
    /// Stored policies that do not compile (stored before a change of the engine, or
    /// written around the API): name → error. They are not evaluated; a `deny` one is
    /// reported in the compliance status.
    pub broken: BTreeMap<String, String>,
}

/// The last full audit, and the incremental audit since.
///
/// The full run happens at start-up and every [`PolicyOptions::audit_interval`]; between
/// runs the findings come from the incremental audit (each changed object, each changed
/// policy against every object), which `since` counts. Without it the status showed the
/// start-up run over a nearly empty registry ("1 objects, 0 evaluations") for up to ten
/// minutes while findings from the incremental audit were already listed.
#[derive(Clone, Debug, Default)]
pub struct AuditReport {
    pub finished: Option<Timestamp>,
    pub started: Option<Timestamp>,
    pub revision: Revision,
    pub objects: usize,
    pub evaluations: u64,
    pub duration: Duration,
    pub errors: Vec<AuditError>,
    /// The incremental audit since the full run finished.
    pub since: IncrementalAudit,
}

/// What the incremental audit did since the last full run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IncrementalAudit {
    /// Changed objects audited (against every policy that applies to them).
    pub objects: u64,
    /// Runs of changed policies against every object.
    pub policy_runs: u64,
    /// Policy evaluations of both.
    pub evaluations: u64,
    /// When the latest of them finished.
    pub last: Option<Timestamp>,
}

/// Policies, fleet context and findings of one server.
pub struct PolicyEngine {
    view: RwLock<Arc<View>>,
    seen: watch::Sender<Revision>,
    findings: Mutex<FindingStore>,
    report: Mutex<AuditReport>,
    options: PolicyOptions,
    /// Per-actor rate of admission denials in the audit log (`admission_audit.rs`).
    pub(crate) denials: crate::admission_audit::DenialLimiter,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("revision", &*self.seen.borrow())
            .finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// Loads the policies and fleet context from the store. The engine is current as of
    /// the returned revision; [`run`] watches from the next one.
    pub async fn load(
        store: &ReadView,
        options: PolicyOptions,
    ) -> Result<Arc<Self>, ControllerError> {
        let revision = store.current_revision().await?;
        let mut view = View::default();
        let mut compiled = Vec::new();
        for k in CONTEXT_KINDS {
            for kv in store.read_prefix(&registry::kind_prefix(k, None)).await? {
                let value = registry::decode(&kv)?;
                if k == api::kinds::POLICY {
                    if let Some(c) = compile_stored(&mut view, &value, options.compile) {
                        compiled.push(c);
                    }
                } else {
                    view.fleet.observe(&value);
                }
            }
        }
        view.set = PolicySet::new(compiled);
        let (seen, _) = watch::channel(revision);
        Ok(Arc::new(PolicyEngine {
            view: RwLock::new(Arc::new(view)),
            seen,
            findings: Mutex::new(FindingStore::new(options.limits)),
            report: Mutex::new(AuditReport::default()),
            options,
            denials: crate::admission_audit::DenialLimiter::default(),
        }))
    }

    /// The current view (cheap: an `Arc`).
    pub fn view(&self) -> Arc<View> {
        self.view.read().expect("policy view lock").clone()
    }

    fn update(&self, f: impl FnOnce(&mut View)) {
        let mut guard = self.view.write().expect("policy view lock");
        let mut next = (**guard).clone();
        f(&mut next);
        *guard = Arc::new(next);
    }

    /// The last revision the engine has taken into account.
    pub fn revision(&self) -> Revision {
        *self.seen.borrow()
    }

    /// Waits until the engine has seen `revision` (a write this server just made).
    pub async fn wait_for(&self, revision: Revision) {
        let mut rx = self.seen.subscribe();
        let seen = tokio::time::timeout(SYNC_TIMEOUT, rx.wait_for(|r| *r >= revision)).await;
        if seen.is_err() {
            tracing::warn!(
                revision,
                "policy engine did not catch up within {SYNC_TIMEOUT:?}; admission may judge the next request by older policies"
            );
        }
    }

    /// Refuses a Policy that does not compile (422 with the Rego line and column).
    pub fn check(&self, kind: &api::KindInfo, value: &Value) -> ApiResult<()> {
        if kind == api::kinds::POLICY {
            check_policy(value, self.options.compile)
        } else {
            Ok(())
        }
    }

    /// Whether a write of `kind` changes what admission decides.
    pub fn affects_admission(kind: &str) -> bool {
        CONTEXT_KINDS.iter().any(|k| k.kind == kind)
    }

    /// Admission of one request. `workload` is the Workload of an Allocation.
    pub fn admit(
        &self,
        operation: Operation,
        object: Option<&Value>,
        old_object: Option<&Value>,
        who: &Principal,
        workload: Option<&Value>,
    ) -> AdmissionResult {
        let view = self.view();
        if view.set.is_empty() {
            return AdmissionResult::default();
        }
        let actor = actor(who);
        view.set.admit(&AdmissionRequest {
            operation,
            object,
            old_object,
            actor: Some(&actor),
            fleet: &view.fleet,
            workload,
        })
    }

    /// Findings, summary inputs and audit report, for the compliance endpoints.
    pub fn findings(&self) -> (Vec<policy::Finding>, u64) {
        let store = self.findings.lock().expect("findings lock");
        (store.findings(), store.dropped())
    }

    /// Approximate heap held by the findings, and their number.
    pub fn findings_footprint(&self) -> (usize, usize) {
        let store = self.findings.lock().expect("findings lock");
        (store.approx_heap_bytes(), store.len())
    }

    pub fn audit_report(&self) -> AuditReport {
        self.report.lock().expect("audit report lock").clone()
    }

    // ---- the controller's side ----

    /// Takes one watch event into account; returns the name of a policy that changed.
    fn observe(&self, event: &store::Event) -> Option<String> {
        let value = match serde_json::from_slice::<Value>(&event.kv.value) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(key = %event.kv.key, error = %e, "undecodable object in the registry");
                return None;
            }
        };
        let head_kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut changed = None;
        match (head_kind, event.kind) {
            ("Policy", EventKind::Put) => {
                let options = self.options.compile;
                self.update(|v| {
                    let compiled = compile_stored(v, &value, options);
                    v.set = match compiled {
                        Some(c) => v.set.with_policy(c),
                        None => v.set.without_policy(&name),
                    };
                });
                changed = Some(name);
            }
            ("Policy", EventKind::Delete) => {
                self.update(|v| {
                    v.policies.remove(&name);
                    v.broken.remove(&name);
                    v.set = v.set.without_policy(&name);
                });
                self.findings
                    .lock()
                    .expect("findings lock")
                    .remove_policy(&name);
            }
            ("Site" | "Project" | "Node", EventKind::Put) => {
                self.update(|v| v.fleet.observe(&value));
            }
            ("Site" | "Project" | "Node", EventKind::Delete) => {
                self.update(|v| v.fleet.forget(head_kind, &name));
            }
            _ => {}
        }
        changed
    }

    fn mark_seen(&self, revision: Revision) {
        self.seen.send_if_modified(|r| {
            if revision > *r {
                *r = revision;
                true
            } else {
                false
            }
        });
    }

    /// Records the audit of one changed object.
    pub(crate) fn record(&self, result: &policy::ObjectResult) {
        let now = Timestamp::now();
        self.findings
            .lock()
            .expect("findings lock")
            .record(result, now);
        let mut report = self.report.lock().expect("audit report lock");
        report.since.objects += 1;
        report.since.evaluations += u64::from(result.evaluated);
        report.since.last = Some(now);
    }

    pub(crate) fn forget_object(&self, object: &Value) {
        let head_kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ns = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str);
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        self.findings
            .lock()
            .expect("findings lock")
            .remove_object(head_kind, ns, name);
    }
}

/// Compiles a stored Policy into the view's bookkeeping; `None` when it does not compile.
fn compile_stored(
    view: &mut View,
    value: &Value,
    options: CompileOptions,
) -> Option<CompiledPolicy> {
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let parsed: api::Policy = match serde_json::from_value(value.clone()) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(policy = %name, error = %e, "stored policy does not decode");
            view.broken.insert(name, e.to_string());
            return None;
        }
    };
    view.policies.insert(name.clone(), parsed.clone());
    match CompiledPolicy::compile(&parsed, options) {
        Ok(c) => {
            view.broken.remove(&name);
            Some(c)
        }
        Err(e) => {
            tracing::error!(policy = %name, error = %e, "stored policy does not compile; it is not evaluated");
            view.broken.insert(name, e.to_string());
            None
        }
    }
}

/// The policy crate's view of a caller.
pub fn actor(who: &Principal) -> Actor {
    Actor {
        id: who.id.clone(),
        role: who.role.as_str().to_owned(),
        project: who.project.clone(),
    }
}

/// Refuses a Policy whose Rego does not compile: 422 naming `spec.rego` with the line and
/// column, and the offending line.
pub fn check_policy(value: &Value, options: CompileOptions) -> ApiResult<()> {
    let policy: api::Policy = serde_json::from_value(value.clone()).map_err(ApiError::internal)?;
    match CompiledPolicy::compile(&policy, options) {
        Ok(_) => Ok(()),
        Err(e) => {
            let mut message = match (e.line, e.column) {
                (Some(l), Some(c)) => format!("line {l}, column {c}: {}", e.message),
                (Some(l), None) => format!("line {l}: {}", e.message),
                _ => e.message.clone(),
            };
            if let Some(snippet) = &e.snippet {
                message.push('\n');
                message.push_str(snippet);
            }
            let errors = api::FieldErrors(vec![api::FieldError::new(e.field.clone(), message)]);
            Err(ApiError::invalid("Policy", &policy.metadata.name, &errors))
        }
    }
}

/// A 403 that lists every policy that refused the request, its message and field.
pub fn denied(result: &AdmissionResult, plural: &str, name: &str) -> ApiError {
    let message = result
        .denial_message()
        .unwrap_or_else(|| "admission denied".to_owned());
    let mut e = ApiError::forbidden(message);
    e.kind = Some(plural.to_owned());
    e.name = Some(name.to_owned());
    e.causes = result
        .denied
        .iter()
        .map(|v| api::StatusCause {
            reason: format!("PolicyViolation:{}", v.policy),
            message: v.display(),
            field: v.field.clone().unwrap_or_default(),
        })
        .collect();
    e
}

/// `Warning` header values (RFC 7234 form `299 - "text"`, as kube-apiserver sends them).
pub fn warning_headers(result: &AdmissionResult) -> Vec<axum::http::HeaderValue> {
    result
        .warning_texts()
        .iter()
        .filter_map(|t| {
            let clean: String = t
                .chars()
                .map(|c| if c == '"' || c.is_control() { '\'' } else { c })
                .collect();
            axum::http::HeaderValue::from_str(&format!("299 - \"{clean}\"")).ok()
        })
        .collect()
}

// ---- the controller ----

/// Keeps the engine current and runs the audit until shutdown.
pub async fn run(state: AppState) {
    let engine = state.policies.clone();
    let mut audit = match AuditThread::start(engine.clone()) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the audit thread; no audit will run");
            return;
        }
    };
    let interval = engine.options.audit_interval;
    full_audit(&state, &audit).await;
    let mut next_full = tokio::time::Instant::now() + interval;
    let mut from = engine.revision() + 1;
    loop {
        let mut events = match state.store().watch("/registry/", from).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %Report(&e), "policy controller cannot watch; reloading in 1 s");
                tokio::select! {
                    () = state.shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                // A compacted revision: a full reload of the context and a full audit.
                match PolicyEngine::load(state.store(), engine.options.clone()).await {
                    Ok(fresh) => {
                        engine.update(|v| *v = (*fresh.view()).clone());
                        engine.mark_seen(fresh.revision());
                        from = fresh.revision() + 1;
                    }
                    Err(e) => {
                        tracing::warn!(error = %Report(&e), "policy controller cannot reload");
                    }
                }
                full_audit(&state, &audit).await;
                continue;
            }
        };
        let mut changed_policies: Vec<String> = Vec::new();
        loop {
            let next = tokio::select! {
                () = state.shutdown.cancelled() => return,
                () = tokio::time::sleep_until(next_full) => {
                    full_audit(&state, &audit).await;
                    next_full = tokio::time::Instant::now() + interval;
                    continue;
                }
                e = events.next() => e,
            };
            let Some(Ok(event)) = next else { break };
            from = event.kv.mod_revision + 1;
            if let Some(p) = engine.observe(&event) {
                changed_policies.push(p);
            }
            engine.mark_seen(event.kv.mod_revision);
            audit_event(&state, &mut audit, &event).await;
            // When the burst is over, audit every object against the policies that
            // changed, or against every policy if the audit thread could not keep up.
            if events.is_empty() {
                if audit.take_overflow() {
                    tracing::warn!("the audit fell behind a burst of changes; running it in full");
                    changed_policies.clear();
                    full_audit(&state, &audit).await;
                } else if !changed_policies.is_empty() {
                    let names = std::mem::take(&mut changed_policies);
                    // Every installed policy changed (the first install, say): that is a
                    // full audit, and is reported as one.
                    let every = engine
                        .view()
                        .set
                        .iter()
                        .all(|p| names.iter().any(|n| n == p.name()));
                    if every {
                        full_audit(&state, &audit).await;
                    } else {
                        policy_audit(&state, &audit, &names).await;
                    }
                }
            }
        }
    }
}

/// Queues the audit of one changed object on the audit thread.
async fn audit_event(state: &AppState, audit: &mut AuditThread, event: &store::Event) {
    let engine = &state.policies;
    if engine.view().set.is_empty() && engine.findings_footprint().1 == 0 {
        return;
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(&event.kv.value) else {
        return;
    };
    // Policies judge what a Secret declares (type, keys), as at admission, never its
    // sealed values.
    crate::secrets::redact(&mut value);
    match event.kind {
        EventKind::Delete => audit.delete(value),
        EventKind::Put => {
            if engine.view().set.is_empty() {
                return;
            }
            let workload = allocation_workload(state, &value).await;
            audit.put(value, workload);
        }
    }
}

/// The Workload of an Allocation (for `input.context.workload`).
pub async fn allocation_workload(state: &AppState, object: &Value) -> Option<Value> {
    let (kv, _) = state.store().get(&workload_key(object)?).await.ok()?;
    registry::decode(&kv?).ok()
}

/// The store key of an Allocation's Workload; `None` for any other object.
fn workload_key(object: &Value) -> Option<String> {
    if object.get("kind").and_then(Value::as_str) != Some(api::kinds::ALLOCATION.kind) {
        return None;
    }
    let ns = object.pointer("/metadata/namespace")?.as_str()?;
    let w = object.pointer("/spec/workload")?.as_str()?;
    Some(object_key(api::kinds::WORKLOAD, Some(ns), w))
}

/// Objects read, decoded and audited per page by a full or per-policy audit, by default
/// ([`PolicyOptions::audit_page`]): the audit holds a few pages of decoded objects at a
/// time, never the whole store (decoded as JSON, 100,000 workloads and their allocations
/// took gigabytes).
const AUDIT_PAGE: usize = 1_000;

/// Reads every object of the registry in pages ([`PolicyOptions::audit_page`]), decoded (Secrets
/// redacted), each with the Workloads its Allocations need that are on another page, and
/// sends them to `pages`. Pages are read each at its own revision, as any paged list.
/// Returns the number of objects sent; an error leaves the audit incomplete.
async fn read_pages(
    state: &AppState,
    pages: &tokio::sync::mpsc::Sender<AuditPage<'static>>,
) -> Result<usize, ControllerError> {
    let mut start_after = None;
    let mut sent = 0;
    loop {
        let page = state
            .store()
            .range(store::RangeRequest {
                prefix: "/registry/".into(),
                start_after: start_after.take(),
                limit: state.policies.options.audit_page.max(1),
                count_only: false,
            })
            .await?;
        start_after = page.kvs.last().map(|kv| kv.key.clone());
        let objects: Vec<Value> = page
            .kvs
            .iter()
            .filter_map(|kv| registry::decode(kv).ok())
            .map(|mut object| {
                crate::secrets::redact(&mut object);
                object
            })
            .collect();
        let context = workloads_of_allocations(state, &page.kvs, &objects).await?;
        sent += objects.len();
        let page_of = AuditPage {
            objects: objects.into(),
            context: context.into(),
        };
        if pages.send(page_of).await.is_err() || !page.more {
            return Ok(sent);
        }
    }
}

/// The Workloads of the Allocations among `objects` that are not among them.
async fn workloads_of_allocations(
    state: &AppState,
    kvs: &[store::KeyValue],
    objects: &[Value],
) -> Result<Vec<Value>, ControllerError> {
    use futures::StreamExt as _;
    let on_page: std::collections::HashSet<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    let mut wanted: Vec<String> = objects
        .iter()
        .filter_map(workload_key)
        .filter(|key| !on_page.contains(key.as_str()))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let got: Vec<_> = futures::stream::iter(wanted)
        .map(|key| async move { state.store().get(&key).await })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut context = Vec::new();
    for read in got {
        if let (Some(kv), _) = read? {
            context.extend(registry::decode(&kv).ok());
        }
    }
    Ok(context)
}

/// Runs `audit_pages` of `set` (with `view`'s fleet context) on the audit thread over
/// the objects [`read_pages`] reads, then `done` with the run and the number of objects,
/// unless the read failed (an incomplete run must not resolve the findings of objects it
/// did not see).
async fn paged_audit(
    state: &AppState,
    audit: &AuditThread,
    view: Arc<View>,
    set: PolicySet,
    done: impl FnOnce(policy::AuditRun, usize) + Send + 'static,
) -> Result<(), ControllerError> {
    let engine = state.policies.clone();
    let (pages, mut received) = tokio::sync::mpsc::channel::<AuditPage<'static>>(1);
    let complete = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let run = {
        let complete = complete.clone();
        audit.run(move || {
            let threads = std::num::NonZeroUsize::new(engine.options.audit_threads)
                .unwrap_or(std::num::NonZeroUsize::MIN);
            let mut objects = 0;
            let pages = std::iter::from_fn(|| received.blocking_recv())
                .inspect(|page| objects += page.objects.len());
            let run = policy::audit_pages(
                pages,
                &set,
                &view.fleet,
                AuditOptions {
                    threads,
                    ..AuditOptions::default()
                },
            );
            if complete.load(std::sync::atomic::Ordering::SeqCst) {
                done(run, objects);
            }
        })
    };
    let read = async {
        let read = read_pages(state, &pages).await;
        // Before the sender drops, so that the audit thread sees the flag once its pages
        // end.
        if read.is_ok() {
            complete.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        drop(pages);
        read
    };
    let ((), read) = tokio::join!(run, read);
    read.map(|_| ())
}

/// Evaluates every object against the policies `names` (after they changed).
async fn policy_audit(state: &AppState, audit: &AuditThread, names: &[String]) {
    let engine = state.policies.clone();
    let view = engine.view();
    let subset = view.set.subset(names);
    let names = names.to_vec();
    let done = move |run: policy::AuditRun, _| {
        let now = Timestamp::now();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        {
            let mut store = engine.findings.lock().expect("findings lock");
            for r in &run.results {
                store.record_for_policies(r, &refs, now);
            }
        }
        let mut report = engine.report.lock().expect("audit report lock");
        report.since.policy_runs += 1;
        report.since.evaluations += run.evaluations;
        report.since.last = Some(now);
    };
    if let Err(e) = paged_audit(state, audit, view, subset, done).await {
        tracing::warn!(error = %Report(&e), "cannot read objects for the policy audit");
    }
}

/// Evaluates every object against every policy and replaces the findings. With no
/// policy installed there is nothing to evaluate, and no object is read.
async fn full_audit(state: &AppState, audit: &AuditThread) {
    let engine = state.policies.clone();
    let started = Timestamp::now();
    let clock = Instant::now();
    let revision = match state.store().current_revision().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %Report(&e), "cannot read the revision for the audit");
            return;
        }
    };
    let view = engine.view();
    let set = view.set.clone();
    let done = {
        let set = set.clone();
        move |run: policy::AuditRun, objects: usize| {
            let duration = clock.elapsed();
            engine
                .findings
                .lock()
                .expect("findings lock")
                .apply_full(&run, &set, Timestamp::now());
            let report = AuditReport {
                started: Some(started),
                finished: Some(Timestamp::now()),
                revision,
                objects,
                evaluations: run.evaluations,
                duration,
                errors: run.errors,
                since: IncrementalAudit::default(),
            };
            tracing::info!(
                objects = report.objects,
                evaluations = report.evaluations,
                ms = duration.as_millis() as u64,
                "full audit"
            );
            *engine.report.lock().expect("audit report lock") = report;
        }
    };
    if set.is_empty() {
        let objects = match state.store().count("/registry/").await {
            Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Err(e) => {
                tracing::warn!(error = %Report(&e), "cannot count objects for the audit");
                return;
            }
        };
        audit
            .run(move || done(policy::AuditRun::default(), objects))
            .await;
        return;
    }
    if let Err(e) = paged_audit(state, audit, view, set, done).await {
        tracing::warn!(error = %Report(&e), "cannot read objects for the audit");
    }
}

/// JSON of the last audit run, for `compliance status`.
pub fn report_json(report: &AuditReport) -> Value {
    json!({
        "started": report.started.map(|t| t.to_string()),
        "finished": report.finished.map(|t| t.to_string()),
        "revision": report.revision,
        "objects": report.objects,
        "evaluations": report.evaluations,
        "durationMs": report.duration.as_millis() as u64,
        "errors": report.errors.iter().map(|e| json!({
            "policy": &*e.policy,
            "message": e.to_string(),
        })).collect::<Vec<_>>(),
        "since": {
            "objects": report.since.objects,
            "policyRuns": report.since.policy_runs,
            "evaluations": report.since.evaluations,
            "last": report.since.last.map(|t| t.to_string()),
        },
    })
}
