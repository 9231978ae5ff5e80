//! What a task sees: the [`Launch`] the runtime hands a driver, built from the allocation,
//! the agent's configuration ([`Context`]) and the secrets fetched for the allocation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use api::kinds::{Allocation, Task};

use crate::driver::Launch;

/// What the agent knows that shapes every task's view.
#[derive(Debug, Clone)]
pub struct Context {
    /// The agent's data directory (allocations live in `allocations/`).
    pub data_dir: PathBuf,
    /// The node's name.
    pub node: String,
}

impl Context {
    /// `DATA_DIR/allocations/{namespace}_{name}`: the allocation's directory (logs, the
    /// task directory, secret files).
    pub fn alloc_dir(&self, key: &str) -> PathBuf {
        self.data_dir
            .join("allocations")
            .join(key.replace('/', "_"))
    }

    /// What the task of `a` (whose key is `key`) sees.
    pub fn launch(&self, key: &str, a: &Allocation, task: &Task) -> Launch {
        let task_dir = self.alloc_dir(key).join("task");
        let mut env: BTreeMap<String, String> = task
            .env
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.literal()?.to_owned())))
            .collect();
        env.insert("MERIDIAN_ALLOCATION".into(), key.to_owned());
        env.insert("MERIDIAN_NODE".into(), self.node.clone());
        let working_dir = match &task.working_dir {
            Some(wd) => task_dir.join(wd),
            None => task_dir.clone(),
        };
        Launch {
            env,
            user: None,
            task_dir,
            working_dir,
            ports: a.spec.ports.clone(),
            volumes: Vec::new(),
            secrets_dir: None,
            rlimits: task.rlimits.clone().unwrap_or_default(),
        }
    }
}
