//! Users (`users`): by name or id, list and search, insert and update, and the lock on the
//! enabled admins behind the last-admin guard.

use sqlx::{PgExecutor, Postgres, QueryBuilder};
use time::OffsetDateTime;

use super::Page;
use crate::domain::{Role, Username};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    pub disabled: bool,
    pub password_hash: Option<String>,
    pub created_at: OffsetDateTime,
}

const COLUMNS: &str =
    "id, username, display_name, email, role, disabled, password_hash, created_at";

pub struct NewUser<'a> {
    pub username: &'a Username,
    pub display_name: &'a str,
    pub email: Option<&'a str>,
    pub role: Role,
    pub password_hash: Option<&'a str>,
}

pub async fn insert(db: impl PgExecutor<'_>, u: &NewUser<'_>) -> Result<UserRow, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO users (username, display_name, email, role, password_hash) VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(u.username.as_str())
    .bind(u.display_name)
    .bind(u.email)
    .bind(u.role)
    .bind(u.password_hash)
    .fetch_one(db)
    .await
}

pub async fn by_username(
    db: impl PgExecutor<'_>,
    username: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE username = $1"))
        .bind(username)
        .fetch_optional(db)
        .await
}

#[derive(sqlx::FromRow)]
struct UserAndPolicy {
    #[sqlx(flatten)]
    user: UserRow,
    policy: serde_json::Value,
}

/// [`by_username`] with the policy's stored settings, in one round trip: a key submission
/// needs both, and this was one statement of the seven it made.
pub async fn by_username_with_policy(
    db: impl PgExecutor<'_>,
    username: &str,
) -> Result<Option<(UserRow, serde_json::Value)>, sqlx::Error> {
    let row: Option<UserAndPolicy> = sqlx::query_as(&format!(
        "SELECT {COLUMNS}, (SELECT settings FROM policy) AS policy FROM users WHERE username = $1"
    ))
    .bind(username)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.user, r.policy)))
}

pub async fn by_id(db: impl PgExecutor<'_>, id: i64) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Users ordered by username; `q` matches username, display name or email.
pub async fn list(
    db: impl PgExecutor<'_>,
    q: Option<&str>,
    page: &Page,
) -> Result<Vec<UserRow>, sqlx::Error> {
    let mut sql: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("SELECT {COLUMNS} FROM users WHERE true"));
    if let Some(q) = q {
        let pattern = super::contains_pattern(q);
        sql.push(" AND (username ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR display_name ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR email ILIKE ")
            .push_bind(pattern)
            .push(")");
    }
    if let Some(after) = &page.after {
        sql.push(" AND username > ").push_bind(after.clone());
    }
    sql.push(" ORDER BY username LIMIT ")
        .push_bind(page.limit + 1);
    sql.build_query_as().fetch_all(db).await
}

pub struct UserChanges<'a> {
    pub display_name: Option<&'a str>,
    pub email: Option<Option<&'a str>>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password_hash: Option<&'a str>,
}

pub async fn update(
    db: impl PgExecutor<'_>,
    id: i64,
    c: &UserChanges<'_>,
) -> Result<UserRow, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE users SET
            display_name = COALESCE($2, display_name),
            email = CASE WHEN $3 THEN $4 ELSE email END,
            role = COALESCE($5, role),
            disabled = COALESCE($6, disabled),
            password_hash = COALESCE($7, password_hash),
            updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(c.display_name)
    .bind(c.email.is_some())
    .bind(c.email.flatten())
    .bind(c.role)
    .bind(c.disabled)
    .bind(c.password_hash)
    .fetch_one(db)
    .await
}

pub async fn delete(db: impl PgExecutor<'_>, id: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?
        .rows_affected())
}

/// Locks the rows of enabled admins (so concurrent demotions queue up) and counts them.
pub async fn lock_enabled_admins(db: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM users WHERE role = 'admin' AND NOT disabled ORDER BY id FOR UPDATE",
    )
    .fetch_all(db)
    .await?;
    Ok(ids.len() as i64)
}
