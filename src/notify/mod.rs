//! The notifications' transports: email over SMTP ([`Mailer`], lettre) and a JSON POST to a
//! chat tool's incoming webhook ([`Webhook`]). They deliver what they are given and say whether
//! it was accepted; what is due, to whom, and the record that it went out are the service's
//! business (`service/notifications.rs`).
//!
//! Both addresses can hold secrets (an SMTP password, a webhook's token in its path), so
//! neither is ever shown whole: logs and errors carry [`redact_url`]'s form.

mod mail;
mod webhook;

pub use mail::{Email, MailError, Mailer};
pub use webhook::{Webhook, WebhookError};

/// A URL as it may be logged: the password of its user part replaced by `****`, and its path
/// and query dropped (a webhook's token often is its path). `smtp://u:pw@host:587/x?tls=required`
/// becomes `smtp://u:****@host:587`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".to_owned();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let shown = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:****@{host}"),
            None => format!("{user_info}@{host}"),
        },
        None => authority.to_owned(),
    };
    format!("{scheme}://{shown}")
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn a_urls_password_and_path_are_never_shown() {
        assert_eq!(
            redact_url("smtp://mailer:s3cret@mail.example.com:587/portal?tls=required"),
            "smtp://mailer:****@mail.example.com:587"
        );
        assert_eq!(
            redact_url("smtps://mail.example.com"),
            "smtps://mail.example.com"
        );
        assert_eq!(
            redact_url("https://hooks.example.com/services/T0/B0/token"),
            "https://hooks.example.com"
        );
        assert_eq!(redact_url("p@ss:word"), "(not a URL)");
        assert_eq!(redact_url("smtp://a:b:c@h@host"), "smtp://a:****@host");
    }
}
