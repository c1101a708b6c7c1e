//! Servers (`servers`): by name, list and search, insert, update, delete.

use crate::domain::ServerName;
use sqlx::{PgExecutor, Postgres, QueryBuilder};
use time::OffsetDateTime;

use super::Page;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ServerRow {
    pub id: i64,
    pub name: String,
    pub hostname: String,
    pub description: String,
    pub created_at: OffsetDateTime,
}

const COLUMNS: &str = "id, name, hostname, description, created_at";

pub async fn insert(
    db: impl PgExecutor<'_>,
    name: &ServerName,
    hostname: &str,
    description: &str,
) -> Result<ServerRow, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO servers (name, hostname, description) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
    ))
    .bind(name.as_str())
    .bind(hostname)
    .bind(description)
    .fetch_one(db)
    .await
}

pub async fn by_name(
    db: impl PgExecutor<'_>,
    name: &str,
) -> Result<Option<ServerRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM servers WHERE name = $1"))
        .bind(name)
        .fetch_optional(db)
        .await
}

/// Servers by name; `visible_to` limits to servers where that user holds a grant.
pub async fn list(
    db: impl PgExecutor<'_>,
    q: Option<&str>,
    visible_to: Option<i64>,
    page: &Page,
) -> Result<Vec<ServerRow>, sqlx::Error> {
    let mut sql: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("SELECT {COLUMNS} FROM servers s WHERE true"));
    if let Some(q) = q {
        let pattern = super::contains_pattern(q);
        sql.push(" AND (name ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR hostname ILIKE ")
            .push_bind(pattern)
            .push(")");
    }
    if let Some(user) = visible_to {
        sql.push(" AND EXISTS (SELECT 1 FROM grants g WHERE g.server_id = s.id AND g.user_id = ")
            .push_bind(user)
            .push(")");
    }
    if let Some(after) = &page.after {
        sql.push(" AND name > ").push_bind(after.clone());
    }
    sql.push(" ORDER BY name LIMIT ").push_bind(page.limit + 1);
    sql.build_query_as().fetch_all(db).await
}

pub async fn update(
    db: impl PgExecutor<'_>,
    id: i64,
    hostname: Option<&str>,
    description: Option<&str>,
) -> Result<ServerRow, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE servers SET hostname = COALESCE($2, hostname), description = COALESCE($3, description), updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(hostname)
    .bind(description)
    .fetch_one(db)
    .await
}

pub async fn delete(db: impl PgExecutor<'_>, id: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM servers WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?
        .rows_affected())
}
