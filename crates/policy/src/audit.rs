//! The continuous audit core: evaluate objects against every policy ([`Auditor`],
//! [`audit`]) and keep the findings, deduplicated and bounded ([`FindingStore`]).
//!
//! No clock: the caller passes `now`. No I/O: objects come in as JSON values.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::Arc;

use api::kinds::{self, Control, Enforcement};
use jiff::Timestamp;
use regorus::Value;
use serde_json::json;

use crate::compile::Evaluator;
use crate::error::EvalError;
use crate::input::{self, AUDIT_OPERATION, FleetContext, Head, to_rego};
use crate::set::{PolicySet, Violation, controls_json};

/// The object a finding is about.
#[derive(Debug, Clone)]
pub struct ObjectRef {
    /// One of the kinds of `api::KINDS`.
    pub kind: &'static str,
    /// The project, for project-scoped kinds.
    pub namespace: Option<Arc<str>>,
    pub name: Arc<str>,
    /// `metadata.uid`: a deleted and recreated object is a new object.
    pub uid: Option<Arc<str>>,
}

impl ObjectRef {
    /// `finance/payroll-api` or `fra-rhel-01`.
    pub fn display_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.to_string(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "kind": self.kind,
            "namespace": self.namespace.as_deref(),
            "name": &*self.name,
            "uid": self.uid.as_deref(),
        })
    }
}

/// Identity is kind, namespace and name (the uid tells generations apart).
impl PartialEq for ObjectRef {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.namespace == other.namespace && self.name == other.name
    }
}

impl Eq for ObjectRef {}

impl Hash for ObjectRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        self.namespace.hash(state);
        self.name.hash(state);
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.display_name())
    }
}

/// A violation found by the audit, with when it was first and last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub policy: Arc<str>,
    pub enforcement: Enforcement,
    pub object: ObjectRef,
    pub message: String,
    pub field: Option<String>,
    pub controls: Arc<[Control]>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
}

impl Finding {
    /// The order reports list findings in: policy, then object, then message.
    pub fn report_order(&self) -> (&str, &str, Option<&str>, &str, &str) {
        (
            &self.policy,
            self.object.kind,
            self.object.namespace.as_deref(),
            &self.object.name,
            &self.message,
        )
    }

    /// JSON for `-o json`.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "policy": &*self.policy,
            "enforcement": self.enforcement.as_str(),
            "object": self.object.to_json(),
            "message": self.message,
            "field": self.field,
            "controls": controls_json(&self.controls),
            "firstSeen": self.first_seen.to_string(),
            "lastSeen": self.last_seen.to_string(),
        })
    }
}

/// JSON array of findings, for `meridian compliance report -o json`.
pub fn findings_to_json(findings: &[Finding]) -> serde_json::Value {
    findings.iter().map(Finding::to_json).collect()
}

/// What the audit found for one object.
#[derive(Debug, Clone)]
pub struct ObjectResult {
    pub object: ObjectRef,
    /// Every violation of every policy that applies to the object and could be evaluated.
    pub violations: Vec<Violation>,
    /// Policies that applied but failed (error, time limit, skipped after repeated time
    /// limits): their earlier findings for this object are kept, not resolved.
    pub failed: Vec<Arc<str>>,
    /// Number of policies evaluated on the object.
    pub evaluated: u32,
}

/// A policy that failed during an audit run, aggregated over objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditError {
    pub policy: Arc<str>,
    pub enforcement: Enforcement,
    /// The first error.
    pub error: EvalError,
    /// The object of the first error.
    pub example: ObjectRef,
    /// Objects on which the policy failed.
    pub failures: u64,
    /// Objects on which the policy was not evaluated because it had already run over its
    /// time limit too often in this run.
    pub skipped: u64,
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "policy {:?} failed on {} object(s) (first: {}): {}",
            &*self.policy, self.failures, self.example, self.error
        )?;
        if self.skipped > 0 {
            write!(
                f,
                "; then skipped on {} object(s) after repeated time limits",
                self.skipped
            )?;
        }
        Ok(())
    }
}

/// Tuning of an audit run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditOptions {
    /// Worker threads for [`audit`] (each with its own engines).
    pub threads: NonZeroUsize,
    /// After this many time limits in one run, a policy is skipped for the rest of the run
    /// (so one runaway policy cannot stretch a full audit to hours).
    pub max_timeouts_per_policy: u32,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            threads: NonZeroUsize::MIN,
            max_timeouts_per_policy: 3,
        }
    }
}

/// Evaluates objects one after the other against a policy set, reusing one engine per
/// policy across objects (`set_input` per object), converting each object to a regorus
/// value once for all policies. One per thread.
pub struct Auditor<'a> {
    set: &'a PolicySet,
    fleet: &'a FleetContext,
    engines: Vec<Option<Evaluator>>,
    timeouts: Vec<u32>,
    errors: Vec<Option<AuditError>>,
    max_timeouts: u32,
    evaluations: u64,
    namespaces: HashMap<String, Arc<str>>,
}

impl<'a> Auditor<'a> {
    pub fn new(set: &'a PolicySet, fleet: &'a FleetContext, options: AuditOptions) -> Self {
        let n = set.len();
        Auditor {
            set,
            fleet,
            engines: (0..n).map(|_| None).collect(),
            timeouts: vec![0; n],
            errors: vec![None; n],
            max_timeouts: options.max_timeouts_per_policy.max(1),
            evaluations: 0,
            namespaces: HashMap::new(),
        }
    }

    /// Evaluates one object against every policy that applies to it (whatever its
    /// enforcement). `workload` is the Workload of an Allocation, when known. `None` for a
    /// value that is not an object of a known kind.
    pub fn evaluate(
        &mut self,
        object: &serde_json::Value,
        workload: Option<&serde_json::Value>,
    ) -> Option<ObjectResult> {
        let head = Head::of(object);
        let kind = api::lookup_kind(head.kind)
            .filter(|k| k.kind == head.kind)?
            .kind;
        let uid = object
            .pointer("/metadata/uid")
            .and_then(|u| u.as_str())
            .map(Arc::from);
        let namespace = head.namespace.map(|ns| {
            self.namespaces
                .entry(ns.to_string())
                .or_insert_with(|| Arc::from(ns))
                .clone()
        });
        let object_ref = ObjectRef {
            kind,
            namespace,
            name: Arc::from(head.name),
            uid,
        };
        let mut result = ObjectResult {
            object: object_ref,
            violations: Vec::new(),
            failed: Vec::new(),
            evaluated: 0,
        };

        let set = self.set;
        let mut input_value: Option<Value> = None;
        for (i, policy) in set.matching(kind, head.project()) {
            if self.timeouts[i] >= self.max_timeouts {
                result.failed.push(policy.name_arc().clone());
                if let Some(e) = self.errors[i].as_mut() {
                    e.skipped += 1;
                }
                continue;
            }
            let input = input_value.get_or_insert_with(|| {
                let context = input::context(self.fleet, &head, object, workload.map(to_rego));
                input::input(
                    AUDIT_OPERATION,
                    to_rego(object),
                    Value::Undefined,
                    Value::Undefined,
                    context,
                )
            });
            let engine = self.engines[i].get_or_insert_with(|| policy.evaluator());
            self.evaluations += 1;
            result.evaluated += 1;
            match policy.evaluate_with(engine, input) {
                Ok(found) => result
                    .violations
                    .extend(found.into_iter().map(|v| Violation::new(policy, v))),
                Err(error) => {
                    if error.is_timeout() {
                        self.timeouts[i] += 1;
                        // A stopped evaluation may leave the engine mid-state: start afresh.
                        self.engines[i] = None;
                    }
                    result.failed.push(policy.name_arc().clone());
                    match self.errors[i].as_mut() {
                        Some(e) => e.failures += 1,
                        None => {
                            self.errors[i] = Some(AuditError {
                                policy: policy.name_arc().clone(),
                                enforcement: policy.enforcement(),
                                error,
                                example: result.object.clone(),
                                failures: 1,
                                skipped: 0,
                            });
                        }
                    }
                }
            }
        }
        Some(result)
    }

    /// Whether an evaluation failed or ran over its time limit since the auditor was
    /// made (a policy that ran over its limit often enough is skipped from then on).
    pub fn has_failures(&self) -> bool {
        self.errors.iter().any(Option::is_some)
    }

    /// Policy evaluations done so far.
    pub fn evaluations(&self) -> u64 {
        self.evaluations
    }

    /// The evaluation count and the failures, per policy.
    pub fn finish(self) -> (u64, Vec<AuditError>) {
        (
            self.evaluations,
            self.errors.into_iter().flatten().collect(),
        )
    }
}

/// The outcome of auditing a list of objects.
#[derive(Debug, Clone, Default)]
pub struct AuditRun {
    /// One per object of a known kind, in input order.
    pub results: Vec<ObjectResult>,
    pub errors: Vec<AuditError>,
    /// Policy evaluations done.
    pub evaluations: u64,
}

impl AuditRun {
    /// The run's violations as findings first and last seen `now`.
    pub fn findings(&self, now: Timestamp) -> Vec<Finding> {
        self.results
            .iter()
            .flat_map(|r| {
                r.violations.iter().map(move |v| Finding {
                    policy: v.policy.clone(),
                    enforcement: v.enforcement,
                    object: r.object.clone(),
                    message: v.message.clone(),
                    field: v.field.clone(),
                    controls: v.controls.clone(),
                    first_seen: now,
                    last_seen: now,
                })
            })
            .collect()
    }

    /// Number of violations found.
    pub fn violation_count(&self) -> usize {
        self.results.iter().map(|r| r.violations.len()).sum()
    }
}

/// Audits `objects` (of any kinds) against every policy of `set` that applies to each,
/// on `options.threads` threads. Allocations get their Workload from `objects` as
/// `input.context.workload`.
pub fn audit(
    objects: &[serde_json::Value],
    set: &PolicySet,
    fleet: &FleetContext,
    options: AuditOptions,
) -> AuditRun {
    let page = AuditPage {
        objects: Cow::Borrowed(objects),
        context: Cow::Borrowed(&[]),
    };
    audit_pages(std::iter::once(page), set, fleet, options)
}

/// Some objects to audit, with the Workloads their Allocations need as
/// `input.context.workload` that are not among them (those on another page).
#[derive(Debug, Clone, Default)]
pub struct AuditPage<'p> {
    pub objects: Cow<'p, [serde_json::Value]>,
    /// Workloads only looked up, never audited with this page.
    pub context: Cow<'p, [serde_json::Value]>,
}

impl AuditPage<'_> {
    /// The page's Workloads (its objects', then its context's) by project and name.
    fn workloads(&self) -> HashMap<(&str, &str), &serde_json::Value> {
        let mut by_name = HashMap::new();
        for o in self.context.iter().chain(self.objects.iter()) {
            let h = Head::of(o);
            if h.kind == kinds::WORKLOAD.kind
                && let Some(ns) = h.namespace
            {
                by_name.insert((ns, h.name), o);
            }
        }
        by_name
    }

    /// Evaluates the objects of `range` with `auditor`, in order.
    fn evaluate(
        &self,
        range: std::ops::Range<usize>,
        auditor: &mut Auditor<'_>,
    ) -> Vec<ObjectResult> {
        let workloads = self.workloads();
        let workload_of = |o: &serde_json::Value| -> Option<&serde_json::Value> {
            let h = Head::of(o);
            if h.kind != kinds::ALLOCATION.kind {
                return None;
            }
            let w = o.pointer("/spec/workload")?.as_str()?;
            workloads.get(&(h.namespace?, w)).copied()
        };
        self.objects[range]
            .iter()
            .filter_map(|o| auditor.evaluate(o, workload_of(o)))
            .collect()
    }
}

/// Audits pages of objects as they come, each against every policy of `set` that
/// applies to it, on `options.threads` threads that keep their engines and their count of
/// time limits from page to page (a policy skipped after too many time limits stays
/// skipped for the rest of the run). Only the pages being evaluated and one waiting per
/// thread are held, so a caller reading the objects page by page audits any number of
/// them in bounded memory. Results come in input order.
pub fn audit_pages<'p>(
    pages: impl IntoIterator<Item = AuditPage<'p>>,
    set: &PolicySet,
    fleet: &FleetContext,
    options: AuditOptions,
) -> AuditRun {
    let threads = options.threads.get();
    // (sequence number of the slice, its results), and each auditor's count and failures.
    let mut parts: Vec<(usize, Vec<ObjectResult>)> = Vec::new();
    let mut finished: Vec<(u64, Vec<AuditError>)> = Vec::new();
    if threads == 1 {
        let mut auditor = Auditor::new(set, fleet, options);
        for (seq, page) in pages.into_iter().enumerate() {
            parts.push((seq, page.evaluate(0..page.objects.len(), &mut auditor)));
        }
        finished.push(auditor.finish());
    } else {
        type Slice<'p> = (usize, Arc<AuditPage<'p>>, std::ops::Range<usize>);
        let (slices, queue) = std::sync::mpsc::sync_channel::<Slice<'p>>(threads);
        let queue = std::sync::Mutex::new(queue);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let queue = &queue;
                    s.spawn(move || {
                        let mut auditor = Auditor::new(set, fleet, options);
                        let mut done = Vec::new();
                        loop {
                            let next = queue.lock().expect("audit queue lock").recv();
                            let Ok((seq, page, range)) = next else { break };
                            done.push((seq, page.evaluate(range, &mut auditor)));
                        }
                        (done, auditor.finish())
                    })
                })
                .collect();
            let mut seq = 0;
            for page in pages {
                let page = Arc::new(page);
                let n = page.objects.len();
                let chunk = n.div_ceil(threads).max(1);
                for start in (0..n).step_by(chunk) {
                    let slice = (seq, page.clone(), start..(start + chunk).min(n));
                    seq += 1;
                    if slices.send(slice).is_err() {
                        break;
                    }
                }
            }
            drop(slices);
            for worker in workers {
                let (done, counts) = worker.join().expect("audit worker panicked");
                parts.extend(done);
                finished.push(counts);
            }
        });
    }
    parts.sort_unstable_by_key(|(seq, _)| *seq);

    let mut run = AuditRun::default();
    for (_, results) in parts {
        run.results.extend(results);
    }
    let mut errors: Vec<AuditError> = Vec::new();
    for (evaluations, errs) in finished {
        run.evaluations += evaluations;
        for e in errs {
            match errors.iter_mut().find(|x| x.policy == e.policy) {
                Some(x) => {
                    x.failures += e.failures;
                    x.skipped += e.skipped;
                }
                None => errors.push(e),
            }
        }
    }
    errors.sort_by(|a, b| a.policy.cmp(&b.policy));
    run.errors = errors;
    run
}

// ---------------------------------------------------------------------------------------
// The finding store

/// Bounds of a [`FindingStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Findings kept in total; beyond it new findings are counted in
    /// [`FindingStore::dropped`] and not kept.
    pub max_findings: usize,
    /// Findings kept per object and policy (Gatekeeper's constraint violation limit).
    pub max_per_object_policy: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_findings: 1_000_000,
            max_per_object_policy: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    kind: &'static str,
    namespace: Option<Arc<str>>,
    name: Arc<str>,
}

#[derive(Debug, Default)]
struct Entry {
    uid: Option<Arc<str>>,
    findings: Vec<Stored>,
}

/// A finding as stored: 56 bytes plus its message.
#[derive(Debug, Clone)]
struct Stored {
    policy: Arc<str>,
    message: Box<str>,
    field: Option<Box<str>>,
    /// Nanoseconds since the Unix epoch.
    first_seen: i64,
    last_seen: i64,
}

#[derive(Debug, Clone)]
struct PolicyMeta {
    enforcement: Enforcement,
    controls: Arc<[Control]>,
}

/// The audit's findings, kept between runs: deduplicated by (policy, object, message),
/// `last_seen` moved on every run that sees a finding again, resolved findings removed,
/// findings of deleted objects and removed policies dropped, and a hard cap with a
/// counter of what was not kept. In memory; the server persists what it needs.
#[derive(Debug)]
pub struct FindingStore {
    objects: HashMap<Key, Entry>,
    policies: HashMap<Arc<str>, PolicyMeta>,
    namespaces: HashSet<Arc<str>>,
    len: usize,
    dropped: u64,
    limits: StoreLimits,
}

impl Default for FindingStore {
    fn default() -> Self {
        FindingStore::new(StoreLimits::default())
    }
}

fn nanos(t: Timestamp) -> i64 {
    i64::try_from(t.as_nanosecond()).unwrap_or(i64::MAX)
}

fn timestamp(n: i64) -> Timestamp {
    Timestamp::from_nanosecond(i128::from(n)).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl FindingStore {
    pub fn new(limits: StoreLimits) -> Self {
        FindingStore {
            objects: HashMap::new(),
            policies: HashMap::new(),
            namespaces: HashSet::new(),
            len: 0,
            dropped: 0,
            limits,
        }
    }

    fn key(&mut self, object: &ObjectRef) -> Key {
        let namespace = object.namespace.as_ref().map(|ns| {
            if let Some(existing) = self.namespaces.get(ns) {
                existing.clone()
            } else {
                self.namespaces.insert(ns.clone());
                ns.clone()
            }
        });
        Key {
            kind: object.kind,
            namespace,
            name: object.name.clone(),
        }
    }

    /// Records what an evaluation of one object against every policy that applies to it
    /// found: the object's findings become exactly `result.violations`, except for the
    /// policies in `result.failed`, whose earlier findings stay.
    pub fn record(&mut self, result: &ObjectResult, now: Timestamp) {
        self.record_scoped(result, None, now);
    }

    /// Records an evaluation of one object against only the policies named in `policies`
    /// (after those policies changed): findings of other policies are untouched.
    pub fn record_for_policies(
        &mut self,
        result: &ObjectResult,
        policies: &[&str],
        now: Timestamp,
    ) {
        self.record_scoped(result, Some(policies), now);
    }

    fn record_scoped(&mut self, result: &ObjectResult, only: Option<&[&str]>, now: Timestamp) {
        let now = nanos(now);
        let key = self.key(&result.object);
        for v in &result.violations {
            self.policies
                .entry(v.policy.clone())
                .and_modify(|m| {
                    m.enforcement = v.enforcement;
                    m.controls = v.controls.clone();
                })
                .or_insert_with(|| PolicyMeta {
                    enforcement: v.enforcement,
                    controls: v.controls.clone(),
                });
        }
        let in_scope = |p: &str| {
            only.is_none_or(|names| names.contains(&p)) && !result.failed.iter().any(|f| &**f == p)
        };

        let entry = self.objects.entry(key.clone()).or_default();
        let mut old = std::mem::take(&mut entry.findings);
        let old_len = old.len();
        if entry.uid.is_some() && result.object.uid.is_some() && entry.uid != result.object.uid {
            // Same name, new object: its history starts over.
            old.clear();
        }
        entry.uid = result.object.uid.clone();

        let (keep, mut previous): (Vec<Stored>, Vec<Stored>) =
            old.into_iter().partition(|s| !in_scope(&s.policy));
        let mut findings = keep;
        let base = self.len - old_len;
        let mut dropped = 0u64;
        // Findings seen before first, so that the cap never evicts known ones for new ones.
        let (seen, new): (Vec<&Violation>, Vec<&Violation>) = result
            .violations
            .iter()
            .filter(|v| in_scope(&v.policy))
            .partition(|v| {
                previous
                    .iter()
                    .any(|s| s.policy == v.policy && *s.message == *v.message)
            });
        for v in seen.into_iter().chain(new) {
            if findings
                .iter()
                .any(|s| s.policy == v.policy && *s.message == *v.message)
            {
                continue; // duplicate in this result
            }
            let per_policy = findings.iter().filter(|s| s.policy == v.policy).count();
            if per_policy >= self.limits.max_per_object_policy
                || base + findings.len() >= self.limits.max_findings
            {
                dropped += 1;
                continue;
            }
            let first_seen = match previous
                .iter()
                .position(|s| s.policy == v.policy && *s.message == *v.message)
            {
                Some(i) => previous.swap_remove(i).first_seen,
                None => now,
            };
            findings.push(Stored {
                policy: v.policy.clone(),
                message: v.message.as_str().into(),
                field: v.field.as_deref().map(Into::into),
                first_seen,
                last_seen: now,
            });
        }
        self.dropped += dropped;
        self.len = base + findings.len();
        if findings.is_empty() {
            self.objects.remove(&key);
        } else {
            findings.shrink_to_fit();
            if let Some(entry) = self.objects.get_mut(&key) {
                entry.findings = findings;
            }
        }
    }

    /// Applies a full audit run (every object against every policy of `set`): each
    /// object's findings are replaced, objects absent from the run are forgotten (they
    /// were deleted) and findings of policies no longer in `set` are dropped.
    pub fn apply_full(&mut self, run: &AuditRun, set: &PolicySet, now: Timestamp) {
        let mut seen: HashSet<Key> = HashSet::with_capacity(run.results.len());
        for r in &run.results {
            self.record(r, now);
            seen.insert(self.key(&r.object));
        }
        let gone: Vec<Key> = self
            .objects
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(e) = self.objects.remove(&k) {
                self.len -= e.findings.len();
            }
        }
        self.retain_policies(set);
    }

    /// Forgets a deleted object.
    pub fn remove_object(&mut self, kind: &str, namespace: Option<&str>, name: &str) {
        let Some(kind) = api::lookup_kind(kind).map(|k| k.kind) else {
            return;
        };
        let key = Key {
            kind,
            namespace: namespace.map(Arc::from),
            name: Arc::from(name),
        };
        if let Some(e) = self.objects.remove(&key) {
            self.len -= e.findings.len();
        }
    }

    /// Drops the findings of policies that are not in `set` and takes the current
    /// enforcement and controls of those that are.
    pub fn retain_policies(&mut self, set: &PolicySet) {
        self.policies.retain(|name, _| set.get(name).is_some());
        for p in set.iter() {
            if let Some(m) = self.policies.get_mut(p.name()) {
                m.enforcement = p.enforcement();
                m.controls = p.controls().clone();
            }
        }
        let mut removed = 0;
        self.objects.retain(|_, e| {
            let before = e.findings.len();
            e.findings.retain(|s| set.get(&s.policy).is_some());
            removed += before - e.findings.len();
            !e.findings.is_empty()
        });
        self.len -= removed;
    }

    /// Drops the findings of one policy.
    pub fn remove_policy(&mut self, name: &str) {
        self.policies.remove(name);
        let mut removed = 0;
        self.objects.retain(|_, e| {
            let before = e.findings.len();
            e.findings.retain(|s| &*s.policy != name);
            removed += before - e.findings.len();
            !e.findings.is_empty()
        });
        self.len -= removed;
    }

    /// Findings kept.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Findings not kept because of the limits, since the store was created (a counter,
    /// for metrics and for `compliance status` to say the list is incomplete).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Objects with at least one finding.
    pub fn object_count(&self) -> usize {
        self.objects.len()
    }

    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// Every finding, ordered by policy, kind, project, name and message.
    pub fn findings(&self) -> Vec<Finding> {
        let mut out: Vec<Finding> = Vec::with_capacity(self.len);
        for (k, e) in &self.objects {
            let object = ObjectRef {
                kind: k.kind,
                namespace: k.namespace.clone(),
                name: k.name.clone(),
                uid: e.uid.clone(),
            };
            for s in &e.findings {
                let meta = self.policies.get(&s.policy);
                out.push(Finding {
                    policy: s.policy.clone(),
                    enforcement: meta.map(|m| m.enforcement).unwrap_or_default(),
                    object: object.clone(),
                    message: s.message.to_string(),
                    field: s.field.as_deref().map(str::to_string),
                    controls: meta
                        .map(|m| m.controls.clone())
                        .unwrap_or_else(|| Arc::from([])),
                    first_seen: timestamp(s.first_seen),
                    last_seen: timestamp(s.last_seen),
                });
            }
        }
        out.sort_by(|a, b| a.report_order().cmp(&b.report_order()));
        out
    }

    /// An estimate of the heap memory the store holds (table slots, finding vectors,
    /// names, uids, messages), for capacity planning and `BENCHMARKS.md`.
    pub fn approx_heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let arc_str = |s: &str| s.len() + 2 * size_of::<usize>();
        let table = self.objects.capacity() * (size_of::<Key>() + size_of::<Entry>() + 1);
        let entries: usize = self
            .objects
            .iter()
            .map(|(k, e)| {
                arc_str(&k.name)
                    + e.uid.as_deref().map_or(0, arc_str)
                    + e.findings.capacity() * size_of::<Stored>()
                    + e.findings
                        .iter()
                        .map(|s| s.message.len() + s.field.as_deref().map_or(0, str::len))
                        .sum::<usize>()
            })
            .sum();
        let namespaces: usize = self.namespaces.iter().map(|n| arc_str(n)).sum();
        table + entries + namespaces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_finding_is_compact() {
        assert!(
            std::mem::size_of::<Stored>() <= 64,
            "{}",
            std::mem::size_of::<Stored>()
        );
    }
}
