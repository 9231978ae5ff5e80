//! `meridian bench watch`: W watch streams, then E paced creates; the time from each
//! create's send and acknowledgement to each watcher's receipt of its event.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::Value;

use client::{Client, ListOptions};

use crate::load::{
    RUN_LABEL, SEQ_ANNOTATION, SEQ_KEY, describe, ensure_project, report_errors, run_id, workload,
};
use crate::report::{ms_f, percentile, print_table};
use crate::{Target, UsageError, WatchArgs};

/// The soft limit of open files of this process, from /proc (None: unknown or unlimited).
fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The revision of the project's workloads now (watches start after it).
async fn current_revision(client: &Client, project: &str) -> Result<String> {
    let page = client
        .list(
            api::kinds::WORKLOAD,
            Some(project),
            &ListOptions {
                limit: Some(1),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot list workloads: {}", describe(&e)))?;
    page.get("metadata")
        .and_then(|m| m.get("resourceVersion"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("the list has no resourceVersion")
}

struct WatcherOutcome {
    /// Index of the watch server this watcher reads from.
    server: usize,
    /// (sequence number, receipt time)
    received: Vec<(u64, Instant)>,
    error: Option<String>,
}

/// `meridian bench watch`: prints the figures; fails when a delivery was missed or a create
/// failed.
pub async fn watch(target: &Target, args: &WatchArgs) -> Result<()> {
    if args.watchers == 0 || args.events == 0 || args.rate <= 0.0 {
        bail!(UsageError(
            "--watchers, --events and --rate must be positive".into()
        ));
    }
    let needed = args.watchers as u64 + 128;
    if let Some(limit) = open_files_limit()
        && limit < needed
    {
        bail!(UsageError(format!(
            "{} watchers need about {needed} open files but this process may open {limit}: \
             raise the limit first (`ulimit -n {}`), for the server process too",
            args.watchers,
            needed.next_power_of_two()
        )));
    }
    let project = target.project();
    let client = target.client()?;
    ensure_project(&client, &project).await?;
    let run = run_id();
    let from = current_revision(&client, &project).await?;

    // Open every watch before the first write; each is its own connection (HTTP/1.1: the
    // client's pool opens one per stream in flight).
    let opened = Instant::now();
    // Watchers go round-robin over the watch servers (by default the writer's server).
    let watch_servers: Vec<String> = if args.watch_servers.is_empty() {
        vec![target.server.clone()]
    } else {
        args.watch_servers.clone()
    };
    let watch_clients = watch_servers
        .iter()
        .map(|url| (target.connect_to)(url))
        .collect::<Result<Vec<_>>>()?;
    let opts = ListOptions {
        label_selector: Some(format!("{RUN_LABEL}={run}")),
        resource_version: Some(from),
        ..Default::default()
    };
    let light = !args.parse;
    let streams: Vec<Result<Watcher>> = futures::stream::iter(0..args.watchers)
        .map(|i| {
            let c = watch_clients[i % watch_clients.len()].clone();
            let (o, project) = (opts.clone(), project.clone());
            let server = watch_servers[i % watch_servers.len()].clone();
            async move {
                let kind = api::kinds::WORKLOAD;
                let watcher = if light {
                    c.watch_lines(kind, Some(&project), &o)
                        .await
                        .map(Watcher::Light)
                } else {
                    c.watch(kind, Some(&project), &o).await.map(Watcher::Typed)
                };
                watcher.map_err(|e| anyhow::anyhow!("{server}: {}", describe(&e)))
            }
        })
        .buffered(64)
        .collect()
        .await;
    let mut events_streams = Vec::with_capacity(streams.len());
    for s in streams {
        match s {
            Ok(s) => events_streams.push(s),
            Err(e) => bail!(
                "cannot open watch {} of {}: {e:#} (is the server's `ulimit -n` high enough?)",
                events_streams.len() + 1,
                args.watchers,
            ),
        }
    }
    let open_time = opened.elapsed();

    let expected = args.events;
    let write_time = Duration::from_secs_f64(args.events as f64 / args.rate);
    let deadline = tokio::time::Instant::now() + write_time + Duration::from_secs(30);
    let watch_servers_len = watch_servers.len();
    let watchers: Vec<_> = events_streams
        .into_iter()
        .enumerate()
        .map(|(index, mut events)| {
            tokio::spawn(async move {
                let mut out = WatcherOutcome {
                    server: index % watch_servers_len,
                    received: Vec::with_capacity(expected),
                    error: None,
                };
                while out.received.len() < expected {
                    let delivery = match tokio::time::timeout_at(deadline, events.next()).await {
                        Err(_) => Delivery::Failed("timed out waiting for events".into()),
                        Ok(d) => d,
                    };
                    match delivery {
                        Delivery::Seq(seq) => out.received.push((seq, Instant::now())),
                        Delivery::Other => {}
                        Delivery::Failed(e) => {
                            out.error = Some(e);
                            break;
                        }
                    }
                }
                out
            })
        })
        .collect();

    // Paced writes; each create runs in its own task so a slow ack does not delay the next.
    let start = tokio::time::Instant::now();
    let mut writes = Vec::with_capacity(args.events);
    for i in 0..args.events {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / args.rate)).await;
        let (c, project, run, size) = (client.clone(), project.clone(), run.clone(), args.size);
        writes.push(tokio::spawn(async move {
            let name = format!("w-{run}-{i}");
            let object = workload(&name, &project, &run, i as u64, size);
            let sent = Instant::now();
            let r = c
                .create(api::kinds::WORKLOAD, Some(&project), &object, false)
                .await;
            (sent, Instant::now(), r.map_err(|e| describe(&e)))
        }));
    }
    let mut sent_ack: Vec<Option<(Instant, Instant)>> = vec![None; args.events];
    let mut write_errors: BTreeMap<String, u64> = BTreeMap::new();
    for (i, w) in writes.into_iter().enumerate() {
        match w.await {
            Ok((sent, ack, Ok(_))) => sent_ack[i] = Some((sent, ack)),
            Ok((_, _, Err(m))) => *write_errors.entry(m).or_default() += 1,
            Err(e) => *write_errors.entry(e.to_string()).or_default() += 1,
        }
    }
    let acked = sent_ack.iter().filter(|s| s.is_some()).count();

    let mut after_ack: Vec<f64> = Vec::new();
    let mut after_send: Vec<f64> = Vec::new();
    let mut commit: Vec<Duration> = sent_ack
        .iter()
        .flatten()
        .map(|(s, a)| a.duration_since(*s))
        .collect();
    commit.sort_unstable();
    let mut watcher_errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut delivered = 0u64;
    let mut early = 0u64;
    // send→delivery per watch server, and deliveries per server
    let mut per_server: Vec<(Vec<f64>, u64)> = vec![(Vec::new(), 0); watch_servers.len()];
    for w in watchers {
        let out = w.await.context("a watcher task failed")?;
        per_server[out.server].1 += 1;
        if let Some(e) = out.error {
            *watcher_errors
                .entry(format!("{}: {e}", watch_servers[out.server]))
                .or_default() += 1;
        }
        for (seq, at) in out.received {
            let Some(Some((sent, ack))) = usize::try_from(seq).ok().and_then(|s| sent_ack.get(s))
            else {
                continue;
            };
            delivered += 1;
            let signed = |from: Instant| {
                if at >= from {
                    at.duration_since(from).as_secs_f64() * 1000.0
                } else {
                    -(from.duration_since(at).as_secs_f64() * 1000.0)
                }
            };
            let a = signed(*ack);
            if a < 0.0 {
                early += 1;
            }
            after_ack.push(a);
            after_send.push(signed(*sent));
            per_server[out.server].0.push(signed(*sent));
        }
    }
    after_ack.sort_unstable_by(f64::total_cmp);
    after_send.sort_unstable_by(f64::total_cmp);
    let expected_total = (acked * args.watchers) as u64;
    let missed = expected_total.saturating_sub(delivered);
    let p = |v: &[f64], q| ms_f(percentile(v, q));
    let rows: Vec<(&str, String)> = vec![
        ("server (writer)", target.server.clone()),
        (
            "watchers",
            format!(
                "{} ({})",
                args.watchers,
                if light {
                    "light reader: finds the sequence number in each line"
                } else {
                    "API client: decodes every event"
                }
            ),
        ),
        (
            "watches opened in",
            format!("{:.2} s", open_time.as_secs_f64()),
        ),
        (
            "events",
            format!(
                "{} creates at {}/s, request body {} B",
                args.events, args.rate, args.size
            ),
        ),
        ("creates acked", acked.to_string()),
        ("deliveries", format!("{delivered} of {expected_total}")),
        ("missed", missed.to_string()),
        (
            "create (send→ack) p50",
            ms_f(percentile(&commit, 0.5).map(|d| d.as_secs_f64() * 1e3)),
        ),
        (
            "create (send→ack) p99",
            ms_f(percentile(&commit, 0.99).map(|d| d.as_secs_f64() * 1e3)),
        ),
        ("ack→delivery p50", p(&after_ack, 0.5)),
        ("ack→delivery p90", p(&after_ack, 0.9)),
        ("ack→delivery p99", p(&after_ack, 0.99)),
        ("ack→delivery max", ms_f(after_ack.last().copied())),
        ("delivered before ack", format!("{early} of {delivered}")),
        ("send→delivery p50", p(&after_send, 0.5)),
        ("send→delivery p90", p(&after_send, 0.9)),
        ("send→delivery p99", p(&after_send, 0.99)),
        ("send→delivery max", ms_f(after_send.last().copied())),
    ];
    let mut rows: Vec<(String, String)> =
        rows.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    if watch_servers.len() > 1 {
        for (i, (mut lat, watchers)) in per_server.into_iter().enumerate() {
            lat.sort_unstable_by(f64::total_cmp);
            rows.push((
                format!("server {} send→delivery", i + 1),
                format!(
                    "p50 {}, p99 {}, max {} ({watchers} watchers, {} deliveries) {}",
                    p(&lat, 0.5),
                    p(&lat, 0.99),
                    ms_f(lat.last().copied()),
                    lat.len(),
                    watch_servers[i]
                ),
            ));
        }
    }
    let rows: Vec<(&str, String)> = rows.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    print_table("bench watch", &rows);
    report_errors(&write_errors);
    report_errors(&watcher_errors);
    if missed > 0 || acked < args.events {
        bail!(
            "{missed} deliveries missed, {} creates failed",
            args.events - acked
        );
    }
    Ok(())
}

/// What a watcher saw next.
enum Delivery {
    /// An `ADDED` event of the benchmark object with this sequence number.
    Seq(u64),
    /// Any other event.
    Other,
    /// The stream failed or ended.
    Failed(String),
}

/// A watch stream, read by the API client or by the light reader.
enum Watcher {
    /// Every event decoded, as a real client would.
    Typed(client::WatchEvents),
    /// Each event's line searched for its type and sequence number only, so that the load
    /// generator spends little CPU per event (it shares the machine with the server).
    Light(client::WatchLines),
}

impl Watcher {
    async fn next(&mut self) -> Delivery {
        match self {
            Watcher::Typed(events) => match events.next().await {
                None => Delivery::Failed("the server ended the stream".into()),
                Some(Err(e)) => Delivery::Failed(describe(&e)),
                Some(Ok(ev)) => match ev.type_.as_str() {
                    "ADDED" => ev
                        .object
                        .pointer("/metadata/annotations")
                        .and_then(|a| a.get(SEQ_ANNOTATION))
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse().ok())
                        .map_or(Delivery::Other, Delivery::Seq),
                    "ERROR" => Delivery::Failed(format!("ERROR event: {}", ev.object)),
                    _ => Delivery::Other,
                },
            },
            Watcher::Light(lines) => match lines.next().await {
                None => Delivery::Failed("the server ended the stream".into()),
                Some(Err(e)) => Delivery::Failed(describe(&e)),
                Some(Ok(line)) => light_delivery(&line),
            },
        }
    }
}

/// What one event line holds, read without decoding it: the server writes compact JSON
/// with `type` first, and the sequence annotation's value is a string of digits.
fn light_delivery(line: &[u8]) -> Delivery {
    const ADDED: &[u8] = b"{\"type\":\"ADDED\"";
    const ERROR: &[u8] = b"{\"type\":\"ERROR\"";
    if line.starts_with(ERROR) {
        return Delivery::Failed(String::from_utf8_lossy(line).trim().to_owned());
    }
    if !line.starts_with(ADDED) {
        return Delivery::Other;
    }
    let Some(at) = find(line, SEQ_KEY) else {
        return Delivery::Other;
    };
    let digits = &line[at + SEQ_KEY.len()..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end])
        .ok()
        .and_then(|d| d.parse().ok())
        .map_or(Delivery::Other, Delivery::Seq)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::load::workload;

    fn line(event: &Value) -> Vec<u8> {
        let mut line = serde_json::to_vec(event).unwrap();
        line.push(b'\n');
        line
    }

    #[test]
    fn the_light_reader_finds_the_sequence_annotation() {
        let o = workload("b-abc-1", "bench", "abc", 42, 300);
        let added = line(&json!({"type": "ADDED", "object": o}));
        assert!(matches!(light_delivery(&added), Delivery::Seq(42)));
        let modified = line(&json!({"type": "MODIFIED", "object": o}));
        assert!(matches!(light_delivery(&modified), Delivery::Other));
        let error = line(&json!({"type": "ERROR", "object": {"kind": "Status", "code": 410}}));
        assert!(matches!(light_delivery(&error), Delivery::Failed(m) if m.contains("410")));
    }
}
