//! Secrets from the command line: `meridian create secret` (as `kubectl create secret
//! generic`), `meridian secret rotate-key`, and the `Data` section `describe` prints for a
//! Secret (key names and sizes, never values).
//!
//! The argument types live here rather than in `args.rs`, as `bench`'s do: they are only
//! parsed (no I/O) and only these commands read them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use base64::Engine as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use client::Client;

use crate::config::Resolved;
use crate::exit::UserError;

/// `meridian create …`
#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// Create a Secret from literal values and files (as `kubectl create secret generic`)
    #[command(
        after_help = "Examples:\n  meridian create secret db -n finance --from-literal user=app --from-literal password=\"$PW\"\n  meridian create secret generic tls -n finance --from-file tls.crt=./cert.pem --from-file tls.key=./key.pem --type kubernetes.io/tls\n\nValues are sent to the server, which stores them encrypted; they are never printed.\nA literal on the command line can be seen by other users of this host (ps, shell\nhistory): prefer --from-file for real credentials."
    )]
    Secret(CreateSecretArgs),
}

#[derive(Debug, Args)]
pub struct CreateSecretArgs {
    /// The secret's name (`generic NAME` is accepted, as kubectl's)
    #[arg(value_name = "NAME", num_args = 1..=2, required = true)]
    pub words: Vec<String>,
    /// A value: KEY=VALUE (repeatable)
    #[arg(long = "from-literal", value_name = "KEY=VALUE")]
    pub from_literal: Vec<String>,
    /// A value read from a file: KEY=PATH, or PATH (the key is the file's name) (repeatable)
    #[arg(long = "from-file", value_name = "KEY=PATH")]
    pub from_file: Vec<String>,
    /// The secret's type (default Opaque)
    #[arg(long = "type", value_name = "TYPE")]
    pub type_: Option<String>,
    /// Validate on the server and print what would be created, without creating it
    #[arg(long)]
    pub dry_run: bool,
}

impl CreateSecretArgs {
    /// The name, from `NAME` or `generic NAME`.
    pub fn name(&self) -> Result<&str> {
        match self.words.as_slice() {
            [name] if name != "generic" => Ok(name),
            [generic, name] if generic == "generic" => Ok(name),
            [_] => Err(UserError::fail(
                "create secret generic needs a name: meridian create secret generic NAME --from-literal KEY=VALUE",
            )),
            _ => Err(UserError::fail(format!(
                "create secret takes one name, got {:?}: meridian create secret [generic] NAME --from-literal KEY=VALUE",
                self.words
            ))),
        }
    }
}

/// `meridian secret …`
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Generate a new encryption key and re-encrypt every Secret with it (global admins)
    #[command(
        after_help = "Example:\n  meridian secret rotate-key\n\nThe server keeps older keys in DATA_DIR/secrets.keys/ so backups and history still\nopen; see docs/security.md (Secrets) for retiring one."
    )]
    RotateKey,
}

/// The values of `--from-literal` and `--from-file`, base64, by key. Errors name the key
/// or the file, never a value.
pub fn collect_data(args: &CreateSecretArgs) -> Result<BTreeMap<String, String>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut data = BTreeMap::new();
    let mut add = |key: &str, bytes: &[u8], flag: &str| -> Result<()> {
        if !api::validate::is_secret_key(key) {
            return Err(UserError::fail(format!(
                "{flag}: key {key:?} is not valid: a key is 1 to 253 characters of letters, digits, '-', '_' and '.'"
            )));
        }
        if data.insert(key.to_owned(), b64.encode(bytes)).is_some() {
            return Err(UserError::fail(format!(
                "{flag}: key {key:?} is given twice; give each key once"
            )));
        }
        Ok(())
    };
    for literal in &args.from_literal {
        let Some((key, value)) = literal.split_once('=') else {
            return Err(UserError::fail(
                "--from-literal takes KEY=VALUE (e.g. --from-literal password=...); one had no '='",
            ));
        };
        add(key, value.as_bytes(), "--from-literal")?;
    }
    for spec in &args.from_file {
        let (key, path) = match spec.split_once('=') {
            Some((key, path)) => (key.to_owned(), PathBuf::from(path)),
            None => {
                let path = PathBuf::from(spec);
                let key = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_owned();
                (key, path)
            }
        };
        let bytes = std::fs::read(&path)
            .with_context(|| format!("--from-file: cannot read {}", path.display()))?;
        add(&key, &bytes, "--from-file")?;
    }
    Ok(data)
}

/// The Secret `create secret` sends.
pub fn secret_object(
    name: &str,
    namespace: &str,
    type_: Option<&str>,
    data: BTreeMap<String, String>,
) -> Value {
    let mut spec = json!({ "data": data });
    if let Some(t) = type_ {
        spec["type"] = json!(t);
    }
    json!({
        "apiVersion": api::API_VERSION,
        "kind": api::kinds::SECRET.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

pub async fn create(client: &Client, conn: &Resolved, cmd: &CreateCommand) -> Result<()> {
    let CreateCommand::Secret(args) = cmd;
    let name = args.name()?;
    let data = collect_data(args)?;
    let namespace = conn.namespace.clone().unwrap_or_else(|| "default".into());
    let object = secret_object(name, &namespace, args.type_.as_deref(), data);
    let created = client
        .create(api::kinds::SECRET, Some(&namespace), &object, args.dry_run)
        .await?;
    let keys = created
        .pointer("/spec/data")
        .and_then(Value::as_object)
        .map_or(0, serde_json::Map::len);
    println!(
        "secret/{name} {}({keys} keys, project {namespace})",
        if args.dry_run {
            "created (dry run) "
        } else {
            "created "
        }
    );
    Ok(())
}

pub async fn secret(client: &Client, cmd: &SecretCommand) -> Result<()> {
    match cmd {
        SecretCommand::RotateKey => {
            let answer = client
                .request_json(
                    client::Method::POST,
                    "/meridian/v1/admin/secrets/rotate-key",
                    None,
                )
                .await?;
            let r: api::secret::KeyRotation = serde_json::from_value(answer)
                .context("the server's answer to rotate-key is not understood")?;
            println!(
                "new key {}: {} secrets re-encrypted; keys held: {}",
                r.key_id,
                r.reencrypted,
                r.key_ids.join(", ")
            );
            if r.remaining > 0 {
                return Err(UserError::fail(format!(
                    "{} secrets are still under an older key (they were being written during the \
                     rotation): run meridian secret rotate-key again",
                    r.remaining
                )));
            }
            Ok(())
        }
    }
}

/// The spec of a Secret for `describe`, as kubectl prints it: type, then each key with
/// the size of its value (decoded), never the value. A viewer's copy has no values: its
/// keys are listed without sizes.
pub fn describe_spec(object: &Value) -> String {
    let spec = object.get("spec").cloned().unwrap_or_default();
    let mut out = format!(
        "Type:         {}\n\nData\n====\n",
        spec.get("type").and_then(Value::as_str).unwrap_or("Opaque")
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut any = false;
    if let Some(data) = spec.get("data").and_then(Value::as_object) {
        for (k, v) in data {
            let size = v
                .as_str()
                .and_then(|v| b64.decode(v).ok())
                .map_or_else(|| "?".to_owned(), |b| b.len().to_string());
            out.push_str(&format!("{k}:  {size} bytes\n"));
            any = true;
        }
    } else if let Some(keys) = spec.get("keys").and_then(Value::as_array) {
        for k in keys.iter().filter_map(Value::as_str) {
            out.push_str(&format!("{k}:  (value not readable with this token)\n"));
            any = true;
        }
    }
    if !any {
        out.push_str("<none>\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str], literals: &[&str]) -> CreateSecretArgs {
        CreateSecretArgs {
            words: words.iter().map(|s| (*s).to_owned()).collect(),
            from_literal: literals.iter().map(|s| (*s).to_owned()).collect(),
            from_file: Vec::new(),
            type_: None,
            dry_run: false,
        }
    }

    #[test]
    fn generic_is_kubectls_word() {
        assert_eq!(args(&["db"], &[]).name().expect("name"), "db");
        assert_eq!(args(&["generic", "db"], &[]).name().expect("name"), "db");
        assert!(args(&["generic"], &[]).name().is_err());
        assert!(args(&["a", "b"], &[]).name().is_err());
    }

    #[test]
    fn literals_are_base64_and_errors_never_quote_values() {
        let data = collect_data(&args(&["db"], &["password=hunter2=x", "user=app"])).expect("data");
        assert_eq!(data["password"], "aHVudGVyMj14");
        let err = collect_data(&args(&["db"], &["bad key=hunter2"])).expect_err("bad key");
        assert!(!format!("{err:#}").contains("hunter2"));
        let err = collect_data(&args(&["db"], &["a=hunter2", "a=hunter3"])).expect_err("twice");
        assert!(!format!("{err:#}").contains("hunter"));
    }

    #[test]
    fn describe_shows_sizes_not_values() {
        let text = describe_spec(&json!({"spec": {"data": {"password": "aHVudGVyMg=="}}}));
        assert!(text.contains("password:  7 bytes"), "{text}");
        assert!(!text.contains("aHVudGVyMg") && !text.contains("hunter2"));
        let text = describe_spec(&json!({"spec": {"keys": ["password"]}}));
        assert!(text.contains("password:"), "{text}");
    }
}
