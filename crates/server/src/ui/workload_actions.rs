//! A workload's actions, after `meridian rollout` and `scale`: restart (a new rollout of
//! the same spec), pause and resume a rollout, scale, delete. Offered only to those the
//! API lets patch the workload, and refused by the API again when sent; each is a
//! CSRF-checked form POST that works without JavaScript (delete asks first when it runs).

use axum::extract::{Form, Path};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use api::Workload;
use api::kinds::{WORKLOAD, WorkloadType};

use super::backend::{UiError, paths};
use super::page;
use super::session::Session;
use crate::auth::{Verb, authorize};

/// The largest replica count the form offers (the API validates its own limit).
const MAX_REPLICAS: i32 = 10_000;

#[derive(Deserialize)]
pub struct ActionForm {
    csrf: Option<String>,
    /// `scale`: the new count.
    replicas: Option<String>,
    /// `scale`: the count the page showed; a workload scaled since is not scaled again.
    current: Option<String>,
}

fn action_path(ns: &str, name: &str, action: &str) -> String {
    format!(
        "/ui/namespaces/{}/workloads/{}/{action}",
        paths::enc(ns),
        paths::enc(name)
    )
}

/// The actions' markup for `w`, or nothing for those who may not patch it.
pub fn actions(session: &Session, w: &Workload) -> Markup {
    let ns = w.metadata.namespace.as_deref().unwrap_or_default();
    let name = w.metadata.name.as_str();
    if authorize(&session.who, Verb::Patch, WORKLOAD, Some(ns), Some(name)).is_err() {
        return html! {};
    }
    let rolled_out = w.spec.type_ != WorkloadType::Job;
    let button = |action: &str, label: &str, confirm: Option<&str>| {
        page::post_button(
            &action_path(ns, name, action),
            &session.csrf,
            label,
            confirm,
        )
    };
    html! {
        div.actions role="group" aria-label="Workload actions" {
            @if rolled_out {
                (button("restart", "Restart", None))
                @if w.spec.paused { (button("resume", "Resume rollout", None)) }
                @else { (button("pause", "Pause rollout", None)) }
            }
            form.inline method="post" action=(action_path(ns, name, "scale")) {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="current" value=(w.spec.replicas);
                label for="replicas" { "Replicas " }
                input #replicas type="number" name="replicas" min="0" max=(MAX_REPLICAS)
                    value=(w.spec.replicas) required;
                " "
                button type="submit" { "Scale" }
            }
            (button("delete", "Delete", Some("Delete this workload? Its instances are stopped.")))
        }
    }
}

/// `POST /ui/namespaces/{ns}/workloads/{name}/{action}`.
pub async fn act(
    session: Session,
    Path((ns, name, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Result<Response, UiError> {
    session.check_post(&headers, form.csrf.as_deref())?;
    let path = paths::object(WORKLOAD, Some(&ns), Some(&name));
    let back = Redirect::to(&super::workloads::detail_href(&ns, &name)).into_response();
    let patch = match action.as_str() {
        "delete" => {
            session.api.delete(&path).await?;
            return Ok(Redirect::to("/ui/workloads").into_response());
        }
        "scale" => {
            let replicas = count(form.replicas.as_deref(), "replicas")?;
            let w: Workload = session.api.get_as(&path).await?;
            if let Some(current) = form.current.as_deref() {
                let current = count(Some(current), "current")?;
                if w.spec.replicas != current {
                    return Err(UiError::new(
                        axum::http::StatusCode::CONFLICT,
                        "Conflict",
                        format!(
                            "workload {ns}/{name} has {} replicas now, not the {current} this page \
                             showed: nothing changed; reload the page and scale again",
                            w.spec.replicas
                        ),
                    ));
                }
            }
            json!({"spec": {"replicas": replicas}})
        }
        "restart" | "pause" | "resume" => {
            let w: Workload = session.api.get_as(&path).await?;
            if w.spec.type_ == WorkloadType::Job {
                return Err(UiError::bad_request(format!(
                    "workload {ns}/{name} is a job: jobs are not rolled out (each instance runs \
                     to completion), so there is nothing to {action}"
                )));
            }
            match action.as_str() {
                "restart" => {
                    let now = jiff::Timestamp::now()
                        .round(jiff::Unit::Second)
                        .map_err(|e| UiError::internal(e.to_string()))?;
                    json!({"spec": {"restartedAt": now.to_string()}})
                }
                "pause" => json!({"spec": {"paused": true}}),
                _ => json!({"spec": {"paused": false}}),
            }
        }
        other => {
            return Err(UiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "NotFound",
                format!("no workload action {other:?}: restart, pause, resume, scale or delete"),
            ));
        }
    };
    session.api.merge_patch(&path, &patch).await?;
    Ok(back)
}

/// A replica count from the form.
fn count(value: Option<&str>, field: &str) -> Result<i32, UiError> {
    let value = value.unwrap_or_default().trim();
    value
        .parse::<i32>()
        .ok()
        .filter(|n| (0..=MAX_REPLICAS).contains(n))
        .ok_or_else(|| {
            UiError::bad_request(format!(
                "{field}: {value:?} is not a replica count: give a whole number from 0 to \
                 {MAX_REPLICAS}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_whole_numbers_within_the_limit() {
        assert_eq!(count(Some(" 3 "), "replicas").unwrap(), 3);
        assert_eq!(count(Some("0"), "replicas").unwrap(), 0);
        for bad in ["", "-1", "2.5", "ten", "10001"] {
            let e = count(Some(bad), "replicas").unwrap_err();
            assert!(e.message.starts_with("replicas:"), "{bad}: {}", e.message);
        }
    }
}
