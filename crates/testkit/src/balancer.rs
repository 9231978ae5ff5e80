//! A TCP load balancer in front of several servers, as operations put one in front of the
//! replicas (docs/operations.md: 3 etcd + N servers behind a load balancer): clients and
//! agents dial one address and reach whichever server is up.
//!
//! Round robin over the backends whose health check passes (`GET /readyz` answered 200
//! within [`PROBE_TIMEOUT`], every [`PROBE_INTERVAL`]); a backend that fails its check is
//! taken out and the connections open to it are closed (HAProxy's `on-marked-down
//! shutdown-sessions`), so a client pinned to a server that lost its store reconnects to
//! another. A connection that cannot be made is tried on the next backend. Plain TCP:
//! whatever runs over it (HTTP, TLS) passes through. Runs on the caller's tokio runtime;
//! stops on drop.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How often each backend's `/readyz` is asked.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// How long a health check may take: a server that cannot reach its store answers late.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long connecting to a backend may take before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

struct Backend {
    addr: SocketAddr,
    healthy: bool,
    /// Cancelled when the backend is marked down or replaced: closes its connections.
    connections: CancellationToken,
}

#[derive(Default)]
struct Shared {
    /// One slot per server; `None` while a slot has no server.
    backends: Mutex<Vec<Option<Backend>>>,
    next: std::sync::atomic::AtomicUsize,
}

/// The balancer: listening on 127.0.0.1, stopped on drop.
pub struct Balancer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Balancer {
    /// Listens on a free loopback port and starts balancing over `slots` backend slots
    /// (empty until [`Balancer::set`]). Must be called within a tokio runtime.
    pub async fn start(slots: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the balancer binds a loopback port");
        let addr = listener.local_addr().expect("the balancer's address");
        let shared = Arc::new(Shared {
            backends: Mutex::new((0..slots).map(|_| None).collect()),
            next: Default::default(),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, Arc::clone(&shared), stop.clone()));
        tokio::spawn(health_loop(Arc::clone(&shared), stop.clone()));
        Self { addr, shared, stop }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Puts the server at `addr` in `slot` (replacing what was there, whose connections
    /// are closed); it takes traffic once its first health check passes.
    pub fn set(&self, slot: usize, addr: SocketAddr) {
        let mut backends = self.shared.backends.lock().expect("balancer lock");
        if let Some(old) = backends[slot].take() {
            old.connections.cancel();
        }
        backends[slot] = Some(Backend {
            addr,
            healthy: false,
            connections: CancellationToken::new(),
        });
    }

    /// Which slots take traffic now.
    pub fn healthy(&self) -> Vec<usize> {
        let backends = self.shared.backends.lock().expect("balancer lock");
        (0..backends.len())
            .filter(|&i| backends[i].as_ref().is_some_and(|b| b.healthy))
            .collect()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.cancel();
        for backend in self
            .shared
            .backends
            .lock()
            .expect("balancer lock")
            .iter()
            .flatten()
        {
            backend.connections.cancel();
        }
    }
}

/// The backends to try for a new connection, healthy ones first in round-robin order,
/// then the others (a check may lag a server that just came up).
fn candidates(shared: &Shared) -> Vec<(SocketAddr, CancellationToken)> {
    let backends = shared.backends.lock().expect("balancer lock");
    let n = backends.len().max(1);
    let start = shared
        .next
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ordered: Vec<&Backend> = (0..n)
        .filter_map(|i| backends.get((start + i) % n).and_then(Option::as_ref))
        .collect();
    ordered
        .iter()
        .filter(|b| b.healthy)
        .chain(ordered.iter().filter(|b| !b.healthy))
        .map(|b| (b.addr, b.connections.clone()))
        .collect()
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((mut inbound, _)) = accepted else {
            continue;
        };
        let shared = Arc::clone(&shared);
        let stop = stop.clone();
        tokio::spawn(async move {
            for (addr, closed) in candidates(&shared) {
                let Ok(Ok(mut outbound)) =
                    tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await
                else {
                    continue;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = closed.cancelled() => {}
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                }
                return;
            }
            // No backend took it: the client sees the connection close.
        });
    }
}

async fn health_loop(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let targets: Vec<(usize, SocketAddr)> = shared
            .backends
            .lock()
            .expect("balancer lock")
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.as_ref().map(|b| (i, b.addr)))
            .collect();
        let checks = targets.into_iter().map(|(slot, addr)| async move {
            let ok = tokio::time::timeout(PROBE_TIMEOUT, ready(addr))
                .await
                .unwrap_or(false);
            (slot, addr, ok)
        });
        let results = join_all(checks).await;
        {
            let mut backends = shared.backends.lock().expect("balancer lock");
            for (slot, addr, ok) in results {
                let Some(backend) = backends[slot].as_mut().filter(|b| b.addr == addr) else {
                    continue; // replaced while it was checked
                };
                if backend.healthy && !ok {
                    backend.connections.cancel();
                    backend.connections = CancellationToken::new();
                }
                backend.healthy = ok;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
    }
}

/// Runs the checks concurrently (a hanging one must not delay the others' verdicts).
async fn join_all<F>(checks: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = checks.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

/// `GET /readyz` over a fresh connection: true on a 200.
async fn ready(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.is_ok() && head.starts_with(b"HTTP/1.1 200")
}
