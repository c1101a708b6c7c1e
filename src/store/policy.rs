//! The validation policy (`policy`): one row of settings, read on every validation.

use sqlx::PgExecutor;

/// The stored policy settings (JSON; missing fields take the built-in defaults).
pub async fn load(db: impl PgExecutor<'_>) -> Result<serde_json::Value, sqlx::Error> {
    sqlx::query_scalar("SELECT settings FROM policy")
        .fetch_one(db)
        .await
}

pub async fn save(
    db: impl PgExecutor<'_>,
    settings: &serde_json::Value,
    by: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE policy SET settings = $1, updated_at = now(), updated_by = $2")
        .bind(settings)
        .bind(by)
        .execute(db)
        .await?;
    Ok(())
}
