//! `policy` (install, packs, test, eval) and `compliance` (status, report); `create` and
//! bundle installs are `policy_authoring.rs`'s.

use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use client::{Client, Method};

use crate::args::{
    ComplianceCommand, ComplianceReportArgs, ComplianceStatusArgs, ExplainMode, Output,
    PolicyCommand, PolicyEvalArgs, PolicyInstallArgs, PolicyTestArgs, RegoVersionArg, ReportFormat,
    TestFormat,
};
use crate::config::Resolved;
use crate::exit::UserError;
use crate::manifests;
use crate::output::table;

/// Verbs that work without a server.
pub fn offline(cmd: &PolicyCommand) -> Option<Result<()>> {
    match cmd {
        PolicyCommand::Packs => Some(packs()),
        PolicyCommand::Test(a) => Some(test(a)),
        _ => None,
    }
}

pub async fn policy(client: &Client, conn: &Resolved, cmd: &PolicyCommand) -> Result<()> {
    match cmd {
        PolicyCommand::Install(a) => install(client, a).await,
        // main.rs dispatches it with the global --project flag.
        PolicyCommand::Create(a) => super::policy_authoring::create(client, a, None).await,
        PolicyCommand::Eval(a) => eval(client, conn, a).await,
        PolicyCommand::Packs => packs(),
        PolicyCommand::Test(a) => test(a),
    }
}

pub async fn compliance(client: &Client, cmd: &ComplianceCommand) -> Result<()> {
    match cmd {
        ComplianceCommand::Status(a) => status(client, a).await,
        ComplianceCommand::Report(a) => report(client, a).await,
    }
}

fn unknown_pack(name: &str) -> anyhow::Error {
    let known: Vec<&str> = policy::packs().iter().map(|p| p.name).collect();
    if name.contains(['/', '.']) {
        return UserError::fail(format!(
            "{name} is not a directory (a bundle is a directory of .rego files) nor a built-in pack ({})",
            known.join(", ")
        ));
    }
    UserError::fail(format!(
        "there is no built-in pack {name:?}; the packs are {} (meridian policy packs)",
        known.join(", ")
    ))
}

fn packs() -> Result<()> {
    let rows: Vec<Vec<String>> = policy::packs()
        .iter()
        .flat_map(|p| {
            p.policies.iter().map(move |pol| {
                vec![
                    p.name.to_owned(),
                    pol.metadata.name.clone(),
                    pol.spec.enforcement.as_str().to_owned(),
                    pol.spec
                        .controls
                        .iter()
                        .map(|c| format!("{} {}", c.framework, c.id))
                        .collect::<Vec<_>>()
                        .join(", "),
                ]
            })
        })
        .collect();
    let headers = ["PACK", "POLICY", "ENFORCEMENT", "CONTROLS"].map(String::from);
    print!("{}", table(&headers, &rows, false));
    Ok(())
}

async fn install(client: &Client, args: &PolicyInstallArgs) -> Result<()> {
    // A directory is a bundle (`policy_authoring.rs`); anything else names a pack.
    let (bundles, packs): (Vec<&String>, Vec<&String>) = args
        .packs
        .iter()
        .partition(|a| super::policy_authoring::is_bundle(a));
    for dir in bundles {
        super::policy_authoring::install_bundle(client, Path::new(dir), args).await?;
    }
    let mut selected = Vec::new();
    for name in packs {
        selected.push(policy::pack(name).ok_or_else(|| unknown_pack(name))?);
    }
    let info = api::kinds::POLICY;
    for pack in selected {
        for p in &pack.policies {
            let mut p = p.clone();
            if let Some(e) = args.enforcement {
                p.spec.enforcement = serde_json::from_value(Value::String(e.as_str().into()))?;
            }
            let (_, outcome) = client
                .apply(info, None, &serde_json::to_value(&p)?, args.dry_run)
                .await?;
            let suffix = if args.dry_run { " (dry run)" } else { "" };
            println!(
                "policy.meridian.dev/{} {}{suffix}",
                p.metadata.name,
                outcome.as_str()
            );
        }
    }
    Ok(())
}

/// `.rego` files under `path` (recursively), sorted.
fn rego_files(path: &Path, out: &mut Vec<(String, String)>) -> Result<()> {
    let meta =
        std::fs::metadata(path).map_err(|e| UserError::fail(format!("{}: {e}", path.display())))?;
    if meta.is_file() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UserError::fail(format!("{}: {e}", path.display())))?;
        out.push((path.display().to_string(), text));
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(path)
        .map_err(|e| UserError::fail(format!("{}: {e}", path.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() || p.extension().is_some_and(|e| e == "rego") {
            rego_files(&p, out)?;
        }
    }
    Ok(())
}

fn test(args: &PolicyTestArgs) -> Result<()> {
    if args.paths.is_empty() && args.pack.is_empty() {
        return Err(UserError::fail(
            "give a directory or file of .rego modules, or --pack NAME (e.g. meridian policy test policies/)",
        ));
    }
    let mut modules: Vec<(String, String)> = Vec::new();
    for p in &args.paths {
        rego_files(Path::new(p), &mut modules)?;
    }
    for name in &args.pack {
        let packs = if name == "all" {
            policy::packs()
        } else {
            vec![policy::pack(name).ok_or_else(|| unknown_pack(name))?]
        };
        for pack in packs {
            modules.extend(
                pack.modules()
                    .into_iter()
                    .map(|(file, src)| (file, src.to_owned())),
            );
        }
    }
    if modules.is_empty() {
        return Err(UserError::fail(format!(
            "no .rego files found in {}",
            args.paths.join(", ")
        )));
    }
    let rego_version = match (args.v0_compatible, args.rego_version) {
        (true, _) | (_, Some(RegoVersionArg::V0)) => policy::RegoVersion::V0,
        (_, Some(RegoVersionArg::V1)) => policy::RegoVersion::V1,
        _ => policy::RegoVersion::Detect,
    };
    let options = policy::TestOptions {
        rego_version,
        run: args.run.clone(),
        clock: Some(std::time::Instant::now),
        ..policy::TestOptions::default()
    };
    let report = policy::run_tests_with(&modules, &options);
    match args.format {
        TestFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).unwrap_or_default()
        ),
        TestFormat::Pretty if args.verbose => println!("{}", report.verbose()),
        TestFormat::Pretty => println!("{}", report.summary()),
    }
    if args.verbose && !report.v0_files.is_empty() && args.format == TestFormat::Pretty {
        eprintln!(
            "note: read as Rego v0 (pre-1.0 syntax): {}",
            report.v0_files.join(", ")
        );
    }
    if report.ok() {
        Ok(())
    } else if report.results.is_empty() && report.errors.is_empty() {
        Err(UserError::fail(
            "no tests found: test rules are named test_* (e.g. test_denies_missing_residency if { ... })",
        ))
    } else {
        Err(UserError::fail(format!(
            "{} of {} tests failed",
            report.failed(),
            report.results.len()
        )))
    }
}

async fn eval(client: &Client, conn: &Resolved, args: &PolicyEvalArgs) -> Result<()> {
    let loaded = manifests::load(&args.files, false)?;
    let mut items = Vec::new();
    for m in loaded {
        let mut v = m.object.to_value();
        if m.object.kind_info().namespaced() && m.object.namespace().is_none() {
            v["metadata"]["namespace"] =
                Value::String(conn.namespace.clone().unwrap_or_else(|| "default".into()));
        }
        items.push(v);
    }
    let path = match args.explain {
        Some(mode) => format!("/meridian/v1/policy/eval?explain={}", mode.as_str()),
        None => "/meridian/v1/policy/eval".to_string(),
    };
    let resp = client
        .request_json(Method::POST, &path, Some(&Value::Array(items)))
        .await?;
    let results = resp["results"].as_array().cloned().unwrap_or_default();
    let denied = results
        .iter()
        .filter(|r| r["admission"] == "denied")
        .count();
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&resp)?),
        Output::Yaml => print!("{}", serde_yaml_ng::to_string(&resp)?),
        _ => print!("{}", eval_text(&results, args.explain)),
    }
    if denied > 0 {
        return Err(UserError::fail(format!(
            "{denied} of {} object(s) would be refused at admission",
            results.len()
        )));
    }
    Ok(())
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn object_name(o: &Value) -> String {
    match o.get("namespace").and_then(Value::as_str) {
        Some(ns) => format!("{} {ns}/{}", s(&o["kind"]), s(&o["name"])),
        None => format!("{} {}", s(&o["kind"]), s(&o["name"])),
    }
}

fn eval_text(results: &[Value], explain: Option<ExplainMode>) -> String {
    let mut out = String::new();
    for r in results {
        let violations = r["violations"].as_array().cloned().unwrap_or_default();
        let errors = r["errors"].as_array().cloned().unwrap_or_default();
        let verdict = if r["admission"] == "denied" {
            "DENIED"
        } else if violations.is_empty() && errors.is_empty() {
            "ok"
        } else {
            "allowed with findings"
        };
        out.push_str(&format!(
            "{}: {verdict} ({} policies evaluated)\n",
            object_name(&r["object"]),
            r["evaluated"]
        ));
        for v in &violations {
            let field = v
                .get("field")
                .and_then(Value::as_str)
                .map(|f| format!(" [{f}]"))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {:<5} {}: {}{field}\n",
                s(&v["enforcement"]),
                s(&v["policy"]),
                s(&v["message"])
            ));
        }
        for e in &errors {
            out.push_str(&format!(
                "  error {}: {}\n",
                s(&e["policy"]),
                s(&e["message"])
            ));
        }
        if let Some(mode) = explain {
            explain_text(&mut out, r, mode);
        }
    }
    out
}

/// `--explain`: per policy, each body of its violation rules and where it stopped; with
/// `full`, every statement (`✓` held, `✗` failed, `·` not reached).
fn explain_text(out: &mut String, result: &Value, mode: ExplainMode) {
    let empty = Vec::new();
    for p in result["explanations"].as_array().unwrap_or(&empty) {
        out.push_str(&format!(
            "  policy {} ({}):\n",
            s(&p["policy"]),
            s(&p["enforcement"])
        ));
        if let Some(e) = p.get("error").and_then(Value::as_str) {
            out.push_str(&format!("    could not be explained: {e}\n"));
            continue;
        }
        for body in p["bodies"].as_array().unwrap_or(&empty) {
            let stmts = body["statements"].as_array().unwrap_or(&empty);
            let held = body["held"] == true;
            let failed = stmts.iter().find(|st| st["outcome"] == "failed");
            let verdict = match (held, failed) {
                (true, _) => "held: reports a violation".to_string(),
                (false, Some(f)) => format!("did not hold: stopped at line {}", f["line"]),
                (false, None) => "did not hold".to_string(),
            };
            out.push_str(&format!(
                "    {} at line {}: {verdict}\n",
                s(&body["rule"]),
                body["line"]
            ));
            for st in stmts {
                let mark = match s(&st["outcome"]) {
                    "held" => "✓",
                    "failed" => "✗",
                    _ => "·",
                };
                if mode == ExplainMode::Full || st["outcome"] == "failed" {
                    out.push_str(&format!(
                        "      {mark} {:>4}  {}\n",
                        st["line"],
                        s(&st["text"])
                    ));
                }
            }
        }
    }
}

async fn status(client: &Client, args: &ComplianceStatusArgs) -> Result<()> {
    let resp = client.get_path("/meridian/v1/compliance/status").await?;
    match args.output {
        Output::Json => {
            println!("{}", serde_json::to_string_pretty(&resp)?);
            return Ok(());
        }
        Output::Yaml => {
            print!("{}", serde_yaml_ng::to_string(&resp)?);
            return Ok(());
        }
        _ => {}
    }
    let summary = &resp["summary"];
    let policies = summary["policies"].as_array().cloned().unwrap_or_default();
    if policies.is_empty() {
        println!("No policies installed. Try: meridian policy install sovereignty baseline ai");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = policies
        .iter()
        .map(|p| {
            vec![
                s(&p["policy"]).to_owned(),
                s(&p["enforcement"]).to_owned(),
                s(&p["state"]).to_owned(),
                p["findings"].to_string(),
                p["objects"].to_string(),
                p["controls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| format!("{} {}", s(&c["framework"]), s(&c["id"])))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    let headers = [
        "POLICY",
        "ENFORCEMENT",
        "STATE",
        "FINDINGS",
        "OBJECTS",
        "CONTROLS",
    ]
    .map(String::from);
    print!("{}", table(&headers, &rows, false));
    println!();
    let rows: Vec<Vec<String>> = summary["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            vec![
                s(&f["framework"]).to_owned(),
                format!("{}/{}", f["passing"], f["controls"]),
                f["findings"].to_string(),
                f["failing"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| s(c).to_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    let headers = ["FRAMEWORK", "CONTROLS PASSING", "FINDINGS", "FAILING"].map(String::from);
    print!("{}", table(&headers, &rows, false));
    let audit = &resp["audit"];
    println!();
    match audit["finished"].as_str() {
        Some(t) => println!(
            "Last full audit: {t}, {} objects, {} evaluations in {} ms",
            audit["objects"], audit["evaluations"], audit["durationMs"]
        ),
        None => println!("The first full audit has not finished yet."),
    }
    let since = &audit["since"];
    if let Some(last) = since["last"].as_str() {
        println!(
            "Since then: {} changed objects and {} policy changes audited, {} evaluations, the last at {last}",
            since["objects"], since["policyRuns"], since["evaluations"]
        );
    }
    if summary["dropped"].as_u64().unwrap_or(0) > 0 {
        println!(
            "{} findings were not kept (limit reached): the counts above are lower bounds",
            summary["dropped"]
        );
    }
    for b in resp["broken"].as_array().into_iter().flatten() {
        println!(
            "BROKEN policy {}: {} (it is not evaluated; fix it with meridian apply)",
            s(&b["policy"]),
            s(&b["error"])
        );
    }
    for e in audit["errors"].as_array().into_iter().flatten() {
        println!("Audit error: {}", s(&e["message"]));
    }
    Ok(())
}

async fn report(client: &Client, args: &ComplianceReportArgs) -> Result<()> {
    let format = match args.output {
        ReportFormat::Oscal => "oscal",
        ReportFormat::Json | ReportFormat::Table => "json",
    };
    let mut resp = client
        .get_path(&format!("/meridian/v1/compliance/report?format={format}"))
        .await?;
    if let (Some(p), Some(list)) = (
        &args.policy,
        resp.get_mut("findings").and_then(Value::as_array_mut),
    ) {
        list.retain(|f| f["policy"] == p.as_str());
    }
    match args.output {
        ReportFormat::Oscal | ReportFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&resp)?);
        }
        ReportFormat::Table => {
            let rows: Vec<Vec<String>> = resp["findings"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| {
                    let o = &f["object"];
                    vec![
                        s(&f["policy"]).to_owned(),
                        s(&f["enforcement"]).to_owned(),
                        object_name(o),
                        s(&f["message"]).to_owned(),
                        f["controls"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|c| format!("{} {}", s(&c["framework"]), s(&c["id"])))
                            .collect::<Vec<_>>()
                            .join(", "),
                        s(&f["firstSeen"]).to_owned(),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("No findings.");
            } else {
                let headers = [
                    "POLICY",
                    "ENFORCEMENT",
                    "OBJECT",
                    "MESSAGE",
                    "CONTROLS",
                    "FIRST SEEN",
                ]
                .map(String::from);
                print!("{}", table(&headers, &rows, false));
            }
        }
    }
    Ok(())
}
