//! The browser side of sessions: cookies, the signed-in extractors, and CSRF checks.
//!
//! - `kp_session`: the session secret (`HttpOnly`, `SameSite=Lax`, `Secure` over https).
//! - `kp_login_csrf`: a double-submit token for the sign-in form, which has no session yet.
//! - `kp_flash`: the message for the next page after a redirect.
//! - Over https every name gets the `__Host-` prefix: the browser then accepts the cookie only
//!   with `Secure`, `Path=/` and no `Domain`, so neither a sibling host nor a plain-http page
//!   can plant one (a planted sign-in token would defeat the double submit). Over plain http the
//!   bare names are used, as browsers refuse `__Host-` without `Secure`.
//! - Every state-changing form carries the session's `csrf_token` (synchronizer token);
//!   [`Posted`] refuses a form without it before the handler runs, so no handler can forget.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use cookie::{Cookie, SameSite};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::{Viewer, WebError};
use crate::http::{request_id, AppState};
use crate::service::sessions::LiveSession;

/// The portal's cookies as named and marked on this portal: `__Host-` and `Secure` over https.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cookies {
    secure: bool,
}

impl Cookies {
    pub fn new(secure: bool) -> Cookies {
        Cookies { secure }
    }

    pub fn session(self) -> &'static str {
        self.name("__Host-kp_session", "kp_session")
    }

    pub fn login_csrf(self) -> &'static str {
        self.name("__Host-kp_login_csrf", "kp_login_csrf")
    }

    pub fn flash(self) -> &'static str {
        self.name("__Host-kp_flash", "kp_flash")
    }

    fn name(self, prefixed: &'static str, plain: &'static str) -> &'static str {
        if self.secure {
            prefixed
        } else {
            plain
        }
    }

    /// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax`, path `/`, no domain, `Secure` over
    /// https; `max_age` `None` deletes it.
    pub fn set(
        self,
        name: &'static str,
        value: String,
        max_age: Option<time::Duration>,
    ) -> HeaderValue {
        set_cookie(name, value, max_age, self.secure)
    }
}

/// A flash message to set or clear, left on a response by handlers that have no state at
/// hand; [`write_flash_cookie`] turns it into the cookie under this portal's name.
#[derive(Debug, Clone)]
pub enum FlashCookie {
    Set(String),
    Clear,
}

/// Writes the response's [`FlashCookie`], if any, as a `Set-Cookie`.
pub async fn write_flash_cookie(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut res: axum::response::Response,
) -> axum::response::Response {
    let cookies = state.web.cookies();
    let header = match res.extensions_mut().remove::<FlashCookie>() {
        Some(FlashCookie::Set(value)) => {
            Some(cookies.set(cookies.flash(), value, Some(time::Duration::minutes(5))))
        }
        Some(FlashCookie::Clear) => Some(cookies.set(cookies.flash(), String::new(), None)),
        None => None,
    };
    if let Some(h) = header {
        res.headers_mut().append(header::SET_COOKIE, h);
    }
    res
}

/// The value of cookie `name` in the request, if sent.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

fn set_cookie(
    name: &'static str,
    value: String,
    max_age: Option<time::Duration>,
    secure: bool,
) -> HeaderValue {
    let mut c = Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .build();
    match max_age {
        Some(age) => c.set_max_age(age),
        None => c.make_removal(),
    }
    // Cookie values here are base64url or percent-encoded, so always valid header text.
    HeaderValue::from_str(&c.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Constant-time comparison of two tokens.
pub fn tokens_match(sent: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(sent.as_bytes().ct_eq(expected.as_bytes()))
}

/// The live session behind the request's cookie, if any.
pub async fn live_session(
    parts: &Parts,
    state: &AppState,
) -> Result<Option<LiveSession>, WebError> {
    let Some(secret) = cookie_value(&parts.headers, state.web.cookies().session()) else {
        return Ok(None);
    };
    match state.services.session(secret, request_id(parts)).await {
        Ok(live) => {
            tracing::Span::current().record("caller", live.ctx.caller.actor());
            Ok(Some(live))
        }
        Err(crate::service::ServiceError::Unauthenticated) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A page that needs a signed-in user; anyone else is sent to the sign-in page and back.
pub struct SignedIn(pub LiveSession);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        match live_session(parts, state).await? {
            Some(live) => Ok(SignedIn(live)),
            // Back to the page after sign-in; a form post cannot be replayed, so it goes home.
            None => Err(WebError::SignInRequired {
                next: match (&parts.method, parts.uri.path_and_query()) {
                    (&axum::http::Method::GET, Some(p)) => p.to_string(),
                    _ => "/".to_owned(),
                },
            }),
        }
    }
}

/// A page anyone may see (the sign-in page): the session, if there is one.
pub struct MaybeSignedIn(pub Option<LiveSession>);

impl FromRequestParts<AppState> for MaybeSignedIn {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        Ok(MaybeSignedIn(live_session(parts, state).await?))
    }
}

/// A form posted by a signed-in user, accepted only with the session's CSRF token.
pub struct Posted<T> {
    pub viewer: Viewer,
    pub form: T,
}

#[derive(serde::Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf_token: String,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Posted<T> {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, WebError> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let req = Request::from_parts(parts, body);
        let bytes = if is_multipart(&req) {
            multipart_as_urlencoded(req, state).await?
        } else {
            Bytes::from_request(req, state)
                .await
                .map_err(|_| WebError::BadForm("the form could not be read".into()))?
        };
        if crate::http::input::form_has_nul(&bytes) {
            return Err(WebError::BadForm(crate::http::input::FORM_NUL.into()));
        }
        let sent: CsrfField = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| WebError::BadForm(format!("the form could not be read: {e}")))?;
        if !tokens_match(&sent.csrf_token, &viewer.session.csrf_token) {
            return Err(WebError::CsrfRejected);
        }
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| WebError::BadForm(format!("the form does not fit this page: {e}")))?;
        Ok(Posted { viewer, form })
    }
}

fn is_multipart(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"))
}

/// A multipart form (file uploads) read into the urlencoded form of its fields, so one
/// deserializer serves both. Uploaded files must be text (public keys are).
async fn multipart_as_urlencoded(req: Request, state: &AppState) -> Result<Bytes, WebError> {
    let mut multipart = axum::extract::Multipart::from_request(req, state)
        .await
        .map_err(|e| WebError::BadForm(format!("the upload could not be read: {e}")))?;
    let mut fields: Vec<(String, String)> = Vec::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| WebError::BadForm(format!("the upload could not be read: {e}")))?
    {
        let name = field.name().unwrap_or("").to_owned();
        let data = field
            .bytes()
            .await
            .map_err(|e| WebError::BadForm(format!("the upload could not be read: {e}")))?;
        let text = String::from_utf8(data.to_vec()).map_err(|_| {
            WebError::BadForm(format!(
                "the file sent as {name:?} is not text; upload the public key (.pub) file"
            ))
        })?;
        fields.push((name, text));
    }
    serde_urlencoded::to_string(&fields)
        .map(Bytes::from)
        .map_err(|e| WebError::BadForm(format!("the upload could not be read: {e}")))
}
