//! A chat tool's incoming webhook: each notice is POSTed as one JSON object,
//! `{"kind": ..., "text": ..., ...}` (Slack, Mattermost and Rocket.Chat show `text`).

use std::time::Duration;

use super::redact_url;

const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("KEYPORTAL_WEBHOOK_URL {url} is not an http(s) URL")]
    Url { url: String },
    #[error("cannot make the webhook's HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("the JSON of a notice cannot be written: {0}")]
    Json(#[source] serde_json::Error),
    /// The request did not complete (connection, TLS, timeout). The error carries no URL.
    #[error("the webhook {url} could not be reached: {source}")]
    Send {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the webhook {url} answered {status}")]
    Status { url: String, status: u16 },
}

impl WebhookError {
    /// Whether this failure concerns only this payload: a 4xx answer (the hook took the
    /// request and refused what it said), except 408 and 429, which say to come back later.
    /// Connection failures, timeouts and 5xx mean the hook is down for every notice.
    pub fn is_about_the_message(&self) -> bool {
        match self {
            WebhookError::Json(_) => true,
            WebhookError::Status { status, .. } => {
                (400..500).contains(status) && !matches!(status, 408 | 429)
            }
            _ => false,
        }
    }
}

/// `text` as a chat tool shows it literally: `&`, `<` and `>` escaped as Slack and Mattermost
/// require, so a key's title or a request's reason cannot make a link (`<https://x|click>`),
/// a mention (`<!channel>`) or other markup in the message.
pub fn escape_chat_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// The webhook's address and client. Its `Debug` shows only the scheme and host.
#[derive(Clone)]
pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    shown: String,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("url", &self.shown).finish()
    }
}

impl Webhook {
    pub fn new(url: &str) -> Result<Webhook, WebhookError> {
        let shown = redact_url(url);
        let parsed = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| WebhookError::Url { url: shown.clone() })?;
        let client = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(WebhookError::Client)?;
        Ok(Webhook {
            client,
            url: parsed,
            shown,
        })
    }

    /// Where it posts, as it may be logged.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// POSTs `body`; `Ok` on any 2xx answer.
    #[tracing::instrument(skip_all, fields(webhook = %self.shown))]
    pub async fn post(&self, body: &serde_json::Value) -> Result<(), WebhookError> {
        let bytes = serde_json::to_vec(body).map_err(WebhookError::Json)?;
        let answer = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bytes)
            .send()
            .await
            .map_err(|e| WebhookError::Send {
                url: self.shown.clone(),
                source: e.without_url(),
            })?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(WebhookError::Status {
                url: self.shown.clone(),
                status: status.as_u16(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_markup_in_text_is_escaped() {
        assert_eq!(
            escape_chat_text("<!channel> <https://evil.example|click> a&b"),
            "&lt;!channel&gt; &lt;https://evil.example|click&gt; a&amp;b"
        );
        assert_eq!(escape_chat_text("&amp;"), "&amp;amp;");
        assert_eq!(escape_chat_text("plain text"), "plain text");
    }

    #[test]
    fn only_a_refusal_of_the_payload_is_about_the_message() {
        let status = |status| WebhookError::Status {
            url: "http://h".into(),
            status,
        };
        assert!(status(400).is_about_the_message());
        assert!(status(413).is_about_the_message());
        assert!(!status(429).is_about_the_message());
        assert!(!status(408).is_about_the_message());
        assert!(!status(500).is_about_the_message());
        assert!(!status(503).is_about_the_message());
    }
}
