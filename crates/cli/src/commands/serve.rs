//! `server` and `demo`. Messages go to stderr through `note!`, which drops a line it cannot
//! write (stderr on a full disk) instead of panicking like `eprintln!`.

use std::path::Path;

use anyhow::{Context, Result};

use server::{Limits, Server, ServerConfig, TlsMode};

use crate::args::{DemoArgs, ServerArgs};

pub async fn server(args: &ServerArgs) -> Result<()> {
    let tls = match (&args.tls_cert, &args.tls_key, args.tls) {
        (Some(cert), Some(key), _) => TlsMode::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        (_, _, true) => TlsMode::Generated,
        _ => TlsMode::Auto,
    };
    let config = ServerConfig {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        tls,
        fsync: !args.no_fsync,
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            request_timeout: args.request_timeout,
            ..Limits::default()
        },
        scheduler: (!args.no_scheduler).then(server::SchedulerOptions::default),
        nodes: server::NodeOptions {
            lease_ttl: args.node_lease,
            ..server::NodeOptions::default()
        },
        connections: server::ConnOptions {
            header_read_timeout: args.header_read_timeout,
            idle_timeout: args.idle_timeout,
            max_connections: args
                .max_connections
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        },
        tls_san: args.tls_san.clone(),
        ..ServerConfig::default()
    };
    let server = Server::bind(config).await?;
    let info = server.info().clone();
    if let Some(token) = &info.new_admin_token {
        note!(
            "Created the first admin token (shown once; also in {}, mode 0600):\n\n  {token}\n",
            info.admin_token_file.display()
        );
    }
    note!("meridian server listening on {}", info.url);
    if let Some(ca) = &info.ca_file {
        note!(
            "TLS with a generated CA: clients pass --ca-file {}",
            ca.display()
        );
    }
    server.run(server::shutdown_signal()).await
}

pub async fn demo(args: &DemoArgs) -> Result<()> {
    let (data_dir, _tmp) = match &args.data_dir {
        Some(d) => (d.clone(), None),
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("meridian-demo-")
                .tempdir()
                .context("cannot create a temporary directory")?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    let mut config = ServerConfig {
        listen: args.listen,
        data_dir: data_dir.clone(),
        ..ServerConfig::default()
    };
    let server = match Server::bind(config.clone()).await {
        Ok(s) => s,
        Err(e) if format!("{e:#}").contains("cannot listen") => {
            note!("{} is taken; using a free port instead", args.listen);
            config.listen.set_port(0);
            Server::bind(config).await?
        }
        Err(e) => return Err(e),
    };
    let info = server.info().clone();
    let token = match &info.new_admin_token {
        Some(t) => t.clone(),
        None => std::fs::read_to_string(&info.admin_token_file)
            .with_context(|| format!("cannot read {}", info.admin_token_file.display()))?
            .trim()
            .to_owned(),
    };
    let shutdown = tokio_util_shutdown();
    let trigger = shutdown.clone();
    let exit_early = args.exit;
    let handle = tokio::spawn(server.run(async move { trigger.cancelled().await }));

    let client = client::Client::new(&info.url, &token, None)?;
    let loaded = load_examples(&client).await?;
    let placements = wait_for_placements(&client).await;
    let policies = demo_policies(&client).await?;
    print_welcome(
        &info.url,
        &token,
        &data_dir,
        &loaded,
        &format!("{placements}\n{policies}"),
        args.data_dir.is_none(),
    );
    if !exit_early {
        server::shutdown_signal().await;
        note!("\nstopping the demo server");
    }
    shutdown.cancel();
    handle.await??;
    Ok(())
}

fn tokio_util_shutdown() -> tokio_util::sync::CancellationToken {
    tokio_util::sync::CancellationToken::new()
}

/// Apply the compiled-in examples; returns counts per kind.
async fn load_examples(client: &client::Client) -> Result<Vec<(String, usize)>> {
    let mut manifests = Vec::new();
    // The example estate is compiled in (api::examples), so the demo works from any directory.
    for (file, text) in api::examples::FILES {
        let source = format!("examples/{file}");
        manifests.extend(api::parse_manifests(&source, text).map_err(|errors| {
            anyhow::anyhow!(
                "the built-in examples are invalid:\n{}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })?);
    }
    manifests.sort_by_key(|m| crate::manifests::apply_rank(m.object.kind_info().kind));
    let mut counts: Vec<(String, usize)> = Vec::new();
    for m in &manifests {
        let info = m.object.kind_info();
        let ns = info
            .namespaced()
            .then(|| m.object.namespace().unwrap_or("default").to_owned());
        client
            .apply(info, ns.as_deref(), &m.object.to_value(), false)
            .await
            .with_context(|| format!("{} doc {}", m.source, m.doc))?;
        match counts.iter_mut().find(|(k, _)| k == info.plural) {
            Some((_, n)) => *n += 1,
            None => counts.push((info.plural.to_owned(), 1)),
        }
    }
    Ok(counts)
}

/// A workload that breaks the finance project's residency: personal data to be processed
/// in the US, where the project allows only the EU.
const RESIDENCY_BREAKER: &str = r#"{
  "apiVersion": "meridian.dev/v1", "kind": "Workload",
  "metadata": {"name": "customer-export", "namespace": "finance"},
  "spec": {
    "type": "job", "replicas": 1,
    "task": {"driver": "exec", "command": ["/opt/export/run"],
             "resources": {"cpu": "2", "memory": "4Gi"}, "os": {"family": "linux"}},
    "data": {"classification": "personal", "residency": ["US"]}
  }
}"#;

/// Install the built-in packs, show a residency-breaking workload refused, and summarise
/// the compliance of the example estate once the audit has seen it.
async fn demo_policies(client: &client::Client) -> Result<String> {
    let info = api::kinds::POLICY;
    let mut installed = 0;
    for pack in policy::packs() {
        for p in &pack.policies {
            client
                .apply(info, None, &serde_json::to_value(p)?, false)
                .await
                .with_context(|| format!("installing policy {}", p.metadata.name))?;
            installed += 1;
        }
    }
    let mut out = format!(
        "Policies: {installed} from the built-in packs (sovereignty: deny, ai: warn, baseline: audit).\n"
    );
    let wl = api::kinds::WORKLOAD;
    let breaker: serde_json::Value = serde_json::from_str(RESIDENCY_BREAKER)?;
    out.push_str("  meridian apply of finance/customer-export (personal data, residency [US]):\n");
    match client.create(wl, Some("finance"), &breaker, false).await {
        Err(client::ClientError::Api(status)) => {
            out.push_str(&format!(
                "    refused ({}): {}\n",
                status.code, status.message
            ));
        }
        Err(e) => return Err(e.into()),
        Ok(_) => out.push_str("    accepted (unexpected: the sovereignty pack should refuse it)\n"),
    }
    // The audit evaluates every object against the new policies in the background.
    // Wait until the count of findings has settled (unchanged over two polls).
    let mut status = serde_json::Value::Null;
    let mut last = None;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        status = client.get_path("/meridian/v1/compliance/status").await?;
        let findings = status["summary"]["findings"].as_u64().unwrap_or(0);
        if findings > 0 && last == Some(findings) {
            break;
        }
        last = Some(findings);
    }
    out.push_str("Compliance of the example estate (continuous audit):\n");
    for f in status["summary"]["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
    {
        out.push_str(&format!(
            "  {:<16} {}/{} controls passing, {} findings\n",
            f["framework"].as_str().unwrap_or_default(),
            f["passing"],
            f["controls"],
            f["findings"]
        ));
    }
    out.push_str(
        "  (node findings say the security facts are not reported: no agent runs on these example hosts)\n",
    );
    Ok(out)
}

/// Wait (briefly) for the scheduler to place the example workloads, then describe where
/// they landed and why any wait.
async fn wait_for_placements(client: &client::Client) -> String {
    let wl = api::kinds::WORKLOAD;
    let mut workloads = Vec::new();
    for _ in 0..50 {
        workloads = client
            .list_all(wl, None, &client::ListOptions::default())
            .await
            .unwrap_or_default();
        let settled = workloads.iter().all(|w| {
            w.pointer("/status/desiredReplicas").is_some()
                && w["status"]["observedGeneration"] == w["metadata"]["generation"]
        });
        if settled && !workloads.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut out = String::from(
        "Placement of the example workloads (the scheduler explains every decision):\n",
    );
    for w in &workloads {
        let placed = w
            .pointer("/status/placedReplicas")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let desired = w
            .pointer("/status/desiredReplicas")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        out.push_str(&format!(
            "  {:<10} {:<18} {placed}/{desired} placed",
            w["metadata"]["namespace"].as_str().unwrap_or(""),
            w["metadata"]["name"].as_str().unwrap_or(""),
        ));
        if let Some(m) = w
            .pointer("/status/message")
            .and_then(serde_json::Value::as_str)
        {
            out.push_str(&format!("  waiting: {m}"));
        }
        out.push('\n');
    }
    out
}

fn print_welcome(
    url: &str,
    token: &str,
    data_dir: &Path,
    loaded: &[(String, usize)],
    placements: &str,
    temporary: bool,
) {
    let summary: Vec<String> = loaded.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let data_note = if temporary {
        format!("{} (temporary; removed on exit)", data_dir.display())
    } else {
        data_dir.display().to_string()
    };
    note!(
        r#"
Meridian demo is running.

  API server   {url}
  Admin token  {token}
  Data         {data_note}
  Loaded       {summary}

{placements}
Try these in another terminal:

  export MERIDIAN_SERVER={url} MERIDIAN_TOKEN={token}
  cargo run --release -- get sites                      # the estate: jurisdictions, operators, certifications
  cargo run --release -- get allocations -A -o wide     # where each instance landed
  cargo run --release -- explain workload fraud-model-train -n finance   # why it waits, what would make it fit
  cargo run --release -- compliance status              # findings by policy and framework
  cargo run --release -- compliance report -o oscal     # NIST OSCAL assessment-results evidence
  cargo run --release -- audit verify                   # the tamper-evident audit log

Press Ctrl-C to stop.
"#,
        summary = summary.join(", "),
    );
}
