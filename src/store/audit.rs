//! The audit log (`audit_events`): appended in the same transaction as the change it records,
//! read newest first with filters and a keyset cursor.

use sqlx::{PgExecutor, Postgres, QueryBuilder};
use time::OffsetDateTime;

use super::Page;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
    pub request_id: Option<String>,
}

pub struct NewEvent<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub detail: serde_json::Value,
    pub request_id: Option<&'a str>,
}

pub async fn record(db: impl PgExecutor<'_>, e: NewEvent<'_>) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO audit_events (actor, action, target, detail, request_id) VALUES ($1, $2, $3, $4, $5)")
        .bind(e.actor)
        .bind(e.action)
        .bind(e.target)
        .bind(e.detail)
        .bind(e.request_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Newest first; the cursor is the last id seen.
pub async fn list(
    db: impl PgExecutor<'_>,
    actor: Option<&str>,
    action: Option<&str>,
    target: Option<&str>,
    page: &Page,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT id, at, actor, action, target, detail, request_id FROM audit_events WHERE true",
    );
    if let Some(a) = actor {
        sql.push(" AND actor = ").push_bind(a.to_owned());
    }
    if let Some(a) = action {
        sql.push(" AND action = ").push_bind(a.to_owned());
    }
    if let Some(t) = target {
        sql.push(" AND target = ").push_bind(t.to_owned());
    }
    if let Some(after) = page.after.as_deref().and_then(|a| a.parse::<i64>().ok()) {
        sql.push(" AND id < ").push_bind(after);
    }
    sql.push(" ORDER BY id DESC LIMIT ")
        .push_bind(page.limit + 1);
    sql.build_query_as().fetch_all(db).await
}
