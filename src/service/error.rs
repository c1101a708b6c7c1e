//! The service layer's one error type. Each variant is one kind of cause, and each says once
//! what it means to a caller: its HTTP status, its stable `code` (see
//! `../shared/spec/api.md`), the detail a person can act on, and whether it is worth logging.
//! The JSON API renders that as a problem document, the pages as an error page.

use http::StatusCode;

use crate::keys::KeyRejection;

/// What the service layer can answer besides success. Each variant is one kind of cause.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("not authenticated")]
    Unauthenticated,
    #[error("not allowed: {0}")]
    Forbidden(&'static str),
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("{detail}")]
    Invalid {
        code: &'static str,
        field: &'static str,
        detail: String,
    },
    /// The request itself is malformed (400), as opposed to well-formed but invalid (422).
    #[error("{detail}")]
    Malformed { code: &'static str, detail: String },
    /// The caller is known but this request is refused for a reason of its own (403 with
    /// `code`); `field` names the form field it concerns, if any.
    #[error("{detail}")]
    Refused {
        code: &'static str,
        field: Option<&'static str>,
        detail: &'static str,
    },
    #[error("{0}")]
    KeyRejected(KeyRejection),
    /// Unknown user, wrong password or disabled account: one answer for all.
    #[error("the username or password is not right")]
    SignInFailed,
    #[error("too many failed sign-ins; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// Every password-hashing slot is taken; answered at once rather than queued.
    #[error("too many sign-ins at once; try again in {retry_after_secs} s")]
    Busy { retry_after_secs: u64 },
    /// A sign-in through the identity provider was refused; `reason` is the audit's code.
    #[error("{detail}")]
    ProviderSignInFailed {
        reason: &'static str,
        detail: String,
    },
    /// The identity provider could not be reached or answered badly.
    #[error("the identity provider: {0}")]
    ProviderUnavailable(String),
    /// A capability this portal was started without (503 `not_configured`).
    #[error("{0}")]
    NotConfigured(&'static str),
    #[error("database: {0}")]
    Database(sqlx::Error),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for ServiceError {
    fn from(e: sqlx::Error) -> Self {
        // A lost connection means the others pooled before it may be lost too: they are
        // pinged before their next use (db::ping_when_idle).
        crate::db::note_error(&e);
        ServiceError::Database(e)
    }
}

impl ServiceError {
    pub fn invalid(field: &'static str, detail: impl Into<String>) -> Self {
        ServiceError::Invalid {
            code: "invalid_field",
            field,
            detail: detail.into(),
        }
    }
}

impl ServiceError {
    /// The HTTP status of this outcome, whichever door reports it.
    pub fn status(&self) -> StatusCode {
        match self {
            ServiceError::Unauthenticated
            | ServiceError::SignInFailed
            | ServiceError::ProviderSignInFailed { .. } => StatusCode::UNAUTHORIZED,
            ServiceError::ProviderUnavailable(_) => StatusCode::BAD_GATEWAY,
            ServiceError::Forbidden(_) | ServiceError::Refused { .. } => StatusCode::FORBIDDEN,
            ServiceError::NotFound { .. } => StatusCode::NOT_FOUND,
            ServiceError::Conflict { .. } => StatusCode::CONFLICT,
            ServiceError::Invalid { .. } | ServiceError::KeyRejected(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ServiceError::Malformed { .. } => StatusCode::BAD_REQUEST,
            ServiceError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ServiceError::Busy { .. } | ServiceError::NotConfigured(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ServiceError::Database(e) if crate::db::is_unavailable(e) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ServiceError::Database(_) | ServiceError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The stable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Unauthenticated => "unauthenticated",
            ServiceError::SignInFailed => "sign_in_failed",
            ServiceError::ProviderSignInFailed { .. } => "provider_sign_in_failed",
            ServiceError::ProviderUnavailable(_) => "provider_unavailable",
            ServiceError::Forbidden(_) => "forbidden",
            ServiceError::NotFound { .. } => "not_found",
            ServiceError::Refused { code, .. }
            | ServiceError::Conflict { code, .. }
            | ServiceError::Invalid { code, .. }
            | ServiceError::Malformed { code, .. } => code,
            ServiceError::KeyRejected(r) => r.code.as_str(),
            ServiceError::RateLimited { .. } => "rate_limited",
            ServiceError::Busy { .. } => "busy",
            ServiceError::NotConfigured(_) => "not_configured",
            ServiceError::Database(e) if crate::db::is_unavailable(e) => "database_unavailable",
            ServiceError::Database(_) | ServiceError::Internal(_) => "internal_error",
        }
    }

    /// What the caller is told: what happened and what to do. Never an internal cause, which
    /// goes to the log ([`ServiceError::log`]) with the request id instead.
    pub fn detail(&self) -> String {
        match self {
            ServiceError::Unauthenticated => {
                "send a valid API token: Authorization: Bearer <token>".into()
            }
            ServiceError::Forbidden(why) => (*why).into(),
            ServiceError::NotFound { what } => format!("no such {what}"),
            ServiceError::RateLimited { retry_after_secs } => {
                format!("too many failed sign-ins; try again in {retry_after_secs} seconds")
            }
            ServiceError::Busy { retry_after_secs } => format!(
                "too many sign-ins are in progress at once; try again in {retry_after_secs} seconds"
            ),
            ServiceError::KeyRejected(r) => r.message.clone(),
            ServiceError::Database(e) if crate::db::is_unavailable(e) => {
                "the database is not reachable right now; try again shortly".into()
            }
            ServiceError::Database(_) | ServiceError::Internal(_) => {
                "an internal error occurred; it has been logged with this request's id".into()
            }
            other => other.to_string(),
        }
    }

    /// The request field the error is about, if one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ServiceError::Invalid { field, .. } => Some(field),
            ServiceError::Refused { field, .. } => *field,
            _ => None,
        }
    }

    /// Seconds the caller should wait before trying again, when that is the answer.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ServiceError::RateLimited { retry_after_secs }
            | ServiceError::Busy { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// Logs causes that are not the caller's, inside the request's span (so with its id).
    pub fn log(&self) {
        match self {
            ServiceError::Database(e) if crate::db::is_unavailable(e) => {
                tracing::warn!(error = %e, "database unavailable")
            }
            ServiceError::Database(e) => tracing::error!(error = %e, "database error"),
            ServiceError::Internal(e) => tracing::error!(error = %e, "internal error"),
            ServiceError::ProviderUnavailable(e) => {
                tracing::warn!(error = %e, "identity provider unavailable")
            }
            _ => {}
        }
    }
}

/// Turns a constraint violation into the answer it means; every other error passes through.
pub(crate) trait ResultExt<T> {
    fn on_constraint(
        self,
        constraints: &[&str],
        answer: impl FnOnce() -> ServiceError,
    ) -> Result<T, ServiceError>;
}

impl<T, E: Into<ServiceError>> ResultExt<T> for Result<T, E> {
    fn on_constraint(
        self,
        constraints: &[&str],
        answer: impl FnOnce() -> ServiceError,
    ) -> Result<T, ServiceError> {
        self.map_err(|e| match e.into() {
            ServiceError::Database(sqlx::Error::Database(db))
                if db.constraint().is_some_and(|c| constraints.contains(&c)) =>
            {
                answer()
            }
            other => other,
        })
    }
}
