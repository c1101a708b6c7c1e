//! The groups page (admins): user groups and server groups with their members, and grants of
//! a user group on a server group. Every action calls the same service function as the JSON
//! API; membership changes count at the next login.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::forms::{after_submit, Errors, FormView, Refusal};
use super::session::Posted;
use super::{page, redirect_with_flash, Chrome, Viewer, WebError};
use crate::http::AppState;
use crate::service::groups::{GrantFor, GroupGrantTarget, GroupView, NewGroup, NewGroupGrant};
use crate::store::groups::Kind;

#[derive(Template)]
#[template(path = "groups.html")]
struct GroupsPage {
    chrome: Option<Chrome>,
    groups: Vec<GroupView>,
    server_groups: Vec<GroupView>,
    form: GroupForm,
    errors: Errors,
}

#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct GroupForm {
    /// What to do: `create_group`, `create_server_group`, `add_member`, `remove_member`,
    /// `add_server`, `remove_server`, `grant`.
    #[serde(default)]
    action: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    /// A username or a server name, by the action.
    #[serde(default)]
    member: String,
    #[serde(default)]
    server_group: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    options: String,
}

async fn render(
    state: &AppState,
    viewer: &Viewer,
    shown: FormView<GroupForm>,
) -> Result<Response, WebError> {
    let server_groups = state
        .services
        .list_groups(viewer.ctx(), Kind::Servers)
        .await?;
    let groups = state
        .services
        .list_groups(viewer.ctx(), Kind::Users)
        .await?;
    let p = GroupsPage {
        chrome: Some(viewer.chrome.clone()),
        groups,
        server_groups,
        form: shown.form,
        errors: shown.errors,
    };
    Ok(page(shown.status, p.chrome.as_ref(), &p))
}

pub async fn list(State(state): State<AppState>, viewer: Viewer) -> Result<Response, WebError> {
    render(&state, &viewer, FormView::fresh()).await
}

pub async fn act(
    State(state): State<AppState>,
    posted: Posted<GroupForm>,
) -> Result<Response, WebError> {
    let Posted { viewer, form } = posted;
    let s = &state.services;
    let ctx = viewer.ctx();
    let (name, member) = (form.name.trim(), form.member.trim());
    let new_group = || NewGroup {
        name: name.to_owned(),
        description: Some(form.description.clone()),
        owners: None,
    };
    let outcome: Result<String, Refusal> = match form.action.as_str() {
        "create_group" => s
            .create_group(ctx, Kind::Users, new_group())
            .await
            .map(|g| format!("Group {} created", g.name)),
        "create_server_group" => s
            .create_group(ctx, Kind::Servers, new_group())
            .await
            .map(|g| format!("Server group {} created", g.name)),
        "add_member" | "remove_member" | "add_server" | "remove_server" => {
            let add = form.action.starts_with("add_");
            let kind = if form.action.ends_with("_member") {
                Kind::Users
            } else {
                Kind::Servers
            };
            s.set_group_member(ctx, kind, name, member, add)
                .await
                .map(|g| {
                    format!(
                        "{member} {} {}",
                        if add { "added to" } else { "removed from" },
                        g.name
                    )
                })
        }
        "grant" => s
            .create_group_grant(
                ctx,
                GroupGrantTarget::ServerGroup(form.server_group.trim()),
                NewGroupGrant {
                    grantee: GrantFor::Group(name.to_owned()),
                    login: form.login.clone(),
                    options: Some(form.options.clone()),
                    expires_at: None,
                },
            )
            .await
            .map(|g| {
                format!(
                    "Group {} may log in to every server of {} as {}",
                    g.group.unwrap_or_default(),
                    g.server_group.unwrap_or_default(),
                    g.login
                )
            }),
        _ => Err(crate::service::ServiceError::invalid(
            "action",
            "unknown action",
        )),
    }
    .map_err(Refusal::from);
    after_submit(
        outcome,
        form.clone(),
        |done| redirect_with_flash("/groups", "ok", &done),
        |shown| render(&state, &viewer, shown),
    )
    .await
}
