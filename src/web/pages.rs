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
    /// "Sign in with <provider>", when a provider is configured.
    provider: Option<String>,
    /// The password form is open to everyone (else only to the break-glass admin).
    passwords_open: bool,
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// The sign-in form, with a fresh double-submit token in a cookie.
async fn login_form(
    state: &AppState,
    status: StatusCode,
    username: String,
    next: &str,
    error: Option<String>,
) -> Response {
    let csrf_token = crate::service::sessions::random_token();
    // Unreadable policy: the password form stays open (the sign-in itself decides).
    let passwords_open = crate::service::policy::current(&state.services.pool)
        .await
        .map_or(true, |p| p.local_password_sign_in);
    let form = LoginPage {
        chrome: None,
        username,
        next: local_path(Some(next)).to_owned(),
        csrf_token: csrf_token.clone(),
        error,
        provider: state
            .services
            .oidc
            .as_ref()
            .map(|p| p.settings.label.clone()),
        passwords_open,
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
    login_form(&state, StatusCode::OK, String::new(), &next, None).await
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
        )
        .await);
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
        )
        .await),
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
            )
            .await;
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            Ok(res)
        }
        Err(ServiceError::Refused {
            code: "password_sign_in_off",
            detail,
            ..
        }) => Ok(login_form(
            &state,
            StatusCode::FORBIDDEN,
            form.username,
            &next,
            Some(format!("{}.", capitalized(detail))),
        )
        .await),
        Err(ServiceError::Busy { retry_after_secs }) => {
            let mut res = login_form(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                form.username,
                &next,
                Some("Too many sign-ins at once. Please try again in a moment.".into()),
            )
            .await;
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
    // Asked before the session (and its ID token) is gone.
    let at_provider = state
        .services
        .provider_logout_url(posted.viewer.ctx())
        .await?;
    state.services.sign_out(posted.viewer.ctx()).await?;
    let mut res = see_other(at_provider.as_deref().unwrap_or("/login"));
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

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Starts a sign-in at the identity provider: the state goes into a short-lived cookie (the
/// callback must come back to this browser) and the browser to the provider.
pub async fn oidc_start(
    State(state): State<AppState>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, WebError> {
    let next = local_path(q.next.as_deref()).to_owned();
    let redirect = match state.services.begin_oidc_sign_in(&next).await {
        Ok(r) => r,
        Err(e @ ServiceError::ProviderUnavailable(_)) => {
            e.log();
            return Ok(login_form(
                &state,
                StatusCode::BAD_GATEWAY,
                String::new(),
                &next,
                Some("The identity provider cannot be reached right now. Try again shortly, or ask an admin.".into()),
            )
            .await);
        }
        Err(e) => return Err(e.into()),
    };
    let cookies = state.web.cookies();
    let mut res = see_other(&redirect.url);
    res.headers_mut().append(
        header::SET_COOKIE,
        cookies.set(
            cookies.oidc_state(),
            redirect.state,
            Some(time::Duration::minutes(10)),
        ),
    );
    Ok(res)
}

#[derive(serde::Deserialize)]
pub struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The provider's redirect back: a session, or the sign-in page saying exactly why not.
pub async fn oidc_callback(
    State(state): State<AppState>,
    connect: Option<axum::extract::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    request_id: crate::http::RequestIdText,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, WebError> {
    let cookies = state.web.cookies();
    let client_addr = connect.map_or_else(|| "unknown".to_owned(), |c| c.0 .0.ip().to_string());
    let outcome = state
        .services
        .complete_oidc_sign_in(crate::service::oidc::OidcCallback {
            state: q.state.as_deref(),
            state_cookie: cookie_value(&headers, cookies.oidc_state()),
            code: q.code.as_deref(),
            error: q.error.as_deref(),
            error_description: q.error_description.as_deref(),
            client_addr: &client_addr,
            request_id: request_id.0.as_deref(),
        })
        .await;
    let label = state
        .services
        .oidc
        .as_ref()
        .map_or_else(String::new, |p| p.settings.label.clone());
    let mut res = match outcome {
        Ok(done) => {
            let mut res = see_other(local_path(Some(&done.next)));
            res.headers_mut().append(
                header::SET_COOKIE,
                cookies.set(
                    cookies.session(),
                    done.session.secret,
                    Some(state.services.sessions.absolute),
                ),
            );
            res
        }
        Err(
            e @ (ServiceError::ProviderSignInFailed { .. } | ServiceError::ProviderUnavailable(_)),
        ) => {
            let status = e.status();
            let detail = match &e {
                ServiceError::ProviderUnavailable(_) => {
                    "the identity provider cannot be reached right now; try again shortly"
                        .to_owned()
                }
                other => other.to_string(),
            };
            let reason = match &e {
                ServiceError::ProviderSignInFailed { reason, .. } => *reason,
                _ => "provider_unreachable",
            };
            login_form(
                &state,
                status,
                String::new(),
                "/",
                Some(format!(
                    "Sign-in with {label} failed ({reason}): {detail}. Nothing was signed in; start again below."
                )),
            )
            .await
        }
        Err(e) => return Err(e.into()),
    };
    // The state cookie is for one callback, whatever its outcome.
    res.headers_mut().append(
        header::SET_COOKIE,
        cookies.set(cookies.oidc_state(), String::new(), None),
    );
    Ok(res)
}
