//! The agent's side of `meridian logs`: it serves the log sessions the server queues for
//! this node, without ever listening on a port.
//!
//! [`serve`] long-polls `GET /meridian/v1/nodes/{node}/log-sessions` with the node
//! credential. For each session (at most [`MAX_SESSIONS`] at once) it checks that the
//! allocation is on this node (else it answers `POST …/{id}/error` with a 404 `Status`),
//! then uploads the output with `POST …/log-sessions/{id}` as one streaming request body,
//! which the server pipes to the reader:
//!
//! - what is stored: `stdout.log` (and `stderr.log`) in the allocation's directory, the
//!   rotated `*.log.1` first; with `tailLines`, only the last N lines of the two (found by
//!   scanning backwards, [`tail_start`]); with the stream `all`, stdout then stderr;
//! - when following, what the task writes next: every 200 ms each file is read from where
//!   the last read ended; when the writer rotates it (the path names a new file), the old
//!   one is read to its end and the new one from its start;
//! - a follow ends when the allocation stops (succeeded, failed, lost, asked to stop,
//!   deleted or replaced: checked through the API every 2 s), when the reader goes away
//!   (the server answers the upload, which stops it), or when the agent stops.
//!
//! The allocation directories are the ones `runtime.rs` gives the exec driver:
//! `DATA_DIR/allocations/{namespace}_{name}` ([`allocation_dir`]).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use api::kinds::{AllocationPhase, DesiredState};
use api::logs::{LogSession, LogSessionList, LogStream};
use api::{Allocation, Status};
use client::{Client, Method};

/// Sessions this agent serves at once (the server also bounds them per node).
pub const MAX_SESSIONS: usize = 32;
/// How often a followed file is read for growth.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);
/// How often (in follow reads) a follow checks that its allocation still runs: 2 s.
const CHECK_EVERY: u32 = 10;
const CHUNK: usize = 64 * 1024;

/// The directory of an allocation's files, as `runtime.rs` lays them out.
pub fn allocation_dir(data_dir: &Path, namespace: &str, name: &str) -> PathBuf {
    data_dir
        .join("allocations")
        .join(format!("{namespace}_{name}"))
}

fn file_names(stream: LogStream) -> &'static [&'static str] {
    match stream {
        LogStream::Stdout => &["stdout.log"],
        LogStream::Stderr => &["stderr.log"],
        LogStream::All => &["stdout.log", "stderr.log"],
    }
}

fn rotated(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

/// What tells a file from the one that replaced it at the same path.
#[cfg(unix)]
fn file_id(m: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// Where the last `n` lines of `parts` (oldest first, each with the length to consider)
/// start: the index of a part and an offset in it. A last line without its newline counts
/// as a line. `(parts.len(), 0)` when `n` is 0.
pub fn tail_start<R: Read + Seek>(parts: &mut [(R, u64)], n: u64) -> std::io::Result<(usize, u64)> {
    if n == 0 {
        return Ok((parts.len(), 0));
    }
    let mut seen = 0;
    let mut last_byte = true;
    let mut buf = vec![0u8; CHUNK];
    for i in (0..parts.len()).rev() {
        let (reader, len) = &mut parts[i];
        let mut end = *len;
        while end > 0 {
            let start = end.saturating_sub(CHUNK as u64);
            let block = &mut buf[..(end - start) as usize];
            reader.seek(SeekFrom::Start(start))?;
            reader.read_exact(block)?;
            for j in (0..block.len()).rev() {
                let newline = block[j] == b'\n';
                if std::mem::take(&mut last_byte) && newline {
                    continue; // it ends the last line
                }
                if newline {
                    seen += 1;
                    if seen == n {
                        return Ok((i, start + j as u64 + 1));
                    }
                }
            }
            end = start;
        }
    }
    Ok((0, 0))
}

/// Where bytes go: the upload's body, up to the session's limit.
struct Sink {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    left: u64,
}

impl Sink {
    /// Sends `bytes` (cut at the limit); false when the session is over.
    async fn send(&mut self, bytes: &[u8]) -> bool {
        let n = bytes
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if n > 0 {
            if self
                .tx
                .send(Ok(Bytes::copy_from_slice(&bytes[..n])))
                .await
                .is_err()
            {
                return false;
            }
            self.left -= n as u64;
        }
        self.left > 0
    }
}

/// Reads `file` to its end into `sink`; the bytes read, or `None` when the session is over.
async fn pump(file: &mut tokio::fs::File, sink: &mut Sink) -> Option<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0;
    loop {
        let n = file.read(&mut buf).await.ok()?;
        if n == 0 {
            return Some(total);
        }
        total += n as u64;
        if !sink.send(&buf[..n]).await {
            return None;
        }
    }
}

/// A log file read as it grows, across rotations.
struct Follower {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    id: Option<(u64, u64)>,
    pos: u64,
}

impl Follower {
    async fn open(path: PathBuf) -> Self {
        let mut f = Follower {
            path,
            file: None,
            id: None,
            pos: 0,
        };
        f.reopen().await;
        f
    }

    async fn reopen(&mut self) {
        self.file = None;
        self.pos = 0;
        if let Ok(file) = tokio::fs::File::open(&self.path).await {
            self.id = file.metadata().await.ok().as_ref().and_then(file_id);
            self.file = Some(file);
        }
    }

    /// Sends what was written since the last read; false when the session is over.
    async fn pump(&mut self, sink: &mut Sink) -> bool {
        if self.file.is_none() {
            self.reopen().await;
        }
        let Some(file) = self.file.as_mut() else {
            return true; // not written yet
        };
        match pump(file, sink).await {
            Some(n) => self.pos += n,
            None => return false,
        }
        let Ok(now) = tokio::fs::metadata(&self.path).await else {
            return true; // renamed, its successor not created yet
        };
        let current = file_id(&now);
        if current.is_some() && current != self.id {
            // Rotated: the old file is complete (the writer renames it after its last
            // write), so what is at the path now is new.
            self.reopen().await;
            return Box::pin(self.pump(sink)).await;
        }
        if now.len() < self.pos {
            // Truncated in place: read again from its start.
            let _ = file.seek(SeekFrom::Start(0)).await;
            self.pos = 0;
        }
        true
    }
}

/// Sends what is stored of one stream (the last `tail` lines, if asked), then returns the
/// follower positioned where that read ended.
async fn send_stored(path: PathBuf, tail: Option<u64>, sink: &mut Sink) -> Option<Follower> {
    // The current file is opened first, so a follow continues exactly where this ends.
    let mut follower = Follower::open(path.clone()).await;
    let old = rotated(&path);
    let lengths = [
        std::fs::metadata(&old).map_or(0, |m| m.len()),
        match follower.file.as_ref() {
            Some(f) => f.metadata().await.map_or(0, |m| m.len()),
            None => 0,
        },
    ];
    let (part, offset) = match tail {
        None => (0, 0),
        Some(n) => {
            let paths = [old.clone(), path.clone()];
            tokio::task::spawn_blocking(move || {
                let mut parts = Vec::new();
                for (p, len) in paths.iter().zip(lengths) {
                    // A missing part reads as empty.
                    let file = std::fs::File::open(p).ok();
                    parts.push((Part(file), len));
                }
                tail_start(&mut parts, n)
            })
            .await
            .ok()?
            .ok()?
        }
    };
    if part == 0
        && lengths[0] > 0
        && let Ok(mut f) = tokio::fs::File::open(&old).await
        && f.seek(SeekFrom::Start(offset)).await.is_ok()
    {
        let mut limited = f.take(lengths[0] - offset);
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = limited.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            if !sink.send(&buf[..n]).await {
                return None;
            }
        }
    }
    let from = match part {
        0 => 0,
        1 => offset,
        _ => lengths[1],
    };
    if let Some(file) = follower.file.as_mut() {
        file.seek(SeekFrom::Start(from)).await.ok()?;
        follower.pos = from;
    }
    follower.pump(sink).await.then_some(follower)
}

/// A file that may be missing (then empty).
struct Part(Option<std::fs::File>);

impl Read for Part {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.0 {
            Some(f) => f.read(buf),
            None => Ok(0),
        }
    }
}

impl Seek for Part {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        match &mut self.0 {
            Some(f) => f.seek(pos),
            None => Ok(0),
        }
    }
}

struct Ctx {
    client: Client,
    node: String,
    data_dir: PathBuf,
}

/// The session's allocation (`None`: the server sent one this agent cannot read).
async fn fetch(ctx: &Ctx, s: &LogSession) -> client::Result<Option<Allocation>> {
    let a = ctx
        .client
        .get(api::kinds::ALLOCATION, Some(&s.namespace), &s.allocation)
        .await?;
    Ok(crate::runtime::decode(a).ok())
}

/// Whether `a` is the session's allocation on this node.
fn is_ours(ctx: &Ctx, s: &LogSession, a: &Allocation) -> bool {
    a.spec.node == ctx.node && (s.uid.is_empty() || a.metadata.uid.as_deref() == Some(&s.uid))
}

/// The allocation is on this node, or a `Status` saying why this node cannot serve it.
async fn check(ctx: &Ctx, s: &LogSession) -> Result<(), Status> {
    let not_here = || {
        Status::failure(
            404,
            "NotFound",
            format!(
                "allocation {}/{} is not on node {}",
                s.namespace, s.allocation, ctx.node
            ),
        )
    };
    match fetch(ctx, s).await {
        Ok(Some(a)) if is_ours(ctx, s, &a) => Ok(()),
        Ok(_) => Err(not_here()),
        Err(e) if e.is_user_error() => Err(not_here()),
        Err(e) => Err(Status::failure(
            503,
            "ServiceUnavailable",
            format!("the agent cannot read the allocation: {e}"),
        )),
    }
}

/// Whether a followed allocation still runs here (an unreachable server is no reason to
/// stop: the upload fails by itself if the server is gone).
async fn still_running(ctx: &Ctx, s: &LogSession) -> bool {
    match fetch(ctx, s).await {
        Ok(Some(a)) => {
            is_ours(ctx, s, &a)
                && a.spec.desired_state != DesiredState::Stop
                && !matches!(
                    a.status.as_ref().map(|st| st.phase),
                    Some(
                        AllocationPhase::Succeeded
                            | AllocationPhase::Failed
                            | AllocationPhase::Lost
                    )
                )
        }
        Ok(None) => false,
        Err(e) => !e.is_user_error(),
    }
}

/// Produces the session's bytes into `sink` until it is over or `stop` is cancelled.
async fn produce(ctx: Arc<Ctx>, s: LogSession, mut sink: Sink, stop: CancellationToken) {
    let dir = allocation_dir(&ctx.data_dir, &s.namespace, &s.allocation);
    let mut followers = Vec::new();
    for name in file_names(s.stream) {
        match send_stored(dir.join(name), s.tail_lines, &mut sink).await {
            Some(f) => followers.push(f),
            None => return,
        }
    }
    if !s.follow {
        return;
    }
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reads: u32 = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = sink.tx.closed() => return,
            _ = tick.tick() => {}
        }
        for f in &mut followers {
            if !f.pump(&mut sink).await {
                return;
            }
        }
        reads = reads.wrapping_add(1);
        if reads % CHECK_EVERY == 1 && !still_running(&ctx, &s).await {
            // What the task wrote last may land just after its exit is reported.
            tokio::time::sleep(FOLLOW_EVERY).await;
            for f in &mut followers {
                if !f.pump(&mut sink).await {
                    return;
                }
            }
            return;
        }
    }
}

async fn serve_session(ctx: Arc<Ctx>, s: LogSession, shutdown: CancellationToken) {
    let path = format!("/meridian/v1/nodes/{}/log-sessions/{}", ctx.node, s.id);
    if let Err(status) = check(&ctx, &s).await {
        let body = serde_json::to_value(&status).unwrap_or_default();
        if let Err(e) = ctx
            .client
            .request_json(Method::POST, &format!("{path}/error"), Some(&body))
            .await
        {
            tracing::debug!(error = %e, "cannot refuse a log session");
        }
        return;
    }
    let (tx, rx) = mpsc::channel(8);
    let sink = Sink {
        tx,
        left: s.limit_bytes,
    };
    let stop = shutdown.child_token();
    let producer = tokio::spawn(produce(Arc::clone(&ctx), s.clone(), sink, stop.clone()));
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    tokio::select! {
        r = ctx.client.send_stream(Method::POST, &path, body) => {
            if let Err(e) = r {
                tracing::debug!(allocation = %s.allocation, error = %e, "log upload ended with an error");
            }
        }
        () = shutdown.cancelled() => {}
    }
    // The server answered: the session is over, whatever the producer was doing.
    stop.cancel();
    let _ = producer.await;
    tracing::debug!(allocation = %s.allocation, follow = s.follow, "log session served");
}

/// Serves this node's log sessions until `shutdown`.
pub async fn serve(client: Client, node: String, data_dir: PathBuf, shutdown: CancellationToken) {
    let ctx = Arc::new(Ctx {
        client,
        node,
        data_dir,
    });
    let poll = format!("/meridian/v1/nodes/{}/log-sessions", ctx.node);
    let slots = Arc::new(Semaphore::new(MAX_SESSIONS));
    let mut backoff = Duration::from_secs(1);
    loop {
        let answer = tokio::select! {
            () = shutdown.cancelled() => return,
            a = ctx.client.request_json(Method::GET, &poll, None) => a,
        };
        let list = match answer.map(serde_json::from_value::<LogSessionList>) {
            Ok(Ok(list)) => list,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the server's log sessions are not understood");
                LogSessionList::default()
            }
            Err(e) => {
                if e.code() == Some(404) {
                    tracing::debug!("the server serves no log sessions");
                    backoff = Duration::from_secs(60);
                } else {
                    tracing::warn!(error = %e, "cannot poll for log sessions; retrying");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
                continue;
            }
        };
        backoff = Duration::from_secs(1);
        for s in list.sessions {
            let ctx = Arc::clone(&ctx);
            match Arc::clone(&slots).try_acquire_owned() {
                Ok(permit) => {
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        serve_session(ctx, s, shutdown).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    let status = Status::failure(
                        503,
                        "ServiceUnavailable",
                        format!(
                            "the agent already serves {MAX_SESSIONS} log sessions; try again later"
                        ),
                    );
                    let path = format!(
                        "/meridian/v1/nodes/{}/log-sessions/{}/error",
                        ctx.node, s.id
                    );
                    let body = serde_json::to_value(&status).unwrap_or_default();
                    let _ = ctx
                        .client
                        .request_json(Method::POST, &path, Some(&body))
                        .await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn parts(texts: &[&str]) -> Vec<(Cursor<Vec<u8>>, u64)> {
        texts
            .iter()
            .map(|t| (Cursor::new(t.as_bytes().to_vec()), t.len() as u64))
            .collect()
    }

    fn tail(texts: &[&str], n: u64) -> String {
        let mut p = parts(texts);
        let (i, off) = tail_start(&mut p, n).expect("scan");
        let mut out = String::new();
        for (k, t) in texts.iter().enumerate() {
            if k == i {
                out.push_str(&t[off as usize..]);
            } else if k > i {
                out.push_str(t);
            }
        }
        out
    }

    #[test]
    fn tail_counts_lines_from_the_end_across_rotated_files() {
        assert_eq!(tail(&["a\nb\nc\n"], 2), "b\nc\n");
        assert_eq!(tail(&["a\nb\nc"], 2), "b\nc", "a last line without newline");
        assert_eq!(
            tail(&["a\nb\n", "c\n"], 2),
            "b\nc\n",
            "into the rotated file"
        );
        assert_eq!(tail(&["a\nb\n", ""], 1), "b\n", "an empty current file");
        assert_eq!(tail(&["a\n", "b\n"], 5), "a\nb\n", "fewer lines than asked");
        assert_eq!(tail(&["a\nb\n"], 0), "");
        assert_eq!(tail(&["", ""], 3), "");
    }

    #[test]
    fn tail_scans_blocks_larger_than_one_chunk() {
        let line = format!("{}\n", "x".repeat(1000));
        let big: String = (0..200).map(|_| line.as_str()).collect();
        let text = format!("{big}last-but-one\nlast\n");
        assert_eq!(tail(&[&text], 2), "last-but-one\nlast\n");
        assert_eq!(tail(&[&text], 3).len(), line.len() + 18);
    }

    #[tokio::test]
    async fn stored_output_is_sent_and_followed_across_a_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stdout.log");
        std::fs::write(rotated(&path), "one\ntwo\n").expect("write");
        std::fs::write(&path, "three\n").expect("write");
        let (tx, mut rx) = mpsc::channel(64);
        let mut sink = Sink { tx, left: u64::MAX };
        let mut f = send_stored(path.clone(), Some(2), &mut sink)
            .await
            .expect("follower");
        // The writer appends, then rotates and writes to a new file.
        {
            use std::io::Write;
            let mut w = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .expect("open");
            w.write_all(b"four\n").expect("append");
        }
        std::fs::rename(&path, rotated(&path)).expect("rotate");
        std::fs::write(&path, "five\n").expect("write");
        assert!(f.pump(&mut sink).await);
        drop(sink);
        let mut got = Vec::new();
        while let Some(Ok(b)) = rx.recv().await {
            got.extend_from_slice(&b);
        }
        assert_eq!(String::from_utf8_lossy(&got), "two\nthree\nfour\nfive\n");
    }

    #[tokio::test]
    async fn the_byte_limit_ends_a_session() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stdout.log");
        std::fs::write(&path, "0123456789").expect("write");
        let (tx, mut rx) = mpsc::channel(64);
        let mut sink = Sink { tx, left: 4 };
        assert!(send_stored(path, None, &mut sink).await.is_none());
        drop(sink);
        let got = rx.recv().await.expect("chunk").expect("bytes");
        assert_eq!(&got[..], b"0123");
        assert!(rx.recv().await.is_none());
    }
}
