//! Sign-in and browser sessions.
//!
//! - A session is 256 random bits in an `HttpOnly` cookie; the database keeps only its
//!   SHA-256, with the session's CSRF token, so every keyportal process on the database shares
//!   it. A new session is made at every sign-in (the id is never taken from the client).
//! - Failed sign-ins are counted in the database per account and per client address; past the
//!   limit the answer is "rate limited" until the oldest failure leaves the window.
//! - Unknown user, wrong password, no password and disabled user get one and the same answer,
//!   after the same argon2 work.
//! - An attempt is counted before its password is checked, and the check runs under the one
//!   bound on password hashing ([`super::passwords`]); when that is full the answer is `Busy`.

use serde_json::json;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::{Caller, Ctx, ServiceError, Services};
use crate::store;

/// Lifetimes of browser sessions and the sign-in rate limits.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// A session unused this long is over.
    pub idle: Duration,
    /// A session is over this long after sign-in, used or not.
    pub absolute: Duration,
    /// Failed sign-ins per account within `window` before it is rate limited.
    pub max_failures_per_account: i64,
    /// Failed sign-ins per client address within `window` before it is rate limited.
    pub max_failures_per_address: i64,
    pub window: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            idle: Duration::hours(1),
            absolute: Duration::hours(12),
            max_failures_per_account: 5,
            max_failures_per_address: 20,
            window: Duration::minutes(15),
        }
    }
}

/// The hash a session is stored under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionId(pub Vec<u8>);

impl SessionId {
    fn of(secret: &str) -> SessionId {
        SessionId(Sha256::digest(secret.as_bytes()).to_vec())
    }
}

/// A sign-in attempt as the browser sent it.
pub struct SignInAttempt<'a> {
    pub username: &'a str,
    pub password: &'a str,
    /// The client's address, as the HTTP layer sees it.
    pub client_addr: &'a str,
    pub request_id: Option<&'a str>,
}

/// A session just made: the secret goes into the cookie, and is not kept.
pub struct NewSession {
    pub secret: String,
    pub username: String,
}

/// The caller behind a live session, with what the web layer needs to check forms.
pub struct LiveSession {
    pub ctx: Ctx,
    pub csrf_token: String,
}

/// 256 random bits, base64url: session secrets and CSRF tokens.
pub fn random_token() -> String {
    super::random_secret::<32>()
}

fn retry_after(secs: Option<f64>) -> u64 {
    secs.map_or(1, |s| s.ceil().max(1.0) as u64)
}

impl Services {
    /// Signs a user in: a fresh session, or `SignInFailed` / `RateLimited`. Every attempt is
    /// audited.
    #[tracing::instrument(skip_all)]
    pub async fn sign_in(&self, attempt: SignInAttempt<'_>) -> Result<NewSession, ServiceError> {
        let settings = &self.sessions;
        let username: String = attempt.username.trim().chars().take(200).collect();
        let client_addr: String = attempt.client_addr.chars().take(64).collect();
        // Insert first, then count: the attempt is counted before any password work, so
        // concurrent attempts cannot all read the same count and all go on (each sees every
        // attempt committed before its count). Chosen over advisory locks because nothing is
        // held during the argon2 work (no pooled connection pinned per attempt) and the count
        // holds across every keyportal process on the database.
        let policy = super::policy::current(&self.pool).await?;
        if !policy.local_password_sign_in && username != policy.break_glass_user {
            return Err(ServiceError::Refused {
                code: "password_sign_in_off",
                field: None,
                detail: "password sign-in is turned off here; sign in with the identity provider",
            });
        }
        let attempt_id =
            store::sessions::record_attempt(&self.pool, &username, &client_addr).await?;
        let recent = store::sessions::recent_failures(
            &self.pool,
            &username,
            &client_addr,
            settings.window.whole_seconds(),
        )
        .await?;
        let limited = if recent.for_account > settings.max_failures_per_account {
            Some(recent.account_retry_secs)
        } else if recent.from_address > settings.max_failures_per_address {
            Some(recent.address_retry_secs)
        } else {
            None
        };
        if let Some(secs) = limited {
            // Refused attempts are not failures: they must not keep the lock going forever.
            store::sessions::forget_attempt(&self.pool, attempt_id).await?;
            return Err(ServiceError::RateLimited {
                retry_after_secs: retry_after(secs),
            });
        }

        let user = store::users::by_username(&self.pool, &username).await?;
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        let matches = match self.passwords.verify(attempt.password, hash).await {
            Ok(m) => m,
            Err(e) => {
                store::sessions::forget_attempt(&self.pool, attempt_id).await?;
                return Err(e);
            }
        };

        let user = match user {
            Some(u) if matches && !u.disabled => u,
            other => {
                let reason = match other {
                    None => "unknown_user",
                    Some(u) if u.password_hash.is_none() => "no_password",
                    Some(u) if u.disabled && matches => "disabled",
                    Some(_) => "wrong_password",
                };
                // The attempt's row stays: it is the failure.
                super::audit::record_by(
                    &self.pool,
                    "anonymous",
                    attempt.request_id,
                    "session.sign_in_failed",
                    &format!("user:{username}"),
                    json!({ "client_addr": client_addr, "reason": reason }),
                )
                .await?;
                return Err(ServiceError::SignInFailed);
            }
        };

        let secret = random_token();
        let id = SessionId::of(&secret);
        let expires_at = OffsetDateTime::now_utc() + settings.absolute;
        let mut tx = self.pool.begin().await?;
        store::sessions::delete_expired(&mut *tx).await?;
        store::sessions::forget_attempt(&mut *tx, attempt_id).await?;
        store::sessions::clear_failures(&mut *tx, &user.username).await?;
        store::sessions::insert(&mut *tx, &id.0, user.id, &random_token(), expires_at).await?;
        super::audit::record_by(
            &mut *tx,
            &user.username,
            attempt.request_id,
            "session.sign_in",
            &format!("user:{}", user.username),
            json!({ "client_addr": client_addr }),
        )
        .await?;
        tx.commit().await?;
        Ok(NewSession {
            secret,
            username: user.username,
        })
    }

    /// The caller behind a session cookie's secret; `Unauthenticated` when the session is
    /// unknown, over (idle or absolute) or its user disabled.
    #[tracing::instrument(skip_all)]
    pub async fn session(
        &self,
        secret: &str,
        request_id: Option<String>,
    ) -> Result<LiveSession, ServiceError> {
        if secret.is_empty() || secret.len() > 100 {
            return Err(ServiceError::Unauthenticated);
        }
        let id = SessionId::of(secret);
        let recheck = self
            .oidc
            .as_ref()
            .map(|p| p.settings.recheck.whole_seconds());
        let found = store::sessions::find_live(
            &self.pool,
            &id.0,
            self.sessions.idle.whole_seconds(),
            recheck,
        )
        .await?
        .ok_or(ServiceError::Unauthenticated)?;
        if found.provider_check_due
            && !self
                .recheck_at_provider(found.user_id, request_id.as_deref())
                .await?
        {
            return Err(ServiceError::Unauthenticated);
        }
        if found.stale {
            store::sessions::touch(&self.pool, &id.0).await?;
        }
        Ok(LiveSession {
            ctx: Ctx {
                caller: Caller::User {
                    id: found.user_id,
                    username: found.username,
                    role: found.role,
                },
                request_id,
                session: Some(id),
            },
            csrf_token: found.csrf_token,
        })
    }

    /// Ends the caller's browser session.
    #[tracing::instrument(skip_all)]
    pub async fn sign_out(&self, ctx: &Ctx) -> Result<(), ServiceError> {
        let Some(session) = &ctx.session else {
            return Ok(());
        };
        let mut tx = self.pool.begin().await?;
        if store::sessions::delete(&mut *tx, &session.0).await? > 0 {
            super::audit::record(
                &mut *tx,
                ctx,
                "session.sign_out",
                &format!("user:{}", ctx.caller.actor()),
                json!({}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_hashes_of_distinct_secrets() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_ne!(SessionId::of(&a).0, a.as_bytes());
    }
}
