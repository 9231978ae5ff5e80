//! The server's exposure to the network and the host, against real servers.
//!
//! Connections over raw TCP on loopback: silent and trickling clients are closed after the
//! header read timeout, idle keep-alive connections after the idle timeout while a watch on
//! another connection lives on, and at the connection cap health checks are still answered.
//! A `0.0.0.0` listener's generated certificate is accepted at a non-loopback address of the
//! host. The data directory and the database files are owner-only.
//!
//! Timeouts are configured short so that the tests are quick; the assertions are about
//! what happens ("closed", "still open", "answered"), with generous bounds.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use server::ConnOptions;
use server::ServerConfig;
use testkit::wait_until_async;

/// Generous bound for "the server closes it": several times every configured timeout.
const CLOSED_WITHIN: Duration = Duration::from_secs(15);

/// A test server (see `testkit`) reached over raw TCP.
struct TestServer {
    running: testkit::TestServer,
    admin: String,
}

impl TestServer {
    async fn start(connections: ConnOptions) -> Self {
        let running = testkit::TestServer::start_with(ServerConfig {
            scheduler: None,
            connections,
            ..ServerConfig::default()
        })
        .await;
        let admin = running.token.clone();
        Self { running, admin }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.running.addr())
            .await
            .expect("connect")
    }

    /// One request on a fresh connection (`Connection: close`); the whole answer.
    async fn request(&self, method: &str, path: &str, body: Option<&str>) -> String {
        let mut stream = self.connect().await;
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.admin,
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut answer = String::new();
        tokio::time::timeout(CLOSED_WITHIN, stream.read_to_string(&mut answer))
            .await
            .expect("answered in time")
            .expect("read");
        answer
    }

    /// The value of a metric line (`name{labels}`), 0 when absent.
    async fn metric(&self, series: &str) -> f64 {
        let answer = self.request("GET", "/metrics", None).await;
        answer
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |v| v.trim().parse().expect("a number"))
    }

    /// The number of open connections, read in-process: asking over HTTP would open one.
    fn open_connections(&self) -> f64 {
        self.running
            .state
            .metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix("meridian_connections "))
            .map_or(0.0, |v| v.trim().parse().expect("a number"))
    }
}

fn short(header_read: u64, idle: u64, max: Option<usize>) -> ConnOptions {
    ConnOptions {
        header_read_timeout: Duration::from_millis(header_read),
        idle_timeout: Duration::from_millis(idle),
        max_connections: max,
    }
}

/// Reads until the server closes the connection (EOF or reset); false if it stays open
/// for `within`.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_all).await.is_ok()
}

/// Reads one HTTP/1.1 response with a `Content-Length` body from a keep-alive connection.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(CLOSED_WITHIN, stream.read(&mut buf))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "connection closed before the response was complete");
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data);
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .expect("content-length");
            if data.len() >= end + 4 + length {
                return text.into_owned();
            }
        }
    }
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_read_timeout() {
    let server = TestServer::start(short(500, 60_000, None)).await;
    let mut silent = server.connect().await;
    assert!(
        closed_by_server(&mut silent, CLOSED_WITHIN).await,
        "a connection that never sends a request is closed"
    );
    assert!(
        server
            .metric("meridian_connections_closed_total{reason=\"header_timeout\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_trickling_request_head_is_closed_after_the_header_read_timeout() {
    let server = TestServer::start(short(1_000, 60_000, None)).await;
    let mut trickle = server.connect().await;
    trickle
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .expect("write");
    // One header byte every 100 ms, for far longer than the timeout, never ending the head
    // (the sleep is the trickle under test).
    let dripping = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if trickle.write_all(b"X").await.is_err() {
                return;
            }
        }
    };
    assert!(
        tokio::time::timeout(CLOSED_WITHIN, dripping).await.is_ok(),
        "the server closes a connection that trickles its head"
    );
    assert!(
        server
            .metric("meridian_connections_closed_total{reason=\"header_timeout\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_but_a_watch_lives_on() {
    let server = TestServer::start(short(1_000, 1_500, None)).await;

    let mut watch = server.connect().await;
    let watch_request = format!(
        "GET /apis/meridian.dev/v1/sites?watch=true HTTP/1.1\r\nHost: test\r\n\
         Authorization: Bearer {}\r\n\r\n",
        server.admin
    );
    watch
        .write_all(watch_request.as_bytes())
        .await
        .expect("write");
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(CLOSED_WITHIN, watch.read(&mut buf))
        .await
        .expect("watch answers")
        .expect("read");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "watch starts: {}",
        String::from_utf8_lossy(&buf[..n])
    );

    let mut idle = server.connect().await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("write");
    let answer = read_response(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        closed_by_server(&mut idle, CLOSED_WITHIN).await,
        "an idle keep-alive connection is closed"
    );

    // Well past the idle timeout, the watch still delivers events. The sleep is the thing
    // under test (a watch idle longer than the idle timeout), not a wait for a condition.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let site = r#"{"apiVersion":"meridian.dev/v1","kind":"Site","metadata":{"name":"fra-1"},
        "spec":{"provider":"onprem","region":"frankfurt","jurisdiction":"DE",
        "operator":{"name":"Example Bank AG","jurisdiction":"DE"}}}"#;
    let created = server
        .request("POST", "/apis/meridian.dev/v1/sites", Some(site))
        .await;
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    let mut seen = String::new();
    let delivered = tokio::time::timeout(CLOSED_WITHIN, async {
        while !seen.contains("fra-1") {
            let n = watch.read(&mut buf).await.expect("read");
            assert!(n > 0, "the watch was closed: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await;
    assert!(delivered.is_ok(), "the watch delivers the new site");
    assert!(
        server
            .metric("meridian_connections_closed_total{reason=\"idle_timeout\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn at_the_connection_cap_health_checks_are_still_answered() {
    const CAP: usize = 20;
    // Long timeouts: the idle sockets must not go away by themselves.
    let server = TestServer::start(short(60_000, 60_000, Some(CAP))).await;
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(server.connect().await);
    }
    // Connect returns once the kernel has queued them: wait until the server has them all.
    wait_until_async(
        CLOSED_WITHIN,
        &format!("the server to take in {CAP} connections"),
        || async {
            let open = server.open_connections();
            if open >= CAP as f64 {
                Ok(())
            } else {
                Err(open)
            }
        },
    )
    .await;
    for path in ["/healthz", "/readyz"] {
        let answer = server.request("GET", path, None).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
    }
    assert!(
        server
            .metric("meridian_connections_closed_total{reason=\"evicted\"}")
            .await
            >= 1.0,
        "room was made by closing an idle connection: {}",
        server.request("GET", "/metrics", None).await
    );
    assert!(server.metric("meridian_connections_max").await == CAP as f64);
    assert!(server.metric("meridian_connections").await <= CAP as f64);
    // The oldest idle sockets were the ones closed.
    assert!(closed_by_server(&mut idle[0], CLOSED_WITHIN).await);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_wildcard_listener_is_reachable_over_tls_at_a_host_address() {
    let host = server::tls::hostname();
    let addresses = server::tls::host_addresses("0.0.0.0".parse().expect("ip"), host.as_deref());
    let Some(address) = addresses.first().copied() else {
        panic!("this host has no non-loopback IPv4 address to test with");
    };
    let server = testkit::TestServer::builder(ServerConfig {
        scheduler: None,
        ..ServerConfig::default()
    })
    .listen("0.0.0.0:0".parse().expect("addr"))
    .start()
    .await;
    let ca = std::fs::read(server.info.ca_file.as_ref().expect("a generated CA")).expect("CA file");
    let url = format!("https://{address}:{}", server.addr().port());
    let client = client::Client::new(&url, &server.token, Some(&ca)).expect("client");
    let answer = client.get_path("/version").await;
    drop(server);
    answer.unwrap_or_else(|e| panic!("{url} with the generated CA: {e:#}"));
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_database_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let parent = tempfile::tempdir().expect("tempdir");
    let fresh = parent.path().join("fresh");
    // An existing directory and database left open to others are tightened.
    let existing = parent.path().join("existing");
    std::fs::create_dir(&existing).expect("mkdir");
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let db = existing.join("meridian.db");
    std::fs::write(&db, b"").expect("an empty database");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    for data_dir in [fresh, existing] {
        let server = testkit::TestServer::builder(ServerConfig {
            scheduler: None,
            ..ServerConfig::default()
        })
        .data_dir(&data_dir)
        .start()
        .await;
        assert_eq!(mode(&data_dir), 0o700, "{}", data_dir.display());
        for file in [
            "meridian.db",
            "meridian.db-wal",
            "meridian.db-shm",
            "meridian.db.lock",
            "admin.token",
        ] {
            assert_eq!(
                mode(&data_dir.join(file)),
                0o600,
                "{file} in {}",
                data_dir.display()
            );
        }
        drop(server);
    }
}

/// TLS is the default, on loopback too: the generated CA's fingerprint is reported, and
/// the CA is published without authentication at `/meridian/v1/ca.crt` for `meridian
/// login` (read before the client trusts anything; the fingerprint is the check). A
/// plain-HTTP server publishes none.
#[tokio::test]
async fn tls_is_the_default_and_the_generated_ca_is_published_with_its_fingerprint() {
    let server = testkit::TestServer::builder(ServerConfig {
        scheduler: None,
        ..ServerConfig::default()
    })
    .tls(server::TlsMode::default())
    .start()
    .await;
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let ca_file = server.info.ca_file.clone().expect("a generated CA");
    assert_eq!(ca_file, server.data_dir().join("ca.crt"));
    let pem = std::fs::read(&ca_file).expect("ca.crt");
    let fingerprint = server.info.ca_fingerprint.clone().expect("its fingerprint");
    assert_eq!(
        server::tls::pem_fingerprint(&pem).as_ref(),
        Some(&fingerprint)
    );
    assert!(fingerprint.starts_with("sha256:") && fingerprint.len() == 7 + 32 * 3 - 1);

    // No token, no trust: the CA as published.
    let probe = client::Client::unverified(&server.url).expect("client");
    let published = probe.get_text(server::CA_PATH).await.expect("the CA");
    assert_eq!(published.as_bytes(), &pem[..]);
    // Without the CA, a client refuses the server; with it, it connects.
    let untrusting = client::Client::new(&server.url, &server.token, Some(b"")).expect("client");
    assert!(untrusting.get_text("/version").await.is_err());
    server.client.get_text("/version").await.expect("trusted");

    let plain = testkit::TestServer::start().await;
    assert!(plain.url.starts_with("http://"), "{}", plain.url);
    assert!(plain.info.ca_fingerprint.is_none());
    let err = plain
        .client
        .get_text(server::CA_PATH)
        .await
        .expect_err("no generated CA");
    assert!(err.is_not_found(), "{err}");
}

/// `--insecure-http` is refused beyond loopback, naming the flag, before anything is
/// written.
#[tokio::test]
async fn plain_http_is_refused_beyond_loopback() {
    let parent = tempfile::tempdir().expect("tempdir");
    let data_dir = parent.path().join("data");
    let err = match server::Server::bind(ServerConfig {
        listen: "0.0.0.0:0".parse().expect("addr"),
        data_dir: data_dir.clone(),
        tls: server::TlsMode::InsecureHttp,
        scheduler: None,
        ..ServerConfig::default()
    })
    .await
    {
        Ok(_) => panic!("plain HTTP on 0.0.0.0 must be refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("--insecure-http"), "{err}");
    assert!(err.contains("loopback"), "{err}");
    assert!(!data_dir.exists(), "nothing was created");
}
