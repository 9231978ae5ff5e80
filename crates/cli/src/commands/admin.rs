//! `token`, `audit`, `login` and `config`.

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use client::Client;

use crate::args::{AuditCommand, ConfigCommand, Global, LoginArgs, Output, TokenCommand};
use crate::config::{self, ConfigFile};
use crate::exit::UserError;
use crate::output;

/// `project` is the explicit `--project`/`-n` flag only (never a context's default
/// namespace), so that a token is project-scoped only when asked for.
pub async fn token(client: &Client, project: Option<&String>, cmd: &TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Create { role, description } => {
            let body = json!({"role": role, "project": project, "description": description});
            let resp = client
                .request_json(client::Method::POST, "/meridian/v1/tokens", Some(&body))
                .await?;
            let token = resp
                .get("token")
                .and_then(Value::as_str)
                .context("the server did not return a token")?;
            println!("{token}");
            eprintln!(
                "token {} created (role {role}{}); it is shown only once",
                resp.get("id").and_then(Value::as_str).unwrap_or("?"),
                project
                    .as_ref()
                    .map(|p| format!(", project {p}"))
                    .unwrap_or_default()
            );
        }
        TokenCommand::List => {
            let resp = client.get_path("/meridian/v1/tokens").await?;
            let rows: Vec<Vec<String>> = resp
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|t| {
                    let s = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                    vec![
                        s("id"),
                        s("role"),
                        t.get("project")
                            .and_then(Value::as_str)
                            .unwrap_or("<all>")
                            .to_owned(),
                        s("created"),
                        s("description"),
                    ]
                })
                .collect();
            let headers: Vec<String> = ["ID", "ROLE", "PROJECT", "CREATED", "DESCRIPTION"]
                .iter()
                .map(ToString::to_string)
                .collect();
            print!("{}", output::table(&headers, &rows, false));
        }
        TokenCommand::Revoke { id } => {
            client
                .request_json(
                    client::Method::DELETE,
                    &format!("/meridian/v1/tokens/{id}"),
                    None,
                )
                .await?;
            println!("token {id} revoked");
        }
    }
    Ok(())
}

/// A duration ago in [`api::duration`]'s grammar (`30s`, `15m`, `2h`, `1h30m`, `7d`), or an
/// RFC 3339 time.
pub fn parse_since(s: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let bad = || {
        UserError::fail(format!(
            "--since {s:?} is not a duration (30s, 5m, 1h30m, 7d) or an RFC 3339 time (2026-11-22T10:00:00Z)"
        ))
    };
    let ago = api::duration::parse(s).map_err(|_| bad())?;
    let ago = jiff::SignedDuration::try_from(ago).map_err(|_| bad())?;
    now.checked_sub(ago).map_err(|_| bad())
}

/// The ADMISSION column of `audit log`: `denied by P[, Q]` for a request a deny policy
/// refused (nothing was written), `warned by P` for a write warn policies flagged, and
/// how many of the actor's denials were left out before it (over its rate).
fn admission_outcome(entry: &Value) -> String {
    let Some(outcome) = entry.get("outcome").and_then(Value::as_str) else {
        return String::new();
    };
    let mut policies: Vec<&str> = entry
        .get("policies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("policy").and_then(Value::as_str))
        .collect();
    policies.dedup();
    let what = match outcome {
        "denied" => "denied by",
        "allowed" => "warned by",
        other => other,
    };
    let mut out = format!("{what} {}", policies.join(", "));
    if let Some(n) = entry.get("suppressed").and_then(Value::as_u64) {
        out.push_str(&format!(" (+{n} not logged)"));
    }
    out
}

pub async fn audit(global: &Global, cmd: &AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Log {
            since,
            limit,
            output: out,
        } => {
            let conn = config::resolve(global)?;
            let client = config::client(&conn)?;
            let mut path = String::from("/meridian/v1/audit?");
            if let Some(s) = since {
                let t = parse_since(s, jiff::Timestamp::now())?;
                path.push_str(&format!("since={}&", t.round(jiff::Unit::Second)?));
            }
            if let Some(l) = limit {
                path.push_str(&format!("limit={l}"));
            }
            let resp = client.get_path(path.trim_end_matches(['?', '&'])).await?;
            let items: Vec<Value> = resp
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            match out {
                Output::Json => println!("{}", serde_json::to_string_pretty(&items)?),
                Output::Yaml => print!("{}", serde_yaml_ng::to_string(&items)?),
                _ => {
                    let rows: Vec<Vec<String>> = items
                        .iter()
                        .map(|e| {
                            let s = |k: &str| {
                                e.get(k)
                                    .map(|v| match v {
                                        Value::String(s) => s.clone(),
                                        other => other.to_string(),
                                    })
                                    .unwrap_or_default()
                            };
                            let object = match e.get("namespace").and_then(Value::as_str) {
                                Some(ns) => format!("{}/{ns}/{}", s("kind"), s("name")),
                                None => format!("{}/{}", s("kind"), s("name")),
                            };
                            vec![
                                s("seq"),
                                s("time"),
                                s("actor"),
                                s("verb"),
                                object,
                                s("revision"),
                                admission_outcome(e),
                            ]
                        })
                        .collect();
                    let headers: Vec<String> = [
                        "SEQ",
                        "TIME",
                        "ACTOR",
                        "VERB",
                        "OBJECT",
                        "REVISION",
                        "ADMISSION",
                    ]
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                    print!("{}", output::table(&headers, &rows, false));
                }
            }
            Ok(())
        }
        AuditCommand::Verify { data_dir } => {
            let result = match data_dir {
                Some(dir) => match server::audit::verify_offline(dir).await {
                    Ok(result) => result,
                    Err(e @ server::audit::OfflineError::NoStore { .. }) => {
                        return Err(UserError::fail(format!(
                            "--data-dir {}: {e}",
                            dir.display()
                        )));
                    }
                    Err(e) => return Err(e.into()),
                },
                None => {
                    let conn = config::resolve(global)?;
                    let client = config::client(&conn)?;
                    client.get_path("/meridian/v1/audit/verify").await?
                }
            };
            if result.get("ok").and_then(Value::as_bool) == Some(true) {
                println!(
                    "audit log intact: {} entries, head {}",
                    result.get("entries").cloned().unwrap_or_default(),
                    result.get("head").and_then(Value::as_str).unwrap_or("-")
                );
                Ok(())
            } else {
                Err(UserError::fail(format!(
                    "audit log verification FAILED: {}",
                    result
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown error")
                )))
            }
        }
    }
}

pub async fn login(global: &Global, args: &LoginArgs) -> Result<()> {
    let (Some(server), Some(token)) = (&global.server, &global.token) else {
        return Err(UserError::fail(
            "meridian login needs --server URL and --token TOKEN (or MERIDIAN_SERVER and MERIDIAN_TOKEN)",
        ));
    };
    let name = global.context.clone().unwrap_or_else(|| "default".into());
    let expected = match &args.ca_fingerprint {
        Some(f) => Some(
            server::tls::parse_fingerprint(f)
                .map_err(|e| UserError::fail(format!("--ca-fingerprint: {e:#}")))?,
        ),
        None => None,
    };
    // The CA to trust: the file given, else (https) the server's generated CA once its
    // fingerprint is confirmed, else none (plain http, or a CA the system trusts).
    let (ca_pem, discovered) = match &global.ca_file {
        Some(p) => {
            let pem = std::fs::read(p)
                .with_context(|| format!("cannot read --ca-file {}", p.display()))?;
            if let Some(expected) = &expected {
                check_fingerprint(&pem, expected, &format!("--ca-file {}", p.display()))?;
            }
            (Some(pem), false)
        }
        None if server.starts_with("https://") => {
            let pem = discover_ca(server, expected.as_deref()).await?;
            let found = pem.is_some();
            (pem, found)
        }
        None => {
            if expected.is_some() {
                return Err(UserError::fail(format!(
                    "--ca-fingerprint needs an https:// server, not {server}"
                )));
            }
            eprintln!(
                "warning: {server} is plain http: the token travels in clear, and kubectl \
                 sends none (the server serves https unless started with --insecure-http)"
            );
            (None, false)
        }
    };
    let client = Client::new(server, token, ca_pem.as_deref())
        .map_err(|e| UserError::fail(e.to_string()))?;
    if args.verify {
        client.get_path("/apis/meridian.dev/v1").await?;
    } else if discovered {
        // The server's certificate must be the confirmed CA's, token or not.
        client
            .get_text(server::CA_PATH)
            .await
            .context("the server's certificate is not signed by its published CA")?;
    }
    let path = config::config_path();
    let ca_file = match &ca_pem {
        Some(pem) => Some(config::save_ca(&path, &name, pem)?),
        None => None,
    };
    let mut file = ConfigFile::load(&path)?;
    file.upsert(config::Context {
        name: name.clone(),
        server: server.clone(),
        token: token.clone(),
        ca_file: ca_file.clone(),
        namespace: global.namespace.clone(),
    });
    file.current_context = Some(name.clone());
    file.save(&path)?;
    match &ca_file {
        Some(ca) => eprintln!(
            "context {name:?} saved to {} and made current; its CA is {}",
            path.display(),
            ca.display()
        ),
        None => eprintln!(
            "context {name:?} saved to {} and made current",
            path.display()
        ),
    }
    Ok(())
}

/// Fails unless the first certificate of `pem` has the fingerprint `expected` (as
/// [`server::tls::parse_fingerprint`] writes it).
fn check_fingerprint(pem: &[u8], expected: &str, what: &str) -> Result<String> {
    let actual = server::tls::pem_fingerprint(pem)
        .ok_or_else(|| UserError::fail(format!("{what} holds no PEM certificate")))?;
    if actual != expected {
        return Err(UserError::fail(format!(
            "the CA of {what} has the fingerprint\n  {actual}\nnot --ca-fingerprint\n  \
             {expected}\nrefusing to trust it: check the fingerprint the server logged at start \
             (someone may be intercepting the connection)"
        )));
    }
    Ok(actual)
}

/// The CA the server publishes ([`server::CA_PATH`]), read without verifying the
/// server's certificate and trusted only once its fingerprint matches `expected` or the
/// user confirms it at the terminal. `None` when the server has no generated CA (it
/// serves the operator's certificate, which the system's CAs may trust).
async fn discover_ca(server_url: &str, expected: Option<&str>) -> Result<Option<Vec<u8>>> {
    let probe = Client::unverified(server_url).map_err(|e| UserError::fail(e.to_string()))?;
    let pem = match probe.get_text(server::CA_PATH).await {
        Ok(pem) => pem.into_bytes(),
        Err(e) if e.is_not_found() => {
            if expected.is_some() {
                return Err(UserError::fail(format!(
                    "{server_url} publishes no generated CA to check --ca-fingerprint against: \
                     pass --ca-file with the CA that signed its certificate"
                )));
            }
            eprintln!(
                "{server_url} publishes no generated CA (it serves its operator's certificate): \
                 trusting the system's CAs; pass --ca-file for a private one"
            );
            return Ok(None);
        }
        Err(e) => {
            return Err(anyhow::Error::from(e).context(format!(
                "cannot fetch the server's CA from {server_url}{}",
                server::CA_PATH
            )));
        }
    };
    let what = format!("{server_url}{}", server::CA_PATH);
    if let Some(expected) = expected {
        let fingerprint = check_fingerprint(&pem, expected, &what)?;
        eprintln!("the server's CA matches --ca-fingerprint {fingerprint}");
        return Ok(Some(pem));
    }
    let fingerprint = server::tls::pem_fingerprint(&pem)
        .ok_or_else(|| UserError::fail(format!("{what} holds no PEM certificate")))?;
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(UserError::fail(format!(
            "{server_url} has a CA this machine does not trust yet, and there is no terminal \
             to confirm its fingerprint: pass --ca-fingerprint with the fingerprint the server \
             logged at start (\"CA fingerprint sha256:…\"; on its host, `openssl x509 -noout \
             -fingerprint -sha256 -in <data-dir>/ca.crt` prints it too), or --ca-file with its \
             ca.crt"
        )));
    }
    eprint!(
        "The server's CA certificate has the SHA-256 fingerprint\n\n  {fingerprint}\n\n\
         Compare it with the \"CA fingerprint\" the server printed at start.\n\
         Trust this CA for {server_url}? [y/N] "
    );
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .context("reading the answer")?
    .context("reading the answer")?;
    if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        return Err(UserError::fail("the CA was not trusted; nothing was saved"));
    }
    Ok(Some(pem))
}

pub fn config_cmd(cmd: &ConfigCommand) -> Result<()> {
    let path = config::config_path();
    match cmd {
        ConfigCommand::Path => println!("{}", path.display()),
        ConfigCommand::UseContext { name } => {
            config::use_context(name)?;
            eprintln!("switched to context {name:?}");
        }
        ConfigCommand::GetContexts => {
            let file = ConfigFile::load(&path)?;
            let rows: Vec<Vec<String>> = file
                .contexts
                .iter()
                .map(|c| {
                    vec![
                        if file.current_context.as_deref() == Some(&c.name) {
                            "*".into()
                        } else {
                            String::new()
                        },
                        c.name.clone(),
                        c.server.clone(),
                        c.namespace.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            let headers: Vec<String> = ["CURRENT", "NAME", "SERVER", "NAMESPACE"]
                .iter()
                .map(ToString::to_string)
                .collect();
            print!("{}", output::table(&headers, &rows, false));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_durations_and_times() {
        let now: jiff::Timestamp = "2026-11-22T12:00:00Z".parse().expect("time");
        assert_eq!(
            parse_since("2h", now).expect("2h").to_string(),
            "2026-11-22T10:00:00Z"
        );
        assert_eq!(
            parse_since("1d", now).expect("1d").to_string(),
            "2026-11-21T12:00:00Z"
        );
        assert_eq!(
            parse_since("2026-11-01T00:00:00Z", now)
                .expect("time")
                .to_string(),
            "2026-11-01T00:00:00Z"
        );
        assert_eq!(
            parse_since("1h30m", now).expect("1h30m").to_string(),
            "2026-11-22T10:30:00Z"
        );
        assert!(parse_since("soon", now).is_err());
        assert!(parse_since("99999999999d", now).is_err());
        assert!(parse_since("5y", now).is_err());
    }
}
