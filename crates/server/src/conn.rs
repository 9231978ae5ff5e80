//! Connection lifecycle: how long a client may take to send a request head, how long an
//! idle keep-alive connection is kept, and how many connections are open at once.
//!
//! The policy is Go `net/http`'s (`ReadHeaderTimeout`, `IdleTimeout`), enforced here rather
//! than by hyper, because hyper's `header_read_timeout` starts whenever it waits for a head,
//! idle keep-alive waits included (it would cut idle connections at the header timeout), and
//! does not run while `auto::Builder` sniffs the protocol, so a connection that sends nothing
//! would never be closed. Each connection has an [`Activity`] record:
//!
//! - a request is *in flight* from the moment hyper hands its head to the router until the
//!   response body has been written or dropped; a connection with a request in flight is
//!   never closed by these timeouts (watches, log streams and long polls run as long as the
//!   handler keeps them);
//! - a connection that has not completed a request yet, or whose client has started sending
//!   the next one (bytes arrived while idle, HTTP/1 only), must complete the head within
//!   [`ConnOptions::header_read_timeout`]: that closes silent and trickling connections;
//! - a connection with no request in flight after a first one is closed (HTTP/2 with a
//!   GOAWAY) after [`ConnOptions::idle_timeout`].
//!
//! HTTP/2 peers are pinged every 30 s and dropped when a ping goes 10 s unanswered, so a
//! vanished client does not keep a watch's stream open.
//!
//! The number of open connections is capped ([`ConnOptions::max_connections`], by default
//! derived from the open-file limit, see [`default_max_connections`]). At the cap, the
//! server does what nginx does when it runs out of connections: it closes the connection
//! that has been idle (no request in flight) the longest and serves the new one, so health
//! probes are answered while idle or slow clients hold every slot. When every connection
//! has a request in flight, the new connection is closed at once (Envoy's overload
//! behaviour): descriptors stay below the process limit, so the store and the open
//! connections keep working.
//!
//! Metrics: `meridian_connections` (open), `meridian_connections_max` (the cap) and
//! `meridian_connections_closed_total{reason}`, reasons being [`CloseReason::label`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::normalize_path::NormalizePath;

use crate::metrics::Metrics;

/// Connection timeouts and the connection cap.
#[derive(Clone, Debug)]
pub struct ConnOptions {
    /// Time a client has to send a complete request head: from accepting the connection
    /// (after the TLS handshake, which has the same limit) for the first request, and from
    /// the first byte of each later one.
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// Most connections open at once (`None`: [`default_max_connections`] of the
    /// open-file limit).
    pub max_connections: Option<usize>,
}

impl Default for ConnOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            max_connections: None,
        }
    }
}

/// How often HTTP/2 peers are pinged, and how long an answer may take.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection closed for idleness or eviction may take to finish (an HTTP/2
/// GOAWAY) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The connection cap for an open-file limit: the limit less a reserve of a quarter of it
/// (at least 256) for the store's files, outbound connections and the listener.
pub fn default_max_connections(nofile: u64) -> usize {
    let reserve = (nofile / 4).max(256);
    usize::try_from(nofile.saturating_sub(reserve))
        .unwrap_or(usize::MAX)
        .max(16)
}

/// The open-file limit: what the soft limit was, and what it is after raising it to the
/// hard limit (equal when it could not be raised).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileLimit {
    pub was: u64,
    pub now: u64,
}

/// Raise this process's soft open-file limit (`RLIMIT_NOFILE`) to its hard limit. `None`
/// where there is no such limit or it cannot be read.
pub fn raise_nofile_limit() -> Option<FileLimit> {
    #[cfg(unix)]
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
            Ok(limits) => limits,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the open-file limit (RLIMIT_NOFILE)");
                return None;
            }
        };
        if soft >= hard {
            return Some(FileLimit {
                was: soft,
                now: soft,
            });
        }
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => Some(FileLimit {
                was: soft,
                now: hard,
            }),
            Err(e) => {
                // macOS refuses a hard limit above OPEN_MAX ("unlimited"); keep the soft one.
                tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit; keeping the soft limit");
                Some(FileLimit {
                    was: soft,
                    now: soft,
                })
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Why a connection ended (the `reason` label of `meridian_connections_closed_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed it, or asked for it to close.
    Client,
    /// A protocol or I/O error.
    Error,
    /// No complete request head within the header read timeout (silent or trickling).
    HeaderTimeout,
    /// Idle (no request in flight) for the idle timeout.
    IdleTimeout,
    /// Idle, closed to make room for a new connection at the cap.
    Evicted,
    /// Refused at the cap: every open connection had a request in flight.
    Rejected,
    /// The TLS handshake failed or did not finish within the header read timeout.
    TlsHandshake,
    /// The server shut down.
    Shutdown,
}

impl CloseReason {
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Client => "client",
            CloseReason::Error => "error",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Evicted => "evicted",
            CloseReason::Rejected => "rejected",
            CloseReason::TlsHandshake => "tls_handshake",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// What a connection is doing, for its timeouts and for eviction.
#[derive(Debug)]
struct Activity {
    /// Requests whose response is not finished.
    in_flight: usize,
    /// Requests started on this connection.
    requests: u64,
    /// When the connection last became idle (accepted, or its last response finished).
    idle_since: Instant,
    /// When the first byte of the next request head arrived (HTTP/1, while idle).
    head_since: Option<Instant>,
    http2: bool,
}

/// One open connection, shared by its task, its I/O, its requests and the table.
struct Conn {
    activity: Mutex<Activity>,
    /// Wakes the connection's task when its deadline may have changed.
    changed: tokio::sync::Notify,
    /// Cancelled to close an idle connection at the cap.
    evict: CancellationToken,
}

impl Conn {
    fn activity(&self) -> std::sync::MutexGuard<'_, Activity> {
        self.activity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes arrived from the client.
    fn on_read(&self) {
        let mut a = self.activity();
        if a.in_flight == 0 && a.head_since.is_none() && !(a.http2 && a.requests > 0) {
            a.head_since = Some(Instant::now());
            drop(a);
            self.changed.notify_one();
        }
    }

    fn request_started(self: &Arc<Self>, version: Version) -> InFlight {
        let mut a = self.activity();
        a.in_flight += 1;
        a.requests += 1;
        a.head_since = None;
        a.http2 |= version == Version::HTTP_2;
        drop(a);
        self.changed.notify_one();
        InFlight { conn: self.clone() }
    }

    /// When this connection must close and why, if nothing happens before.
    fn deadline(&self, options: &ConnOptions) -> Option<(Instant, CloseReason)> {
        let a = self.activity();
        if a.in_flight > 0 {
            None
        } else if let Some(head) = a.head_since {
            Some((
                head + options.header_read_timeout,
                CloseReason::HeaderTimeout,
            ))
        } else if a.requests == 0 {
            Some((
                a.idle_since + options.header_read_timeout,
                CloseReason::HeaderTimeout,
            ))
        } else {
            Some((
                a.idle_since + options.idle_timeout,
                CloseReason::IdleTimeout,
            ))
        }
    }
}

/// A request in flight, until its response body is done.
struct InFlight {
    conn: Arc<Conn>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut a = self.conn.activity();
        a.in_flight -= 1;
        if a.in_flight == 0 {
            a.idle_since = Instant::now();
            a.head_since = None;
        }
        drop(a);
        self.conn.changed.notify_one();
    }
}

/// A response body that keeps its request in flight until it is written or dropped.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's socket (or TLS stream), noting when bytes arrive.
struct TrackedIo<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S: AsyncRead + Unpin> AsyncRead for TrackedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.on_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TrackedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The open connections: counts them, caps them, picks the one to evict.
pub(crate) struct Connections {
    options: ConnOptions,
    max: usize,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    metrics: Metrics,
}

/// A connection's place in the table, given back when dropped.
struct Slot {
    id: u64,
    conn: Arc<Conn>,
    table: Arc<Connections>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.lock_open().remove(&self.id);
        self.table.metrics.connection_closed();
    }
}

impl Connections {
    /// `max` is the resolved cap (see [`ConnOptions::max_connections`]).
    pub(crate) fn new(options: ConnOptions, max: usize, metrics: Metrics) -> Arc<Self> {
        metrics.set_max_connections(max);
        Arc::new(Self {
            options,
            max,
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for a new connection: at the cap, the longest-idle connection is asked to
    /// close; `None` when none is idle.
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.lock_open();
        if open.len() >= self.max {
            let victim = open
                .values()
                .filter(|c| !c.evict.is_cancelled())
                .filter_map(|c| {
                    let a = c.activity();
                    (a.in_flight == 0).then_some((a.idle_since, c.clone()))
                })
                .min_by_key(|(since, _)| *since);
            match victim {
                Some((_, c)) => c.evict.cancel(),
                None => return None,
            }
        }
        let conn = Arc::new(Conn {
            activity: Mutex::new(Activity {
                in_flight: 0,
                requests: 0,
                idle_since: Instant::now(),
                head_since: None,
                http2: false,
            }),
            changed: tokio::sync::Notify::new(),
            evict: CancellationToken::new(),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        open.insert(id, conn.clone());
        drop(open);
        self.metrics.connection_opened();
        Some(Slot {
            id,
            conn,
            table: self.clone(),
        })
    }

    /// Serve one accepted connection to its end (spawn this). `shutdown` starts a graceful
    /// close: in-flight requests finish, idle connections close.
    pub(crate) async fn serve(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        tls: Option<TlsAcceptor>,
        router: Router,
        shutdown: CancellationToken,
    ) {
        let Some(slot) = self.admit() else {
            tracing::debug!(%peer, "connection refused: at the connection cap with every connection busy");
            self.metrics.connection_ended(CloseReason::Rejected.label());
            return;
        };
        let reason = match tls {
            None => self.serve_io(stream, &slot, router, &shutdown).await,
            Some(acceptor) => {
                let handshake =
                    tokio::time::timeout(self.options.header_read_timeout, acceptor.accept(stream));
                tokio::select! {
                    done = handshake => match done {
                        Ok(Ok(tls_stream)) => self.serve_io(tls_stream, &slot, router, &shutdown).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            CloseReason::TlsHandshake
                        }
                        Err(_) => CloseReason::TlsHandshake,
                    },
                    () = slot.conn.evict.cancelled() => CloseReason::Evicted,
                    () = shutdown.cancelled() => CloseReason::Shutdown,
                }
            }
        };
        tracing::debug!(%peer, reason = reason.label(), "connection closed");
        self.metrics.connection_ended(reason.label());
    }

    async fn serve_io<S>(
        &self,
        io: S,
        slot: &Slot,
        router: Router,
        shutdown: &CancellationToken,
    ) -> CloseReason
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let conn = slot.conn.clone();
        let io = TokioIo::new(TrackedIo {
            inner: io,
            conn: conn.clone(),
        });
        let for_requests = conn.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let in_flight = for_requests.request_started(request.version());
            // `/version/` is `/version`, as the kube-apiserver answers (kr8s asks for it).
            let response = NormalizePath::trim_trailing_slash(router.clone()).oneshot(request);
            async move {
                let response = response.await?;
                Ok::<_, Infallible>(response.map(|inner| TrackedBody {
                    inner,
                    _in_flight: in_flight,
                }))
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_PING_INTERVAL)
            .keep_alive_timeout(H2_PING_TIMEOUT);
        let connection = builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(connection);

        // Set when the server decided to close: the reason, and when to stop waiting.
        let mut closing: Option<(CloseReason, Instant)> = None;
        loop {
            let deadline = match closing {
                Some((_, force_at)) => Some(force_at),
                None => conn.deadline(&self.options).map(|(at, _)| at),
            };
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ended = connection.as_mut() => {
                    return match (closing, ended) {
                        (Some((reason, _)), _) => reason,
                        (None, Ok(())) => CloseReason::Client,
                        (None, Err(e)) => {
                            tracing::debug!(error = %e, "connection ended with an error");
                            CloseReason::Error
                        }
                    };
                }
                () = conn.changed.notified(), if closing.is_none() => {}
                () = shutdown.cancelled(), if closing.is_none() => {
                    // Requests in flight finish (watches end on the same token); the server
                    // stops waiting for them after its drain period.
                    connection.as_mut().graceful_shutdown();
                    closing = Some((CloseReason::Shutdown, Instant::now() + Duration::from_secs(3600)));
                }
                () = conn.evict.cancelled(), if closing.is_none() => {
                    connection.as_mut().graceful_shutdown();
                    closing = Some((CloseReason::Evicted, Instant::now() + CLOSE_GRACE));
                }
                () = sleep => match closing {
                    Some((reason, _)) => return reason,
                    None => match conn.deadline(&self.options) {
                        Some((at, CloseReason::HeaderTimeout)) if at <= Instant::now() => {
                            return CloseReason::HeaderTimeout;
                        }
                        Some((at, reason)) if at <= Instant::now() => {
                            connection.as_mut().graceful_shutdown();
                            closing = Some((reason, Instant::now() + CLOSE_GRACE));
                        }
                        _ => {}
                    },
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_a_reserve_below_the_file_limit() {
        assert_eq!(default_max_connections(1024), 768);
        assert_eq!(default_max_connections(4096), 3072);
        assert_eq!(default_max_connections(524_288), 393_216);
        // Tiny limits still admit a few connections.
        assert_eq!(default_max_connections(256), 16);
    }

    #[test]
    fn raising_the_file_limit_reaches_the_hard_limit() {
        let limit = raise_nofile_limit();
        #[cfg(unix)]
        {
            let limit = limit.expect("a limit on unix");
            let (soft, _hard) =
                nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                    .expect("getrlimit");
            assert_eq!(limit.now, soft);
            assert!(limit.now >= limit.was);
        }
        #[cfg(not(unix))]
        assert!(limit.is_none());
    }
}
