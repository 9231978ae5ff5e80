//! Test support: a throw-away etcd cluster of real `etcd` processes on loopback.
//!
//! [`EtcdCluster::start`] runs N members (random free ports, data directories in a
//! temporary directory, each member's log in `{dir}/m{i}.log`) and waits until the cluster
//! serves a linearizable read. Data directories go to `/dev/shm` when it exists (etcd
//! fsyncs every commit; tests need no durability beyond the processes' lifetime). Members can be killed (`kill -9`) and restarted to test
//! failover; dropping the cluster kills every member with SIGKILL and deletes the data.
//! Needs the `etcd` binary (Debian: `apt-get install etcd-server`), or `MERIDIAN_ETCD_BIN`
//! naming one; without it [`EtcdCluster::start`] fails saying so: tests must not skip.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use etcd_client::Client;

/// Environment variable naming the `etcd` binary to run (default: `etcd` on `PATH`).
pub const ETCD_BIN_ENV: &str = "MERIDIAN_ETCD_BIN";

/// How long a fresh cluster may take to serve; reaching it means it failed.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a test cluster could not be started or driven.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "the etcd binary was not found ({0}): install Debian's etcd-server \
         (apt-get install etcd-server) or set MERIDIAN_ETCD_BIN"
    )]
    NotInstalled(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the etcd cluster did not become healthy within {timeout:?}; last error: {last}; member logs:\n{logs}"
    )]
    Unhealthy {
        timeout: Duration,
        last: String,
        logs: String,
    },
    #[error("no member reports being the leader: {0}")]
    NoLeader(String),
    #[error("a port found free was taken by another process: {0}")]
    PortTaken(String),
}

/// Why a probe of a starting cluster did not pass.
enum ProbeError {
    /// Not serving yet: probe again.
    NotYet(String),
    /// A port is answered by something other than this cluster's member.
    Foreign(String),
}

/// Launches tried before giving up on finding free ports.
const PORT_ATTEMPTS: usize = 3;

/// TLS on the members' client URLs (peers stay on plain HTTP on loopback).
#[derive(Clone, Debug)]
pub struct ClusterTls {
    /// CA (PEM) that signed `cert`, and that client certificates must chain to.
    pub ca: PathBuf,
    /// Certificate (PEM) the members serve, for `127.0.0.1`; it must also allow client
    /// authentication (the launcher's health probe uses it as its client certificate).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Require client certificates (`--client-cert-auth`).
    pub client_cert_auth: bool,
}

/// One member of a test cluster.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running etcd cluster for tests. Killed (SIGKILL) and deleted on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    binary: PathBuf,
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
    tls: Option<ClusterTls>,
    /// More `etcd` flags, given to every member.
    extra_args: Vec<String>,
    // Last, so the members die before their directories go.
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts a cluster of `size` members and waits until it serves.
    pub async fn start(size: usize) -> Result<Self, ClusterError> {
        Self::start_with(size, None, Vec::new()).await
    }

    /// Starts a cluster whose members get `args` besides the launcher's own flags (for
    /// example `--quota-backend-bytes` or `--max-txn-ops`).
    pub async fn start_args(size: usize, args: &[&str]) -> Result<Self, ClusterError> {
        let args = args.iter().map(|a| (*a).to_owned()).collect();
        Self::start_with(size, None, args).await
    }

    /// Starts a cluster whose client URLs serve TLS.
    pub async fn start_tls(size: usize, tls: ClusterTls) -> Result<Self, ClusterError> {
        Self::start_with(size, Some(tls), Vec::new()).await
    }

    /// Starts on free ports, again on other ones when another process took a port between
    /// the launcher finding it free and a member binding it.
    async fn start_with(
        size: usize,
        tls: Option<ClusterTls>,
        extra_args: Vec<String>,
    ) -> Result<Self, ClusterError> {
        let mut attempt = 1;
        loop {
            let ports = free_ports(size * 2)?;
            match Self::launch(ports, tls.clone(), extra_args.clone()).await {
                Err(ClusterError::PortTaken(why)) if attempt < PORT_ATTEMPTS => {
                    tracing::warn!(%why, "etcd test cluster: starting again on other ports");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Starts a member on each pair of `ports` (client, peer) and waits until they serve.
    async fn launch(
        ports: Vec<u16>,
        tls: Option<ClusterTls>,
        extra_args: Vec<String>,
    ) -> Result<Self, ClusterError> {
        let size = ports.len() / 2;
        let binary = find_binary()?;
        // On tmpfs when there is one: etcd fsyncs every commit, and tests need no durability
        // beyond the processes' lifetime (a killed member's data survives in memory).
        let mut builder = tempfile::Builder::new();
        builder.prefix("meridian-etcd-");
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            builder.tempdir_in(shm).or_else(|_| builder.tempdir())
        } else {
            builder.tempdir()
        }
        .map_err(|source| ClusterError::Io {
            what: "cannot create a temporary directory".into(),
            source,
        })?;
        let members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("m{}", i + 1),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data_dir: dir.path().join(format!("m{}", i + 1)),
                log: dir.path().join(format!("m{}.log", i + 1)),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!(
            "meridian-test-{}",
            dir.path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let mut cluster = Self {
            binary,
            members,
            initial_cluster,
            token,
            tls,
            extra_args,
            dir,
        };
        for i in 0..size {
            cluster.spawn(i)?;
        }
        cluster.wait_healthy().await?;
        Ok(cluster)
    }

    /// Client endpoints, `127.0.0.1:PORT`, of every member (running or not).
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// `etcd://…` URL of the whole cluster, as `meridian server --store` takes it.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoints().join(","))
    }

    /// The directory holding the members' data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Index of the member that is the raft leader now.
    pub async fn leader(&self) -> Result<usize, ClusterError> {
        let mut last = String::from("no member answered");
        for (i, member) in self.members.iter().enumerate() {
            if member.child.is_none() {
                continue;
            }
            let url = format!("{}://127.0.0.1:{}", self.scheme(), member.client_port);
            let options = self.connect_options()?;
            let status = async {
                let mut client = Client::connect([url.as_str()], options).await?;
                client.status().await
            };
            match tokio::time::timeout(Duration::from_secs(5), status).await {
                Ok(Ok(status)) => {
                    let header_member = status.header().map(|h| h.member_id());
                    if header_member == Some(status.leader()) {
                        return Ok(i);
                    }
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = format!("{url} did not answer"),
            }
        }
        Err(ClusterError::NoLeader(last))
    }

    /// Raises etcd's NOSPACE alarm on every running member, as etcd does when its database
    /// reaches `--quota-backend-bytes` (without filling it).
    pub async fn raise_nospace(&self) -> Result<(), ClusterError> {
        self.nospace_alarm(etcd_client::AlarmAction::Activate).await
    }

    /// Clears the NOSPACE alarm on every running member (`etcdctl alarm disarm`).
    pub async fn disarm_nospace(&self) -> Result<(), ClusterError> {
        self.nospace_alarm(etcd_client::AlarmAction::Deactivate)
            .await
    }

    async fn nospace_alarm(&self, action: etcd_client::AlarmAction) -> Result<(), ClusterError> {
        let failed = |e: etcd_client::Error| ClusterError::NoLeader(e.to_string());
        for member in self.members.iter().filter(|m| m.child.is_some()) {
            let url = format!("{}://127.0.0.1:{}", self.scheme(), member.client_port);
            let mut client = Client::connect([url.as_str()], self.connect_options()?)
                .await
                .map_err(failed)?;
            let status = client.status().await.map_err(failed)?;
            let Some(id) = status.header().map(|h| h.member_id()) else {
                continue;
            };
            let mut options = etcd_client::AlarmOptions::new();
            options.with_member(id);
            client
                .alarm(action, etcd_client::AlarmType::Nospace, Some(options))
                .await
                .map_err(failed)?;
        }
        Ok(())
    }

    /// `kill -9` of member `index`.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts a killed member on its data directory.
    pub fn restart(&mut self, index: usize) -> Result<(), ClusterError> {
        self.kill(index);
        self.spawn(index)
    }

    fn spawn(&mut self, index: usize) -> Result<(), ClusterError> {
        let member = &self.members[index];
        let log = std::fs::File::create(&member.log).map_err(|source| ClusterError::Io {
            what: format!("cannot create {}", member.log.display()),
            source,
        })?;
        let log_err = log.try_clone().map_err(|source| ClusterError::Io {
            what: "cannot duplicate the log file handle".into(),
            source,
        })?;
        let client_url = format!("{}://127.0.0.1:{}", self.scheme(), member.client_port);
        let peer_url = format!("http://127.0.0.1:{}", member.peer_port);
        let child = Command::new(&self.binary)
            .arg("--name")
            .arg(&member.name)
            .arg("--data-dir")
            .arg(&member.data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", "new"])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .args(self.tls_args())
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| ClusterError::Io {
                what: format!("cannot run {}", self.binary.display()),
                source,
            })?;
        self.members[index].child = Some(child);
        Ok(())
    }

    /// Waits until every member runs, answers as a member of one cluster of the expected
    /// size, and the cluster serves a linearizable read. A member that exited because its
    /// port was taken, or a port answered by another cluster's member, is
    /// [`ClusterError::PortTaken`]: the ports are free when found, and another process can
    /// bind one before the member does.
    async fn wait_healthy(&mut self) -> Result<(), ClusterError> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let options = self.connect_options()?;
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            self.check_running()?;
            match tokio::time::timeout(Duration::from_secs(3), self.probe(options.clone())).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(ProbeError::Foreign(why))) => return Err(ClusterError::PortTaken(why)),
                Ok(Err(ProbeError::NotYet(why))) => last = why,
                Err(_) => last = "the probe timed out".into(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(ClusterError::Unhealthy {
            timeout: START_TIMEOUT,
            last,
            logs: self.log_tails(),
        })
    }

    /// Fails when a member's process has exited: [`ClusterError::PortTaken`] when its log
    /// says its address was in use, [`ClusterError::Unhealthy`] otherwise.
    fn check_running(&mut self) -> Result<(), ClusterError> {
        for member in &mut self.members {
            let Some(child) = member.child.as_mut() else {
                continue;
            };
            let Ok(Some(status)) = child.try_wait() else {
                continue;
            };
            member.child = None;
            let log = std::fs::read_to_string(&member.log).unwrap_or_default();
            if log.contains("address already in use") {
                return Err(ClusterError::PortTaken(format!(
                    "member {} could not bind its ports",
                    member.name
                )));
            }
            return Err(ClusterError::Unhealthy {
                timeout: START_TIMEOUT,
                last: format!("member {} exited ({status})", member.name),
                logs: self.log_tails(),
            });
        }
        Ok(())
    }

    /// Asks every member for its status, then the cluster for a linearizable read.
    async fn probe(&self, options: Option<etcd_client::ConnectOptions>) -> Result<(), ProbeError> {
        let not_yet = |e: etcd_client::Error| ProbeError::NotYet(e.to_string());
        let mut clusters: Vec<(String, u64)> = Vec::with_capacity(self.members.len());
        for member in &self.members {
            let url = format!("{}://127.0.0.1:{}", self.scheme(), member.client_port);
            let mut client = Client::connect([url.as_str()], options.clone())
                .await
                .map_err(not_yet)?;
            let status = client.status().await.map_err(not_yet)?;
            let cluster_id = status.header().map_or(0, |h| h.cluster_id());
            let members = client.member_list().await.map_err(not_yet)?;
            let names: Vec<&str> = members.members().iter().map(|m| m.name()).collect();
            if members.members().len() != self.members.len()
                || !names.contains(&member.name.as_str())
            {
                return Err(ProbeError::Foreign(format!(
                    "{url} answers for a cluster of members {names:?}, not this one"
                )));
            }
            clusters.push((url, cluster_id));
        }
        if let Some((url, id)) = clusters.iter().find(|(_, id)| *id != clusters[0].1) {
            return Err(ProbeError::Foreign(format!(
                "{url} belongs to cluster {id:x}, {} to {:x}",
                clusters[0].0, clusters[0].1
            )));
        }
        let endpoints: Vec<String> = clusters.into_iter().map(|(url, _)| url).collect();
        let mut client = Client::connect(&endpoints, options)
            .await
            .map_err(not_yet)?;
        // A linearizable read needs a leader and a quorum.
        client.get("/health-probe", None).await.map_err(not_yet)?;
        Ok(())
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    fn tls_args(&self) -> Vec<std::ffi::OsString> {
        let Some(tls) = &self.tls else {
            return Vec::new();
        };
        let mut args: Vec<std::ffi::OsString> = vec![
            "--cert-file".into(),
            tls.cert.clone().into(),
            "--key-file".into(),
            tls.key.clone().into(),
            "--trusted-ca-file".into(),
            tls.ca.clone().into(),
        ];
        if tls.client_cert_auth {
            args.push("--client-cert-auth".into());
        }
        args
    }

    /// Client options of the launcher's own probes (TLS with the members' certificate).
    fn connect_options(&self) -> Result<Option<etcd_client::ConnectOptions>, ClusterError> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| ClusterError::Io {
                what: format!("cannot read {}", path.display()),
                source,
            })
        };
        let config = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(&tls.ca)?))
            .identity(etcd_client::Identity::from_pem(
                read(&tls.cert)?,
                read(&tls.key)?,
            ));
        Ok(Some(etcd_client::ConnectOptions::new().with_tls(config)))
    }

    fn log_tails(&self) -> String {
        let mut out = String::new();
        for member in &self.members {
            let text = std::fs::read_to_string(&member.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            out.push_str(&format!("--- {} ---\n{tail}\n", member.name));
        }
        out
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

fn find_binary() -> Result<PathBuf, ClusterError> {
    if let Some(bin) = std::env::var_os(ETCD_BIN_ENV) {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(ClusterError::NotInstalled(format!(
                "{ETCD_BIN_ENV}={} is not a file",
                bin.display()
            )))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| ClusterError::NotInstalled("no etcd on PATH".into()))
}

/// `n` distinct free loopback ports (held open together, then released).
fn free_ports(n: usize) -> Result<Vec<u16>, ClusterError> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ClusterError::Io {
            what: "cannot bind a loopback port".into(),
            source,
        })?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ClusterError::Io {
            what: "cannot read a bound port".into(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member whose client port another etcd took is noticed, not left for the client to
    /// reach the other cluster through (a flake seen in CI, when tests start clusters in
    /// parallel processes).
    #[tokio::test]
    async fn a_port_answered_by_another_cluster_is_taken_not_served() {
        let other = EtcdCluster::start(1).await.expect("a one-member cluster");
        let mut ports = free_ports(6).expect("free ports");
        ports[2] = other.members[0].client_port;
        let err = EtcdCluster::launch(ports, None, Vec::new())
            .await
            .expect_err("a cluster with a foreign member must not start");
        assert!(
            matches!(err, ClusterError::PortTaken(_)),
            "expected PortTaken, got {err}"
        );
    }
}
