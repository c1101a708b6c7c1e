//! What forms share: a page's form as shown (fresh, or again with what is wrong), what a
//! posted form leads to, errors shown next to their field, dates, and times as people read
//! them.

use std::future::Future;

use axum::http::StatusCode;
use axum::response::Response;
use time::{Date, OffsetDateTime, Time};

use super::WebError;
use crate::service::ServiceError;

/// A message for one field of a form (`field` empty: for the whole form).
#[derive(Debug, Clone)]
pub struct FieldMessage {
    pub field: &'static str,
    pub message: String,
}

/// The messages of a rejected form.
#[derive(Debug, Clone, Default)]
pub struct Errors(pub Vec<FieldMessage>);

impl Errors {
    pub fn one(field: &'static str, message: impl Into<String>) -> Errors {
        Errors(vec![FieldMessage {
            field,
            message: message.into(),
        }])
    }

    /// The message for `field`, if any.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|m| m.field == field)
            .map(|m| m.message.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Messages of fields the form does not show next to an input.
    pub fn general(&self, shown: &[&str]) -> Vec<&str> {
        self.0
            .iter()
            .filter(|m| !shown.contains(&m.field))
            .map(|m| m.message.as_str())
            .collect()
    }
}

/// A page's form as it is shown: fresh on a GET (200), or as posted with what is wrong (422).
#[derive(Debug)]
pub struct FormView<F> {
    pub status: StatusCode,
    pub form: F,
    pub errors: Errors,
}

impl<F: Default> FormView<F> {
    pub fn fresh() -> FormView<F> {
        FormView {
            status: StatusCode::OK,
            form: F::default(),
            errors: Errors::default(),
        }
    }
}

impl<F> FormView<F> {
    /// The form as posted, with what is wrong with it (422).
    pub fn rejected(form: F, errors: Errors) -> FormView<F> {
        FormView {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            form,
            errors,
        }
    }

    /// The same status and messages over another form (a page showing a different form than
    /// the one posted).
    pub fn with_form<G>(self, form: G) -> FormView<G> {
        FormView {
            status: self.status,
            form,
            errors: self.errors,
        }
    }
}

/// Why a posted form did not go through: the page's own checks, or the service's answer.
#[derive(Debug)]
pub enum Refusal {
    Form(Errors),
    Service(ServiceError),
}

impl From<Errors> for Refusal {
    fn from(e: Errors) -> Self {
        Refusal::Form(e)
    }
}

impl From<ServiceError> for Refusal {
    fn from(e: ServiceError) -> Self {
        Refusal::Service(e)
    }
}

/// What a posted form leads to: on success `done` (a redirect with a flash message, or a
/// page); a refusal the form can show is `again` with the form as posted and the messages
/// (422); any other error is the error page with its own status.
pub async fn after_submit<T, F, Fut>(
    outcome: Result<T, Refusal>,
    form: F,
    done: impl FnOnce(T) -> Response,
    again: impl FnOnce(FormView<F>) -> Fut,
) -> Result<Response, WebError>
where
    Fut: Future<Output = Result<Response, WebError>>,
{
    let errors = match outcome {
        Ok(value) => return Ok(done(value)),
        Err(Refusal::Form(errors)) => errors,
        Err(Refusal::Service(e)) => form_errors(e)?,
    };
    again(FormView::rejected(form, errors)).await
}

/// A service error the user can fix becomes messages on the form; the rest (not found,
/// forbidden, database) stays an error page with its own status.
pub fn form_errors(e: ServiceError) -> Result<Errors, WebError> {
    match e {
        ServiceError::Invalid { field, detail, .. } => Ok(Errors::one(field, detail)),
        ServiceError::Refused {
            field: Some(field),
            detail,
            ..
        } => Ok(Errors::one(field, detail)),
        ServiceError::KeyRejected(r) => Ok(Errors::one(
            "key",
            format!("{} ({})", r.message, r.code.as_str()),
        )),
        ServiceError::Conflict { detail, .. } | ServiceError::Malformed { detail, .. } => {
            Ok(Errors::one("", detail))
        }
        other => Err(WebError::Service(other)),
    }
}

/// `YYYY-MM-DD` from a date input (empty: none) as the start of that day, UTC.
pub fn parse_date(field: &'static str, text: &str) -> Result<Option<OffsetDateTime>, Errors> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, &format)
        .map(|d| Some(d.with_time(Time::MIDNIGHT).assume_utc()))
        .map_err(|_| Errors::one(field, format!("{text:?} is not a date (YYYY-MM-DD)")))
}

/// Times as the UI shows them: `2026-11-27 14:05 UTC`.
pub trait Shown {
    fn shown(&self) -> String;
}

impl Shown for OffsetDateTime {
    fn shown(&self) -> String {
        let t = self.to_offset(time::UtcOffset::UTC);
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        )
    }
}

impl Shown for Option<OffsetDateTime> {
    fn shown(&self) -> String {
        self.as_ref()
            .map_or_else(|| "never".to_owned(), Shown::shown)
    }
}
