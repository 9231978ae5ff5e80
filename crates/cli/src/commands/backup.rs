//! `meridian backup` (online, through the server) and `meridian restore` (offline, into
//! a new data directory).

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::args::{BackupArgs, RestoreArgs};
use crate::exit::UserError;

/// SQLite's file header.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// bbolt's (etcd's backend) meta page magic, after the 16-byte page header.
const BBOLT_MAGIC: u32 = 0xED0C_DAED;

/// `meridian backup --out FILE`: the server's consistent copy of the store, written to
/// `FILE.partial` and renamed once complete and flushed, so FILE is never half-written.
pub async fn backup(client: &client::Client, args: &BackupArgs) -> Result<()> {
    if args.out.exists() {
        return Err(UserError::fail(format!(
            "--out {}: the file exists; name a new file (a backup never overwrites one)",
            args.out.display()
        )));
    }
    let mut partial = args.out.clone().into_os_string();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let mut file = tokio::fs::File::create(&partial)
        .await
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let answer = client
        .download("/meridian/v1/admin/backup", &mut file)
        .await;
    let (headers, bytes) = match answer {
        Ok(done) => done,
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned()
    };
    if let Some(expected) = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && expected != bytes
    {
        let _ = std::fs::remove_file(&partial);
        return Err(UserError::fail(format!(
            "the backup broke off after {bytes} of {expected} bytes; nothing was saved: run it again"
        )));
    }
    file.sync_all()
        .await
        .with_context(|| format!("cannot flush {}", partial.display()))?;
    drop(file);
    std::fs::rename(&partial, &args.out).with_context(|| {
        format!(
            "cannot rename {} to {}",
            partial.display(),
            args.out.display()
        )
    })?;
    let format = header("x-meridian-backup-format");
    println!(
        "backup of revision {} ({format}, {bytes} bytes) saved to {}",
        header("x-meridian-backup-revision"),
        args.out.display()
    );
    if format == "etcd-snapshot" {
        println!(
            "restore it with `etcdutl snapshot restore {}` on each etcd member (docs/operations.md)",
            args.out.display()
        );
    }
    println!(
        "the backup holds the store only: keep secrets.key (and secrets.keys/) of the data \
         directory with it, or the Secrets in it cannot be decrypted"
    );
    Ok(())
}

/// `meridian restore FILE --data-dir DIR`: a SQLite backup becomes `DIR/meridian.db`,
/// after which its audit chain is verified; a backup that does not open or verify is
/// removed again.
pub async fn restore(args: &RestoreArgs) -> Result<()> {
    let mut head = [0u8; 24];
    {
        use std::io::Read;
        let mut file = std::fs::File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        let n = file
            .read(&mut head)
            .with_context(|| format!("cannot read {}", args.file.display()))?;
        if n < head.len() {
            return Err(not_a_backup(&args.file));
        }
    }
    if &head[..16] != SQLITE_MAGIC {
        let magic = u32::from_le_bytes([head[16], head[17], head[18], head[19]]);
        if magic == BBOLT_MAGIC {
            return Err(UserError::fail(format!(
                "{} is an etcd snapshot: restore it with `etcdutl snapshot restore {} \
                 --data-dir <member dir>` on each etcd member (see docs/operations.md), then \
                 start the servers with the same --etcd-prefix",
                args.file.display(),
                args.file.display()
            )));
        }
        return Err(not_a_backup(&args.file));
    }
    let dir = &args.data_dir;
    let db = dir.join(server::DB_FILE);
    if db.exists() {
        return Err(UserError::fail(format!(
            "--data-dir {}: it already holds a store ({}); restore into a new directory, or \
             move the old store away first",
            dir.display(),
            db.display()
        )));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", dir.display()))?;
    }
    copy_private(&args.file, &db)?;
    let verified = server::audit::verify_offline(dir).await;
    let result = match verified {
        Ok(result) if result.get("ok").and_then(Value::as_bool) == Some(true) => result,
        Ok(result) => {
            remove_store(&db);
            return Err(UserError::fail(format!(
                "{}: the audit log of the backup does not verify ({result}); nothing was \
                 restored",
                args.file.display(),
            )));
        }
        Err(e) => {
            remove_store(&db);
            return Err(UserError::fail(format!(
                "{}: {:#}; nothing was restored",
                args.file.display(),
                anyhow::Error::new(e)
            )));
        }
    };
    println!(
        "restored {} into {}: audit log intact ({} entries, head {})",
        args.file.display(),
        db.display(),
        result.get("entries").cloned().unwrap_or_default(),
        result.get("head").and_then(Value::as_str).unwrap_or("-")
    );
    if !dir.join("secrets.key").exists() {
        println!(
            "{} has no secrets.key: copy secrets.key and secrets.keys/ from the old data \
             directory before starting the server, or its Secrets cannot be decrypted (copy \
             ca.crt and ca.key too to keep the server's certificate authority)",
            dir.display()
        );
    }
    Ok(())
}

fn not_a_backup(file: &Path) -> anyhow::Error {
    UserError::fail(format!(
        "{} is not a Meridian backup (neither a SQLite database nor an etcd snapshot): \
         give a file `meridian backup --out` wrote",
        file.display()
    ))
}

/// Copies `from` to the new file `to` (mode 0600), flushed to disk.
fn copy_private(from: &Path, to: &Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options
        .open(to)
        .with_context(|| format!("cannot create {}", to.display()))?;
    let mut input =
        std::fs::File::open(from).with_context(|| format!("cannot open {}", from.display()))?;
    let copied = std::io::copy(&mut input, &mut out)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()));
    if let Err(e) = copied.and_then(|_| out.sync_all().map_err(Into::into)) {
        drop(out);
        let _ = std::fs::remove_file(to);
        return Err(e);
    }
    Ok(())
}

/// Removes a store that failed to restore, with the files opening it created.
fn remove_store(db: &Path) {
    for suffix in ["", "-wal", "-shm", ".lock", ".reserve"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        let _ = std::fs::remove_file(std::path::PathBuf::from(path));
    }
}
