//! The parts of the CLI kubectl users reach for: version, completion, man pages,
//! `options`, `-o jsonpath`/`custom-columns`, `label`, `annotate`, `edit`, usage errors
//! and colour-free output — against a real server process.

use std::process::Command;

use testkit::{ServerProcess, examples_dir, ok, stderr, stdout};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

fn meridian(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("meridian runs")
}

#[test]
fn version_completion_man_and_options_work_without_a_server() {
    let v = ok(&meridian(&["version", "--client"]));
    assert!(v.starts_with("Client Version: "), "{v}");
    assert!(v.contains("(commit "), "{v}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&meridian(&["version", "--client", "-o", "json"]))).unwrap();
    assert_eq!(json["clientVersion"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(json.get("serverVersion").is_none());

    let bash = ok(&meridian(&["completion", "bash"]));
    assert!(
        bash.contains("_meridian()") && bash.contains("--namespace"),
        "bash completion"
    );
    for shell in ["zsh", "fish", "powershell"] {
        assert!(!ok(&meridian(&["completion", shell])).is_empty(), "{shell}");
    }
    let page = ok(&meridian(&["man"]));
    assert!(
        page.starts_with(".ie") || page.contains(".TH meridian"),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = meridian(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for page in ["meridian.1", "meridian-get.1", "meridian-rollout-status.1"] {
        assert!(dir.path().join(page).exists(), "{page}");
    }

    // Global flags: listed once by `options`, not repeated in every command's help.
    let options = ok(&meridian(&["options"]));
    for flag in [
        "--server",
        "--token",
        "--ca-file",
        "--context",
        "-n, --namespace",
    ] {
        assert!(options.contains(flag), "{flag} in {options}");
    }
    let help = ok(&meridian(&["get", "--help"]));
    assert!(!help.contains("--token"), "{help}");
    assert!(ok(&meridian(&["--help"])).contains("meridian options"));

    // A usage error is bad input: exit code 1, as the README says.
    let bad = meridian(&["get", "--frobnicate"]);
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("--frobnicate"));
    let bad = meridian(&["get", "wl", "-o", "jsonpath={.a"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("unclosed"), "{}", stderr(&bad));
}

#[test]
fn templates_labels_annotations_and_edit() {
    let s = ServerProcess::start(BIN, &[]);
    ok(&s.cli(&["apply", "-f", examples_dir().to_str().unwrap()]));

    let server = ok(&s.cli(&["version"]));
    assert!(server.contains("Server Version: "), "{server}");

    let names = ok(&s.cli(&[
        "get",
        "wl",
        "-n",
        "finance",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]));
    assert!(
        names.trim().split(' ').any(|n| n == "payroll-api"),
        "{names}"
    );
    let one = ok(&s.cli(&[
        "get",
        "wl",
        "payroll-api",
        "-n",
        "finance",
        "-o",
        r#"jsonpath={.metadata.name}{"\t"}{.spec.replicas}"#,
    ]));
    assert_eq!(one.trim_end(), "payroll-api\t2");
    let ranged = ok(&s.cli(&[
        "get",
        "sites",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name}={.spec.jurisdiction}{"\n"}{end}"#,
    ]));
    assert!(
        ranged.lines().any(|l| l == "onprem-frankfurt=DE"),
        "{ranged}"
    );
    let cols = ok(&s.cli(&[
        "get",
        "wl",
        "-n",
        "finance",
        "-o",
        "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replicas,QUEUE:.spec.queue",
    ]));
    let mut lines = cols.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "REPLICAS", "QUEUE"]);
    assert!(
        lines.any(|l| l.split_whitespace().collect::<Vec<_>>() == ["payroll-api", "2", "<none>"]),
        "{cols}"
    );

    // label: set, refuse to overwrite, overwrite, remove.
    let out = ok(&s.cli(&["label", "wl", "payroll-api", "sla=gold", "-n", "finance"]));
    assert_eq!(out.trim(), "workload.meridian.dev/payroll-api labeled");
    let refused = s.cli(&["label", "wl/payroll-api", "sla=silver", "-n", "finance"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("--overwrite"),
        "{}",
        stderr(&refused)
    );
    ok(&s.cli(&[
        "label",
        "wl/payroll-api",
        "sla=silver",
        "--overwrite",
        "-n",
        "finance",
    ]));
    let tier = |s: &ServerProcess| {
        ok(&s.cli(&[
            "get",
            "wl",
            "payroll-api",
            "-n",
            "finance",
            "-o",
            "jsonpath={.metadata.labels.sla}",
        ]))
    };
    assert_eq!(tier(&s).trim(), "silver");
    ok(&s.cli(&["label", "wl", "payroll-api", "sla-", "-n", "finance"]));
    assert_eq!(tier(&s).trim(), "");
    let out = ok(&s.cli(&["annotate", "node", "fra-rhel-01", "note=rack b7"]));
    assert_eq!(out.trim(), "node.meridian.dev/fra-rhel-01 annotated");

    // edit through a scripted editor; an unchanged save changes nothing.
    let edited = s
        .command(&s.token, &["edit", "wl", "payroll-api", "-n", "finance"])
        .env("KUBE_EDITOR", "sed -i s/replicas:\\s2/replicas:\\x203/")
        .output()
        .unwrap();
    assert!(edited.status.success(), "{}", stderr(&edited));
    assert_eq!(
        stdout(&edited).trim(),
        "workload.meridian.dev/payroll-api edited"
    );
    let replicas = ok(&s.cli(&[
        "get",
        "wl",
        "payroll-api",
        "-n",
        "finance",
        "-o",
        "jsonpath={.spec.replicas}",
    ]));
    assert_eq!(replicas.trim(), "3");
    let unchanged = s
        .command(&s.token, &["edit", "wl/payroll-api", "-n", "finance"])
        .env("KUBE_EDITOR", "true")
        .output()
        .unwrap();
    assert_eq!(
        stdout(&unchanged).trim(),
        "Edit cancelled, no changes made."
    );
    let refused = s
        .command(&s.token, &["edit", "wl", "payroll-api", "-n", "finance"])
        .env("KUBE_EDITOR", "sed -i s/replicas:\\s3/replicas:\\x20-1/")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("your changes are in"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn logs_carry_no_colour_codes_off_a_terminal() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("MERIDIAN_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.contains("listening on");
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = seen.join("\n");
    assert!(log.contains("listening on"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI codes in piped logs: {log:?}");
}
