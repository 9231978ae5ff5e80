//! Cutting one process group off from some TCP ports in both directions, with
//! `iptables`: packets vanish (no reset, no ICMP), as when a cable or a switch fails.
//! Established connections hang and new ones never complete, while the process itself
//! keeps running and serving everyone else. The chaos tests cut a server off from its
//! etcd cluster this way, while the other servers reach the same members on the same
//! loopback addresses.
//!
//! Three rules, because the cgroup match (`-m cgroup --path`) only sees the packets a
//! group's sockets send: a `mangle` rule marks the connections those packets belong to
//! (`CONNMARK`), an OUTPUT rule drops them, and an INPUT rule drops what arrives on a
//! marked connection. An established connection is marked by the first packet the process
//! sends on it after the cut (an acknowledgement at the latest), so at most one segment
//! the peer sent before that gets through.
//!
//! Needs root and `iptables` (Debian: `apt-get install iptables`); [`NetCut::cut`] panics
//! naming what is missing. The rules are removed by [`NetCut::heal`] or on drop.

use std::process::Command;

use crate::Cgroup;

/// DROP rules in force; healed (the rules deleted) on drop.
#[derive(Debug)]
pub struct NetCut {
    /// (table, rule without the action), in the order they were inserted.
    rules: Vec<(&'static str, Vec<String>)>,
    healed: bool,
}

impl NetCut {
    /// Cuts `group` off from `ports` (on any address): what its sockets send there is
    /// dropped, and what arrives on those connections too. `mark` tags the connections
    /// (`CONNMARK`); it must be unique among the cuts in force on the machine.
    /// Panics if iptables is missing or refuses a rule (the rules inserted so far are
    /// removed first).
    pub fn cut(group: &Cgroup, ports: &[u16], mark: u32) -> Self {
        assert!(!ports.is_empty(), "nothing to cut");
        let ports = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mark = format!("{mark:#x}");
        let owned = |words: &[&str]| words.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
        let outgoing = [
            "-p",
            "tcp",
            "-m",
            "cgroup",
            "--path",
            group.relative(),
            "-m",
            "multiport",
            "--dports",
            &ports,
        ];
        let mut tag = owned(&["OUTPUT"]);
        tag.extend(owned(&outgoing));
        tag.extend(owned(&["-j", "CONNMARK", "--set-mark", &mark]));
        let mut drop_out = owned(&["OUTPUT"]);
        drop_out.extend(owned(&outgoing));
        drop_out.extend(owned(&["-j", "DROP"]));
        let drop_in = owned(&[
            "INPUT", "-p", "tcp", "-m", "connmark", "--mark", &mark, "-j", "DROP",
        ]);
        let mut cut = Self {
            rules: Vec::new(),
            healed: false,
        };
        for (table, rule) in [("mangle", tag), ("filter", drop_out), ("filter", drop_in)] {
            if let Err(e) = iptables(table, "-I", &rule) {
                drop(cut);
                panic!("cannot cut {} off: {e}", group.relative());
            }
            cut.rules.push((table, rule));
        }
        cut
    }

    /// Deletes the rules: packets flow again (connections that timed out meanwhile are
    /// the processes' business).
    pub fn heal(mut self) {
        self.remove();
    }

    fn remove(&mut self) {
        if self.healed {
            return;
        }
        self.healed = true;
        for (table, rule) in self.rules.iter().rev() {
            if let Err(e) = iptables(table, "-D", rule) {
                // Drop cannot fail loudly; a rule left behind matches only this test's
                // cgroup and mark, which go with the test.
                eprintln!("warning: could not delete an iptables rule: {e}");
            }
        }
    }
}

impl Drop for NetCut {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Runs `iptables -w -t TABLE ACTION RULE…`; the error says what to install when it is
/// missing.
fn iptables(table: &str, action: &str, rule: &[String]) -> Result<(), String> {
    let out = Command::new("iptables")
        .args(["-w", "-t", table, action])
        .args(rule)
        .output()
        .map_err(|e| {
            format!(
                "iptables cannot be run ({e}): install it (apt-get install iptables); the \
                 chaos tests cut a server off from etcd with an iptables DROP rule, as root"
            )
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables -t {table} {action} {} failed ({}): {} (the chaos tests need root and \
             the xt_cgroup, xt_multiport and xt_connmark matches)",
            rule.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
