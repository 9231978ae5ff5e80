//! Writing policies: `policy create NAME -f FILE.rego` and `policy install DIR` (a
//! directory bundle, as OPA loads one).
//!
//! A bundle is read and planned here ([`plan`], no I/O: file names and sources in, Policy
//! objects out), its tests run with `policy::run_tests` before anything is sent, every
//! Policy is checked by the server in a dry run, and only when all pass are they written.
//!
//! What a bundle may hold:
//! - `.rego` files at any depth (directories whose name starts with `.` and symbolic
//!   links to directories are skipped);
//!   `*_test.rego` files are tests;
//! - every other module that defines `deny` or `violation` (a rule head at the start of a
//!   line, `default deny` included) is a policy; the rest are libraries, attached to every
//!   policy as `spec.modules`;
//! - `data.json` or `data.yaml` (`data.yml`) at the bundle's root only, loaded at the root
//!   of `data` (`spec.data` of every policy); a data file deeper down is refused rather
//!   than ignored, since OPA would mount it under its directory's path;
//! - a module's first `# METADATA` block (OPA's annotations, YAML in comments) may set
//!   `custom.meridian.name` (the Policy's name; otherwise its path: `k8s/no_latest.rego`
//!   → `k8s-no-latest`), `description` (or `title`), `custom.meridian.enforcement` and
//!   `custom.meridian.targets` (kinds).
//!
//! The bundle's tests run before anything is written, with its data document loaded and
//! each file's Rego version detected (or the one `--rego-version` gives).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde_json::{Map, Value, json};

use client::{Client, ClientError};

use crate::args::{EnforcementArg, PolicyCreateArgs, PolicyInstallArgs, RegoVersionArg};
use crate::exit::UserError;

/// Longest name derived from a file path (a DNS-1123 label).
const MAX_NAME: usize = 63;

// ---- policy create ----

/// `meridian policy create NAME -f FILE.rego …`. `project` is the global `--project`/`-n`
/// flag as given on the command line (not a context's default): a Policy has no project,
/// so the flag restricts it to objects of those projects (`P[,Q]`).
pub async fn create(client: &Client, args: &PolicyCreateArgs, project: Option<&str>) -> Result<()> {
    let rego = std::fs::read_to_string(&args.file).map_err(|e| {
        UserError::fail(format!(
            "cannot read the Rego module (-f {}): {e}",
            args.file.display()
        ))
    })?;
    let parameters = match &args.parameters {
        Some(path) => Some(read_document(path, "--parameters")?),
        None => None,
    };
    let projects: Vec<String> = project
        .into_iter()
        .flat_map(|p| p.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    let policy = create_object(args, &projects, rego, parameters)?;
    let info = api::kinds::POLICY;
    let suffix = if args.dry_run { " (dry run)" } else { "" };
    let outcome = if args.overwrite {
        let (_, outcome) = client.apply(info, None, &policy, args.dry_run).await?;
        outcome.as_str()
    } else {
        match client.create(info, None, &policy, args.dry_run).await {
            Ok(_) => "created",
            Err(ClientError::Api(status)) if status.code == 409 => {
                return Err(UserError::fail(format!(
                    "policy {} already exists: pass --overwrite to replace it",
                    args.name
                )));
            }
            Err(e) => return Err(e.into()),
        }
    };
    println!("policy.meridian.dev/{} {outcome}{suffix}", args.name);
    Ok(())
}

/// The Policy `policy create` sends (no I/O: the file contents come in).
fn create_object(
    args: &PolicyCreateArgs,
    projects: &[String],
    rego: String,
    parameters: Option<Value>,
) -> Result<Value> {
    let mut spec = Map::new();
    if let Some(d) = &args.description {
        spec.insert("description".into(), json!(d));
    }
    if let Some(e) = args.enforcement {
        spec.insert("enforcement".into(), json!(e.as_str()));
    }
    spec.insert("rego".into(), json!(rego));
    let targets = kinds(&args.kinds, "--kinds")?;
    if !targets.is_empty() {
        spec.insert("targets".into(), json!(targets));
    }
    if !projects.is_empty() {
        spec.insert("match".into(), json!({ "projects": projects }));
    }
    if let Some(p) = parameters {
        spec.insert("parameters".into(), p);
    }
    if !args.controls.is_empty() {
        let controls: Vec<Value> = args
            .controls
            .iter()
            .map(|c| json!({"framework": c.framework, "id": c.id}))
            .collect();
        spec.insert("controls".into(), Value::Array(controls));
    }
    Ok(policy_object(&args.name, args.rego_version, spec))
}

fn policy_object(
    name: &str,
    rego_version: Option<RegoVersionArg>,
    spec: Map<String, Value>,
) -> Value {
    let mut metadata = json!({ "name": name });
    if let Some(v) = rego_version {
        metadata["annotations"] = json!({ policy::REGO_VERSION_ANNOTATION: v.as_str() });
    }
    json!({
        "apiVersion": api::API_VERSION,
        "kind": "Policy",
        "metadata": metadata,
        "spec": spec,
    })
}

/// Kind names as the API spells them (`wl` → `Workload`); `*` for every kind.
fn kinds(names: &[String], flag: &str) -> Result<Vec<String>> {
    names
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .map(|n| {
            if n == "*" {
                return Ok(n.to_owned());
            }
            api::lookup_kind(n)
                .map(|k| k.kind.to_owned())
                .ok_or_else(|| {
                    let known: Vec<&str> = api::KINDS.iter().map(|k| k.kind).collect();
                    UserError::fail(format!(
                        "{flag}: there is no kind {n:?}; the kinds are {}",
                        known.join(", ")
                    ))
                })
        })
        .collect()
}

/// A JSON or YAML file (YAML is read as JSON's superset), named by its flag in errors.
fn read_document(path: &Path, flag: &str) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UserError::fail(format!("cannot read {flag} {}: {e}", path.display())))?;
    serde_yaml_ng::from_str(&text).map_err(|e| {
        UserError::fail(format!(
            "{flag} {} is neither JSON nor YAML: {e}",
            path.display()
        ))
    })
}

// ---- policy install DIR ----

/// Whether an argument of `policy install` is a bundle directory rather than a pack name.
pub fn is_bundle(arg: &str) -> bool {
    Path::new(arg).is_dir()
}

/// A bundle's files, read.
#[derive(Debug, Default)]
struct BundleFiles {
    /// `(path relative to the bundle with `/`, source)`, sorted.
    rego: Vec<(String, String)>,
    /// The root data document and its file name.
    data: Option<(String, Value)>,
}

/// What a bundle becomes.
#[derive(Debug)]
struct Plan {
    /// `(file, Policy object)`, in file order.
    policies: Vec<(String, Value)>,
    /// Test modules.
    tests: Vec<(String, String)>,
}

/// `meridian policy install DIR`: tests, then a dry run of every policy, then the writes.
pub async fn install_bundle(client: &Client, dir: &Path, args: &PolicyInstallArgs) -> Result<()> {
    let files = read_bundle(dir)?;
    let plan = plan(&files, args.enforcement, args.rego_version)
        .map_err(|e| UserError::fail(format!("{}: {e}", dir.display())))?;
    run_bundle_tests(dir, &files, &plan, args)?;

    // The server compiles each policy with its libraries and data: all must pass before
    // one is written.
    let info = api::kinds::POLICY;
    let mut refused = Vec::new();
    let mut outcomes = Vec::new();
    for (file, policy) in &plan.policies {
        match client.apply(info, None, policy, true).await {
            Ok((_, outcome)) => outcomes.push(outcome),
            Err(e) if e.is_user_error() => {
                refused.push(format!("{file} (policy {}): {e}", name_of(policy)));
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !refused.is_empty() {
        return Err(UserError::fail(format!(
            "nothing was installed: the server refused {} of {} policies of {}:\n  {}",
            refused.len(),
            plan.policies.len(),
            dir.display(),
            refused.join("\n  ")
        )));
    }
    if args.dry_run {
        for ((_, policy), outcome) in plan.policies.iter().zip(outcomes) {
            println!(
                "policy.meridian.dev/{} {} (dry run)",
                name_of(policy),
                outcome.as_str()
            );
        }
        return Ok(());
    }
    let mut written: Vec<&str> = Vec::new();
    for (file, policy) in &plan.policies {
        match client.apply(info, None, policy, false).await {
            Ok((_, outcome)) => {
                println!(
                    "policy.meridian.dev/{} {}",
                    name_of(policy),
                    outcome.as_str()
                );
                written.push(name_of(policy));
            }
            Err(e) => {
                let rest: Vec<&str> = plan
                    .policies
                    .iter()
                    .map(|(_, p)| name_of(p))
                    .filter(|n| *n != name_of(policy) && !written.contains(n))
                    .collect();
                return Err(anyhow::Error::new(e).context(format!(
                    "{file} (policy {}) was refused after the dry run passed; written: {}; \
                     not written: {}",
                    name_of(policy),
                    list_or_none(&written),
                    list_or_none(&rest)
                )));
            }
        }
    }
    Ok(())
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn name_of(policy: &Value) -> &str {
    policy
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Runs the bundle's tests unless `--skip-tests`; refuses the install when one fails.
fn run_bundle_tests(
    dir: &Path,
    files: &BundleFiles,
    plan: &Plan,
    args: &PolicyInstallArgs,
) -> Result<()> {
    if args.skip_tests {
        eprintln!("{}: tests skipped (--skip-tests)", dir.display());
        return Ok(());
    }
    if plan.tests.is_empty() {
        eprintln!("{}: no *_test.rego files, nothing to test", dir.display());
        return Ok(());
    }
    let options = policy::TestOptions {
        rego_version: match args.rego_version {
            Some(RegoVersionArg::V0) => policy::RegoVersion::V0,
            Some(RegoVersionArg::V1) => policy::RegoVersion::V1,
            None => policy::RegoVersion::Detect,
        },
        data: files.data.as_ref().map(|(_, d)| d.clone()),
        clock: Some(std::time::Instant::now),
        ..policy::TestOptions::default()
    };
    let report = policy::run_tests_with(&files.rego, &options);
    eprintln!("{}", report.summary());
    if report.ok() {
        return Ok(());
    }
    let failed = if report.results.is_empty() {
        format!("{} module(s) do not compile", report.errors.len())
    } else {
        format!(
            "{} of {} tests failed",
            report.failed(),
            report.results.len()
        )
    };
    Err(UserError::fail(format!(
        "{}: {failed}, so nothing was installed; fix the bundle or pass --skip-tests",
        dir.display()
    )))
}

/// Reads the `.rego` files under `dir` and its root data document.
fn read_bundle(dir: &Path) -> Result<BundleFiles> {
    let mut files = BundleFiles::default();
    walk(dir, dir, &mut files)?;
    files.rego.sort();
    let mut data = None;
    for name in ["data.json", "data.yaml", "data.yml"] {
        let path = dir.join(name);
        if !path.is_file() {
            continue;
        }
        if let Some((first, _)) = &data {
            return Err(UserError::fail(format!(
                "{}: both {first} and {name}: keep one data document",
                dir.display()
            )));
        }
        let value = read_document(&path, "the bundle's data file")?;
        if !value.is_object() {
            return Err(UserError::fail(format!(
                "{}: the data document must be an object (it is loaded at the root of data)",
                path.display()
            )));
        }
        data = Some((name.to_owned(), value));
    }
    files.data = data;
    Ok(files)
}

fn walk(root: &Path, dir: &Path, files: &mut BundleFiles) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| UserError::fail(format!("cannot read {}: {e}", dir.display())))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| UserError::fail(format!("cannot read {}: {e}", dir.display())))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let file_type = entry
            .file_type()
            .map_err(|e| UserError::fail(format!("cannot read {}: {e}", path.display())))?;
        if file_type.is_dir() {
            walk(root, &path, files)?;
            continue;
        }
        if file_type.is_symlink() && path.is_dir() {
            // Not followed: a link back up the tree would never end.
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        if dir != root && matches!(name.as_str(), "data.json" | "data.yaml" | "data.yml") {
            return Err(UserError::fail(format!(
                "{}: data documents below the bundle's root are not supported; put its \
                 content under its directory's key in {}/data.json",
                path.display(),
                root.display()
            )));
        }
        if name.ends_with(".rego") {
            let source = std::fs::read_to_string(&path)
                .map_err(|e| UserError::fail(format!("cannot read {}: {e}", path.display())))?;
            files.rego.push((rel, source));
        }
    }
    Ok(())
}

/// The Policies of a bundle (no I/O).
fn plan(
    files: &BundleFiles,
    enforcement: Option<EnforcementArg>,
    rego_version: Option<RegoVersionArg>,
) -> Result<Plan, String> {
    let mut tests = Vec::new();
    let mut policies = Vec::new();
    let mut libraries = Vec::new();
    for (file, source) in &files.rego {
        if file.ends_with("_test.rego") {
            tests.push((file.clone(), source.clone()));
        } else if defines_violations(source) {
            policies.push((file, source));
        } else {
            libraries.push(json!({"name": file, "rego": source}));
        }
    }
    if policies.is_empty() {
        return Err(
            "no module defines deny or violation, so there is no policy to install".to_owned(),
        );
    }
    let mut names: BTreeMap<String, &str> = BTreeMap::new();
    let mut out = Vec::new();
    for (file, source) in policies {
        let meta = metadata(source).map_err(|e| format!("{file}: {e}"))?;
        let name = match &meta.name {
            Some(n) => n.clone(),
            None => name_from_path(file).ok_or_else(|| {
                format!("{file}: no policy name can be made of this path; set custom.meridian.name in its METADATA")
            })?,
        };
        if let Some(other) = names.insert(name.clone(), file) {
            return Err(format!(
                "{other} and {file} would both be policy {name}: rename one or set custom.meridian.name"
            ));
        }
        let mut spec = Map::new();
        if let Some(d) = meta.description {
            spec.insert("description".into(), json!(d));
        }
        let enforcement = enforcement
            .map(|e| e.as_str().to_owned())
            .or(meta.enforcement);
        if let Some(e) = enforcement {
            spec.insert("enforcement".into(), json!(e));
        }
        spec.insert("rego".into(), json!(source));
        if !meta.targets.is_empty() {
            let targets = kinds(&meta.targets, "custom.meridian.targets")
                .map_err(|e| format!("{file}: {e}"))?;
            spec.insert("targets".into(), json!(targets));
        }
        if !libraries.is_empty() {
            spec.insert("modules".into(), Value::Array(libraries.clone()));
        }
        if let Some((_, data)) = &files.data {
            spec.insert("data".into(), data.clone());
        }
        out.push((file.clone(), policy_object(&name, rego_version, spec)));
    }
    Ok(Plan {
        policies: out,
        tests,
    })
}

/// Whether a module defines a `deny` or `violation` rule: a line that starts (after
/// indentation, and an optional `default`) with either name followed by something that
/// is not part of an identifier.
fn defines_violations(source: &str) -> bool {
    source.lines().any(|line| {
        let line = line.trim_start();
        let line = line.strip_prefix("default ").map_or(line, str::trim_start);
        ["deny", "violation"].iter().any(|rule| {
            line.strip_prefix(rule).is_some_and(|rest| {
                rest.chars()
                    .next()
                    .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
            })
        })
    })
}

/// `k8s/no_latest.rego` → `k8s-no-latest`: lower case, other characters as `-`, at most
/// 63 characters.
fn name_from_path(file: &str) -> Option<String> {
    let stem = file.strip_suffix(".rego").unwrap_or(file);
    let mut name = String::new();
    for c in stem.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('-') && !name.is_empty() {
            name.push('-');
        }
    }
    name.truncate(MAX_NAME);
    let name = name.trim_end_matches('-').to_owned();
    (!name.is_empty()).then_some(name)
}

/// What a module's `# METADATA` block says about its Policy.
#[derive(Debug, Default, PartialEq, Eq)]
struct Metadata {
    name: Option<String>,
    description: Option<String>,
    enforcement: Option<String>,
    targets: Vec<String>,
}

/// Reads the first `# METADATA` block (YAML in the comment lines that follow it).
fn metadata(source: &str) -> Result<Metadata, String> {
    let mut lines = source.lines().skip_while(|l| l.trim() != "# METADATA");
    if lines.next().is_none() {
        return Ok(Metadata::default());
    }
    let yaml: Vec<&str> = lines
        .map_while(|l| l.trim_start().strip_prefix('#'))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect();
    let doc: Value = serde_yaml_ng::from_str(&yaml.join("\n"))
        .map_err(|e| format!("its METADATA block is not YAML: {e}"))?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let meridian = doc.pointer("/custom/meridian");
    let field = |k: &str| meridian.and_then(|m| m.get(k));
    let targets = match field("targets") {
        None => Vec::new(),
        Some(Value::String(s)) => s.split(',').map(str::to_owned).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| "custom.meridian.targets lists kind names".to_owned())
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("custom.meridian.targets lists kind names".to_owned()),
    };
    let enforcement = text(field("enforcement"));
    if let Some(e) = &enforcement
        && !["deny", "warn", "audit"].contains(&e.as_str())
    {
        return Err(format!(
            "custom.meridian.enforcement {e:?} is not deny, warn or audit"
        ));
    }
    Ok(Metadata {
        name: text(field("name")),
        description: text(doc.get("description")).or_else(|| text(doc.get("title"))),
        enforcement,
        targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(rego: &[(&str, &str)], data: Option<Value>) -> BundleFiles {
        BundleFiles {
            rego: rego
                .iter()
                .map(|(f, s)| ((*f).to_owned(), (*s).to_owned()))
                .collect(),
            data: data.map(|d| ("data.json".to_owned(), d)),
        }
    }

    #[test]
    fn a_bundle_becomes_one_policy_per_violation_module_with_the_libraries_and_data() {
        let bundle = files(
            &[
                (
                    "k8s/no_latest.rego",
                    "package k8s.no_latest\nimport data.lib.images\ndeny contains \"latest\" if images.latest\n",
                ),
                (
                    "lib/images.rego",
                    "package lib.images\nlatest if endswith(input.object.spec.task.image, \":latest\")\n",
                ),
                (
                    "k8s/no_latest_test.rego",
                    "package k8s.no_latest_test\ntest_x if true\n",
                ),
                (
                    "replicas.rego",
                    "# METADATA\n# title: Two replicas\n# custom:\n#   meridian:\n#     name: two-replicas\n#     enforcement: warn\n#     targets: [wl]\npackage replicas\n\nviolation contains \"one\" if input.object.spec.replicas == 1\n",
                ),
            ],
            Some(json!({"allowed": ["EU"]})),
        );
        let plan = plan(&bundle, None, Some(RegoVersionArg::V1)).expect("plan");
        assert_eq!(plan.tests.len(), 1);
        let names: Vec<&str> = plan.policies.iter().map(|(_, p)| name_of(p)).collect();
        assert_eq!(names, ["k8s-no-latest", "two-replicas"]);
        let latest = &plan.policies[0].1;
        assert_eq!(latest["spec"]["modules"][0]["name"], "lib/images.rego");
        assert_eq!(latest["spec"]["data"]["allowed"][0], "EU");
        assert_eq!(
            latest["metadata"]["annotations"][policy::REGO_VERSION_ANNOTATION],
            "v1"
        );
        assert!(
            latest["spec"].get("enforcement").is_none(),
            "server default"
        );
        let replicas = &plan.policies[1].1;
        assert_eq!(replicas["spec"]["enforcement"], "warn");
        assert_eq!(replicas["spec"]["targets"], json!(["Workload"]));
        assert_eq!(replicas["spec"]["description"], "Two replicas");

        // --enforcement wins over METADATA.
        let plan = plan_with(&bundle, Some(EnforcementArg::Audit));
        assert!(
            plan.policies
                .iter()
                .all(|(_, p)| p["spec"]["enforcement"] == "audit")
        );
    }

    fn plan_with(bundle: &BundleFiles, e: Option<EnforcementArg>) -> Plan {
        plan(bundle, e, None).expect("plan")
    }

    #[test]
    fn a_bundle_without_policies_or_with_clashing_names_is_refused() {
        let none = files(&[("lib.rego", "package lib\nx := 1\n")], None);
        assert!(
            plan(&none, None, None)
                .unwrap_err()
                .contains("no module defines deny")
        );
        let clash = files(
            &[
                ("a/b.rego", "package a.b\ndeny contains 1 if false\n"),
                ("a_b.rego", "package a_b\ndeny contains 1 if false\n"),
            ],
            None,
        );
        let err = plan(&clash, None, None).unwrap_err();
        assert!(err.contains("would both be policy a-b"), "{err}");
    }

    #[test]
    fn rule_heads_and_names() {
        assert!(defines_violations(
            "package p\ndeny contains x if { x := 1 }\n"
        ));
        assert!(defines_violations("package p\n  deny[msg] { msg := 1 }\n"));
        assert!(defines_violations("package p\ndefault deny := false\n"));
        assert!(defines_violations(
            "package p\nviolation contains {\"msg\": \"m\"} if true\n"
        ));
        assert!(!defines_violations(
            "package p\ndenylist := [1]\n# deny is not here\n"
        ));
        assert_eq!(
            name_from_path("K8s/No_Latest.rego").as_deref(),
            Some("k8s-no-latest")
        );
        assert_eq!(name_from_path("__.rego"), None);
        assert_eq!(
            name_from_path(&format!("{}.rego", "a".repeat(80))).map(|n| n.len()),
            Some(63)
        );
    }
}
