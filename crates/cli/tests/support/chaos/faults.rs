//! The faults, one round each: inject it while the writer writes, measure how long until
//! the estate recovers, repair, settle and check ([`super::Estate::check`]).

use std::fmt;
use std::time::{Duration, Instant};

use testkit::{NetCut, wait_until};

use super::{Checked, Estate, SETTLE, writer};

/// How many instances the batch created just before the leader is killed has, and how
/// much cpu each asks for: little, so that it always fits beside the writer's instances,
/// but not below 10m, whose cgroup v1 quota (1,000 µs a period) is the kernel's least.
const BATCH: u64 = 12;
const BATCH_MILLIS: u64 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL of the leading server while its scheduler commits a batch.
    KillLeader,
    /// SIGKILL of etcd's raft leader, then its restart.
    KillEtcdMember,
    /// The leading server cut off from etcd (iptables DROP, both ways), then healed.
    CutLeaderFromEtcd,
    /// SIGKILL of every server and every etcd member, then all restarted.
    RestartEverything,
}

impl Fault {
    pub const ALL: [Fault; 4] = [
        Fault::KillLeader,
        Fault::KillEtcdMember,
        Fault::CutLeaderFromEtcd,
        Fault::RestartEverything,
    ];
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::KillLeader => "kill -9 leading server",
            Fault::KillEtcdMember => "kill -9 etcd leader member",
            Fault::CutLeaderFromEtcd => "cut leader off etcd",
            Fault::RestartEverything => "restart everything",
        })
    }
}

/// What one round measured and found.
#[derive(Debug)]
pub struct Outcome {
    pub fault: Fault,
    /// From the fault to a leader (another server, where the fault took the leader
    /// away) agreed by the running servers, with its controllers running.
    pub new_leader: Duration,
    /// Whether the leader after the fault is another server than before.
    pub leader_changed: bool,
    /// From the fault to new work placed and running (the probe).
    pub recovered: Duration,
    /// The longest time without an acknowledged write, from the fault until writes
    /// flowed again (through the balancer: whichever server answers).
    pub write_gap: Duration,
    /// Writes acknowledged during the round.
    pub acknowledged: u64,
    /// Something worth printing (how far the killed batch had got…).
    pub note: String,
    pub checked: Checked,
}

impl Estate {
    /// One round of `fault`: inject, recover, repair, settle, check.
    pub fn round(&mut self, fault: Fault) -> Outcome {
        self.round += 1;
        let acknowledged_before = self.acknowledged();
        // The writer writes before the fault, so the fault lands among its writes.
        self.wait_writes("writes before the fault", 3);
        let before = self.wait_leader("a leader before the fault");
        let mut note = String::new();
        let (start, new_leader) = match fault {
            Fault::KillLeader => self.kill_leader(&before, &mut note),
            Fault::KillEtcdMember => self.kill_etcd_member(&mut note),
            Fault::CutLeaderFromEtcd => self.cut_leader(&before, &mut note),
            Fault::RestartEverything => self.restart_everything(),
        };
        let after = self.wait_leader("a leader agreed by every running server");
        // Writes flow again through the balancer.
        self.wait_writes("writes acknowledged after the fault", 3);
        let write_gap = self.write_gap(start, Instant::now());
        let paused = self.pause_writer();
        self.wait_nodes_ready();
        let recovered = {
            self.probe();
            start.elapsed()
        };
        self.wait_converged();
        let mut checked = self.check();
        checked.leaders.append(&mut self.violations);
        if fault == Fault::KillLeader {
            self.delete_workload(&format!("batch-{}", self.round));
        }
        drop(paused);
        Outcome {
            fault,
            new_leader,
            leader_changed: after != before,
            recovered,
            write_gap,
            acknowledged: self.acknowledged() - acknowledged_before,
            note,
            checked,
        }
    }

    /// Creates a batch and kills the leader the moment the first of its allocations is
    /// committed (a watch event: the scheduler commits one transaction per node and then
    /// the workloads' statuses, so the kill lands inside the pass); restarts it once
    /// another server leads.
    fn kill_leader(&mut self, leader: &str, note: &mut String) -> (Instant, Duration) {
        let slot = self.slot_of(leader);
        let name = format!("batch-{}", self.round);
        let mut batch = writer::workload(&name, BATCH, BATCH_MILLIS, 0);
        batch["spec"]["placement"] = serde_json::json!({"strategy": "spread"});
        self.wait_first_allocation(slot, &batch);
        self.kill_server(slot);
        let start = Instant::now();
        let survivors = self.running();
        let new_leader = wait_until(SETTLE, "another server to lead", || {
            let l = self.agreed_leader(&survivors)?;
            if l == leader {
                Err(format!("{l} still named"))
            } else {
                Ok(l)
            }
        });
        let took = start.elapsed();
        let placed = self.allocations_of(survivors[0], &name).unwrap_or(0);
        *note = format!("{placed}/{BATCH} of the batch committed at the kill");
        eprintln!(
            "round {}: killed {leader}; {new_leader} leads after {took:?}; {note}",
            self.round
        );
        self.start_server(slot);
        (start, took)
    }

    /// Kills etcd's raft leader; measures until writes are acknowledged again; restarts
    /// it and waits until it serves.
    fn kill_etcd_member(&mut self, note: &mut String) -> (Instant, Duration) {
        let member = wait_until(SETTLE, "an etcd raft leader", || self.etcd_leader());
        self.cluster.kill(member);
        let start = Instant::now();
        let writes = self.wait_writes("writes acknowledged without the killed member", 1);
        let leader = self.wait_leader("a leader while a member is down");
        let took = start.elapsed();
        *note = format!(
            "member m{} killed; writes acknowledged again after {writes:?}",
            member + 1
        );
        eprintln!(
            "round {}: killed etcd m{}; {leader} leads; {note}",
            self.round,
            member + 1
        );
        self.cluster
            .restart(member)
            .unwrap_or_else(|e| panic!("cannot restart etcd m{}: {e}", member + 1));
        wait_until(SETTLE, "the restarted member to serve", || {
            self.member_healthy(member)
        });
        (start, took)
    }

    /// Cuts the leader off from every etcd member (both directions); waits until another
    /// server leads and the balancer stopped sending it traffic; heals; waits until it
    /// serves again.
    fn cut_leader(&mut self, leader: &str, note: &mut String) -> (Instant, Duration) {
        let slot = self.slot_of(leader);
        let mark = 0x4d00_0000 | ((std::process::id() & 0xffff) << 8) | (self.round as u32 & 0xff);
        let cut = NetCut::cut(self.cgroup(slot), &self.etcd_ports(), mark);
        let start = Instant::now();
        let others: Vec<usize> = self.running().into_iter().filter(|&s| s != slot).collect();
        let new_leader = wait_until(SETTLE, "a server that reaches etcd to lead", || {
            let l = self.agreed_leader(&others)?;
            if l == leader {
                Err(format!("{l} still named"))
            } else {
                Ok(l)
            }
        });
        let took = start.elapsed();
        // One leader at a time: the cut server cannot renew its session, so it must have
        // stopped its controllers before its lease could expire and another take over.
        let old_leads = self.leads(slot);
        wait_until(
            SETTLE,
            "the balancer to stop sending to the cut server",
            || !self.balanced().contains(&slot),
        );
        // New work is placed while the old leader is still cut off: the fence holds
        // whatever it had in flight.
        self.probe();
        let cut_for = start.elapsed();
        cut.heal();
        let healed = Instant::now();
        wait_until(
            SETTLE,
            "the healed server to follow the new leader",
            || match self.leader_seen_by(slot)? {
                Some(l) if l != leader => Ok(()),
                seen => Err(format!("it names {seen:?}")),
            },
        );
        wait_until(
            SETTLE,
            "the balancer to send to the healed server again",
            || self.balanced().contains(&slot),
        );
        *note = format!(
            "cut for {cut_for:.1?}; back in the balancer {:.1?} after the heal",
            healed.elapsed()
        );
        if old_leads != Ok(false) {
            self.violations.push(format!(
                "two leaders: {leader}, cut off from etcd, still ran its controllers \
                 ({old_leads:?}) when {new_leader} took over"
            ));
        }
        eprintln!(
            "round {}: cut {leader} off etcd; {new_leader} leads after {took:?}; {note}",
            self.round
        );
        (start, took)
    }

    /// SIGKILL of every server and every member; members restarted on their data, then
    /// the servers one after the other.
    fn restart_everything(&mut self) -> (Instant, Duration) {
        for slot in 0..self.slots.len() {
            self.kill_server(slot);
        }
        for member in 0..super::MEMBERS {
            self.cluster.kill(member);
        }
        let start = Instant::now();
        for member in 0..super::MEMBERS {
            self.cluster
                .restart(member)
                .unwrap_or_else(|e| panic!("cannot restart etcd m{}: {e}", member + 1));
        }
        for slot in 0..self.slots.len() {
            self.start_server(slot);
        }
        let leader = self.wait_leader("a leader after the restart");
        let took = start.elapsed();
        eprintln!(
            "round {}: restarted everything; {leader} leads after {took:?}",
            self.round
        );
        (start, took)
    }
}

/// Nearest-rank percentile of `values` (sorted here), `p` in 0..=100.
pub fn percentile(values: &[Duration], p: usize) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// The benchmark's table: per fault, rounds, time to a leader and to recovery (p50,
/// max), writes acknowledged and the invariant violations.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "{:<28} {:>6} {:>18} {:>18} {:>18} {:>8} {:>6} {:>6} {:>6} {:>8} {:>6} {:>8}\n",
        "fault",
        "rounds",
        "leader p50/max s",
        "placed p50/max s",
        "write gap p50/max",
        "acked",
        "lost",
        "dups",
        "overc",
        "2leaders",
        "audit",
        "changed"
    );
    for fault in Fault::ALL {
        let mine: Vec<&Outcome> = outcomes.iter().filter(|o| o.fault == fault).collect();
        if mine.is_empty() {
            continue;
        }
        let leader: Vec<Duration> = mine.iter().map(|o| o.new_leader).collect();
        let placed: Vec<Duration> = mine.iter().map(|o| o.recovered).collect();
        let gaps: Vec<Duration> = mine.iter().map(|o| o.write_gap).collect();
        let pair = |v: &[Duration]| {
            format!(
                "{:.2} / {:.2}",
                percentile(v, 50).as_secs_f64(),
                percentile(v, 100).as_secs_f64()
            )
        };
        out.push_str(&format!(
            "{:<28} {:>6} {:>18} {:>18} {:>18} {:>8} {:>6} {:>6} {:>6} {:>8} {:>6} {:>8}\n",
            fault.to_string(),
            mine.len(),
            pair(&leader),
            pair(&placed),
            pair(&gaps),
            mine.iter().map(|o| o.acknowledged).sum::<u64>(),
            mine.iter().map(|o| o.checked.lost.len()).sum::<usize>(),
            mine.iter()
                .map(|o| o.checked.duplicated.len())
                .sum::<usize>(),
            mine.iter()
                .map(|o| o.checked.overcommitted.len())
                .sum::<usize>(),
            mine.iter().map(|o| o.checked.leaders.len()).sum::<usize>(),
            mine.iter().filter(|o| o.checked.audit.is_some()).count(),
            mine.iter().filter(|o| o.leader_changed).count(),
        ));
    }
    out
}
