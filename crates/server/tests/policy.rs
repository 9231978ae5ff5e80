//! Policy admission and the continuous audit through the real API: packs installed as
//! Policy objects, refusals with the policies and fields, warnings as `Warning` headers,
//! Rego syntax errors refused at apply time with line and column, broken deny policies
//! failing closed, the scheduler's Allocations passing admission, findings, compliance
//! status and OSCAL evidence validated against NIST's schema.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use client::{Client, ClientError, ListOptions};
use server::scheduler::{self, SchedulerOptions};

use testkit::{TestServer, kind, load_examples, wait_until_async};

async fn install(c: &Client, packs: &[&str]) {
    for name in packs {
        for p in policy::pack(name).expect("pack").policies {
            c.apply(
                kind("Policy"),
                None,
                &serde_json::to_value(&p).expect("json"),
                false,
            )
            .await
            .expect("policy installed");
        }
    }
}

fn workload(name: &str, residency: &[&str], classification: &str) -> Value {
    json!({
        "apiVersion": "meridian.dev/v1", "kind": "Workload",
        "metadata": {"name": name, "namespace": "finance"},
        "spec": {
            "type": "job", "replicas": 1,
            "task": {"driver": "exec", "command": ["/bin/true"],
                     "resources": {"cpu": "500m", "memory": "256Mi"},
                     "os": {"family": "linux"}},
            "data": {"classification": classification, "residency": residency}
        }
    })
}

fn policy_object(name: &str, enforcement: &str, targets: &[&str], rego: &str) -> Value {
    json!({
        "apiVersion": "meridian.dev/v1", "kind": "Policy",
        "metadata": {"name": name},
        "spec": {"enforcement": enforcement, "targets": targets, "rego": rego,
                 "controls": [{"framework": "NIST SP 800-53", "id": "CM-6"}]}
    })
}

fn api_status(e: ClientError) -> api::Status {
    match e {
        ClientError::Api(s) => *s,
        other => panic!("expected a Status, got {other:?}"),
    }
}

/// POST with a plain HTTP client, to see headers the Meridian client hides.
/// The `Status` of a create of an EU `internal` Workload in `finance` that must be refused.
async fn refused(r: &TestServer, name: &str, why: &str) -> api::Status {
    api_status(
        r.client
            .create(
                kind("Workload"),
                Some("finance"),
                &workload(name, &["EU"], "internal"),
                false,
            )
            .await
            .expect_err(why),
    )
}

async fn raw_post(r: &TestServer, path: &str, body: &Value) -> reqwest::Response {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
        .post(format!("{}{path}", r.url))
        .bearer_auth(&r.token)
        .json(body)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn residency_breaking_workload_is_refused_with_policies_and_fields() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    install(&r.client, &["sovereignty"]).await;
    let wl = kind("Workload");

    let bad = workload("customer-export", &["JP"], "personal");
    let err = r
        .client
        .create(wl, Some("finance"), &bad, false)
        .await
        .expect_err("a residency no site satisfies is refused");
    let status = api_status(err);
    assert_eq!(status.code, 403, "{status:?}");
    assert_eq!(status.reason, "Forbidden");
    assert!(
        status.message.starts_with("admission denied by 2 policies"),
        "{}",
        status.message
    );
    assert!(status.message.contains("no site satisfies residency [JP]"));
    let details = status.details.expect("details");
    let policies: Vec<&str> = details
        .causes
        .iter()
        .map(|c| c.reason.trim_start_matches("PolicyViolation:"))
        .collect();
    assert_eq!(
        policies,
        [
            "sovereignty-allowed-locations",
            "sovereignty-residency-satisfiable"
        ]
    );
    assert!(
        details
            .causes
            .iter()
            .all(|c| c.field.starts_with("spec.data.residency")),
        "{:?}",
        details.causes
    );
    // Nothing was written.
    let list = r
        .client
        .list(wl, Some("finance"), &ListOptions::default())
        .await
        .expect("list");
    assert!(
        !list["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|w| w["metadata"]["name"] == "customer-export")
    );

    // Personal data without a residency is refused too; a compliant one is created.
    let mut undeclared = workload("no-residency", &[], "personal");
    undeclared["spec"]["data"]
        .as_object_mut()
        .expect("data")
        .remove("residency");
    let status = api_status(
        r.client
            .create(wl, Some("finance"), &undeclared, false)
            .await
            .expect_err("undeclared residency is refused"),
    );
    assert!(
        status.message.contains("sovereignty-residency-declared"),
        "{}",
        status.message
    );
    r.client
        .create(
            wl,
            Some("finance"),
            &workload("customer-export", &["EU"], "personal"),
            false,
        )
        .await
        .expect("an EU residency is allowed");

    // Updates pass admission too: widening residency to JP is refused.
    let mut widened = r
        .client
        .get(wl, Some("finance"), "customer-export")
        .await
        .expect("get");
    widened["spec"]["data"]["residency"] = json!(["JP"]);
    let status = api_status(
        r.client
            .replace(wl, Some("finance"), "customer-export", &widened)
            .await
            .expect_err("update refused"),
    );
    assert_eq!(status.code, 403);
}

#[tokio::test]
async fn rego_syntax_error_is_refused_at_apply_with_line_and_column() {
    let r = TestServer::start().await;
    let bad = policy_object(
        "typo",
        "deny",
        &["Workload"],
        "package typo\n\ndeny contains msg if {\n  msg := \"unterminated\n}\n",
    );
    let status = api_status(
        r.client
            .create(kind("Policy"), None, &bad, false)
            .await
            .expect_err("syntax error refused"),
    );
    assert_eq!(status.code, 422, "{status:?}");
    let cause = &status.details.expect("details").causes[0];
    assert_eq!(cause.field, "spec.rego");
    assert!(
        cause.message.starts_with("line 4, column ")
            && cause.message.contains("invalid character in string"),
        "{}",
        cause.message
    );
    // Nothing stored, and admission is unaffected.
    let err = r
        .client
        .get(kind("Policy"), None, "typo")
        .await
        .expect_err("not stored");
    assert!(err.is_not_found());
}

#[tokio::test]
async fn regex_policies_mean_what_they_mean_in_opa() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    // An invalid constant pattern is refused at apply, with line and column.
    let bad = policy_object(
        "bad-regex",
        "deny",
        &["Workload"],
        "package badregex\n\ndeny contains \"x\" if {\n  regex.match(`[a-`, input.object.metadata.name)\n}\n",
    );
    let status = api_status(
        r.client
            .create(kind("Policy"), None, &bad, false)
            .await
            .expect_err("invalid pattern refused"),
    );
    assert_eq!(status.code, 422, "{status:?}");
    let cause = &status.details.expect("details").causes[0];
    assert_eq!(cause.field, "spec.rego");
    assert!(
        cause
            .message
            .starts_with("line 4, column 15: invalid regex"),
        "{}",
        cause.message
    );

    // RE2 syntax OPA accepts (`\d`, `(?i)`): an ordinary denial for a matching object,
    // nothing for the others; eval reports the same as admission.
    let hex = policy_object(
        "hex-names",
        "deny",
        &["Workload"],
        "package hexnames\n\ndeny contains \"hex names are reserved\" if regex.match(`(?i)^[a-f\\d]+$`, input.object.metadata.name)\n",
    );
    r.client
        .create(kind("Policy"), None, &hex, false)
        .await
        .expect("stored");
    r.client
        .create(
            kind("Workload"),
            Some("finance"),
            &workload("payroll-2", &["EU"], "internal"),
            false,
        )
        .await
        .expect("not a hex name");
    let status = refused(&r, "bad1", "a hex name").await;
    assert_eq!(status.code, 403);
    assert!(
        status.message.contains("hex names are reserved") && !status.message.contains("broken"),
        "{}",
        status.message
    );
    // `policy eval` decides as admission did, and explains where each body stopped.
    let resp = raw_post(
        &r,
        "/meridian/v1/policy/eval?explain=full",
        &json!([
            workload("bad2", &["EU"], "internal"),
            workload("payroll-3", &["EU"], "internal")
        ]),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results[0]["admission"], "denied");
    assert_eq!(results[1]["admission"], "allowed");
    let explained = |i: usize| {
        results[i]["explanations"]
            .as_array()
            .expect("explanations")
            .iter()
            .find(|e| e["policy"] == "hex-names")
            .expect("hex-names explained")["bodies"][0]
            .clone()
    };
    assert_eq!(explained(0)["held"], true);
    assert_eq!(explained(1)["held"], false);
    assert_eq!(explained(1)["statements"][0]["outcome"], "failed");
    assert_eq!(explained(1)["statements"][0]["line"], 3);
}

#[tokio::test]
async fn warn_policy_returns_warning_headers_and_lets_the_request_through() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let rego = r#"package warn_replicas
violation contains {"msg": "one replica is not highly available", "field": "spec.replicas"} if {
  input.object.spec.replicas == 1
}
"#;
    r.client
        .create(
            kind("Policy"),
            None,
            &policy_object("single-replica", "warn", &["Workload"], rego),
            false,
        )
        .await
        .expect("policy stored");
    let resp = raw_post(
        &r,
        "/apis/meridian.dev/v1/namespaces/finance/workloads",
        &workload("solo", &["EU"], "internal"),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let warnings: Vec<String> = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    assert_eq!(
        warnings,
        ["299 - \"[single-replica] one replica is not highly available\""]
    );

    // The client hands them to its warning handler, as kubectl prints them.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let c = r
        .client
        .clone()
        .with_warning_handler(std::sync::Arc::new(move |t: &str| {
            sink.lock().expect("lock").push(t.to_owned());
        }));
    c.create(
        kind("Workload"),
        Some("finance"),
        &workload("solo-2", &["EU"], "internal"),
        false,
    )
    .await
    .expect("created");
    assert_eq!(
        *seen.lock().expect("lock"),
        ["[single-replica] one replica is not highly available"]
    );
}

#[tokio::test]
async fn strict_broken_deny_policy_fails_closed_until_its_enforcement_is_relaxed() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    // Divides by zero on every Workload: compiles, and fails at evaluation.
    let rego = "package broken\n\ndeny contains msg if {\n  x := 100 / (input.object.spec.replicas - input.object.spec.replicas)\n  msg := sprintf(\"%v\", [x])\n}\n";
    let mut p = policy_object("broken", "deny", &["Workload"], rego);
    // As in OPA, a built-in error (here a division by zero) makes the body undefined.
    r.client
        .create(kind("Policy"), None, &p, false)
        .await
        .expect("stored");
    r.client
        .create(
            kind("Workload"),
            Some("finance"),
            &workload("w0", &["EU"], "internal"),
            false,
        )
        .await
        .expect("OPA semantics: the broken body is undefined");
    // With strict built-in errors (`opa eval --strict-builtin-errors`), it fails closed.
    p["metadata"]["annotations"] = json!({ policy::STRICT_ANNOTATION: "true" });
    r.client
        .apply(kind("Policy"), None, &p, false)
        .await
        .expect("made strict");
    let status = refused(&r, "w1", "fails closed").await;
    assert_eq!(status.code, 403);
    assert!(
        status.message.contains("policy \"broken\" is broken"),
        "{}",
        status.message
    );
    assert!(
        status.message.contains("fails closed"),
        "{}",
        status.message
    );
    // Other kinds are not affected: the API stays up.
    r.client
        .list(kind("Site"), None, &ListOptions::default())
        .await
        .expect("reads work");

    p["spec"]["enforcement"] = json!("warn");
    r.client
        .apply(kind("Policy"), None, &p, false)
        .await
        .expect("relaxed");
    let resp = raw_post(
        &r,
        "/apis/meridian.dev/v1/namespaces/finance/workloads",
        &workload("w1", &["EU"], "internal"),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let warning = resp
        .headers()
        .get("warning")
        .expect("a warning")
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(warning.contains("is broken"), "{warning}");
}

#[tokio::test]
async fn scheduler_allocations_pass_admission() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    // Internal data only on SecNumCloud sites (ovh-sbg, which has no Windows node for
    // intranet-iis): the scheduler's placements of internal workloads are refused.
    let rego = r#"package secnum_only
violation contains {"msg": msg, "field": "spec.site"} if {
  input.object.kind == "Allocation"
  input.context.workload.spec.data.classification == "internal"
  not "SecNumCloud" in object.get(input.context.targetSite, "certifications", [])
  msg := sprintf("internal data may not run on site %s, which lacks SecNumCloud", [input.object.spec.site])
}
"#;
    r.client
        .create(
            kind("Policy"),
            None,
            &policy_object("secnum-only", "deny", &["Allocation"], rego),
            false,
        )
        .await
        .expect("stored");
    let report = scheduler::pass(&r.state, &SchedulerOptions::default())
        .await
        .expect("pass");
    assert!(report.denied > 0, "{report:?}");
    let allocations = r
        .client
        .list_all(kind("alloc"), None, &ListOptions::default())
        .await
        .expect("allocations");
    let sites: std::collections::HashMap<String, Value> = r
        .client
        .list_all(kind("site"), None, &ListOptions::default())
        .await
        .expect("sites")
        .into_iter()
        .map(|s| (s["metadata"]["name"].as_str().expect("name").to_owned(), s))
        .collect();
    let workloads = r
        .client
        .list_all(kind("wl"), None, &ListOptions::default())
        .await
        .expect("workloads");
    let mut refused = 0;
    for w in &workloads {
        if w["spec"]["data"]["classification"] != "internal" {
            continue;
        }
        let name = w["metadata"]["name"].as_str().expect("name");
        for a in allocations.iter().filter(|a| a["spec"]["workload"] == name) {
            let site = &sites[a["spec"]["site"].as_str().expect("site")];
            assert!(
                site["spec"]["certifications"]
                    .as_array()
                    .expect("certs")
                    .contains(&json!("SecNumCloud")),
                "{name} placed on {site}"
            );
        }
        let message = w["status"]["message"].as_str().unwrap_or_default();
        if message.contains("refused") {
            assert!(message.contains("[secnum-only]"), "{message}");
            refused += 1;
        }
    }
    assert!(
        refused > 0,
        "a refused workload says so in its status: {workloads:#?}"
    );
}

fn oscal_schema() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/oscal/oscal_assessment-results_schema_v1.1.3.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("NIST OSCAL schema {} is required: {e}", path.display()));
    serde_json::from_str(&text).expect("schema is JSON")
}

async fn wait_for_findings(c: &Client, policy: &str, at_least: usize) -> Value {
    wait_until_async(
        Duration::from_secs(10),
        &format!("{at_least} findings of {policy}"),
        || async {
            let status = c
                .get_path("/meridian/v1/compliance/status")
                .await
                .expect("status");
            let found = status["summary"]["policies"]
                .as_array()
                .expect("policies")
                .iter()
                .find(|p| p["policy"] == policy)
                .and_then(|p| p["findings"].as_u64())
                .unwrap_or(0);
            if found as usize >= at_least {
                Ok(status)
            } else {
                Err(format!("{found} findings"))
            }
        },
    )
    .await
}

/// A server with the examples and the baseline pack, once the audit has found every
/// example node without an owner label: the server, the nodes and the compliance status.
async fn examples_audited_by_baseline() -> (TestServer, Vec<Value>, Value) {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    install(&r.client, &["baseline"]).await;
    let nodes = r
        .client
        .list_all(kind("node"), None, &ListOptions::default())
        .await
        .expect("nodes");
    let status = wait_for_findings(&r.client, "baseline-owner-label", nodes.len()).await;
    (r, nodes, status)
}

#[tokio::test]
async fn audit_finds_violations_incrementally_and_reports_oscal() {
    // Installing the policy audits every existing object against it.
    let (r, nodes, status) = examples_audited_by_baseline().await;
    let row = status["summary"]["policies"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|p| p["policy"] == "baseline-owner-label")
        .expect("row")
        .clone();
    assert_eq!(row["state"], "NonCompliant");
    assert_eq!(row["objects"], nodes.len());
    assert!(
        status["summary"]["frameworks"]
            .as_array()
            .expect("frameworks")
            .iter()
            .any(|f| f["framework"] == "NIST SP 800-53")
    );

    // Fixing one node resolves its finding (incremental audit on change).
    let mut node = nodes[0].clone();
    let name = node["metadata"]["name"].as_str().expect("name").to_owned();
    node["metadata"]["labels"]["owner"] = json!("platform-team");
    r.client
        .replace(kind("node"), None, &name, &node)
        .await
        .expect("labelled");
    wait_until_async(
        Duration::from_secs(10),
        &format!("the finding of {name} to be resolved"),
        || async {
            let f = r
                .client
                .get_path("/meridian/v1/compliance/findings?policy=baseline-owner-label")
                .await
                .expect("findings");
            let objects: Vec<String> = f["findings"]
                .as_array()
                .expect("findings")
                .iter()
                .map(|f| f["object"]["name"].as_str().unwrap_or_default().to_owned())
                .collect();
            if objects.len() == nodes.len() - 1 && !objects.contains(&name) {
                Ok(())
            } else {
                Err(objects)
            }
        },
    )
    .await;

    // OSCAL evidence validates against NIST's schema; each finding targets its control.
    let doc = r
        .client
        .get_path("/meridian/v1/compliance/report?format=oscal")
        .await
        .expect("report");
    let schema = oscal_schema();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "OSCAL errors: {errors:#?}");
    let findings = doc["assessment-results"]["results"][0]["findings"]
        .as_array()
        .expect("findings");
    assert!(!findings.is_empty());
    assert!(findings.iter().all(|f| f["target"]["type"] == "objective-id"
        || f["target"]["type"] == "statement-id"));

    // Deleting the policy drops its findings.
    r.client
        .delete(kind("Policy"), None, "baseline-owner-label")
        .await
        .expect("deleted");
    let f = r
        .client
        .get_path("/meridian/v1/compliance/findings?policy=baseline-owner-label")
        .await
        .expect("findings");
    assert_eq!(f["findings"].as_array().expect("findings").len(), 0);
}

#[tokio::test]
async fn eval_shows_what_fires_without_writing_and_viewers_may_read_compliance() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    install(&r.client, &["sovereignty", "ai"]).await;
    let resp = r
        .client
        .request_json(
            client::Method::POST,
            "/meridian/v1/policy/eval",
            Some(&json!([workload("what-if", &["JP"], "personal")])),
        )
        .await
        .expect("eval");
    let result = &resp["results"][0];
    assert_eq!(result["admission"], "denied");
    assert!(result["violations"].as_array().expect("v").len() >= 2);
    let err = r
        .client
        .get(kind("wl"), Some("finance"), "what-if")
        .await
        .expect_err("eval writes nothing");
    assert!(err.is_not_found());

    let viewer = r
        .client
        .request_json(
            client::Method::POST,
            "/meridian/v1/tokens",
            Some(&json!({"role": "viewer"})),
        )
        .await
        .expect("token")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let v = Client::new(&r.url, &viewer, None).expect("client");
    v.get_path("/meridian/v1/compliance/status")
        .await
        .expect("viewers read compliance");
    let status = api_status(
        v.create(
            kind("Policy"),
            None,
            &policy_object(
                "x",
                "deny",
                &["Workload"],
                "package x\ndeny contains \"x\" if false\n",
            ),
            false,
        )
        .await
        .expect_err("viewers cannot write policies"),
    );
    assert_eq!(status.code, 403);
}

/// The scheduling policy of this process's thread named `name` (from
/// /proc/self/task/*/sched), when there is one.
#[cfg(target_os = "linux")]
fn thread_sched_policy(name: &str) -> Option<u32> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let sched = std::fs::read_to_string(task.path().join("sched")).ok()?;
        return sched
            .lines()
            .find(|l| l.starts_with("policy "))
            .and_then(|l| l.rsplit(':').next())
            .and_then(|v| v.trim().parse().ok());
    }
    None
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_audit_runs_on_its_own_thread_at_idle_priority() {
    // The audit thread found the examples' nodes without an owner label...
    let _running = examples_audited_by_baseline().await;
    // ...at SCHED_IDLE (5), so it never takes a core from requests.
    assert_eq!(thread_sched_policy("policy-audit"), Some(5));
}

#[tokio::test]
async fn baseline_no_root_refuses_root_tasks_once_set_to_deny() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    install(&r.client, &["baseline"]).await;
    let wl = kind("Workload");
    let mut root = workload("as-root", &["DE"], "internal");
    root["spec"]["task"]["user"] = json!("root");
    // The pack audits by default: the workload is accepted (and will be a finding).
    r.client
        .create(wl, Some("finance"), &root, true)
        .await
        .expect("audit does not refuse");
    // Refusing is one edit away.
    let mut p = r
        .client
        .get(kind("Policy"), None, "baseline-no-root")
        .await
        .expect("policy");
    p["spec"]["enforcement"] = json!("deny");
    r.client
        .replace(kind("Policy"), None, "baseline-no-root", &p)
        .await
        .expect("policy set to deny");
    let status = wait_until_async(
        std::time::Duration::from_secs(10),
        "the policy engine reloads",
        || {
            let (c, root) = (&r.client, &root);
            async move {
                match c.create(wl, Some("finance"), root, true).await {
                    Err(e) => Some(api_status(e)),
                    Ok(_) => None,
                }
            }
        },
    )
    .await;
    assert_eq!(status.code, 403, "{status:?}");
    let cause = &status.details.expect("details").causes[0];
    assert_eq!(cause.field, "spec.task.user");
    assert_eq!(cause.reason, "PolicyViolation:baseline-no-root");
    assert!(
        status.message.contains("\"root\" runs the task as root"),
        "{}",
        status.message
    );
    // uid 0 is root too; an unprivileged account and the default pass.
    root["spec"]["task"]["user"] = json!("0:0");
    assert!(
        r.client
            .create(wl, Some("finance"), &root, true)
            .await
            .is_err()
    );
    root["spec"]["task"]["user"] = json!("1000:1000");
    r.client
        .create(wl, Some("finance"), &root, true)
        .await
        .expect("an unprivileged user is admitted");
}

/// The audit log's entries (the admin's view).
async fn audit_entries(c: &Client) -> Vec<Value> {
    c.get_path("/meridian/v1/audit?limit=10000")
        .await
        .expect("audit log")["items"]
        .as_array()
        .expect("items")
        .clone()
}

#[tokio::test]
async fn admission_denials_and_warnings_are_in_the_audit_log_and_the_metrics() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let deny = r#"package no_forbidden
deny contains {"msg": "the name forbidden is reserved", "field": "metadata.name"} if {
  input.object.metadata.name == "forbidden"
}
"#;
    let warn = r#"package warn_replicas
violation contains {"msg": "one replica is not highly available", "field": "spec.replicas"} if {
  input.object.spec.replicas == 1
}
"#;
    for p in [
        policy_object("no-forbidden", "deny", &["Workload"], deny),
        policy_object("single-replica", "warn", &["Workload"], warn),
    ] {
        r.client
            .create(kind("Policy"), None, &p, false)
            .await
            .expect("policy stored");
    }

    let status = refused(&r, "forbidden", "refused").await;
    assert_eq!(status.code, 403);
    // A dry run is judged the same way, and not audited.
    r.client
        .create(
            kind("Workload"),
            Some("finance"),
            &workload("forbidden", &["EU"], "internal"),
            true,
        )
        .await
        .expect_err("refused in a dry run too");
    r.client
        .create(
            kind("Workload"),
            Some("finance"),
            &workload("fine", &["EU"], "internal"),
            false,
        )
        .await
        .expect("allowed with a warning");

    let entries = audit_entries(&r.client).await;
    let policy_entry = entries
        .iter()
        .find(|e| e["kind"] == "Policy" && e["name"] == "no-forbidden")
        .expect("the policy's create is audited");
    let denials: Vec<&Value> = entries
        .iter()
        .filter(|e| e["outcome"] == "denied")
        .collect();
    assert_eq!(
        denials.len(),
        1,
        "one denial, the dry run left out: {denials:#?}"
    );
    let denial = denials[0];
    assert_eq!(denial["verb"], "create");
    assert_eq!(denial["kind"], "Workload");
    assert_eq!(denial["namespace"], "finance");
    assert_eq!(denial["name"], "forbidden");
    assert_eq!(denial["actor"], policy_entry["actor"], "the caller's token");
    assert!(denial.get("digest").is_none(), "nothing was stored");
    let denied_by: Vec<&Value> = denial["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .filter(|p| p["enforcement"] == "deny")
        .collect();
    assert_eq!(denied_by.len(), 1, "{denial:#}");
    assert_eq!(denied_by[0]["policy"], "no-forbidden");
    assert_eq!(denied_by[0]["message"], "the name forbidden is reserved");
    assert_eq!(denied_by[0]["field"], "metadata.name");

    // The accepted write's own entry carries its warning.
    let write = entries
        .iter()
        .find(|e| e["kind"] == "Workload" && e["name"] == "fine")
        .expect("the write is audited");
    assert_eq!(write["outcome"], "allowed");
    assert_eq!(write["policies"][0]["policy"], "single-replica");
    assert_eq!(write["policies"][0]["enforcement"], "warn");
    assert!(write["digest"].is_string());

    let verified = r
        .client
        .get_path("/meridian/v1/audit/verify")
        .await
        .expect("verify");
    assert_eq!(verified["ok"], true, "{verified}");
    assert_eq!(verified["entries"], entries.len());

    let metrics = r.state.metrics.render();
    for line in [
        "meridian_admission_decisions_total{policy=\"no-forbidden\",enforcement=\"deny\",outcome=\"denied\"} 2",
        "meridian_admission_decisions_total{policy=\"single-replica\",enforcement=\"warn\",outcome=\"warned\"} 3",
        "meridian_admission_audit_entries_total{outcome=\"appended\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn compliance_status_reports_the_audit_that_produced_the_findings() {
    // The server starts with an estate and no policy: its start-up full audit evaluates
    // nothing. The findings then come from the incremental audit, which the status must
    // account for (it used to show the start-up run, "N objects, 0 evaluations").
    let (r, nodes, status) = examples_audited_by_baseline().await;
    let findings = status["summary"]["findings"].as_u64().expect("findings");
    assert!(findings >= nodes.len() as u64);
    let audit = &status["audit"];
    let evaluations = audit["evaluations"].as_u64().unwrap_or(0)
        + audit["since"]["evaluations"].as_u64().unwrap_or(0);
    assert!(
        evaluations >= findings,
        "{evaluations} evaluations reported for {findings} findings: {audit:#}"
    );

    // A changed object is audited on its own, and counted.
    let mut node = nodes[0].clone();
    let name = node["metadata"]["name"].as_str().expect("name").to_owned();
    node["metadata"]["labels"]["owner"] = json!("platform-team");
    r.client
        .replace(kind("node"), None, &name, &node)
        .await
        .expect("labelled");
    wait_until_async(
        Duration::from_secs(10),
        "the incremental audit of the node in the status",
        || async {
            let status = r
                .client
                .get_path("/meridian/v1/compliance/status")
                .await
                .expect("status");
            let since = &status["audit"]["since"];
            if since["objects"].as_u64().unwrap_or(0) >= 1 && since["last"].is_string() {
                Ok(())
            } else {
                Err(status["audit"].clone())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_full_audit_in_pages_gives_allocations_their_workloads() {
    // Two objects a page: an allocation's workload is always on another page (the
    // allocations' keys sort before the workloads'), so each allocation's finding needs
    // the workload the audit looked up for its page.
    let r = TestServer::start_with(server::ServerConfig {
        scheduler: None,
        policy: server::PolicyOptions {
            audit_page: 2,
            ..server::PolicyOptions::default()
        },
        ..server::ServerConfig::default()
    })
    .await;
    load_examples(&r.client).await;
    scheduler::pass(&r.state, &SchedulerOptions::default())
        .await
        .expect("pass");
    let allocations = r
        .client
        .list_all(kind("alloc"), None, &ListOptions::default())
        .await
        .expect("allocations");
    assert!(allocations.len() > 2, "{} allocations", allocations.len());
    let rego = r#"package of_workload
violation contains {"msg": msg} if {
  input.object.kind == "Allocation"
  msg := sprintf("an instance of %s", [input.context.workload.metadata.name])
}
"#;
    // The first policy installed: a full audit of every object against it.
    r.client
        .create(
            kind("Policy"),
            None,
            &policy_object("of-workload", "audit", &["Allocation"], rego),
            false,
        )
        .await
        .expect("stored");
    let status = wait_for_findings(&r.client, "of-workload", allocations.len()).await;
    let f = r
        .client
        .get_path("/meridian/v1/compliance/findings?policy=of-workload")
        .await
        .expect("findings");
    for finding in f["findings"].as_array().expect("findings") {
        let name = finding["object"]["name"].as_str().expect("name");
        let a = allocations
            .iter()
            .find(|a| a["metadata"]["name"] == name)
            .expect("an allocation");
        let workload = a["spec"]["workload"].as_str().expect("workload");
        assert_eq!(
            finding["message"],
            format!("an instance of {workload}"),
            "{finding:#}"
        );
    }
    assert!(status["audit"]["objects"].as_u64().unwrap_or(0) > allocations.len() as u64);
}

#[tokio::test]
async fn eval_and_admission_agree_on_a_broken_deny_policy() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    // Divides by zero on every Workload: compiles, and fails at evaluation. With strict
    // built-in errors, admission fails closed and eval says so.
    let rego = "package broken\n\ndeny contains msg if {\n  x := 100 / (input.object.spec.replicas - input.object.spec.replicas)\n  msg := sprintf(\"%v\", [x])\n}\n";
    let mut p = policy_object("broken", "deny", &["Workload"], rego);
    p["metadata"]["annotations"] = json!({ policy::STRICT_ANNOTATION: "true" });
    r.client
        .create(kind("Policy"), None, &p, false)
        .await
        .expect("stored");
    let w = workload("w1", &["EU"], "internal");
    let resp = r
        .client
        .request_json(
            client::Method::POST,
            "/meridian/v1/policy/eval",
            Some(&json!([w])),
        )
        .await
        .expect("eval");
    let result = &resp["results"][0];
    let status = api_status(
        r.client
            .create(kind("Workload"), Some("finance"), &w, false)
            .await
            .expect_err("admission fails closed"),
    );
    assert_eq!(status.code, 403);
    assert_eq!(result["admission"], "denied", "{result:#}");
    assert_eq!(result["operation"], "CREATE");
    assert_eq!(result["message"], status.message.as_str());
    assert_eq!(result["errors"][0]["policy"], "broken");
    assert!(
        result["violations"]
            .as_array()
            .expect("violations")
            .iter()
            .any(|v| v["policy"] == "broken" && v["enforcement"] == "deny"),
        "{result:#}"
    );
}

/// `docs/policy-input.md`.
fn policy_input_doc() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/policy-input.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The bodies of the doc's fenced blocks of `lang`.
fn fenced(doc: &str, lang: &str) -> Vec<String> {
    let open = format!("```{lang}\n");
    let mut blocks = Vec::new();
    let mut rest = doc;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let end = body.find("\n```").expect("a closed block");
        blocks.push(body[..end].to_owned());
        rest = &body[end..];
    }
    blocks
}

#[test]
fn the_rego_examples_of_the_input_document_compile() {
    let blocks = fenced(&policy_input_doc(), "rego");
    assert!(blocks.len() >= 8, "{} Rego examples", blocks.len());
    for (i, rego) in blocks.iter().enumerate() {
        let policy: api::Policy = serde_json::from_value(json!({
            "apiVersion": "meridian.dev/v1", "kind": "Policy",
            "metadata": {"name": format!("doc-{i}")},
            "spec": {"rego": rego},
        }))
        .expect("a Policy");
        if let Err(e) = policy::CompiledPolicy::compile(&policy, policy::CompileOptions::default())
        {
            panic!("example {i} does not compile: {e}\n{rego}");
        }
    }
}

#[tokio::test]
async fn the_documented_workload_input_is_what_admission_sees() {
    let doc = policy_input_doc();
    let marker = "<!-- checked: workload-create -->\n";
    let at = doc.find(marker).expect("the checked example") + marker.len();
    let documented: Value =
        serde_json::from_str(&fenced(&doc[at..], "json")[0]).expect("the checked example is JSON");

    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let echo = "package echo\n\ndeny contains json.marshal(input) if input.object.metadata.name == \"doc-example\"\n";
    r.client
        .create(
            kind("Policy"),
            None,
            &policy_object("echo", "deny", &["Workload"], echo),
            false,
        )
        .await
        .expect("stored");
    let mut manifest = documented["object"].clone();
    for server_owned in ["uid", "creationTimestamp", "generation"] {
        manifest["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove(server_owned);
    }
    let status = api_status(
        r.client
            .create(kind("Workload"), Some("finance"), &manifest, false)
            .await
            .expect_err("the echo policy refuses it"),
    );
    let cause = &status.details.expect("details").causes[0];
    let mut seen: Value = serde_json::from_str(
        cause
            .message
            .strip_prefix("[echo] ")
            .expect("the echo policy's message"),
    )
    .expect("the input as JSON");

    // Placeholders for what changes from run to run; the sites the doc shows.
    seen["actor"]["id"] = json!("<token id>");
    seen["object"]["metadata"]["uid"] = json!("<uid>");
    seen["object"]["metadata"]["creationTimestamp"] = json!("<time>");
    let shown: Vec<&String> = documented["context"]["sites"]
        .as_object()
        .expect("sites")
        .keys()
        .collect();
    seen["context"]["sites"]
        .as_object_mut()
        .expect("sites")
        .retain(|name, _| shown.contains(&name));
    assert_eq!(
        seen,
        documented,
        "docs/policy-input.md's Workload example differs from admission's input:\n{}",
        serde_json::to_string_pretty(&seen).expect("json")
    );
}

#[tokio::test]
async fn a_flood_of_denials_is_rate_limited_per_actor_in_the_audit_log() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let deny = "package no_forbidden\n\ndeny contains \"reserved\" if input.object.metadata.name == \"forbidden\"\n";
    r.client
        .create(
            kind("Policy"),
            None,
            &policy_object("no-forbidden", "deny", &["Workload"], deny),
            false,
        )
        .await
        .expect("stored");
    let refuse = || async {
        let e = r
            .client
            .create(
                kind("Workload"),
                Some("finance"),
                &workload("forbidden", &["EU"], "internal"),
                false,
            )
            .await
            .expect_err("refused");
        assert_eq!(e.code(), Some(403));
    };
    // Far more than the burst (30) in far less time than it takes to earn 30 more (30 s
    // at one a second): some are left out of the log, none out of the metrics.
    const FLOOD: u64 = 60;
    for _ in 0..FLOOD {
        refuse().await;
    }
    let metric = |name: &str| -> u64 {
        let text = r.state.metrics.render();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    let appended = metric("meridian_admission_audit_entries_total{outcome=\"appended\"}");
    let suppressed = metric("meridian_admission_audit_entries_total{outcome=\"suppressed\"}");
    assert_eq!(appended + suppressed, FLOOD);
    assert!(suppressed > 0, "{appended} appended, none left out");
    assert_eq!(
        metric(
            "meridian_admission_decisions_total{policy=\"no-forbidden\",enforcement=\"deny\",outcome=\"denied\"}"
        ),
        FLOOD
    );
    let denials = |entries: &[Value]| -> Vec<Value> {
        entries
            .iter()
            .filter(|e| e["outcome"] == "denied")
            .cloned()
            .collect()
    };
    assert_eq!(
        denials(&audit_entries(&r.client).await).len() as u64,
        appended
    );

    // Once the actor has earned a token, its next denial is logged and says how many of
    // its denials were left out before it.
    let counted = wait_until_async(
        Duration::from_secs(10),
        "a denial entry counting the ones left out",
        || async {
            refuse().await;
            let entries = audit_entries(&r.client).await;
            let counted: u64 = denials(&entries)
                .iter()
                .filter_map(|e| e["suppressed"].as_u64())
                .sum();
            if counted > 0 {
                Ok(counted)
            } else {
                Err("no entry counts suppressed denials yet")
            }
        },
    )
    .await;
    assert!(
        counted >= suppressed,
        "{counted} counted, {suppressed} left out"
    );
    let verified = r
        .client
        .get_path("/meridian/v1/audit/verify")
        .await
        .expect("verify");
    assert_eq!(verified["ok"], true, "{verified}");
}
