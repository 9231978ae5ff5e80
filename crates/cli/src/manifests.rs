//! Reading manifests from files, directories and stdin, all validated before use.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};

use api::Manifest;

use crate::exit::UserError;

/// Read and validate every manifest of `sources` (files, directories, `-`). Returns every
/// error of every document at once; nothing is returned unless all are valid.
pub fn load(sources: &[String], recursive: bool) -> Result<Vec<Manifest>> {
    let mut texts: Vec<(String, String)> = Vec::new();
    for source in sources {
        if source == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read manifests from stdin")?;
            texts.push(("<stdin>".into(), text));
            continue;
        }
        let path = Path::new(source);
        let meta =
            std::fs::metadata(path).map_err(|e| UserError::fail(format!("-f {source}: {e}")))?;
        if meta.is_dir() {
            collect_dir(path, recursive, &mut texts)?;
        } else {
            let text = std::fs::read_to_string(path)
                .map_err(|e| UserError::fail(format!("-f {source}: {e}")))?;
            texts.push((source.clone(), text));
        }
    }
    if texts.is_empty() {
        return Err(UserError::fail(format!(
            "no manifests found in {} (looked for *.yaml, *.yml and *.json files)",
            sources.join(", ")
        )));
    }
    let mut manifests = Vec::new();
    let mut errors = Vec::new();
    for (source, text) in &texts {
        match api::parse_manifests(source, text) {
            Ok(m) => manifests.extend(m),
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        let count = errors.len();
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(UserError::fail(format!(
            "{}\n{count} error{} found; nothing was applied",
            lines.join("\n"),
            if count == 1 { "" } else { "s" }
        )));
    }
    Ok(manifests)
}

fn collect_dir(dir: &Path, recursive: bool, out: &mut Vec<(String, String)>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::path);
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            if recursive {
                collect_dir(&path, recursive, out)?;
            }
            continue;
        }
        let is_manifest = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        );
        if is_manifest {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            out.push((path.display().to_string(), text));
        }
    }
    Ok(())
}

/// Order in which kinds are applied so that what others refer to exists first.
pub fn apply_rank(kind: &str) -> usize {
    [
        "Project",
        "Secret",
        "Site",
        "Node",
        "Policy",
        "Workload",
        "Allocation",
    ]
    .iter()
    .position(|k| *k == kind)
    .unwrap_or(usize::MAX)
}
