//! The wire types of `meridian logs` between the server and a node agent.
//!
//! Clients read an allocation's output from the server with the Kubernetes `pods/log`
//! subresource's query parameters (`follow`, `tailLines`, `limitBytes`, `container`).
//! The server cannot dial agents (they may sit behind NAT or a firewall), so it queues a
//! [`LogSession`] for the allocation's node; the node's agent long-polls for them
//! ([`LogSessionList`]) and answers each by uploading the bytes, or a `Status` when it
//! cannot.

use serde::{Deserialize, Serialize};

/// Which captured stream of a task to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// Standard output (the default).
    #[default]
    Stdout,
    /// Standard error.
    Stderr,
    /// Both: what is stored, stdout then stderr; while following, whatever arrives.
    All,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::All => "all",
        }
    }

    /// The stream named `s` (`container=` of the log subresource).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "stdout" => Some(LogStream::Stdout),
            "stderr" => Some(LogStream::Stderr),
            "all" => Some(LogStream::All),
            _ => None,
        }
    }
}

/// One request for an allocation's output, waiting for the node's agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogSession {
    /// Random, unguessable; the agent uploads to `…/log-sessions/{id}`.
    pub id: String,
    pub namespace: String,
    pub allocation: String,
    /// The allocation's `metadata.uid`, so a replaced allocation of the same name is
    /// not mistaken for it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default)]
    pub stream: LogStream,
    /// Keep sending what the task writes until the allocation stops or the reader goes.
    #[serde(default)]
    pub follow: bool,
    /// Only the last N lines of what is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail_lines: Option<u64>,
    /// Stop after this many bytes.
    pub limit_bytes: u64,
}

/// The answer to an agent's poll: the sessions it has to serve (possibly none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogSessionList {
    pub sessions: Vec<LogSession>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_round_trip_in_camel_case() {
        let s = LogSession {
            id: "abc".into(),
            namespace: "default".into(),
            allocation: "hello-0".into(),
            uid: String::new(),
            stream: LogStream::Stderr,
            follow: true,
            tail_lines: Some(2),
            limit_bytes: 10,
        };
        let v = serde_json::to_value(&s).expect("serializes");
        assert_eq!(v["tailLines"], 2);
        assert_eq!(v["stream"], "stderr");
        assert!(v.get("uid").is_none());
        let back: LogSession = serde_json::from_value(v).expect("parses");
        assert_eq!(back, s);
        assert_eq!(LogStream::parse("all"), Some(LogStream::All));
        assert_eq!(LogStream::parse("both"), None);
    }
}
