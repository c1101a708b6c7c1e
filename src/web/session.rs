//! The pages' side of sessions: the signed-in extractors, forms accepted only with the
//! session's CSRF token, and flash messages. Cookies and the session resolver are in
//! `http::session`, shared with the API.
//!
//! Every state-changing form carries the session's `csrf_token` (synchronizer token); [`Posted`]
//! refuses a form without it before the handler runs, so no handler can forget.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;

use serde::de::DeserializeOwned;

use super::{Viewer, WebError};
use crate::http::session::{live_session, tokens_match};
use crate::http::AppState;
use crate::service::sessions::LiveSession;

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
