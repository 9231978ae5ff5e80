//! Real Kubernetes clients against a real `meridian server` on loopback: the `kubectl`
//! binary (the one on `PATH`, or `$MERIDIAN_KUBECTL`) with a kubeconfig printed by
//! `meridian kubeconfig`, and the Python clients (PyPI `kubernetes`, `kr8s` and
//! `lightkube`, pinned, installed into a venv under the target directory), all over TLS
//! with the server's generated CA from the kubeconfig. Nothing is mocked.
//!
//! A missing kubectl or Python is a failure, not a skip: `scripts/test` installs them.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use testkit::{ServerProcess, examples_dir, failed, ok, stderr};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

/// A `meridian server` over TLS with a kubeconfig for its admin token.
struct Server {
    server: ServerProcess,
    kubeconfig: PathBuf,
}

impl std::ops::Deref for Server {
    type Target = ServerProcess;
    fn deref(&self) -> &ServerProcess {
        &self.server
    }
}

impl Server {
    fn start() -> Self {
        // TLS with the generated CA, as a server serves by default (`--tls` keeps testkit
        // from asking for plain HTTP): kubectl sends no bearer token over plain http
        // (kubernetes/kubectl#744).
        let server = ServerProcess::start(BIN, &["--tls"]);
        let mut s = Self {
            kubeconfig: server.dir.join("kubeconfig"),
            server,
        };
        let token = s.token.clone();
        s.kubeconfig = s.kubeconfig_for(&token, "admin");
        s
    }

    /// `meridian kubeconfig` for `token`, written to a file named after `name`.
    fn kubeconfig_for(&self, token: &str, name: &str) -> PathBuf {
        let out = Command::new(BIN)
            .args(["kubeconfig", "--context", name, "--ca-file"])
            .arg(self.dir.join("ca.crt"))
            .env("MERIDIAN_SERVER", &self.url)
            .env("MERIDIAN_TOKEN", token)
            .env("MERIDIAN_CONFIG", self.dir.join("no-config.yaml"))
            .env_remove("KUBECONFIG")
            .output()
            .expect("meridian kubeconfig");
        let text = ok(&out);
        assert!(text.contains(&self.url), "{text}");
        assert!(text.contains("certificate-authority-data"), "{text}");
        let path = self.dir.join(format!("kubeconfig-{name}"));
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    fn meridian(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("--ca-file")
            .arg(self.dir.join("ca.crt"))
            .env("MERIDIAN_SERVER", &self.url)
            .env("MERIDIAN_TOKEN", &self.token)
            .env("MERIDIAN_CONFIG", self.dir.join("no-config.yaml"))
            .output()
            .expect("meridian runs")
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(&self.kubeconfig, args, None, &[])
    }

    fn kubectl_with(
        &self,
        kubeconfig: &Path,
        args: &[&str],
        stdin: Option<&str>,
        env: &[(&str, &str)],
    ) -> Output {
        let mut cmd = kubectl_command(kubeconfig, &self.dir);
        cmd.args(args).envs(env.iter().copied());
        testkit::run(cmd, stdin)
    }
}

/// The kubectl under test: `$MERIDIAN_KUBECTL`, else `kubectl` on `PATH`. Missing is a
/// failure: the suite exists to show kubectl works.
fn kubectl_binary() -> String {
    let bin = std::env::var("MERIDIAN_KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
    let found = Command::new(&bin)
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "kubectl not found ({bin}): install it (Debian: apt-get install kubernetes-client) \
         or set MERIDIAN_KUBECTL; scripts/test does this"
    );
    bin
}

fn kubectl_command(kubeconfig: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(kubectl_binary());
    cmd.env("KUBECONFIG", kubeconfig)
        // Discovery and OpenAPI caches per test, so tests never see each other's servers.
        .env("KUBECACHEDIR", dir.join("kube-cache"))
        .env("HOME", dir);
    cmd
}

fn example(name: &str) -> String {
    examples_dir().join(name).to_str().expect("path").to_owned()
}

/// Lines of a child's stdout, read on a thread.
fn lines_of(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Wait (generously) for a line matching `want`; returns what was seen otherwise.
fn wait_for_line(
    rx: &std::sync::mpsc::Receiver<String>,
    want: impl Fn(&str) -> bool,
) -> Result<String, Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if want(&line) => return Ok(line),
            Ok(line) => seen.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    Err(seen)
}

#[test]
fn kubectl_discovers_meridian_kinds() {
    let s = Server::start();
    let resources = ok(&s.kubectl(&["api-resources"]));
    let line = |name: &str| {
        resources
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{resources}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    // NAME SHORTNAMES APIVERSION NAMESPACED KIND
    assert_eq!(
        line("workloads"),
        ["workloads", "wl", "meridian.dev/v1", "true", "Workload"]
    );
    assert_eq!(
        line("allocations"),
        [
            "allocations",
            "alloc",
            "meridian.dev/v1",
            "true",
            "Allocation"
        ]
    );
    assert_eq!(
        line("sites"),
        ["sites", "st", "meridian.dev/v1", "false", "Site"]
    );
    assert_eq!(
        line("nodes"),
        ["nodes", "no", "meridian.dev/v1", "false", "Node"]
    );
    assert_eq!(line("namespaces")[..2], ["namespaces", "ns"]);
    let versions = ok(&s.kubectl(&["api-versions"]));
    assert!(
        versions.lines().any(|l| l == "meridian.dev/v1"),
        "{versions}"
    );
    // `kubectl explain` reads the published schema.
    let explain = ok(&s.kubectl(&["explain", "workloads.spec.task"]));
    assert!(explain.contains("resources"), "{explain}");
}

#[test]
fn kubectl_apply_get_edit_and_delete() {
    let s = Server::start();
    let ex = examples_dir();
    let applied = ok(&s.kubectl(&["apply", "-f", ex.to_str().expect("path")]));
    assert!(
        applied.contains("workload.meridian.dev/payroll-api created"),
        "{applied}"
    );
    assert!(
        applied.contains("site.meridian.dev/onprem-frankfurt created"),
        "{applied}"
    );

    // Server-side printing: the columns of `meridian get`, with Age.
    let table = ok(&s.kubectl(&["get", "workloads", "-n", "finance"]));
    let header: Vec<&str> = table
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "TYPE",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "DRIVER",
            "RESIDENCY",
            "PRIORITY",
            "AGE"
        ],
        "{table}"
    );
    let payroll = table
        .lines()
        .find(|l| l.starts_with("payroll-api "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        payroll.contains("service") && payroll.contains("/2"),
        "{payroll}"
    );
    let wide = ok(&s.kubectl(&["get", "wl", "-n", "finance", "-o", "wide"]));
    assert!(
        wide.lines().next().expect("header").contains("COMPLIANCE"),
        "{wide}"
    );
    let all = ok(&s.kubectl(&["get", "wl", "-A"]));
    assert!(all.starts_with("NAMESPACE"), "{all}");
    assert!(all.contains("research"), "{all}");
    let nodes = ok(&s.kubectl(&["get", "nodes"]));
    assert!(
        nodes.lines().next().expect("header").contains("CPU-FREE"),
        "{nodes}"
    );
    let sites = ok(&s.kubectl(&["get", "st", "onprem-frankfurt"]));
    assert!(
        sites.contains("JURISDICTION") && sites.contains("DE"),
        "{sites}"
    );

    let json: serde_json::Value = serde_json::from_str(&ok(&s.kubectl(&[
        "get",
        "wl",
        "payroll-api",
        "-n",
        "finance",
        "-o",
        "json",
    ])))
    .expect("json");
    assert_eq!(json["kind"], "Workload");
    assert_eq!(json["spec"]["replicas"], 2);
    let yaml = ok(&s.kubectl(&["get", "wl", "payroll-api", "-n", "finance", "-o", "yaml"]));
    assert!(
        yaml.contains("kind: Workload") && yaml.contains("namespace: finance"),
        "{yaml}"
    );
    let selected = ok(&s.kubectl(&[
        "get",
        "wl",
        "-n",
        "finance",
        "-l",
        "app=payroll",
        "-o",
        "name",
    ]));
    assert_eq!(selected.trim(), "workload.meridian.dev/payroll-api");
    let path = ok(&s.kubectl(&[
        "get",
        "wl",
        "-n",
        "finance",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]));
    assert!(path.contains("payroll-api"), "{path}");

    // Another client sets a field; kubectl apply of a changed manifest merges.
    ok(&s.kubectl(&[
        "annotate",
        "wl",
        "payroll-api",
        "-n",
        "finance",
        "owner=ops-team",
    ]));
    let manifest = std::fs::read_to_string(ex.join("workloads.yaml")).expect("read");
    let first = manifest.split("\n---").next().expect("first document");
    assert!(first.contains("replicas: 2"), "{first}");
    let changed = first.replace("replicas: 2", "replicas: 3");
    let reapplied = ok(&s.kubectl_with(&s.kubeconfig, &["apply", "-f", "-"], Some(&changed), &[]));
    assert!(reapplied.contains("payroll-api configured"), "{reapplied}");
    let after: serde_json::Value = serde_json::from_str(&ok(&s.kubectl(&[
        "get",
        "wl",
        "payroll-api",
        "-n",
        "finance",
        "-o",
        "json",
    ])))
    .expect("json");
    assert_eq!(after["spec"]["replicas"], 3);
    assert_eq!(after["metadata"]["annotations"]["owner"], "ops-team");
    // Applying the same manifest again writes nothing. (kubectl may still say
    // "configured": Meridian stores `PORT: 8080` as "8080" and `cpu: 2` as "2", so
    // kubectl's three-way merge sends those fields again; the server sees no change.)
    ok(&s.kubectl_with(&s.kubeconfig, &["apply", "-f", "-"], Some(&changed), &[]));
    let again: serde_json::Value = serde_json::from_str(&ok(&s.kubectl(&[
        "get",
        "wl",
        "payroll-api",
        "-n",
        "finance",
        "-o",
        "json",
    ])))
    .expect("json");
    assert_eq!(
        again["metadata"]["resourceVersion"],
        after["metadata"]["resourceVersion"]
    );

    // kubectl edit with an editor that is a script.
    let editor = s.dir.join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/priority: 100/priority: 250/' \"$1\"\n",
    )
    .expect("editor");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let edited = ok(&s.kubectl_with(
        &s.kubeconfig,
        &["edit", "wl", "payroll-api", "-n", "finance"],
        None,
        &[
            ("EDITOR", editor.to_str().expect("path")),
            ("KUBE_EDITOR", editor.to_str().expect("path")),
        ],
    ));
    assert!(edited.contains("payroll-api edited"), "{edited}");
    let priority = ok(&s.kubectl(&[
        "get",
        "wl",
        "payroll-api",
        "-n",
        "finance",
        "-o",
        "jsonpath={.spec.priority}",
    ]));
    assert_eq!(priority.trim(), "250");

    ok(&s.kubectl(&["label", "wl", "payroll-api", "-n", "finance", "env=prod"]));
    ok(&s.kubectl(&[
        "patch",
        "wl",
        "payroll-api",
        "-n",
        "finance",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"replicas":1}}"#,
    ]));
    let described = ok(&s.kubectl(&["describe", "wl", "payroll-api", "-n", "finance"]));
    assert!(
        described.contains("env=prod") && described.contains("Desired Replicas:"),
        "{described}"
    );

    let deleted = ok(&s.kubectl(&["delete", "wl", "payroll-api", "-n", "finance"]));
    assert!(
        deleted.contains("payroll-api\" deleted") || deleted.contains("payroll-api deleted"),
        "{deleted}"
    );
    let gone = failed(&s.kubectl(&["get", "wl", "payroll-api", "-n", "finance"]));
    assert!(
        gone.contains("NotFound") || gone.contains("not found"),
        "{gone}"
    );
}

#[test]
fn kubectl_get_watch_sees_a_change_by_another_client() {
    let s = Server::start();
    ok(&s.kubectl(&["apply", "-f", &example("projects.yaml")]));
    ok(&s.kubectl(&["apply", "-f", &example("workloads.yaml")]));
    let mut watcher = kubectl_command(&s.kubeconfig, &s.dir)
        .args(["get", "wl", "-n", "finance", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let rx = lines_of(&mut watcher);
    let listed = wait_for_line(&rx, |l| l.starts_with("payroll-api "));
    assert!(listed.is_ok(), "the listing never showed: {listed:?}");
    // Another client (meridian's own CLI) creates an object; the watch shows it.
    let created = Command::new(BIN)
        .args(["apply", "-f", "-", "--ca-file"])
        .arg(s.dir.join("ca.crt"))
        .env("MERIDIAN_SERVER", &s.url)
        .env("MERIDIAN_TOKEN", &s.token)
        .env("MERIDIAN_CONFIG", s.dir.join("no-config.yaml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(
                b"apiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {name: watched, namespace: finance}\nspec:\n  type: job\n  task: {driver: exec, command: [/bin/true], resources: {cpu: 100m, memory: 64Mi}}\n",
            )?;
            c.wait_with_output()
        })
        .expect("meridian apply");
    ok(&created);
    let seen = wait_for_line(&rx, |l| l.starts_with("watched "));
    let _ = watcher.kill();
    let _ = watcher.wait();
    let line = seen.unwrap_or_else(|seen| panic!("the change never showed: {seen:?}"));
    assert!(line.contains("job"), "a table row: {line}");
}

/// An admission denial recorded by the server's event recorder, seen by `kubectl get
/// events`, `kubectl describe workload` (which finds events by the involved object's
/// name, namespace, kind and uid through `/api/v1/namespaces/{ns}/events`) and
/// `meridian describe`.
#[test]
fn kubectl_get_events_and_describe_show_an_admission_denial() {
    let s = Server::start();
    ok(&s.kubectl(&["apply", "-f", &example("projects.yaml")]));
    ok(&s.kubectl(&["apply", "-f", &example("workloads.yaml")]));
    let policy = "apiVersion: meridian.dev/v1\nkind: Policy\nmetadata: {name: frozen}\nspec:\n  enforcement: deny\n  targets: [Workload]\n  rego: |\n    package frozen\n    deny contains \"workload is frozen\" if input.object.metadata.labels.frozen == \"yes\"\n";
    ok(&s.kubectl_with(&s.kubeconfig, &["apply", "-f", "-"], Some(policy), &[]));
    let denied = s.kubectl(&["label", "wl", "payroll-api", "-n", "finance", "frozen=yes"]);
    assert!(!denied.status.success(), "the label was denied");
    let deadline = Instant::now() + Duration::from_secs(15);
    let events = loop {
        let out = ok(&s.kubectl(&["get", "events", "-n", "finance"]));
        if out.contains("PolicyDenied") || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(events.starts_with("LAST SEEN"), "{events}");
    let row = events
        .lines()
        .find(|l| l.contains("PolicyDenied"))
        .unwrap_or_else(|| panic!("no PolicyDenied event: {events}"));
    assert!(
        row.contains("Warning") && row.contains("workload/payroll-api"),
        "{row}"
    );
    assert!(row.contains("workload is frozen"), "{row}");
    let described = ok(&s.kubectl(&["describe", "workload", "payroll-api", "-n", "finance"]));
    let section = described
        .split("Events:")
        .nth(1)
        .unwrap_or_else(|| panic!("no Events section: {described}"));
    assert!(
        section.contains("Warning") && section.contains("PolicyDenied"),
        "{described}"
    );
    let ours = ok(&s.meridian(&["describe", "workload", "payroll-api", "-n", "finance"]));
    let section = ours
        .split("Events:")
        .nth(1)
        .unwrap_or_else(|| panic!("no Events section: {ours}"));
    assert!(
        section.contains("Type") && section.contains("PolicyDenied"),
        "{ours}"
    );
    assert!(section.contains("admission"), "{ours}");
    let listed = ok(&s.meridian(&["get", "events", "-n", "finance"]));
    assert!(listed.starts_with("LAST SEEN"), "{listed}");
    assert!(listed.contains("PolicyDenied"), "{listed}");
    // An object without events says so (workloads have the scheduler's now).
    let quiet = ok(&s.meridian(&["describe", "project", "finance"]));
    assert!(quiet.contains("Events:       <none>"), "{quiet}");
}

#[test]
fn kubectl_get_endpoints_lists_each_workloads_endpoints() {
    let s = Server::start();
    ok(&s.kubectl(&["apply", "-f", &example("projects.yaml")]));
    ok(&s.kubectl(&["apply", "-f", &example("workloads.yaml")]));
    // No agent runs here: nothing is ready, so every workload has no endpoints yet.
    let out = ok(&s.kubectl(&["get", "endpoints", "-n", "finance"]));
    let header = out.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("NAME") && header.contains("ENDPOINTS") && header.contains("AGE"),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.starts_with("payroll-api"))
        .unwrap_or_else(|| panic!("no payroll-api row: {out}"));
    assert!(row.contains("<none>"), "{row}");
    let one = ok(&s.kubectl(&["get", "ep", "payroll-api", "-n", "finance", "-o", "json"]));
    let v: serde_json::Value = serde_json::from_str(&one).expect("json");
    assert_eq!(v["kind"], "Endpoints", "{one}");
    assert_eq!(v["metadata"]["name"], "payroll-api");
    let ours = ok(&s.meridian(&["get", "endpoints", "-n", "finance"]));
    assert!(ours.starts_with("NAME"), "{ours}");
    assert!(
        ours.lines()
            .any(|l| l.starts_with("payroll-api") && l.contains("<none>")),
        "{ours}"
    );
}

#[test]
fn kubectl_namespaces_are_projects() {
    let s = Server::start();
    let created = ok(&s.kubectl(&["create", "namespace", "payments"]));
    assert!(created.contains("namespace/payments created"), "{created}");
    let namespaces = ok(&s.kubectl(&["get", "namespaces"]));
    assert!(namespaces.starts_with("NAME"), "{namespaces}");
    assert!(
        namespaces
            .lines()
            .any(|l| l.starts_with("payments ") && l.contains("Active")),
        "{namespaces}"
    );
    let project = ok(&s.meridian(&["get", "project", "payments", "-o", "name"]));
    assert_eq!(project.trim(), "project.meridian.dev/payments");
    let ns = ok(&s.kubectl(&["get", "projects"]));
    assert!(ns.contains("payments"), "{ns}");
}

#[test]
fn kubectl_errors_name_the_field_the_conflict_and_the_role() {
    let s = Server::start();
    ok(&s.kubectl(&["apply", "-f", &example("projects.yaml")]));
    ok(&s.kubectl(&["apply", "-f", &example("workloads.yaml")]));

    // Validation: an invalid value and an unknown field each name their field.
    let bad = "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {name: bad, namespace: finance}\nspec:\n  type: service\n  replicas: -1\n  task: {driver: exec, command: [x], resources: {cpu: 100m, memory: 64Mi}}\n";
    let e = failed(&s.kubectl_with(&s.kubeconfig, &["apply", "-f", "-"], Some(bad), &[]));
    assert!(e.contains("spec.replicas"), "{e}");
    let unknown = "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {name: typo, namespace: finance}\nspec:\n  type: service\n  task: {driver: exec, comand: [x], resources: {cpu: 100m, memory: 64Mi}}\n";
    let e = failed(&s.kubectl_with(&s.kubeconfig, &["apply", "-f", "-"], Some(unknown), &[]));
    assert!(e.contains("comand"), "{e}");
    // With --validate=false the server drops it (Ignore); with warn it says so.
    let warned = s.kubectl_with(
        &s.kubeconfig,
        &["create", "--validate=warn", "-f", "-"],
        Some(unknown.replace("comand", "command: [x], extra").as_str()),
        &[],
    );
    if kubectl_supports_server_side_validation(&s) {
        ok(&warned);
        assert!(
            stderr(&warned).contains("unknown field"),
            "{}",
            stderr(&warned)
        );
    }

    // Conflict: replace with a stale resourceVersion.
    let json = ok(&s.kubectl(&["get", "wl", "payroll-api", "-n", "finance", "-o", "json"]));
    ok(&s.kubectl(&[
        "annotate",
        "wl",
        "payroll-api",
        "-n",
        "finance",
        "touched=yes",
    ]));
    let e = failed(&s.kubectl_with(&s.kubeconfig, &["replace", "-f", "-"], Some(&json), &[]));
    assert!(e.contains("Conflict") || e.contains("modified"), "{e}");
    assert!(e.contains("latest version"), "says to re-read: {e}");

    // Forbidden: a viewer may read but not write, and is told its role and the verb.
    let viewer = ok(&s.meridian(&["token", "create", "--role", "viewer"]));
    let viewer_config = s.kubeconfig_for(viewer.trim(), "viewer");
    let got = ok(&s.kubectl_with(&viewer_config, &["get", "wl", "-n", "finance"], None, &[]));
    assert!(got.contains("payroll-api"), "{got}");
    let new_workload = "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {name: by-viewer, namespace: finance}\nspec:\n  type: job\n  task: {driver: exec, command: [x], resources: {cpu: 100m, memory: 64Mi}}\n";
    let e = failed(&s.kubectl_with(
        &viewer_config,
        &["apply", "-f", "-"],
        Some(new_workload),
        &[],
    ));
    assert!(e.contains("Forbidden") || e.contains("forbidden"), "{e}");
    assert!(e.contains("role viewer"), "{e}");
    assert!(
        e.contains("cannot patch") || e.contains("cannot create"),
        "{e}"
    );

    // A project-scoped token sees nothing of other projects.
    let scoped = ok(&s.meridian(&["token", "create", "--role", "operator", "-n", "research"]));
    let scoped_config = s.kubeconfig_for(scoped.trim(), "research");
    let all = ok(&s.kubectl_with(
        &scoped_config,
        &["get", "wl", "-A", "-o", "name"],
        None,
        &[],
    ));
    assert!(!all.is_empty(), "its own project is visible");
    assert!(!all.contains("payroll-api"), "{all}");
    let e = failed(&s.kubectl_with(&scoped_config, &["get", "wl", "-n", "finance"], None, &[]));
    assert!(e.contains("NotFound") || e.contains("not found"), "{e}");
}

/// kubectl 1.27+ validates on the server (`fieldValidation`); older ones validate
/// against OpenAPI v2 themselves and have no `--validate=warn`.
fn kubectl_supports_server_side_validation(s: &Server) -> bool {
    let out = s.kubectl(&["version", "--client", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["clientVersion"]["minor"]
        .as_str()
        .and_then(|m| m.trim_end_matches('+').parse::<u32>().ok())
        .is_some_and(|minor| minor >= 27)
}

/// The Python clients under test, pinned, with the module each is imported as: the
/// official client (PyPI `kubernetes`), kr8s and lightkube.
const PYTHON_CLIENTS: [(&str, &str); 3] = [
    ("kubernetes==37.0.3", "kubernetes"),
    ("kr8s==0.20.15", "kr8s"),
    ("lightkube==1.0.1", "lightkube"),
];

/// A venv under the target directory with [`PYTHON_CLIENTS`] installed. A missing Python
/// or package is a failure, never a skip.
fn python_with_clients() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../pyenv");
    let python = venv.join("bin/python");
    // Tests run in parallel processes: the first to get here builds the venv while the
    // others wait on this lock, or three `pip install`s race in one directory (CI's fresh
    // checkout failed that way).
    std::fs::create_dir_all(venv.parent().expect("venv has a parent")).expect("target dir");
    let lock = std::fs::File::create(venv.with_extension("lock")).expect("venv lock file");
    lock.lock().expect("lock the venv");
    let imports = PYTHON_CLIENTS
        .iter()
        .map(|(_, module)| *module)
        .collect::<Vec<_>>()
        .join(", ");
    let versions_match = |py: &Path| {
        let check = format!(
            "import importlib.metadata as m, {imports}\n\
             want = {pins:?}\n\
             assert all(m.version(p.split('==')[0]) == p.split('==')[1] for p in want)",
            pins = PYTHON_CLIENTS
                .iter()
                .map(|(pin, _)| *pin)
                .collect::<Vec<_>>(),
        );
        Command::new(py)
            .args(["-c", &check])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !versions_match(&python) {
        if !python.exists() {
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .output()
                .expect("python3 must be installed (scripts/test installs python3-venv)");
            ok(&made);
        }
        let pip = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet"])
            .args(PYTHON_CLIENTS.iter().map(|(pin, _)| *pin))
            .output()
            .expect("pip runs");
        ok(&pip);
    }
    assert!(
        versions_match(&python),
        "the Python clients {PYTHON_CLIENTS:?} did not install into {}",
        venv.display()
    );
    python
}

/// Runs `tests/python/<script>` with the venv's Python and the server's kubeconfig; it
/// must print ALL OK.
fn run_python(s: &Server, script: &str) {
    let python = python_with_clients();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = Command::new(python)
        .arg(&script)
        .env("KUBECONFIG", &s.kubeconfig)
        .env("HOME", &s.dir)
        .output()
        .expect("python runs");
    let text = ok(&out);
    assert!(
        text.contains("ALL OK"),
        "{}: {text}\n{}",
        script.display(),
        stderr(&out)
    );
}

#[test]
fn the_official_python_client_creates_lists_patches_watches_and_deletes() {
    let s = Server::start();
    ok(&s.kubectl(&["apply", "-f", &example("projects.yaml")]));
    run_python(&s, "test_client.py");
}

/// kr8s (PyPI `kr8s`) with the kubeconfig `meridian kubeconfig` printed: the server's
/// version (its first call, `/version/` with a trailing slash in some releases), and
/// workloads listed and read as a class of its own and by name.
#[test]
fn kr8s_reads_the_version_and_lists_workloads_over_tls() {
    let s = Server::start();
    assert!(s.url.starts_with("https://"), "{}", s.url);
    ok(&s.kubectl(&["apply", "-f", &example("projects.yaml")]));
    ok(&s.kubectl(&["apply", "-f", &example("workloads.yaml")]));
    run_python(&s, "test_kr8s.py");
}

/// lightkube (PyPI `lightkube`) with the same kubeconfig: a generic resource for
/// `meridian.dev/v1` Workload, listed in one project and in all of them, and read.
#[test]
fn lightkube_lists_and_gets_workloads_over_tls() {
    let s = Server::start();
    assert!(s.url.starts_with("https://"), "{}", s.url);
    ok(&s.kubectl(&["apply", "-f", &example("projects.yaml")]));
    ok(&s.kubectl(&["apply", "-f", &example("workloads.yaml")]));
    run_python(&s, "test_lightkube.py");
}
