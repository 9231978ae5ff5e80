//! Secrets for a task: which it references, fetching them for its allocation
//! (`GET /meridian/v1/namespaces/{ns}/allocations/{name}/secrets` with the node
//! credential: the server answers only for allocations on this node, and only the keys
//! the task names), resolving `env[].valueFrom.secretRef`, and the files of
//! `task.secrets` (`<alloc dir>/secrets/<secret>/<key>`, mode 0400, directories 0500,
//! owned by the task's user).
//!
//! Values live in memory while a task starts and in the secret files; never in
//! `state.json`, logs, events or error messages ([`Missing`] names the secret and key,
//! [`Value`]'s `Debug` hides the bytes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use api::kinds::Task;
use api::secret::AllocationSecrets;
use base64::Engine as _;

/// A secret key a task needs that the server did not send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secret {secret} key {key} in project {project}: not found")]
pub struct Missing {
    pub secret: String,
    pub key: String,
    pub project: String,
}

/// Why the secrets of a task cannot be used (no value in any message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Not there (yet): the allocation waits.
    #[error(transparent)]
    Missing(#[from] Missing),
    /// There, but unusable as asked: the allocation fails.
    #[error("{0}")]
    Invalid(String),
}

/// Bytes of a secret value; `Debug` shows the length only.
#[derive(Clone, PartialEq, Eq)]
pub struct Value(pub Vec<u8>);

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Value({} bytes)", self.0.len())
    }
}

/// One file to write: `<secrets dir>/<secret>/<key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub secret: String,
    pub key: String,
    pub value: Value,
}

/// Whether the task references any secret (and the agent must fetch before starting it).
pub fn needed(task: &Task) -> bool {
    !task.secrets.is_empty() || task.env.values().any(|v| v.secret_ref().is_some())
}

/// The API path of an allocation's secrets.
pub fn path(project: &str, allocation: &str) -> String {
    format!("/meridian/v1/namespaces/{project}/allocations/{allocation}/secrets")
}

fn value(
    secrets: &AllocationSecrets,
    project: &str,
    secret: &str,
    key: &str,
) -> Result<Value, SecretError> {
    let encoded = secrets
        .secrets
        .get(secret)
        .and_then(|keys| keys.get(key))
        .ok_or_else(|| Missing {
            secret: secret.to_owned(),
            key: key.to_owned(),
            project: project.to_owned(),
        })?;
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map(Value)
        .map_err(|_| {
            SecretError::Invalid(format!(
                "secret {secret} key {key}: the server sent a value that is not base64"
            ))
        })
}

/// The task's environment variables that reference secrets, resolved.
pub fn env(
    task: &Task,
    project: &str,
    secrets: &AllocationSecrets,
) -> Result<BTreeMap<String, String>, SecretError> {
    let mut out = BTreeMap::new();
    for (name, v) in &task.env {
        let Some(r) = v.secret_ref() else { continue };
        let bytes = value(secrets, project, &r.name, &r.key)?;
        let text = String::from_utf8(bytes.0).map_err(|_| {
            SecretError::Invalid(format!(
                "env {name}: secret {} key {} is not UTF-8 text; deliver it as a file (task.secrets)",
                r.name, r.key
            ))
        })?;
        if text.contains('\0') {
            return Err(SecretError::Invalid(format!(
                "env {name}: secret {} key {} holds a NUL byte, which no environment variable can; deliver it as a file (task.secrets)",
                r.name, r.key
            )));
        }
        out.insert(name.clone(), text);
    }
    Ok(out)
}

/// A secret or key name used as a file name: one path component, not `.` or `..`.
fn component(what: &str, name: &str) -> Result<(), SecretError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(SecretError::Invalid(format!(
            "{what} {name:?} cannot be a file name"
        )));
    }
    Ok(())
}

/// The files of `task.secrets`: the listed keys, or every key the server sent.
pub fn files(
    task: &Task,
    project: &str,
    secrets: &AllocationSecrets,
) -> Result<Vec<File>, SecretError> {
    let mut out = Vec::new();
    for s in &task.secrets {
        component("secret", &s.name)?;
        let keys: Vec<String> = if s.keys.is_empty() {
            let all: Vec<String> = secrets
                .secrets
                .get(&s.name)
                .map(|k| k.keys().cloned().collect())
                .unwrap_or_default();
            if all.is_empty() {
                return Err(SecretError::Missing(Missing {
                    secret: s.name.clone(),
                    key: "(any)".into(),
                    project: project.to_owned(),
                }));
            }
            all
        } else {
            s.keys.clone()
        };
        for key in keys {
            component("key", &key)?;
            let value = value(secrets, project, &s.name, &key)?;
            out.push(File {
                secret: s.name.clone(),
                key,
                value,
            });
        }
    }
    Ok(out)
}

/// Writes `files` under `dir` (replacing what an earlier start wrote): files 0400,
/// directories 0500, owned by `owner` (uid, gid) when given.
pub fn write(dir: &Path, files: &[File], owner: Option<(u32, u32)>) -> std::io::Result<()> {
    remove(dir)?;
    std::fs::create_dir_all(dir)?;
    let mut dirs: Vec<PathBuf> = vec![dir.to_path_buf()];
    for f in files {
        let sub = dir.join(&f.secret);
        if !dirs.contains(&sub) {
            std::fs::create_dir_all(&sub)?;
            dirs.push(sub.clone());
        }
        let path = sub.join(&f.key);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o400);
        let mut file = opts.open(&path)?;
        std::io::Write::write_all(&mut file, &f.value.0)?;
        #[cfg(unix)]
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
    }
    // Directories last: 0500 would stop the writes above for a non-root agent.
    #[cfg(unix)]
    for d in dirs.iter().rev() {
        use std::os::unix::fs::PermissionsExt;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(d, Some(uid), Some(gid))?;
        }
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o500))?;
    }
    #[cfg(not(unix))]
    let _ = (owner, dirs);
    Ok(())
}

/// Removes the secret files of an allocation (when its task is gone for good, and before
/// writing them again).
pub fn remove(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    // 0500 directories: make them writable again first (a non-root agent needs it).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700));
            if let Ok(entries) = std::fs::read_dir(&d) {
                stack.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
        }
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::task::{EnvValue, SecretFiles};

    fn task() -> Task {
        let mut t: Task = serde_json::from_value(serde_json::json!({
            "driver": "exec", "command": ["true"], "resources": {"cpu": "100m", "memory": "16Mi"}
        }))
        .unwrap();
        t.env.insert("PLAIN".into(), EnvValue::from("x"));
        t.env.insert(
            "DB_PASSWORD".into(),
            EnvValue::secret("payroll-db", "password"),
        );
        t.secrets.push(SecretFiles {
            name: "tls".into(),
            keys: vec![],
        });
        t
    }

    fn answer(v: serde_json::Value) -> AllocationSecrets {
        serde_json::from_value(serde_json::json!({ "secrets": v })).unwrap()
    }

    #[test]
    fn env_and_files_resolve_from_the_answer() {
        let t = task();
        assert!(needed(&t));
        let s = answer(serde_json::json!({
            "payroll-db": {"password": "aHVudGVyMg=="},
            "tls": {"cert.pem": "Q0VSVA==", "key.pem": "S0VZ"},
        }));
        let env = env(&t, "finance", &s).unwrap();
        assert_eq!(env.len(), 1);
        assert_eq!(env["DB_PASSWORD"], "hunter2");
        let files = files(&t, "finance", &s).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| format!("{}/{}", f.secret, f.key))
            .collect();
        assert_eq!(names, ["tls/cert.pem", "tls/key.pem"]);
        assert_eq!(format!("{:?}", files[0].value), "Value(4 bytes)");
    }

    #[test]
    fn a_missing_key_names_secret_key_and_project_never_a_value() {
        let t = task();
        let s = answer(serde_json::json!({"payroll-db": {"user": "YWRtaW4="}}));
        let e = env(&t, "finance", &s).unwrap_err();
        assert_eq!(
            e.to_string(),
            "secret payroll-db key password in project finance: not found"
        );
        assert!(matches!(e, SecretError::Missing(_)));
        let e = files(&t, "finance", &s).unwrap_err();
        assert!(e.to_string().contains("secret tls key (any)"), "{e}");
    }

    #[test]
    fn bad_values_and_names_are_refused_without_the_value() {
        let mut t = task();
        let s = answer(serde_json::json!({"payroll-db": {"password": "//79"}}));
        let e = env(&t, "finance", &s).unwrap_err().to_string();
        assert!(e.contains("not UTF-8"), "{e}");
        t.secrets[0].name = "..".into();
        let s = answer(serde_json::json!({"..": {"k": "eA=="}}));
        assert!(
            files(&t, "p", &s)
                .unwrap_err()
                .to_string()
                .contains("cannot be a file name")
        );
    }

    #[test]
    fn files_are_written_read_only_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets");
        let f = |k: &str| File {
            secret: "tls".into(),
            key: k.into(),
            value: Value(b"v".to_vec()),
        };
        write(&secrets, &[f("a"), f("b")], None).unwrap();
        // Written again on a restart: replaced, not refused.
        write(&secrets, &[f("a")], None).unwrap();
        assert_eq!(std::fs::read(secrets.join("tls/a")).unwrap(), b"v");
        assert!(!secrets.join("tls/b").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&secrets.join("tls/a")), 0o400);
            assert_eq!(mode(&secrets.join("tls")), 0o500);
        }
        remove(&secrets).unwrap();
        assert!(!secrets.exists());
    }
}
