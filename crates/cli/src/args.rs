//! Command-line definitions (clap derive). Parsing does no I/O.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Meridian: one control plane for Windows and Linux hosts, on premises and in any cloud,
/// with placement that respects data residency and compliance.
#[derive(Debug, Parser)]
#[command(
    name = "meridian",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = "Use \"meridian options\" for the flags every command takes (--server, --token, --ca-file, --context, -n)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Connection flags shared by every client command.
#[derive(Debug, Args)]
pub struct Global {
    /// Server URL (default: $MERIDIAN_SERVER, else the current context)
    #[arg(
        long,
        global = true,
        hide = true,
        env = "MERIDIAN_SERVER",
        hide_env_values = true
    )]
    pub server: Option<String>,
    /// Bearer token (default: $MERIDIAN_TOKEN, else the current context)
    #[arg(
        long,
        global = true,
        hide = true,
        env = "MERIDIAN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for an https server (default: $MERIDIAN_CA_FILE, else
    /// the current context's)
    #[arg(
        long,
        global = true,
        hide = true,
        value_name = "FILE",
        env = "MERIDIAN_CA_FILE"
    )]
    pub ca_file: Option<PathBuf>,
    /// Context of the config file to use (see `meridian login`)
    #[arg(long, global = true, hide = true)]
    pub context: Option<String>,
    /// Project to work in (a Kubernetes namespace)
    #[arg(
        short = 'n',
        long = "namespace",
        visible_alias = "project",
        global = true,
        hide = true
    )]
    pub namespace: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API server
    #[command(
        after_help = "Example:\n  meridian server --listen 127.0.0.1:7420 --data-dir /var/lib/meridian"
    )]
    Server(ServerArgs),
    /// Start a server with an example estate and show what to try
    #[command(after_help = "Example:\n  cargo run --release -- demo")]
    Demo(DemoArgs),
    /// Create or update objects from manifests (all are validated before any is written)
    #[command(
        after_help = "Examples:\n  meridian apply -f examples/\n  meridian apply -f workload.yaml -n finance\n  cat site.yaml | meridian apply -f -"
    )]
    Apply(ApplyArgs),
    /// List objects or show one
    #[command(
        after_help = "Examples:\n  meridian get sites\n  meridian get wl -n finance -l app=payroll\n  meridian get workloads -A -o wide\n  meridian get node gpu-01 -o yaml"
    )]
    Get(GetArgs),
    /// Show one object in detail
    #[command(after_help = "Example:\n  meridian describe workload payroll-api -n finance")]
    Describe(DescribeArgs),
    /// Delete objects by name, by selector, or from manifests
    #[command(
        after_help = "Examples:\n  meridian delete workload payroll-api -n finance\n  meridian delete -f examples/workloads.yaml\n  meridian delete wl -l tier=batch -n research"
    )]
    Delete(DeleteArgs),
    /// Stream changes to objects of a kind
    #[command(after_help = "Example:\n  meridian watch workloads -A")]
    Watch(WatchArgs),
    /// Print an allocation's output (stdout by default), read from its node's agent
    #[command(
        after_help = "Examples:\n  meridian logs hello-0\n  meridian logs hello-0 -n finance --tail 20 -f\n  meridian logs workload/hello --stderr\n  meridian logs hello-0 --stream all"
    )]
    Logs(LogsArgs),
    /// Why a workload's instances are placed where they are, or why not
    #[command(after_help = "Example:\n  meridian explain workload llm-finetune -n research")]
    Explain(ExplainArgs),
    /// See and steer rollouts: status, history, undo, pause, resume, restart
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Set a workload's replicas
    #[command(
        after_help = "Examples:\n  meridian scale workload/web --replicas 5\n  meridian scale web --replicas 0 --current-replicas 3 -n finance"
    )]
    Scale(ScaleArgs),
    /// Mark a node unschedulable: nothing new is placed on it
    #[command(after_help = "Example:\n  meridian cordon fra-rhel-01")]
    Cordon(NodeArgs),
    /// Mark a node schedulable again
    #[command(after_help = "Example:\n  meridian uncordon fra-rhel-01")]
    Uncordon(NodeArgs),
    /// Cordon a node and evict its services and VMs, which the scheduler places elsewhere
    #[command(
        after_help = "Examples:\n  meridian drain fra-rhel-01\n  meridian drain fra-rhel-01 --dry-run"
    )]
    Drain(DrainArgs),
    /// What-if placement of workload manifests against the live fleet (writes nothing)
    #[command(after_help = "Example:\n  meridian plan -f new-workload.yaml -n finance")]
    Plan(PlanArgs),
    /// Install built-in policy packs, run Rego tests, see which policies fire on manifests
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Compliance status and evidence (NIST OSCAL) from the continuous audit
    #[command(subcommand)]
    Compliance(ComplianceCommand),
    /// Run the node agent: join, report facts, heartbeat, run the node's allocations
    #[command(
        after_help = "Examples:\n  meridian agent --server https://meridian:7420 --join-token \"$T\" --site onprem-frankfurt --data-dir /var/lib/meridian-agent\n  meridian agent --server https://meridian:7420 --data-dir /var/lib/meridian-agent   # later starts reuse the stored credential"
    )]
    Agent(AgentArgs),
    /// The agent's task launcher (reads a launch spec from stdin; not for people)
    #[command(hide = true)]
    Launch,
    /// Node enrolment: join tokens for agents
    #[command(subcommand)]
    Node(NodeCommand),
    /// Simulated nodes that heartbeat and run nothing (scale tests, like KWOK)
    #[command(subcommand)]
    Sim(SimCommand),
    /// Create objects from flags (secrets)
    #[command(subcommand)]
    Create(crate::commands::secret::CreateCommand),
    /// Secrets: rotate the server's encryption key
    #[command(subcommand)]
    Secret(crate::commands::secret::SecretCommand),
    /// Issue, list and revoke API tokens
    #[command(subcommand)]
    Token(TokenCommand),
    /// Virtualization modernization: import a VMware inventory, assess it, plan waves, convert and run
    #[command(subcommand)]
    Migrate(crate::commands::migrate::MigrateCommand),
    /// Read and verify the tamper-evident audit log
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Save a consistent copy of the store, taken while the server serves (global admins):
    /// a SQLite database, or an etcd snapshot on etcd
    #[command(
        after_help = "Examples:\n  meridian backup --out meridian-$(date +%F).db\n  meridian restore meridian-2026-12-06.db --data-dir /var/lib/meridian-restored"
    )]
    Backup(BackupArgs),
    /// Restore a SQLite backup into a new data directory, then verify its audit log
    /// (offline: start the server on the directory afterwards)
    #[command(
        after_help = "Example:\n  meridian restore meridian-2026-12-06.db --data-dir /var/lib/meridian-restored"
    )]
    Restore(RestoreArgs),
    /// Save a server, token and CA as a named context in the config file. Without
    /// --ca-file, the server's generated CA is fetched and its fingerprint shown to confirm
    #[command(
        after_help = "Examples:\n  meridian login --server https://meridian.example:7420 --token \"$T\" --context prod   # confirm the CA fingerprint\n  meridian login --server https://meridian.example:7420 --token \"$T\" --ca-fingerprint sha256:AB:CD:…\n  meridian login --server https://meridian.example:7420 --token \"$T\" --ca-file ca.crt"
    )]
    Login(LoginArgs),
    /// Show or switch contexts of the config file
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a kubeconfig for the current server and token, for kubectl and other
    /// Kubernetes clients (the context is named after --context, else the current one)
    #[command(
        after_help = "Example:\n  meridian kubeconfig > ~/.kube/meridian\n  export KUBECONFIG=~/.kube/meridian\n  kubectl get wl -A"
    )]
    Kubeconfig,
    /// Install the server or the agent as a systemd service (user, directories, unit)
    Install(crate::commands::install::InstallArgs),
    /// Stop and remove the server's or the agent's systemd service
    Uninstall(crate::commands::install::UninstallArgs),
    /// Load generators and measurements: API, watch, memory, crash, placement, queue (BENCHMARKS.md)
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Add, change or remove labels of objects
    #[command(
        after_help = "Examples:\n  meridian label workload payroll-api tier=gold -n finance\n  meridian label node/fra-rhel-01 rack=b7 --overwrite\n  meridian label wl payroll-api tier-          # removes tier"
    )]
    Label(MetaArgs),
    /// Add, change or remove annotations of objects
    #[command(
        after_help = "Examples:\n  meridian annotate workload payroll-api meridian.dev/change-cause='bump to 2.1' -n finance\n  meridian annotate node fra-rhel-01 note-"
    )]
    Annotate(MetaArgs),
    /// Edit an object in $KUBE_EDITOR or $EDITOR (vi), then replace it
    #[command(
        after_help = "Example:\n  KUBE_EDITOR=nano meridian edit workload payroll-api -n finance"
    )]
    Edit(EditArgs),
    /// Print the client's and the server's version and commit
    #[command(after_help = "Examples:\n  meridian version\n  meridian version --client -o json")]
    Version(VersionArgs),
    /// Print a shell completion script
    #[command(
        after_help = "Examples:\n  source <(meridian completion bash)\n  meridian completion zsh > \"${fpath[1]}/_meridian\"\n  meridian completion fish > ~/.config/fish/completions/meridian.fish\n  meridian completion powershell | Out-String | Invoke-Expression"
    )]
    Completion(CompletionArgs),
    /// Print the manual page, or write one per command into a directory
    #[command(
        after_help = "Examples:\n  meridian man | man -l -\n  meridian man --dir /usr/local/share/man/man1"
    )]
    Man(ManArgs),
    /// The flags every command takes (connection and project)
    Options,
}

#[derive(Debug, Args)]
pub struct MetaArgs {
    /// Kind (or KIND/NAME)
    pub kind: String,
    /// Names, then KEY=VALUE to set and KEY- to remove
    #[arg(required = true, value_name = "NAME|KEY=VALUE|KEY-")]
    pub names: Vec<String>,
    /// Change a key that already has another value
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Debug, Args)]
pub struct EditArgs {
    /// Kind (or KIND/NAME)
    pub kind: String,
    /// Name (unless given as KIND/NAME)
    #[arg(default_value = "")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// The client's version only (no server needed)
    #[arg(long)]
    pub client: bool,
    /// Output format
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<VersionOutput>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VersionOutput {
    Json,
    Yaml,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `meridian.1` and one page per command here instead of printing `meridian.1`
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on (TLS always; plain HTTP only with --insecure-http on loopback)
    #[arg(long, default_value = "127.0.0.1:7420")]
    pub listen: SocketAddr,
    /// Directory of the store, tokens and certificates (the generated CA is its ca.crt)
    #[arg(long, default_value = "./meridian-data")]
    pub data_dir: PathBuf,
    /// Where objects are stored: `sqlite` (a database in --data-dir, the default) or an
    /// etcd cluster, `etcd://HOST:PORT[,HOST:PORT...]`, that several servers can share
    #[arg(
        long,
        default_value = "sqlite",
        value_name = "sqlite|etcd://HOST:PORT[,...]",
        value_parser = parse_store
    )]
    pub store: StoreArg,
    /// CA bundle (PEM) that signed the etcd members' certificates: connect to etcd over TLS
    #[arg(long, value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd clusters that authenticate clients
    #[arg(long, requires = "etcd_key", value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    /// Private key (PEM) of --etcd-cert
    #[arg(long, requires = "etcd_cert", value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
    /// Key prefix of this deployment in etcd (deployments with different prefixes share a
    /// cluster without seeing each other)
    #[arg(long, default_value = server::DEFAULT_ETCD_PREFIX, value_name = "PREFIX")]
    pub etcd_prefix: String,
    /// Most operations in one etcd transaction: the etcd members' --max-txn-ops (give
    /// every server the members' value; at least 8). Batched controller writes split to
    /// fit it
    #[arg(
        long,
        default_value_t = 128,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(8..)
    )]
    pub etcd_max_txn_ops: u32,
    /// Serve TLS with this certificate (PEM) instead of a generated one
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP instead of TLS, for tests and benchmarks: refused unless --listen
    /// is a loopback address. kubectl sends no token over plain HTTP
    #[arg(long, conflicts_with_all = ["tls_cert", "tls"])]
    pub insecure_http: bool,
    /// No effect, kept for old scripts: TLS is the default (docs/security.md)
    #[arg(long, hide = true)]
    pub tls: bool,
    /// Another name clients reach this server by, added to the generated certificate: a DNS
    /// name or an IP address (repeatable). The certificate always names localhost, the
    /// loopback addresses, the host name and the listen address (for 0.0.0.0 or ::, the
    /// host's addresses); it is reissued at start when a name is missing
    #[arg(long = "tls-san", value_name = "NAME|IP", value_parser = parse_tls_san)]
    pub tls_san: Vec<server::tls::SubjectName>,
    /// Time a client has to send a request's headers, and to finish the TLS handshake;
    /// silent and slow connections are closed after it
    #[arg(long, default_value = "10s", value_parser = api::duration::parse_nonzero)]
    pub header_read_timeout: std::time::Duration,
    /// Close a keep-alive connection after this long without a request in flight (watches
    /// and log streams in flight are never cut)
    #[arg(long, default_value = "90s", value_parser = api::duration::parse_nonzero)]
    pub idle_timeout: std::time::Duration,
    /// Most client connections open at once [default: the open-file limit less a quarter
    /// (at least 256) kept for the store]. At the cap, the connection idle the longest is
    /// closed to admit a new one, so health checks are answered
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
    /// Serve lists from this server's copy of every object, kept current by its one store
    /// watch (the kube-apiserver's watch cache): `auto` keeps it with etcd, where a list
    /// would otherwise read every object from the cluster, and not with SQLite, whose reads
    /// are local; it costs about the store's size in memory
    #[arg(long, value_enum, default_value = "auto")]
    pub list_cache: ListCacheArg,
    /// Do not run the scheduler in this server (API and store benchmarks, or another
    /// server places work)
    #[arg(long, hide = true)]
    pub no_scheduler: bool,
    /// New instances one scheduler pass starts at most; the rest wait for the next pass,
    /// highest priority and oldest first. Bounds a pass's memory and time when a large
    /// backlog arrives at once (queued jobs are never held back by it)
    #[arg(long, value_name = "N", default_value_t = server::scheduler::MAX_STARTS_PER_PASS as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_starts_per_pass: u64,
    /// A node whose agent has not heartbeated for this long is Lost and its services move
    #[arg(long, default_value = "10s", value_parser = api::duration::parse_nonzero)]
    pub node_lease: std::time::Duration,
    /// This server's name among the servers of one store (`meridian get servers`)
    /// [default: the host name and the listen port]
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// Leader election: the leader's session lease. A leader that stops renewing it (a
    /// crash, a partition) is replaced after at most this long
    #[arg(long, default_value = "3s", value_parser = api::duration::parse_nonzero)]
    pub leader_lease: std::time::Duration,
    /// Do not fsync commits (fast, loses recent writes on power loss; for throwaway stores)
    #[arg(long, hide = true)]
    pub no_fsync: bool,
    /// Largest request body in bytes
    #[arg(long, default_value_t = 3 * 1024 * 1024, hide = true)]
    pub max_body_bytes: usize,
    /// Time limit of a request (not of watches); plain seconds or a duration (60, 2m)
    #[arg(long, default_value = "60s", value_parser = api::duration::parse_nonzero, hide = true)]
    pub request_timeout: std::time::Duration,
}

/// `meridian server --list-cache`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ListCacheArg {
    Auto,
    On,
    Off,
}

/// The store `meridian server --store` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreArg {
    Sqlite,
    /// etcd client endpoints, `HOST:PORT`.
    Etcd(Vec<String>),
}

fn parse_store(value: &str) -> Result<StoreArg, String> {
    if value == "sqlite" {
        return Ok(StoreArg::Sqlite);
    }
    if value.starts_with("etcd://") {
        return store::etcd_url::parse_url(value).map(StoreArg::Etcd);
    }
    Err(format!(
        "expected `sqlite` or `etcd://HOST:PORT[,HOST:PORT...]`, got {value:?}"
    ))
}

fn parse_tls_san(value: &str) -> Result<server::tls::SubjectName, String> {
    server::tls::SubjectName::parse(value).map_err(|e| format!("{e:#}"))
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's data here instead of a temporary directory
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on (a free port is chosen when this one is taken)
    #[arg(long, default_value = "127.0.0.1:7420")]
    pub listen: SocketAddr,
    /// Load the estate, print the summary and exit instead of serving
    #[arg(long, hide = true)]
    pub exit: bool,
    /// Run no real agent on this machine (the example nodes still have simulated agents)
    #[arg(long)]
    pub no_local_agent: bool,
    /// Jurisdiction (ISO 3166-1 alpha-2) of site `local`, where the real agent on this
    /// machine runs
    #[arg(long, default_value = "DE")]
    pub local_jurisdiction: String,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// File, directory or - for stdin (repeatable)
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// Recurse into subdirectories
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Validate on the server and show what would change, write nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Wide,
    Json,
    Yaml,
    Name,
}

/// `get`'s `-o`: a plain format, or a kubectl template.
#[derive(Debug, Clone)]
pub enum GetOutput {
    Plain(Output),
    Template(crate::template::Format),
}

impl GetOutput {
    /// The plain format (templates print from JSON).
    pub fn plain(&self) -> Output {
        match self {
            GetOutput::Plain(o) => *o,
            GetOutput::Template(_) => Output::Json,
        }
    }
}

fn parse_get_output(value: &str) -> Result<GetOutput, String> {
    if let Ok(o) = <Output as ValueEnum>::from_str(value, true) {
        return Ok(GetOutput::Plain(o));
    }
    if value.starts_with("jsonpath=") || value.starts_with("custom-columns=") {
        return crate::template::parse_format(value).map(GetOutput::Template);
    }
    Err(format!(
        "unknown output format {value:?}: use table, wide, json, yaml, name, jsonpath=TEMPLATE or custom-columns=NAME:EXPR,..."
    ))
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Kind: singular, plural or short name (e.g. workload, workloads, wl)
    pub kind: String,
    /// Names of objects (all when omitted)
    pub names: Vec<String>,
    /// Label selector (e.g. app=payroll,tier!=web)
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector (e.g. metadata.name=payroll-api)
    #[arg(long)]
    pub field_selector: Option<String>,
    /// Output format: table, wide, json, yaml, name, jsonpath=TEMPLATE (kubectl's, e.g.
    /// '{.items[*].metadata.name}' or '{range .items[*]}{.metadata.name}{"\n"}{end}'),
    /// custom-columns=NAME:EXPR,... (e.g. NAME:.metadata.name,NODE:.spec.node)
    #[arg(short = 'o', long, default_value = "table", value_parser = parse_get_output)]
    pub output: GetOutput,
    /// List across all projects
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// After listing, watch for changes
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Omit the header row
    #[arg(long)]
    pub no_headers: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Kind (only workload for now)
    pub kind: String,
    pub name: String,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// File, directory or - with Workload manifests
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Kind (omit with -f)
    pub kind: Option<String>,
    pub names: Vec<String>,
    /// Delete the objects of these manifests
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<String>,
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Delete every object of the kind in the project
    #[arg(long)]
    pub all: bool,
    /// Succeed when an object does not exist
    #[arg(long)]
    pub ignore_not_found: bool,
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    pub kind: String,
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Start after this resourceVersion instead of with the current objects
    #[arg(long)]
    pub resource_version: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

/// Which captured stream `meridian logs` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogStreamArg {
    Stdout,
    Stderr,
    /// Both: what is stored, stdout then stderr; while following, as it is written
    All,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// An allocation's name, or workload/NAME for the workload's first running allocation
    #[arg(value_name = "ALLOCATION")]
    pub target: String,
    /// Keep printing what the task writes until it stops (Ctrl-C ends)
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines of what is stored (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub tail: Option<i64>,
    /// Read standard error instead of standard output (--stream stderr)
    #[arg(long, conflicts_with = "stream")]
    pub stderr: bool,
    /// Which stream to read
    #[arg(long, value_enum, value_name = "STREAM")]
    pub stream: Option<LogStreamArg>,
    /// Stop after this many bytes
    #[arg(long, value_name = "BYTES")]
    pub limit_bytes: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token (project-scoped with --project); prints only the token on stdout
    #[command(
        after_help = "Examples:\n  meridian token create --role viewer\n  meridian token create --role operator --project finance"
    )]
    Create {
        #[arg(long, value_parser = ["admin", "operator", "viewer"])]
        role: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List tokens (never their secrets)
    List,
    /// Revoke a token by id
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Show audit entries
    #[command(
        after_help = "Examples:\n  meridian audit log --since 1h\n  meridian audit log --since 2026-11-22T10:00:00Z -o json"
    )]
    Log {
        /// Entries since a duration ago (30m, 2h, 1d) or an RFC 3339 time
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Recompute the hash chain; exit 1 and name the first bad entry if it was tampered with
    #[command(
        after_help = "Examples:\n  meridian audit verify\n  meridian audit verify --data-dir /var/lib/meridian   # offline, server stopped"
    )]
    Verify {
        /// Verify the store in this data directory directly (offline)
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The file to write (a new file: an existing one is never overwritten)
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A backup `meridian backup` wrote
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The data directory to restore into (it must not hold a store yet)
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Check the server and token before saving
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub verify: bool,
    /// Trust the server's CA only if its SHA-256 fingerprint is this (the server logs it at
    /// start: sha256:AB:CD:…); needed to fetch the CA without a terminal to confirm it
    #[arg(long, value_name = "sha256:…")]
    pub ca_fingerprint: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// List contexts
    GetContexts,
    /// Make a context the current one
    UseContext { name: String },
    /// Where the config file is
    Path,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Install built-in packs, or a directory bundle of .rego files, as Policy objects
    #[command(
        after_help = "Examples:\n  meridian policy install sovereignty\n  meridian policy install baseline ai --enforcement audit\n  meridian policy install ./policies --dry-run\n  meridian policy packs\n\n\
A directory is a bundle, as OPA loads one: every .rego file under it (recursively). Files named\n\
*_test.rego are tests, run before anything is written (a failing test refuses the install unless\n\
--skip-tests). Every other module that defines deny or violation becomes one Policy, named after\n\
its path (policies/no_latest.rego -> policies-no-latest) unless its # METADATA block sets\n\
custom.meridian.name; the remaining modules are libraries compiled with every policy\n\
(spec.modules), and data.json or data.yaml at the bundle's root is loaded as data (spec.data).\n\
METADATA may also set description (or title), custom.meridian.enforcement and\n\
custom.meridian.targets (kinds). Every policy is checked by the server (a dry run) before any is\n\
written."
    )]
    Install(PolicyInstallArgs),
    /// Create a Policy from a .rego file (with --overwrite, replace an existing one)
    #[command(
        after_help = "--project P[,Q] (the global project flag, -n) restricts the policy to objects of those\n\
projects: a Policy itself belongs to no project.\n\nExamples:\n  meridian policy create no-latest -f no_latest.rego --kinds Workload --enforcement deny\n  meridian policy create eu-only -f eu.rego --project finance --control 'NIST SP 800-53:CM-6' --parameters params.yaml\n  meridian policy create legacy -f gatekeeper.rego --rego-version v0 --dry-run"
    )]
    Create(PolicyCreateArgs),
    /// List the built-in packs and their policies
    Packs,
    /// Run Rego unit tests (rules named test_*) like `opa test`; exits 1 on a failure
    #[command(
        after_help = "Examples:\n  meridian policy test policies/\n  meridian policy test --pack sovereignty\n  meridian policy test --pack all"
    )]
    Test(PolicyTestArgs),
    /// Show which installed policies fire on manifests, writing nothing; exits 1 when a
    /// deny policy would refuse one
    #[command(after_help = "Example:\n  meridian policy eval -f workload.yaml -n finance")]
    Eval(PolicyEvalArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EnforcementArg {
    Deny,
    Warn,
    Audit,
}

impl EnforcementArg {
    pub fn as_str(self) -> &'static str {
        match self {
            EnforcementArg::Deny => "deny",
            EnforcementArg::Warn => "warn",
            EnforcementArg::Audit => "audit",
        }
    }
}

#[derive(Debug, Args)]
pub struct PolicyInstallArgs {
    /// Pack names (see `meridian policy packs`) or bundle directories
    #[arg(required = true)]
    pub packs: Vec<String>,
    /// Override the pack's (or the bundle's) enforcement
    #[arg(long, value_enum)]
    pub enforcement: Option<EnforcementArg>,
    /// Validate and compile on the server, write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Install a bundle even though its tests fail
    #[arg(long)]
    pub skip_tests: bool,
    /// Rego syntax of a bundle's modules (default v1, as OPA 1.x)
    #[arg(long, value_enum)]
    pub rego_version: Option<RegoVersionArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RegoVersionArg {
    V0,
    V1,
}

impl RegoVersionArg {
    pub fn as_str(self) -> &'static str {
        match self {
            RegoVersionArg::V0 => "v0",
            RegoVersionArg::V1 => "v1",
        }
    }
}

/// A compliance control, `FRAMEWORK:ID` (split at the last colon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlArg {
    pub framework: String,
    pub id: String,
}

fn parse_control(s: &str) -> Result<ControlArg, String> {
    match s.rsplit_once(':') {
        Some((framework, id)) if !framework.trim().is_empty() && !id.trim().is_empty() => {
            Ok(ControlArg {
                framework: framework.trim().to_owned(),
                id: id.trim().to_owned(),
            })
        }
        _ => Err(format!(
            "{s:?} is not FRAMEWORK:ID (e.g. --control 'NIST SP 800-53:CM-6')"
        )),
    }
}

#[derive(Debug, Args)]
pub struct PolicyCreateArgs {
    /// The Policy's name
    pub name: String,
    /// The Rego module (the policy's package, with deny or violation rules)
    #[arg(short = 'f', long = "filename", value_name = "FILE.rego")]
    pub file: std::path::PathBuf,
    /// deny refuses violating requests, warn lets them through with a warning, audit only
    /// reports (default: the server's, deny)
    #[arg(long, value_enum)]
    pub enforcement: Option<EnforcementArg>,
    /// Kinds the policy looks at (all when absent)
    #[arg(long, value_delimiter = ',', value_name = "KIND,...")]
    pub kinds: Vec<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// A control the policy gives evidence for, FRAMEWORK:ID (repeatable)
    #[arg(long = "control", value_name = "FRAMEWORK:ID", value_parser = parse_control)]
    pub controls: Vec<ControlArg>,
    /// Rego syntax of the module (default v1, as OPA 1.x)
    #[arg(long, value_enum)]
    pub rego_version: Option<RegoVersionArg>,
    /// JSON or YAML file of parameters (input.parameters and data.parameters)
    #[arg(long, value_name = "FILE")]
    pub parameters: Option<std::path::PathBuf>,
    /// Replace the policy if it exists (as apply does)
    #[arg(long)]
    pub overwrite: bool,
    /// Validate and compile on the server, write nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PolicyTestArgs {
    /// Files or directories of .rego modules (policies and their tests)
    pub paths: Vec<String>,
    /// Run the tests of a built-in pack (`all` for every pack)
    #[arg(long)]
    pub pack: Vec<String>,
    /// List every test, not only failures
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Output format
    #[arg(long, value_enum, default_value = "pretty")]
    pub format: TestFormat,
    /// Read every module as Rego v0 (pre-1.0 syntax), like `opa test --v0-compatible`
    #[arg(long, conflicts_with = "rego_version")]
    pub v0_compatible: bool,
    /// Rego syntax of the modules; by default detected per file (v1, or v0 when a file
    /// parses only as v0)
    #[arg(long, value_enum)]
    pub rego_version: Option<RegoVersionArg>,
    /// Run only tests whose full name (data.pkg.test_x) contains this text
    #[arg(short = 'r', long)]
    pub run: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TestFormat {
    Pretty,
    Json,
}

#[derive(Debug, Args)]
pub struct PolicyEvalArgs {
    /// File, directory or - with manifests of any kind
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
    /// Explain each matching policy like `opa eval --explain`: `fails` shows where each
    /// body of its deny/violation rules stopped, `full` every statement
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "full")]
    pub explain: Option<ExplainMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExplainMode {
    Fails,
    Full,
}

impl ExplainMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ExplainMode::Fails => "fails",
            ExplainMode::Full => "full",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ComplianceCommand {
    /// Findings by policy and by framework, and the last full audit
    #[command(
        after_help = "Examples:\n  meridian compliance status\n  meridian compliance status -o json"
    )]
    Status(ComplianceStatusArgs),
    /// Evidence of the continuous audit: NIST OSCAL assessment-results, JSON or a table
    #[command(
        after_help = "Examples:\n  meridian compliance report -o oscal > assessment-results.json\n  meridian compliance report -o table"
    )]
    Report(ComplianceReportArgs),
}

#[derive(Debug, Args)]
pub struct ComplianceStatusArgs {
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Oscal,
    Json,
    Table,
}

#[derive(Debug, Args)]
pub struct ComplianceReportArgs {
    #[arg(short = 'o', long, value_enum, default_value = "oscal")]
    pub output: ReportFormat,
    /// Only the findings of this policy (json and table)
    #[arg(long)]
    pub policy: Option<String>,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Node name
    pub node: String,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    /// Node name
    pub node: String,
    /// Show what would be evicted, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Join tokens: exchanged once by `meridian agent --join-token` for a node credential
    #[command(subcommand)]
    JoinToken(JoinTokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum JoinTokenCommand {
    /// Issue a single-use join token; prints only the token on stdout
    #[command(
        after_help = "Examples:\n  meridian node join-token create --site onprem-frankfurt --ttl 1h\n  meridian agent --server https://meridian:7420 --join-token \"$(meridian node join-token create --site onprem-frankfurt)\" --site onprem-frankfurt --data-dir /var/lib/meridian-agent"
    )]
    Create {
        /// The site the node joins (required): the node is in that site and only an admin
        /// can move it
        #[arg(long)]
        site: String,
        /// Lifetime (e.g. 30m, 1h, 24h, 7d; at most 7 days)
        #[arg(long, default_value = "1h", value_parser = api::duration::parse_nonzero)]
        ttl: std::time::Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Register simulated nodes that heartbeat and report their allocations as running
    #[command(
        after_help = "Examples:\n  meridian sim nodes --count 1000 --site sim\n  meridian sim nodes --count 100 --duration 60s --cpu 16 --memory 64Gi"
    )]
    Nodes(SimNodesArgs),
}

#[derive(Debug, Args)]
pub struct SimNodesArgs {
    /// Number of nodes
    #[arg(long, default_value_t = 100)]
    pub count: usize,
    /// Site of the nodes (created, in --jurisdiction, when it does not exist)
    #[arg(long, default_value = "sim")]
    pub site: String,
    /// Jurisdiction of the site when it is created
    #[arg(long, default_value = "DE")]
    pub jurisdiction: String,
    /// Node names are PREFIX-00000…
    #[arg(long, default_value = "sim")]
    pub prefix: String,
    /// Capacity of each node
    #[arg(long, default_value = "16")]
    pub cpu: String,
    #[arg(long, default_value = "64Gi")]
    pub memory: String,
    /// Heartbeat interval of each node
    #[arg(long, default_value = "2s", value_parser = api::duration::parse_nonzero)]
    pub heartbeat: std::time::Duration,
    /// Stop after this long (default: until Ctrl-C)
    #[arg(long, value_parser = api::duration::parse_nonzero)]
    pub duration: Option<std::time::Duration>,
    /// Concurrent requests
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// URL of the Meridian server
    #[arg(long, env = "MERIDIAN_SERVER")]
    pub server: String,
    /// Join token (first start only; `meridian node join-token create`)
    #[arg(long, env = "MERIDIAN_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// Site the node is in (when the join token does not name one)
    #[arg(long)]
    pub site: Option<String>,
    /// Directory for the credential, state and task logs
    #[arg(long, default_value = "/var/lib/meridian-agent")]
    pub data_dir: std::path::PathBuf,
    /// Node name (default: the hostname)
    #[arg(long)]
    pub name: Option<String>,
    /// CA certificate of the server (PEM), for TLS with a private CA (default:
    /// $MERIDIAN_CA_FILE)
    #[arg(long, env = "MERIDIAN_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Node label KEY=VALUE (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Node taint KEY[=VALUE]:EFFECT, e.g. nvidia.com/gpu=present:NoSchedule (repeatable)
    #[arg(long = "taint", value_name = "KEY[=VALUE]:EFFECT")]
    pub taints: Vec<String>,
    /// Heartbeat interval
    #[arg(long, default_value = "2s", value_parser = api::duration::parse_nonzero)]
    pub heartbeat: std::time::Duration,
    /// Grace period between SIGTERM and SIGKILL when stopping a task
    #[arg(long, default_value = "10s", value_parser = api::duration::parse_nonzero)]
    pub grace: std::time::Duration,
    /// Host volume offered to tasks: NAME=PATH, read-only with :ro (repeatable; PATH must
    /// be an existing directory)
    #[arg(long = "volume", value_name = "NAME=PATH[:ro]")]
    pub volumes: Vec<String>,
    /// Address other nodes reach this node at (default: the local address of the route
    /// to the server, else of the default route)
    #[arg(long, value_name = "ADDR")]
    pub advertise_address: Option<std::net::IpAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("meridian").chain(args.iter().copied()))
    }

    #[test]
    fn server_store_flag_takes_sqlite_or_an_etcd_url() {
        let server = |args: &[&str]| match parse(args).map(|cli| cli.command) {
            Ok(Command::Server(s)) => Ok(s),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(
            server(&["server"]).expect("default").store,
            StoreArg::Sqlite
        );
        let etcd = server(&[
            "server",
            "--store",
            "etcd://10.0.0.1:2379,10.0.0.2:2379",
            "--etcd-prefix",
            "/prod",
        ])
        .expect("an etcd store");
        assert_eq!(
            etcd.store,
            StoreArg::Etcd(vec!["10.0.0.1:2379".into(), "10.0.0.2:2379".into()])
        );
        assert_eq!(etcd.etcd_prefix, "/prod");
        assert_eq!(etcd.etcd_max_txn_ops, 128);
        let err = server(&["server", "--etcd-max-txn-ops", "2"]).expect_err("too small");
        assert!(err.contains("--etcd-max-txn-ops"), "{err}");
        for bad in ["postgres://x", "etcd://host", "etcd://host:0"] {
            let e = server(&["server", "--store", bad]).expect_err(bad);
            assert!(e.contains("--store"), "the error names the flag: {e}");
        }
        let e = server(&["server", "--etcd-cert", "c.pem"]).expect_err("cert without key");
        assert!(e.contains("--etcd-key"), "{e}");
    }

    #[test]
    fn every_duration_flag_takes_the_api_grammar() {
        let cli = parse(&["node", "join-token", "create", "--site", "s", "--ttl", "7d"])
            .expect("--ttl 7d");
        match cli.command {
            Command::Node(NodeCommand::JoinToken(JoinTokenCommand::Create { ttl, .. })) => {
                assert_eq!(ttl, Duration::from_secs(7 * 86_400));
            }
            other => panic!("{other:?}"),
        }
        let cli = parse(&["agent", "--server", "https://m:7420", "--grace", "1m30s"])
            .expect("--grace 1m30s");
        match cli.command {
            Command::Agent(a) => {
                assert_eq!(a.grace, Duration::from_secs(90));
                assert_eq!(a.heartbeat, Duration::from_secs(2));
            }
            other => panic!("{other:?}"),
        }
        let e = parse(&["agent", "--server", "https://m:7420", "--grace", "0s"])
            .expect_err("a zero grace")
            .to_string();
        assert!(e.contains("must be more than 0"), "{e}");
        let e = parse(&["agent", "--server", "https://m:7420", "--heartbeat", "5y"])
            .expect_err("an unknown unit")
            .to_string();
        assert!(e.contains("expected a duration such as 30s"), "{e}");
    }
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Wait until a workload's rollout is done (exit 1 if it stops)
    #[command(
        after_help = "Examples:\n  meridian rollout status workload/web\n  meridian rollout status web --timeout 5m -n finance"
    )]
    Status(RolloutStatusArgs),
    /// List a workload's revisions, or show one
    #[command(
        after_help = "Examples:\n  meridian rollout history web\n  meridian rollout history web --revision 2"
    )]
    History(RolloutHistoryArgs),
    /// Return a workload to an earlier revision (the previous one by default)
    #[command(
        after_help = "Examples:\n  meridian rollout undo web\n  meridian rollout undo web --to-revision 1"
    )]
    Undo(RolloutUndoArgs),
    /// Stop a rollout where it is (instances stay as they are)
    #[command(after_help = "Example:\n  meridian rollout pause web")]
    Pause(RolloutTarget),
    /// Go on with a paused rollout
    #[command(after_help = "Example:\n  meridian rollout resume web")]
    Resume(RolloutTarget),
    /// Replace every instance, a few at a time, with the same spec
    #[command(after_help = "Example:\n  meridian rollout restart web")]
    Restart(RolloutTarget),
}

#[derive(Debug, Args)]
pub struct RolloutTarget {
    /// NAME or workload/NAME
    pub target: String,
}

#[derive(Debug, Args)]
pub struct RolloutStatusArgs {
    /// NAME or workload/NAME
    pub target: String,
    /// Keep watching until the rollout is done (`--watch=false` prints once)
    #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub watch: bool,
    /// Give up after this long (e.g. 5m; 0 waits forever)
    #[arg(long, value_name = "DURATION", value_parser = api::duration::parse)]
    pub timeout: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct RolloutHistoryArgs {
    /// NAME or workload/NAME
    pub target: String,
    /// Show this revision's template
    #[arg(long)]
    pub revision: Option<u32>,
}

#[derive(Debug, Args)]
pub struct RolloutUndoArgs {
    /// NAME or workload/NAME
    pub target: String,
    /// The revision to return to (0 or absent: the previous one)
    #[arg(long)]
    pub to_revision: Option<u32>,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// NAME or workload/NAME
    pub target: String,
    /// The new number of instances
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=1_000_000))]
    pub replicas: i32,
    /// Only scale if the workload has this many replicas now
    #[arg(long)]
    pub current_replicas: Option<i32>,
}
