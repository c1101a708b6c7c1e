//! The service layer: every rule of keyportal, whatever the door (JSON API, HTML forms, CLI).
//! Web handlers parse input, call one function here, and render the result.
//!
//! - Authorization: [`authorize`] is the one place that decides who may do what.
//! - Keys are validated on the way in and again on every read, under the current policy.
//! - Every change writes its audit event in the same transaction as the change.

pub mod access;
pub mod access_requests;
pub mod audit;
pub mod authorized_keys;
pub mod blocklist;
pub mod certificates;
pub mod compromised;
pub mod dashboard;
pub mod effective_access;
mod error;
pub mod grants;
pub mod groups;
pub mod keys;
pub mod notifications;
pub mod oidc;
pub mod passwords;
pub mod policy;
pub mod servers;
pub mod sessions;
pub mod tokens;
pub mod users;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::PgPool;

pub use access::{authorize, Action, Caller};
pub(crate) use error::ResultExt;
pub use error::ServiceError;

use crate::store::Page;

/// `N` random bytes from the operating system, base64url: every secret keyportal makes
/// (passwords it generates, API tokens, session ids, CSRF tokens) comes from here.
pub fn random_secret<const N: usize>() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An object id from a URL path: anything that is not a UUID is simply not found.
pub fn object_id(text: &str, what: &'static str) -> Result<uuid::Uuid, ServiceError> {
    text.parse().map_err(|_| ServiceError::NotFound { what })
}

/// Counters exported at `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Validations on the way in (submission, import, validate endpoint).
    pub validations_write: AtomicU64,
    /// Validations of stored keys at read time (lists, reads, authorized_keys).
    pub validations_read: AtomicU64,
    /// Stored keys found invalid under the current policy at read time.
    pub invalid_on_read: AtomicU64,
    /// Answers to servers' login questions, by [`LoginEndpoint`] and [`LoginOutcome`].
    login_answers: [[AtomicU64; 3]; 2],
}

/// What a server asks at login time (`fetch-keys`, `fetch-principals`).
#[derive(Debug, Clone, Copy)]
pub enum LoginEndpoint {
    AuthorizedKeys,
    Principals,
}

/// How a login question was answered: the "refused" and "failed" rates are what an alert on
/// servers' fetch failures watches (a revoked server token, the database down).
#[derive(Debug, Clone, Copy)]
pub enum LoginOutcome {
    /// 2xx: an answer (possibly empty).
    Answered,
    /// 4xx: the token, server or query was refused; the server gets no keys.
    Refused,
    /// 5xx: the portal failed; the server gets no keys (or its cache).
    Failed,
}

impl Metrics {
    pub fn render(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "# HELP keyportal_key_validations_total Key validations by the validator.\n\
             # TYPE keyportal_key_validations_total counter\n\
             keyportal_key_validations_total{{when=\"write\"}} {}\n\
             keyportal_key_validations_total{{when=\"read\"}} {}\n\
             # HELP keyportal_keys_invalid_on_read_total Stored keys that failed validation at read time.\n\
             # TYPE keyportal_keys_invalid_on_read_total counter\n\
             keyportal_keys_invalid_on_read_total {}\n",
            g(&self.validations_write),
            g(&self.validations_read),
            g(&self.invalid_on_read)
        ) + &self.render_login_answers()
    }

    pub fn count_login_answer(&self, endpoint: LoginEndpoint, outcome: LoginOutcome) {
        self.login_answers[endpoint as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn render_login_answers(&self) -> String {
        let mut out = String::from(
            "# HELP keyportal_login_answers_total Answers to servers' login questions (fetch-keys, fetch-principals) by outcome.\n\
             # TYPE keyportal_login_answers_total counter\n",
        );
        for (endpoint, name) in [
            (LoginEndpoint::AuthorizedKeys, "authorized_keys"),
            (LoginEndpoint::Principals, "principals"),
        ] {
            for (outcome, label) in [
                (LoginOutcome::Answered, "answered"),
                (LoginOutcome::Refused, "refused"),
                (LoginOutcome::Failed, "failed"),
            ] {
                out.push_str(&format!(
                    "keyportal_login_answers_total{{endpoint=\"{name}\",outcome=\"{label}\"}} {}\n",
                    self.login_answers[endpoint as usize][outcome as usize].load(Ordering::Relaxed)
                ));
            }
        }
        out
    }
}

/// The service layer's handle: the pool, the counters, and the bound on password hashing.
#[derive(Clone)]
pub struct Services {
    pub pool: PgPool,
    /// Streaming replicas for the login path's reads (none unless configured).
    pub replicas: Arc<crate::db::replicas::ReadReplicas>,
    pub metrics: Arc<Metrics>,
    pub sessions: sessions::SessionSettings,
    pub passwords: Arc<passwords::PasswordHashing>,
    /// The organisation's identity provider, when sign-in through it is configured.
    pub oidc: Option<Arc<crate::oidc::OidcProvider>>,
    /// The user and host certificate authorities (`serve` always has them).
    pub ca: Option<Arc<crate::ca::Authorities>>,
}

impl Services {
    /// Whether the database answers within 3 s (`/readyz`).
    #[tracing::instrument(skip_all)]
    pub async fn ready(&self) -> Result<(), ServiceError> {
        match tokio::time::timeout(
            std::time::Duration::from_secs(3),
            crate::store::ping(&self.pool),
        )
        .await
        {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(ServiceError::Database(sqlx::Error::PoolTimedOut)),
        }
    }

    pub fn new(pool: PgPool) -> Self {
        Services {
            pool,
            replicas: Arc::default(),
            metrics: Arc::new(Metrics::default()),
            sessions: sessions::SessionSettings::default(),
            passwords: Arc::new(passwords::PasswordHashing::default()),
            oidc: None,
            ca: None,
        }
    }
}

/// Who is asking and under which request id (for audit events and logs).
#[derive(Debug, Clone)]
pub struct Ctx {
    pub caller: Caller,
    pub request_id: Option<String>,
    /// The browser session the request came in on, if it did.
    pub session: Option<sessions::SessionId>,
}

impl Ctx {
    /// The operator's commands on the database host; audited as actor `cli`.
    pub fn command_line() -> Ctx {
        Ctx {
            caller: Caller::CommandLine,
            request_id: None,
            session: None,
        }
    }
}

/// A page of results with the cursor of the next page.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// List parameters as the API receives them: `limit` (default 50, at most 500), `cursor`, which
/// must be one this list could have returned (`shape`).
pub fn page(
    limit: Option<i64>,
    cursor: Option<&str>,
    shape: crate::store::CursorShape,
) -> Result<Page, ServiceError> {
    let limit = limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ServiceError::invalid(
            "limit",
            "limit must be between 1 and 500",
        ));
    }
    let after =
        match cursor {
            None | Some("") => None,
            Some(c) => Some(crate::store::decode_cursor(c, shape).ok_or_else(|| {
                ServiceError::Malformed {
                    code: "invalid_cursor",
                    detail: "the cursor is not one this API returned; start again without it"
                        .into(),
                }
            })?),
        };
    Ok(Page { limit, after })
}
