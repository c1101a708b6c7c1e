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
}

const COLUMNS: &str = "id, name, user_id, server_id, created_at, last_used_at, expires_at";

pub async fn insert(
    db: impl PgExecutor<'_>,
    name: &str,
    user_id: Option<i64>,
    server_id: Option<i64>,
    secret_hash: &[u8],
    expires_at: Option<OffsetDateTime>,
) -> Result<TokenRow, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO api_tokens (name, user_id, server_id, secret_hash, expires_at) VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(name)
    .bind(user_id)
    .bind(server_id)
    .bind(secret_hash)
    .bind(expires_at)
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

/// The principal behind a live token (not revoked, not expired).
pub async fn authenticate(
    db: impl PgExecutor<'_>,
    secret_hash: &[u8],
) -> Result<Option<TokenPrincipal>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.id AS token_id, t.user_id, u.username, u.role, u.disabled, t.server_id, s.name AS server,
                (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute') AS stale
         FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id LEFT JOIN servers s ON s.id = t.server_id
         WHERE t.secret_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())",
    )
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

pub async fn list_for_user(
    db: impl PgExecutor<'_>,
    user_id: i64,
) -> Result<Vec<TokenRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at, id"
    ))
    .bind(user_id)
    .fetch_all(db)
    .await
}

pub async fn revoke(db: impl PgExecutor<'_>, id: Uuid, user_id: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL")
        .bind(id)
        .bind(user_id)
        .execute(db)
        .await?
        .rows_affected())
}
