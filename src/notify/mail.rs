//! Email over SMTP with lettre: `smtp://host:port` (plain; only for a relay on the same host
//! or network), `smtp://host:587?tls=required` (STARTTLS, refused if the server does not offer
//! it) and `smtps://host:465` (implicit TLS). A user and password in the URL are sent with
//! AUTH; TLS uses rustls with the system's CA certificates.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::Error as SmtpError;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::redact_url;

/// How long one SMTP conversation (connect, greeting, TLS, AUTH, the message) may take before
/// it counts as failed. lettre's own `timeout` bounds only the TCP connect, so `send` puts
/// this deadline on the whole conversation: a server that accepts the connection and never
/// answers would otherwise hold the round, and its lock, forever.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Reply codes that say the server or the session, not one message, is the trouble: 421
/// (service closing), 454 (TLS or authentication temporarily unavailable) and the AUTH
/// refusals (432, 530, 534, 535, 538). Any other 4xx/5xx reply concerns the message or its
/// recipient (a mailbox busy or unknown, a message too large) and leaves the server usable.
const CHANNEL_CODES: [u16; 7] = [421, 432, 454, 530, 534, 535, 538];

/// One plain-text message to one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("KEYPORTAL_SMTP_URL {url} is not usable (smtp://host:port, smtp://host:port?tls=required or smtps://host:port): {source}")]
    Url {
        url: String,
        #[source]
        source: SmtpError,
    },
    #[error("KEYPORTAL_SMTP_CA_FILE {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("KEYPORTAL_SMTP_FROM {from:?} is not an email address: {source}")]
    From {
        from: String,
        #[source]
        source: lettre::address::AddressError,
    },
    #[error("{to:?} is not an email address: {source}")]
    Recipient {
        to: String,
        #[source]
        source: lettre::address::AddressError,
    },
    #[error("the message to {to} cannot be built: {source}")]
    Build {
        to: String,
        #[source]
        source: lettre::error::Error,
    },
    /// The server refused this message or its recipient (a 4xx or 5xx reply other than
    /// [`CHANNEL_CODES`], e.g. 450 for one busy mailbox or 550 for an unknown one) once the
    /// conversation worked: other messages may still go.
    #[error("the SMTP server {server} refused the message to {to}: {source}")]
    Refused {
        server: String,
        to: String,
        #[source]
        source: SmtpError,
    },
    /// The server could not be reached, dropped the connection, failed TLS or AUTH, or
    /// answered 421: the next message would most likely fail the same way.
    #[error("the SMTP server {server} is not taking mail: {source}")]
    Unavailable {
        server: String,
        #[source]
        source: SmtpError,
    },
    /// The whole conversation took longer than the mailer's timeout (a server that accepts
    /// the connection and then says nothing): the server counts as unavailable.
    #[error("the SMTP server {server} is not taking mail: no answer within {after:?}")]
    TimedOut { server: String, after: Duration },
}

impl MailError {
    /// Whether this failure concerns only the message (the server is otherwise working).
    pub fn is_about_the_message(&self) -> bool {
        matches!(
            self,
            MailError::Recipient { .. } | MailError::Build { .. } | MailError::Refused { .. }
        )
    }
}

/// An SMTP client with its sender address. Its `Debug` shows the URL without the password.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    server: String,
    timeout: Duration,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("server", &self.server)
            .field("from", &self.from.to_string())
            .finish()
    }
}

impl Mailer {
    /// A client for `url` sending as `from` (`Name <address>` or a bare address). Nothing is
    /// connected yet.
    pub fn new(url: &str, from: &str) -> Result<Mailer, MailError> {
        Mailer::with_ca(url, from, None)
    }

    /// Like [`Mailer::new`], trusting also the CA certificates in `ca_pem` (an internal CA
    /// that signed the SMTP server's certificate), for STARTTLS and TLS alike.
    pub fn with_ca(
        url: &str,
        from: &str,
        ca_pem: Option<(&str, &[u8])>,
    ) -> Result<Mailer, MailError> {
        let server = redact_url(url);
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|source| MailError::Url {
                url: server.clone(),
                source,
            })?
            .timeout(Some(SMTP_TIMEOUT));
        if let Some((path, pem)) = ca_pem {
            let ca_error = |reason: String| MailError::CaFile {
                path: path.to_owned(),
                reason,
            };
            let parsed = reqwest::Url::parse(url).map_err(|e| ca_error(e.to_string()))?;
            let host = parsed
                .host_str()
                .ok_or_else(|| ca_error("the SMTP URL names no host".into()))?
                .to_owned();
            let cert = Certificate::from_pem(pem).map_err(|e| ca_error(e.to_string()))?;
            let params = TlsParameters::builder(host)
                .add_root_certificate(cert)
                .build_rustls()
                .map_err(|e| ca_error(e.to_string()))?;
            let mode = parsed
                .query_pairs()
                .find(|(k, _)| k == "tls")
                .map(|(_, v)| v.into_owned());
            // The same modes from_url chose, now with the extra CA.
            let tls = match (parsed.scheme(), mode.as_deref()) {
                ("smtps", _) => Tls::Wrapper(params),
                (_, Some("required")) => Tls::Required(params),
                (_, Some("opportunistic")) => Tls::Opportunistic(params),
                _ => {
                    return Err(ca_error(
                        "the SMTP URL uses no TLS (smtps://, or ?tls=required): a CA would \
                         change nothing"
                            .into(),
                    ))
                }
            };
            builder = builder.tls(tls);
        }
        let transport = builder.build();
        let from = from
            .trim()
            .parse::<Mailbox>()
            .map_err(|source| MailError::From {
                from: from.to_owned(),
                source,
            })?;
        Ok(Mailer {
            transport,
            from,
            server,
            timeout: SMTP_TIMEOUT,
        })
    }

    /// The same mailer with another deadline for one whole conversation ([`SMTP_TIMEOUT`]
    /// unless set; tests use a short one).
    pub fn with_timeout(mut self, timeout: Duration) -> Mailer {
        self.timeout = timeout;
        self
    }

    /// The server, as it may be logged (no password).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends one message; `Ok` once the server has accepted it for delivery.
    #[tracing::instrument(skip_all, fields(server = %self.server, to = %email.to))]
    pub async fn send(&self, email: &Email) -> Result<(), MailError> {
        let to = email
            .to
            .parse::<Mailbox>()
            .map_err(|source| MailError::Recipient {
                to: email.to.clone(),
                source,
            })?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.as_str())
            .header(ContentType::TEXT_PLAIN)
            .body(email.body.clone())
            .map_err(|source| MailError::Build {
                to: email.to.clone(),
                source,
            })?;
        let sent = tokio::time::timeout(self.timeout, self.transport.send(message))
            .await
            .map_err(|_| MailError::TimedOut {
                server: self.server.clone(),
                after: self.timeout,
            })?;
        match sent {
            Ok(_) => Ok(()),
            Err(source) if refuses_only_the_message(&source) => Err(MailError::Refused {
                server: self.server.clone(),
                to: email.to.clone(),
                source,
            }),
            Err(source) => Err(MailError::Unavailable {
                server: self.server.clone(),
                source,
            }),
        }
    }
}

/// Whether lettre's error is a reply about this message (see [`CHANNEL_CODES`]), rather than
/// a failure of the connection, TLS, AUTH or the server as a whole.
fn refuses_only_the_message(e: &SmtpError) -> bool {
    (e.is_transient() || e.is_permanent())
        && e.status()
            .is_some_and(|c| !CHANNEL_CODES.contains(&u16::from(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_connection_forms_are_accepted_and_others_refused() {
        for url in [
            "smtp://127.0.0.1:2525",
            "smtp://user:pw@mail.example.com:587?tls=required",
            "smtps://mail.example.com:465",
        ] {
            Mailer::new(url, "keyportal <keys@example.com>").expect(url);
        }
        let e = Mailer::new("http://user:hunter2@mail.example.com", "keys@example.com")
            .expect_err("http is no SMTP URL");
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(matches!(
            Mailer::new("smtp://127.0.0.1:2525", "not an address"),
            Err(MailError::From { .. })
        ));
    }

    #[test]
    fn a_mailers_debug_form_hides_the_password() {
        let m = Mailer::new("smtp://u:hunter2@127.0.0.1:2525", "keys@example.com").unwrap();
        let shown = format!("{m:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("****@127.0.0.1:2525"),
            "{shown}"
        );
    }
}
