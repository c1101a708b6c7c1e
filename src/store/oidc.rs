//! Storage of provider sign-ins: attempts in flight, the provider account behind each user,
//! and the user groups that follow the provider's groups claim.

use sqlx::PgExecutor;
use time::OffsetDateTime;

pub struct NewAttempt<'a> {
    pub state_hash: &'a [u8],
    pub nonce: &'a str,
    pub pkce_verifier: &'a str,
    pub next_path: &'a str,
    pub expires_at: OffsetDateTime,
}

pub async fn insert_attempt(
    db: impl PgExecutor<'_>,
    a: &NewAttempt<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO oidc_sign_in_attempts (state_hash, nonce, pkce_verifier, next_path, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(a.state_hash)
    .bind(a.nonce)
    .bind(a.pkce_verifier)
    .bind(a.next_path)
    .bind(a.expires_at)
    .execute(db)
    .await
    .map(|_| ())
}

pub async fn delete_expired_attempts(db: impl PgExecutor<'_>) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM oidc_sign_in_attempts WHERE expires_at <= now()")
        .execute(db)
        .await
        .map(|r| r.rows_affected())
}

#[derive(Debug, sqlx::FromRow)]
pub struct AttemptRow {
    pub nonce: String,
    pub pkce_verifier: String,
    pub next_path: String,
    pub live: bool,
}

/// Takes the attempt out, so its state is accepted once; `live` is false when it had expired.
pub async fn take_attempt(
    db: impl PgExecutor<'_>,
    state_hash: &[u8],
) -> Result<Option<AttemptRow>, sqlx::Error> {
    sqlx::query_as(
        "DELETE FROM oidc_sign_in_attempts WHERE state_hash = $1
         RETURNING nonce, pkce_verifier, next_path, expires_at > now() AS live",
    )
    .bind(state_hash)
    .fetch_optional(db)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IdentityRow {
    pub user_id: i64,
    pub username: String,
    pub disabled: bool,
    pub subject: String,
    pub refresh_token: Option<String>,
}

const IDENTITY: &str = "SELECT i.user_id, u.username, u.disabled, i.subject, i.refresh_token
     FROM oidc_identities i JOIN users u ON u.id = i.user_id";

pub async fn identity_by_subject(
    db: impl PgExecutor<'_>,
    issuer: &str,
    subject: &str,
) -> Result<Option<IdentityRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{IDENTITY} WHERE i.issuer = $1 AND i.subject = $2"
    ))
    .bind(issuer)
    .bind(subject)
    .fetch_optional(db)
    .await
}

pub async fn is_linked(db: impl PgExecutor<'_>, user_id: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM oidc_identities WHERE user_id = $1)")
        .bind(user_id)
        .fetch_one(db)
        .await
}

/// Claims the user's check at the provider when its last one is older than `due_secs`
/// (negative: whenever) and no other check is in flight: marks it checked now, takes a lease
/// of [`CHECK_LEASE_SECS`] and returns what to ask with. Committed before the provider is
/// called, so no connection is held during the call, and no other check asks with the same
/// refresh token until this one ends ([`release`]) or its lease runs out (providers that rotate
/// refresh tokens revoke a grant whose old token is used again). A concurrent claim waits only
/// for this one statement.
pub async fn claim_due(
    db: impl PgExecutor<'_>,
    user_id: i64,
    issuer: &str,
    due_secs: i64,
) -> Result<Option<IdentityRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE oidc_identities i SET checked_at = now(),
             check_lease_until = now() + make_interval(secs => $4)
         FROM users u
         WHERE u.id = i.user_id AND i.user_id = $1 AND i.issuer = $2
           AND i.checked_at <= now() - make_interval(secs => $3)
           AND (i.check_lease_until IS NULL OR i.check_lease_until < now())
         RETURNING i.user_id, u.username, u.disabled, i.subject, i.refresh_token",
    )
    .bind(user_id)
    .bind(issuer)
    .bind(due_secs as f64)
    .bind(CHECK_LEASE_SECS as f64)
    .fetch_optional(db)
    .await
}

/// Longer than a check can take (the provider's token and userinfo calls, 10 s each at most).
pub const CHECK_LEASE_SECS: i64 = 60;

/// Ends a check's lease, whatever its outcome.
pub async fn release(db: impl PgExecutor<'_>, user_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE oidc_identities SET check_lease_until = NULL WHERE user_id = $1")
        .bind(user_id)
        .execute(db)
        .await
        .map(|_| ())
}

/// Replaces the refresh token only if it is still `old` (a sign-in meanwhile brought a newer
/// one); true when replaced or when `old` is still the current one.
pub async fn rotate_refresh_token(
    db: impl PgExecutor<'_>,
    user_id: i64,
    old: &str,
    new: Option<&str>,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE oidc_identities SET refresh_token = COALESCE($3, refresh_token)
         WHERE user_id = $1 AND refresh_token = $2",
    )
    .bind(user_id)
    .bind(old)
    .bind(new)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

pub async fn set_disabled_by_sync(
    db: impl PgExecutor<'_>,
    user_id: i64,
    disabled: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE oidc_identities SET disabled_by_sync = $2 WHERE user_id = $1")
        .bind(user_id)
        .bind(disabled)
        .execute(db)
        .await
        .map(|_| ())
}

pub async fn disabled_by_sync(db: impl PgExecutor<'_>, user_id: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COALESCE((SELECT disabled_by_sync FROM oidc_identities WHERE user_id = $1), false)",
    )
    .bind(user_id)
    .fetch_one(db)
    .await
}

/// Sign-ins in flight (attempts not yet expired), to bound what anonymous starts can store.
pub async fn live_attempts(db: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM oidc_sign_in_attempts WHERE expires_at > now()")
        .fetch_one(db)
        .await
}

/// Every identity at `issuer`, by username.
pub async fn all_at(
    db: impl PgExecutor<'_>,
    issuer: &str,
) -> Result<Vec<IdentityRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{IDENTITY} WHERE i.issuer = $1 ORDER BY u.username"
    ))
    .bind(issuer)
    .fetch_all(db)
    .await
}

/// Links (or re-links) a user to a provider account.
pub async fn link(
    db: impl PgExecutor<'_>,
    user_id: i64,
    issuer: &str,
    subject: &str,
    refresh_token: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO oidc_identities (user_id, issuer, subject, refresh_token) VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id) DO UPDATE SET issuer = $2, subject = $3,
             refresh_token = COALESCE($4, oidc_identities.refresh_token), checked_at = now()",
    )
    .bind(user_id)
    .bind(issuer)
    .bind(subject)
    .bind(refresh_token)
    .execute(db)
    .await
    .map(|_| ())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NamedGroup {
    pub id: i64,
    pub name: String,
    pub managed_by: String,
}

/// The user groups with these names, whoever manages them.
pub async fn groups_named(
    db: impl PgExecutor<'_>,
    names: &[String],
) -> Result<Vec<NamedGroup>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, managed_by FROM user_groups WHERE name = ANY($1)")
        .bind(names)
        .fetch_all(db)
        .await
}

/// A provider-managed group for a name the provider sent first; `None` if the name was taken
/// meanwhile.
pub async fn insert_provider_group(
    db: impl PgExecutor<'_>,
    name: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO user_groups (name, description, managed_by)
         VALUES ($1, 'Follows the identity provider''s group of this name.', 'provider')
         ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(name)
    .fetch_optional(db)
    .await
}

/// The provider-managed groups the user is a member of.
pub async fn provider_groups_of(
    db: impl PgExecutor<'_>,
    user_id: i64,
) -> Result<Vec<NamedGroup>, sqlx::Error> {
    sqlx::query_as(
        "SELECT g.id, g.name, g.managed_by FROM user_groups g
         JOIN user_group_members m ON m.group_id = g.id
         WHERE m.user_id = $1 AND g.managed_by = 'provider' ORDER BY g.name",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}
