//! What forms share: errors shown next to their field, dates, and times as people read them.

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

/// The `YYYY-MM-DD` a date input shows for an expiry.
pub fn date_value(t: Option<OffsetDateTime>) -> String {
    t.map(|t| {
        let t = t.to_offset(time::UtcOffset::UTC);
        format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
    })
    .unwrap_or_default()
}
