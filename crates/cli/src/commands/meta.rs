//! Commands about the CLI itself: `version`, `completion`, `man` and `options`.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use serde_json::json;

use crate::args::{Cli, CompletionArgs, ManArgs, VersionArgs, VersionOutput};
use crate::exit::UserError;

/// The commit this binary was built from (see the server crate's build script).
pub const COMMIT: &str = server::COMMIT;

fn client_info() -> serde_json::Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "gitCommit": COMMIT,
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

/// `meridian version`: the client's version and commit, and the server's unless
/// `--client`. An unreachable server is reported after the client's version, with exit
/// code 2 as every connection failure.
pub async fn version(
    args: &VersionArgs,
    server: impl std::future::Future<Output = Result<serde_json::Value>>,
) -> Result<()> {
    let client = client_info();
    let server = if args.client {
        None
    } else {
        Some(server.await)
    };
    let server_value = match &server {
        Some(Ok(v)) => Some(v.clone()),
        _ => None,
    };
    match args.output {
        Some(format) => {
            let mut doc = json!({"clientVersion": client});
            if let Some(s) = &server_value {
                doc["serverVersion"] = s.clone();
            }
            let text = match format {
                VersionOutput::Json => serde_json::to_string_pretty(&doc)?,
                VersionOutput::Yaml => serde_yaml_ng::to_string(&doc)?,
            };
            println!("{}", text.trim_end());
        }
        None => {
            println!(
                "Client Version: {} (commit {})",
                env!("CARGO_PKG_VERSION"),
                short(COMMIT)
            );
            if let Some(s) = &server_value {
                let v = s["meridianVersion"].as_str().unwrap_or("unknown");
                let commit = s["gitCommit"].as_str().unwrap_or_default();
                println!(
                    "Server Version: {v}{}",
                    if commit.is_empty() {
                        String::new()
                    } else {
                        format!(" (commit {})", short(commit))
                    }
                );
                if let Some(k) = s["gitVersion"].as_str() {
                    println!("Kubernetes API: {k}");
                }
            }
        }
    }
    match server {
        Some(Err(e)) => Err(e.context("the server's version")),
        _ => Ok(()),
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// The command tree with the global flags visible: `--help` leaves them to
/// `meridian options`, but completions and manual pages should know them.
fn full_command() -> clap::Command {
    Cli::command().mut_args(|a| if a.is_global_set() { a.hide(false) } else { a })
}

/// `meridian completion SHELL`: the completion script on stdout.
pub fn completion(args: &CompletionArgs) -> Result<()> {
    let mut cmd = full_command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "meridian", &mut out);
    out.flush()?;
    Ok(())
}

/// `meridian man`: the manual page of `meridian` on stdout, or with `--dir` one page per
/// command (`meridian.1`, `meridian-get.1`, `meridian-rollout-status.1`, …).
pub fn man(args: &ManArgs) -> Result<()> {
    let cmd = full_command();
    match &args.dir {
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            out.flush()?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("--dir: cannot create {}", dir.display()))?;
            let written = write_pages(cmd, dir, "meridian")?;
            eprintln!("wrote {written} manual pages to {}", dir.display());
        }
    }
    Ok(())
}

fn write_pages(cmd: clap::Command, dir: &Path, name: &str) -> Result<usize> {
    let mut buffer = Vec::new();
    let page = cmd.clone().name(name.to_owned());
    clap_mangen::Man::new(page).render(&mut buffer)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, &buffer).with_context(|| format!("cannot write {}", path.display()))?;
    let mut written = 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written += write_pages(sub.clone(), dir, &format!("{name}-{}", sub.get_name()))?;
    }
    Ok(written)
}

/// `meridian options`: the flags every client command takes, which the commands' own
/// `--help` leaves out (as `kubectl options`).
pub fn options() -> Result<()> {
    let cmd = Cli::command();
    let mut lines = Vec::new();
    for arg in cmd.get_arguments().filter(|a| a.is_global_set()) {
        let mut flag = String::new();
        if let Some(s) = arg.get_short() {
            flag.push_str(&format!("-{s}, "));
        }
        if let Some(l) = arg.get_long() {
            flag.push_str(&format!("--{l}"));
        }
        if let Some(names) = arg.get_value_names() {
            for n in names {
                flag.push_str(&format!(" {n}"));
            }
        } else if arg.get_action().takes_values() {
            flag.push_str(&format!(" {}", arg.get_id().as_str().to_ascii_uppercase()));
        }
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        let env = arg
            .get_env()
            .map(|e| format!(" [env: {}]", e.to_string_lossy()))
            .unwrap_or_default();
        lines.push((flag, format!("{help}{env}")));
    }
    if lines.is_empty() {
        return Err(UserError::fail("no global options are defined"));
    }
    let width = lines.iter().map(|(f, _)| f.len()).max().unwrap_or(0);
    println!("The following options can be passed to any command:\n");
    for (flag, help) in lines {
        println!("  {flag:width$}  {help}");
    }
    Ok(())
}
