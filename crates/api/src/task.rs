//! What a task sees: its user, environment (values and secret references), ports, host
//! volumes, secret files and resource limits; and what the rest of the system derives from
//! them: the host ports the scheduler assigns ([`PortBinding`]), the volumes and addresses a
//! node reports ([`HostVolume`], [`NodeAddress`]) and a workload's published endpoints
//! ([`Endpoint`]).
//!
//! The manifest side follows Kubernetes where it has a word for it (`env` as a list of
//! `{name, value}` or `{name, valueFrom: {secretRef}}`, `volumes` with `mountPath` and
//! `readOnly`, `ports` with `name`, `port` and `protocol`) and Nomad where Kubernetes has
//! none (host ports as a node resource, `0` for a dynamic port, host volumes by name).

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::kinds::string_enum;

/// The account a task runs as when its spec names none: an unprivileged user the agent
/// creates on Linux nodes.
pub const DEFAULT_TASK_USER: &str = "meridian-task";

/// Lowest port the scheduler hands out for `port: 0` (after Nomad's default range).
pub const DYNAMIC_PORT_MIN: u16 = 20000;
/// Highest port the scheduler hands out for `port: 0`.
pub const DYNAMIC_PORT_MAX: u16 = 32000;

string_enum! {
    /// A port's transport protocol.
    #[derive(Default)]
    Protocol {
        #[default]
        Tcp = "tcp",
        Udp = "udp",
    }
}

/// A port the task listens on: `{name: http, port: 8080}`, or `port: 0` for one the
/// scheduler picks from the node's free dynamic range. The task learns the host port from
/// `MERIDIAN_PORT_<NAME>` (upper case, `-` as `_`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    /// A DNS label, unique in the task (`http`, `metrics`); health checks and endpoints
    /// name ports by it.
    pub name: String,
    /// The host port; `0` means any free one from the dynamic range. Wider than `u16` so
    /// that `70000` is refused by validation with the field's name, not by the decoder.
    #[serde(default)]
    pub port: u32,
    /// Containers and VMs: the port inside the task that the host port forwards to
    /// (default: the same number as the host port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u32>,
    #[serde(default, skip_serializing_if = "is_tcp")]
    pub protocol: Protocol,
}

fn is_tcp(p: &Protocol) -> bool {
    *p == Protocol::Tcp
}

/// A host port assigned to an allocation by the scheduler (never by the writer of the
/// allocation): what the agent opens, forwards and publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortBinding {
    pub name: String,
    /// The host port on the node.
    pub port: u16,
    /// The port inside a container or VM (equal to `port` for `exec` tasks).
    pub target: u16,
    #[serde(default, skip_serializing_if = "is_tcp")]
    pub protocol: Protocol,
}

/// A port as a health check names it: a number, or the name of one of the task's ports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

impl PortRef {
    /// The host port: a number as it is, a name looked up in the allocation's bindings.
    pub fn resolve(&self, bindings: &[PortBinding]) -> Option<u16> {
        match self {
            PortRef::Number(n) => Some(*n),
            PortRef::Name(name) => bindings.iter().find(|b| &b.name == name).map(|b| b.port),
        }
    }
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(s) => f.write_str(s),
        }
    }
}

impl From<u16> for PortRef {
    fn from(n: u16) -> Self {
        PortRef::Number(n)
    }
}

/// A host volume the task mounts: a directory the node's agent declares
/// (`meridian agent --volume NAME=PATH[:ro]`), which placement requires of the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    /// The node's volume name.
    pub name: String,
    /// Where the task sees it: absolute (an existing directory for `exec` tasks, any path in
    /// a container, a 9p mount tag's suggested path in a VM), or relative to the task's
    /// working directory.
    pub mount_path: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// Keys of a secret delivered as files, one per key, mode 0400, owned by the task's user,
/// in `$MERIDIAN_SECRETS_DIR/<secret>/<key>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretFiles {
    /// The Secret's name, in the workload's project.
    pub name: String,
    /// Only these keys (default: every key of the secret).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

/// Resource limits of the task's processes (`setrlimit`; the container driver passes
/// them as `--ulimit`). Unset limits are inherited from the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rlimits {
    /// Open files (`RLIMIT_NOFILE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofile: Option<u64>,
    /// Processes of the task's user (`RLIMIT_NPROC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nproc: Option<u64>,
    /// Core dump size in bytes (`RLIMIT_CORE`; 0 disables core dumps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core: Option<u64>,
}

/// Where an environment variable's value comes from, other than the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvSource {
    /// One key of a Secret in the workload's project.
    pub secret_ref: SecretKeyRef,
}

/// `{name, key}` of a Secret (Kubernetes calls it `secretKeyRef`; both are accepted).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// One environment variable's value: a literal, or a reference resolved by the agent when
/// the task starts (the value never enters the allocation, its logs or events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum EnvValue {
    Value(String),
    From {
        #[serde(rename = "valueFrom")]
        value_from: EnvSource,
    },
}

impl EnvValue {
    /// The literal value, if it is one.
    pub fn literal(&self) -> Option<&str> {
        match self {
            EnvValue::Value(v) => Some(v),
            EnvValue::From { .. } => None,
        }
    }

    /// The secret key it refers to, if it does.
    pub fn secret_ref(&self) -> Option<&SecretKeyRef> {
        match self {
            EnvValue::From { value_from } => Some(&value_from.secret_ref),
            EnvValue::Value(_) => None,
        }
    }

    /// A reference to `key` of secret `name`.
    pub fn secret(name: &str, key: &str) -> Self {
        EnvValue::From {
            value_from: EnvSource {
                secret_ref: SecretKeyRef {
                    name: name.to_owned(),
                    key: key.to_owned(),
                },
            },
        }
    }
}

impl From<&str> for EnvValue {
    fn from(s: &str) -> Self {
        EnvValue::Value(s.to_owned())
    }
}

impl From<String> for EnvValue {
    fn from(s: String) -> Self {
        EnvValue::Value(s)
    }
}

/// A task's environment, by name: `env: {A: "1"}` or Kubernetes' list form
/// `env: [{name: A, value: "1"}, {name: B, valueFrom: {secretRef: {name: s, key: k}}}]`
/// (`secretKeyRef` is accepted for `secretRef`). Scalars (numbers, booleans) become strings.
pub type Env = BTreeMap<String, EnvValue>;

/// Deserializes [`Env`] from either form.
pub(crate) fn deserialize_env<'de, D: Deserializer<'de>>(d: D) -> Result<Env, D::Error> {
    d.deserialize_any(EnvVisitor)
}

struct EnvVisitor;

#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    S(String),
    I(i64),
    U(u64),
    F(f64),
    B(bool),
}

impl Scalar {
    fn into_string(self) -> String {
        match self {
            Scalar::S(s) => s,
            Scalar::I(i) => i.to_string(),
            Scalar::U(u) => u.to_string(),
            Scalar::F(f) => f.to_string(),
            Scalar::B(b) => b.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SourceForm {
    #[serde(default)]
    secret_ref: Option<SecretKeyRef>,
    #[serde(default)]
    secret_key_ref: Option<SecretKeyRef>,
}

impl SourceForm {
    fn into_source<E: de::Error>(self) -> Result<EnvSource, E> {
        match (self.secret_ref, self.secret_key_ref) {
            (Some(r), None) | (None, Some(r)) => Ok(EnvSource { secret_ref: r }),
            _ => Err(E::custom(
                "valueFrom needs exactly one of secretRef {name, key} or secretKeyRef {name, key}",
            )),
        }
    }
}

/// A map entry's value: a scalar or `{valueFrom: …}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum MapValue {
    Scalar(Scalar),
    From(FromForm),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FromForm {
    value_from: SourceForm,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListEntry {
    name: String,
    #[serde(default)]
    value: Option<Scalar>,
    #[serde(default)]
    value_from: Option<SourceForm>,
}

impl<'de> Visitor<'de> for EnvVisitor {
    type Value = Env;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of NAME: value, or a list of {name, value} / {name, valueFrom}")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Env, E> {
        Ok(Env::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Env, A::Error> {
        let mut env = Env::new();
        while let Some((k, v)) = map.next_entry::<String, MapValue>()? {
            let v = match v {
                MapValue::Scalar(s) => EnvValue::Value(s.into_string()),
                MapValue::From(f) => EnvValue::From {
                    value_from: f.value_from.into_source()?,
                },
            };
            env.insert(k, v);
        }
        Ok(env)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Env, A::Error> {
        let mut env = Env::new();
        while let Some(e) = seq.next_element::<ListEntry>()? {
            let v = match (e.value, e.value_from) {
                (Some(v), None) => EnvValue::Value(v.into_string()),
                (None, Some(f)) => EnvValue::From {
                    value_from: f.into_source()?,
                },
                (None, None) => EnvValue::Value(String::new()),
                (Some(_), Some(_)) => {
                    return Err(de::Error::custom(format!(
                        "env {}: give value or valueFrom, not both",
                        e.name
                    )));
                }
            };
            if env.insert(e.name.clone(), v).is_some() {
                return Err(de::Error::custom(format!(
                    "env {}: the name is given twice",
                    e.name
                )));
            }
        }
        Ok(env)
    }
}

/// One side of `task.user`: a name, or a numeric id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    Name(String),
    Id(u32),
}

/// `task.user` parsed: `name`, `uid`, `name:group`, `uid:gid` (either side a name or a
/// number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub user: Account,
    pub group: Option<Account>,
}

impl User {
    /// Whether this is the superuser (`root` or uid 0), whatever the group.
    pub fn is_root(&self) -> bool {
        matches!(&self.user, Account::Id(0))
            || matches!(&self.user, Account::Name(n) if n == "root")
    }
}

/// Parses `task.user`; the error says what is wrong.
pub fn parse_user(s: &str) -> Result<User, String> {
    fn account(part: &str, what: &str) -> Result<Account, String> {
        if part.is_empty() {
            return Err(format!(
                "the {what} is empty: use name, uid, name:group or uid:gid"
            ));
        }
        if part.bytes().all(|b| b.is_ascii_digit()) {
            return part
                .parse::<u32>()
                .map(Account::Id)
                .map_err(|_| format!("{part} is not a {what} id (at most 4294967295)"));
        }
        let ok = part.len() <= 32
            && part
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && part.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
            });
        if ok {
            Ok(Account::Name(part.to_owned()))
        } else {
            Err(format!(
                "{part:?} is not a {what} name: lower-case letters, digits, '_', '-' and '.', starting with a letter or '_', at most 32"
            ))
        }
    }
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    Ok(User {
        user: account(u, "user")?,
        group: g.map(|g| account(g, "group")).transpose()?,
    })
}

/// A host volume a node offers (reported by its agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostVolume {
    pub name: String,
    /// Tasks may only read it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

string_enum! {
    /// What a node address is (Kubernetes' `NodeAddressType` values).
    NodeAddressType {
        InternalIp = "InternalIP",
        ExternalIp = "ExternalIP",
        Hostname = "Hostname",
    }
}

/// An address other nodes reach this node at, reported by its agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAddress {
    #[serde(rename = "type")]
    pub type_: NodeAddressType,
    pub address: String,
}

/// A ready instance of a workload, as another service reaches it: the node's address and
/// the allocation's host ports by name. Written by the scheduler into the workload's
/// `status.endpoints`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    /// The allocation.
    pub allocation: String,
    pub node: String,
    /// The node's address (its first InternalIP, else any address, else its name).
    pub address: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortBinding>,
}

/// A workload's endpoints as a Kubernetes core `v1` `Endpoints` object (what
/// `kubectl get endpoints` and the Python client read): one subset per distinct set of
/// ports (dynamic ports differ between instances), addresses with `nodeName` and a
/// `targetRef` to the allocation.
pub fn core_endpoints(meta: &crate::meta::ObjectMeta, endpoints: &[Endpoint]) -> serde_json::Value {
    let mut subsets: Vec<(Vec<&PortBinding>, Vec<serde_json::Value>)> = Vec::new();
    for e in endpoints {
        let ports: Vec<&PortBinding> = e.ports.iter().collect();
        let address = serde_json::json!({
            "ip": e.address,
            "nodeName": e.node,
            "targetRef": {
                "kind": "Allocation",
                "apiVersion": crate::API_VERSION,
                "namespace": meta.namespace,
                "name": e.allocation,
            },
        });
        match subsets.iter_mut().find(|(p, _)| *p == ports) {
            Some((_, addresses)) => addresses.push(address),
            None => subsets.push((ports, vec![address])),
        }
    }
    let subsets: Vec<serde_json::Value> = subsets
        .into_iter()
        .map(|(ports, addresses)| {
            serde_json::json!({
                "addresses": addresses,
                "ports": ports.iter().map(|p| serde_json::json!({
                    "name": p.name,
                    "port": p.port,
                    "protocol": p.protocol.as_str().to_ascii_uppercase(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut metadata = serde_json::json!({
        "name": meta.name,
        "namespace": meta.namespace,
    });
    if let Some(t) = &meta.creation_timestamp {
        metadata["creationTimestamp"] = serde_json::json!(t);
    }
    if let Some(l) = Some(&meta.labels).filter(|l| !l.is_empty()) {
        metadata["labels"] = serde_json::json!(l);
    }
    let mut v = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": metadata,
    });
    if !subsets.is_empty() {
        v["subsets"] = serde_json::Value::Array(subsets);
    }
    v
}

/// `address:port` of each endpoint's first port, as `kubectl get endpoints` prints them:
/// at most three, then `+ N more...`; `<none>` when there are none.
pub fn endpoints_summary(endpoints: &[Endpoint]) -> String {
    let all: Vec<String> = endpoints
        .iter()
        .flat_map(|e| {
            e.ports
                .iter()
                .map(move |p| format!("{}:{}", e.address, p.port))
        })
        .collect();
    match all.len() {
        0 => "<none>".to_owned(),
        n if n <= 3 => all.join(","),
        n => format!("{} + {} more...", all[..3].join(","), n - 3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        #[serde(deserialize_with = "deserialize_env")]
        env: Env,
    }

    fn env(yaml: &str) -> Result<Env, String> {
        serde_yaml_ng::from_str::<T>(yaml)
            .map(|t| t.env)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn env_map_and_list_forms_mean_the_same() {
        let map = env("env: {A: 1, B: {valueFrom: {secretRef: {name: s, key: k}}}}").unwrap();
        let list = env(
            "env: [{name: A, value: '1'}, {name: B, valueFrom: {secretKeyRef: {name: s, key: k}}}]",
        )
        .unwrap();
        assert_eq!(map, list);
        assert_eq!(map["A"].literal(), Some("1"));
        assert_eq!(
            map["B"].secret_ref(),
            Some(&SecretKeyRef {
                name: "s".into(),
                key: "k".into()
            })
        );
        // serialised in the map form, which reads back the same
        let json = serde_json::to_string(&map).unwrap();
        assert_eq!(
            json,
            r#"{"A":"1","B":{"valueFrom":{"secretRef":{"name":"s","key":"k"}}}}"#
        );
    }

    #[test]
    fn env_list_refuses_duplicates_and_both_forms() {
        assert!(
            env("env: [{name: A, value: x}, {name: A, value: y}]")
                .unwrap_err()
                .contains("given twice")
        );
        assert!(
            env("env: [{name: A, value: x, valueFrom: {secretRef: {name: s, key: k}}}]")
                .unwrap_err()
                .contains("not both")
        );
    }

    #[test]
    fn endpoints_group_by_ports_as_core_v1() {
        let b = |port| PortBinding {
            name: "http".into(),
            port,
            target: port,
            protocol: Protocol::Tcp,
        };
        let e = |name: &str, addr: &str, port| Endpoint {
            allocation: name.into(),
            node: format!("node-{name}"),
            address: addr.into(),
            ports: vec![b(port)],
        };
        let eps = vec![
            e("a", "10.0.0.1", 8080),
            e("b", "10.0.0.2", 8080),
            e("c", "10.0.0.3", 20001),
            e("d", "10.0.0.4", 20002),
        ];
        let meta = crate::meta::ObjectMeta::namespaced("p", "web");
        let v = core_endpoints(&meta, &eps);
        assert_eq!(v["kind"], "Endpoints");
        assert_eq!(v["subsets"].as_array().unwrap().len(), 3);
        assert_eq!(v["subsets"][0]["addresses"][1]["ip"], "10.0.0.2");
        assert_eq!(v["subsets"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(
            endpoints_summary(&eps),
            "10.0.0.1:8080,10.0.0.2:8080,10.0.0.3:20001 + 1 more..."
        );
        assert_eq!(endpoints_summary(&[]), "<none>");
    }

    #[test]
    fn users_parse_in_every_form() {
        let u = parse_user("app").unwrap();
        assert_eq!(u.user, Account::Name("app".into()));
        assert!(!u.is_root());
        let u = parse_user("1000:1001").unwrap();
        assert_eq!(u.group, Some(Account::Id(1001)));
        assert!(parse_user("root").unwrap().is_root());
        assert!(parse_user("0:5").unwrap().is_root());
        assert!(parse_user("").unwrap_err().contains("empty"));
        assert!(parse_user("a:").unwrap_err().contains("group is empty"));
        assert!(
            parse_user("Bad User")
                .unwrap_err()
                .contains("not a user name")
        );
        assert!(
            parse_user("99999999999")
                .unwrap_err()
                .contains("not a user id")
        );
    }

    #[test]
    fn port_refs_resolve_by_name_or_number() {
        let b = [PortBinding {
            name: "http".into(),
            port: 20001,
            target: 80,
            protocol: Protocol::Tcp,
        }];
        assert_eq!(PortRef::Name("http".into()).resolve(&b), Some(20001));
        assert_eq!(PortRef::Number(9).resolve(&b), Some(9));
        assert_eq!(PortRef::Name("x".into()).resolve(&b), None);
        let r: PortRef = serde_json::from_str("\"http\"").unwrap();
        assert_eq!(r, PortRef::Name("http".into()));
        let r: PortRef = serde_json::from_str("8080").unwrap();
        assert_eq!(r, PortRef::Number(8080));
    }
}
