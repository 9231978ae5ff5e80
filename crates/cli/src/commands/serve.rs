//! `server` and `demo`. Messages go to stderr through `note!`, which drops a line it cannot
//! write (stderr on a full disk) instead of panicking like `eprintln!`.

use std::path::Path;

use anyhow::{Context, Result};

use server::{Limits, Server, ServerConfig, TlsMode};

use crate::args::{DemoArgs, ServerArgs, StoreArg};

/// The store the server flags name.
fn store_backend(args: &ServerArgs) -> Result<server::StoreBackend> {
    match &args.store {
        StoreArg::Sqlite => {
            if args.etcd_ca.is_some() || args.etcd_cert.is_some() {
                anyhow::bail!(
                    "--etcd-ca and --etcd-cert apply to an etcd store: add --store etcd://HOST:PORT"
                );
            }
            Ok(server::StoreBackend::Sqlite)
        }
        StoreArg::Etcd(endpoints) => Ok(server::StoreBackend::Etcd(server::EtcdConfig {
            endpoints: endpoints.clone(),
            prefix: args.etcd_prefix.clone(),
            ca: args.etcd_ca.clone(),
            cert: args.etcd_cert.clone(),
            key: args.etcd_key.clone(),
            max_txn_ops: args.etcd_max_txn_ops as usize,
        })),
    }
}

pub async fn server(args: &ServerArgs) -> Result<()> {
    let store = store_backend(args)?;
    // `--tls` is accepted and changes nothing: TLS is the default.
    let tls = match (&args.tls_cert, &args.tls_key, args.insecure_http) {
        (Some(cert), Some(key), _) => TlsMode::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        (_, _, true) => TlsMode::InsecureHttp,
        _ => TlsMode::Generated,
    };
    let config = ServerConfig {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        store,
        tls,
        fsync: !args.no_fsync,
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            request_timeout: args.request_timeout,
            ..Limits::default()
        },
        scheduler: (!args.no_scheduler).then(|| server::SchedulerOptions {
            max_starts_per_pass: usize::try_from(args.max_starts_per_pass).unwrap_or(usize::MAX),
            ..server::SchedulerOptions::default()
        }),
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
        name: args.server_name.clone(),
        list_cache: match args.list_cache {
            crate::args::ListCacheArg::Auto => server::ListCache::Auto,
            crate::args::ListCacheArg::On => server::ListCache::On,
            crate::args::ListCacheArg::Off => server::ListCache::Off,
        },
        election: server::leader::ElectionOptions {
            lease_ttl: args.leader_lease,
        },
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
    if let (Some(ca), Some(fingerprint)) = (&info.ca_file, &info.ca_fingerprint) {
        note!(
            "TLS with a generated CA: {}\n  CA fingerprint {fingerprint}\n  \
             Clients pass --ca-file {} (or MERIDIAN_CA_FILE); `meridian login` fetches the CA \
             and asks you to compare this fingerprint",
            ca.display(),
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
    let shutdown = tokio_util::sync::CancellationToken::new();
    let trigger = shutdown.clone();
    let handle = tokio::spawn(server.run(async move { trigger.cancelled().await }));

    // TLS with the generated CA, like any server: the demo's own client, the simulated
    // agents (which share it) and the local agent trust that CA.
    let ca_file = info
        .ca_file
        .clone()
        .context("the demo's server has no generated CA")?;
    let ca_pem = std::fs::read(&ca_file)
        .with_context(|| format!("cannot read the generated CA {}", ca_file.display()))?;
    let client = client::Client::new(&info.url, &token, Some(&ca_pem))?;
    // The estate first, then agents for its nodes, then the work, so that no placement
    // waits for a node whose agent has not reported yet.
    let estate = parse_examples()?;
    let (workloads, estate): (Vec<_>, Vec<_>) = estate
        .into_iter()
        .partition(|m| m.object.kind_info().kind == api::kinds::WORKLOAD.kind);
    let mut loaded = apply_all(&client, &estate).await?;
    let example_nodes: Vec<String> = estate
        .iter()
        .filter(|m| m.object.kind_info().kind == api::kinds::NODE.kind)
        .map(|m| m.object.name().to_owned())
        .collect();
    let sims = sim::SimAgent::adopt(
        client.clone(),
        example_nodes,
        sim::agent::Options::default(),
    )
    .await
    .context("starting the simulated agents of the example nodes")?;
    let local = if args.no_local_agent {
        Err("not started (--no-local-agent)".to_owned())
    } else {
        LocalAgent::start(
            &client,
            &info.url,
            &ca_pem,
            &data_dir,
            &args.local_jurisdiction,
        )
        .await
        .map_err(|e| format!("not started: {e:#}"))
    };
    loaded.extend(apply_all(&client, &workloads).await?);
    let placements = wait_for_placements(&client).await;
    let instances = wait_for_instances(&client, sims.nodes(), local.as_ref().ok()).await;
    let local_line = match &local {
        Ok(l) => format!(
            "Local agent: node {} in site local (a real agent on this machine) runs default/{LOCAL_WORKLOAD}\n",
            l.node
        ),
        Err(why) => format!("Local agent: {why}\n"),
    };
    let rollout = demo_rollout(&client).await;
    let policies = demo_policies(&client).await?;
    print_welcome(
        &info.url,
        &token,
        &ca_file,
        info.ca_fingerprint.as_deref().unwrap_or_default(),
        &data_dir,
        &loaded,
        &format!("{placements}\n{instances}{local_line}{rollout}\n{policies}"),
        args.data_dir.is_none(),
        local.is_ok(),
    );
    if !args.exit {
        server::shutdown_signal().await;
        note!("\nstopping the demo");
    }
    if let Ok(l) = local {
        l.stop(&client).await;
    }
    sims.stop().await;
    shutdown.cancel();
    handle.await??;
    Ok(())
}

/// The compiled-in examples (`api::examples`), in the order they apply.
fn parse_examples() -> Result<Vec<api::Manifest>> {
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
    Ok(manifests)
}

/// Applies manifests in order; returns counts per kind.
async fn apply_all(
    client: &client::Client,
    manifests: &[api::Manifest],
) -> Result<Vec<(String, usize)>> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for m in manifests {
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

/// The demo's service on the local agent.
const LOCAL_WORKLOAD: &str = "local-clock";

/// A real agent (`crates/agent`) in this process, joined to site `local`, running one
/// harmless service (`LOCAL_WORKLOAD`, a shell loop printing the date) so that
/// `meridian logs` has something to show.
struct LocalAgent {
    node: String,
    dir: std::path::PathBuf,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl LocalAgent {
    async fn start(
        client: &client::Client,
        url: &str,
        ca_pem: &[u8],
        data_dir: &Path,
        jurisdiction: &str,
    ) -> Result<LocalAgent> {
        if !cfg!(target_os = "linux") {
            anyhow::bail!("the demo runs a real agent on Linux only");
        }
        let site = serde_json::json!({
            "apiVersion": api::API_VERSION, "kind": "Site",
            "metadata": {"name": "local", "labels": {"meridian.dev/demo": "local"}},
            "spec": {"provider": "onprem", "region": "local", "jurisdiction": jurisdiction,
                     "operator": {"name": "This machine's owner", "jurisdiction": jurisdiction}},
        });
        client
            .apply(api::kinds::SITE, None, &site, false)
            .await
            .context("creating site local (is --local-jurisdiction a country code?)")?;
        let node = local_node_name();
        let dir = data_dir.join("local-agent");
        let mut config = agent::runtime::AgentConfig::new(url, &node, &dir);
        config.site = Some("local".to_owned());
        // What `meridian agent --ca-file <data dir>/ca.crt` would read.
        config.ca_pem = Some(ca_pem.to_vec());
        config.grace = std::time::Duration::from_secs(2);
        if !dir.join("credential.json").exists() {
            let answer = client
                .request_json(
                    client::Method::POST,
                    "/meridian/v1/join-tokens",
                    Some(&serde_json::json!({"site": "local", "ttlSeconds": 600})),
                )
                .await
                .context("creating a join token")?;
            config.join_token = answer["token"].as_str().map(str::to_owned);
        }
        let stop = tokio_util::sync::CancellationToken::new();
        let mut task = tokio::spawn(agent::runtime::run(config, stop.clone()));
        // Wait for the node to report Ready, or for the agent to give up.
        let ready = async {
            loop {
                if let Ok(n) = client.get(api::kinds::NODE, None, &node).await
                    && n.pointer("/status/phase")
                        .and_then(serde_json::Value::as_str)
                        == Some("Ready")
                {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        };
        tokio::select! {
            r = &mut task => {
                return Err(match r {
                    Ok(Err(e)) => e,
                    Ok(Ok(())) => anyhow::anyhow!("the agent stopped"),
                    Err(e) => anyhow::anyhow!("the agent failed: {e}"),
                });
            }
            () = ready => {}
            () = tokio::time::sleep(std::time::Duration::from_secs(30)) => {
                stop.cancel();
                let _ = task.await;
                anyhow::bail!("node {node} did not report Ready within 30 s");
            }
        }
        let workload = serde_json::json!({
            "apiVersion": api::API_VERSION, "kind": "Workload",
            "metadata": {"name": LOCAL_WORKLOAD, "namespace": "default",
                         "labels": {"meridian.dev/demo": "local"}},
            "spec": {
                "type": "service", "replicas": 1,
                "task": {"driver": "exec",
                         "command": ["/bin/sh", "-c", "while :; do date; sleep 5; done"],
                         "env": {"PATH": "/usr/bin:/bin"},
                         "resources": {"cpu": "10m", "memory": "16Mi"},
                         "os": {"family": "linux"}},
                "data": {"classification": "public"},
                "placement": {"matchExpressions": [
                    {"key": "site.name", "operator": "In", "values": ["local"]}]},
            },
        });
        let local = LocalAgent {
            node,
            dir,
            stop,
            task,
        };
        if let Err(e) = client
            .apply(api::kinds::WORKLOAD, Some("default"), &workload, false)
            .await
        {
            local.stop(client).await;
            return Err(anyhow::Error::from(e).context(format!("creating {LOCAL_WORKLOAD}")));
        }
        Ok(local)
    }

    /// Deletes the demo service and waits (10 s at most) for the agent to stop its
    /// process, since an agent that stops leaves its tasks running for its next start;
    /// then stops the agent.
    async fn stop(self, client: &client::Client) {
        let _ = client
            .delete(api::kinds::WORKLOAD, Some("default"), LOCAL_WORKLOAD)
            .await;
        let state = self.dir.join("state.json");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            // The agent's record of what it runs (`runtime.rs`): no tasks left.
            let idle = std::fs::read_to_string(&state)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .is_none_or(|s| s["tasks"].as_object().is_none_or(|t| t.is_empty()));
            if idle {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        self.stop.cancel();
        match self.task.await {
            Ok(Err(e)) => note!("the local agent stopped with an error: {e:#}"),
            Err(e) => note!("the local agent failed: {e}"),
            Ok(Ok(())) => {}
        }
    }
}

/// The host's name as a node name (a DNS label), else `local-host`.
fn local_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let label: String = host
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    let label = label.trim_matches('-').to_owned();
    if api::validate::check_dns_label(&label).is_ok() {
        label
    } else {
        "local-host".to_owned()
    }
}

/// Waits (15 s at most) until no allocation on a node with an agent is pending, then
/// says how many instances run where.
async fn wait_for_instances(
    client: &client::Client,
    simulated: &[String],
    local: Option<&LocalAgent>,
) -> String {
    use std::collections::BTreeSet;
    let phase = |a: &serde_json::Value| {
        a.pointer("/status/phase")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("pending")
            .to_owned()
    };
    let served =
        |node: &str| simulated.iter().any(|n| n == node) || local.is_some_and(|l| l.node == node);
    let mut allocations = Vec::new();
    for _ in 0..75 {
        allocations = client
            .list_all(
                api::kinds::ALLOCATION,
                None,
                &client::ListOptions::default(),
            )
            .await
            .unwrap_or_default();
        let waiting = allocations.iter().any(|a| {
            served(a["spec"]["node"].as_str().unwrap_or_default()) && phase(a) == "pending"
        });
        if !waiting && !allocations.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let mut running = 0;
    let mut nodes = BTreeSet::new();
    let mut local_running = 0;
    let mut finished = 0;
    for a in &allocations {
        let node = a["spec"]["node"].as_str().unwrap_or_default();
        match phase(a).as_str() {
            "running" if local.is_some_and(|l| l.node == node) => local_running += 1,
            "running" => {
                running += 1;
                nodes.insert(node.to_owned());
            }
            "succeeded" => finished += 1,
            _ => {}
        }
    }
    let mut out = format!(
        "Instances: {running} running on {} nodes (simulated agents)",
        nodes.len()
    );
    if let Some(l) = local {
        out.push_str(&format!(
            ", {local_running} on {} (a real process on this machine)",
            l.node
        ));
    }
    if finished > 0 {
        out.push_str(&format!(", {finished} jobs succeeded"));
    }
    out.push('\n');
    out
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
        "  (node findings say the security facts are not reported: the example hosts' agents are simulated)\n",
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

/// A rolling restart of finance/payroll-api on the simulated agents, so the newcomer sees
/// a rollout (revision 2, instances replaced within `maxUnavailable`) and its events.
async fn demo_rollout(client: &client::Client) -> String {
    let wl = api::kinds::WORKLOAD;
    let (ns, name) = ("finance", "payroll-api");
    let started = std::time::Instant::now();
    let now = jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({"spec": {"restartedAt": now}});
    if let Err(e) = client
        .patch(wl, Some(ns), name, client::PatchType::Merge, &patch, false)
        .await
    {
        return format!("Rollout: {ns}/{name} could not be restarted: {e}\n");
    }
    let deadline = started + std::time::Duration::from_secs(30);
    let mut least = u32::MAX;
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let Ok(w) = client.get(wl, Some(ns), name).await else {
            continue;
        };
        let Ok(w) = serde_json::from_value::<api::Workload>(w) else {
            continue;
        };
        let Some(st) = w.status else { continue };
        least = least.min(st.available_replicas);
        let done = st.update_revision == st.current_revision
            && st.update_revision.is_some_and(|r| r > 1)
            && st
                .condition("Progressing")
                .is_some_and(|c| c.reason.as_deref() == Some("NewRevisionAvailable"));
        if done {
            return format!(
                "Rollout: {ns}/{name} restarted (meridian rollout restart): revision {} on all {} instances in {:.1} s, never fewer than {least} available; see `meridian rollout history {name} -n {ns}` and `meridian describe workload {name} -n {ns}` for its events\n",
                st.update_revision.unwrap_or_default(),
                st.desired_replicas,
                started.elapsed().as_secs_f64(),
            );
        }
    }
    format!(
        "Rollout: {ns}/{name} restart still in progress after 30 s (meridian rollout status {name} -n {ns})\n"
    )
}

#[allow(clippy::too_many_arguments)]
fn print_welcome(
    url: &str,
    token: &str,
    ca_file: &Path,
    ca_fingerprint: &str,
    data_dir: &Path,
    loaded: &[(String, usize)],
    placements: &str,
    temporary: bool,
    local: bool,
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

  API server   {url}  (TLS with a generated CA)
  Admin token  {token}
  CA           {ca}
  Fingerprint  {ca_fingerprint}
  Data         {data_note}
  Loaded       {summary}

{placements}
Try these in another terminal:

  export MERIDIAN_SERVER={url} MERIDIAN_TOKEN={token} MERIDIAN_CA_FILE={ca_arg}
  cargo run --release -- get workloads -A               # every project, like kubectl -A
  cargo run --release -- get sites                      # the estate: jurisdictions, operators, certifications
  cargo run --release -- get allocations -A -o wide     # where each instance landed, and its phase
  cargo run --release -- get nodes                      # Ready: their agents heartbeat{logs}
  cargo run --release -- explain workload fraud-model-train -n finance   # why it waits, what would make it fit
  cargo run --release -- compliance status              # findings by policy and framework
  cargo run --release -- compliance report -o oscal     # NIST OSCAL assessment-results evidence
  cargo run --release -- audit verify                   # the tamper-evident audit log

kubectl (and the Python clients) with a kubeconfig that embeds the CA and the token:

  cargo run --release -- kubeconfig > demo.kubeconfig
  kubectl --kubeconfig demo.kubeconfig get workloads -A

Press Ctrl-C to stop.
"#,
        ca = ca_file.display(),
        ca_arg = shell_word(&ca_file.display().to_string()),
        summary = summary.join(", "),
        logs = if local {
            format!(
                "\n  cargo run --release -- logs workload/{LOCAL_WORKLOAD} -f   # a real process on this machine"
            )
        } else {
            String::new()
        },
    );
}

/// `word` as one shell word: as is when it holds only characters no shell treats
/// specially, else in single quotes.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_path_with_spaces_or_quotes_is_one_shell_word() {
        assert_eq!(
            super::shell_word("/tmp/meridian-demo-x/ca.crt"),
            "/tmp/meridian-demo-x/ca.crt"
        );
        assert_eq!(super::shell_word("/home/a b/ca.crt"), "'/home/a b/ca.crt'");
        assert_eq!(super::shell_word("it's"), "'it'\\''s'");
    }
}
