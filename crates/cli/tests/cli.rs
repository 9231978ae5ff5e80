//! The `meridian` binary end to end: a real server process on loopback, real CLI
//! invocations, real files. Checks output, exit codes and the safety properties a user
//! relies on (all-or-nothing apply, tamper-evident audit log, TLS beyond loopback,
//! graceful shutdown).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::{AgentProcess, ServerProcess, examples_dir, ok, stderr, stdout, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

#[path = "support/tamper.rs"]
mod tamper;

#[test]
fn apply_get_describe_delete_round_trip() {
    let s = ServerProcess::start(BIN, &[]);
    let ex = examples_dir();
    let out = ok(&s.cli(&["apply", "-f", ex.to_str().expect("path")]));
    assert!(
        out.contains("site.meridian.dev/onprem-frankfurt created"),
        "{out}"
    );
    assert!(
        out.contains("workload.meridian.dev/payroll-api created"),
        "{out}"
    );
    // Applying again changes nothing.
    let again = ok(&s.cli(&["apply", "-f", ex.to_str().expect("path")]));
    assert!(
        again.contains("site.meridian.dev/onprem-frankfurt unchanged"),
        "{again}"
    );

    let sites = ok(&s.cli(&["get", "sites"]));
    let header = sites.lines().next().expect("header");
    assert!(header.starts_with("NAME"), "{sites}");
    assert!(
        header.contains("JURISDICTION") && header.ends_with("AGE"),
        "{header}"
    );
    assert!(
        sites.contains("onprem-frankfurt") && sites.contains("DE"),
        "{sites}"
    );

    let all = ok(&s.cli(&["get", "wl", "-A"]));
    assert!(
        all.lines().next().expect("header").starts_with("NAMESPACE"),
        "{all}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&s.cli(&[
        "get",
        "workload",
        "payroll-api",
        "-n",
        "finance",
        "-o",
        "json",
    ])))
    .expect("json");
    assert_eq!(json["kind"], "Workload");
    assert_eq!(json["metadata"]["namespace"], "finance");
    let yaml = ok(&s.cli(&["get", "workloads", "-n", "finance", "-o", "yaml"]));
    assert!(
        yaml.contains("kind: List") && yaml.contains("payroll-api"),
        "{yaml}"
    );
    let names = ok(&s.cli(&["get", "wl", "-n", "finance", "-o", "name"]));
    assert!(
        names
            .lines()
            .any(|l| l == "workload.meridian.dev/payroll-api"),
        "{names}"
    );

    let described = ok(&s.cli(&["describe", "wl", "payroll-api", "-n", "finance"]));
    assert!(
        described.starts_with("Name:         payroll-api"),
        "{described}"
    );
    assert!(described.contains("Spec:"), "{described}");

    ok(&s.cli(&["delete", "wl", "payroll-api", "-n", "finance"]));
    let missing = s.cli(&["get", "wl", "payroll-api", "-n", "finance"]);
    assert_eq!(missing.status.code(), Some(1), "not found exits 1");
    assert!(
        stderr(&missing).contains("workloads \"payroll-api\" not found"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn apply_is_all_or_nothing_and_errors_name_file_doc_and_field() {
    let s = ServerProcess::start(BIN, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("workloads.yaml");
    std::fs::write(
        &file,
        "apiVersion: meridian.dev/v1\nkind: Site\nmetadata: {name: good}\nspec: {provider: onprem, region: r, jurisdiction: DE, operator: {name: A, jurisdiction: DE}}\n---\napiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {name: bad, namespace: default}\nspec:\n  type: service\n  task:\n    driver: exec\n    command: [x]\n    resources: {cpu: 1, memory: 12Zi}\n",
    )
    .expect("write");
    let out = s.cli(&["apply", "-f", file.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1), "bad input exits 1");
    let err = stderr(&out);
    assert!(
        err.contains(
            "workloads.yaml doc 2: spec.task.resources.memory: \"12Zi\" is not a quantity"
        ),
        "{err}"
    );
    assert!(err.contains("nothing was applied"), "{err}");
    // The valid first document was not written either.
    let get = s.cli(&["get", "site", "good"]);
    assert_eq!(get.status.code(), Some(1));

    // A YAML syntax error names line and column.
    std::fs::write(
        &file,
        "apiVersion: meridian.dev/v1\nkind: Site\nmetadata: {name: [\n",
    )
    .expect("write");
    let out = s.cli(&["apply", "-f", file.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line "), "{}", stderr(&out));

    // stdin works.
    let out = s.cli_with(
        &s.token,
        &["apply", "-f", "-"],
        Some("apiVersion: meridian.dev/v1\nkind: Project\nmetadata: {name: piped}\n"),
    );
    assert!(ok(&out).contains("project.meridian.dev/piped created"));
}

#[test]
fn exit_codes_and_rbac_messages() {
    let s = ServerProcess::start(BIN, &[]);
    let bad_kind = s.cli(&["get", "frobs"]);
    assert_eq!(bad_kind.status.code(), Some(1));
    assert!(
        stderr(&bad_kind).contains("wl"),
        "lists the kinds: {}",
        stderr(&bad_kind)
    );

    let viewer = ok(&s.cli(&["token", "create", "--role", "viewer"]));
    let viewer = viewer.trim();
    assert!(
        viewer.starts_with("mrd_") && !viewer.contains('\n'),
        "only the token on stdout"
    );
    assert!(s.cli_as(viewer, &["get", "projects"]).status.success());
    let denied = s.cli_as(
        viewer,
        &[
            "apply",
            "-f",
            examples_dir().join("sites.yaml").to_str().expect("path"),
        ],
    );
    assert_eq!(denied.status.code(), Some(1));
    assert!(
        stderr(&denied).contains("role viewer"),
        "{}",
        stderr(&denied)
    );

    let wrong = s.cli_as("mrd_wrong", &["get", "sites"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stderr(&wrong).contains("not valid"), "{}", stderr(&wrong));

    // An unreachable server is not the user's input: exit 2.
    let out = Command::new(BIN)
        .args([
            "get",
            "sites",
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "x",
        ])
        .env("MERIDIAN_CONFIG", s.dir.join("none.yaml"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));

    // Tokens are stored hashed: the token file is the only clear copy, mode 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.dir.join("admin.token"))
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let db = std::fs::read(s.dir.join("meridian.db")).expect("db");
    let wal = std::fs::read(s.dir.join("meridian.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes
                .windows(s.token.len())
                .any(|w| w == s.token.as_bytes()),
            "the clear admin token must not be stored"
        );
    }
}

#[test]
fn audit_verify_detects_tampering_offline() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = ServerProcess::start_in(BIN, tmp.path(), &[]);
    ok(&s.cli(&[
        "apply",
        "-f",
        examples_dir().join("sites.yaml").to_str().expect("path"),
    ]));
    let verified = ok(&s.cli(&["audit", "verify"]));
    assert!(verified.contains("audit log intact"), "{verified}");
    let log = ok(&s.cli(&["audit", "log"]));
    assert!(log.contains("Site/onprem-frankfurt"), "{log}");
    let dir = s.dir.clone();
    let status = s.stop();
    assert!(status.success(), "graceful stop on SIGTERM: {status:?}");

    let offline = Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(&dir)
        .output()
        .expect("run");
    assert!(offline.status.success(), "{}", stderr(&offline));

    // Alter the first entry a token wrote (the server's own entries, such as its term as
    // leader, come before it) in the database, as an intruder with file access would.
    let seq = tamper::forge_first_token_entry(&dir.join("meridian.db"));
    let offline = Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(&dir)
        .output()
        .expect("run");
    assert_eq!(offline.status.code(), Some(1), "tampering exits 1");
    let err = stderr(&offline);
    assert!(
        err.contains(&format!("entry {seq}")),
        "names the first bad entry ({seq}): {err}"
    );
}

#[test]
fn tls_beyond_loopback_and_contexts() {
    // 0.0.0.0 is beyond loopback: TLS with a generated CA is forced.
    let s = ServerProcess::builder(BIN).listen("0.0.0.0:0").start();
    assert!(s.url.starts_with("https://"), "{}", s.url);
    let ca = s.dir.join("ca.crt");
    assert!(ca.exists());
    let ca_arg = ca.to_str().expect("path");
    let without_ca = s.cli(&["get", "sites"]);
    assert_ne!(
        without_ca.status.code(),
        Some(0),
        "an untrusted certificate is refused"
    );
    let with_ca = ok(&s.cli(&["get", "projects", "--ca-file", ca_arg]));
    assert!(with_ca.contains("default"), "{with_ca}");

    // login saves a context; later commands need no flags.
    let config = s.dir.join("ctx.yaml");
    let login = Command::new(BIN)
        .args([
            "login",
            "--server",
            &s.url,
            "--token",
            &s.token,
            "--ca-file",
            ca_arg,
            "--context",
            "prod",
        ])
        .env("MERIDIAN_CONFIG", &config)
        .env_remove("MERIDIAN_SERVER")
        .env_remove("MERIDIAN_TOKEN")
        .output()
        .expect("login");
    assert!(login.status.success(), "{}", stderr(&login));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&config)
            .expect("config")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let get = Command::new(BIN)
        .args(["get", "projects", "-o", "name"])
        .env("MERIDIAN_CONFIG", &config)
        .env_remove("MERIDIAN_SERVER")
        .env_remove("MERIDIAN_TOKEN")
        .output()
        .expect("get");
    assert!(
        stdout(&get).contains("project.meridian.dev/default"),
        "{}",
        stderr(&get)
    );
}

#[test]
fn help_has_examples_for_every_verb() {
    for verb in [
        "apply", "get", "describe", "delete", "watch", "server", "demo", "login",
    ] {
        let out = Command::new(BIN)
            .args([verb, "--help"])
            .output()
            .expect("help");
        assert!(out.status.success());
        assert!(
            stdout(&out).contains("meridian"),
            "{verb} --help shows an example"
        );
    }
    for sub in [
        ["token", "create"],
        ["audit", "verify"],
        ["audit", "log"],
        ["policy", "install"],
        ["policy", "create"],
        ["policy", "test"],
        ["policy", "eval"],
        ["compliance", "status"],
        ["compliance", "report"],
    ] {
        let out = Command::new(BIN)
            .args([sub[0], sub[1], "--help"])
            .output()
            .expect("help");
        assert!(
            stdout(&out).contains("Example"),
            "{sub:?} --help shows an example"
        );
    }
}

#[test]
fn get_watch_shows_changes_made_by_another_client() {
    let s = ServerProcess::start(BIN, &[]);
    ok(&s.cli(&[
        "apply",
        "-f",
        examples_dir().join("projects.yaml").to_str().expect("path"),
    ]));
    ok(&s.cli(&[
        "apply",
        "-f",
        examples_dir()
            .join("workloads.yaml")
            .to_str()
            .expect("path"),
    ]));
    let mut watcher = Command::new(BIN)
        .args(["get", "wl", "-n", "finance", "-w", "-o", "name"])
        .env("MERIDIAN_SERVER", &s.url)
        .env("MERIDIAN_TOKEN", &s.token)
        .env("MERIDIAN_CONFIG", s.dir.join("none.yaml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("watch");
    let (tx, rx) = std::sync::mpsc::channel();
    let out = watcher.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The listing comes first.
    let first = rx.recv_timeout(Duration::from_secs(20)).expect("listing");
    assert!(first.starts_with("workload.meridian.dev/"), "{first}");
    // That line is the watch's own first event (a watch without a resourceVersion sends
    // the current objects after subscribing), so the watch is established: change an
    // object from another client.
    let patch = s.cli_with(
        &s.token,
        &["apply", "-f", "-"],
        Some("apiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {name: watched, namespace: finance}\nspec:\n  type: job\n  task: {driver: exec, command: [/bin/true], resources: {cpu: 100m, memory: 64Mi}}\n"),
    );
    ok(&patch);
    let mut seen = Vec::new();
    wait_until(
        Duration::from_secs(20),
        "the watcher to print ADDED workload.meridian.dev/watched",
        || {
            for line in rx.try_iter() {
                if line == "ADDED workload.meridian.dev/watched" {
                    return Ok(());
                }
                seen.push(line);
            }
            Err(seen.clone())
        },
    );
    let _ = watcher.kill();
    let _ = watcher.wait();
}

#[test]
fn an_existing_kubeconfig_context_is_used_when_nothing_else_is_set() {
    let s = ServerProcess::start(BIN, &[]);
    let kubeconfig = s.dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: meridian\nclusters:\n- name: m\n  cluster: {{server: \"{}\"}}\ncontexts:\n- name: meridian\n  context: {{cluster: m, user: admin}}\nusers:\n- name: admin\n  user: {{token: \"{}\"}}\n",
            s.url, s.token
        ),
    )
    .expect("write kubeconfig");
    let out = Command::new(BIN)
        .args(["get", "projects", "-o", "name"])
        .env("KUBECONFIG", &kubeconfig)
        .env("MERIDIAN_CONFIG", s.dir.join("no-meridian-config.yaml"))
        .env_remove("MERIDIAN_SERVER")
        .env_remove("MERIDIAN_TOKEN")
        .output()
        .expect("run");
    assert!(
        stdout(&out).contains("project.meridian.dev/default"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn policy_test_reads_v0_libraries_and_go_regex_syntax() {
    // A Gatekeeper-style library in Rego v0 with its tests, and RE2 syntax (`\d`, `(?i)`)
    // as OPA accepts it: detected per file, or forced with --v0-compatible.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("labels.rego"),
        "package k8srequiredlabels\n\nimport future.keywords.in\n\nviolation[{\"msg\": msg}] {\n           not regex.match(`^[a-f\\d]{4}$`, input.review.object.metadata.labels.costcentre)\n           msg := \"costcentre must be 4 hex digits\"\n}\n\n\
         upper[x] {\n  some x in input.names\n  regex.match(`(?i)^gpu`, x)\n}\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("labels_test.rego"),
        "package k8srequiredlabels\n\n\
         test_good {\n  count(violation) == 0 with input as {\"review\": {\"object\": {\"metadata\": {\"labels\": {\"costcentre\": \"a1b2\"}}}}}\n}\n\n\
         test_bad {\n  count(violation) == 1 with input as {\"review\": {\"object\": {\"metadata\": {\"labels\": {\"costcentre\": \"zz\"}}}}}\n}\n\n\
         test_case {\n  upper == {\"GPU-1\"} with input as {\"names\": [\"GPU-1\", \"cpu\"]}\n}\n",
    )
    .expect("write");
    for flags in [&["-v"][..], &["-v", "--v0-compatible"][..]] {
        let out = Command::new(BIN)
            .args(["policy", "test"])
            .args(flags)
            .arg(dir.path())
            .output()
            .expect("runs");
        let text = ok(&out);
        assert!(text.contains("PASS: 3/3"), "{flags:?}: {text}");
    }
    // Forced v1, the v0 files do not parse: exit 1 naming the file and line.
    let out = Command::new(BIN)
        .args(["policy", "test", "--rego-version", "v1"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("labels"), "{}", stdout(&out));
    assert!(stdout(&out).contains("--v0-compatible"), "{}", stdout(&out));
}

#[test]
fn policy_test_runs_rego_tests_like_opa_and_fails_on_a_failing_test() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("replicas.rego"),
        "package replicas\n\ndeny contains \"one replica\" if input.object.spec.replicas == 1\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("replicas_test.rego"),
        "package replicas_test\n\nimport data.replicas\n\n\
         test_denies_one if count(replicas.deny) == 1 with input as {\"object\": {\"spec\": {\"replicas\": 1}}}\n\n\
         test_allows_two if count(replicas.deny) == 0 with input as {\"object\": {\"spec\": {\"replicas\": 2}}}\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["policy", "test", "-v"])
        .arg(dir.path())
        .output()
        .expect("runs");
    let text = ok(&out);
    assert!(
        text.contains("data.replicas_test.test_denies_one: PASS"),
        "{text}"
    );
    assert!(text.contains("PASS: 2/2"), "{text}");
    // Without -v, like opa test, only the counts when everything passes.
    let out = Command::new(BIN)
        .args(["policy", "test"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert_eq!(ok(&out).trim(), "PASS: 2/2");

    // A failing test: exit 1, FAIL line and counts.
    std::fs::write(
        dir.path().join("wrong_test.rego"),
        "package wrong_test\n\nimport data.replicas\n\n\
         test_wrong if count(replicas.deny) == 1 with input as {\"object\": {\"spec\": {\"replicas\": 3}}}\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["policy", "test"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("data.wrong_test.test_wrong: FAIL"));
    assert!(stdout(&out).contains("FAIL: 1/3"), "{}", stdout(&out));
    // The failing expression, with file and line.
    assert!(
        stdout(&out).contains("wrong_test.rego:5:\n    test_wrong if count(replicas.deny) == 1"),
        "{}",
        stdout(&out)
    );
    let out = Command::new(BIN)
        .args(["policy", "test", "--format", "json"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let failed: Vec<&str> = json
        .as_array()
        .expect("array")
        .iter()
        .filter(|t| t["fail"] == true)
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["test_wrong"]);
    assert!(
        stderr(&out).contains("1 of 3 tests failed"),
        "{}",
        stderr(&out)
    );

    // Every built-in pack ships with tests, and they pass.
    let out = Command::new(BIN)
        .args(["policy", "test", "-v", "--pack", "all"])
        .output()
        .expect("runs");
    let text = ok(&out);
    assert!(
        text.contains("sovereignty/residency_declared_test.rego"),
        "{text}"
    );
    assert!(!text.contains("FAIL"), "{text}");

    let out = Command::new(BIN)
        .args(["policy", "test", "--pack", "nope"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the packs are sovereignty, baseline, ai"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn policy_install_eval_and_compliance_report() {
    let s = ServerProcess::start(BIN, &["--no-scheduler"]);
    ok(&s.cli(&["apply", "-f", examples_dir().to_str().expect("utf-8")]));
    let out = ok(&s.cli(&["policy", "install", "sovereignty", "ai", "baseline"]));
    assert!(
        out.contains("policy.meridian.dev/sovereignty-residency-declared created"),
        "{out}"
    );
    // Installing again changes nothing.
    let out = ok(&s.cli(&["policy", "install", "sovereignty"]));
    assert!(out.contains("unchanged"), "{out}");

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {name: export, namespace: finance}\n\
         spec:\n  type: job\n  replicas: 1\n  task:\n    driver: exec\n    command: [/bin/export]\n\
         \x20   resources: {cpu: 1, memory: 1Gi}\n    os: {family: linux}\n\
         \x20 data: {classification: personal, residency: [US]}\n",
    )
    .expect("write");
    // eval: what fires, nothing written, exit 1 because a deny policy would refuse it.
    let out = s.cli(&["policy", "eval", "-f", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Workload finance/export: DENIED"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("deny  sovereignty-allowed-locations"),
        "{}",
        stdout(&out)
    );
    // apply is refused with the policy's message and field, and exits 1.
    let out = s.cli(&["apply", "-f", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("admission denied by 1 policy (sovereignty-allowed-locations)"),
        "{}",
        stderr(&out)
    );

    // A warn policy's message is printed as a warning, and the object is created.
    let warned = dir.path().join("gpu.yaml");
    std::fs::write(
        &warned,
        "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {name: gpu-noqueue, namespace: research}\n\
         spec:\n  type: job\n  replicas: 1\n  task:\n    driver: exec\n    command: [/bin/train]\n\
         \x20   resources: {cpu: 1, memory: 1Gi, gpu: {count: 1}}\n    os: {family: linux}\n\
         \x20 data: {classification: internal, residency: [EU]}\n\
         \x20 tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]\n",
    )
    .expect("write");
    let out = s.cli(&["apply", "-f", warned.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Warning: [ai-gpu-queue]"),
        "{}",
        stderr(&out)
    );

    // The audit reports the estate: a table by policy and by framework, and OSCAL.
    let table = wait_until(
        Duration::from_secs(10),
        "compliance status to show baseline-owner-label NonCompliant",
        || {
            let table = ok(&s.cli(&["compliance", "status"]));
            if table.contains("baseline-owner-label") && table.contains("NonCompliant") {
                Ok(table)
            } else {
                Err(table)
            }
        },
    );
    assert!(table.contains("FRAMEWORK"), "{table}");
    assert!(table.contains("NIST SP 800-53"), "{table}");
    let oscal = ok(&s.cli(&["compliance", "report", "-o", "oscal"]));
    let doc: serde_json::Value = serde_json::from_str(&oscal).expect("OSCAL is JSON");
    assert!(doc["assessment-results"]["results"][0]["findings"].is_array());
    let rows = ok(&s.cli(&[
        "compliance",
        "report",
        "-o",
        "table",
        "--policy",
        "baseline-owner-label",
    ]));
    assert!(
        rows.lines()
            .skip(1)
            .all(|l| l.starts_with("baseline-owner-label")),
        "{rows}"
    );
}

#[test]
fn drain_evicts_services_which_the_scheduler_places_elsewhere() {
    let s = ServerProcess::start(BIN, &[]);
    ok(&s.cli(&["apply", "-f", examples_dir().to_str().expect("utf-8")]));
    s.mark_nodes_ready();
    let nodes_of = |workload: &str| -> Vec<String> {
        let out = ok(&s.cli(&["get", "allocations", "-A", "-o", "json"]));
        let list: serde_json::Value = serde_json::from_str(&out).expect("json");
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|a| a["spec"]["workload"] == workload)
            .map(|a| a["spec"]["node"].as_str().expect("node").to_owned())
            .collect()
    };
    let before = wait_until(
        Duration::from_secs(30),
        "both payroll-api replicas placed",
        || {
            let nodes = nodes_of("payroll-api");
            if nodes.len() == 2 {
                Ok(nodes)
            } else {
                Err(nodes)
            }
        },
    );
    let node = before[0].clone();

    let out = ok(&s.cli(&["drain", &node, "--dry-run"]));
    assert!(out.contains("would be evicted"), "{out}");
    assert_eq!(nodes_of("payroll-api"), before, "a dry run changes nothing");

    let out = ok(&s.cli(&["drain", &node]));
    assert!(out.contains(&format!("node/{node} cordoned")), "{out}");
    assert!(out.contains(&format!("node/{node} drained")), "{out}");
    wait_until(
        Duration::from_secs(30),
        &format!("both payroll-api replicas placed again, none on {node}"),
        || {
            let after = nodes_of("payroll-api");
            if after.len() == 2 && !after.contains(&node) {
                Ok(())
            } else {
                Err(after)
            }
        },
    );
    let out = ok(&s.cli(&["get", "node", &node, "-o", "json"]));
    assert!(out.contains("\"unschedulable\": true"), "{out}");
    // The drain is recorded: Evicted on the workload, Drained on the node (in `default`).
    let events = wait_until(
        Duration::from_secs(10),
        "the drain's Evicted and Drained events",
        || {
            let out = ok(&s.cli(&["get", "events", "-A", "-o", "wide"]));
            if out.contains("Evicted") && out.contains("Drained") {
                Ok(out)
            } else {
                Err(out)
            }
        },
    );
    assert!(
        events.lines().any(|l| l.contains("Evicted")
            && l.contains("workload/payroll-api")
            && l.contains("drain")),
        "{events}"
    );
    assert!(
        events.lines().any(|l| l.starts_with("default ")
            && l.contains("Drained")
            && l.contains(&format!("node/{node}"))),
        "{events}"
    );
    let out = ok(&s.cli(&["uncordon", &node]));
    assert!(out.contains("uncordoned"), "{out}");
}

/// Pids of live processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // Zombies have an empty command line; the test binary's own args never hold it.
        if text.contains(marker) && !text.contains("cargo") && !text.contains(BIN) {
            out.push(pid);
        }
    }
    out
}

fn kill_all(marker: &str) {
    for pid in processes_with(marker) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
}

#[test]
fn agents_run_work_fail_over_and_never_run_a_duplicate() {
    let s = ServerProcess::start(BIN, &["--node-lease", "2s"]);
    ok(&s.cli(&[
        "apply",
        "-f",
        examples_dir().join("sites.yaml").to_str().expect("utf-8"),
    ]));
    let dirs = tempfile::tempdir().expect("tempdir");
    let marker = format!("{}", 700_000 + rand_suffix());
    let _cleanup = KillAllOnDrop(marker.clone());
    let mut agents: Vec<(String, PathBuf, AgentProcess)> = Vec::new();
    for name in ["agent-a", "agent-b"] {
        let token = s.join_token("onprem-frankfurt");
        let dir = dirs.path().join(name);
        let agent = AgentProcess::start(&s, &dir, name, Some(token.trim()));
        agents.push((name.to_owned(), dir, agent));
    }
    wait_until(
        Duration::from_secs(30),
        "both agents registered and Ready",
        || {
            let out = stdout(&s.cli(&["get", "nodes"]));
            if out.matches("Ready").count() == 2 {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
    // The credential is kept, 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(agents[0].1.join("credential.json"))
        .expect("credential")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let manifest = dirs.path().join("svc.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {{name: hello, namespace: default}}\n\
             spec:\n  type: service\n  replicas: 1\n  task:\n    driver: exec\n\
             \x20   command: [/bin/sh, -c, \"echo started $MERIDIAN_ALLOCATION on $MERIDIAN_NODE; exec sleep {marker}\"]\n\
             \x20   resources: {{cpu: 250m, memory: 64Mi}}\n"
        ),
    )
    .expect("write");
    ok(&s.cli(&["apply", "-f", manifest.to_str().expect("utf-8")]));
    let running_on = |s: &ServerProcess| -> Option<String> {
        let out = stdout(&s.cli(&["get", "allocation", "hello-0", "-o", "json"]));
        let a: serde_json::Value = serde_json::from_str(&out).ok()?;
        (a["status"]["phase"] == "running")
            .then(|| a["spec"]["node"].as_str().unwrap_or("").to_owned())
    };
    let first = wait_until(Duration::from_secs(30), "hello-0 running", || {
        running_on(&s)
    });
    assert_eq!(processes_with(&marker).len(), 1, "one copy runs");
    let (i, other) = if first == "agent-a" { (0, 1) } else { (1, 0) };
    let log = agents[i].1.join("allocations/default_hello-0/stdout.log");
    let text = wait_until(
        Duration::from_secs(10),
        "the task's stdout captured",
        || std::fs::read_to_string(&log).ok().filter(|t| !t.is_empty()),
    );
    assert!(
        text.contains(&format!("started default/hello-0 on {first}")),
        "{text}"
    );
    // The scheduler and the agent said so in events, which describe shows.
    wait_until(
        Duration::from_secs(10),
        "Scheduled and Started events on hello-0",
        || {
            let out = stdout(&s.cli(&["describe", "allocation", "hello-0"]));
            if out.contains("Scheduled") && out.contains("Started") {
                Ok(())
            } else {
                Err(out)
            }
        },
    );

    // The host is lost: agent and task die together. The service moves to the other node.
    agents[i].2.kill9();
    kill_all(&marker);
    let second = wait_until(
        Duration::from_secs(30),
        &format!("hello-0 running on another node than {first}"),
        || running_on(&s).filter(|n| *n != first),
    );
    assert_eq!(second, agents[other].0);
    assert_eq!(processes_with(&marker).len(), 1);

    // The lost agent comes back (stored credential, no join token): nothing is assigned
    // to it any more, so it starts nothing.
    // An agent's first act after reconciling what it listed is to watch its allocations:
    // the server's open watches (only the agents watch here) show that it has.
    let agent_watches = |n: f64| {
        wait_until(
            Duration::from_secs(30),
            &format!("{n} open watches (one per live agent)"),
            || {
                let open = s.metric("meridian_watches");
                if open == n { Ok(()) } else { Err(open) }
            },
        );
    };
    agent_watches(1.0);
    let (name, dir, _) = &agents[i];
    let back = AgentProcess::start(&s, dir, name, None);
    agents[i].2 = back;
    wait_until(
        Duration::from_secs(15),
        "the returning agent Ready again",
        || {
            let out = stdout(&s.cli(&["get", "nodes"]));
            if out.matches("Ready").count() == 2 {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
    agent_watches(2.0);
    assert_eq!(
        processes_with(&marker).len(),
        1,
        "no duplicate after it returns"
    );

    // The running agent restarts: it adopts its task instead of starting a second copy.
    agents[other].2.kill9();
    agent_watches(1.0);
    let again = AgentProcess::start(&s, &agents[other].1, &agents[other].0, None);
    agents[other].2 = again;
    agent_watches(2.0);
    assert_eq!(processes_with(&marker).len(), 1, "adopted, not duplicated");
    wait_until(Duration::from_secs(30), "hello-0 running", || {
        running_on(&s)
    });

    // The workload is deleted: its task is stopped, nothing is left behind.
    ok(&s.cli(&["delete", "workload", "hello"]));
    wait_until(
        Duration::from_secs(30),
        "the task stopped once its allocation went away",
        || processes_with(&marker).is_empty(),
    );
}

fn rand_suffix() -> u32 {
    std::process::id() % 100_000
}

#[path = "../../agent/tests/support/guest.rs"]
mod guest;

/// Starts a server with the example sites and one joined agent; waits until it is Ready.
fn server_with_agent(dir: &Path, name: &str) -> (ServerProcess, AgentProcess) {
    let s = ServerProcess::start(BIN, &["--node-lease", "5s"]);
    ok(&s.cli(&[
        "apply",
        "-f",
        examples_dir().join("sites.yaml").to_str().expect("utf-8"),
    ]));
    let token = s.join_token("onprem-frankfurt");
    let agent = AgentProcess::start(&s, &dir.join(name), name, Some(token.trim()));
    wait_until(
        Duration::from_secs(30),
        "the agent registered and Ready",
        || {
            let out = stdout(&s.cli(&["get", "nodes"]));
            if out.contains("Ready") {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
    (s, agent)
}

fn allocation(s: &ServerProcess, name: &str) -> Option<serde_json::Value> {
    let out = stdout(&s.cli(&["get", "allocation", name, "-o", "json"]));
    serde_json::from_str(&out).ok()
}

/// Kills every process whose command line holds the marker, however the test ends
/// (a VM outlives its agent by design).
struct KillAllOnDrop(String);

impl Drop for KillAllOnDrop {
    fn drop(&mut self) {
        kill_all(&self.0);
    }
}

#[test]
fn a_vm_workload_boots_logs_its_console_and_is_stopped_through_qmp() {
    guest::check_tools();
    let (kernel, modules) = guest::cloud_kernel();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (s, _agent) = server_with_agent(tmp.path(), "vm-host");
    // The node offers what works here: exec and qemu, and container only when a container
    // engine answers (`docker info`), not merely when a docker CLI is installed.
    let node: serde_json::Value =
        serde_json::from_str(&ok(&s.cli(&["get", "node", "vm-host", "-o", "json"]))).expect("JSON");
    let engine = ["docker", "podman"].iter().any(|cli| {
        std::process::Command::new(cli)
            .arg("info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    let mut expected = vec!["exec", "qemu"];
    if engine {
        expected.push("container");
    }
    assert_eq!(node["spec"]["drivers"], serde_json::json!(expected));

    let initrd = guest::initramfs(tmp.path(), &modules, true);
    // A marker in the disk's name finds the QEMU process.
    let marker = format!("vmdisk{}", 800_000 + rand_suffix());
    let _cleanup = KillAllOnDrop(marker.clone());
    let disk = tmp.path().join(format!("{marker}.raw"));
    std::fs::write(&disk, vec![0u8; 1024 * 1024]).expect("disk");
    let manifest = tmp.path().join("vm.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {{name: tiny-vm, namespace: default}}\n\
             spec:\n  type: vm\n  task:\n    driver: qemu\n\
             \x20   disk: {{image: {}, format: raw, kernel: {}, initrd: {}, cmdline: console=ttyS0 quiet}}\n\
             \x20   resources: {{cpu: 1, memory: 128Mi}}\n",
            disk.display(),
            kernel.display(),
            initrd.display()
        ),
    )
    .expect("write");
    ok(&s.cli(&["apply", "-f", manifest.to_str().expect("utf-8")]));
    let running = wait_until(Duration::from_secs(60), "tiny-vm-0 running", || {
        allocation(&s, "tiny-vm-0").filter(|a| a["status"]["phase"] == "running")
    });
    let message = running["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("1 vCPU, 128 MiB, acceleration tcg"),
        "{message}"
    );
    // The serial console is the allocation's stdout log.
    let log = tmp
        .path()
        .join("vm-host/allocations/default_tiny-vm-0/stdout.log");
    wait_until(
        Duration::from_secs(60),
        &format!("GUEST-READY on the console ({})", log.display()),
        || match std::fs::read_to_string(&log) {
            Ok(text) if text.contains("GUEST-READY") => Ok(()),
            // The last lines, newest first.
            other => Err(other.map(|t| {
                t.lines()
                    .rev()
                    .take(10)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })),
        },
    );
    assert_eq!(processes_with(&marker).len(), 1, "one QEMU runs");

    // Deleting the workload stops the VM (power button, then quit) and leaves nothing.
    ok(&s.cli(&["delete", "workload", "tiny-vm"]));
    wait_until(
        Duration::from_secs(60),
        "QEMU stopped once its allocation went away",
        || processes_with(&marker).is_empty(),
    );
}

#[test]
fn health_checks_report_healthy_and_restart_what_fails_them() {
    guest::need(
        "a static /bin/busybox",
        std::path::Path::new("/bin/busybox").is_file(),
        "busybox-static",
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let (s, _agent) = server_with_agent(tmp.path(), "health-host");
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
    };
    let (web_port, dead_port) = (free_port(), free_port());
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("index.html"), "ok\n").expect("index");
    let marker = format!("{}", 900_000 + rand_suffix());
    let _cleanup = KillAllOnDrop(marker.clone());
    let manifest = tmp.path().join("health.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {{name: web, namespace: default}}\n\
             spec:\n  type: service\n  task:\n    driver: exec\n\
             \x20   command: [/bin/busybox, httpd, -f, -p, \"127.0.0.1:{web_port}\", -h, {www}]\n\
             \x20   resources: {{cpu: 100m, memory: 32Mi}}\n\
             \x20   health: {{http: {{port: {web_port}, path: /index.html}}, interval: 500ms, timeout: 400ms}}\n\
             ---\n\
             apiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {{name: deaf, namespace: default}}\n\
             spec:\n  type: service\n  restart: {{policy: always, backoff: 100ms}}\n  task:\n    driver: exec\n\
             \x20   command: [/bin/sleep, \"{marker}\"]\n\
             \x20   resources: {{cpu: 100m, memory: 32Mi}}\n\
             \x20   health: {{tcp: {{port: {dead_port}}}, interval: 300ms, timeout: 200ms, failureThreshold: 2}}\n",
            www = www.display()
        ),
    )
    .expect("write");
    ok(&s.cli(&["apply", "-f", manifest.to_str().expect("utf-8")]));

    // The server answers: healthy, with a condition saying so.
    let web = wait_until(Duration::from_secs(60), "web-0 healthy", || {
        let web = allocation(&s, "web-0");
        match web {
            Some(a) if a["status"]["health"]["state"] == "healthy" => Ok(a),
            other => Err(other),
        }
    });
    assert_eq!(web["status"]["health"]["message"], "HTTP 200");
    let conditions = web["status"]["conditions"].as_array().expect("conditions");
    assert_eq!(conditions[0]["type"], "Healthy");
    assert_eq!(conditions[0]["status"], "True");

    // Nothing listens on the other port: two failures in a row restart the task, as a
    // failed exit, per its restart policy (the backoff doubles, so the message stays up
    // longer each time).
    let deaf = wait_until(
        Duration::from_secs(60),
        "deaf-0 restarted after 2 failed health checks",
        || match allocation(&s, "deaf-0") {
            Some(a)
                if a["status"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("unhealthy (2 failed health checks in a row")) =>
            {
                Ok(a)
            }
            other => Err(other),
        },
    );
    assert!(deaf["status"]["restarts"].as_u64() >= Some(1), "{deaf}");
    // Waiting out its back-off: `restarting`, not `running` (a crash loop shows as one).
    assert_eq!(deaf["status"]["phase"], "restarting", "{deaf}");
    // Restarted, not duplicated: one copy runs at a time.
    assert!(processes_with(&marker).len() <= 1);
    ok(&s.cli(&["delete", "workload", "web", "deaf"]));
    wait_until(
        Duration::from_secs(30),
        "the tasks stopped once their workloads were deleted",
        || processes_with(&marker).is_empty(),
    );
}

#[test]
fn bench_placement_prints_one_json_object() {
    let out = Command::new(BIN)
        .args([
            "bench",
            "placement",
            "--nodes",
            "300",
            "--instances",
            "1000",
            "--json",
        ])
        .output()
        .expect("bench runs");
    let text = ok(&out);
    let report: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("stdout is one JSON object ({e}): {text}"));
    for key in [
        "nodes",
        "sites",
        "instances",
        "placed",
        "unplaceable",
        "placements_per_sec",
        "p50_us",
        "p99_us",
        "max_us",
        "build_fleet_ms",
        "total_ms",
    ] {
        assert!(report.get(key).is_some(), "{key} in {report}");
    }
    assert_eq!(report["nodes"], 300);
    assert_eq!(report["instances"], 1000);
    let placed = report["placed"].as_u64().unwrap();
    let unplaceable = report["unplaceable"].as_u64().unwrap();
    assert_eq!(placed + unplaceable, 1000);
    assert!(report["placements_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_placement_lists_sizes_and_names_a_bad_flag() {
    let out = Command::new(BIN)
        .args([
            "bench",
            "placement",
            "--nodes",
            "100,200",
            "--instances",
            "200",
            "--json",
        ])
        .output()
        .expect("bench runs");
    let reports: serde_json::Value = serde_json::from_str(ok(&out).trim()).expect("JSON");
    let sizes: Vec<u64> = reports
        .as_array()
        .expect("an array for a list of sizes")
        .iter()
        .map(|r| r["nodes"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, [100, 200]);

    let table = Command::new(BIN)
        .args(["bench", "placement", "--nodes", "100", "--instances", "100"])
        .output()
        .expect("bench runs");
    assert!(ok(&table).contains("decisions/s"));

    for bad in ["ten", "100,,200", "0"] {
        let out = Command::new(BIN)
            .args(["bench", "placement", "--nodes", bad])
            .output()
            .expect("bench runs");
        assert_eq!(
            out.status.code(),
            Some(1),
            "--nodes {bad}: bad input exits 1"
        );
        assert!(stderr(&out).contains("--nodes"), "{}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
}

/// `meridian login` without `--ca-file` fetches the server's CA and trusts it only once
/// its fingerprint is confirmed: with no terminal and no `--ca-fingerprint` it refuses,
/// saying what to pass; a wrong fingerprint is refused; the right one (in any common
/// form) saves the CA next to the config file (0600) in the context, and later commands
/// and `meridian kubeconfig` use it.
#[test]
fn login_fetches_the_ca_and_trusts_it_only_with_the_right_fingerprint() {
    use std::os::unix::fs::PermissionsExt;
    let s = ServerProcess::start(BIN, &["--tls"]);
    assert!(s.url.starts_with("https://"), "{}", s.url);
    let ca = std::fs::read(s.dir.join("ca.crt")).expect("ca.crt");
    let fingerprint = server::tls::pem_fingerprint(&ca).expect("a fingerprint");
    let home = tempfile::tempdir().expect("tempdir");
    let config = home.path().join("meridian").join("config.yaml");
    let meridian = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("MERIDIAN_CONFIG", &config)
            .env("HOME", home.path())
            .env_remove("MERIDIAN_SERVER")
            .env_remove("MERIDIAN_TOKEN")
            .env_remove("MERIDIAN_CA_FILE")
            .env_remove("KUBECONFIG");
        testkit::run(cmd, None)
    };
    let login = ["login", "--server", &s.url, "--token", &s.token];

    let out = meridian(&login);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--ca-fingerprint"), "{err}");
    assert!(!config.exists(), "nothing saved");

    let wrong = format!("sha256:{}", ["AB"; 32].join(":"));
    let out = meridian(&[&login[..], &["--ca-fingerprint", &wrong]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("refusing") && err.contains(&fingerprint),
        "{err}"
    );
    assert!(!config.exists(), "nothing saved");

    // As `openssl x509 -fingerprint` would print it, lower-case without the prefix.
    let typed = fingerprint
        .trim_start_matches("sha256:")
        .to_ascii_lowercase();
    let out = meridian(
        &[
            &login[..],
            &["--ca-fingerprint", &typed, "--context", "tls"],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let saved = config.with_file_name("tls.ca.crt");
    assert_eq!(std::fs::read(&saved).expect("the saved CA"), ca);
    assert_eq!(
        std::fs::metadata(&saved).expect("ca").permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(text.contains("tls.ca.crt"), "{text}");

    let projects = ok(&meridian(&["get", "projects", "-o", "name"]));
    assert!(
        projects.contains("project.meridian.dev/default"),
        "{projects}"
    );
    let kubeconfig = ok(&meridian(&["kubeconfig"]));
    let data = base64_of(&ca);
    assert!(kubeconfig.contains(&data), "the CA inline:\n{kubeconfig}");
}

/// Standard base64 (the kubeconfig's `certificate-authority-data`).
fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// At a terminal (a pty from util-linux `script`), login shows the CA's fingerprint and
/// saves the CA only when the user answers y.
#[test]
fn login_at_a_terminal_saves_the_ca_only_when_the_user_confirms_its_fingerprint() {
    let s = ServerProcess::start(BIN, &["--tls"]);
    let ca = std::fs::read(s.dir.join("ca.crt")).expect("ca.crt");
    let fingerprint = server::tls::pem_fingerprint(&ca).expect("a fingerprint");
    let home = tempfile::tempdir().expect("tempdir");
    for (answer, trusted) in [("n", false), ("y", true)] {
        let config = home.path().join(answer).join("config.yaml");
        let line = format!(
            "'{BIN}' login --server '{}' --token '{}' --context tty",
            s.url, s.token
        );
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"])
            .env("MERIDIAN_CONFIG", &config)
            .env_remove("MERIDIAN_SERVER")
            .env_remove("MERIDIAN_TOKEN")
            .env_remove("MERIDIAN_CA_FILE")
            .env_remove("KUBECONFIG");
        let out = testkit::run(cmd, Some(&format!("{answer}\n")));
        // `script` copies the terminal's output to its stdout.
        let shown = stdout(&out);
        assert!(shown.contains(&fingerprint), "{shown}{}", stderr(&out));
        assert_eq!(out.status.success(), trusted, "{answer}: {shown}");
        assert_eq!(
            config.with_file_name("tty.ca.crt").exists(),
            trusted,
            "{answer}: {shown}"
        );
        assert_eq!(config.exists(), trusted, "{answer}: {shown}");
    }
}

#[test]
fn policy_create_and_bundle_install() {
    let s = ServerProcess::start(BIN, &["--no-scheduler"]);
    ok(&s.cli(&["apply", "-f", examples_dir().to_str().expect("utf-8")]));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |p: &Path| p.to_str().expect("utf-8").to_owned();

    // create: flags become the spec.
    let rego = dir.path().join("one.rego");
    std::fs::write(
        &rego,
        "package one\n\ndeny contains \"one replica\" if input.object.spec.replicas == 1\n",
    )
    .expect("write");
    let params = dir.path().join("params.yaml");
    std::fs::write(&params, "min: 2\n").expect("write");
    let out = ok(&s.cli(&[
        "policy",
        "create",
        "one-replica",
        "-f",
        &path(&rego),
        "--kinds",
        "wl",
        "--enforcement",
        "warn",
        "--project",
        "finance",
        "--control",
        "NIST SP 800-53:CM-6",
        "--description",
        "two replicas at least",
        "--parameters",
        &path(&params),
        "--rego-version",
        "v1",
    ]));
    assert!(
        out.contains("policy.meridian.dev/one-replica created"),
        "{out}"
    );
    let stored: serde_json::Value =
        serde_json::from_str(&ok(&s.cli(&["get", "policy", "one-replica", "-o", "json"])))
            .expect("json");
    let spec = &stored["spec"];
    assert_eq!(spec["targets"], serde_json::json!(["Workload"]));
    assert_eq!(spec["enforcement"], "warn");
    assert_eq!(spec["match"]["projects"][0], "finance");
    assert_eq!(spec["controls"][0]["framework"], "NIST SP 800-53");
    assert_eq!(spec["controls"][0]["id"], "CM-6");
    assert_eq!(spec["parameters"]["min"], 2);
    assert_eq!(
        stored["metadata"]["annotations"]["policy.meridian.dev/rego-version"],
        "v1"
    );

    // It exists: refused without --overwrite, replaced with it.
    let out = s.cli(&["policy", "create", "one-replica", "-f", &path(&rego)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--overwrite"), "{}", stderr(&out));
    let out = ok(&s.cli(&[
        "policy",
        "create",
        "one-replica",
        "-f",
        &path(&rego),
        "--overwrite",
    ]));
    assert!(
        out.contains("policy.meridian.dev/one-replica configured"),
        "{out}"
    );

    // The server's 422 with the Rego line; a missing file names the flag.
    let broken = dir.path().join("broken.rego");
    std::fs::write(
        &broken,
        "package broken\n\ndeny contains x if {\n  x := \n}\n",
    )
    .expect("write");
    let out = s.cli(&["policy", "create", "broken", "-f", &path(&broken)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line "), "{}", stderr(&out));
    let out = s.cli(&["policy", "create", "x", "-f", "/nonexistent/x.rego"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("-f /nonexistent/x.rego"),
        "{}",
        stderr(&out)
    );

    // A bundle: a policy importing a library, data at the root, a passing test.
    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(bundle.join("lib")).expect("mkdir");
    std::fs::create_dir_all(bundle.join("workloads")).expect("mkdir");
    std::fs::write(
        bundle.join("lib/replicas.rego"),
        "package lib.replicas\n\ntoo_few(o) if o.spec.replicas < data.settings.min\n",
    )
    .expect("write");
    std::fs::write(
        bundle.join("workloads/min_replicas.rego"),
        "package workloads.min_replicas\n\nimport data.lib.replicas\n\n\
         deny contains \"too few replicas\" if replicas.too_few(input.object)\n",
    )
    .expect("write");
    std::fs::write(
        bundle.join("workloads/min_replicas_test.rego"),
        "package workloads.min_replicas_test\n\nimport data.workloads.min_replicas\n\n\
         test_one_is_too_few if {\n  count(min_replicas.deny) == 1 with input as {\"object\": {\"spec\": {\"replicas\": 1}}} with data.settings.min as 2\n}\n",
    )
    .expect("write");
    std::fs::write(bundle.join("data.json"), r#"{"settings": {"min": 2}}"#).expect("write");

    let out = ok(&s.cli(&["policy", "install", &path(&bundle), "--dry-run"]));
    assert!(
        out.contains("policy.meridian.dev/workloads-min-replicas created (dry run)"),
        "{out}"
    );
    let out = s.cli(&["get", "policy", "workloads-min-replicas"]);
    assert_eq!(out.status.code(), Some(1), "a dry run writes nothing");

    let out = ok(&s.cli(&["policy", "install", &path(&bundle)]));
    assert!(
        out.contains("policy.meridian.dev/workloads-min-replicas created"),
        "{out}"
    );
    let stored: serde_json::Value = serde_json::from_str(&ok(&s.cli(&[
        "get",
        "policy",
        "workloads-min-replicas",
        "-o",
        "json",
    ])))
    .expect("json");
    assert_eq!(stored["spec"]["modules"][0]["name"], "lib/replicas.rego");
    assert_eq!(stored["spec"]["data"]["settings"]["min"], 2);

    // A failing test refuses the install, unless --skip-tests.
    std::fs::write(
        bundle.join("workloads/wrong_test.rego"),
        "package workloads.wrong_test\n\nimport data.workloads.min_replicas\n\n\
         test_wrong if {\n  count(min_replicas.deny) == 1 with input as {\"object\": {\"spec\": {\"replicas\": 5}}} with data.settings.min as 2\n}\n",
    )
    .expect("write");
    std::fs::write(bundle.join("data.json"), r#"{"settings": {"min": 3}}"#).expect("write");
    let out = s.cli(&["policy", "install", &path(&bundle)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("1 of 2 tests failed, so nothing was installed"),
        "{}",
        stderr(&out)
    );
    let stored: serde_json::Value = serde_json::from_str(&ok(&s.cli(&[
        "get",
        "policy",
        "workloads-min-replicas",
        "-o",
        "json",
    ])))
    .expect("json");
    assert_eq!(stored["spec"]["data"]["settings"]["min"], 2, "unchanged");
    let out = ok(&s.cli(&["policy", "install", &path(&bundle), "--skip-tests"]));
    assert!(
        out.contains("policy.meridian.dev/workloads-min-replicas configured"),
        "{out}"
    );
}

#[test]
fn admission_denials_show_in_the_audit_log() {
    let s = ServerProcess::start(BIN, &["--no-scheduler"]);
    ok(&s.cli(&["apply", "-f", examples_dir().to_str().expect("utf-8")]));
    let dir = tempfile::tempdir().expect("tempdir");
    let rego = dir.path().join("no_jobs.rego");
    std::fs::write(
        &rego,
        "package no_jobs\n\ndeny contains \"no jobs here\" if input.object.spec.type == \"job\"\n",
    )
    .expect("write");
    ok(&s.cli(&[
        "policy",
        "create",
        "no-jobs",
        "-f",
        rego.to_str().expect("utf-8"),
        "--kinds",
        "Workload",
    ]));
    let job = dir.path().join("job.yaml");
    std::fs::write(
        &job,
        "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {name: nightly, namespace: finance}\n\
         spec:\n  type: job\n  replicas: 1\n  task:\n    driver: exec\n    command: [/bin/true]\n\
         \x20   resources: {cpu: 1, memory: 1Gi}\n    os: {family: linux}\n\
         \x20 data: {classification: internal, residency: [EU]}\n",
    )
    .expect("write");
    let out = s.cli(&["apply", "-f", job.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let log = ok(&s.cli(&["audit", "log"]));
    let line = log
        .lines()
        .find(|l| l.contains("Workload/finance/nightly"))
        .unwrap_or_else(|| panic!("the denial in\n{log}"));
    assert!(line.contains("denied by no-jobs"), "{line}");
    assert!(
        log.lines().next().expect("header").contains("ADMISSION"),
        "{log}"
    );
    assert!(ok(&s.cli(&["audit", "verify"])).contains("audit log intact"));
}
