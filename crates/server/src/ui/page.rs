//! The page shell (header, navigation, sign-out), the error page, and small pieces of
//! markup the views share. Every value goes into HTML through `maud`, which escapes it.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::backend::UiError;
use super::session::Session;

/// Which navigation entry is the current page.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    None,
    Estate,
    Workloads,
    Nodes,
    Residency,
    Queues,
    Migrations,
    Compliance,
    Audit,
}

const ENTRIES: &[(Nav, &str, &str)] = &[
    (Nav::Estate, "/ui", "Estate"),
    (Nav::Workloads, "/ui/workloads", "Workloads"),
    (Nav::Nodes, "/ui/nodes", "Nodes"),
    (Nav::Residency, "/ui/residency", "Personal data"),
    (Nav::Queues, "/ui/queues", "Queues"),
    (Nav::Migrations, "/ui/migrations", "Migrations"),
    (Nav::Compliance, "/ui/compliance", "Compliance"),
    (Nav::Audit, "/ui/audit", "Audit log"),
];

/// A whole page.
pub fn document(title: &str, session: Option<&Session>, nav: Nav, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Meridian" }
                link rel="stylesheet" href=(super::CSS_PATH);
                script src=(super::JS_PATH) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui" { "Meridian" }
                    @if let Some(s) = session {
                        nav aria-label="Main" {
                            ul {
                                @for (entry, href, label) in ENTRIES {
                                    li {
                                        @if *entry == nav {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        div.who {
                            span { "Signed in as " strong { (s.who.id) } " (" (s.who.role.as_str())
                                @if let Some(p) = &s.who.project { ", project " (p) } ")" }
                            form method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main tabindex="-1" { (body) }
            }
        }
    };
    Html(markup.into_string())
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let body = html! {
            h1 { "Error " (self.code.as_u16()) }
            p.error role="alert" { (self.reason) ": " (self.message) }
            @if self.code == StatusCode::UNAUTHORIZED {
                p { a href="/ui/login" { "Sign in" } }
            } @else {
                p { a href="/ui" { "Back to the estate" } }
            }
        };
        (self.code, document("Error", None, Nav::None, body)).into_response()
    }
}

/// An error shown inside a page (a part that could not be read), with the API's words.
pub fn inline_error(e: &UiError) -> Markup {
    html! { p.error role="alert" { (e.reason) ": " (e.message) } }
}

/// A phase or state as a badge whose class gives its colour (its text says it too).
pub fn badge(text: &str) -> Markup {
    let class = match text {
        "Ready" | "Running" | "running" | "Available" | "Complete" | "succeeded" | "pass"
        | "passing" | "Verified" => "ok",
        "NotReady" | "Waiting" | "Progressing" | "pending" | "Pending" | "starting" | "backoff"
        | "warn" => "warn",
        "Lost" | "Failed" | "failed" | "lost" | "fail" | "failing" | "Broken" => "bad",
        _ => "neutral",
    };
    html! { span class={ "badge " (class) } { (text) } }
}

/// An action: a one-button form that POSTs to `action` with the session's CSRF token
/// (asking `confirm` first when the script runs).
pub fn post_button(action: &str, csrf: &str, label: &str, confirm: Option<&str>) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" data-confirm=[confirm] { (label) }
        }
    }
}

/// `3m`, `2h`, `5d` since an RFC 3339 time.
pub fn age(rfc3339: Option<&str>) -> String {
    let Some(t) = rfc3339.and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return "—".to_owned();
    };
    let seconds = jiff::Timestamp::now().as_second() - t.as_second();
    api::table::age(seconds.max(0))
}

/// A definition list of label/value pairs.
pub fn facts(rows: &[(&str, String)]) -> Markup {
    html! {
        dl.facts {
            @for (k, v) in rows {
                dt { (k) }
                dd { (v) }
            }
        }
    }
}
