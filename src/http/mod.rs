//! The base both doors stand on: the state every handler reaches, the request id, problem
//! documents (`error`), the checks at the door (`input`), cookies and "who is calling" from a
//! browser session (`session`), and health. It knows neither the API nor the pages; `server`
//! composes them.

pub mod error;
pub mod health;
pub mod input;
pub mod login_metrics;
pub mod session;

use axum::http::HeaderName;
use sqlx::PgPool;
use tower_http::request_id::RequestId;

use crate::service::Services;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// What every handler can reach: the service layer, and how the browser side is set up.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub web: WebSettings,
}

/// The request id the middleware gave this request.
pub fn request_id(parts: &axum::http::request::Parts) -> Option<String> {
    parts
        .extensions
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .map(str::to_owned)
}

/// The request id as an extractor.
pub struct RequestIdText(pub Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestIdText {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(RequestIdText(request_id(parts)))
    }
}

/// Browser-facing settings.
#[derive(Debug, Clone, Default)]
pub struct WebSettings {
    /// Mark cookies `Secure` and name them `__Host-…` (the portal is reached over https).
    pub secure_cookies: bool,
    /// The portal's address as servers reach it, for the sshd setup shown per server.
    pub public_url: Option<String>,
}

impl WebSettings {
    /// The cookies' names and attributes for this portal.
    pub fn cookies(&self) -> session::Cookies {
        session::Cookies::new(self.secure_cookies)
    }
}

impl AppState {
    pub fn new(pool: PgPool) -> Self {
        AppState {
            services: Services::new(pool),
            web: WebSettings::default(),
        }
    }
}
