//! Where the CLI finds its server and token: flags, then `MERIDIAN_SERVER` and
//! `MERIDIAN_TOKEN`, then the current context of the config file written by
//! `meridian login` (`$MERIDIAN_CONFIG`, else `$XDG_CONFIG_HOME/meridian/config.yaml`, else
//! `~/.config/meridian/config.yaml`), like kubeconfig contexts, then a kubeconfig context
//! with a bearer token (see [`crate::kubeconfig`]).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use crate::args::Global;
use crate::exit::UserError;

/// The config file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: Vec<Context>,
}

/// One named server and credential.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Context {
    pub name: String,
    pub server: String,
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Default project of this context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Path of the config file.
pub fn config_path() -> PathBuf {
    if let Some(p) = std::env::var_os("MERIDIAN_CONFIG") {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("meridian").join("config.yaml")
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_yaml_ng::from_str(&text)
                .with_context(|| format!("the config file {} is not valid", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Write atomically, readable only by the owner (it holds tokens).
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = serde_yaml_ng::to_string(self)?;
        let tmp = path.with_extension("yaml.tmp");
        write_private(&tmp, text.as_bytes())?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    pub fn find(&self, name: &str) -> Option<&Context> {
        self.contexts.iter().find(|c| c.name == name)
    }

    pub fn upsert(&mut self, context: Context) {
        match self.contexts.iter_mut().find(|c| c.name == context.name) {
            Some(c) => *c = context,
            None => self.contexts.push(context),
        }
    }
}

/// Everything a client command needs to connect.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub server: String,
    pub token: String,
    pub ca_file: Option<PathBuf>,
    /// A CA given inline (a kubeconfig's `certificate-authority-data`).
    pub ca_pem: Option<Vec<u8>>,
    pub namespace: Option<String>,
}

/// Resolve flags, environment and config file into a connection.
pub fn resolve(global: &Global) -> Result<Resolved> {
    let path = config_path();
    let file = ConfigFile::load(&path)?;
    let context_name = global
        .context
        .clone()
        .or_else(|| file.current_context.clone());
    let context = match &context_name {
        Some(name) => match file.find(name) {
            Some(c) => Some(c.clone()),
            None if global.context.is_some()
                && crate::kubeconfig::path()
                    .and_then(|p| crate::kubeconfig::load(&p, Some(name)).ok().flatten())
                    .is_none() =>
            {
                return Err(UserError::fail(format!(
                    "context {name:?} is not in {}: see `meridian config get-contexts`",
                    path.display()
                )));
            }
            None => None,
        },
        None => None,
    };
    // Without a Meridian context, an existing kubeconfig context that points at Meridian
    // with a bearer token works too (kubectl's own precedence: $KUBECONFIG, ~/.kube/config).
    let kube = match (&context, crate::kubeconfig::path()) {
        (None, Some(p)) => crate::kubeconfig::load(&p, global.context.as_deref())?,
        _ => None,
    };
    let context = context.or_else(|| {
        kube.as_ref().map(|k| Context {
            name: "kubeconfig".into(),
            server: k.server.clone(),
            token: k.token.clone(),
            ca_file: None,
            namespace: k.namespace.clone(),
        })
    });
    let server = global
        .server
        .clone()
        .or_else(|| context.as_ref().map(|c| c.server.clone()));
    let token = global
        .token
        .clone()
        .or_else(|| context.as_ref().map(|c| c.token.clone()));
    let (Some(server), Some(token)) = (server, token) else {
        return Err(UserError::fail(
            "no server or token: set MERIDIAN_SERVER and MERIDIAN_TOKEN, pass --server and --token, \
             or run `meridian login --server URL --token TOKEN` (the demo prints them)",
        ));
    };
    if token.trim().is_empty() {
        return Err(UserError::fail(
            "the token is empty: set MERIDIAN_TOKEN or --token to a token from `meridian token create`",
        ));
    }
    let ca_file = global
        .ca_file
        .clone()
        .or_else(|| context.as_ref().and_then(|c| c.ca_file.clone()));
    Ok(Resolved {
        server,
        token,
        ca_file,
        ca_pem: kube.and_then(|k| k.ca_pem),
        namespace: global
            .namespace
            .clone()
            .or_else(|| context.and_then(|c| c.namespace)),
    })
}

/// A client for the resolved connection.
pub fn client(resolved: &Resolved) -> Result<client::Client> {
    let ca = match &resolved.ca_file {
        Some(p) => Some(
            std::fs::read(p).with_context(|| format!("cannot read --ca-file {}", p.display()))?,
        ),
        None => resolved.ca_pem.clone(),
    };
    let client = client::Client::new(&resolved.server, &resolved.token, ca.as_deref())
        .map_err(|e| UserError::fail(e.to_string()))?;
    // Admission warnings go to stderr, as kubectl prints them.
    Ok(
        client.with_warning_handler(std::sync::Arc::new(|text: &str| {
            eprintln!("Warning: {text}");
        })),
    )
}

/// Fail unless the file's context exists.
pub fn use_context(name: &str) -> Result<()> {
    let path = config_path();
    let mut file = ConfigFile::load(&path)?;
    if file.find(name).is_none() {
        bail!(UserError::msg(format!(
            "context {name:?} is not in {}",
            path.display()
        )));
    }
    file.current_context = Some(name.to_owned());
    file.save(&path)
}

/// Saves the CA certificate (PEM) of context `name` next to the config file at
/// `config`, readable only by the owner: `<name>.ca.crt` (characters other than letters,
/// digits, `.`, `_` and `-` become `_`). Returns its path, for the context's `caFile`.
pub fn save_ca(config: &Path, name: &str, pem: &[u8]) -> Result<PathBuf> {
    let dir = config.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{}.ca.crt", safe.trim_start_matches('.')));
    write_private(&path, pem)?;
    // An absolute path, so that the context works from any directory.
    std::fs::canonicalize(&path).with_context(|| format!("cannot resolve {}", path.display()))
}

/// Writes a file readable only by its owner (mode 0600 on Unix), synced to disk.
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}
