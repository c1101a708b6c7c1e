//! The HTTP layer's error type and its RFC 9457 problem-details rendering.
//!
//! Every error response is `application/problem+json` with a stable `code`. Causes that are
//! not the client's (database faults) are logged here, inside the request's span, so the log
//! line carries the request id and the real cause; the client sees only what it can act on.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::keys::KeyRejection;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no route or object at this address")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("{0}")]
    KeyRejected(KeyRejection),
    #[error("the database is unavailable: {0}")]
    DatabaseUnavailable(#[source] sqlx::Error),
    #[error("not authenticated")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{detail}")]
    Refused {
        code: &'static str,
        detail: &'static str,
    },
    #[error("{what} not found")]
    ObjectNotFound { what: &'static str },
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("{detail}")]
    Invalid {
        code: &'static str,
        field: &'static str,
        detail: String,
    },
    #[error("the request body is larger than allowed")]
    PayloadTooLarge,
    #[error("sign-in failed")]
    SignInFailed,
    #[error("rate limited for {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// Every password-hashing slot is taken (a flood of sign-ins); try again shortly.
    #[error("busy for {retry_after_secs} s")]
    Busy { retry_after_secs: u64 },
    /// A state-changing request on a browser session without the session's CSRF token.
    #[error("missing or wrong CSRF token")]
    CsrfRejected,
    #[error("internal error: {0}")]
    Internal(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&e) {
            ApiError::DatabaseUnavailable(e)
        } else {
            ApiError::Database(e)
        }
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
            ApiError::KeyRejected(r) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                r.code.as_str(),
                r.message.clone(),
            ),
            ApiError::DatabaseUnavailable(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the database is not reachable right now; try again shortly",
            ),
            ApiError::Unauthenticated => Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "send a valid API token: Authorization: Bearer <token>",
            ),
            ApiError::Forbidden(why) => Problem::new(StatusCode::FORBIDDEN, "forbidden", *why),
            ApiError::Refused { code, detail } => Problem::new(StatusCode::FORBIDDEN, code, *detail),
            ApiError::ObjectNotFound { what } => Problem::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no such {what}"),
            ),
            ApiError::Conflict { code, detail } => {
                Problem::new(StatusCode::CONFLICT, code, detail.clone())
            }
            ApiError::Invalid {
                code,
                field,
                detail,
            } => {
                let mut p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail.clone());
                p.errors.push(FieldError {
                    field,
                    code,
                    message: detail.clone(),
                });
                p
            }
            ApiError::PayloadTooLarge => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than this server accepts",
            ),
            ApiError::SignInFailed => Problem::new(
                StatusCode::UNAUTHORIZED,
                "sign_in_failed",
                "the username or password is not right",
            ),
            ApiError::RateLimited { retry_after_secs } => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many failed sign-ins; try again in {retry_after_secs} seconds"),
            ),
            ApiError::Busy { retry_after_secs } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!(
                    "too many passwords are being checked at once; try again in {retry_after_secs} seconds"
                ),
            ),
            ApiError::CsrfRejected => Problem::new(
                StatusCode::FORBIDDEN,
                "csrf_token_invalid",
                "a request made with the browser session must carry the session's CSRF token \
                 (form field csrf_token or header X-CSRF-Token); reload the page and try again",
            ),
            ApiError::Internal(_) => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "an internal error occurred; it has been logged with this request's id",
            ),
            ApiError::Database(_) => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "an internal error occurred; it has been logged with this request's id",
            ),
        }
    }
}

impl ApiError {
    /// Logs causes that are not the client's, inside the request's span (so with its id).
    pub fn log(&self) {
        match self {
            ApiError::DatabaseUnavailable(e) => tracing::warn!(error = %e, "database unavailable"),
            ApiError::Database(e) => tracing::error!(error = %e, "database error"),
            ApiError::Internal(e) => tracing::error!(error = %e, "internal error"),
            _ => {}
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let mut res = self.problem().into_response();
        if matches!(self, ApiError::Unauthenticated) {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::RateLimited { retry_after_secs } | ApiError::Busy { retry_after_secs } =
            self
        {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        res
    }
}

impl From<crate::service::ServiceError> for ApiError {
    fn from(e: crate::service::ServiceError) -> Self {
        use crate::service::ServiceError as S;
        match e {
            S::Unauthenticated => ApiError::Unauthenticated,
            S::Forbidden(why) => ApiError::Forbidden(why),
            S::Refused { code, detail, .. } => ApiError::Refused { code, detail },
            S::NotFound { what } => ApiError::ObjectNotFound { what },
            S::Conflict { code, detail } => ApiError::Conflict { code, detail },
            S::Invalid {
                code,
                field,
                detail,
            } => ApiError::Invalid {
                code,
                field,
                detail,
            },
            S::Malformed { code, detail } => ApiError::BadRequest { code, detail },
            S::KeyRejected(r) => ApiError::KeyRejected(r),
            S::Database(e) => e.into(),
            S::Internal(e) => ApiError::Internal(e),
            S::SignInFailed => ApiError::SignInFailed,
            S::RateLimited { retry_after_secs } => ApiError::RateLimited { retry_after_secs },
            S::Busy { retry_after_secs } => ApiError::Busy { retry_after_secs },
        }
    }
}
