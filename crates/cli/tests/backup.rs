//! `meridian backup` and `meridian restore` end to end on SQLite: a backup taken while a
//! client writes, restored into a new data directory, served by a new server with every
//! object acknowledged before the backup and an audit log that verifies; and the refusals
//! (an existing --out, a directory that holds a store, a file that is no backup, a viewer,
//! a tampered backup).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use testkit::{ServerProcess, examples_dir, ok, stderr};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

#[path = "support/tamper.rs"]
mod tamper;

fn restore(file: &std::path::Path, dir: &std::path::Path) -> std::process::Output {
    Command::new(BIN)
        .arg("restore")
        .arg(file)
        .arg("--data-dir")
        .arg(dir)
        .env("MERIDIAN_CONFIG", dir.with_extension("cli.yaml"))
        .output()
        .expect("run meridian restore")
}

fn site(i: usize) -> String {
    format!(
        "apiVersion: meridian.dev/v1\nkind: Site\nmetadata: {{name: site-{i}}}\nspec: \
         {{provider: onprem, region: frankfurt, jurisdiction: DE, operator: {{name: Example \
         AG, jurisdiction: DE}}}}\n"
    )
}

#[test]
fn a_backup_taken_under_writes_restores_into_a_server_whose_chain_verifies() {
    let s = ServerProcess::start(BIN, &[]);
    ok(&s.cli(&[
        "apply",
        "-f",
        examples_dir().join("sites.yaml").to_str().expect("utf-8"),
    ]));
    let work = tempfile::tempdir().expect("tempdir");

    // A client keeps writing while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let cmd = |i: usize, dir: &std::path::Path| {
            let file = dir.join(format!("site-{i}.yaml"));
            std::fs::write(&file, site(i)).expect("write");
            s.command(&s.token, &["apply", "-f", file.to_str().expect("utf-8")])
        };
        let dir = work.path().to_path_buf();
        let commands: Vec<Command> = (0..200).map(|i| cmd(i, &dir)).collect();
        std::thread::spawn(move || {
            let mut acknowledged = 0;
            for mut c in commands {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if c.output().expect("apply").status.success() {
                    acknowledged += 1;
                }
            }
            acknowledged
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    let file = work.path().join("meridian.backup");
    let said = ok(&s.cli(&["backup", "--out", file.to_str().expect("utf-8")]));
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().expect("writer");
    assert!(said.contains("backup of revision"), "{said}");
    assert!(said.contains("(sqlite, "), "{said}");
    assert!(
        said.contains("secrets.key"),
        "says what the backup lacks: {said}"
    );
    let revision: i64 = said
        .split_whitespace()
        .nth(3)
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("a revision in: {said}"));
    assert!(written > 0, "the writer wrote while the backup was taken");

    // An existing file is never overwritten; a viewer may not take backups.
    let again = s.cli(&["backup", "--out", file.to_str().expect("utf-8")]);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(stderr(&again).contains("exists"), "{}", stderr(&again));
    let viewer = ok(&s.cli(&["token", "create", "--role", "viewer"]));
    let denied = s.cli_as(
        viewer.trim(),
        &[
            "backup",
            "--out",
            work.path().join("v.backup").to_str().expect("utf-8"),
        ],
    );
    assert_ne!(denied.status.code(), Some(0));
    assert!(
        stderr(&denied).contains("cannot take a backup"),
        "{}",
        stderr(&denied)
    );
    assert!(!work.path().join("v.backup").exists(), "nothing written");
    assert!(
        !work.path().join("v.backup.partial").exists(),
        "nothing left"
    );

    // Restore into a new directory and serve it.
    let restored = work.path().join("restored");
    let out = restore(&file, &restored);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("audit log intact"), "{said}");
    assert!(said.contains("no secrets.key"), "warns of the key: {said}");
    // Into a directory that holds a store: refused, nothing touched.
    let twice = restore(&file, &restored);
    assert_eq!(twice.status.code(), Some(1));
    assert!(
        stderr(&twice).contains("already holds a store"),
        "{}",
        stderr(&twice)
    );
    // The copy's objects: those of the backup's revision, served by a new server.
    for name in ["ca.crt", "ca.key", "secrets.key", "admin.token"] {
        let from = s.dir.join(name);
        if from.exists() {
            std::fs::copy(&from, restored.join(name)).expect("copy");
        }
    }
    let sites_then = {
        let text = ok(&s.cli(&["get", "sites", "-o", "json"]));
        let list: Value = serde_json::from_str(&text).expect("JSON");
        list["items"].as_array().expect("items").len()
    };
    drop(s);
    let second = ServerProcess::builder(BIN).data_dir(&restored).start();
    let text = ok(&second.cli(&["get", "sites", "-o", "json"]));
    let list: Value = serde_json::from_str(&text).expect("JSON");
    let items = list["items"].as_array().expect("items");
    assert!(
        items
            .iter()
            .any(|i| i["metadata"]["name"] == "onprem-frankfurt"),
        "the objects before the backup are there"
    );
    assert!(items.len() <= sites_then, "nothing the original lacked");
    let raw: Value = serde_json::from_str(
        &second
            .get_text("/apis/meridian.dev/v1/sites")
            .expect("list sites"),
    )
    .expect("JSON");
    let rv: i64 = raw["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .expect("a list revision");
    assert!(
        rv >= revision,
        "the restored store starts at the backup's revision"
    );
    let verified = ok(&second.cli(&["audit", "verify"]));
    assert!(verified.contains("audit log intact"), "{verified}");
}

#[test]
fn restore_refuses_what_is_not_a_backup_and_a_tampered_one() {
    let work = tempfile::tempdir().expect("tempdir");
    let junk = work.path().join("junk");
    std::fs::write(&junk, vec![b'x'; 4096]).expect("write");
    let out = restore(&junk, &work.path().join("a"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not a Meridian backup"),
        "{}",
        stderr(&out)
    );
    assert!(!work.path().join("a").join("meridian.db").exists());

    // A backup whose audit chain was altered is not restored.
    let s = ServerProcess::start(BIN, &[]);
    ok(&s.cli(&[
        "apply",
        "-f",
        examples_dir().join("sites.yaml").to_str().expect("utf-8"),
    ]));
    let file = work.path().join("b.backup");
    ok(&s.cli(&["backup", "--out", file.to_str().expect("utf-8")]));
    tamper::forge_first_token_entry(&file);
    let target = work.path().join("c");
    let out = restore(&file, &target);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not verify"), "{}", stderr(&out));
    assert!(
        !target.join("meridian.db").exists(),
        "a backup that does not verify is not left behind"
    );
}
