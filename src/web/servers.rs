//! Servers pages: the list and create form, and a server's page with its grants, the sshd
//! setup that makes it fetch keys from here, and server tokens.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::forms::{after_submit, parse_date, Errors, FormView, Refusal, Shown};
use super::session::Posted;
use super::Empty;
use super::{page, redirect_with_flash, Chrome, Viewer, WebError};
use crate::http::AppState;
use crate::service::grants::{GrantView, NewGrant};
use crate::service::object_id;
use crate::service::servers::ServerView;
use crate::service::tokens::{NewToken, TokenView};
use crate::service::Listing;

#[derive(Template)]
#[template(path = "servers.html")]
struct ServersPage {
    chrome: Option<Chrome>,
    q: String,
    servers: Listing<ServerView>,
    form: ServerForm,
    errors: Errors,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct ServerForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    description: String,
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    cursor: Option<String>,
}

async fn render_list(
    state: &AppState,
    viewer: &Viewer,
    q: Option<&str>,
    cursor: Option<&str>,
    shown: FormView<ServerForm>,
) -> Result<Response, WebError> {
    let q = q.map(str::trim).filter(|q| !q.is_empty());
    let servers = state
        .services
        .list_servers(viewer.ctx(), q, Some(50), cursor)
        .await?;
    let p = ServersPage {
        chrome: Some(viewer.chrome.clone()),
        q: q.unwrap_or("").to_owned(),
        servers,
        form: shown.form,
        errors: shown.errors,
    };
    Ok(page(shown.status, p.chrome.as_ref(), &p))
}

pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
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

fn optional(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty()).then_some(s)
}

pub async fn create(
    State(state): State<AppState>,
    posted: Posted<ServerForm>,
) -> Result<Response, WebError> {
    let Posted { viewer, form } = posted;
    let outcome = state
        .services
        .create_server(
            viewer.ctx(),
            form.name.trim(),
            optional(&form.hostname),
            optional(&form.description),
        )
        .await
        .map_err(Refusal::from);
    after_submit(
        outcome,
        form,
        |server| {
            redirect_with_flash(
                &format!("/servers/{}", server.name),
                "ok",
                format!("Server {} created", server.name),
            )
        },
        |shown| render_list(&state, &viewer, None, None, shown),
    )
    .await
}

#[derive(Template)]
#[template(path = "server.html")]
struct ServerPage {
    chrome: Option<Chrome>,
    server: ServerView,
    grants: Listing<GrantView>,
    tokens: Vec<TokenView>,
    /// `KEYPORTAL_PUBLIC_URL`; without it the page warns instead of guessing an address.
    portal: Option<String>,
    grant_form: GrantForm,
    errors: Errors,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct GrantForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    key_id: String,
    #[serde(default)]
    options: String,
    #[serde(default)]
    expires_on: String,
}

/// The portal's address as servers should use it: only the configured public URL. Guessing
/// from the request would print `http://…`, and fetch-keys over plain HTTP hands the server
/// token and every login's keys to whoever is on the path.
fn portal_url(state: &AppState) -> Option<String> {
    state
        .web
        .public_url
        .as_deref()
        .map(|url| url.trim_end_matches('/').to_owned())
}

async fn render_server(
    state: &AppState,
    viewer: &Viewer,
    name: &str,
    cursor: Option<&str>,
    shown: FormView<GrantForm>,
) -> Result<Response, WebError> {
    let server = state.services.get_server(viewer.ctx(), name).await?;
    let grants = state
        .services
        .list_grants(viewer.ctx(), name, None, Some(100), cursor)
        .await?;
    let tokens = state
        .services
        .list_server_tokens(viewer.ctx(), name)
        .await?;
    let p = ServerPage {
        chrome: Some(viewer.chrome.clone()),
        server,
        grants,
        tokens,
        portal: portal_url(state),
        grant_form: shown.form,
        errors: shown.errors,
    };
    Ok(page(shown.status, p.chrome.as_ref(), &p))
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    render_server(
        &state,
        &viewer,
        &name,
        q.cursor.as_deref(),
        FormView::fresh(),
    )
    .await
}

pub async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    posted: Posted<ServerForm>,
) -> Result<Response, WebError> {
    let Posted { viewer, form } = posted;
    let outcome = state
        .services
        .update_server(
            viewer.ctx(),
            &name,
            Some(form.hostname.trim()),
            Some(form.description.trim()),
        )
        .await
        .map_err(Refusal::from);
    after_submit(
        outcome,
        form,
        |server| redirect_with_flash(&format!("/servers/{}", server.name), "ok", "Server saved"),
        // The page shows the grant form; the server's fields are the stored ones.
        |shown| {
            let shown = shown.with_form(GrantForm::default());
            render_server(&state, &viewer, &name, None, shown)
        },
    )
    .await
}

pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    posted: Posted<Empty>,
) -> Result<Response, WebError> {
    state
        .services
        .delete_server(posted.viewer.ctx(), &name)
        .await?;
    Ok(redirect_with_flash(
        "/servers",
        "ok",
        format!("Server {name} deleted, with its grants and tokens"),
    ))
}

pub async fn add_grant(
    State(state): State<AppState>,
    Path(name): Path<String>,
    posted: Posted<GrantForm>,
) -> Result<Response, WebError> {
    let Posted { viewer, form } = posted;
    let outcome = async {
        let key_id = match optional(&form.key_id).map(str::parse::<uuid::Uuid>) {
            None => None,
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => Err(Errors::one(
                "key_id",
                "a key id looks like 0f8c…-…; leave it empty for all of the user's keys",
            ))?,
        };
        let new = NewGrant {
            username: form.username.trim().to_owned(),
            login: form.login.trim().to_owned(),
            key_id,
            options: optional(&form.options).map(str::to_owned),
            expires_at: parse_date("expires_on", &form.expires_on)?,
        };
        Ok::<_, Refusal>(
            state
                .services
                .create_grant(viewer.ctx(), &name, new)
                .await?,
        )
    }
    .await;
    after_submit(
        outcome,
        form,
        |g| {
            redirect_with_flash(
                &format!("/servers/{name}"),
                "ok",
                format!("{} may now log in as {}", g.username, g.login),
            )
        },
        |shown| render_server(&state, &viewer, &name, None, shown),
    )
    .await
}

pub async fn delete_grant(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<ServerName>,
) -> Result<Response, WebError> {
    let id = object_id(&id, "grant")?;
    state.services.delete_grant(posted.viewer.ctx(), id).await?;
    Ok(redirect_with_flash(
        &format!("/servers/{}", posted.form.server),
        "ok",
        "Grant removed",
    ))
}

#[derive(serde::Deserialize)]
pub struct ServerName {
    server: String,
}

#[derive(Template)]
#[template(path = "token_created.html")]
pub struct TokenCreatedPage {
    pub chrome: Option<Chrome>,
    pub token: NewToken,
    pub back: String,
    pub for_server: bool,
}

impl TokenCreatedPage {
    /// The page that shows a new token's secret, once, with the way back.
    pub fn show(viewer: &Viewer, token: NewToken, back: String, for_server: bool) -> Response {
        let p = TokenCreatedPage {
            chrome: Some(viewer.chrome.clone()),
            token,
            back,
            for_server,
        };
        page(StatusCode::OK, p.chrome.as_ref(), &p)
    }
}

#[derive(serde::Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
    /// `YYYY-MM-DD`; empty: until revoked.
    #[serde(default)]
    expires_on: String,
}

pub async fn create_token(
    State(state): State<AppState>,
    Path(name): Path<String>,
    posted: Posted<TokenForm>,
) -> Result<Response, WebError> {
    let Posted { viewer, form } = posted;
    let expires_at = match parse_date("expires_on", &form.expires_on) {
        Ok(e) => e,
        Err(errors) => {
            let why = errors.get("expires_on").unwrap_or("not a date").to_owned();
            return Err(WebError::BadForm(why));
        }
    };
    let token = state
        .services
        .create_server_token(viewer.ctx(), &name, optional(&form.name), expires_at)
        .await?;
    Ok(TokenCreatedPage::show(
        &viewer,
        token,
        format!("/servers/{name}"),
        true,
    ))
}

/// Revokes a server token from the server's page.
pub async fn revoke_token(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    posted: Posted<Empty>,
) -> Result<Response, WebError> {
    let viewer = posted.viewer;
    let id = object_id(&id, "token")?;
    state
        .services
        .revoke_server_token(viewer.ctx(), &name, id)
        .await?;
    Ok(redirect_with_flash(
        &format!("/servers/{name}"),
        "ok",
        "Server token revoked: the next login that needs it is refused",
    ))
}

#[derive(Template)]
#[template(path = "access.html")]
pub(super) struct AccessPage {
    pub chrome: Option<Chrome>,
    pub title: String,
    /// The CSV export of the same rows.
    pub csv: String,
    pub empty: String,
    pub rows: Vec<crate::service::effective_access::AccessView>,
}

/// Who can log in to the server now, and why (admins).
pub async fn access(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    let rows = state.services.server_access(viewer.ctx(), &name).await?;
    // A name the lookup found: letters, digits, '.', '-', nothing to escape in a path.
    let encoded = &name;
    let p = AccessPage {
        chrome: Some(viewer.chrome.clone()),
        title: format!("Who can log in to {name}"),
        csv: format!("/api/v1/servers/{encoded}/access?format=csv"),
        empty: format!("Nobody can log in to {name} now."),
        rows,
    };
    Ok(page(StatusCode::OK, p.chrome.as_ref(), &p))
}

/// Where the user can log in now, and why (admins, and the user).
pub async fn user_access(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(username): Path<String>,
) -> Result<Response, WebError> {
    let rows = state.services.user_access(viewer.ctx(), &username).await?;
    let encoded = &username;
    let p = AccessPage {
        chrome: Some(viewer.chrome.clone()),
        title: format!("Where {username} can log in"),
        csv: format!("/api/v1/users/{encoded}/access?format=csv"),
        empty: format!("{username} cannot log in anywhere now."),
        rows,
    };
    Ok(page(StatusCode::OK, p.chrome.as_ref(), &p))
}
