//! The trust boundaries of `docs/security.md` against a real server, as an attacker holding
//! each credential would probe them: a join token, a node credential, a project operator,
//! a viewer and a stranger. Each test is one finding of issue 20 that held before its fix.

use std::time::Instant;

use serde_json::{Value, json};

use client::{Client, ClientError};
use server::ServerConfig;

use testkit::{TestServer, kind, load_examples, seed_allocation};

async fn server() -> TestServer {
    TestServer::start_with(ServerConfig {
        scheduler: None,
        ..ServerConfig::default()
    })
    .await
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn code(e: ClientError) -> u16 {
    match e {
        ClientError::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn join_token(r: &TestServer, site: &str) -> String {
    r.client
        .request_json(
            client::Method::POST,
            "/meridian/v1/join-tokens",
            Some(&json!({"site": site, "ttlSeconds": 600})),
        )
        .await
        .expect("join token")["token"]
        .as_str()
        .expect("token")
        .to_owned()
}

/// The join exchange: status and body.
async fn join(r: &TestServer, join_token: &str, node: &str, site: Option<&str>) -> (u16, Value) {
    let resp = http()
        .post(format!("{}/meridian/v1/nodes/join", r.url))
        .bearer_auth(join_token)
        .json(&json!({"node": node, "site": site}))
        .send()
        .await
        .expect("join request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("a JSON answer"))
}

fn node_object(name: &str, site: &str) -> Value {
    json!({
        "apiVersion": "meridian.dev/v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"rack": "r1"}},
        "spec": {"site": site, "os": {"family": "linux"}, "arch": "amd64",
                 "capacity": {"cpu": "8", "memory": "32Gi"}, "drivers": ["exec"]},
    })
}

/// A raw request: status, content type and body.
async fn raw(
    r: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, String, Value) {
    let resp = http()
        .request(method, format!("{}{path}", r.url))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = resp.bytes().await.expect("body");
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, ct, value)
}

#[tokio::test]
async fn a_join_token_cannot_take_over_a_node_or_choose_its_site() {
    let r = server().await;
    load_examples(&r.client).await;

    // A join token must name its site.
    let e = r
        .client
        .request_json(
            client::Method::POST,
            "/meridian/v1/join-tokens",
            Some(&json!({"ttlSeconds": 600})),
        )
        .await
        .expect_err("no site");
    assert_eq!(code(e), 400);

    // An existing node (in the US) cannot be joined with a Frankfurt token.
    let t = join_token(&r, "onprem-frankfurt").await;
    let (status, body) = join(&r, &t, "aws-use1-lnx-01", None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("already registered"),
        "{body}"
    );
    // The refused join did not use the token up.
    let (status, body) = join(&r, &t, "fra-new-01", None).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["site"], "onprem-frankfurt");
    let credential = body["token"].as_str().expect("credential").to_owned();
    let credential_id = body["id"].as_str().expect("id").to_owned();

    // A second host with the same name, before the first registered its Node: refused.
    let t2 = join_token(&r, "onprem-frankfurt").await;
    let (status, body) = join(&r, &t2, "fra-new-01", None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&credential_id),
        "names the credential that holds the name: {body}"
    );

    let node = Client::new(&r.url, &credential, None).expect("client");
    // Registering in another site (Zurich, for residency [CH]) is refused.
    let e = node
        .create(
            kind("node"),
            None,
            &node_object("fra-new-01", "onprem-zurich"),
            false,
        )
        .await
        .expect_err("another site");
    assert_eq!(code(e), 403);
    node.create(
        kind("node"),
        None,
        &node_object("fra-new-01", "onprem-frankfurt"),
        false,
    )
    .await
    .expect("registers in its token's site");

    // Afterwards it reports facts, nothing placement trusts.
    let patch = |v: Value| {
        let node = node.clone();
        async move {
            node.patch(
                kind("node"),
                None,
                "fra-new-01",
                client::PatchType::Merge,
                &v,
                false,
            )
            .await
        }
    };
    patch(json!({"spec": {"capacity": {"cpu": "16", "memory": "64Gi"}}}))
        .await
        .expect("facts change");
    for (what, forbidden) in [
        ("site", json!({"spec": {"site": "onprem-zurich"}})),
        ("labels", json!({"metadata": {"labels": {"rack": "r2"}}})),
        (
            "taints",
            json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}),
        ),
        ("cordon", json!({"spec": {"unschedulable": true}})),
    ] {
        let e = patch(forbidden).await.expect_err(what);
        assert_eq!(code(e), 403, "{what}");
    }
    // An admin's taint cannot be removed by the node.
    r.client
        .patch(
            kind("node"),
            None,
            "fra-new-01",
            client::PatchType::Merge,
            &json!({"spec": {"taints": [{"key": "quarantine", "effect": "NoSchedule"}]}}),
            false,
        )
        .await
        .expect("admin taints");
    let e = patch(json!({"spec": {"taints": null}}))
        .await
        .expect_err("untaint");
    assert_eq!(code(e), 403);
    let stored = r
        .client
        .get(kind("node"), None, "fra-new-01")
        .await
        .expect("node");
    assert_eq!(stored["spec"]["site"], "onprem-frankfurt");
    assert_eq!(stored["spec"]["taints"][0]["key"], "quarantine");

    // A node credential does not read the estate's audit log.
    let e = node
        .get_path("/meridian/v1/audit")
        .await
        .expect_err("audit log");
    assert_eq!(code(e), 403);

    // Revoking the credential frees the name for a new host (after the Node is removed).
    r.client
        .request_json(
            client::Method::DELETE,
            &format!("/meridian/v1/tokens/{credential_id}"),
            None,
        )
        .await
        .expect("revoke");
    r.client
        .delete(kind("node"), None, "fra-new-01")
        .await
        .expect("delete node");
    let (status, body) = join(&r, &t2, "fra-new-01", None).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn only_the_scheduler_writes_allocations() {
    let r = server().await;
    load_examples(&r.client).await;
    let operator = Client::new(
        &r.url,
        &r.new_token("operator", Some("default")).await,
        None,
    )
    .expect("client");
    let hand_made = json!({
        "apiVersion": "meridian.dev/v1", "kind": "Allocation",
        "metadata": {"name": "lie-0", "namespace": "default"},
        "spec": {"workload": "w", "node": "aws-use1-lnx-01", "site": "onprem-frankfurt",
                 "resources": {"cpu": "900", "memory": "1Gi"}},
    });
    for who in [&operator, &r.client] {
        let e = who
            .create(kind("allocation"), Some("default"), &hand_made, false)
            .await
            .expect_err("no hand-made allocations");
        assert_eq!(code(e), 403);
        let e = who
            .apply(kind("allocation"), Some("default"), &hand_made, false)
            .await
            .expect_err("nor applied ones");
        assert_eq!(code(e), 403);
    }
    seed_allocation(
        &r.state,
        &json!({
            "apiVersion": "meridian.dev/v1", "kind": "Allocation",
            "metadata": {"name": "w-0", "namespace": "default"},
            "spec": {"workload": "w", "node": "fra-rhel-01",
                     "resources": {"cpu": "100m", "memory": "32Mi"}},
        }),
    )
    .await;
    // Neither the operator nor an admin moves it; the operator may delete it.
    for who in [&operator, &r.client] {
        let e = who
            .patch(
                kind("allocation"),
                Some("default"),
                "w-0",
                client::PatchType::Merge,
                &json!({"spec": {"node": "aws-use1-lnx-01"}}),
                false,
            )
            .await
            .expect_err("spec is the scheduler's");
        assert_eq!(code(e), 403);
    }
    let mut status = r
        .client
        .get(kind("allocation"), Some("default"), "w-0")
        .await
        .expect("get");
    status["status"] = json!({"phase": "running"});
    let e = operator
        .replace_status(kind("allocation"), Some("default"), "w-0", &status)
        .await
        .expect_err("status is the agent's");
    assert_eq!(code(e), 403);
    operator
        .delete(kind("allocation"), Some("default"), "w-0")
        .await
        .expect("an operator deletes an allocation to have it placed again");
}

/// YAML whose aliases expand to `9^levels` strings.
fn alias_bomb(levels: usize) -> String {
    let mut yaml = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let mut prev = 'a';
    for level in 1..levels {
        let name = (b'a' + level as u8) as char;
        let refs = vec![format!("*{prev}"); 9].join(",");
        yaml.push_str(&format!("{name}: &{name} [{refs}]\n"));
        prev = name;
    }
    yaml
}

#[tokio::test]
async fn expensive_bodies_from_those_who_may_not_write_are_refused_before_parsing() {
    let r = server().await;
    let viewer = r.new_token("viewer", None).await;
    let path = "/apis/meridian.dev/v1/namespaces/default/workloads";
    // An alias bomb from a viewer: 403 without parsing it.
    let started = Instant::now();
    let (status, ct, body) = raw(
        &r,
        reqwest::Method::POST,
        path,
        &viewer,
        "application/yaml",
        alias_bomb(9).into_bytes(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(ct.starts_with("application/json"), "{ct}");
    eprintln!("alias bomb from a viewer: {:?}", started.elapsed());

    // A large object with hundreds of unknown fields, Warn: a viewer gets 403 ...
    let mut spec = serde_json::Map::new();
    for i in 0..300 {
        spec.insert(format!("unknown{i}"), json!("x".repeat(1000)));
    }
    let mut workload = json!({
        "apiVersion": "meridian.dev/v1", "kind": "Workload",
        "metadata": {"name": "big", "namespace": "default"},
        "spec": {"type": "service", "replicas": 1,
                 "task": {"driver": "exec", "command": ["/bin/true"],
                          "resources": {"cpu": "100m", "memory": "32Mi"}}},
    });
    for (k, v) in spec {
        workload["spec"][k] = v;
    }
    let body = serde_json::to_vec(&workload).expect("json");
    let (status, _, answer) = raw(
        &r,
        reqwest::Method::POST,
        &format!("{path}?fieldValidation=Warn"),
        &viewer,
        "application/json",
        body.clone(),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    // ... and an operator gets it stored, with a bounded number of warnings.
    let resp = http()
        .post(format!("{}{path}?fieldValidation=Warn", r.url))
        .bearer_auth(&r.token)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 201);
    let warnings = resp.headers().get_all("warning").iter().count();
    assert!((1..=51).contains(&warnings), "{warnings} warnings");
}

#[tokio::test]
async fn malformed_parameters_and_paths_answer_a_status() {
    let r = server().await;
    let ns = "/apis/meridian.dev/v1/namespaces/default/workloads";
    for query in [
        "watch=true&resourceVersion=-1",
        "watch=true&resourceVersion=-9223372036854775808",
        "watch=true&resourceVersion=abc",
        "limit=-1",
        "limit=abc",
    ] {
        let (status, ct, body) = raw(
            &r,
            reqwest::Method::GET,
            &format!("{ns}?{query}"),
            &r.token,
            "application/json",
            Vec::new(),
        )
        .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(ct.starts_with("application/json"), "{query}: {ct}");
        assert_eq!(body["kind"], "Status", "{query}: {body}");
    }
    // A revision from the future: Kubernetes' "too large resource version".
    let (status, _, body) = raw(
        &r,
        reqwest::Method::GET,
        &format!("{ns}?watch=true&resourceVersion=9223372036854775807"),
        &r.token,
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(status, 504, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Too large resource version"),
        "{body}"
    );
    // A forged continue token naming a future revision.
    let forged = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"k":"/registry/workloads/default/","rv":999999999}"#)
    };
    let (status, _, body) = raw(
        &r,
        reqwest::Method::GET,
        &format!("{ns}?limit=1&continue={forged}"),
        &r.token,
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // A path that is not UTF-8.
    let (status, ct, body) = raw(
        &r,
        reqwest::Method::GET,
        "/apis/meridian.dev/v1/namespaces/%FF/workloads/x",
        &r.token,
        "application/json",
        Vec::new(),
    )
    .await;
    assert!((400..500).contains(&status), "{status}: {body}");
    assert!(ct.starts_with("application/json"), "{ct}");
    assert_eq!(body["kind"], "Status", "{body}");

    // Server-side apply of a manifest that does not say what it is.
    let (status, _, body) = raw(
        &r,
        reqwest::Method::PATCH,
        &format!("{ns}/applied"),
        &r.token,
        "application/apply-patch+yaml",
        b"metadata: {name: applied}\nspec: {type: service}\n".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("apiVersion must be set"),
        "{body}"
    );

    // The bearer scheme is case-insensitive, as in Kubernetes.
    let resp = http()
        .get(format!("{}/apis/meridian.dev/v1/sites", r.url))
        .header("Authorization", format!("bearer {}", r.token))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);

    // NUL characters in a command or an environment value are refused, naming the field.
    let workload = json!({
        "apiVersion": "meridian.dev/v1", "kind": "Workload",
        "metadata": {"name": "nul", "namespace": "default"},
        "spec": {"type": "service", "replicas": 1,
                 "task": {"driver": "exec", "command": ["/bin/sh\u{0}-c"],
                          "env": {"A": "x\u{0}y"},
                          "resources": {"cpu": "100m", "memory": "32Mi"}}},
    });
    let (status, _, body) = raw(
        &r,
        reqwest::Method::POST,
        ns,
        &r.token,
        "application/json",
        serde_json::to_vec(&workload).expect("json"),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<&str> = body["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert!(fields.contains(&"spec.task.command[0]"), "{body}");
    assert!(fields.contains(&"spec.task.env.A"), "{body}");
}

/// One request of the matrix: what it does to which object.
#[derive(Clone, Copy, Debug)]
enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    Status,
}

const VERBS: [Verb; 8] = [
    Verb::Get,
    Verb::List,
    Verb::Watch,
    Verb::Create,
    Verb::Update,
    Verb::Patch,
    Verb::Delete,
    Verb::Status,
];

/// The outcome of a request as the matrix writes it: `A` allowed (whatever the answer
/// after authorization: 2xx, 409, 422), `F` forbidden (403), `H` hidden (404: outside the
/// caller's scope), `U` unauthenticated (401).
fn outcome(status: u16) -> char {
    match status {
        401 => 'U',
        403 => 'F',
        404 => 'H',
        _ => 'A',
    }
}

/// A target object: its kind, project and name.
struct Target {
    kind: &'static str,
    ns: Option<&'static str>,
    name: &'static str,
}

impl Target {
    fn collection(&self) -> String {
        let info = kind(self.kind);
        match self.ns {
            Some(ns) => format!("/apis/meridian.dev/v1/namespaces/{ns}/{}", info.plural),
            None => format!("/apis/meridian.dev/v1/{}", info.plural),
        }
    }
}

/// Every principal × kind × verb (and the `/status` subresource) against a real server,
/// each write a dry run so the estate stays as it is. The expected matrix is
/// `docs/security.md`'s, written out here independently of `auth.rs`.
#[tokio::test]
async fn the_authorization_matrix_holds_for_every_kind_verb_and_subresource() {
    let r = server().await;
    load_examples(&r.client).await;
    for project in ["finance", "research"] {
        r.client
            .apply(
                kind("project"),
                None,
                &json!({"apiVersion": "meridian.dev/v1", "kind": "Project",
                        "metadata": {"name": project}, "spec": {}}),
                false,
            )
            .await
            .expect("project");
    }
    for (ns, name, on) in [
        ("finance", "w-0", "fra-rhel-01"),
        ("finance", "e-0", "edge-01"),
        ("research", "r-0", "fra-rhel-01"),
    ] {
        seed_allocation(
            &r.state,
            &json!({
                "apiVersion": "meridian.dev/v1", "kind": "Allocation",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"workload": "w", "node": on,
                         "resources": {"cpu": "100m", "memory": "32Mi"}},
            }),
        )
        .await;
    }
    for ns in ["finance", "research"] {
        r.client
            .apply(
                kind("workload"),
                Some(ns),
                &json!({"apiVersion": "meridian.dev/v1", "kind": "Workload",
                        "metadata": {"name": "w", "namespace": ns},
                        "spec": {"type": "service", "replicas": 1,
                                 "task": {"driver": "exec", "command": ["/bin/true"],
                                          "resources": {"cpu": "100m", "memory": "32Mi"}}}}),
                false,
            )
            .await
            .expect("workload");
    }
    r.client
        .apply(
            kind("policy"),
            None,
            &json!({"apiVersion": "meridian.dev/v1", "kind": "Policy",
                    "metadata": {"name": "p"},
                    "spec": {"enforcement": "audit", "targets": ["Workload"],
                             "rego": "package p\nviolation contains {\"msg\": \"x\"} if false\n"}}),
            false,
        )
        .await
        .expect("policy");
    let t = join_token(&r, "onprem-frankfurt").await;
    let (status, body) = join(&r, &t, "edge-01", None).await;
    assert_eq!(status, 201, "{body}");
    let node_token = body["token"].as_str().expect("credential").to_owned();
    Client::new(&r.url, &node_token, None)
        .expect("client")
        .create(
            kind("node"),
            None,
            &node_object("edge-01", "onprem-frankfurt"),
            false,
        )
        .await
        .expect("registers");

    let targets = [
        Target {
            kind: "Site",
            ns: None,
            name: "onprem-frankfurt",
        },
        Target {
            kind: "Node",
            ns: None,
            name: "fra-rhel-01",
        },
        Target {
            kind: "Node",
            ns: None,
            name: "edge-01",
        },
        Target {
            kind: "Policy",
            ns: None,
            name: "p",
        },
        Target {
            kind: "Project",
            ns: None,
            name: "finance",
        },
        Target {
            kind: "Workload",
            ns: Some("finance"),
            name: "w",
        },
        Target {
            kind: "Allocation",
            ns: Some("finance"),
            name: "w-0",
        },
        Target {
            kind: "Allocation",
            ns: Some("finance"),
            name: "e-0",
        },
        Target {
            kind: "Workload",
            ns: Some("research"),
            name: "w",
        },
        Target {
            kind: "Allocation",
            ns: Some("research"),
            name: "r-0",
        },
    ];
    // Rows follow `targets`; columns are get list watch create update patch delete status.
    let matrix: [(&str, String, [&str; 10]); 7] = [
        (
            "admin",
            r.token.clone(),
            [
                "AAAAAAAA", "AAAAAAAA", "AAAAAAAA", "AAAAAAAA", "AAAAAAAA", "AAAAAAAA", "AAAFFFAA",
                "AAAFFFAA", "AAAAAAAA", "AAAFFFAA",
            ],
        ),
        (
            "admin of finance",
            r.new_token("admin", Some("finance")).await,
            [
                "AAAFFFFF", "AAAFFFFF", "AAAFFFFF", "AAAFFFFF", "AAAFFFFF", "AAAAAAAA", "AAAFFFAF",
                "AAAFFFAF", "HHHHHHHH", "HHHHHHHH",
            ],
        ),
        (
            "operator",
            r.new_token("operator", None).await,
            [
                "AAAFFFFF", "AAAFFFFF", "AAAFFFFF", "AAAFFFFF", "AAAFFFFF", "AAAAAAAA", "AAAFFFAF",
                "AAAFFFAF", "AAAAAAAA", "AAAFFFAF",
            ],
        ),
        (
            "operator of finance",
            r.new_token("operator", Some("finance")).await,
            [
                "AAAFFFFF", "AAAFFFFF", "AAAFFFFF", "AAAFFFFF", "AAAFFFFF", "AAAAAAAA", "AAAFFFAF",
                "AAAFFFAF", "HHHHHHHH", "HHHHHHHH",
            ],
        ),
        (
            "viewer",
            r.new_token("viewer", None).await,
            [
                "AAAFFFFF", "AAAFFFFF", "AAAFFFFF", "AAAFFFFF", "AAAFFFFF", "AAAFFFFF", "AAAFFFFF",
                "AAAFFFFF", "AAAFFFFF", "AAAFFFFF",
            ],
        ),
        (
            "node edge-01",
            node_token,
            [
                "FFFFFFFF", "FFFAFFFF", "AFFAAAFA", "FFFFFFFF", "FFFFFFFF", "FFFFFFFF", "HAAFFFFH",
                "AAAFFFFA", "FFFFFFFF", "HAAFFFFH",
            ],
        ),
        (
            "anonymous",
            String::new(),
            [
                "UUUUUUUU", "UUUUUUUU", "UUUUUUUU", "UUUUUUUU", "UUUUUUUU", "UUUUUUUU", "UUUUUUUU",
                "UUUUUUUU", "UUUUUUUU", "UUUUUUUU",
            ],
        ),
    ];
    let mut wrong = Vec::new();
    for (who, token, rows) in &matrix {
        for (target, expected) in targets.iter().zip(rows) {
            let stored = r
                .client
                .get(kind(target.kind), target.ns, target.name)
                .await
                .expect("target exists");
            let mut got = String::new();
            for verb in VERBS {
                got.push(outcome(request(&r, token, target, verb, &stored).await));
            }
            if got != *expected {
                wrong.push(format!(
                    "{who} on {} {}/{}: expected {expected}, got {got}",
                    target.kind,
                    target.ns.unwrap_or("-"),
                    target.name
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "columns: get list watch create update patch delete status\n{}",
        wrong.join("\n")
    );
}

/// One request of the matrix (writes as dry runs); its HTTP status.
async fn request(r: &TestServer, token: &str, target: &Target, verb: Verb, stored: &Value) -> u16 {
    let item = format!("{}/{}", target.collection(), target.name);
    let mut object = stored.clone();
    let (method, path, body) = match verb {
        Verb::Get => (reqwest::Method::GET, item, None),
        Verb::List => (reqwest::Method::GET, target.collection(), None),
        Verb::Watch => (
            reqwest::Method::GET,
            format!("{}?watch=true&timeoutSeconds=1", target.collection()),
            None,
        ),
        Verb::Create => {
            object["metadata"] = json!({"name": "matrix-new", "namespace": target.ns});
            if target.kind == "Node" {
                object["metadata"]["name"] = json!("edge-01");
            }
            (
                reqwest::Method::POST,
                format!("{}?dryRun=All", target.collection()),
                Some(object),
            )
        }
        Verb::Update => (
            reqwest::Method::PUT,
            format!("{item}?dryRun=All"),
            Some(object),
        ),
        Verb::Patch => (
            reqwest::Method::PATCH,
            format!("{item}?dryRun=All"),
            Some(json!({})),
        ),
        Verb::Delete => (reqwest::Method::DELETE, format!("{item}?dryRun=All"), None),
        Verb::Status => (
            reqwest::Method::PUT,
            format!("{item}/status?dryRun=All"),
            Some(object),
        ),
    };
    let mut req = http().request(method, format!("{}{path}", r.url));
    if !token.is_empty() {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        let content_type = if matches!(verb, Verb::Patch) {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        req = req
            .header("Content-Type", content_type)
            .body(serde_json::to_vec(&body).expect("json"));
    }
    // Headers are enough: a watch's status is known before its events.
    req.send().await.expect("request").status().as_u16()
}
