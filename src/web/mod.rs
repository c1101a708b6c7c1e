//! The browser UI: server-rendered HTML (askama templates in `templates/`), forms that post
//! back, no JavaScript needed. Handlers are thin: read the form, call the same service
//! function the JSON API calls, render the page or redirect with a flash message.

mod access_requests;
mod admin;
mod audit_detail;
mod blocklist;
pub mod forms;
mod groups;
mod keys;
mod pages;
mod servers;
pub mod session;
mod users;

use askama::Template;
use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;

use crate::http::AppState;
use crate::service::sessions::LiveSession;
use crate::service::{Caller, ServiceError};
use session::FlashCookie;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/static/keyportal.css", get(stylesheet))
        .route("/static/keyportal.js", get(script))
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/auth/oidc/login", get(pages::oidc_start))
        .route("/auth/oidc/callback", get(pages::oidc_callback))
        .route("/", get(pages::home))
        .route("/keys", get(keys::my_keys))
        .route("/users/{username}/keys", get(keys::list).post(keys::add))
        .route("/users/{username}/keys/import", post(keys::import))
        .route("/keys/{id}/delete", post(keys::delete))
        .route("/account", get(users::account))
        .route("/users", get(users::list).post(users::create))
        .route("/users/{username}", get(users::show).post(users::update))
        .route("/users/{username}/password", post(users::set_password))
        .route(
            "/users/{username}/tokens/{id}/revoke",
            post(users::revoke_token),
        )
        .route("/users/{username}/delete", post(users::delete))
        .route("/oidc/sync", post(users::sync_provider))
        .route("/servers", get(servers::list).post(servers::create))
        .route("/servers/{name}", get(servers::show).post(servers::update))
        .route("/servers/{name}/delete", post(servers::delete))
        .route("/servers/{name}/grants", post(servers::add_grant))
        .route("/servers/{name}/tokens", post(servers::create_token))
        .route(
            "/servers/{name}/tokens/{id}/revoke",
            post(servers::revoke_token),
        )
        .route("/grants/{id}/delete", post(servers::delete_grant))
        .route("/policy", get(admin::policy).post(admin::save_policy))
        .route("/audit", get(admin::audit))
        .route(
            "/access-requests",
            get(access_requests::list).post(access_requests::create),
        )
        .route(
            "/access-requests/{id}/approve",
            post(access_requests::approve),
        )
        .route("/access-requests/{id}/deny", post(access_requests::deny))
        .route("/groups", get(groups::list).post(groups::act))
        .route("/servers/{name}/access", get(servers::access))
        .route("/users/{username}/access", get(servers::user_access))
        .route("/blocklist", get(blocklist::list).post(blocklist::add))
        .route("/blocklist/{id}/delete", post(blocklist::delete))
        .route("/blocklist/scan", post(blocklist::scan))
        .route("/tokens", get(admin::tokens).post(admin::create_token))
        .route("/tokens/{id}/revoke", post(admin::revoke_token))
}

/// Why a page could not be shown. Service errors keep their cause (and status) all the way.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("sign in first")]
    SignInRequired { next: String },
    #[error("missing or wrong CSRF token")]
    CsrfRejected,
    #[error("{0}")]
    BadForm(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("template: {0}")]
    Render(#[from] askama::Error),
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Option<Chrome>,
    status: u16,
    title: String,
    detail: String,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, title, detail, retry_after) = match self {
            WebError::SignInRequired { next } => {
                let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
                return see_other(&format!("/login?{query}"));
            }
            WebError::CsrfRejected => (
                StatusCode::FORBIDDEN,
                "This form has expired".to_owned(),
                "The form was not sent with this session's security token (it may be from an \
                 old page or another site). Nothing was changed. Reload the page and try again."
                    .to_owned(),
                None,
            ),
            WebError::BadForm(detail) => (
                StatusCode::BAD_REQUEST,
                "The form could not be read".to_owned(),
                format!("{detail}. Nothing was changed."),
                None,
            ),
            WebError::Service(e) => {
                e.log();
                (
                    e.status(),
                    e.status().canonical_reason().unwrap_or("Error").to_owned(),
                    e.detail(),
                    e.retry_after(),
                )
            }
            WebError::Render(e) => {
                tracing::error!(error = %e, "page template failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error".to_owned(),
                    "The page could not be shown; the error has been logged with this request's id."
                        .to_owned(),
                    None,
                )
            }
        };
        let page = ErrorPage {
            chrome: None,
            status: status.as_u16(),
            title,
            detail,
        };
        let mut res = match page.render() {
            Ok(html) => (status, axum::response::Html(html)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "error page template failed");
                (status, page.detail).into_response()
            }
        };
        if let Some(secs) = retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

/// A form with no fields but its CSRF token (delete, revoke, sign out).
#[derive(serde::Deserialize)]
pub struct Empty {}

/// A one-time message shown on the next page after a redirect.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Flash {
    /// `ok` or `error`.
    pub kind: String,
    pub text: String,
}

/// What every signed-in page shows around its content: who is signed in, the sign-out form,
/// the flash message.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub username: String,
    pub role: &'static str,
    pub is_admin: bool,
    pub csrf_token: String,
    pub flash: Option<Flash>,
}

/// A signed-in page request: the session and the flash message waiting for it.
pub struct Viewer {
    pub session: LiveSession,
    pub chrome: Chrome,
}

impl Viewer {
    pub fn ctx(&self) -> &crate::service::Ctx {
        &self.session.ctx
    }

    fn new(session: LiveSession, flash: Option<Flash>) -> Viewer {
        let (username, role, is_admin) = match &session.ctx.caller {
            Caller::User { username, role, .. } => (
                username.clone(),
                role.as_str(),
                session.ctx.caller.is_admin(),
            ),
            other => (other.actor(), "", false),
        };
        let chrome = Chrome {
            username,
            role,
            is_admin,
            csrf_token: session.csrf_token.clone(),
            flash,
        };
        Viewer { session, chrome }
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let session::SignedIn(live) = session::SignedIn::from_request_parts(parts, state).await?;
        let flash = crate::http::session::cookie_value(&parts.headers, state.web.cookies().flash())
            .and_then(|v| serde_urlencoded::from_str::<Flash>(v).ok());
        Ok(Viewer::new(live, flash))
    }
}

/// Renders a page; a flash message it showed is cleared.
pub fn page<T: Template>(status: StatusCode, chrome: Option<&Chrome>, t: &T) -> Response {
    match t.render() {
        Ok(html) => {
            let mut res = (status, axum::response::Html(html)).into_response();
            if chrome.is_some_and(|c| c.flash.is_some()) {
                res.extensions_mut().insert(FlashCookie::Clear);
            }
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => WebError::Render(e).into_response(),
    }
}

/// 303 to `to` (post/redirect/get).
pub fn see_other(to: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// 303 to `to` with a message for the next page.
pub fn redirect_with_flash(to: &str, kind: &str, text: impl Into<String>) -> Response {
    let mut res = see_other(to);
    let flash = Flash {
        kind: kind.to_owned(),
        text: text.into(),
    };
    if let Ok(value) = serde_urlencoded::to_string(&flash) {
        res.extensions_mut().insert(FlashCookie::Set(value));
    }
    res
}

/// A form body without a session (the sign-in form).
pub fn parse_form<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, WebError> {
    if crate::http::input::form_has_nul(bytes) {
        return Err(WebError::BadForm(crate::http::input::FORM_NUL.into()));
    }
    serde_urlencoded::from_bytes(bytes)
        .map_err(|e| WebError::BadForm(format!("the form does not fit this page: {e}")))
}

/// Only same-site paths are followed after sign-in, so `next` cannot send anyone elsewhere;
/// anything else is `/`.
pub fn local_path(next: Option<&str>) -> &str {
    match next {
        // Longer than any page of ours: not followed (and never stored).
        Some(p) if p.len() <= 1000 && is_same_site_path(p) => p,
        _ => "/",
    }
}

/// A path that starts with one `/` and has no `\`, control or white-space characters, raw or
/// (in the path part) percent-decoded. Browsers drop tabs and newlines from URLs and read `\`
/// as `/`, so `/\t/evil.example/` would become `//evil.example/`: another site. The query may
/// hold an encoded space (a search), which cannot make the path another site's.
fn is_same_site_path(p: &str) -> bool {
    let raw = p.as_bytes();
    let path_end = raw
        .iter()
        .position(|c| matches!(c, b'?' | b'#'))
        .unwrap_or(raw.len());
    let decoded = percent_decoded(&raw[..path_end]);
    let plain = |b: &[u8]| {
        b.first() == Some(&b'/')
            && b.get(1) != Some(&b'/')
            && !b
                .iter()
                .any(|c| *c == b'\\' || c.is_ascii_whitespace() || c.is_ascii_control())
    };
    // The raw text goes into a Location header: visible ASCII only.
    raw.iter().all(|c| c.is_ascii_graphic()) && plain(raw) && plain(&decoded)
}

/// `%XX` decoded once; anything else kept as it is.
fn percent_decoded(s: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let pair = (s[i] == b'%')
            .then(|| Some((hex(*s.get(i + 1)?)?, hex(*s.get(i + 2)?)?)))
            .flatten();
        match pair {
            Some((hi, lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            None => {
                out.push(s[i]);
                i += 1;
            }
        }
    }
    out
}

async fn stylesheet() -> impl IntoResponse {
    static_asset(
        "text/css; charset=utf-8",
        include_str!("../../static/keyportal.css"),
    )
}

async fn script() -> impl IntoResponse {
    static_asset(
        "text/javascript; charset=utf-8",
        include_str!("../../static/keyportal.js"),
    )
}

/// Assets are compiled in, so an installed binary needs no files beside it.
fn static_asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path(Some("/keys?x=1")), "/keys?x=1");
        assert_eq!(local_path(Some("//evil.example")), "/");
        assert_eq!(local_path(Some("https://evil.example")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn paths_that_browsers_would_turn_into_another_site_are_not_followed() {
        for bad in [
            "/\t/evil.example/",
            "/\n/evil.example/",
            "/\r/evil.example",
            "/ /evil.example",
            "/\x0b/evil.example",
            "/%09/evil.example/",
            "/%0a/evil.example/",
            "/%0D%0A/evil.example/",
            "/%5cevil.example",
            "/%2F/evil.example",
            "/%20/evil.example",
            "/%7f/evil.example",
            "/\u{a0}/evil.example",
            "",
            "evil.example",
            "javascript:alert(1)",
            "https:/evil.example",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad:?}");
        }
        for good in [
            "/",
            "/keys",
            "/users/alice/keys?page=2&q=a%20b",
            "/servers/web-1.example.com",
            "/x%2Fy",
        ] {
            assert_eq!(local_path(Some(good)), good);
        }
    }
}
