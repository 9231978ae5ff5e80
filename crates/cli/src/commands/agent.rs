//! `meridian agent`: the node agent (see the `agent` crate).

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use crate::args::AgentArgs;
use crate::exit::UserError;

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
}

/// `KEY[=VALUE]:EFFECT`.
fn parse_taint(s: &str) -> Result<api::kinds::Taint> {
    let bad = || {
        UserError::fail(format!(
            "--taint {s:?} is not KEY[=VALUE]:EFFECT (e.g. nvidia.com/gpu=present:NoSchedule)"
        ))
    };
    let (kv, effect) = s.rsplit_once(':').ok_or_else(bad)?;
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_owned())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err(bad());
    }
    let effect =
        serde_json::from_value(serde_json::Value::String(effect.to_owned())).map_err(|_| {
            UserError::fail(format!(
                "--taint {s:?}: effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute"
            ))
        })?;
    Ok(api::kinds::Taint {
        key: key.to_owned(),
        value,
        effect,
    })
}

/// `NAME=PATH[:ro]`: the name a DNS label, the path an existing directory.
fn parse_volume(s: &str) -> Result<(String, agent::view::NodeVolume)> {
    let (name, rest) = s.split_once('=').ok_or_else(|| {
        UserError::fail(format!(
            "--volume {s:?} is not NAME=PATH[:ro] (e.g. data=/srv/data:ro)"
        ))
    })?;
    api::validate::check_dns_label(name)
        .map_err(|e| UserError::fail(format!("--volume {s:?}: name {name:?}: {e}")))?;
    let (path, read_only) = match rest.strip_suffix(":ro") {
        Some(p) => (p, true),
        None => (rest.strip_suffix(":rw").unwrap_or(rest), false),
    };
    let path = std::path::Path::new(path);
    if !path.is_absolute() {
        return Err(UserError::fail(format!(
            "--volume {s:?}: the path must be absolute"
        )));
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(UserError::fail(format!(
                "--volume {s:?}: {} is not a directory",
                path.display()
            )));
        }
        Err(e) => {
            return Err(UserError::fail(format!(
                "--volume {s:?}: {}: {e}",
                path.display()
            )));
        }
    }
    Ok((
        name.to_owned(),
        agent::view::NodeVolume {
            path: path.to_path_buf(),
            read_only,
        },
    ))
}

pub async fn agent(args: &AgentArgs) -> Result<()> {
    let name = match &args.name {
        Some(n) => n.clone(),
        None => {
            hostname().ok_or_else(|| UserError::fail("cannot read the hostname: pass --name"))?
        }
    };
    api::validate::check_dns_subdomain(&name).map_err(|e| {
        UserError::fail(format!("node name {name:?} (--name or the hostname): {e}"))
    })?;
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| UserError::fail(format!("--label {l:?} is not KEY=VALUE")))?;
        labels.insert(k.to_owned(), v.to_owned());
    }
    let taints = args
        .taints
        .iter()
        .map(|t| parse_taint(t))
        .collect::<Result<Vec<_>>>()?;
    let mut volumes = BTreeMap::new();
    for v in &args.volumes {
        let (name, volume) = parse_volume(v)?;
        if volumes.insert(name.clone(), volume).is_some() {
            return Err(UserError::fail(format!("--volume {name} is given twice")));
        }
    }
    let data_dir = if args.data_dir.is_absolute() {
        args.data_dir.clone()
    } else {
        std::env::current_dir()?.join(&args.data_dir)
    };
    let mut config = agent::runtime::AgentConfig::new(&args.server, &name, &data_dir);
    config.join_token = args.join_token.clone();
    config.site = args.site.clone();
    config.labels = labels;
    config.taints = taints;
    config.heartbeat = args.heartbeat;
    config.grace = args.grace;
    config.volumes = volumes;
    config.advertise_address = args.advertise_address.map(|a| a.to_string());
    config.ca_pem = match &args.ca_file {
        Some(p) => Some(
            std::fs::read(p).with_context(|| format!("cannot read --ca-file {}", p.display()))?,
        ),
        None => None,
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        server::shutdown_signal().await;
        trigger.cancel();
    });
    agent::runtime::run(config, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_parse_like_kubectl() {
        let t = parse_taint("nvidia.com/gpu=present:NoSchedule").unwrap();
        assert_eq!(t.key, "nvidia.com/gpu");
        assert_eq!(t.value.as_deref(), Some("present"));
        let t = parse_taint("dedicated:PreferNoSchedule").unwrap();
        assert_eq!(t.value, None);
        assert!(parse_taint("nocolon").is_err());
        assert!(parse_taint("k=v:Sometimes").is_err());
    }

    #[test]
    fn volumes_parse_and_must_exist() {
        let dir = std::env::temp_dir();
        let (name, v) = parse_volume(&format!("scratch={}:ro", dir.display())).unwrap();
        assert_eq!((name.as_str(), v.read_only), ("scratch", true));
        assert_eq!(v.path, dir);
        let (_, v) = parse_volume(&format!("scratch={}", dir.display())).unwrap();
        assert!(!v.read_only);
        let e = parse_volume("data=/no/such/dir").unwrap_err().to_string();
        assert!(
            e.contains("--volume \"data=/no/such/dir\": /no/such/dir: No such file"),
            "{e}"
        );
        assert!(parse_volume("data").is_err());
        assert!(parse_volume("Bad_Name=/tmp").is_err());
        assert!(parse_volume("data=relative").is_err());
    }
}
