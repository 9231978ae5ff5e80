//! `node join-token create`: enrolment of agents.

use anyhow::Result;
use serde_json::json;

use client::{Client, Method};

use crate::args::{JoinTokenCommand, NodeCommand};

pub async fn node(client: &Client, cmd: &NodeCommand) -> Result<()> {
    match cmd {
        NodeCommand::JoinToken(JoinTokenCommand::Create { site, ttl }) => {
            let resp = client
                .request_json(
                    Method::POST,
                    "/meridian/v1/join-tokens",
                    Some(&json!({"site": site, "ttlSeconds": ttl.as_secs().max(1)})),
                )
                .await?;
            // Only the token on stdout, so it can be captured; the rest on stderr.
            println!("{}", resp["token"].as_str().unwrap_or_default());
            eprintln!(
                "join token {} expires {}, for one new node in site {site}",
                resp["id"].as_str().unwrap_or_default(),
                resp["expires"].as_str().unwrap_or_default(),
            );
            Ok(())
        }
    }
}
