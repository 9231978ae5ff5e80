//! `meridian create secret`, `get secrets`, `describe secret` and `secret rotate-key`
//! against a real server process: what each prints, to whom, and that no value reaches
//! a table, a description or an error.

use testkit::{ServerProcess, ok, stderr, stdout};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");
const VALUE: &str = "cli-Vq7w-2k9d-LEAK";

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn assert_no_value(what: &str, text: &str) {
    assert!(
        !text.contains(VALUE) && !text.contains(&b64(VALUE)),
        "{what} shows the value:\n{text}"
    );
}

#[test]
fn create_get_describe_and_rotate_secrets() {
    let s = ServerProcess::start(BIN, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("tls.crt");
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nMIIB\n").expect("cert file");

    let out = ok(&s.cli(&[
        "create",
        "secret",
        "db",
        "-n",
        "default",
        "--from-literal",
        &format!("password={VALUE}"),
        "--from-file",
        &format!("cert={}", cert.display()),
    ]));
    assert!(out.contains("secret/db created"), "{out}");
    assert_no_value("create's output", &out);
    // kubectl's `generic` word, a type, a file named by its path.
    let out = ok(&s.cli(&[
        "create",
        "secret",
        "generic",
        "tls",
        "--type",
        "kubernetes.io/tls",
        "--from-file",
        cert.to_str().expect("path"),
    ]));
    assert!(out.contains("secret/tls created"), "{out}");

    // The table: name, type, key count; wide adds the key names.
    let table = ok(&s.cli(&["get", "secrets"]));
    let header = table.lines().next().expect("header");
    assert!(
        header.starts_with("NAME") && header.contains("TYPE") && header.contains("DATA"),
        "{table}"
    );
    let db = table
        .lines()
        .find(|l| l.starts_with("db "))
        .expect("db row");
    assert!(db.contains("Opaque") && db.contains(" 2 "), "{table}");
    assert!(table.contains("kubernetes.io/tls"), "{table}");
    let wide = ok(&s.cli(&["get", "secrets", "-o", "wide"]));
    assert!(wide.contains("cert,password"), "{wide}");
    assert_no_value("get -o wide", &wide);

    // An admin reads values with -o yaml (as kubectl); describe shows sizes only.
    let yaml = ok(&s.cli(&["get", "secret", "db", "-o", "yaml"]));
    assert!(yaml.contains(&b64(VALUE)), "{yaml}");
    assert!(!yaml.contains("sealed"), "{yaml}");
    let described = ok(&s.cli(&["describe", "secret", "db"]));
    assert!(
        described.contains(&format!("password:  {} bytes", VALUE.len())),
        "{described}"
    );
    assert!(described.contains("cert:"), "{described}");
    assert_no_value("describe", &described);

    // A viewer: keys, never values, on every verb.
    let viewer = ok(&s.cli(&["token", "create", "--role", "viewer"]));
    let viewer = viewer.trim();
    for args in [
        &["get", "secrets", "-o", "wide"][..],
        &["get", "secret", "db", "-o", "yaml"],
        &["get", "secret", "db", "-o", "json"],
        &["describe", "secret", "db"],
    ] {
        let out = ok(&s.cli_as(viewer, args));
        assert!(out.contains("password"), "{args:?}: {out}");
        assert_no_value(&format!("viewer {args:?}"), &out);
        assert!(!out.contains("sealed"), "{args:?}: {out}");
    }
    let denied = s.cli_as(
        viewer,
        &[
            "create",
            "secret",
            "x",
            "--from-literal",
            &format!("k={VALUE}"),
        ],
    );
    assert_eq!(denied.status.code(), Some(1), "{}", stderr(&denied));
    assert_no_value("a refused create", &stderr(&denied));
    let denied = s.cli_as(viewer, &["secret", "rotate-key"]);
    assert_eq!(denied.status.code(), Some(1), "{}", stderr(&denied));

    // Errors name the key or the flag, never the value.
    for args in [
        vec!["create", "secret", "bad", "--from-literal", "not a key=x"],
        vec!["create", "secret", "bad", "--from-literal", VALUE],
        vec![
            "create",
            "secret",
            "db",
            "--from-literal",
            &format!("password={VALUE}"),
        ],
    ] {
        let out = s.cli(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert_no_value(&format!("{args:?}"), &stderr(&out));
        assert_no_value(&format!("{args:?}"), &stdout(&out));
    }

    // Rotation re-encrypts both; values survive.
    let out = ok(&s.cli(&["secret", "rotate-key"]));
    assert!(out.contains("2 secrets re-encrypted"), "{out}");
    let yaml = ok(&s.cli(&["get", "secret", "db", "-o", "yaml"]));
    assert!(yaml.contains(&b64(VALUE)), "{yaml}");
}

/// kubectl against the server: its table (server-side printing) and `-o yaml` show a
/// viewer the keys, never the values; an admin reads them as from Kubernetes.
#[test]
fn kubectl_shows_a_viewer_keys_and_an_admin_values() {
    // kubectl sends a bearer token over TLS only.
    let s = ServerProcess::start(BIN, &["--tls"]);
    let viewer = ok(&s
        .command(
            &s.token,
            &["token", "create", "--role", "viewer", "--ca-file"],
        )
        .arg(s.dir.join("ca.crt"))
        .output()
        .expect("meridian token create"));
    let kubeconfig = |token: &str, name: &str| {
        let out = std::process::Command::new(BIN)
            .args(["kubeconfig", "--context", name, "--ca-file"])
            .arg(s.dir.join("ca.crt"))
            .env("MERIDIAN_SERVER", &s.url)
            .env("MERIDIAN_TOKEN", token)
            .env("MERIDIAN_CONFIG", s.dir.join("no-config.yaml"))
            .env_remove("KUBECONFIG")
            .output()
            .expect("meridian kubeconfig");
        let path = s.dir.join(format!("kubeconfig-{name}"));
        std::fs::write(&path, ok(&out)).expect("kubeconfig");
        path
    };
    let kubectl = |config: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", config)
            .env("HOME", &s.dir)
            .output()
            .expect("kubectl (installed where this test runs)");
        ok(&out)
    };
    // Client-side `kubectl apply` of stringData: the server seals the values and drops
    // the last-applied annotation, which would hold them in clear.
    let as_admin = kubeconfig(&s.token, "admin");
    let manifest = s.dir.join("secret.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: meridian.dev/v1\nkind: Secret\nmetadata: {{name: db, namespace: default}}\nspec:\n  stringData: {{password: {VALUE}, user: app}}\n"
        ),
    )
    .expect("manifest");
    kubectl(
        &as_admin,
        &["apply", "-f", manifest.to_str().expect("path")],
    );
    let annotations = kubectl(
        &as_admin,
        &[
            "get",
            "secret",
            "db",
            "-n",
            "default",
            "-o",
            "jsonpath={.metadata.annotations}",
        ],
    );
    assert_no_value("the annotations", &annotations);
    let as_viewer = kubeconfig(viewer.trim(), "viewer");
    let table = kubectl(
        &as_viewer,
        &["get", "secrets", "-n", "default", "-o", "wide"],
    );
    assert!(
        table.contains("TYPE") && table.contains("password,user"),
        "{table}"
    );
    assert_no_value("kubectl get -o wide (viewer)", &table);
    for format in ["yaml", "json"] {
        let out = kubectl(
            &as_viewer,
            &["get", "secret", "db", "-n", "default", "-o", format],
        );
        assert!(out.contains("password"), "{out}");
        assert_no_value(&format!("kubectl -o {format} (viewer)"), &out);
        assert!(!out.contains("sealed"), "{out}");
    }
    let value = kubectl(
        &as_admin,
        &[
            "get",
            "secret",
            "db",
            "-n",
            "default",
            "-o",
            "jsonpath={.spec.data.password}",
        ],
    );
    assert_eq!(value.trim(), b64(VALUE));
}
