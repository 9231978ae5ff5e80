//! The web console (`/ui/`) against a real server on loopback: sign-in and its cookie,
//! CSRF and origin checks, a viewer refused, a project-scoped token kept to its project,
//! pages of the list, and hostile names escaped. The browser tests are `tests/ui/`.

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use serde_json::json;

use server::ServerConfig;
use testkit::{TestServer, load_examples};

async fn server() -> TestServer {
    TestServer::start_with(ServerConfig {
        scheduler: None,
        ..ServerConfig::default()
    })
    .await
}

/// A client that does not follow redirects, so tests see them.
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

fn cookie(token: &str) -> String {
    format!("meridian_console={token}")
}

/// A console page as a signed-in browser asks for it: status and body.
async fn page(r: &TestServer, token: &str, path: &str) -> (StatusCode, String) {
    let resp = http()
        .get(format!("{}{path}", r.url))
        .header(ACCEPT, "text/html")
        .header(COOKIE, cookie(token))
        .send()
        .await
        .expect("a response");
    let status = resp.status();
    (status, resp.text().await.expect("a body"))
}

/// The session's CSRF token, from the sign-out form every page carries.
async fn csrf(r: &TestServer, token: &str) -> String {
    let (_, body) = page(r, token, "/ui/nodes").await;
    let at = body.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    body[at..at + 64].to_owned()
}

async fn post(
    r: &TestServer,
    token: &str,
    path: &str,
    form: &[(&str, &str)],
    origin: Option<&str>,
) -> (StatusCode, String) {
    let mut req = http()
        .post(format!("{}{path}", r.url))
        .header(COOKIE, cookie(token))
        .form(form);
    if let Some(o) = origin {
        req = req.header(ORIGIN, o);
    }
    let resp = req.send().await.expect("a response");
    let status = resp.status();
    (status, resp.text().await.expect("a body"))
}

async fn unschedulable(r: &TestServer, node: &str) -> bool {
    r.client
        .get(api::kinds::NODE, None, node)
        .await
        .expect("the node")["spec"]["unschedulable"]
        .as_bool()
        .unwrap_or(false)
}

#[tokio::test]
async fn sign_in_sets_an_http_only_strict_cookie_and_sign_out_clears_it() {
    let r = server().await;
    // Anonymous: browsers go to the sign-in page, keeping where they were going.
    let resp = http()
        .get(format!("{}/ui/workloads?project=finance", r.url))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        resp.headers()[LOCATION],
        "/ui/login?next=%2Fui%2Fworkloads%3Fproject%3Dfinance"
    );
    // A wrong token: refused, no cookie.
    let resp = http()
        .post(format!("{}/ui/login", r.url))
        .form(&[("token", "mrd_wrong"), ("next", "/ui/nodes")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().get(SET_COOKIE).is_none());
    assert!(resp.text().await.unwrap().contains("not valid"));
    // The right one: a session cookie scripts cannot read and other sites never send,
    // and back to where the browser was going (only ever a console path).
    let resp = http()
        .post(format!("{}/ui/login", r.url))
        .form(&[("token", r.token.as_str()), ("next", "/ui/nodes")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/ui/nodes");
    let set = resp.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        set.starts_with(&format!("meridian_console={};", r.token)),
        "{set}"
    );
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(flag), "{flag} missing: {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP on loopback: {set}");
    let resp = http()
        .post(format!("{}/ui/login", r.url))
        .form(&[
            ("token", r.token.as_str()),
            ("next", "https://evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()[LOCATION], "/ui", "no open redirect");
    // Signed in, pages render; signing out clears the cookie.
    let (status, body) = page(&r, &r.token, "/ui").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Sign out"));
    let csrf = csrf(&r, &r.token).await;
    let resp = http()
        .post(format!("{}/ui/logout", r.url))
        .header(COOKIE, cookie(&r.token))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cleared = resp.headers()[SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.starts_with("meridian_console=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}

#[tokio::test]
async fn root_redirects_browsers_and_answers_api_clients_with_a_status() {
    let r = server().await;
    let resp = http()
        .get(format!("{}/", r.url))
        .header(ACCEPT, "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/ui/");
    let resp = http().get(format!("{}/", r.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let status: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(status["kind"], "Status");
}

#[tokio::test]
async fn actions_need_the_csrf_token_and_the_same_origin() {
    let r = server().await;
    load_examples(&r.client).await;
    let node = "fra-rhel-01";
    let path = format!("/ui/nodes/{node}/cordon");
    let (status, body) = post(&r, &r.token, &path, &[], None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("no CSRF token"), "{body}");
    let (status, _) = post(&r, &r.token, &path, &[("csrf", &"0".repeat(64))], None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!unschedulable(&r, node).await);
    let csrf = csrf(&r, &r.token).await;
    let (status, body) = post(
        &r,
        &r.token,
        &path,
        &[("csrf", &csrf)],
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("evil.example"), "{body}");
    assert!(!unschedulable(&r, node).await);
    // Sign-in too refuses another origin (login forgery).
    let (status, _) = post(
        &r,
        "",
        "/ui/login",
        &[("token", &r.token)],
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The session's own token, from this origin: done.
    let (status, _) = post(&r, &r.token, &path, &[("csrf", &csrf)], Some(&r.url)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(unschedulable(&r, node).await);
    let (status, _) = post(
        &r,
        &r.token,
        &format!("/ui/nodes/{node}/uncordon"),
        &[("csrf", &csrf)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(!unschedulable(&r, node).await);
}

#[tokio::test]
async fn a_viewer_sees_no_action_and_is_refused_with_the_apis_message() {
    let r = server().await;
    load_examples(&r.client).await;
    let viewer = r.new_token("viewer", None).await;
    let (status, body) = page(&r, &viewer, "/ui/nodes/fra-rhel-01").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Security posture"));
    assert!(
        !body.contains("/drain") && !body.contains("/cordon"),
        "no action offered"
    );
    let (_, admin_body) = page(&r, &r.token, "/ui/nodes/fra-rhel-01").await;
    assert!(admin_body.contains("/ui/nodes/fra-rhel-01/drain"));
    let csrf = csrf(&r, &viewer).await;
    for action in ["cordon", "drain"] {
        let (status, body) = post(
            &r,
            &viewer,
            &format!("/ui/nodes/fra-rhel-01/{action}"),
            &[("csrf", &csrf)],
            None,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{action}: {body}");
        assert!(body.contains("role viewer"), "the API's words: {body}");
    }
    assert!(!unschedulable(&r, "fra-rhel-01").await);
}

#[tokio::test]
async fn a_project_token_sees_only_its_project() {
    let r = server().await;
    load_examples(&r.client).await;
    let scoped = r.new_token("operator", Some("finance")).await;
    let (status, body) = page(&r, &scoped, "/ui/workloads").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("payroll-api"), "its own project's workloads");
    assert!(!body.contains("genome-align"), "not research's");
    let (status, body) = page(
        &r,
        &scoped,
        "/ui/namespaces/research/workloads/genome-align",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = page(&r, &scoped, "/ui/audit").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("scoped to a project"), "{body}");
}

#[tokio::test]
async fn the_list_pages_with_the_apis_continue_tokens() {
    let r = server().await;
    for i in 0..7 {
        r.client
            .create(
                api::kinds::WORKLOAD,
                Some("default"),
                &json!({
                    "apiVersion": "meridian.dev/v1", "kind": "Workload",
                    "metadata": {"name": format!("w{i}"), "labels": {"page": "yes"}},
                    "spec": {"type": "service", "replicas": 1, "task": {"driver": "exec",
                        "command": ["/bin/true"], "resources": {"cpu": "100m", "memory": "16Mi"}}},
                }),
                false,
            )
            .await
            .expect("created");
    }
    let mut seen = Vec::new();
    let mut path = "/ui/workloads?project=default&label=page%3Dyes&limit=3".to_owned();
    let mut pages = 0;
    loop {
        let (status, body) = page(&r, &r.token, &path).await;
        assert_eq!(status, StatusCode::OK);
        pages += 1;
        let rows = body.matches("<tr data-key=").count();
        for i in 0..7 {
            if body.contains(&format!("data-key=\"default/w{i}\"")) {
                seen.push(i);
            }
        }
        match body.find("rel=\"next\"") {
            Some(at) => {
                assert_eq!(rows, 3);
                let start = body[..at].rfind("href=\"").expect("a next link") + 6;
                let next = &body[start..];
                let href = &next[..next.find('"').unwrap()];
                assert!(href.contains("continue="), "{href}");
                assert!(href.contains("limit=3") && href.contains("label=page%3Dyes"));
                path = href.replace("&amp;", "&");
            }
            None => {
                assert_eq!(rows, 1);
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..7).collect::<Vec<_>>(), "each workload once");
}

#[tokio::test]
async fn hostile_text_is_escaped() {
    let r = server().await;
    let hostile = "<script>alert(1)</script>\"'&";
    r.client
        .create(
            api::kinds::SITE,
            None,
            &json!({
                "apiVersion": "meridian.dev/v1", "kind": "Site",
                "metadata": {"name": "hostile"},
                "spec": {"provider": "onprem", "jurisdiction": "DE", "region": hostile,
                    "operator": {"name": hostile, "jurisdiction": "DE"}},
            }),
            false,
        )
        .await
        .expect("created");
    let (status, body) = page(&r, &r.token, "/ui").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("<script>alert"), "raw markup from data");
    assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;'&amp;"));
    // Echoed query text, and the API's error message about it, are escaped too.
    let (status, body) = page(&r, &r.token, "/ui/workloads?label=%3Cscript%3E%3D%3D").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("<script>"), "{body}");
    assert!(body.contains("&lt;script&gt;"));
    assert!(body.contains("labelSelector"), "the API's message: {body}");
    // Every console page forbids inline script.
    let resp = http()
        .get(format!("{}/ui/login", r.url))
        .send()
        .await
        .unwrap();
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
}

#[tokio::test]
async fn queues_list_and_detail_show_quota_and_usage() {
    let r = server().await;
    load_examples(&r.client).await;
    server::scheduler::pass(&r.state, &server::scheduler::SchedulerOptions::default())
        .await
        .expect("pass");
    let (status, body) = page(&r, &r.token, "/ui/queues").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for text in [
        "gpu-training",
        "batch",
        "shared",
        "BestEffortFIFO",
        "/ui/queues/gpu-training",
        "Cohorts",
        "cpu 16",
    ] {
        assert!(body.contains(text), "{text} in {body}");
    }
    assert!(body.contains(r#"href="/ui/queues" aria-current"#) || body.contains("Queues"));
    let (status, body) = page(&r, &r.token, "/ui/queues/gpu-training").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for text in [
        "H100 GPUs",
        "Nominal",
        "Borrowing limit",
        "Active",
        "admitted",
    ] {
        assert!(body.contains(text), "{text} in {body}");
    }
    let (status, _) = page(&r, &r.token, "/ui/queues/no-such-queue").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A workload's spec field, read through the API.
async fn workload_field(r: &TestServer, ns: &str, name: &str, pointer: &str) -> serde_json::Value {
    let w = r
        .client
        .get(api::kinds::WORKLOAD, Some(ns), name)
        .await
        .expect("the workload");
    w.pointer(pointer).cloned().unwrap_or_default()
}

#[tokio::test]
async fn workload_actions_scale_restart_pause_and_delete_through_the_api() {
    let r = server().await;
    load_examples(&r.client).await;
    let detail = "/ui/namespaces/finance/workloads/payroll-api";
    let (_, body) = page(&r, &r.token, detail).await;
    assert!(body.contains("Workload actions"), "{body}");
    assert!(body.contains(&format!("{detail}/scale")));
    let viewer = r.new_token("viewer", None).await;
    let (_, body) = page(&r, &viewer, detail).await;
    assert!(
        !body.contains("Workload actions") && !body.contains("/scale"),
        "a viewer is offered no action"
    );
    let csrf_admin = csrf(&r, &r.token).await;
    let replicas = workload_field(&r, "finance", "payroll-api", "/spec/replicas")
        .await
        .as_u64()
        .expect("replicas")
        .to_string();

    // Refused: no CSRF token, a viewer (the API's words), a stale page, a bad count.
    let (status, _) = post(
        &r,
        &r.token,
        &format!("{detail}/scale"),
        &[("replicas", "5")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let csrf_viewer = csrf(&r, &viewer).await;
    let (status, body) = post(
        &r,
        &viewer,
        &format!("{detail}/scale"),
        &[
            ("csrf", &csrf_viewer),
            ("replicas", "5"),
            ("current", &replicas),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("role viewer"), "{body}");
    let (status, body) = post(
        &r,
        &r.token,
        &format!("{detail}/scale"),
        &[("csrf", &csrf_admin), ("replicas", "5"), ("current", "999")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("reload the page"), "{body}");
    let (status, body) = post(
        &r,
        &r.token,
        &format!("{detail}/scale"),
        &[("csrf", &csrf_admin), ("replicas", "-2")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("replicas:"), "{body}");
    assert_eq!(
        workload_field(&r, "finance", "payroll-api", "/spec/replicas").await,
        json!(replicas.parse::<u64>().unwrap()),
        "nothing refused changed anything"
    );

    // Done: scale, restart, pause.
    let (status, _) = post(
        &r,
        &r.token,
        &format!("{detail}/scale"),
        &[
            ("csrf", &csrf_admin),
            ("replicas", "5"),
            ("current", &replicas),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        workload_field(&r, "finance", "payroll-api", "/spec/replicas").await,
        json!(5)
    );
    let (status, _) = post(
        &r,
        &r.token,
        &format!("{detail}/restart"),
        &[("csrf", &csrf_admin)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        workload_field(&r, "finance", "payroll-api", "/spec/restartedAt")
            .await
            .is_string()
    );
    let (status, _) = post(
        &r,
        &r.token,
        &format!("{detail}/pause"),
        &[("csrf", &csrf_admin)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        workload_field(&r, "finance", "payroll-api", "/spec/paused").await,
        json!(true)
    );
    let (_, body) = page(&r, &r.token, detail).await;
    assert!(
        body.contains("Resume rollout"),
        "a paused rollout offers resume"
    );

    // A job is not rolled out: restart is refused and says why.
    let job = "/ui/namespaces/finance/workloads/month-end-close";
    let (status, body) = post(
        &r,
        &r.token,
        &format!("{job}/restart"),
        &[("csrf", &csrf_admin)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("is a job"), "{body}");

    // Delete: back to the list, the workload gone.
    let (status, _) = post(
        &r,
        &r.token,
        &format!("{detail}/delete"),
        &[("csrf", &csrf_admin)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let e = r
        .client
        .get(api::kinds::WORKLOAD, Some("finance"), "payroll-api")
        .await
        .expect_err("deleted");
    assert!(e.is_not_found(), "{e}");
}

#[tokio::test]
async fn migration_plans_list_and_detail_show_waves_and_their_vms() {
    let r = server().await;
    load_examples(&r.client).await;
    let (_, body) = page(&r, &r.token, "/ui/migrations").await;
    assert!(body.contains("No migration plans"), "{body}");
    for (uuid, name) in [("4210-a", "payroll-db"), ("4210-b", "payroll-web")] {
        let vm = json!({
            "apiVersion": "meridian.dev/v1", "kind": "VirtualMachine",
            "metadata": {"name": api::migrate::vm_object_name(uuid), "namespace": "finance"},
            "spec": {"uuid": uuid, "name": name, "cpus": 4, "memoryMib": 8192,
                     "source": {"kind": "rvtools", "datacenter": "DC-Frankfurt", "folder": "/Finance"}},
        });
        r.client
            .create(api::kinds::VIRTUAL_MACHINE, Some("finance"), &vm, false)
            .await
            .expect("vm");
    }
    let plan = json!({
        "apiVersion": "meridian.dev/v1", "kind": "MigrationPlan",
        "metadata": {"name": "q1-finance", "namespace": "finance"},
        "spec": {"targets": ["onprem-frankfurt"], "bandwidthMbps": 500,
                 "waves": {"maxVms": 1},
                 "mapping": [{"match": {"folder": "/Finance"}, "classification": "personal", "residency": ["EU"]}]},
    });
    let mut plan = r
        .client
        .create(api::kinds::MIGRATION_PLAN, Some("finance"), &plan, false)
        .await
        .expect("plan");
    plan["status"] = json!({"waves": [
        {"number": 1, "vms": [api::migrate::vm_object_name("4210-a")], "phase": "Planned",
         "sites": {"vm-4210-a": "onprem-frankfurt"}},
        {"number": 2, "vms": [api::migrate::vm_object_name("4210-b"), "vm-gone"], "phase": "Planned"},
    ]});
    r.client
        .replace_status(
            api::kinds::MIGRATION_PLAN,
            Some("finance"),
            "q1-finance",
            &plan,
        )
        .await
        .expect("status");

    let (status, body) = page(&r, &r.token, "/ui/migrations").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("/ui/namespaces/finance/migrationplans/q1-finance"),
        "{body}"
    );
    assert!(body.contains("2 Planned"), "{body}");
    let detail = "/ui/namespaces/finance/migrationplans/q1-finance";
    let (status, body) = page(&r, &r.token, detail).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("500 Mbit/s") && body.contains("folder /Finance"),
        "{body}"
    );
    assert!(
        body.contains("Wave 1: virtual machines") && body.contains("payroll-db"),
        "{body}"
    );
    assert!(
        body.contains("<td>onprem-frankfurt</td>"),
        "the planned site: {body}"
    );
    assert!(
        !body.contains("payroll-web"),
        "only the shown wave's VMs: {body}"
    );
    let (_, body) = page(&r, &r.token, &format!("{detail}?wave=2")).await;
    assert!(body.contains("payroll-web"), "{body}");
    assert!(
        body.contains("vm-gone") && body.contains("not found"),
        "{body}"
    );
    // Another project's token sees neither the plan nor its VMs.
    let other = r.new_token("viewer", Some("research")).await;
    let (_, body) = page(&r, &other, "/ui/migrations").await;
    assert!(!body.contains("q1-finance"), "{body}");
    let (status, _) = page(&r, &other, detail).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn personal_data_view_places_instances_by_country_and_checks_residency() {
    let r = server().await;
    load_examples(&r.client).await;
    let alloc = |name: &str, node: &str| {
        json!({
            "apiVersion": "meridian.dev/v1", "kind": "Allocation",
            "metadata": {"name": name, "namespace": "finance"},
            "spec": {"workload": "payroll-api", "replica": 0, "node": node,
                     "resources": {"cpu": "1", "memory": "1Gi"}},
        })
    };
    // payroll-api handles personal data with residency [EU]: one instance in Frankfurt.
    testkit::seed_allocation(&r.state, &alloc("payroll-api-0", "fra-rhel-01")).await;
    let (status, body) = page(&r, &r.token, "/ui/residency").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("Europe") && body.contains("Germany"),
        "{body}"
    );
    assert!(body.contains("finance/payroll-api"), "{body}");
    assert!(body.contains("0</span> outside their residency"), "{body}");
    assert!(!body.contains("badge bad"), "{body}");
    // One written past the scheduler into a US site: the view does not trust placement,
    // it checks each instance against its workload's residency.
    testkit::seed_allocation(&r.state, &alloc("payroll-api-1", "aws-use1-lnx-01")).await;
    let (_, body) = page(&r, &r.token, "/ui/residency").await;
    assert!(
        body.contains("Americas") && body.contains("United States"),
        "{body}"
    );
    assert!(body.contains("1</span> outside their residency"), "{body}");
    assert!(body.contains("1 outside"), "{body}");
    // The report behind the page, as the API gives it, to each principal's scope.
    let report: api::residency::ResidencyReport = serde_json::from_value(
        r.client
            .request_json(client::Method::GET, "/meridian/v1/residency", None)
            .await
            .expect("report"),
    )
    .expect("a ResidencyReport");
    assert_eq!((report.instances, report.outside), (2, 1), "{report:?}");
    let us = report
        .countries
        .iter()
        .find(|c| c.country == "US")
        .expect("US");
    assert_eq!(us.continent, "Americas");
    assert_eq!(us.workloads, ["finance/payroll-api"]);
    let research = r.client_as(&r.new_token("viewer", Some("research")).await);
    let theirs: api::residency::ResidencyReport = serde_json::from_value(
        research
            .request_json(client::Method::GET, "/meridian/v1/residency", None)
            .await
            .expect("report"),
    )
    .expect("a ResidencyReport");
    assert_eq!(
        theirs.instances, 0,
        "another project's instances are not counted"
    );
    let e = research
        .request_json(
            client::Method::GET,
            "/meridian/v1/residency?project=finance",
            None,
        )
        .await
        .expect_err("not theirs");
    assert_eq!(e.code(), Some(404), "{e}");
    // The estate overview links to it.
    let (_, body) = page(&r, &r.token, "/ui").await;
    assert!(body.contains("href=\"/ui/residency\""), "{body}");
    assert!(
        body.contains("data-refresh=\"/ui/live/nodes?rv="),
        "live regions: {body}"
    );
}
