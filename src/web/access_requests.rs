//! The access requests page: a request form, the requests waiting for the viewer's decision
//! (the approver inbox) and the viewer's own. Each action calls the same service function as
//! the JSON API.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;

use super::forms::{after_submit, Errors, FormView, Refusal, Shown};
use super::session::Posted;
use super::{page, redirect_with_flash, Chrome, Viewer, WebError};
use crate::http::AppState;
use crate::service::access_requests::{AccessRequestView, NewAccessRequest};
use crate::service::object_id;

#[derive(Template)]
#[template(path = "access_requests.html")]
struct AccessRequestsPage {
    chrome: Option<Chrome>,
    inbox: Vec<AccessRequestView>,
    mine: Vec<AccessRequestView>,
    others: Vec<AccessRequestView>,
    form: RequestForm,
    errors: Errors,
}

#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct RequestForm {
    /// A server name, or `group:` and a server group's name.
    #[serde(default)]
    target: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    duration_hours: String,
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    comment: String,
}

async fn render(
    state: &AppState,
    viewer: &Viewer,
    shown: FormView<RequestForm>,
) -> Result<Response, WebError> {
    let all = state
        .services
        .list_access_requests(viewer.ctx(), None)
        .await?;
    let me = &viewer.chrome.username;
    let (inbox, rest): (Vec<_>, Vec<_>) = all.into_iter().partition(|r| r.can_decide);
    let (mine, others) = rest.into_iter().partition(|r| &r.requester == me);
    let p = AccessRequestsPage {
        chrome: Some(viewer.chrome.clone()),
        inbox,
        mine,
        others,
        form: shown.form,
        errors: shown.errors,
    };
    Ok(page(shown.status, p.chrome.as_ref(), &p))
}

pub async fn list(State(state): State<AppState>, viewer: Viewer) -> Result<Response, WebError> {
    render(&state, &viewer, FormView::fresh()).await
}

pub async fn create(
    State(state): State<AppState>,
    posted: Posted<RequestForm>,
) -> Result<Response, WebError> {
    let Posted { viewer, form } = posted;
    let target = form.target.trim();
    let (server, server_group) = match target.strip_prefix("group:") {
        Some(group) => (None, Some(group.trim().to_owned())),
        None => (Some(target.to_owned()), None),
    };
    let outcome: Result<String, Refusal> = match form.duration_hours.trim().parse::<i64>() {
        Err(_) => Err(Refusal::Form(Errors::one(
            "duration_hours",
            format!("{:?} is not a whole number of hours", form.duration_hours),
        ))),
        Ok(duration_hours) => state
            .services
            .create_access_request(
                viewer.ctx(),
                NewAccessRequest {
                    server,
                    server_group,
                    login: form.login.clone(),
                    duration_hours,
                    reason: form.reason.clone(),
                },
            )
            .await
            .map(|r| {
                format!(
                    "Requested {} on {} for {} hours; it waits for an approver",
                    r.login,
                    r.server.or(r.server_group).unwrap_or_default(),
                    r.duration_hours
                )
            })
            .map_err(Refusal::from),
    };
    after_submit(
        outcome,
        form.clone(),
        |done| redirect_with_flash("/access-requests", "ok", &done),
        |shown| render(&state, &viewer, shown),
    )
    .await
}

async fn decide(
    state: AppState,
    id: String,
    posted: Posted<DecisionForm>,
    approve: bool,
) -> Result<Response, WebError> {
    let id = object_id(&id, "access request")?;
    let r = state
        .services
        .decide_access_request(posted.viewer.ctx(), id, approve, Some(&posted.form.comment))
        .await?;
    Ok(redirect_with_flash(
        "/access-requests",
        "ok",
        format!(
            "{} {}'s request for {} ({})",
            if approve { "Approved" } else { "Denied" },
            r.requester,
            r.login,
            r.server.or(r.server_group).unwrap_or_default()
        ),
    ))
}

pub async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<DecisionForm>,
) -> Result<Response, WebError> {
    decide(state, id, posted, true).await
}

pub async fn deny(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<DecisionForm>,
) -> Result<Response, WebError> {
    decide(state, id, posted, false).await
}
