//! The HTTP layer's error type and its RFC 9457 problem-details rendering.
//!
//! Every error response is `application/problem+json` with a stable `code`. A service-layer
//! error says its own status, code and detail; causes that are not the client's (database
//! faults) are logged when the response is made, inside the request's span, so the log line
//! carries the request id and the real cause; the client sees only what it can act on.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::service::ServiceError;

/// What an HTTP handler can fail with: the service layer's answer, or a fault of the request
/// itself that no service function saw (no route, a body too large or unreadable, a browser
/// write without its CSRF token).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no route or object at this address")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("the request body is larger than allowed")]
    PayloadTooLarge,
    /// A state-changing request on a browser session without the session's CSRF token.
    #[error("missing or wrong CSRF token")]
    CsrfRejected,
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Service(e.into())
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
/// RFC 9457 problem details, served as `application/problem+json`.
pub struct Problem {
    #[serde(rename = "type")]
    #[schema(example = "/problems/not_found")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
    /// With `key_compromised`: what made the key compromised (`blocklisted`, `small_factor`,
    /// `fermat`, `roca`, `shared_prime`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<crate::keys::CompromiseReason>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// One failed field of a request (`errors` member of a problem document).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: &'static str,
    pub code: &'static str,
    pub message: String,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            type_uri: format!("/problems/{code}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            code,
            reason: None,
            errors: Vec::new(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut res = (status, axum::Json(self)).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        res
    }
}

impl Problem {
    /// The problem document of a service-layer answer.
    pub fn of(e: &ServiceError) -> Problem {
        let mut p = Problem::new(e.status(), e.code(), e.detail());
        if let ServiceError::KeyRejected(r) = e {
            p.reason = r.reason;
        }
        if let Some(field) = e.field() {
            p.errors.push(FieldError {
                field,
                code: e.code(),
                message: p.detail.clone(),
            });
        }
        p
    }
}

impl ApiError {
    pub fn problem(&self) -> Problem {
        match self {
            ApiError::NotFound => Problem::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "nothing here: check the address",
            ),
            ApiError::MethodNotAllowed => Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this address does not accept that HTTP method",
            ),
            ApiError::BadRequest { code, detail } => {
                Problem::new(StatusCode::BAD_REQUEST, code, detail.clone())
            }
            ApiError::PayloadTooLarge => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than this server accepts",
            ),
            ApiError::CsrfRejected => Problem::new(
                StatusCode::FORBIDDEN,
                "csrf_token_invalid",
                "a request made with the browser session must carry the session's CSRF token \
                 (form field csrf_token or header X-CSRF-Token); reload the page and try again",
            ),
            ApiError::Service(e) => Problem::of(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = self.problem().into_response();
        if let ApiError::Service(e) = &self {
            e.log();
            if matches!(e, ServiceError::Unauthenticated) {
                res.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            if let Some(secs) = e.retry_after() {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
        }
        res
    }
}
