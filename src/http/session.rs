//! Browser sessions as both doors see them: the portal's cookies (named `__Host-…` over https),
//! reading one from a request, constant-time token comparison, and the one resolver of "who is
//! calling" from a session cookie, used by the API's `Auth` and the pages' extractors alike.
//!
//! - `kp_session`: the session secret (`HttpOnly`, `SameSite=Lax`, `Secure` over https).
//! - `kp_login_csrf`: a double-submit token for the sign-in form, which has no session yet.
//! - `kp_flash`: the message for the next page after a redirect.
//! - `kp_oidc_state`: the `state` of a sign-in at the identity provider, for its callback.
//! - Over https every name gets the `__Host-` prefix: the browser then accepts the cookie only
//!   with `Secure`, `Path=/` and no `Domain`, so neither a sibling host nor a plain-http page
//!   can plant one (a planted sign-in token would defeat the double submit). Over plain http the
//!   bare names are used, as browsers refuse `__Host-` without `Secure`.

use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use cookie::{Cookie, SameSite};
use subtle::ConstantTimeEq;

use super::{request_id, AppState};
use crate::service::sessions::LiveSession;
use crate::service::ServiceError;

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

    /// The `state` of a sign-in at the identity provider, checked at its callback.
    pub fn oidc_state(self) -> &'static str {
        self.name("__Host-kp_oidc_state", "kp_oidc_state")
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
) -> Result<Option<LiveSession>, ServiceError> {
    let Some(secret) = cookie_value(&parts.headers, state.web.cookies().session()) else {
        return Ok(None);
    };
    match state.services.session(secret, request_id(parts)).await {
        Ok(live) => {
            tracing::Span::current().record("caller", live.ctx.caller.actor());
            Ok(Some(live))
        }
        Err(ServiceError::Unauthenticated) => Ok(None),
        Err(e) => Err(e),
    }
}
