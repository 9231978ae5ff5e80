//! `label`, `annotate` and `edit`, as kubectl's.

use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use api::KindInfo;
use client::{Client, PatchType};

use crate::args::{EditArgs, MetaArgs};
use crate::config::Resolved;
use crate::exit::UserError;

/// `KIND NAME…` or `KIND/NAME`: the kind and the names.
fn targets<'a>(kind: &'a str, names: &'a [String]) -> Result<(&'static KindInfo, Vec<&'a str>)> {
    match kind.split_once('/') {
        Some((k, name)) => {
            let info = super::resources::kind(k)?;
            let mut all = vec![name];
            all.extend(names.iter().map(String::as_str));
            Ok((info, all))
        }
        None => Ok((
            super::resources::kind(kind)?,
            names.iter().map(String::as_str).collect(),
        )),
    }
}

fn project(info: &KindInfo, conn: &Resolved) -> Option<String> {
    info.namespaced()
        .then(|| conn.namespace.clone().unwrap_or_else(|| "default".into()))
}

/// `KEY=VALUE` sets, `KEY-` removes; the last word for one key wins.
fn changes(args: &[String]) -> Result<BTreeMap<String, Option<String>>> {
    let mut out = BTreeMap::new();
    for a in args {
        if let Some((k, v)) = a.split_once('=') {
            if k.is_empty() {
                return Err(UserError::fail(format!(
                    "{a:?}: a key is needed before '=' (KEY=VALUE, or KEY- to remove)"
                )));
            }
            out.insert(k.to_owned(), Some(v.to_owned()));
        } else if let Some(k) = a.strip_suffix('-').filter(|k| !k.is_empty()) {
            out.insert(k.to_owned(), None);
        } else {
            return Err(UserError::fail(format!(
                "{a:?} is neither KEY=VALUE nor KEY- (to remove KEY)"
            )));
        }
    }
    if out.is_empty() {
        return Err(UserError::fail("give at least one KEY=VALUE or KEY-"));
    }
    Ok(out)
}

/// `meridian label` (`field` = `labels`) and `meridian annotate` (`annotations`): a merge
/// patch guarded by the object's resourceVersion; an existing key keeps its value unless
/// `--overwrite`.
pub async fn set_meta(
    client: &Client,
    conn: &Resolved,
    args: &MetaArgs,
    field: &str,
    verb: &str,
) -> Result<()> {
    let (info, names) = targets(&args.kind, &args.names)?;
    if names.is_empty() {
        return Err(UserError::fail(format!(
            "name the object to {}: meridian {} {} NAME KEY=VALUE",
            if field == "labels" {
                "label"
            } else {
                "annotate"
            },
            if field == "labels" {
                "label"
            } else {
                "annotate"
            },
            info.singular
        )));
    }
    // Words with '=' or ending in '-' are changes; the rest are names.
    let (names, words): (Vec<&str>, Vec<&str>) = names
        .into_iter()
        .partition(|w| !w.contains('=') && !w.ends_with('-'));
    let words: Vec<String> = words.into_iter().map(str::to_owned).collect();
    let changes = changes(&words)?;
    let ns = project(info, conn);
    for name in names {
        let object = client.get(info, ns.as_deref(), name).await?;
        let current = object["metadata"][field]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (k, v) in &changes {
            if let (Some(new), Some(old)) = (v, current.get(k))
                && old.as_str() != Some(new.as_str())
                && !args.overwrite
            {
                return Err(UserError::fail(format!(
                    "{}/{name}: '{k}' already has a value ({}); use --overwrite to change it",
                    info.singular,
                    old.as_str().unwrap_or_default()
                )));
            }
        }
        let patch = json!({"metadata": {
            "resourceVersion": object["metadata"]["resourceVersion"],
            field: changes.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        }});
        client
            .patch(info, ns.as_deref(), name, PatchType::Merge, &patch, false)
            .await?;
        println!("{}.{}/{name} {verb}", info.singular, api::GROUP);
    }
    Ok(())
}

/// `meridian edit KIND NAME`: the object as YAML in `$KUBE_EDITOR`, `$EDITOR` or `vi`;
/// saved unchanged, nothing happens; changed, it is replaced, guarded by the
/// resourceVersion it was read at. A refused edit leaves the file and says where.
pub async fn edit(client: &Client, conn: &Resolved, args: &EditArgs) -> Result<()> {
    let given: Vec<String> = Some(args.name.clone())
        .filter(|n| !n.is_empty())
        .into_iter()
        .collect();
    let (info, names) = targets(&args.kind, &given)?;
    let [name] = names.as_slice() else {
        return Err(UserError::fail(
            "edit takes one object: meridian edit KIND NAME",
        ));
    };
    let ns = project(info, conn);
    let mut object = client.get(info, ns.as_deref(), name).await?;
    if let Some(m) = object["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
    let before = serde_yaml_ng::to_string(&object)?;
    let mut file = tempfile::Builder::new()
        .prefix(&format!("meridian-edit-{}-", info.singular))
        .suffix(".yaml")
        .tempfile()
        .context("cannot create the file to edit")?;
    writeln!(
        file,
        "# Edit the {} below; lines starting with '#' are ignored. Save an unchanged file to cancel.",
        info.singular
    )?;
    file.write_all(before.as_bytes())?;
    file.flush()?;
    let editor = std::env::var("KUBE_EDITOR")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".to_owned());
    let mut words = editor.split_whitespace();
    let program = words.next().unwrap_or("vi");
    let status = std::process::Command::new(program)
        .args(words)
        .arg(file.path())
        .status()
        .with_context(|| format!("cannot run the editor {editor:?} (set KUBE_EDITOR or EDITOR)"))?;
    if !status.success() {
        return Err(UserError::fail(format!(
            "the editor {editor:?} exited with {status}; nothing changed"
        )));
    }
    let text = std::fs::read_to_string(file.path())?;
    let edited: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let value: Value = match api::yaml::from_str(&edited) {
        Ok(v) => v,
        Err(e) => {
            let kept = keep(file)?;
            return Err(UserError::fail(format!(
                "the edited {} is not valid YAML ({e}); your changes are in {kept}",
                info.singular
            )));
        }
    };
    if value == object {
        println!("Edit cancelled, no changes made.");
        return Ok(());
    }
    match client.replace(info, ns.as_deref(), name, &value).await {
        Ok(_) => {
            println!("{}.{}/{name} edited", info.singular, api::GROUP);
            Ok(())
        }
        Err(e) => {
            let kept = keep(file)?;
            Err(anyhow::Error::new(e).context(format!(
                "the edit was refused; your changes are in {kept} (fix them and `meridian apply -f` it)"
            )))
        }
    }
}

/// Keeps the edited file (it is a temporary file otherwise removed on drop).
fn keep(file: tempfile::NamedTempFile) -> Result<String> {
    let (_, path) = file.keep().context("cannot keep the edited file")?;
    Ok(path.display().to_string())
}
