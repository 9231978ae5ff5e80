//! Hostile request bodies against a real server on loopback: YAML alias bombs ("billion
//! laughs") and deep nesting are refused with 400 before they are expanded, on every path
//! that decodes YAML (create, apply patch, `Namespace` creation); ordinary YAML with
//! anchors, aliases and merge keys still works.

use serde_json::Value;

use testkit::TestServer;

/// Nine levels of nine aliases: 9^9 (387 million) leaves from under 400 bytes.
fn billion_laughs(document_head: &str) -> String {
    let mut text = format!("{document_head}a0: &a0 [lol]\n");
    for level in 1..=9 {
        let items = vec![format!("*a{}", level - 1); 9].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{items}]\n"));
    }
    text
}

const WORKLOAD_HEAD: &str =
    "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata:\n  name: bomb\n  namespace: default\n";

async fn send(
    r: &TestServer,
    method: reqwest::Method,
    path: &str,
    content_type: &str,
    body: String,
) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let resp = reqwest::Client::new()
        .request(method, format!("{}{path}", r.url))
        .bearer_auth(&r.token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request sent");
    let code = resp.status().as_u16();
    (code, resp.json().await.expect("a JSON answer"))
}

fn assert_refused_as_alias_bomb(code: u16, status: &Value) {
    assert_eq!(code, 400, "{status}");
    assert_eq!(status["kind"], "Status", "{status}");
    let message = status["message"].as_str().expect("message");
    assert!(
        message.contains("YAML aliases expand beyond the limit"),
        "{message}"
    );
}

#[tokio::test]
async fn billion_laughs_is_refused_with_400_on_every_yaml_path() {
    let r = TestServer::start().await;
    let workloads = "/apis/meridian.dev/v1/namespaces/default/workloads";
    let bomb = billion_laughs(WORKLOAD_HEAD);

    let (code, status) = send(
        &r,
        reqwest::Method::POST,
        workloads,
        "application/yaml",
        bomb.clone(),
    )
    .await;
    assert_refused_as_alias_bomb(code, &status);

    let (code, status) = send(
        &r,
        reqwest::Method::PATCH,
        &format!("{workloads}/bomb?fieldManager=test"),
        "application/apply-patch+yaml",
        bomb,
    )
    .await;
    assert_refused_as_alias_bomb(code, &status);

    let namespace = billion_laughs("apiVersion: v1\nkind: Namespace\nmetadata: {name: bomb}\n");
    let (code, status) = send(
        &r,
        reqwest::Method::POST,
        "/api/v1/namespaces",
        "application/yaml",
        namespace,
    )
    .await;
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("YAML aliases expand beyond the limit")),
        "{status}"
    );

    // The server is still there and still answers.
    let (code, _) = send(
        &r,
        reqwest::Method::GET,
        workloads,
        "application/json",
        String::new(),
    )
    .await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn deep_nesting_is_refused_with_400() {
    let r = TestServer::start().await;
    let body = format!(
        "{WORKLOAD_HEAD}spec: {}{}\n",
        "[".repeat(200),
        "]".repeat(200)
    );
    let (code, status) = send(
        &r,
        reqwest::Method::POST,
        "/apis/meridian.dev/v1/namespaces/default/workloads",
        "application/yaml",
        body,
    )
    .await;
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("YAML nesting is deeper than 64 levels")),
        "{status}"
    );
}

#[tokio::test]
async fn yaml_with_anchors_aliases_and_merge_keys_is_accepted() {
    let r = TestServer::start().await;
    let body = "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata:\n  name: anchored\n  \
                namespace: default\n  labels: &labels {team: payroll}\n  annotations: *labels\n\
                spec:\n  type: service\n  task:\n    <<: {driver: exec, resources: {cpu: 100m, memory: 64Mi}}\n    \
                command: [/bin/app]\n";
    let (code, created) = send(
        &r,
        reqwest::Method::POST,
        "/apis/meridian.dev/v1/namespaces/default/workloads",
        "application/yaml",
        body.to_string(),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["annotations"]["team"], "payroll");
    assert_eq!(created["spec"]["task"]["driver"], "exec");
    assert_eq!(created["spec"]["task"]["resources"]["memory"], "64Mi");
}
