//! The client that writes while faults happen: it creates a pool of workloads and then
//! keeps updating them (an annotation carrying the write's sequence number every time,
//! the replica count every fourth update of a workload, so the scheduler scales up and
//! down all along), through the load balancer, and records every write a server
//! acknowledged with the `resourceVersion` it answered ([`testkit::invariants::Ledger`]).
//! A write that failed or timed out is not acknowledged: whether it was applied is
//! unknown, and the checks allow either.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{OwnedRwLockWriteGuard, RwLock};
use tokio_util::sync::CancellationToken;

use testkit::invariants::{Ack, Ledger, SEQ_ANNOTATION, resource_version};

/// The project the writer's workloads are in.
pub const PROJECT: &str = "default";
/// How many workloads the writer keeps.
pub const POOL: u64 = 6;
/// The most replicas a writer's workload has (the writer's demand is at most
/// `POOL * MAX_REPLICAS` instances).
pub const MAX_REPLICAS: u64 = 2;
/// How long one write may take before the writer gives up on it (unknown outcome).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause between two writes: about 8 writes a second, steady load for a 2-core
/// machine that also runs 3 etcd members, 3 servers and 3 agents.
const PACE: Duration = Duration::from_millis(120);

/// A service of `replicas` instances of `cpu_millis` each, its sequence number in
/// [`SEQ_ANNOTATION`].
pub fn workload(name: &str, replicas: u64, cpu_millis: u64, seq: u64) -> Value {
    json!({
        "apiVersion": "meridian.dev/v1",
        "kind": "Workload",
        "metadata": {
            "name": name,
            "namespace": PROJECT,
            "annotations": {SEQ_ANNOTATION: seq.to_string()},
        },
        "spec": {
            "type": "service",
            "replicas": replicas,
            "task": {
                "driver": "exec",
                "command": ["/bin/sleep", "3600"],
                "resources": {"cpu": format!("{cpu_millis}m"), "memory": "32Mi"},
                "os": {"family": "linux"},
            },
        },
    })
}

#[derive(Default)]
struct Counters {
    ledger: Ledger,
    /// Writes that failed or timed out.
    failed: u64,
    /// When each acknowledged write was answered, in order.
    acked_at: Vec<Instant>,
}

/// The running writer; stopped on drop.
pub struct Writer {
    counters: Arc<Mutex<Counters>>,
    /// Each write holds it for reading; [`Writer::pause`] takes it for writing.
    gate: Arc<RwLock<()>>,
    stop: CancellationToken,
}

/// While held, the writer writes nothing (and no write is in flight).
pub struct Paused(#[allow(dead_code)] OwnedRwLockWriteGuard<()>);

impl Writer {
    /// Starts writing through `client` (on the current tokio runtime).
    pub fn start(client: client::Client, cpu_millis: u64) -> Self {
        let counters = Arc::new(Mutex::new(Counters::default()));
        let gate = Arc::new(RwLock::new(()));
        let stop = CancellationToken::new();
        tokio::spawn(run(
            client,
            cpu_millis,
            Arc::clone(&counters),
            Arc::clone(&gate),
            stop.clone(),
        ));
        Self {
            counters,
            gate,
            stop,
        }
    }

    /// Waits for the write in flight to end and holds the writer until the guard drops.
    pub async fn pause(&self) -> Paused {
        Paused(Arc::clone(&self.gate).write_owned().await)
    }

    /// A copy of what was acknowledged so far.
    pub fn ledger(&self) -> Ledger {
        self.counters.lock().expect("writer lock").ledger.clone()
    }

    /// Writes acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        self.counters
            .lock()
            .expect("writer lock")
            .ledger
            .acknowledged
    }

    /// The longest time without an acknowledged write between `from` and `to` (counting
    /// from `from` to the first answer after it): how long writes were unavailable.
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let counters = self.counters.lock().expect("writer lock");
        let mut previous = from;
        let mut longest = Duration::ZERO;
        for &at in counters
            .acked_at
            .iter()
            .filter(|&&at| at > from && at <= to)
        {
            longest = longest.max(at - previous);
            previous = at;
        }
        longest.max(to - previous)
    }

    /// Writes that failed or timed out so far.
    pub fn failed(&self) -> u64 {
        self.counters.lock().expect("writer lock").failed
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn run(
    client: client::Client,
    cpu_millis: u64,
    counters: Arc<Mutex<Counters>>,
    gate: Arc<RwLock<()>>,
    stop: CancellationToken,
) {
    let kind = api::kinds::WORKLOAD;
    let mut created: HashSet<String> = HashSet::new();
    for seq in 0u64.. {
        if stop.is_cancelled() {
            return;
        }
        let guard = tokio::select! {
            () = stop.cancelled() => return,
            guard = gate.read() => guard,
        };
        let name = format!("w-{}", seq % POOL);
        let replicas = (seq / POOL / 4) % (MAX_REPLICAS + 1);
        let write = async {
            if created.contains(&name) {
                let patch = json!({
                    "metadata": {"annotations": {SEQ_ANNOTATION: seq.to_string()}},
                    "spec": {"replicas": replicas},
                });
                client
                    .patch(
                        kind,
                        Some(PROJECT),
                        &name,
                        client::PatchType::Merge,
                        &patch,
                        false,
                    )
                    .await
            } else {
                let body = workload(&name, replicas, cpu_millis, seq);
                client.create(kind, Some(PROJECT), &body, false).await
            }
        };
        let result = tokio::time::timeout(WRITE_TIMEOUT, write).await;
        {
            let mut counters = counters.lock().expect("writer lock");
            match result {
                Ok(Ok(object)) => {
                    created.insert(name.clone());
                    let resource_version =
                        resource_version(&object).expect("an acknowledged write has a version");
                    counters.ledger.record(
                        PROJECT,
                        &name,
                        Ack {
                            resource_version,
                            seq,
                        },
                    );
                    counters.acked_at.push(Instant::now());
                }
                Ok(Err(e)) => {
                    // A create whose answer was lost may have been applied: update from now on.
                    if e.code() == Some(409) && !created.contains(&name) {
                        created.insert(name.clone());
                    }
                    counters.failed += 1;
                }
                Err(_) => counters.failed += 1,
            }
        }
        drop(guard);
        // Pacing, not synchronisation: the load is a steady trickle, not a flood.
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PACE) => {}
        }
    }
}
