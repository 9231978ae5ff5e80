//! Admission decisions in the tamper-evident audit log and in the metrics.
//!
//! The audit chain records committed mutations (`registry.rs`); admission adds what it
//! decided, in the same payload format (`AuditRecord`, with `outcome` and `policies`):
//!
//! - a write that `warn` policies flagged is audited by its own entry, in the same
//!   transaction, with `outcome: "allowed"` and the warnings ([`with_warnings`]): no extra
//!   entry, no extra write;
//! - a request that a `deny` policy refused (or a broken `deny` policy failed closed on)
//!   is an entry of its own, `outcome: "denied"`, appended by [`record_denial`] through
//!   `Registry::append_audit` (a transaction with only the `Append`) before the 403 goes
//!   back. Dry runs write nothing and are not audited; the scheduler's own Allocations
//!   that admission refuses are not either (a pass retries them every few seconds; they
//!   are events and metrics).
//!
//! Cost. Admission runs after authorization, so only a caller who may write the object
//! can produce a denial, and the append is awaited before the answer: a flood of denied
//! requests costs the store what the same flood of accepted writes would, and is paced
//! by it. On top of that, denials are rate-limited per actor ([`DenialLimiter`]: a burst
//! of [`BURST`], then one per second): beyond the rate an entry is not appended but
//! counted, and the actor's next appended denial says how many were left out
//! (`suppressed`). Every decision is counted in `meridian_admission_decisions_total`
//! whether or not its entry was appended.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use api::KindInfo;
use policy::AdmissionResult;
use tokio::time::Instant;

use crate::app::AppState;
use crate::auth::Principal;
use crate::controller::Report;
use crate::registry::{AuditRecord, PolicyDecision, Registry};

/// Denials an actor may have audited at once.
pub const BURST: u32 = 30;
/// After the burst, one audited denial per this interval and actor.
pub const REFILL: Duration = Duration::from_secs(1);
/// Actors tracked at once; beyond, the idle ones are forgotten.
const MAX_ACTORS: usize = 4_096;

/// A token bucket per actor for audited denials.
#[derive(Debug, Default)]
pub struct DenialLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: u32,
    /// When the last token was added (or the bucket made).
    refilled: Instant,
    /// Denials left out since the last appended one.
    suppressed: u64,
}

impl DenialLimiter {
    /// Whether a denial of `actor` at `now` is appended: `Some(n)` with the number of
    /// its denials left out before it, or `None` when this one is left out.
    pub fn take(&self, actor: &str, now: Instant) -> Option<u64> {
        let mut buckets = self.buckets.lock().expect("denial limiter lock");
        if buckets.len() >= MAX_ACTORS && !buckets.contains_key(actor) {
            // Forget actors whose bucket has refilled (nothing suppressed to report).
            buckets
                .retain(|_, b| b.suppressed > 0 || now.duration_since(b.refilled) < REFILL * BURST);
            if buckets.len() >= MAX_ACTORS {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(actor.to_owned()).or_insert(Bucket {
            tokens: BURST,
            refilled: now,
            suppressed: 0,
        });
        let elapsed = now.duration_since(bucket.refilled);
        let earned =
            u32::try_from(elapsed.as_nanos() / REFILL.as_nanos().max(1)).unwrap_or(u32::MAX);
        if earned > 0 {
            bucket.tokens = bucket.tokens.saturating_add(earned).min(BURST);
            bucket.refilled += REFILL * earned.min(BURST);
            if bucket.tokens == BURST {
                bucket.refilled = now;
            }
        }
        if bucket.tokens == 0 {
            bucket.suppressed += 1;
            return None;
        }
        bucket.tokens -= 1;
        Some(std::mem::take(&mut bucket.suppressed))
    }
}

/// One entry per violation: `denied` then `warnings`.
fn decisions<'a>(
    violations: impl IntoIterator<Item = &'a policy::Violation>,
) -> Vec<PolicyDecision> {
    violations
        .into_iter()
        .map(|v| PolicyDecision {
            policy: v.policy.to_string(),
            enforcement: v.enforcement.as_str().to_owned(),
            message: v.message.clone(),
            field: v.field.clone(),
        })
        .collect()
}

/// Counts one request's decision in `meridian_admission_decisions_total`, once per
/// policy that refused it or warned.
pub fn count(state: &AppState, result: &AdmissionResult) {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (violations, outcome) in [(&result.denied, "denied"), (&result.warnings, "warned")] {
        for v in violations {
            if seen.contains(&(&*v.policy, outcome)) {
                continue;
            }
            seen.push((&v.policy, outcome));
            state
                .metrics
                .admission_decision(&v.policy, v.enforcement.as_str(), outcome);
        }
    }
}

/// The audit entry of a write, with admission's warnings when there are any.
pub fn with_warnings(mut record: AuditRecord, result: &AdmissionResult) -> AuditRecord {
    if !result.warnings.is_empty() {
        record.outcome = Some("allowed".to_owned());
        record.policies = decisions(&result.warnings);
    }
    record
}

/// What was refused, for the denial's audit entry.
pub struct Refused<'a> {
    /// The request's verb (`create`, `update`, `patch`, `apply`, `delete`).
    pub verb: &'a str,
    pub kind: &'a KindInfo,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

/// Appends the audit entry of a refused request (unless the actor is over its rate). A
/// store that refuses the append (a full disk) is logged and counted; the request is
/// refused all the same.
pub async fn record_denial(
    state: &AppState,
    who: &Principal,
    refused: &Refused<'_>,
    result: &AdmissionResult,
) {
    let actor = who.actor();
    let Some(suppressed) = state.policies.denials.take(&actor, Instant::now()) else {
        state.metrics.admission_audit("suppressed");
        return;
    };
    let mut record = Registry::audit_record(
        who,
        refused.verb,
        refused.kind,
        refused.namespace,
        refused.name,
        None,
    );
    record.outcome = Some("denied".to_owned());
    record.policies = decisions(result.denied.iter().chain(&result.warnings));
    record.suppressed = suppressed;
    match state.registry.append_audit(&record).await {
        Ok(_) => state.metrics.admission_audit("appended"),
        Err(e) => {
            state.metrics.admission_audit("failed");
            tracing::warn!(
                actor = %actor,
                kind = refused.kind.kind,
                name = refused.name,
                error = %Report(&e),
                "cannot append an admission denial to the audit log"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_actor_over_its_rate_is_left_out_and_counted_in_its_next_entry() {
        let limiter = DenialLimiter::default();
        let start = Instant::now();
        for _ in 0..BURST {
            assert_eq!(limiter.take("a", start), Some(0));
        }
        assert_eq!(limiter.take("a", start), None);
        assert_eq!(limiter.take("a", start), None);
        // Another actor has its own bucket.
        assert_eq!(limiter.take("b", start), Some(0));
        // One interval later, one more entry, which says two were left out.
        assert_eq!(limiter.take("a", start + REFILL), Some(2));
        assert_eq!(limiter.take("a", start + REFILL), None);
        // A long pause refills the burst, no more.
        let later = start + REFILL * (BURST * 10);
        for _ in 0..BURST {
            assert!(limiter.take("a", later).is_some());
        }
        assert_eq!(limiter.take("a", later), None);
    }
}
