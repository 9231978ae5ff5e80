//! The audit's own thread, at the lowest CPU priority.
//!
//! Every audit evaluation (an object that changed, a policy that changed, the full run)
//! runs here rather than on the request threads, in the order the controller's watch
//! delivered the changes. The thread asks the kernel for the lowest priority
//! (`SCHED_IDLE` on Linux; a full run's worker threads inherit it), so on a busy host the
//! audit falls behind rather than taking the CPU from requests: admission is what
//! enforces, the audit reports. If the queue fills up, the controller stops queueing and
//! runs a full audit when the burst is over instead, so nothing is lost.

use std::sync::Arc;

use policy::{AuditOptions, Auditor};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::policies::PolicyEngine;

/// Changes waiting for the audit thread before the controller falls back to a full run.
const QUEUE: usize = 4_096;

/// Work for the audit thread.
enum Job {
    /// An object was stored: audit it (`workload`: the Workload of an Allocation).
    Put {
        object: Value,
        workload: Option<Value>,
    },
    /// An object was deleted: forget its findings.
    Delete(Value),
    /// Run this (a full or per-policy audit) on the audit thread, then answer.
    Run(Box<dyn FnOnce() + Send>, oneshot::Sender<()>),
}

/// The controller's handle on the audit thread; the thread ends when it is dropped.
pub(crate) struct AuditThread {
    jobs: mpsc::Sender<Job>,
    /// A change could not be queued: the findings need a full audit.
    overflowed: bool,
}

impl AuditThread {
    pub fn start(engine: Arc<PolicyEngine>) -> std::io::Result<Self> {
        Self::with_queue(engine, QUEUE)
    }

    fn with_queue(engine: Arc<PolicyEngine>, queue: usize) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::channel(queue);
        std::thread::Builder::new()
            .name("policy-audit".into())
            .spawn(move || work(&engine, rx))?;
        Ok(AuditThread {
            jobs,
            overflowed: false,
        })
    }

    /// Queues the audit of a stored object.
    pub fn put(&mut self, object: Value, workload: Option<Value>) {
        self.queue(Job::Put { object, workload });
    }

    /// Queues forgetting a deleted object's findings.
    pub fn delete(&mut self, object: Value) {
        self.queue(Job::Delete(object));
    }

    fn queue(&mut self, job: Job) {
        if self.jobs.try_send(job).is_err() {
            self.overflowed = true;
        }
    }

    /// Whether a change was dropped since the last call (a full audit is due).
    pub fn take_overflow(&mut self) -> bool {
        std::mem::take(&mut self.overflowed)
    }

    /// Runs `f` on the audit thread after the changes queued before it; waits for it.
    pub async fn run(&self, f: impl FnOnce() + Send + 'static) {
        let (done, finished) = oneshot::channel();
        if self.jobs.send(Job::Run(Box::new(f), done)).await.is_ok() {
            // An error means the thread panicked while running `f`: logged there.
            let _ = finished.await;
        }
    }
}

fn work(engine: &PolicyEngine, mut jobs: mpsc::Receiver<Job>) {
    lower_priority();
    let mut pending: Option<Job> = None;
    // One auditor (and its per-policy VMs) for as long as the policies and fleet context
    // stay the same: loading a policy's program costs more than evaluating it.
    loop {
        let view = engine.view();
        let mut auditor = Auditor::new(&view.set, &view.fleet, AuditOptions::default());
        loop {
            let Some(job) = pending.take().or_else(|| jobs.blocking_recv()) else {
                return;
            };
            if !Arc::ptr_eq(&view, &engine.view()) {
                pending = Some(job);
                break;
            }
            let mut failed = false;
            let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match job {
                Job::Put { object, workload } => {
                    if let Some(result) = auditor.evaluate(&object, workload.as_ref()) {
                        engine.record(&result);
                    }
                    // A time limit counts against a policy for the rest of a run; here
                    // every object is a run of its own.
                    failed = auditor.has_failures();
                }
                Job::Delete(object) => engine.forget_object(&object),
                Job::Run(f, done) => {
                    f();
                    let _ = done.send(());
                }
            }));
            if handled.is_err() {
                tracing::error!("an audit job panicked; the audit goes on with the next change");
                break;
            }
            if failed {
                break;
            }
        }
    }
}

/// The lowest CPU priority the platform offers without privileges.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    let result = {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
            set_thread_priority_and_policy, thread_native_id,
        };
        set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        )
    };
    #[cfg(not(target_os = "linux"))]
    let result = thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min);
    if let Err(e) = result {
        tracing::warn!(error = ?e, "the audit thread runs at normal priority");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc as std_mpsc;

    use serde_json::json;
    use store::sqlite::{SqliteOptions, SqliteStore};

    use super::*;
    use crate::policies::PolicyOptions;

    #[tokio::test]
    async fn a_change_that_finds_the_queue_full_asks_for_a_full_audit_and_the_rest_still_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db"), SqliteOptions::default())
            .await
            .unwrap();
        let reads = crate::registry::ReadView::new(store);
        let engine = PolicyEngine::load(&reads, PolicyOptions::default())
            .await
            .unwrap();
        let mut audit = AuditThread::with_queue(engine, 2).unwrap();

        // Hold the thread inside a job so that nothing leaves the queue.
        let (release, held) = std_mpsc::channel::<()>();
        let (started_tx, started) = std_mpsc::channel::<()>();
        let (done, mut finished) = oneshot::channel();
        audit
            .jobs
            .try_send(Job::Run(
                Box::new(move || {
                    started_tx.send(()).unwrap();
                    held.recv().unwrap();
                }),
                done,
            ))
            .unwrap();
        started.recv().unwrap();

        let object = json!({"kind": "Workload", "metadata": {"name": "w", "project": "p"}});
        audit.put(object.clone(), None);
        audit.delete(object.clone());
        assert!(!audit.take_overflow(), "two changes fit a queue of two");
        audit.put(object.clone(), None);
        assert!(
            audit.take_overflow(),
            "the third change found the queue full"
        );
        assert!(!audit.take_overflow(), "the flag is taken once");

        release.send(()).unwrap();
        (&mut finished).await.unwrap();
        // The queued changes were handled in order, and the thread takes new work.
        let (tx, rx) = std_mpsc::channel();
        audit.run(move || tx.send(()).unwrap()).await;
        rx.try_recv().expect("the job ran before run() returned");
        assert!(!audit.take_overflow());
    }
}
