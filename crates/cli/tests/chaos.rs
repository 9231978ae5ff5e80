//! Chaos with real processes (issue 14, part 5): 3 etcd members, 3 `meridian server`
//! processes behind a load balancer, 3 real `meridian agent` processes, and a client
//! writing continuously. One round of each fault, each followed by the invariants: no
//! acknowledged write lost, no instance slot with two live allocations, no node
//! over-committed, `meridian audit verify` passes, and a new leader's controllers place
//! new work. The estate and the faults are in `support/chaos/`; the checks themselves
//! in `testkit::invariants`.
//!
//! Needs root, etcd (Debian etcd-server) and etcdctl (etcd-client), iptables and a
//! cgroup2 hierarchy; fails saying which is missing. `scripts/bench-chaos` runs the
//! ignored `chaos_benchmark` below: many rounds of each fault, with figures.

#[path = "support/chaos/mod.rs"]
mod chaos;

use chaos::{Estate, Fault, Outcome};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

/// Environment variable: rounds of each fault in `chaos_benchmark` (default 10).
const ROUNDS_ENV: &str = "MERIDIAN_CHAOS_ROUNDS";

fn assert_clean(outcome: &Outcome) {
    let c = &outcome.checked;
    assert!(
        c.clean(),
        "after \"{}\" ({}): lost writes {:?}; duplicated instances {:?}; over-committed \
         nodes {:?}; leaders {:?}; audit verify: {:?}",
        outcome.fault,
        outcome.note,
        c.lost,
        c.duplicated,
        c.overcommitted,
        c.leaders,
        c.audit
    );
    assert!(c.acknowledged_objects > 0, "the writer wrote nothing");
}

#[test]
fn every_fault_keeps_the_invariants_and_the_controllers_resume() {
    let mut estate = Estate::start(BIN);
    let mut outcomes = Vec::new();
    for fault in Fault::ALL {
        let outcome = estate.round(fault);
        eprintln!("{fault}: {outcome:?}");
        assert_clean(&outcome);
        outcomes.push(outcome);
    }
    eprint!("{}", chaos::faults::table(&outcomes));
}

#[test]
#[ignore = "a benchmark: scripts/bench-chaos (MERIDIAN_CHAOS_ROUNDS rounds of each fault)"]
fn chaos_benchmark() {
    let rounds: usize = std::env::var(ROUNDS_ENV)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{ROUNDS_ENV}={v} is not a number"))
        })
        .unwrap_or(10);
    let mut estate = Estate::start(BIN);
    let mut outcomes = Vec::new();
    for round in 1..=rounds {
        for fault in Fault::ALL {
            let outcome = estate.round(fault);
            eprintln!(
                "round {round} {fault}: leader {:.2?}, placed {:.2?}, write gap {:.2?}, {} acked, clean {}; {}",
                outcome.new_leader,
                outcome.recovered,
                outcome.write_gap,
                outcome.acknowledged,
                outcome.checked.clean(),
                outcome.note
            );
            outcomes.push(outcome);
        }
    }
    println!("{}", chaos::faults::table(&outcomes));
    for outcome in &outcomes {
        assert_clean(outcome);
    }
}
