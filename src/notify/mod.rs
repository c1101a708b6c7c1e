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
pub use webhook::{escape_chat_text, Webhook, WebhookError};

/// A URL as it may be logged: its scheme, host and port. Any user part (a user, a password,
/// or a bare token as in `https://TOKEN@hooks.example.com`) becomes `****`, and the path,
/// query and fragment are dropped (a webhook's token often is its path):
/// `smtp://u:pw@host:587/x?tls=required` becomes `smtp://****@host:587`.
///
/// A URL that does not parse is shown as its scheme only (`smtp://(unparsable)`): a raw
/// password holding `/`, `?` or `#` would otherwise be cut there and partly shown. So is one
/// with an `@` that the parser did not take as the user part's end (`smtp://u:1/x@host`
/// parses as host `u`, port 1), since that `@` may well have ended a password.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".to_owned();
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return "(not a URL)".to_owned();
    }
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) => u,
        Err(_) => return format!("{scheme}://(unparsable)"),
    };
    let has_user_info = !parsed.username().is_empty() || parsed.password().is_some();
    if rest.contains('@') && !has_user_info {
        return format!("{scheme}://(unparsable)");
    }
    let Some(host) = parsed.host_str() else {
        return format!("{scheme}://(unparsable)");
    };
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    let user = if has_user_info { "****@" } else { "" };
    format!("{scheme}://{user}{host}{port}")
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn a_urls_password_and_path_are_never_shown() {
        assert_eq!(
            redact_url("smtp://mailer:s3cret@mail.example.com:587/portal?tls=required"),
            "smtp://****@mail.example.com:587"
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
        assert_eq!(redact_url("smtp://a:b:c@h@host"), "smtp://****@host");
    }

    #[test]
    fn a_user_part_without_a_colon_is_hidden_too() {
        let shown = redact_url("https://T0KEN-s3cret@hooks.example.com/services/x");
        assert_eq!(shown, "https://****@hooks.example.com");
        assert_eq!(
            redact_url("smtp://mailer@127.0.0.1:25"),
            "smtp://****@127.0.0.1:25"
        );
    }

    #[test]
    fn no_part_of_a_raw_password_with_url_delimiters_is_shown() {
        for (url, secret) in [
            ("smtp://mailer:Xq7/ss@mail.example.com:587", "Xq7"),
            ("smtp://mailer:1/S3cr@mail.example.com:587", "S3cr"),
            ("smtp://mailer:Pw9?q=1@mail.example.com", "Pw9"),
            ("smtp://mailer:Pw8#frag@mail.example.com", "Pw8"),
            ("smtps://mailer:hunter2/x@mail.example.com", "hunter2"),
        ] {
            let shown = redact_url(url);
            assert!(
                !shown.contains(secret) && !shown.contains("mailer"),
                "{url} -> {shown}"
            );
            assert!(shown.starts_with("smtp"), "{url} -> {shown}");
        }
        // "1" is a raw password's start, parsed as a port: never shown.
        assert_eq!(
            redact_url("smtp://mailer:1/secret@mail.example.com:587"),
            "smtp://(unparsable)"
        );
        assert_eq!(redact_url("smtp://[::1:587"), "smtp://(unparsable)");
        assert_eq!(redact_url("pass word://host"), "(not a URL)");
    }
}
