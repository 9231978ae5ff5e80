//! Streams of bytes: reading an allocation's log (the `log` subresource) and, for the
//! agent, uploading a log session's bytes as a streaming request body.

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use percent_encoding::utf8_percent_encode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::Value;

use api::logs::LogStream;

use crate::{Client, ClientError, Method, QUERY, Result, path_segment, status_error};

/// What to read of an allocation's output (the Kubernetes `pods/log` parameters).
#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    /// Keep streaming what the task writes until it stops or the stream is dropped.
    pub follow: bool,
    /// Only the last N lines of what is stored.
    pub tail_lines: Option<u64>,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
    /// Which stream (`container=`); the server's default is stdout.
    pub stream: Option<LogStream>,
}

/// Bytes as they arrive. An error means the stream broke before its end.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// The path and query of an allocation's log.
pub fn log_path(namespace: &str, allocation: &str, opts: &LogOptions) -> String {
    let mut path = format!(
        "/apis/meridian.dev/v1/namespaces/{}/allocations/{}/log",
        path_segment(namespace),
        path_segment(allocation)
    );
    let mut query = Vec::new();
    if opts.follow {
        query.push("follow=true".to_owned());
    }
    if let Some(n) = opts.tail_lines {
        query.push(format!("tailLines={n}"));
    }
    if let Some(n) = opts.limit_bytes {
        query.push(format!("limitBytes={n}"));
    }
    if let Some(s) = opts.stream {
        query.push(format!(
            "container={}",
            utf8_percent_encode(s.as_str(), QUERY)
        ));
    }
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    path
}

impl Client {
    /// An allocation's captured output, streamed through the server as it arrives.
    pub async fn logs(
        &self,
        namespace: &str,
        allocation: &str,
        opts: &LogOptions,
    ) -> Result<ByteStream> {
        let url = format!("{}{}", self.base, log_path(namespace, allocation, opts));
        let resp = self
            .http
            .get(url)
            .header(ACCEPT, "text/plain, application/json")
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        if !resp.status().is_success() {
            let code = resp.status();
            let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
            return Err(status_error(code, &bytes));
        }
        let server = self.base.clone();
        Ok(Box::pin(resp.bytes_stream().map(move |chunk| {
            chunk.map_err(|source| ClientError::Transport {
                url: server.clone(),
                source,
            })
        })))
    }

    /// Sends `body` as a streaming request body and decodes the JSON answer. The answer
    /// may come before the body ends (the server stopped reading it); the body is then
    /// dropped.
    pub async fn send_stream<S>(&self, method: Method, path: &str, body: S) -> Result<Value>
    where
        S: Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let code = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        if !code.is_success() {
            return Err(status_error(code, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_paths_use_the_kubernetes_parameter_names() {
        assert_eq!(
            log_path("default", "hello-0", &LogOptions::default()),
            "/apis/meridian.dev/v1/namespaces/default/allocations/hello-0/log"
        );
        let opts = LogOptions {
            follow: true,
            tail_lines: Some(2),
            limit_bytes: Some(100),
            stream: Some(LogStream::Stderr),
        };
        assert_eq!(
            log_path("default", "hello-0", &opts),
            "/apis/meridian.dev/v1/namespaces/default/allocations/hello-0/log?follow=true&tailLines=2&limitBytes=100&container=stderr"
        );
    }
}
