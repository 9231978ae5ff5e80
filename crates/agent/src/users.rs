//! Task accounts on Unix nodes: `task.user` resolved against the node's own user and group
//! database (`getpwnam_r`/`getgrnam_r` through nix, so NSS sources count), and the
//! default account [`api::task::DEFAULT_TASK_USER`], which an agent running as root
//! creates when it starts ([`ensure_default`]).
//!
//! Rules: a name must exist on the node; a numeric uid need not (its gid is then the
//! same number, never root's group); `user:group` sets the primary group and no
//! supplementary groups; a user without a group gets its passwd group and its
//! `/etc/group` memberships.

use std::ffi::CString;

use api::task::{Account, DEFAULT_TASK_USER, parse_user};
use nix::unistd::{Gid, Group, Uid, User};

use crate::driver::Identity;

/// Whether this process may switch users (it is root).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The agent's own account.
pub fn own() -> Identity {
    let uid = nix::unistd::geteuid();
    let gid = nix::unistd::getegid();
    Identity {
        name: User::from_uid(uid).ok().flatten().map(|u| u.name),
        uid: uid.as_raw(),
        gid: gid.as_raw(),
        groups: Vec::new(),
    }
}

/// `task.user` (`name`, `uid`, `name:group`, `uid:gid`) as ids on this node.
pub fn resolve(spec: &str) -> Result<Identity, String> {
    let parsed = parse_user(spec).map_err(|e| format!("task.user {spec:?}: {e}"))?;
    let lookup = |r: nix::Result<Option<User>>, what: &str| {
        r.map_err(|e| format!("task.user {spec:?}: cannot look up {what}: {e}"))
    };
    let (name, uid, mut gid) = match &parsed.user {
        Account::Name(n) => {
            let u = lookup(User::from_name(n), "the user")?.ok_or_else(|| {
                if n == DEFAULT_TASK_USER {
                    format!("the default task user {DEFAULT_TASK_USER} does not exist on this node: run the agent as root (it creates the account) or create it (useradd --system --no-create-home --shell /usr/sbin/nologin {DEFAULT_TASK_USER}), or set task.user")
                } else {
                    format!("task.user {spec:?}: no user {n} on this node")
                }
            })?;
            (Some(u.name), u.uid.as_raw(), u.gid.as_raw())
        }
        Account::Id(id) => match lookup(User::from_uid(Uid::from_raw(*id)), "the uid")? {
            Some(u) => (Some(u.name), *id, u.gid.as_raw()),
            None => (None, *id, *id),
        },
    };
    let groups = match &parsed.group {
        Some(g) => {
            gid = match g {
                Account::Id(id) => *id,
                Account::Name(n) => Group::from_name(n)
                    .map_err(|e| format!("task.user {spec:?}: cannot look up group {n}: {e}"))?
                    .ok_or_else(|| format!("task.user {spec:?}: no group {n} on this node"))?
                    .gid
                    .as_raw(),
            };
            Vec::new()
        }
        None => match &name {
            Some(n) => CString::new(n.as_str())
                .ok()
                .and_then(|c| nix::unistd::getgrouplist(&c, Gid::from_raw(gid)).ok())
                .map(|g| g.into_iter().map(Gid::as_raw).collect())
                .unwrap_or_default(),
            None => Vec::new(),
        },
    };
    Ok(Identity {
        name,
        uid,
        gid,
        groups,
    })
}

/// Creates the default task account when it is missing (as root): a system user without
/// a home or a login shell, with its own group. `Err` says why it could not.
pub fn ensure_default() -> Result<(), String> {
    if User::from_name(DEFAULT_TASK_USER).ok().flatten().is_some() {
        return Ok(());
    }
    if !is_root() {
        return Err(format!(
            "the agent is not root and cannot create the {DEFAULT_TASK_USER} account"
        ));
    }
    let out = std::process::Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--user-group",
            "--shell",
            "/usr/sbin/nologin",
            DEFAULT_TASK_USER,
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .map_err(|e| format!("cannot run useradd: {e}"))?;
    // Another agent may have created it meanwhile (exit 9: the name is taken).
    if out.status.success() || User::from_name(DEFAULT_TASK_USER).ok().flatten().is_some() {
        return Ok(());
    }
    Err(format!(
        "useradd {DEFAULT_TASK_USER} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_resolve() {
        let root = resolve("root").unwrap();
        assert_eq!(
            (root.uid, root.gid, root.name.as_deref()),
            (0, 0, Some("root"))
        );
        let n = resolve("65534:65534").unwrap();
        assert_eq!((n.uid, n.gid), (65534, 65534));
        assert!(n.groups.is_empty());
        // A uid without an entry keeps its own number as gid, never root's group.
        let free = resolve("4000123").unwrap();
        assert_eq!((free.uid, free.gid, free.name), (4000123, 4000123, None));
        assert!(
            resolve("no-such-user-here")
                .unwrap_err()
                .contains("no user no-such-user-here on this node")
        );
        assert!(
            resolve("root:no-such-group")
                .unwrap_err()
                .contains("no group no-such-group")
        );
    }
}
