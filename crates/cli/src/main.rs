//! The `meridian` binary: parses arguments and dispatches to the server, the agent-facing
//! commands and the kubectl-like client verbs. It holds no logic of its own beyond
//! presentation; exit codes are 0 (success), 1 (an error the user can fix: bad input, not
//! found, denied) and 2 (anything else).

/// `eprintln!` that drops the line instead of panicking when stderr cannot be written
/// (see [`note`]). Defined before the modules so they can use it.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::note(format_args!($($arg)*))
    };
}

mod args;
mod commands;
mod config;
mod exit;
mod kubeconfig;
mod manifests;
mod output;
mod template;

use std::io::IsTerminal as _;

use clap::Parser;

use args::{Cli, Command};

/// mimalloc instead of the system allocator: with glibc's, allocation and freeing took about
/// a third of the server's CPU in a 100,000-instance scheduler pass, and freed memory stayed
/// in its arenas (BENCHMARKS.md, "Allocator"). The `system-allocator` feature keeps glibc's,
/// for heap profilers that hook `malloc` (heaptrack).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and --version go to stdout with 0; a usage error is bad input: 1, as
            // the README says of every error the user can fix.
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    if let Command::Launch = cli.command {
        // Before any thread or runtime: the launcher drops privileges and execs.
        std::process::exit(launch());
    }
    init_tracing(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            note!("error: cannot start the async runtime: {e}");
            std::process::exit(2);
        }
    };
    let result = runtime.block_on(run(cli));
    if let Err(err) = result {
        note!("error: {err:#}");
        std::process::exit(exit::code(&err));
    }
}

/// `meridian launch`: the agent's task launcher (`agent::launch`).
#[cfg(unix)]
fn launch() -> i32 {
    agent::launch::main()
}

#[cfg(not(unix))]
fn launch() -> i32 {
    note!("error: meridian launch exists on Unix only");
    2
}

/// Writes a line to stderr, dropping it when stderr cannot be written (a full disk, a
/// closed pipe): `eprintln!` would panic. Used on the server's paths.
pub(crate) fn note(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn init_tracing(command: &Command) {
    let default = match command {
        Command::Server(_) | Command::Demo(_) | Command::Agent(_) => "info",
        _ => "warn",
    };
    // Colours only for a person at a terminal, and never with NO_COLOR (no-color.org).
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let filter = tracing_subscriber::EnvFilter::try_from_env("MERIDIAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Lossy: with stderr on a full disk a log line is dropped. (By default the subscriber
    // reports a failed write with `eprintln!`, which panics when stderr cannot be written.)
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .log_internal_errors(false)
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    use commands::{admin, resources, serve};
    match &cli.command {
        Command::Server(a) => return serve::server(a).await,
        Command::Demo(a) => return serve::demo(a).await,
        Command::Audit(a) => return admin::audit(&cli.global, a).await,
        Command::Restore(a) => return commands::backup::restore(a).await,
        Command::Login(a) => return admin::login(&cli.global, a).await,
        Command::Config(c) => return admin::config_cmd(c),
        Command::Bench(b) => return run_bench(&cli.global, b).await,
        Command::Agent(a) => return commands::agent::agent(a).await,
        Command::Launch => unreachable!("handled in main"),
        Command::Completion(a) => return commands::meta::completion(a),
        Command::Man(a) => return commands::meta::man(a),
        Command::Options => return commands::meta::options(),
        Command::Version(a) => {
            return commands::meta::version(a, async {
                let conn = config::resolve(&cli.global)?;
                let client = config::client(&conn)?;
                Ok(client.get_path("/version").await?)
            })
            .await;
        }
        Command::Install(a) => return commands::install::install(a),
        Command::Uninstall(a) => return commands::install::uninstall(a),
        Command::Policy(p) => {
            if let Some(done) = commands::policy::offline(p) {
                return done;
            }
        }
        Command::Migrate(commands::migrate::MigrateCommand::Import(a)) if a.dry_run => {
            // No server needed: only the project is read.
            let conn = config::resolve(&cli.global).unwrap_or_else(|_| config::Resolved {
                server: String::new(),
                token: String::new(),
                ca_file: None,
                ca_pem: None,
                namespace: cli.global.namespace.clone(),
            });
            return commands::migrate::import(None, &conn, a).await;
        }
        _ => {}
    }
    if let Command::Kubeconfig = &cli.command {
        return kubeconfig::print(&cli.global);
    }
    let conn = config::resolve(&cli.global)?;
    let client = config::client(&conn)?;
    match &cli.command {
        Command::Apply(a) => resources::apply(&client, &conn, a).await,
        Command::Get(a) => resources::get(&client, &conn, a).await,
        Command::Describe(a) => resources::describe(&client, &conn, a).await,
        Command::Delete(a) => resources::delete(&client, &conn, a).await,
        Command::Watch(a) => resources::watch(&client, &conn, a).await,
        Command::Logs(a) => commands::logs::logs(&client, &conn, a).await,
        Command::Explain(a) => commands::placement::explain(&client, &conn, a).await,
        Command::Plan(a) => commands::placement::plan(&client, &conn, a).await,
        Command::Rollout(r) => commands::rollout::rollout(&client, &conn, r).await,
        Command::Scale(a) => commands::rollout::scale(&client, &conn, a).await,
        Command::Cordon(a) => commands::placement::cordon(&client, &a.node, true).await,
        Command::Uncordon(a) => commands::placement::cordon(&client, &a.node, false).await,
        Command::Drain(a) => commands::placement::drain(&client, a).await,
        Command::Policy(crate::args::PolicyCommand::Create(a)) => {
            commands::policy_authoring::create(&client, a, cli.global.namespace.as_deref()).await
        }
        Command::Policy(p) => commands::policy::policy(&client, &conn, p).await,
        Command::Node(n) => commands::nodes::node(&client, n).await,
        Command::Sim(crate::args::SimCommand::Nodes(a)) => commands::sim::nodes(&client, a).await,
        Command::Compliance(c) => commands::policy::compliance(&client, c).await,
        Command::Token(t) => admin::token(&client, cli.global.namespace.as_ref(), t).await,
        Command::Label(a) => commands::edit::set_meta(&client, &conn, a, "labels", "labeled").await,
        Command::Annotate(a) => {
            commands::edit::set_meta(&client, &conn, a, "annotations", "annotated").await
        }
        Command::Edit(a) => commands::edit::edit(&client, &conn, a).await,
        Command::Create(c) => commands::secret::create(&client, &conn, c).await,
        Command::Secret(s) => commands::secret::secret(&client, s).await,
        Command::Backup(a) => commands::backup::backup(&client, a).await,
        Command::Migrate(m) => commands::migrate::migrate(&client, &conn, m).await,
        _ => unreachable!("handled above"),
    }
}

/// `meridian bench …`, whose load generators are the `bench` crate: `create` and `watch`
/// get the server resolved like every client command's, `rss` and `crash` this binary to
/// start servers from.
async fn run_bench(global: &args::Global, cmd: &bench::BenchCommand) -> anyhow::Result<()> {
    use bench::BenchCommand as Bench;
    let result = match cmd {
        // Straight to etcd: no server to resolve.
        Bench::Create(a) if a.raw_etcd.is_some() => {
            bench::create(&etcd_only_target(global), a).await
        }
        Bench::Create(a) => bench::create(&bench_target(global)?, a).await,
        Bench::Watch(a) => bench::watch(&bench_target(global)?, a).await,
        Bench::Rss(a) => bench::rss(&this_binary()?, a).await,
        Bench::Crash(a) => bench::crash(&this_binary()?, a).await,
        Bench::Placement(a) => bench::placement(a),
        Bench::Queue(a) => bench::queue(a),
    };
    // A bad flag value exits 1, as every error the user can fix.
    result.map_err(|e| match e.downcast::<bench::UsageError>() {
        Ok(usage) => exit::UserError::fail(usage.0),
        Err(e) => e,
    })
}

fn bench_target(global: &args::Global) -> anyhow::Result<bench::Target> {
    let conn = config::resolve(global)?;
    let other = conn.clone();
    Ok(bench::Target {
        server: conn.server.clone(),
        project: global.namespace.clone(),
        connect: Box::new(move || config::client(&conn)),
        connect_to: Box::new(move |server| {
            config::client(&config::Resolved {
                server: server.to_owned(),
                ..other.clone()
            })
        }),
    })
}

/// The target of `bench create --raw-etcd`, which talks to etcd only.
fn etcd_only_target(global: &args::Global) -> bench::Target {
    let no_server = || anyhow::anyhow!("bench create --raw-etcd talks to etcd, not to a server");
    bench::Target {
        server: String::new(),
        project: global.namespace.clone(),
        connect: Box::new(move || Err(no_server())),
        connect_to: Box::new(move |_| Err(no_server())),
    }
}

fn this_binary() -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context as _;
    std::env::current_exe().context("cannot find the meridian binary")
}
