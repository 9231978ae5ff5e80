//! Reading a context of an existing kubeconfig (`$KUBECONFIG`, else `~/.kube/config`), so
//! that a platform engineer whose kubectl already points at Meridian needs no second
//! configuration. Only bearer-token users are supported; other kubeconfig fields are
//! ignored.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use base64::Engine;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
struct KubeConfig {
    #[serde(default, rename = "current-context")]
    current_context: Option<String>,
    #[serde(default)]
    contexts: Vec<Named<KubeContext>>,
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    users: Vec<Named<User>>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "context", alias = "cluster", alias = "user")]
    item: T,
}

#[derive(Debug, Deserialize)]
struct KubeContext {
    cluster: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Cluster {
    server: String,
    #[serde(default, rename = "certificate-authority")]
    certificate_authority: Option<PathBuf>,
    #[serde(default, rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct User {
    #[serde(default)]
    token: Option<String>,
}

/// What a kubeconfig context gives Meridian's client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeContextResolved {
    pub server: String,
    pub token: String,
    pub ca_pem: Option<Vec<u8>>,
    pub namespace: Option<String>,
}

/// The kubeconfig path kubectl would use (the first of `$KUBECONFIG`'s list).
pub fn path() -> Option<PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG") {
        return std::env::split_paths(&list).next();
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube").join("config"))
}

/// The named (or current) context of the kubeconfig at `path`, when it has a bearer token.
pub fn load(path: &Path, name: Option<&str>) -> Result<Option<KubeContextResolved>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let config: KubeConfig = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("the kubeconfig {} is not valid", path.display()))?;
    let Some(name) = name.map(str::to_owned).or(config.current_context) else {
        return Ok(None);
    };
    let Some(context) = config.contexts.iter().find(|c| c.name == name) else {
        return Ok(None);
    };
    let Some(cluster) = config
        .clusters
        .iter()
        .find(|c| c.name == context.item.cluster)
    else {
        return Ok(None);
    };
    let Some(token) = config
        .users
        .iter()
        .find(|u| u.name == context.item.user)
        .and_then(|u| u.item.token.clone())
    else {
        return Ok(None);
    };
    let ca_pem =
        match (
            &cluster.item.certificate_authority_data,
            &cluster.item.certificate_authority,
        ) {
            (Some(data), _) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .with_context(|| {
                        format!(
                            "{}: certificate-authority-data of cluster {} is not base64",
                            path.display(),
                            cluster.name
                        )
                    })?,
            ),
            (None, Some(file)) => {
                let file = if file.is_relative() {
                    path.parent().unwrap_or(Path::new(".")).join(file)
                } else {
                    file.clone()
                };
                Some(std::fs::read(&file).with_context(|| {
                    format!("cannot read certificate-authority {}", file.display())
                })?)
            }
            (None, None) => None,
        };
    Ok(Some(KubeContextResolved {
        server: cluster.item.server.clone(),
        token,
        ca_pem,
        namespace: context.item.namespace.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_current_context_with_inline_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config");
        let ca = base64::engine::general_purpose::STANDARD.encode("PEM");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: meridian\nclusters:\n- name: m\n  cluster:\n    server: https://m.example:7420\n    certificate-authority-data: {ca}\ncontexts:\n- name: meridian\n  context: {{cluster: m, user: admin, namespace: finance}}\n- name: other\n  context: {{cluster: m, user: nobody}}\nusers:\n- name: admin\n  user: {{token: mrd_abc}}\n- name: nobody\n  user: {{client-certificate: x.crt}}\n"
            ),
        )
        .expect("write");
        let ctx = load(&path, None).expect("valid").expect("a context");
        assert_eq!(ctx.server, "https://m.example:7420");
        assert_eq!(ctx.token, "mrd_abc");
        assert_eq!(ctx.ca_pem.as_deref(), Some(&b"PEM"[..]));
        assert_eq!(ctx.namespace.as_deref(), Some("finance"));
        // A context whose user has no bearer token is not usable.
        assert_eq!(load(&path, Some("other")).expect("valid"), None);
        assert_eq!(
            load(&dir.path().join("missing"), None).expect("no file"),
            None
        );
    }
}
