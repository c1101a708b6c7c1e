//! API tokens (`api_tokens`): looked up by the hash of their secret, never the secret itself;
//! listed, created and revoked per owner (a user or a server).

use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub id: Uuid,
    pub name: String,
    pub user_id: Option<i64>,
    pub server_id: Option<i64>,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub expires_at: Option<OffsetDateTime>,
    pub created_by: Option<String>,
}

const COLUMNS: &str =
    "id, name, user_id, server_id, created_at, last_used_at, expires_at, created_by";

/// Whose token a new one is: a user's (personal) or a server's.
#[derive(Debug, Clone, Copy)]
pub enum Owner {
    User(i64),
    Server(i64),
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    name: &str,
    owner: Owner,
    secret_hash: &[u8],
    expires_at: Option<OffsetDateTime>,
    created_by: &str,
) -> Result<TokenRow, sqlx::Error> {
    let (user_id, server_id) = match owner {
        Owner::User(id) => (Some(id), None),
        Owner::Server(id) => (None, Some(id)),
    };
    sqlx::query_as(&format!(
        "INSERT INTO api_tokens (name, user_id, server_id, secret_hash, expires_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    ))
    .bind(name)
    .bind(user_id)
    .bind(server_id)
    .bind(secret_hash)
    .bind(expires_at)
    .bind(created_by)
    .fetch_one(db)
    .await
}

/// The principal behind a live token (not revoked, not expired), marking it used.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenPrincipal {
    pub token_id: Uuid,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub role: Option<crate::domain::Role>,
    pub disabled: Option<bool>,
    pub server_id: Option<i64>,
    pub server: Option<String>,
    /// `last_used_at` is over a minute old (or unset).
    pub stale: bool,
}

/// The statement that finds the principal behind a live token (not revoked, not expired) by
/// the hash of its secret, bound as the parameter named (`"$1"`). The login path runs it as a
/// CTE of its own statement (`store::grants::granted_key_for_token`).
macro_rules! live_token {
    ($hash:literal) => {
        concat!(
            "SELECT t.id AS token_id, t.user_id, u.username, u.role, u.disabled, t.server_id, s.name AS server,
                    (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute') AS stale
             FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id LEFT JOIN servers s ON s.id = t.server_id
             WHERE t.secret_hash = ",
            $hash,
            " AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())"
        )
    };
}
pub(crate) use live_token;

/// The principal behind a live token (not revoked, not expired).
pub async fn authenticate(
    db: impl PgExecutor<'_>,
    secret_hash: &[u8],
) -> Result<Option<TokenPrincipal>, sqlx::Error> {
    sqlx::query_as(live_token!("$1"))
        .bind(secret_hash)
        .fetch_optional(db)
        .await
}

/// Records use of a token. Called only when the stored time is over a minute old, so a busy
/// token costs one write a minute, not one per request.
pub async fn touch(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE api_tokens SET last_used_at = now() WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// An owner's tokens that are not revoked (expired ones included: they show as expired).
pub async fn list(db: impl PgExecutor<'_>, owner: Owner) -> Result<Vec<TokenRow>, sqlx::Error> {
    let (column, id) = owner_column(owner);
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM api_tokens WHERE {column} = $1 AND revoked_at IS NULL ORDER BY created_at, id"
    ))
    .bind(id)
    .fetch_all(db)
    .await
}

/// Revokes one token of `owner`; 0 when it is not theirs or already revoked.
pub async fn revoke(db: impl PgExecutor<'_>, id: Uuid, owner: Owner) -> Result<u64, sqlx::Error> {
    let (column, owner_id) = owner_column(owner);
    Ok(sqlx::query(&format!(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND {column} = $2 AND revoked_at IS NULL"
    ))
    .bind(id)
    .bind(owner_id)
    .execute(db)
    .await?
    .rows_affected())
}

/// Revokes every live token of a user (password changed, account disabled).
pub async fn revoke_all_of_user(db: impl PgExecutor<'_>, user_id: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE api_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .execute(db)
    .await?
    .rows_affected())
}

fn owner_column(owner: Owner) -> (&'static str, i64) {
    match owner {
        Owner::User(id) => ("user_id", id),
        Owner::Server(id) => ("server_id", id),
    }
}
