//! `apply`, `get`, `describe`, `delete`, `watch`.

use anyhow::Result;
use futures::StreamExt;
use serde_json::Value;

use api::KindInfo;
use client::{Client, ListOptions};

use crate::args::{ApplyArgs, DeleteArgs, DescribeArgs, GetArgs, GetOutput, Output, WatchArgs};
use crate::config::Resolved;
use crate::exit::UserError;
use crate::manifests;
use crate::output::{self, name_of, namespace_of};

/// Resolve a kind name the way kubectl does (singular, plural, short, Kind).
pub fn kind(name: &str) -> Result<&'static KindInfo> {
    api::lookup_kind(name).ok_or_else(|| {
        let known: Vec<String> = api::KINDS
            .iter()
            .map(|k| format!("{} ({})", k.plural, k.short_names.join(", ")))
            .collect();
        UserError::fail(format!(
            "the server doesn't have a resource type {name:?}: use one of {}",
            known.join(", ")
        ))
    })
}

fn project(conn: &Resolved) -> String {
    conn.namespace.clone().unwrap_or_else(|| "default".into())
}

/// The project a list or watch reads: none for global kinds and with `-A`.
fn list_scope(info: &KindInfo, all_namespaces: bool, conn: &Resolved) -> Option<String> {
    (info.namespaced() && !all_namespaces).then(|| project(conn))
}

pub async fn apply(client: &Client, conn: &Resolved, args: &ApplyArgs) -> Result<()> {
    let mut manifests = manifests::load(&args.files, args.recursive)?;
    // Resolve each object's project before writing anything.
    let mut planned = Vec::new();
    for m in &manifests {
        let info = m.object.kind_info();
        let ns = if info.namespaced() {
            let from_manifest = m.object.namespace().map(str::to_owned);
            match (&from_manifest, &conn.namespace) {
                (Some(a), Some(b)) if a != b => {
                    return Err(UserError::fail(format!(
                        "{} doc {}: the namespace of the object ({a:?}) does not match --namespace {b:?}: \
                         drop -n or change metadata.namespace",
                        m.source, m.doc
                    )));
                }
                (Some(a), _) => Some(a.clone()),
                (None, _) => Some(project(conn)),
            }
        } else {
            None
        };
        planned.push(ns);
    }
    let mut order: Vec<usize> = (0..manifests.len()).collect();
    order.sort_by_key(|i| manifests::apply_rank(manifests[*i].object.kind_info().kind));
    let mut failures = 0;
    for i in order {
        let m = &mut manifests[i];
        let info = m.object.kind_info();
        let ns = planned[i].clone();
        let mut value = m.object.to_value();
        if let (Some(ns), Some(meta)) = (&ns, value.get_mut("metadata")) {
            meta["namespace"] = Value::String(ns.clone());
        }
        let suffix = if args.dry_run {
            " (server dry run)"
        } else {
            ""
        };
        match client
            .apply(info, ns.as_deref(), &value, args.dry_run)
            .await
        {
            Ok((_, outcome)) => println!(
                "{}.{}/{} {}{suffix}",
                info.singular,
                api::GROUP,
                m.object.name(),
                outcome.as_str()
            ),
            // A bad token fails every object alike: say it once.
            Err(e) if e.code() == Some(401) => return Err(e.into()),
            Err(e) if e.is_user_error() => {
                failures += 1;
                eprintln!("error: {} doc {}: {e}", m.source, m.doc);
            }
            Err(e) => return Err(e.into()),
        }
    }
    if failures > 0 {
        return Err(UserError::fail(format!(
            "{failures} object{} could not be applied",
            if failures == 1 { "" } else { "s" }
        )));
    }
    Ok(())
}

pub async fn get(client: &Client, conn: &Resolved, args: &GetArgs) -> Result<()> {
    if matches!(
        args.kind.to_ascii_lowercase().as_str(),
        "endpoints" | "endpoint" | "ep"
    ) {
        return get_endpoints(client, conn, args).await;
    }
    if matches!(
        args.kind.to_ascii_lowercase().as_str(),
        "servers" | "server"
    ) {
        return get_servers(client, args).await;
    }
    let info = kind(&args.kind)?;
    let ns = list_scope(info, args.all_namespaces, conn);
    let with_namespace = info.namespaced() && args.all_namespaces;
    let opts = get_options(args);
    let (mut objects, revision) = fetch(client, info, ns.as_deref(), args, &opts).await?;
    if info.kind == api::kinds::EVENT.kind {
        sort_events(&mut objects);
    }
    if let GetOutput::Template(format) = &args.output {
        if args.watch {
            return Err(UserError::fail(
                "-o jsonpath and custom-columns print a list once: drop -w, or watch with -o json",
            ));
        }
        return print_template(format, &objects, args.names.len() == 1, args.no_headers);
    }
    let output = args.output.plain();
    if objects.is_empty() && matches!(output, Output::Table | Output::Wide) {
        match &ns {
            Some(ns) => eprintln!("No resources found in {ns} namespace."),
            None => eprintln!("No resources found"),
        }
    } else {
        output::print_objects(
            info,
            &objects,
            output,
            with_namespace,
            args.no_headers,
            args.names.len() == 1,
        )?;
    }
    if args.watch {
        let mut opts = ListOptions {
            resource_version: revision,
            ..opts
        };
        if let [name] = args.names.as_slice() {
            opts.field_selector = Some(format!("metadata.name={name}"));
        }
        stream(client, info, ns.as_deref(), opts, output, with_namespace).await?;
    }
    Ok(())
}

/// The list options of `get`'s selectors.
fn get_options(args: &GetArgs) -> ListOptions {
    ListOptions {
        label_selector: args.selector.clone(),
        field_selector: args.field_selector.clone(),
        ..ListOptions::default()
    }
}

/// The objects `get` names (each by name) or lists, and the revision to watch from.
async fn fetch(
    client: &Client,
    info: &'static KindInfo,
    ns: Option<&str>,
    args: &GetArgs,
    opts: &ListOptions,
) -> Result<(Vec<Value>, Option<String>)> {
    if args.names.is_empty() {
        return Ok(client.list_all_at(info, ns, opts).await?);
    }
    let mut objects = Vec::new();
    for name in &args.names {
        objects.push(client.get(info, ns, name).await?);
    }
    let revision = objects
        .iter()
        .filter_map(|o| {
            o.pointer("/metadata/resourceVersion")?
                .as_str()?
                .parse::<i64>()
                .ok()
        })
        .max()
        .map(|r| r.to_string());
    Ok((objects, revision))
}

/// `get endpoints`: each workload's ready instances with ports, as kubectl prints core
/// `Endpoints` (NAME, ENDPOINTS, AGE; `-o wide` adds each endpoint's node, `-o json|yaml`
/// the core `v1` objects).
async fn get_endpoints(client: &Client, conn: &Resolved, args: &GetArgs) -> Result<()> {
    if args.watch {
        return Err(UserError::fail(
            "endpoints cannot be watched: use `meridian get workloads -w`",
        ));
    }
    let info = api::kinds::WORKLOAD;
    let ns = list_scope(info, args.all_namespaces, conn);
    let workloads: Vec<api::kinds::Workload> =
        fetch(client, info, ns.as_deref(), args, &get_options(args))
            .await?
            .0
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<_, _>>()?;
    let views: Vec<Value> = workloads
        .iter()
        .map(|w| {
            let eps = w
                .status
                .as_ref()
                .map(|s| s.endpoints.as_slice())
                .unwrap_or(&[]);
            api::task::core_endpoints(&w.metadata, eps)
        })
        .collect();
    if let GetOutput::Template(format) = &args.output {
        return print_template(format, &views, args.names.len() == 1, args.no_headers);
    }
    let output = args.output.plain();
    match output {
        Output::Json | Output::Yaml => {
            let doc = if args.names.len() == 1 {
                views.into_iter().next().unwrap_or(Value::Null)
            } else {
                serde_json::json!({"apiVersion": "v1", "kind": "EndpointsList", "items": views})
            };
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                print!("{}", serde_yaml_ng::to_string(&doc)?);
            }
        }
        Output::Name => {
            for w in &workloads {
                println!("endpoints/{}", w.metadata.name);
            }
        }
        Output::Table | Output::Wide => {
            if workloads.is_empty() {
                match &ns {
                    Some(ns) => eprintln!("No resources found in {ns} namespace."),
                    None => eprintln!("No resources found"),
                }
                return Ok(());
            }
            let wide = output == Output::Wide;
            let mut headers = Vec::new();
            if args.all_namespaces {
                headers.push("NAMESPACE");
            }
            headers.extend(["NAME", "ENDPOINTS", "AGE"]);
            if wide {
                headers.push("NODES");
            }
            let now = jiff::Timestamp::now();
            let rows: Vec<Vec<String>> = workloads
                .iter()
                .map(|w| {
                    let eps = w
                        .status
                        .as_ref()
                        .map(|s| s.endpoints.as_slice())
                        .unwrap_or(&[]);
                    let mut row = Vec::new();
                    if args.all_namespaces {
                        row.push(w.metadata.namespace.clone().unwrap_or_default());
                    }
                    row.push(w.metadata.name.clone());
                    row.push(api::task::endpoints_summary(eps));
                    row.push(
                        w.metadata
                            .creation_timestamp
                            .as_deref()
                            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                            .map_or("<unknown>".into(), |t| {
                                api::table::age(now.as_second() - t.as_second())
                            }),
                    );
                    if wide {
                        let mut nodes: Vec<&str> = eps.iter().map(|e| e.node.as_str()).collect();
                        nodes.dedup();
                        row.push(if nodes.is_empty() {
                            "<none>".into()
                        } else {
                            nodes.join(",")
                        });
                    }
                    row
                })
                .collect();
            let headers: Vec<String> = headers.into_iter().map(String::from).collect();
            print!("{}", output::table(&headers, &rows, args.no_headers));
        }
    }
    Ok(())
}

/// `meridian get servers`: the replicas serving this store and which one leads
/// (`GET /meridian/v1/servers`).
async fn get_servers(client: &Client, args: &GetArgs) -> Result<()> {
    if args.watch {
        return Err(UserError::fail(
            "servers cannot be watched: run `meridian get servers` again",
        ));
    }
    let list = client.get_path("/meridian/v1/servers").await?;
    let mut items: Vec<Value> = list["items"].as_array().cloned().unwrap_or_default();
    if !args.names.is_empty() {
        items.retain(|s| {
            args.names
                .iter()
                .any(|n| s["name"].as_str() == Some(n.as_str()))
        });
        if items.is_empty() {
            return Err(UserError::fail(format!(
                "server {} not found: `meridian get servers` lists them",
                args.names.join(", ")
            )));
        }
    }
    if let GetOutput::Template(format) = &args.output {
        return print_template(format, &items, args.names.len() == 1, args.no_headers);
    }
    match args.output.plain() {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "apiVersion": list["apiVersion"], "kind": "ServerList",
                "leader": list["leader"], "items": items,
            }))?
        ),
        Output::Yaml => print!(
            "{}",
            serde_yaml_ng::to_string(&serde_json::json!({
                "apiVersion": list["apiVersion"], "kind": "ServerList",
                "leader": list["leader"], "items": items,
            }))?
        ),
        Output::Name => {
            for s in &items {
                println!("server/{}", s["name"].as_str().unwrap_or_default());
            }
        }
        output @ (Output::Table | Output::Wide) => {
            if items.is_empty() {
                eprintln!("No servers found");
                return Ok(());
            }
            let mut headers = vec!["NAME", "LEADER", "URL", "VERSION", "AGE"];
            if output == Output::Wide {
                headers.extend(["COMMIT", "TERM"]);
            }
            let now = jiff::Timestamp::now();
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|s| {
                    let text = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
                    let mut row = vec![
                        text("name"),
                        if s["leader"] == true { "*" } else { "" }.to_owned(),
                        text("url"),
                        text("version"),
                        output::age(s["startTime"].as_str(), now),
                    ];
                    if output == Output::Wide {
                        row.push(text("commit"));
                        row.push(
                            s["term"]
                                .as_i64()
                                .map(|t| t.to_string())
                                .unwrap_or_default(),
                        );
                    }
                    row
                })
                .collect();
            let headers: Vec<String> = headers.into_iter().map(String::from).collect();
            print!("{}", output::table(&headers, &rows, args.no_headers));
        }
    }
    Ok(())
}

/// `-o jsonpath=…` over the objects (one named object is the root, else a `List` of
/// them, as kubectl), or `-o custom-columns=…` (a header unless `--no-headers`, then a row
/// per object).
fn print_template(
    format: &crate::template::Format,
    objects: &[Value],
    single: bool,
    no_headers: bool,
) -> Result<()> {
    match format {
        crate::template::Format::JsonPath(t) => {
            let root = match objects {
                [one] if single => one.clone(),
                _ => serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects}),
            };
            println!("{}", t.render(&root));
        }
        crate::template::Format::CustomColumns(columns) => {
            let headers: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
            let rows: Vec<Vec<String>> = objects
                .iter()
                .map(|o| crate::template::column_cells(columns, o))
                .collect();
            print!("{}", output::table(&headers, &rows, no_headers));
        }
    }
    Ok(())
}

pub async fn watch(client: &Client, conn: &Resolved, args: &WatchArgs) -> Result<()> {
    let info = kind(&args.kind)?;
    let ns = list_scope(info, args.all_namespaces, conn);
    let opts = ListOptions {
        label_selector: args.selector.clone(),
        resource_version: args.resource_version.clone(),
        allow_bookmarks: true,
        ..ListOptions::default()
    };
    let with_namespace = info.namespaced() && args.all_namespaces;
    stream(
        client,
        info,
        ns.as_deref(),
        opts,
        args.output,
        with_namespace,
    )
    .await
}

/// Follow a watch, re-watching from the last revision seen when the server closes it.
async fn stream(
    client: &Client,
    info: &'static KindInfo,
    ns: Option<&str>,
    mut opts: ListOptions,
    out: Output,
    with_namespace: bool,
) -> Result<()> {
    let mut header_printed = false;
    loop {
        let mut events = client.watch(info, ns, &opts).await?;
        while let Some(event) = events.next().await {
            let event = event?;
            if let Some(rv) = event
                .object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
            {
                opts.resource_version = Some(rv.to_owned());
            }
            match event.type_.as_str() {
                "BOOKMARK" => continue,
                "ERROR" => {
                    let message = event
                        .object
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("watch error");
                    return Err(UserError::fail(message.to_owned()));
                }
                _ => {}
            }
            match out {
                Output::Table | Output::Wide => {
                    let (mut headers, rows) = output::object_rows(
                        info,
                        std::slice::from_ref(&event.object),
                        out == Output::Wide,
                        with_namespace,
                    );
                    headers.insert(0, "EVENT".into());
                    let mut row = rows.into_iter().next().unwrap_or_default();
                    row.insert(0, event.type_.clone());
                    print!("{}", output::table(&headers, &[row], header_printed));
                    header_printed = true;
                }
                Output::Json => println!(
                    "{}",
                    serde_json::json!({"type": event.type_, "object": event.object})
                ),
                Output::Yaml => print!(
                    "---\n{}",
                    serde_yaml_ng::to_string(
                        &serde_json::json!({"type": event.type_, "object": event.object})
                    )?
                ),
                Output::Name => println!(
                    "{} {}.{}/{}",
                    event.type_,
                    info.singular,
                    api::GROUP,
                    name_of(&event.object)
                ),
            }
        }
        // The server ended the stream (timeout or restart): resume where we were.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

pub async fn describe(client: &Client, conn: &Resolved, args: &DescribeArgs) -> Result<()> {
    let info = kind(&args.kind)?;
    let ns = info.namespaced().then(|| project(conn));
    let object = client.get(info, ns.as_deref(), &args.name).await?;
    print!("{}", describe_text(info, &object));
    if info.kind == api::kinds::QUEUE.kind {
        let path = format!(
            "/meridian/v1/queues/{}/pendingworkloads?limit={DESCRIBE_PENDING}",
            args.name
        );
        print!("{}", pending_text(&client.get_path(&path).await?));
    }
    if info.kind == api::kinds::COHORT.kind {
        let opts = ListOptions::default();
        let cohorts = client.list_all(api::kinds::COHORT, None, &opts).await?;
        let queues = client.list_all(api::kinds::QUEUE, None, &opts).await?;
        print!("{}", members_text(&args.name, &cohorts, &queues));
    }
    if info.kind != api::kinds::EVENT.kind {
        let events = object_events(client, &object).await?;
        print!("{}", events_text(&events, jiff::Timestamp::now()));
    }
    Ok(())
}

/// Pending jobs `describe queue` lists (the rest: the API, with `limit` and `offset`).
const DESCRIBE_PENDING: usize = 20;

/// The `Pending Workloads:` section of `describe queue`: the jobs waiting in it, in
/// admission order, from `/meridian/v1/queues/{name}/pendingworkloads`.
pub fn pending_text(summary: &Value) -> String {
    let items = summary["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return "Pending Workloads: <none>\n".to_owned();
    }
    let total = summary["total"].as_u64().unwrap_or(items.len() as u64);
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            ["positionInQueue", "namespace", "name", "priority", "reason"]
                .iter()
                .map(|f| text(&i[*f]))
                .collect()
        })
        .collect();
    let title = if total > items.len() as u64 {
        format!("Pending Workloads: (first {} of {total})", items.len())
    } else {
        "Pending Workloads:".to_owned()
    };
    section(
        &title,
        &["Position", "Project", "Name", "Priority", "Reason"],
        rows,
    )
}

/// The `Members:` section of `describe cohort`: the cohorts under it and the queues that
/// name it, with their own quota and what they hold (a cohort: its whole subtree).
pub fn members_text(name: &str, cohorts: &[Value], queues: &[Value]) -> String {
    use api::queue::{QueueQuota, quota_summary, totals_summary};
    let row =
        |kind: &str, name: &str, quota: &QueueQuota, usage: Option<&api::kinds::ResourceTotals>| {
            vec![
                kind.to_owned(),
                name.to_owned(),
                quota_summary(quota),
                usage.map_or_else(|| "-".to_owned(), totals_summary),
            ]
        };
    let mut rows = Vec::new();
    for o in cohorts.iter().chain(queues) {
        match api::AnyObject::from_value(o.clone()) {
            Ok(api::AnyObject::Cohort(c)) if c.spec.parent.as_deref() == Some(name) => {
                let usage = c.status.as_ref().and_then(|s| s.usage.as_ref());
                rows.push(row("Cohort", &c.metadata.name, &c.spec.quota, usage));
            }
            Ok(api::AnyObject::Queue(q)) if q.spec.cohort.as_deref() == Some(name) => {
                let usage = q.status.as_ref().and_then(|s| s.usage.as_ref());
                rows.push(row("Queue", &q.metadata.name, &q.spec.quota, usage));
            }
            _ => {}
        }
    }
    if rows.is_empty() {
        return "Members: <none>\n".to_owned();
    }
    section("Members:", &["Kind", "Name", "Quota", "Usage"], rows)
}

/// A titled table of `describe`, as kubectl prints its sections: the title, then the
/// headers underlined with dashes and the rows, indented by two spaces.
fn section(title: &str, headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut all = vec![
        headers.clone(),
        headers.iter().map(|h| "-".repeat(h.len())).collect(),
    ];
    all.extend(rows);
    let table = output::table(&all[0], &all[1..], false);
    let mut out = format!("{title}\n");
    for line in table.lines() {
        out.push_str("  ");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The events about `object`, oldest last occurrence first, found as `kubectl describe`
/// finds them: a field selector on the involved object's name, namespace, kind and uid.
async fn object_events(client: &Client, object: &Value) -> Result<Vec<Value>> {
    let Some(involved) = api::ObjectReference::of_value(object) else {
        return Ok(Vec::new());
    };
    let mut selector = format!(
        "involvedObject.name={},involvedObject.namespace={},involvedObject.kind={}",
        involved.name,
        involved.namespace.as_deref().unwrap_or_default(),
        involved.kind
    );
    if let Some(uid) = &involved.uid {
        selector.push_str(&format!(",involvedObject.uid={uid}"));
    }
    let opts = ListOptions {
        field_selector: Some(selector),
        ..ListOptions::default()
    };
    let mut events = client
        .list_all(api::kinds::EVENT, Some(involved.event_namespace()), &opts)
        .await?;
    sort_events(&mut events);
    Ok(events)
}

/// Sorts events by their last occurrence, oldest first (as `kubectl get events` reads
/// best: the newest at the bottom).
pub fn sort_events(events: &mut [Value]) {
    let last_seen = |e: &Value| -> String {
        ["lastTimestamp", "eventTime", "firstTimestamp"]
            .iter()
            .find_map(|f| e.get(*f).and_then(Value::as_str))
            .or_else(|| {
                e.pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str)
            })
            .unwrap_or_default()
            .to_owned()
    };
    events.sort_by_cached_key(last_seen);
}

/// The `Events:` section of `describe`, as kubectl prints it: Type, Reason, Age (`3m (x5
/// over 10m)` for a repeated event), From, Message; `<none>` when there are none.
pub fn events_text(events: &[Value], now: jiff::Timestamp) -> String {
    if events.is_empty() {
        return "Events:       <none>\n".to_owned();
    }
    let mut rows = Vec::new();
    for e in events {
        let Ok(event) = serde_json::from_value::<api::Event>(e.clone()) else {
            continue;
        };
        let mut age = output::age(event.last_seen(), now);
        if event.count > 1 {
            age = format!(
                "{age} (x{} over {})",
                event.count,
                output::age(event.first_seen(), now)
            );
        }
        rows.push(vec![
            event.type_.to_string(),
            event.reason.clone(),
            age,
            event.from(),
            event.message.clone(),
        ]);
    }
    section(
        "Events:",
        &["Type", "Reason", "Age", "From", "Message"],
        rows,
    )
}

/// kubectl-describe-like text: identity first, then spec and status as indented YAML.
pub fn describe_text(info: &KindInfo, object: &Value) -> String {
    let mut out = String::new();
    let meta = object.get("metadata").cloned().unwrap_or_default();
    let field = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let map = |k: &str| -> String {
        match meta.get(k).and_then(Value::as_object) {
            Some(m) if !m.is_empty() => m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("\n              "),
            _ => "<none>".into(),
        }
    };
    out.push_str(&format!("Name:         {}\n", field("name")));
    if info.namespaced() {
        out.push_str(&format!("Namespace:    {}\n", field("namespace")));
    }
    out.push_str(&format!("Kind:         {}\n", info.kind));
    out.push_str(&format!("Labels:       {}\n", map("labels")));
    out.push_str(&format!("Annotations:  {}\n", map("annotations")));
    out.push_str(&format!("Created:      {}\n", field("creationTimestamp")));
    out.push_str(&format!("UID:          {}\n", field("uid")));
    out.push_str(&format!(
        "Generation:   {}   ResourceVersion: {}\n",
        meta.get("generation").and_then(Value::as_i64).unwrap_or(0),
        field("resourceVersion")
    ));
    if !info.has_spec() {
        // An Event: its core fields, as YAML.
        let mut body = object.clone();
        if let Some(m) = body.as_object_mut() {
            for k in ["apiVersion", "kind", "metadata"] {
                m.remove(k);
            }
        }
        out.push_str(&serde_yaml_ng::to_string(&body).unwrap_or_default());
    }
    if info == api::kinds::SECRET {
        // Key names and sizes, never values.
        out.push_str(&super::secret::describe_spec(object));
        return out;
    }
    for section in ["spec", "status"] {
        if let Some(v) = object.get(section) {
            let title = if section == "spec" {
                "Spec:"
            } else {
                "Status:"
            };
            out.push_str(title);
            out.push('\n');
            let yaml = serde_yaml_ng::to_string(v).unwrap_or_default();
            for line in yaml.lines() {
                out.push_str("  ");
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

pub async fn delete(client: &Client, conn: &Resolved, args: &DeleteArgs) -> Result<()> {
    let mut targets: Vec<(&'static KindInfo, Option<String>, String)> = Vec::new();
    if !args.files.is_empty() {
        for m in manifests::load(&args.files, args.recursive)? {
            let info = m.object.kind_info();
            let ns = info.namespaced().then(|| {
                m.object
                    .namespace()
                    .map(str::to_owned)
                    .unwrap_or_else(|| project(conn))
            });
            targets.push((info, ns, m.object.name().to_owned()));
        }
        // Delete dependents first.
        targets.sort_by_key(|(k, _, _)| std::cmp::Reverse(manifests::apply_rank(k.kind)));
    } else {
        let Some(kind_name) = &args.kind else {
            return Err(UserError::fail(
                "say what to delete: meridian delete KIND NAME, -l SELECTOR, --all, or -f FILE",
            ));
        };
        let info = kind(kind_name)?;
        let ns = info.namespaced().then(|| project(conn));
        if args.names.is_empty() {
            if args.selector.is_none() && !args.all {
                return Err(UserError::fail(format!(
                    "name the {} to delete, or pass -l SELECTOR or --all",
                    info.plural
                )));
            }
            let opts = ListOptions {
                label_selector: args.selector.clone(),
                ..ListOptions::default()
            };
            for o in client.list_all(info, ns.as_deref(), &opts).await? {
                targets.push((
                    info,
                    namespace_of(&o).map(str::to_owned),
                    name_of(&o).to_owned(),
                ));
            }
        } else {
            for n in &args.names {
                targets.push((info, ns.clone(), n.clone()));
            }
        }
    }
    let mut failures = 0;
    for (info, ns, name) in targets {
        match client.delete(info, ns.as_deref(), &name).await {
            Ok(_) => println!("{}.{}/{name} deleted", info.singular, api::GROUP),
            Err(e) if e.is_not_found() && args.ignore_not_found => {}
            Err(e) if e.is_user_error() => {
                failures += 1;
                eprintln!("error: {e}");
            }
            Err(e) => return Err(e.into()),
        }
    }
    if failures > 0 {
        return Err(UserError::fail(format!("{failures} deletion(s) failed")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_section_reads_like_kubectl() {
        let now: jiff::Timestamp = "2026-12-06T06:00:00Z".parse().expect("time");
        assert_eq!(events_text(&[], now), "Events:       <none>\n");
        let mut events = vec![
            json!({"apiVersion": "meridian.dev/v1", "kind": "Event",
                   "metadata": {"name": "w.2", "namespace": "p"},
                   "involvedObject": {"kind": "Workload", "name": "w"},
                   "reason": "BackOff", "message": "restarting", "type": "Warning", "count": 5,
                   "firstTimestamp": "2026-12-06T05:50:00Z", "lastTimestamp": "2026-12-06T05:57:00Z",
                   "source": {"component": "meridian-agent", "host": "edge-01"}}),
            json!({"apiVersion": "meridian.dev/v1", "kind": "Event",
                   "metadata": {"name": "w.1", "namespace": "p"},
                   "involvedObject": {"kind": "Workload", "name": "w"},
                   "reason": "Scheduled", "message": "placed", "type": "Normal", "count": 1,
                   "firstTimestamp": "2026-12-06T05:40:00Z", "lastTimestamp": "2026-12-06T05:40:00Z",
                   "source": {"component": "scheduler"}}),
        ];
        sort_events(&mut events);
        let text = events_text(&events, now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Events:");
        assert!(
            lines[1].starts_with("  Type      Reason      Age"),
            "{text}"
        );
        assert!(
            lines[3].contains("Scheduled") && lines[3].contains("20m"),
            "{text}"
        );
        assert!(
            lines[4].contains("3m (x5 over 10m)") && lines[4].contains("meridian-agent, edge-01"),
            "{text}"
        );
    }
}
