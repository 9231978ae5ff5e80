//! The Debian package, for real: `scripts/package-deb` builds it from the debug binary, dpkg
//! reads it back (files, modes, maintainer scripts), `systemd-analyze verify` checks its
//! units, dpkg installs it into a throwaway root (`dpkg --root --force-script-chrootless`,
//! so the maintainer scripts run and add users to that root's `etc/passwd`), the server
//! unit's `ExecStart` runs as the unit would (its environment, its user) until `/readyz`
//! answers, and `dpkg --purge` takes everything away again. Needs dpkg-deb, dpkg,
//! systemd-analyze and curl (`scripts/test` installs them) and root (chown, useradd): fails,
//! never skips, without them. Also `meridian install`/`uninstall --root` and their
//! idempotence.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {shown}: {e} (is the tool installed? scripts/test installs it)")
    });
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn need_root() {
    let uid = std::fs::metadata("/proc/self").expect("/proc/self").uid();
    assert_eq!(
        uid, 0,
        "these tests create users and chown files: run them as root"
    );
}

/// A root for dpkg and useradd: an empty dpkg database and the four account files.
fn fake_root(dir: &Path) {
    for d in ["var/lib/dpkg/updates", "var/lib/dpkg/info", "etc"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("var/lib/dpkg/status"), "").unwrap();
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(dir.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
    std::fs::write(dir.join("etc/gshadow"), "root:*::\n").unwrap();
    // Users other than root must reach the data directory and the binary through it.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn user_ids(root: &Path, name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f[0] == name).then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
    })
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

/// Checks units with `systemd-analyze verify`; it wants `ExecStart`'s binary to exist, so
/// copies name `bin` for `/usr/bin/meridian` (nothing else is changed). Any warning fails.
fn verify_units(units: &[(String, String)], bin: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut paths = Vec::new();
    for (name, text) in units {
        let p = dir.join(name);
        let text = text.replace("/usr/bin/meridian", &bin.display().to_string());
        std::fs::write(&p, text).unwrap();
        paths.push(p);
    }
    let out = run(Command::new("systemd-analyze").arg("verify").args(&paths));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned:\n{stderr}"
    );
}

/// `systemd-analyze security --offline=true`'s overall exposure (0 best, 10 worst).
fn exposure(unit: &Path) -> f64 {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .expect("systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    let score = line
        .rsplit(':')
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    score.parse().unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for `/readyz` over http or, once the server serves TLS by default, https
/// (certificate not checked: only the status matters here).
pub fn wait_ready(port: u16, child: &mut std::process::Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for scheme in ["http", "https"] {
            let out = Command::new("curl")
                .args([
                    "-sk",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "2",
                ])
                .arg(format!("{scheme}://127.0.0.1:{port}/readyz"))
                .output()
                .expect("curl (scripts/test installs it)");
            if String::from_utf8_lossy(&out.stdout) == "200" {
                return scheme.to_string();
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the server exited before /readyz answered: {status}");
        }
        assert!(Instant::now() < deadline, "/readyz did not answer in 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The environment systemd gives a unit: its `Environment=` lines, then its
/// `EnvironmentFile=` (the file read inside `root`).
fn unit_env(unit: &str, root: &Path) -> HashMap<String, String> {
    let mut env = HashMap::new();
    let mut add = |line: &str| {
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            env.insert(k.trim().to_string(), v.to_string());
        }
    };
    for line in unit.lines() {
        if let Some(v) = line.strip_prefix("Environment=") {
            add(v);
        } else if let Some(file) = line.strip_prefix("EnvironmentFile=") {
            let file = file.trim_start_matches('-');
            if let Ok(body) = std::fs::read_to_string(root.join(file.trim_start_matches('/'))) {
                for l in body.lines().filter(|l| !l.starts_with('#')) {
                    add(l);
                }
            }
        }
    }
    env
}

/// `ExecStart` expanded as systemd does: `${X}` is one word, `$X` splits on whitespace.
fn exec_start(unit: &str, env: &HashMap<String, String>) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let mut argv = Vec::new();
    for word in line.split_whitespace() {
        if let Some(name) = word.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
            argv.push(env.get(name).cloned().unwrap_or_default());
        } else if let Some(name) = word.strip_prefix('$') {
            let value = env.get(name).cloned().unwrap_or_default();
            argv.extend(value.split_whitespace().map(String::from));
        } else {
            argv.push(word.to_string());
        }
    }
    argv
}

#[test]
fn the_debian_package_installs_into_a_root_and_its_server_unit_runs() {
    need_root();
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");

    // Build.
    let built = run(Command::new(repo().join("scripts/package-deb"))
        .args(["--bin", BIN, "--compression", "none", "--out"])
        .arg(&out_dir));
    let deb = PathBuf::from(
        text(&built)
            .lines()
            .last()
            .expect("the package path")
            .trim(),
    );
    assert!(deb.exists(), "{}", deb.display());

    // Read back: control, maintainer scripts, files and modes.
    let info = text(&run(Command::new("dpkg-deb").arg("--info").arg(&deb)));
    for want in [
        "Package: meridian",
        "Architecture: amd64",
        "Depends: libc6 (>= ",
        " postinst ",
        " prerm ",
        " postrm ",
    ] {
        assert!(
            info.contains(want),
            "dpkg-deb --info lacks {want:?}:\n{info}"
        );
    }
    let contents = text(&run(Command::new("dpkg-deb").arg("--contents").arg(&deb)));
    for (modes, path) in [
        ("-rwxr-xr-x root/root", "./usr/bin/meridian"),
        (
            "-rw-r--r-- root/root",
            "./lib/systemd/system/meridian-server.service",
        ),
        (
            "-rw-r--r-- root/root",
            "./lib/systemd/system/meridian-agent.service",
        ),
        ("-rw-r--r-- root/root", "./usr/share/doc/meridian/copyright"),
    ] {
        assert!(
            contents
                .lines()
                .any(|l| l.starts_with(modes) && l.ends_with(path)),
            "dpkg-deb --contents lacks {modes} {path}:\n{contents}"
        );
    }
    let control = tmp.path().join("control");
    run(Command::new("dpkg-deb")
        .arg("--control")
        .arg(&deb)
        .arg(&control));
    for script in ["postinst", "prerm", "postrm"] {
        assert_eq!(mode(&control.join(script)), 0o755, "{script}");
    }

    // Install into a throwaway root; the maintainer scripts run (chrootless, DPKG_ROOT set).
    let root = tmp.path().join("root");
    fake_root(&root);
    let dpkg = |args: &[&str]| {
        run(Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args([
                "--force-not-root",
                "--force-script-chrootless",
                "--force-depends",
            ])
            .args(args))
    };
    dpkg(&["-i", deb.to_str().unwrap()]);
    let (uid, gid) = user_ids(&root, "meridian").expect("postinst adds the user meridian");
    assert!(uid > 0 && uid < 1000, "a system uid: {uid}");
    assert!(
        user_ids(&root, "meridian-task").is_some(),
        "postinst adds meridian-task"
    );
    let data = root.join("var/lib/meridian");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(std::fs::metadata(&data).unwrap().uid(), uid);
    assert_eq!(mode(&root.join("etc/meridian")), 0o750);
    assert_eq!(
        std::fs::metadata(root.join("etc/meridian")).unwrap().gid(),
        gid
    );
    assert_eq!(mode(&root.join("var/lib/meridian-agent")), 0o700);
    assert!(
        !root.join("etc/meridian/agent.env").exists(),
        "nothing configures (so nothing starts) the agent"
    );

    // The units: what `meridian install` writes, and valid for systemd.
    let installed_bin = root.join("usr/bin/meridian");
    let mut units = Vec::new();
    for role in ["server", "agent"] {
        let name = format!("meridian-{role}.service");
        let text = std::fs::read_to_string(root.join("lib/systemd/system").join(&name)).unwrap();
        let printed = self::text(&run(Command::new(BIN).args([
            "install",
            role,
            "--print-unit",
            "--bin",
            "/usr/bin/meridian",
        ])));
        assert_eq!(
            text, printed,
            "{name}: the package's unit is meridian install's"
        );
        units.push((name, text));
    }
    verify_units(&units, &installed_bin, &tmp.path().join("verify"));
    let server_exposure = exposure(&tmp.path().join("verify/meridian-server.service"));
    assert!(
        server_exposure <= 2.0,
        "systemd-analyze security rates the server's unit {server_exposure} (1.5 when this test was written)"
    );
    eprintln!(
        "systemd-analyze security --offline: server {server_exposure}, agent {}",
        exposure(&tmp.path().join("verify/meridian-agent.service"))
    );

    // Run the server unit's ExecStart as systemd would: its environment (the env file an
    // administrator writes, here a free loopback port), its user, paths inside the root.
    let port = free_port();
    std::fs::write(
        root.join("etc/meridian/server.env"),
        format!("MERIDIAN_LISTEN=127.0.0.1:{port}\nMERIDIAN_SERVER_ARGS=--node-lease 30s\n"),
    )
    .unwrap();
    let server_unit = &units[0].1;
    let env = unit_env(server_unit, &root);
    let argv = exec_start(server_unit, &env);
    assert_eq!(argv[0], "/usr/bin/meridian", "{argv:?}");
    let mapped: Vec<String> = argv
        .iter()
        .map(|a| {
            if a.starts_with("/usr/bin/") || a.starts_with("/var/lib/") {
                root.join(a.trim_start_matches('/')).display().to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    assert_eq!(
        mapped[1..].join(" "),
        format!(
            "server --listen 127.0.0.1:{port} --data-dir {} --node-lease 30s",
            data.display()
        )
    );
    let mut child = Command::new(&mapped[0])
        .args(&mapped[1..])
        .env_clear()
        .envs(&env)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .uid(uid)
        .gid(gid)
        .current_dir("/")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the unit's ExecStart");
    let scheme = wait_ready(port, &mut child);
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("ExecStart served /readyz over {scheme} as uid {uid}");
    // The server wrote its store as its user.
    let owned_by_user = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(Result::ok)
        .all(|e| e.metadata().unwrap().uid() == uid);
    assert!(
        owned_by_user,
        "files in the data directory belong to meridian"
    );

    // Remove keeps data and users; purge removes them.
    dpkg(&["-r", "meridian"]);
    assert!(!root.join("usr/bin/meridian").exists());
    assert!(data.exists(), "remove keeps the data");
    dpkg(&["-P", "meridian"]);
    assert!(!data.exists(), "purge deletes the data");
    assert!(
        !root.join("etc/meridian").exists(),
        "purge deletes /etc/meridian"
    );
    assert!(
        user_ids(&root, "meridian").is_none(),
        "purge deletes the user"
    );
}

#[test]
fn meridian_install_is_idempotent_and_uninstall_keeps_data_unless_purged() {
    need_root();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fake_root(root);
    let install = |extra: &[&str]| {
        text(&run(Command::new(BIN)
            .args(["install", "server", "--root"])
            .arg(root)
            .args(extra)))
    };
    let dry = install(&["--dry-run"]);
    assert!(
        dry.contains("would write file /etc/systemd/system/meridian-server.service"),
        "{dry}"
    );
    assert!(dry.contains("CapabilityBoundingSet=\n"), "{dry}");
    assert!(
        !root.join("etc/systemd").exists(),
        "a dry run writes nothing"
    );

    let first = install(&[]);
    assert!(first.contains("create system user meridian"), "{first}");
    let (uid, _) = user_ids(root, "meridian").unwrap();
    assert_eq!(mode(&root.join("var/lib/meridian")), 0o700);
    assert_eq!(
        std::fs::metadata(root.join("var/lib/meridian"))
            .unwrap()
            .uid(),
        uid
    );
    assert_eq!(mode(&root.join("etc/meridian")), 0o750);
    assert_eq!(mode(&root.join("etc/meridian/server.env")), 0o600);
    assert_eq!(mode(&root.join("usr/local/bin/meridian")), 0o755);
    let unit =
        std::fs::read_to_string(root.join("etc/systemd/system/meridian-server.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/meridian server"),
        "{unit}"
    );

    let second = install(&[]);
    assert!(
        second.contains("nothing changed"),
        "a second install changes nothing:\n{second}"
    );
    assert!(
        !second.contains("\nwrite") && !second.contains("\ncreate"),
        "{second}"
    );

    // A port below 1024 keeps exactly CAP_NET_BIND_SERVICE.
    let low = install(&["--listen", "0.0.0.0:443"]);
    assert!(
        low.contains("rewrite file /etc/systemd/system/meridian-server.service"),
        "{low}"
    );
    let unit =
        std::fs::read_to_string(root.join("etc/systemd/system/meridian-server.service")).unwrap();
    assert!(
        unit.contains("\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"),
        "{unit}"
    );

    // The agent: the token goes to the 0600 env file, never into the unit or the output.
    let token = root.join("token");
    std::fs::write(&token, "s3cret-join-token\n").unwrap();
    let agent = text(&run(Command::new(BIN)
        .args(["install", "agent", "--root"])
        .arg(root)
        .args([
            "--server",
            "https://meridian.example:7420",
            "--site",
            "fra",
            "--join-token-file",
        ])
        .arg(&token)));
    assert!(!agent.contains("s3cret"), "{agent}");
    let env = std::fs::read_to_string(root.join("etc/meridian/agent.env")).unwrap();
    assert!(
        env.contains("MERIDIAN_JOIN_TOKEN=\"s3cret-join-token\"\n"),
        "{env}"
    );
    assert!(
        env.contains("MERIDIAN_AGENT_ARGS=\"--site fra\"\n"),
        "{env}"
    );
    assert_eq!(mode(&root.join("etc/meridian/agent.env")), 0o600);
    let unit =
        std::fs::read_to_string(root.join("etc/systemd/system/meridian-agent.service")).unwrap();
    assert!(!unit.contains("s3cret"));
    assert!(unit.contains("User=root"));

    // Uninstall keeps data, purge deletes it and the user.
    let uninstall = |role: &str, purge: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["uninstall", role, "--root"]).arg(root);
        if purge {
            cmd.arg("--purge");
        }
        text(&run(&mut cmd))
    };
    let out = uninstall("server", false);
    assert!(
        out.contains("kept: data directory /var/lib/meridian"),
        "{out}"
    );
    assert!(
        !root
            .join("etc/systemd/system/meridian-server.service")
            .exists()
    );
    assert!(root.join("var/lib/meridian").exists());
    let again = uninstall("server", false);
    assert!(again.contains("nothing changed"), "{again}");
    uninstall("server", true);
    assert!(!root.join("var/lib/meridian").exists());
    assert!(user_ids(root, "meridian").is_none());
    uninstall("agent", true);
    assert!(
        !root.join("etc/meridian").exists(),
        "purging both empties /etc/meridian"
    );
}

/// Removes a container and an image when dropped, even when the test fails.
struct DockerCleanup {
    container: String,
    image: String,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.container])
            .output();
        let _ = Command::new("docker").args(["rmi", &self.image]).output();
    }
}

#[test]
fn the_server_image_is_built_from_the_binary_and_answers_readyz() {
    need_docker();
    let id = std::process::id();
    let image = format!("meridian-image-test:{id}");
    let container = format!("meridian-image-test-{id}");
    let _cleanup = DockerCleanup {
        container: container.clone(),
        image: image.clone(),
    };
    let built =
        run(Command::new(repo().join("scripts/image")).args(["--bin", BIN, "--tag", &image]));
    assert_eq!(text(&built).lines().last(), Some(image.as_str()));
    let user = text(&run(Command::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{.Config.User}} {{json .Config.ExposedPorts}} {{json .Config.Entrypoint}}",
        &image,
    ])));
    assert!(user.starts_with("10001:10001 {\"7420/tcp\":{}}"), "{user}");
    assert!(
        user.contains(r#"["/usr/bin/meridian","server","--listen","0.0.0.0:7420","--data-dir","/var/lib/meridian"]"#),
        "{user}"
    );

    let port = free_port();
    run(Command::new("docker").args([
        "run",
        "-d",
        "--name",
        &container,
        "-p",
        &format!("127.0.0.1:{port}:7420"),
        &image,
    ]));
    // `docker logs` as the child to watch: it ends when the container exits.
    let mut logs = Command::new("docker")
        .args(["logs", "-f", &container])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let scheme = wait_ready(port, &mut logs);
    let _ = logs.kill();
    let _ = logs.wait();
    eprintln!("the image served /readyz over {scheme}");
    let uid = text(&run(Command::new("docker").args([
        "exec",
        &container,
        "/usr/bin/meridian",
        "--version",
    ])));
    assert!(uid.starts_with("meridian "), "{uid}");
}

fn need_docker() {
    match Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "a Docker engine is needed; `docker info` answered: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("a Docker engine is needed; cannot run docker: {e}"),
    }
}

fn exec(container: &str, script: &str) -> String {
    text(&run(
        Command::new("docker").args(["exec", container, "sh", "-c", script])
    ))
}

/// `meridian install server` on a real root without systemd (a container made from this
/// host's busybox, useradd and setpriv): it installs, says systemd is not running and prints
/// the command that runs the unit, which is then run as printed until `/readyz` answers; a
/// second install changes nothing; uninstall keeps the data.
#[test]
fn meridian_install_on_a_machine_without_systemd_prints_a_command_that_runs_the_server() {
    need_docker();
    let id = std::process::id();
    let image = format!("meridian-install-test:{id}");
    let container = format!("meridian-install-test-{id}");
    let _cleanup = DockerCleanup {
        container: container.clone(),
        image: image.clone(),
    };
    run(Command::new(repo().join("crates/cli/tests/support/host-image.sh")).args([BIN, &image]));
    let port = free_port();
    run(Command::new("docker").args([
        "run",
        "-d",
        "--name",
        &container,
        "-p",
        &format!("127.0.0.1:{port}:7420"),
        &image,
        "sh",
        "-c",
        "/opt/meridian install server >/tmp/first 2>&1 && /opt/meridian install server >/tmp/second 2>&1 \
         && touch /tmp/installed && eval \"$(grep '^  sh -c' /tmp/first)\"",
    ]));
    let mut logs = Command::new("docker")
        .args(["logs", "-f", &container])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let scheme = wait_ready(port, &mut logs);
    let _ = logs.kill();
    let _ = logs.wait();
    let first = exec(&container, "cat /tmp/first");
    assert!(first.contains("create system user meridian"), "{first}");
    assert!(
        first.contains("systemd is not running here (no /run/systemd/system)"),
        "{first}"
    );
    let second = exec(&container, "cat /tmp/second");
    assert!(second.contains("nothing changed"), "{second}");
    let modes = exec(
        &container,
        "stat -c '%a %U %G %n' /var/lib/meridian /etc/meridian /etc/meridian/server.env \
         /etc/systemd/system/meridian-server.service /usr/local/bin/meridian",
    );
    assert_eq!(
        modes,
        "700 meridian meridian /var/lib/meridian\n\
         750 root meridian /etc/meridian\n\
         600 root root /etc/meridian/server.env\n\
         644 root root /etc/systemd/system/meridian-server.service\n\
         755 root root /usr/local/bin/meridian\n"
    );
    // The server runs as meridian: the store it wrote belongs to it.
    let owners = exec(&container, "stat -c %U /var/lib/meridian/*");
    assert!(owners.lines().all(|l| l == "meridian"), "{owners}");
    eprintln!("the printed command served /readyz over {scheme}");

    // The agent, as docs/install.md tells a new user: a site, a join token in a file,
    // `meridian install agent`, the printed command; the node joins and is Ready.
    std::fs::write(
        std::env::temp_dir().join(format!("meridian-install-test-site-{id}.yaml")),
        "apiVersion: meridian.dev/v1\nkind: Site\nmetadata: {name: local}\n\
         spec: {provider: onprem, region: here, jurisdiction: DE, operator: {name: Example, jurisdiction: DE}}\n",
    )
    .unwrap();
    run(Command::new("docker")
        .arg("cp")
        .arg(std::env::temp_dir().join(format!("meridian-install-test-site-{id}.yaml")))
        .arg(format!("{container}:/tmp/site.yaml")));
    let _ = std::fs::remove_file(
        std::env::temp_dir().join(format!("meridian-install-test-site-{id}.yaml")),
    );
    let agent = exec(
        &container,
        r#"set -e
        export PATH=/usr/local/bin:$PATH MERIDIAN_TOKEN=$(cat /var/lib/meridian/admin.token)
        if [ -f /var/lib/meridian/ca.crt ]; then URL=https://127.0.0.1:7420; CA="--ca-file /var/lib/meridian/ca.crt"
        else URL=http://127.0.0.1:7420; CA=; fi
        export MERIDIAN_SERVER=$URL
        meridian $CA apply -f /tmp/site.yaml >/dev/null
        meridian $CA node join-token create --site local > /root/join.token 2>/dev/null
        meridian install agent --server $URL --join-token-file /root/join.token $CA > /tmp/agent.out 2>&1
        eval "$(grep '^  sh -c' /tmp/agent.out)" > /tmp/agent.log 2>&1 &
        i=0; while ! meridian $CA get nodes 2>/dev/null | grep -q ' Ready '; do
          i=$((i+1)); [ $i -lt 120 ] || { cat /tmp/agent.out /tmp/agent.log; exit 1; }; sleep 0.5; done
        meridian $CA get nodes
        grep -c MERIDIAN_JOIN_TOKEN= /etc/meridian/agent.env
        stat -c '%a %U' /etc/meridian/agent.env /var/lib/meridian-agent"#,
    );
    assert!(agent.contains(" local "), "{agent}");
    assert!(
        agent.ends_with("1\n600 root\n700 root\n"),
        "the token in the 0600 env file, the data dir 0700:\n{agent}"
    );
    eprintln!("the agent installed by meridian install joined:\n{agent}");

    let removed = exec(&container, "/usr/local/bin/meridian uninstall server");
    assert!(
        removed.contains("remove unit /etc/systemd/system/meridian-server.service"),
        "{removed}"
    );
    assert!(
        removed.contains("kept: data directory /var/lib/meridian"),
        "{removed}"
    );
}
