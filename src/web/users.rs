//! Users pages: the list with search and the create form (admins), a user's profile with
//! its edit and password forms (admins, and each user for themselves).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::forms::{after_submit, form_errors, Errors, FormView, Refusal, Shown};
use super::session::Posted;
use super::Empty;
use super::{page, redirect_with_flash, see_other, Chrome, Viewer, WebError};
use crate::domain::Role;
use crate::http::AppState;
use crate::service::tokens::TokenView;
use crate::service::users::{NewUser, UserPatch, UserView};
use crate::service::{Caller, Listing};

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    chrome: Option<Chrome>,
    q: String,
    users: Listing<UserView>,
    form: CreateUserForm,
    errors: Errors,
    /// The identity provider's name, when one is configured (the sync button).
    provider: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct CreateUserForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

#[derive(serde::Deserialize)]
pub struct UsersQuery {
    q: Option<String>,
    cursor: Option<String>,
}

async fn render_list(
    state: &AppState,
    viewer: &Viewer,
    q: Option<&str>,
    cursor: Option<&str>,
    shown: FormView<CreateUserForm>,
) -> Result<Response, WebError> {
    let q = q.map(str::trim).filter(|q| !q.is_empty());
    let users = state
        .services
        .list_users(viewer.ctx(), q, Some(50), cursor)
        .await?;
    let p = UsersPage {
        chrome: Some(viewer.chrome.clone()),
        q: q.unwrap_or("").to_owned(),
        users,
        form: shown.form,
        errors: shown.errors,
        provider: state
            .services
            .oidc
            .as_ref()
            .map(|p| p.settings.label.clone()),
    };
    Ok(page(shown.status, p.chrome.as_ref(), &p))
}

pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<UsersQuery>,
) -> Result<Response, WebError> {
    render_list(
        &state,
        &viewer,
        q.q.as_deref(),
        q.cursor.as_deref(),
        FormView::fresh(),
    )
    .await
}

fn parse_role(text: &str) -> Result<Option<Role>, Errors> {
    match text {
        "" => Ok(None),
        "member" => Ok(Some(Role::Member)),
        "admin" => Ok(Some(Role::Admin)),
        other => Err(Errors::one("role", format!("{other:?} is not a role"))),
    }
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

pub async fn create(
    State(state): State<AppState>,
    posted: Posted<CreateUserForm>,
) -> Result<Response, WebError> {
    let Posted { viewer, mut form } = posted;
    let outcome = async {
        let new = NewUser {
            username: form.username.trim().to_owned(),
            display_name: non_empty(&form.display_name),
            email: non_empty(&form.email),
            role: parse_role(&form.role)?,
            password: Some(form.password.clone()).filter(|p| !p.is_empty()),
        };
        Ok::<_, Refusal>(state.services.create_user(viewer.ctx(), new).await?)
    }
    .await;
    // A password typed into the form is never sent back.
    form.password.clear();
    after_submit(
        outcome,
        form,
        |user| {
            redirect_with_flash(
                &format!("/users/{}", user.username),
                "ok",
                format!("User {} created", user.username),
            )
        },
        |shown| render_list(&state, &viewer, None, None, shown),
    )
    .await
}

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage {
    chrome: Option<Chrome>,
    user: UserView,
    own: bool,
    /// The user's API tokens, shown to admins on another user's page.
    tokens: Vec<TokenView>,
    errors: Errors,
}

/// "My account": the signed-in user's profile page.
pub async fn account(viewer: Viewer) -> Response {
    match &viewer.ctx().caller {
        Caller::User { username, .. } => see_other(&format!("/users/{username}")),
        _ => see_other("/"),
    }
}

async fn render_user(
    state: &AppState,
    viewer: &Viewer,
    username: &str,
    shown: FormView<()>,
) -> Result<Response, WebError> {
    let user = state.services.get_user(viewer.ctx(), username).await?;
    let own = viewer.chrome.username == user.username;
    let tokens = if viewer.chrome.is_admin && !own {
        state
            .services
            .list_user_tokens(viewer.ctx(), &user.username)
            .await?
    } else {
        Vec::new()
    };
    let p = UserPage {
        chrome: Some(viewer.chrome.clone()),
        own,
        user,
        tokens,
        errors: shown.errors,
    };
    Ok(page(shown.status, p.chrome.as_ref(), &p))
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(username): Path<String>,
) -> Result<Response, WebError> {
    render_user(&state, &viewer, &username, FormView::fresh()).await
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct ProfileForm {
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
    /// Admins only; absent from the form members see.
    role: Option<String>,
    /// Admins only: the checkbox is sent when ticked, with `disabled_shown` always sent.
    disabled: Option<String>,
    disabled_shown: Option<String>,
}

pub async fn update(
    State(state): State<AppState>,
    Path(username): Path<String>,
    posted: Posted<ProfileForm>,
) -> Result<Response, WebError> {
    let Posted { viewer, form } = posted;
    let patch = parse_role(form.role.as_deref().unwrap_or("")).map(|role| UserPatch {
        display_name: Some(form.display_name.trim().to_owned()),
        email: Some(non_empty(&form.email)),
        role,
        disabled: form
            .disabled_shown
            .as_ref()
            .map(|_| form.disabled.is_some()),
        ..UserPatch::default()
    });
    saved(&state, &viewer, &username, patch, "Profile saved").await
}

/// Saves a profile or password change the form parsed into `patch`: back to the profile with a
/// message, or the profile again with what is wrong.
async fn saved(
    state: &AppState,
    viewer: &Viewer,
    username: &str,
    patch: Result<UserPatch, Errors>,
    done: &str,
) -> Result<Response, WebError> {
    let outcome = match patch {
        Ok(patch) => state
            .services
            .update_user(viewer.ctx(), username, patch)
            .await
            .map_err(Refusal::from),
        Err(errors) => Err(Refusal::from(errors)),
    };
    after_submit(
        outcome,
        (),
        |user| redirect_with_flash(&format!("/users/{}", user.username), "ok", done),
        |shown| render_user(state, viewer, username, shown),
    )
    .await
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct PasswordForm {
    /// Sent on one's own page only.
    #[serde(default)]
    current_password: Option<String>,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

pub async fn set_password(
    State(state): State<AppState>,
    Path(username): Path<String>,
    posted: Posted<PasswordForm>,
) -> Result<Response, WebError> {
    let Posted { viewer, form } = posted;
    let patch = if form.password == form.confirm {
        Ok(UserPatch {
            password: Some(form.password),
            current_password: form.current_password,
            ..UserPatch::default()
        })
    } else {
        Err(Errors::one("confirm", "the two passwords differ"))
    };
    saved(
        &state,
        &viewer,
        &username,
        patch,
        "Password changed; the account's other sessions have been signed out and its API tokens revoked",
    )
    .await
}

/// An admin revokes one of a user's API tokens from the user's page.
pub async fn revoke_token(
    State(state): State<AppState>,
    Path((username, id)): Path<(String, String)>,
    posted: Posted<Empty>,
) -> Result<Response, WebError> {
    let viewer = posted.viewer;
    let id = crate::service::object_id(&id, "token")?;
    state
        .services
        .revoke_user_token(viewer.ctx(), &username, id)
        .await?;
    Ok(redirect_with_flash(
        &format!("/users/{username}"),
        "ok",
        "Token revoked: it no longer works",
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(username): Path<String>,
    posted: Posted<Empty>,
) -> Result<Response, WebError> {
    let viewer = posted.viewer;
    match state.services.delete_user(viewer.ctx(), &username).await {
        Ok(()) => Ok(redirect_with_flash(
            "/users",
            "ok",
            format!("User {username} deleted"),
        )),
        Err(e) => {
            let shown = FormView {
                status: StatusCode::CONFLICT,
                form: (),
                errors: form_errors(e)?,
            };
            render_user(&state, &viewer, &username, shown).await
        }
    }
}

impl UserPage {
    fn created(&self) -> String {
        self.user.created_at.shown()
    }
}

/// The admin action behind "Sync with <provider>": `keyportal users sync` from the browser.
pub async fn sync_provider(
    State(state): State<AppState>,
    posted: Posted<super::Empty>,
) -> Result<Response, WebError> {
    let report = state
        .services
        .sync_provider_users(posted.viewer.ctx())
        .await?;
    let mut text = format!(
        "Checked {} account(s) at the identity provider: {} known",
        report.checked,
        report.known.len()
    );
    if !report.disabled.is_empty() {
        text.push_str(&format!(
            "; disabled (no longer known): {}",
            report.disabled.join(", ")
        ));
    }
    if !report.unchecked.is_empty() {
        text.push_str(&format!(
            "; not checkable until they sign in again: {}",
            report.unchecked.join(", ")
        ));
    }
    if !report.failed.is_empty() {
        let failed: Vec<String> = report
            .failed
            .iter()
            .map(|f| format!("{} ({})", f.username, f.error))
            .collect();
        text.push_str(&format!("; could not check: {}", failed.join(", ")));
    }
    text.push('.');
    let kind = if report.failed.is_empty() {
        "ok"
    } else {
        "error"
    };
    Ok(redirect_with_flash("/users", kind, text))
}
