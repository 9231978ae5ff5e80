//! What a task sees: the [`Launch`] the runtime hands a driver, built from the allocation,
//! the agent's configuration ([`Context`]) and the secrets fetched for the allocation.
//!
//! The environment contract (documented for users in `docs/tasks.md`): the task's `env`
//! (literal values and resolved secret references), then these, which the agent sets and
//! a task cannot override:
//!
//! | variable | value |
//! |---|---|
//! | `MERIDIAN_ALLOCATION` | `project/name` of the allocation |
//! | `MERIDIAN_NAMESPACE` | the project |
//! | `MERIDIAN_WORKLOAD` | the workload's name |
//! | `MERIDIAN_NODE` | the node's name |
//! | `MERIDIAN_ALLOC_DIR` | the allocation's directory (logs) |
//! | `MERIDIAN_TASK_DIR` | the task's own directory (default working directory, `HOME`) |
//! | `MERIDIAN_PORT_<NAME>` | host port of each named port (`http-alt` → `HTTP_ALT`) |
//! | `MERIDIAN_SECRETS_DIR` | where secret files are, when the task has some |
//! | `NVIDIA_VISIBLE_DEVICES` | the node's GPU devices the allocation holds (`0,3`), when it holds some |
//! | `CUDA_VISIBLE_DEVICES` | the same, except for the container driver (inside a container the runtime renumbers the visible devices from 0) |
//! | `MERIDIAN_GPU_SHARE` | the share of its one device a fractional GPU request holds (`0.25`) |
//!
//! and, unless the task's `env` sets them, `PATH` ([`DEFAULT_PATH`]), `HOME` (the task
//! directory), `USER` and `LOGNAME` (the task user's name, when it has one). Nothing of the
//! agent's own environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use api::kinds::{Allocation, Driver as DriverKind, Task};
use api::secret::AllocationSecrets;

use crate::driver::{BoundVolume, Identity, Launch};
use crate::secrets;

/// `PATH` of a task whose `env` does not set one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A host volume the node offers (`meridian agent --volume NAME=PATH[:ro]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeVolume {
    pub path: PathBuf,
    pub read_only: bool,
}

/// What the agent knows that shapes every task's view.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The agent's data directory (allocations live in `allocations/`).
    pub data_dir: PathBuf,
    /// The node's name.
    pub node: String,
    /// The node's host volumes by name.
    pub volumes: BTreeMap<String, NodeVolume>,
    /// Whether the agent may run tasks as other users (it is root on Unix).
    pub switch_users: bool,
}

/// A task's view, and what the agent should say about it.
#[derive(Debug)]
pub struct View {
    pub launch: Launch,
    /// Secret files to write into `launch.secrets_dir` before the start.
    pub files: Vec<secrets::File>,
    /// For the allocation's status message (a user that could not be switched to, a
    /// volume the user cannot write).
    pub notes: Vec<String>,
}

/// Why a task cannot start here.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// A secret is not there (yet): the allocation waits.
    #[error("waiting for {0}")]
    Waiting(secrets::Missing),
    /// Anything else: the allocation fails with this message.
    #[error("{0}")]
    Refused(String),
}

impl From<secrets::SecretError> for ViewError {
    fn from(e: secrets::SecretError) -> Self {
        match e {
            secrets::SecretError::Missing(m) => ViewError::Waiting(m),
            secrets::SecretError::Invalid(m) => ViewError::Refused(m),
        }
    }
}

/// `MERIDIAN_PORT_<NAME>` for a port name: upper case, `-` as `_`.
pub fn port_variable(name: &str) -> String {
    format!(
        "MERIDIAN_PORT_{}",
        name.to_ascii_uppercase().replace(['-', '.'], "_")
    )
}

impl Context {
    /// `DATA_DIR/allocations/{namespace}_{name}`: the allocation's directory (logs, the
    /// task directory, secret files).
    pub fn alloc_dir(&self, key: &str) -> PathBuf {
        self.data_dir
            .join("allocations")
            .join(key.replace('/', "_"))
    }

    /// What the task of `a` (whose key is `key`) sees. `secrets`: what the server sent
    /// for the allocation (`None`: the task references none, or, for a task adopted after
    /// an agent restart, they are not fetched again and secret variables are left out).
    /// Reads the user database and the filesystem; writes nothing.
    pub fn launch(
        &self,
        key: &str,
        a: &Allocation,
        task: &Task,
        secrets: Option<&AllocationSecrets>,
    ) -> Result<View, ViewError> {
        let project = a.metadata.namespace.as_deref().unwrap_or_default();
        let alloc_dir = self.alloc_dir(key);
        let task_dir = alloc_dir.join("task");
        let mut notes = Vec::new();
        let user = self.user(task, &mut notes)?;

        let mut env = BTreeMap::new();
        env.insert("PATH".to_owned(), DEFAULT_PATH.to_owned());
        env.insert("HOME".to_owned(), task_dir.display().to_string());
        if let Some(name) = user.as_ref().and_then(|u| u.name.clone()) {
            env.insert("USER".to_owned(), name.clone());
            env.insert("LOGNAME".to_owned(), name);
        }
        env.extend(
            task.env
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.literal()?.to_owned()))),
        );
        let mut files = Vec::new();
        if let Some(s) = secrets {
            env.extend(secrets::env(task, project, s)?);
            files = secrets::files(task, project, s)?;
        }
        env.insert("MERIDIAN_ALLOCATION".into(), key.to_owned());
        env.insert("MERIDIAN_NAMESPACE".into(), project.to_owned());
        env.insert("MERIDIAN_WORKLOAD".into(), a.spec.workload.clone());
        env.insert("MERIDIAN_NODE".into(), self.node.clone());
        env.insert("MERIDIAN_ALLOC_DIR".into(), alloc_dir.display().to_string());
        env.insert("MERIDIAN_TASK_DIR".into(), task_dir.display().to_string());
        for p in &a.spec.ports {
            env.insert(port_variable(&p.name), p.port.to_string());
        }
        gpu_env(a, task, &mut env);
        let secrets_dir = (!task.secrets.is_empty()).then(|| alloc_dir.join("secrets"));
        if let Some(d) = &secrets_dir {
            env.insert("MERIDIAN_SECRETS_DIR".into(), d.display().to_string());
        }
        let working_dir = match &task.working_dir {
            Some(wd) => task_dir.join(wd),
            None => task_dir.clone(),
        };
        let volumes = self.volumes(task, user.as_ref(), &mut notes)?;
        Ok(View {
            launch: Launch {
                env,
                user,
                task_dir,
                working_dir,
                ports: a.spec.ports.clone(),
                volumes,
                secrets_dir,
                rlimits: task.rlimits.clone().unwrap_or_default(),
            },
            files,
            notes,
        })
    }

    /// The account of a host-process task: always for `exec` (default `meridian-task`),
    /// for `qemu` only when `task.user` names one; `None` for containers, whose user lives
    /// in the image (the driver reads `task.user`).
    #[cfg(unix)]
    fn user(&self, task: &Task, notes: &mut Vec<String>) -> Result<Option<Identity>, ViewError> {
        match task.driver {
            DriverKind::Exec => {}
            DriverKind::Qemu if task.user.is_some() => {}
            _ => return Ok(None),
        }
        let own = crate::users::own();
        if !self.switch_users {
            let who = match &own.name {
                Some(n) => format!("{n} (uid {})", own.uid),
                None => format!("uid {}", own.uid),
            };
            return match &task.user {
                Some(asked) => {
                    let wanted = crate::users::resolve(asked).map_err(ViewError::Refused)?;
                    if wanted.uid == own.uid {
                        Ok(Some(own))
                    } else {
                        Err(ViewError::Refused(format!(
                            "task.user {asked:?}: this agent runs as {who}, not root, and cannot run tasks as another user; run the agent as root, or remove task.user"
                        )))
                    }
                }
                None => {
                    notes.push(format!(
                        "runs as the agent's user {who}: the agent is not root and cannot switch to {}",
                        api::task::DEFAULT_TASK_USER
                    ));
                    Ok(Some(own))
                }
            };
        }
        let asked = task.user.as_deref().unwrap_or(api::task::DEFAULT_TASK_USER);
        crate::users::resolve(asked)
            .map(Some)
            .map_err(ViewError::Refused)
    }

    #[cfg(not(unix))]
    fn user(&self, _: &Task, _: &mut Vec<String>) -> Result<Option<Identity>, ViewError> {
        let _ = (self.switch_users, DriverKind::Exec);
        Ok(None)
    }

    /// The task's volumes bound to the node's: by name, read-only if either says so. A
    /// relative `mountPath` is under the task directory; an absolute one must be an
    /// existing directory on the node (`exec` binds over it).
    fn volumes(
        &self,
        task: &Task,
        user: Option<&Identity>,
        notes: &mut Vec<String>,
    ) -> Result<Vec<BoundVolume>, ViewError> {
        let mut out = Vec::new();
        for (i, v) in task.volumes.iter().enumerate() {
            let Some(node) = self.volumes.get(&v.name) else {
                let offered: Vec<&str> = self.volumes.keys().map(String::as_str).collect();
                return Err(ViewError::Refused(format!(
                    "task.volumes[{i}]: node {} has no volume {:?} (it offers: {}); start the agent with --volume {}=PATH",
                    self.node,
                    v.name,
                    if offered.is_empty() {
                        "none".to_owned()
                    } else {
                        offered.join(", ")
                    },
                    v.name
                )));
            };
            let read_only = v.read_only || node.read_only;
            if task.driver == DriverKind::Exec {
                if cfg!(not(target_os = "linux")) {
                    return Err(ViewError::Refused(format!(
                        "task.volumes[{i}]: exec tasks mount volumes on Linux nodes only"
                    )));
                }
                let target = Path::new(&v.mount_path);
                if target.is_absolute() && !target.is_dir() {
                    return Err(ViewError::Refused(format!(
                        "task.volumes[{i}].mountPath {}: no such directory on node {}; an exec task's volume is mounted over an existing directory (or use a relative path, under the task directory)",
                        v.mount_path, self.node
                    )));
                }
                if let Some(u) = user
                    && let Some(problem) = access_problem(&node.path, u, !read_only)
                {
                    notes.push(format!("volume {}: {problem}", v.name));
                }
            }
            out.push(BoundVolume {
                name: v.name.clone(),
                host_path: node.path.clone(),
                mount_path: v.mount_path.clone(),
                read_only,
            });
        }
        Ok(out)
    }
}

/// Whether `u` lacks read (and, if `write`, write) access to the directory `path` by its
/// owner, group and mode bits (no ACLs). The agent does not change host volumes: it says.
#[cfg(unix)]
fn access_problem(path: &Path, u: &Identity, write: bool) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if u.uid == 0 {
        return None;
    }
    let m = std::fs::metadata(path).ok()?;
    let mode = m.mode();
    let bits = if m.uid() == u.uid {
        (mode >> 6) & 7
    } else if m.gid() == u.gid || u.groups.contains(&m.gid()) {
        (mode >> 3) & 7
    } else {
        mode & 7
    };
    let need = if write { 0o7 } else { 0o5 };
    (bits & need != need).then(|| {
        format!(
            "uid {} cannot {} {} (owner {}:{}, mode {:o}); the agent does not change host volumes: chown or chmod it on the node",
            u.uid,
            if write { "write to" } else { "read" },
            path.display(),
            m.uid(),
            m.gid(),
            mode & 0o7777
        )
    })
}

#[cfg(not(unix))]
fn access_problem(_: &Path, _: &Identity, _: bool) -> Option<String> {
    None
}

/// Prepares the node side of a view before the driver starts the task: the task
/// directory (created, owned by the task's user, kept across restarts), relative volume
/// mount points, and the secret files.
pub fn prepare(view: &View) -> std::io::Result<()> {
    let l = &view.launch;
    std::fs::create_dir_all(&l.task_dir)?;
    let owner = l.user.as_ref().map(|u| (u.uid, u.gid));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&l.task_dir, Some(uid), Some(gid))?;
        }
        std::fs::set_permissions(&l.task_dir, std::fs::Permissions::from_mode(0o750))?;
        // The task's user must be able to reach its directory (and secret files) inside
        // the agent's: search, not read, on the allocation directory, `allocations/` and
        // the data directory (which holds the credential, mode 0600).
        for dir in l.task_dir.ancestors().skip(1).take(3) {
            let mode = std::fs::metadata(dir)?.permissions().mode();
            if mode & 0o111 != 0o111 {
                std::fs::set_permissions(
                    dir,
                    std::fs::Permissions::from_mode((mode & 0o7777) | 0o711),
                )?;
            }
        }
    }
    // A relative working directory and relative mount points, inside the task directory.
    let mut inside: Vec<PathBuf> = l
        .volumes
        .iter()
        .filter(|v| Path::new(&v.mount_path).is_relative())
        .map(|v| l.task_dir.join(&v.mount_path))
        .collect();
    if l.working_dir != l.task_dir && l.working_dir.starts_with(&l.task_dir) {
        inside.push(l.working_dir.clone());
    }
    for d in inside {
        if !d.exists() {
            std::fs::create_dir_all(&d)?;
            #[cfg(unix)]
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&d, Some(uid), Some(gid))?;
            }
        }
    }
    if let Some(dir) = &l.secrets_dir {
        secrets::write(dir, &view.files, owner)?;
    }
    Ok(())
}

/// The GPU devices the scheduler gave the allocation (`resources.gpu.devices`), so CUDA
/// sees those and no others, and a share's size.
fn gpu_env(a: &Allocation, task: &Task, env: &mut BTreeMap<String, String>) {
    let Some(g) = a
        .spec
        .resources
        .gpu
        .as_ref()
        .filter(|g| !g.devices.is_empty())
    else {
        return;
    };
    let list = g
        .devices
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    if task.driver != DriverKind::Container {
        env.insert("CUDA_VISIBLE_DEVICES".into(), list.clone());
    }
    env.insert("NVIDIA_VISIBLE_DEVICES".into(), list);
    if g.count.is_fraction() {
        env.insert("MERIDIAN_GPU_SHARE".into(), g.count.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(task: serde_json::Value) -> (Allocation, Task) {
        let a: Allocation = serde_json::from_value(serde_json::json!({
            "apiVersion": "meridian.dev/v1", "kind": "Allocation",
            "metadata": {"name": "web-0", "namespace": "shop"},
            "spec": {"workload": "web", "replica": 0, "node": "n1", "desiredState": "run",
                     "resources": {"cpu": "100m", "memory": "16Mi"},
                     "ports": [{"name": "http-alt", "port": 20001, "target": 20001}],
                     "task": task},
        }))
        .unwrap();
        let t = *a.spec.task.clone().unwrap();
        (a, t)
    }

    fn ctx() -> Context {
        Context {
            data_dir: PathBuf::from("/var/lib/m"),
            node: "n1".into(),
            volumes: BTreeMap::from([(
                "data".to_owned(),
                NodeVolume {
                    path: PathBuf::from("/srv/data"),
                    read_only: true,
                },
            )]),
            switch_users: false,
        }
    }

    #[test]
    fn the_environment_is_the_tasks_plus_meridians() {
        let (a, t) = alloc(serde_json::json!({
            "driver": "exec", "command": ["true"], "resources": {"cpu": "100m", "memory": "16Mi"},
            "env": {"GREETING": "hi", "MERIDIAN_NODE": "spoofed", "PATH": "/opt/bin"},
            "volumes": [{"name": "data", "mountPath": "data"}],
        }));
        let v = ctx().launch("shop/web-0", &a, &t, None).unwrap();
        let env = &v.launch.env;
        assert_eq!(env["GREETING"], "hi");
        assert_eq!(env["PATH"], "/opt/bin", "the task's PATH wins");
        assert_eq!(env["MERIDIAN_NODE"], "n1", "the agent's MERIDIAN_* win");
        assert_eq!(env["MERIDIAN_PORT_HTTP_ALT"], "20001");
        assert_eq!(env["MERIDIAN_NAMESPACE"], "shop");
        assert_eq!(env["MERIDIAN_WORKLOAD"], "web");
        assert_eq!(env["HOME"], "/var/lib/m/allocations/shop_web-0/task");
        assert_eq!(v.launch.working_dir, v.launch.task_dir);
        assert!(!env.contains_key("MERIDIAN_SECRETS_DIR"));
        assert!(v.launch.volumes[0].read_only, "the node's :ro wins");
    }

    #[test]
    fn a_task_sees_the_gpu_devices_it_holds() {
        let (mut a, t) = alloc(serde_json::json!({
            "driver": "exec", "command": ["true"], "resources": {"cpu": "100m", "memory": "16Mi"},
            "env": {"CUDA_VISIBLE_DEVICES": "0,1,2,3"},
        }));
        a.spec.resources.gpu = Some(
            serde_json::from_value(
                serde_json::json!({"count": 0.25, "model": "L4", "devices": [3]}),
            )
            .unwrap(),
        );
        let v = ctx().launch("shop/web-0", &a, &t, None).unwrap();
        let env = &v.launch.env;
        assert_eq!(
            env["CUDA_VISIBLE_DEVICES"], "3",
            "the task cannot widen its devices"
        );
        assert_eq!(env["NVIDIA_VISIBLE_DEVICES"], "3");
        assert_eq!(env["MERIDIAN_GPU_SHARE"], "0.25");
        a.spec.resources.gpu = Some(
            serde_json::from_value(serde_json::json!({"count": 2, "devices": [0, 1]})).unwrap(),
        );
        let v = ctx().launch("shop/web-0", &a, &t, None).unwrap();
        assert_eq!(v.launch.env["NVIDIA_VISIBLE_DEVICES"], "0,1");
        assert!(!v.launch.env.contains_key("MERIDIAN_GPU_SHARE"));
    }

    #[cfg(unix)]
    #[test]
    fn an_agent_that_cannot_switch_users_refuses_another_and_says_who_runs() {
        let own = crate::users::own();
        let other = if own.uid == 65534 { 65533 } else { 65534 };
        let (a, t) = alloc(serde_json::json!({
            "driver": "exec", "command": ["true"], "resources": {"cpu": "100m", "memory": "16Mi"},
            "user": other.to_string(),
        }));
        let e = ctx().launch("shop/web-0", &a, &t, None).unwrap_err();
        assert!(
            e.to_string().contains("cannot run tasks as another user"),
            "{e}"
        );
        let (a, t) = alloc(serde_json::json!({
            "driver": "exec", "command": ["true"], "resources": {"cpu": "100m", "memory": "16Mi"},
        }));
        let v = ctx().launch("shop/web-0", &a, &t, None).unwrap();
        assert_eq!(v.launch.user.as_ref().map(|u| u.uid), Some(own.uid));
        assert!(
            v.notes[0].starts_with("runs as the agent's user"),
            "{:?}",
            v.notes
        );
    }

    #[test]
    fn a_volume_the_node_lacks_is_refused_by_name() {
        let (a, t) = alloc(serde_json::json!({
            "driver": "exec", "command": ["true"], "resources": {"cpu": "100m", "memory": "16Mi"},
            "volumes": [{"name": "scratch", "mountPath": "s"}],
        }));
        let e = ctx().launch("shop/web-0", &a, &t, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "task.volumes[0]: node n1 has no volume \"scratch\" (it offers: data); start the agent with --volume scratch=PATH"
        );
    }

    #[test]
    fn missing_secrets_wait_and_say_which() {
        let (a, t) = alloc(serde_json::json!({
            "driver": "exec", "command": ["true"], "resources": {"cpu": "100m", "memory": "16Mi"},
            "env": [{"name": "PW", "valueFrom": {"secretRef": {"name": "payroll-db", "key": "password"}}}],
        }));
        let e = ctx()
            .launch("shop/web-0", &a, &t, Some(&AllocationSecrets::default()))
            .unwrap_err();
        assert!(matches!(e, ViewError::Waiting(_)));
        assert_eq!(
            e.to_string(),
            "waiting for secret payroll-db key password in project shop: not found"
        );
    }
}
