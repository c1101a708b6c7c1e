//! Sign-in, sign-out and the home page.

use std::net::SocketAddr;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use super::forms::Shown;
use super::session::{MaybeSignedIn, Posted};
use super::{local_path, page, parse_form, see_other, Chrome, Empty, Viewer, WebError};
use crate::http::session::{cookie_value, tokens_match};
use crate::http::AppState;
use crate::service::dashboard::{Dashboard, EXPIRING_SOON_DAYS};
use crate::service::sessions::SignInAttempt;
use crate::service::ServiceError;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Option<Chrome>,
    username: String,
    next: String,
    csrf_token: String,
    error: Option<String>,
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// The sign-in form, with a fresh double-submit token in a cookie.
fn login_form(
    state: &AppState,
    status: StatusCode,
    username: String,
    next: &str,
    error: Option<String>,
) -> Response {
    let csrf_token = crate::service::sessions::random_token();
    let form = LoginPage {
        chrome: None,
        username,
        next: local_path(Some(next)).to_owned(),
        csrf_token: csrf_token.clone(),
        error,
    };
    let mut res = page(status, None, &form);
    let cookies = state.web.cookies();
    res.headers_mut().append(
        header::SET_COOKIE,
        cookies.set(
            cookies.login_csrf(),
            csrf_token,
            Some(time::Duration::hours(1)),
        ),
    );
    res
}

pub async fn login_page(
    State(state): State<AppState>,
    MaybeSignedIn(session): MaybeSignedIn,
    Query(q): Query<LoginQuery>,
) -> Response {
    let next = local_path(q.next.as_deref()).to_owned();
    if session.is_some() {
        return see_other(&next);
    }
    login_form(&state, StatusCode::OK, String::new(), &next, None)
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf_token: String,
    next: Option<String>,
}

pub async fn login(
    State(state): State<AppState>,
    connect: Option<axum::extract::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    request_id: crate::http::RequestIdText,
    body: Bytes,
) -> Result<Response, WebError> {
    let form: LoginForm = parse_form(&body)?;
    let next = local_path(form.next.as_deref()).to_owned();
    let cookies = state.web.cookies();
    let expected = cookie_value(&headers, cookies.login_csrf()).unwrap_or("");
    if !tokens_match(&form.csrf_token, expected) {
        return Ok(login_form(
            &state,
            StatusCode::FORBIDDEN,
            form.username,
            &next,
            Some("The sign-in form had expired. Please sign in again.".into()),
        ));
    }
    let client_addr = connect.map_or_else(|| "unknown".to_owned(), |c| c.0 .0.ip().to_string());
    let attempt = SignInAttempt {
        username: &form.username,
        password: &form.password,
        client_addr: &client_addr,
        request_id: request_id.0.as_deref(),
    };
    match state.services.sign_in(attempt).await {
        Ok(session) => {
            let mut res = see_other(&next);
            let h = res.headers_mut();
            h.append(
                header::SET_COOKIE,
                cookies.set(
                    cookies.session(),
                    session.secret,
                    Some(state.services.sessions.absolute),
                ),
            );
            h.append(
                header::SET_COOKIE,
                cookies.set(cookies.login_csrf(), String::new(), None),
            );
            Ok(res)
        }
        Err(ServiceError::SignInFailed) => Ok(login_form(
            &state,
            StatusCode::UNAUTHORIZED,
            form.username,
            &next,
            Some("The username or password is not right.".into()),
        )),
        Err(ServiceError::RateLimited { retry_after_secs }) => {
            let mut res = login_form(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                form.username,
                &next,
                Some(format!(
                    "Too many failed sign-ins. Try again in {} minute(s).",
                    retry_after_secs.div_ceil(60)
                )),
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            Ok(res)
        }
        Err(ServiceError::Busy { retry_after_secs }) => {
            let mut res = login_form(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                form.username,
                &next,
                Some("Too many sign-ins at once. Please try again in a moment.".into()),
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            Ok(res)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn logout(
    State(state): State<AppState>,
    posted: Posted<Empty>,
) -> Result<Response, WebError> {
    state.services.sign_out(posted.viewer.ctx()).await?;
    let mut res = see_other("/login");
    let cookies = state.web.cookies();
    res.headers_mut().append(
        header::SET_COOKIE,
        cookies.set(cookies.session(), String::new(), None),
    );
    Ok(res)
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    chrome: Option<Chrome>,
    board: Dashboard,
    soon_days: i64,
}

pub async fn home(State(state): State<AppState>, viewer: Viewer) -> Result<Response, WebError> {
    let board = state.services.dashboard(viewer.ctx()).await?;
    let p = HomePage {
        chrome: Some(viewer.chrome.clone()),
        board,
        soon_days: EXPIRING_SOON_DAYS,
    };
    Ok(page(StatusCode::OK, p.chrome.as_ref(), &p))
}
