//! Kubeconfig files both ways. Reading a context of an existing kubeconfig
//! (`$KUBECONFIG`, else `~/.kube/config`), so that a platform engineer whose kubectl
//! already points at Meridian needs no second configuration (only bearer-token users are
//! supported; other kubeconfig fields are ignored). Writing one (`meridian kubeconfig`)
//! from the current Meridian connection, so that kubectl and every Kubernetes client
//! library talk to Meridian with the same server, CA and token.

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

/// A kubeconfig with one cluster, user and context named `name`, made current: the
/// server URL, the CA inline when there is one, the bearer token, the default project.
pub fn render(
    name: &str,
    server: &str,
    token: &str,
    ca_pem: Option<&[u8]>,
    namespace: Option<&str>,
) -> String {
    let mut cluster = serde_json::json!({ "server": server });
    if let Some(ca) = ca_pem {
        cluster["certificate-authority-data"] =
            base64::engine::general_purpose::STANDARD.encode(ca).into();
    }
    let mut context = serde_json::json!({ "cluster": name, "user": name });
    if let Some(ns) = namespace {
        context["namespace"] = ns.into();
    }
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": name,
        "clusters": [{ "name": name, "cluster": cluster }],
        "users": [{ "name": name, "user": { "token": token } }],
        "contexts": [{ "name": name, "context": context }],
        "preferences": {},
    });
    serde_yaml_ng::to_string(&config).expect("a JSON value always serializes")
}

/// `meridian kubeconfig`: print a kubeconfig for the current connection. `--context NAME`
/// names the kubeconfig's context; when the Meridian config file has a context of that
/// name, its server and token are the ones used, else flags, environment and the current
/// context are, as for every command.
pub fn print(global: &crate::args::Global) -> Result<()> {
    let file = crate::config::ConfigFile::load(&crate::config::config_path())?;
    let known = global
        .context
        .as_deref()
        .is_some_and(|n| file.find(n).is_some());
    let conn = if global.context.is_none() || known {
        crate::config::resolve(global)?
    } else {
        crate::config::resolve(&crate::args::Global {
            server: global.server.clone(),
            token: global.token.clone(),
            ca_file: global.ca_file.clone(),
            context: None,
            namespace: global.namespace.clone(),
        })?
    };
    let name = global
        .context
        .clone()
        .or(file.current_context)
        .unwrap_or_else(|| "meridian".to_owned());
    let ca = match (&conn.ca_file, &conn.ca_pem) {
        (Some(file), _) => Some(
            std::fs::read(file)
                .with_context(|| format!("cannot read the CA {}", file.display()))?,
        ),
        (None, Some(pem)) => Some(pem.clone()),
        (None, None) => None,
    };
    let conn = &conn;
    if conn.server.starts_with("http://") {
        eprintln!(
            "warning: kubectl sends no bearer token over plain http (kubernetes/kubectl#744): \
             the server serves https unless started with --insecure-http: use its https:// URL"
        );
    }
    print!(
        "{}",
        render(
            &name,
            &conn.server,
            &conn.token,
            ca.as_deref(),
            conn.namespace.as_deref()
        )
    );
    Ok(())
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

    #[test]
    fn a_rendered_kubeconfig_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config");
        let text = render(
            "prod",
            "https://m:7420",
            "mrd_x",
            Some(b"PEM"),
            Some("finance"),
        );
        std::fs::write(&path, text).expect("write");
        let ctx = load(&path, None).expect("valid").expect("current context");
        assert_eq!(ctx.server, "https://m:7420");
        assert_eq!(ctx.token, "mrd_x");
        assert_eq!(ctx.ca_pem.as_deref(), Some(&b"PEM"[..]));
        assert_eq!(ctx.namespace.as_deref(), Some("finance"));
        let plain = render("m", "http://127.0.0.1:7420", "t", None, None);
        assert!(!plain.contains("certificate-authority"), "{plain}");
    }
}
