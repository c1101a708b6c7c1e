//! Browser sessions and failed sign-ins. Sessions are keyed by a hash of the cookie's secret.

use sqlx::PgExecutor;
use time::OffsetDateTime;

use crate::domain::Role;

/// The user behind a live session.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionPrincipal {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    pub csrf_token: String,
    /// `last_seen_at` is over a minute old.
    pub stale: bool,
    /// The user signed in through the identity provider and is due to be checked there again.
    pub provider_check_due: bool,
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    id: &[u8],
    user_id: i64,
    csrf_token: &str,
    expires_at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sessions (id, user_id, csrf_token, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(user_id)
    .bind(csrf_token)
    .bind(expires_at)
    .execute(db)
    .await
    .map(|_| ())
}

/// A session that has neither reached its absolute expiry nor been idle longer than
/// `idle_secs`, of an enabled user.
/// `recheck_secs`: how old a provider identity's last check may be (`None`: no provider).
pub async fn find_live(
    db: impl PgExecutor<'_>,
    id: &[u8],
    idle_secs: i64,
    recheck_secs: Option<i64>,
) -> Result<Option<SessionPrincipal>, sqlx::Error> {
    sqlx::query_as(
        "SELECT u.id AS user_id, u.username, u.role, s.csrf_token,
                s.last_seen_at < now() - interval '1 minute' AS stale,
                ($3::float8 IS NOT NULL AND EXISTS (
                    SELECT 1 FROM oidc_identities i WHERE i.user_id = u.id
                      AND i.checked_at <= now() - make_interval(secs => $3))) AS provider_check_due
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.id = $1 AND s.expires_at > now() AND NOT u.disabled
           AND s.last_seen_at > now() - make_interval(secs => $2)",
    )
    .bind(id)
    .bind(idle_secs as f64)
    .bind(recheck_secs.map(|s| s as f64))
    .fetch_optional(db)
    .await
}

/// Keeps a provider sign-in's ID token with its session, for the logout hint.
pub async fn set_id_token(
    db: impl PgExecutor<'_>,
    id: &[u8],
    id_token: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET oidc_id_token = NULLIF($2, '') WHERE id = $1")
        .bind(id)
        .bind(id_token)
        .execute(db)
        .await
        .map(|_| ())
}

pub async fn id_token(db: impl PgExecutor<'_>, id: &[u8]) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT oidc_id_token FROM sessions WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
        .map(Option::flatten)
}

pub async fn touch(db: impl PgExecutor<'_>, id: &[u8]) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET last_seen_at = now() WHERE id = $1")
        .bind(id)
        .execute(db)
        .await
        .map(|_| ())
}

pub async fn delete(db: impl PgExecutor<'_>, id: &[u8]) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE id = $1")
        .bind(id)
        .execute(db)
        .await
        .map(|r| r.rows_affected())
}

/// Ends every session of a user except `keep` (the one making the change, if any).
pub async fn delete_for_user(
    db: impl PgExecutor<'_>,
    user_id: i64,
    keep: Option<&[u8]>,
) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND ($2::bytea IS NULL OR id <> $2)")
        .bind(user_id)
        .bind(keep)
        .execute(db)
        .await
        .map(|r| r.rows_affected())
}

/// Drops sessions past their absolute expiry.
pub async fn delete_expired(db: impl PgExecutor<'_>) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE expires_at <= now()")
        .execute(db)
        .await
        .map(|r| r.rows_affected())
}

/// Failures counted against a sign-in attempt, and the seconds until the oldest of each falls
/// out of the window.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecentFailures {
    pub for_account: i64,
    pub from_address: i64,
    pub account_retry_secs: Option<f64>,
    pub address_retry_secs: Option<f64>,
}

pub async fn recent_failures(
    db: impl PgExecutor<'_>,
    username: &str,
    client_addr: &str,
    window_secs: i64,
) -> Result<RecentFailures, sqlx::Error> {
    sqlx::query_as(
        "WITH w AS (SELECT username, client_addr, at FROM sign_in_failures
                    WHERE at > now() - make_interval(secs => $3)
                      AND (username = $1 OR client_addr = $2))
         SELECT count(*) FILTER (WHERE username = $1) AS for_account,
                count(*) FILTER (WHERE client_addr = $2) AS from_address,
                extract(epoch FROM min(at) FILTER (WHERE username = $1)
                        + make_interval(secs => $3) - now())::float8 AS account_retry_secs,
                extract(epoch FROM min(at) FILTER (WHERE client_addr = $2)
                        + make_interval(secs => $3) - now())::float8 AS address_retry_secs
         FROM w",
    )
    .bind(username)
    .bind(client_addr)
    .bind(window_secs as f64)
    .fetch_one(db)
    .await
}

/// Counts a sign-in attempt as a failure before any password work is done; returns its id so
/// that the attempt can be forgotten if it turns out not to be one (success, refused, busy).
/// Inserted on its own (committed) so that every concurrent attempt counts it.
pub async fn record_attempt(
    db: impl PgExecutor<'_>,
    username: &str,
    client_addr: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "WITH pruned AS (DELETE FROM sign_in_failures WHERE at < now() - interval '1 day')
         INSERT INTO sign_in_failures (username, client_addr) VALUES ($1, $2) RETURNING id",
    )
    .bind(username)
    .bind(client_addr)
    .fetch_one(db)
    .await
}

/// Removes one attempt from the count.
pub async fn forget_attempt(db: impl PgExecutor<'_>, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sign_in_failures WHERE id = $1")
        .bind(id)
        .execute(db)
        .await
        .map(|_| ())
}

/// A successful sign-in clears the account's failures (not the address's).
pub async fn clear_failures(db: impl PgExecutor<'_>, username: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sign_in_failures WHERE username = $1")
        .bind(username)
        .execute(db)
        .await
        .map(|_| ())
}
