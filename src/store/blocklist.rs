//! The blocklist (`blocklist`): keys known to be compromised, by SHA256 fingerprint. Key reads
//! read the entry a stored key names (`ssh_keys.blocklist_id`, which the database links and
//! unlinks as entries and keys are written: migrations/0014_blocklisted_keys.sql); this module
//! writes and lists it.

use sqlx::{PgExecutor, Postgres, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use super::keys::parse_time_id;
use super::Page;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BlockRow {
    pub id: Uuid,
    pub fingerprint_sha256: String,
    pub public_key: Option<String>,
    pub kind: String,
    pub reason: String,
    pub related_fingerprint: Option<String>,
    pub added_by: Option<String>,
    pub created_at: OffsetDateTime,
    /// The stored key with this fingerprint and its owner, if there is one.
    pub key_id: Option<Uuid>,
    pub key_owner: Option<String>,
}

const SELECT: &str = "SELECT b.id, b.fingerprint_sha256, b.public_key, b.kind, b.reason,
    b.related_fingerprint, a.username AS added_by, b.created_at, k.id AS key_id, o.username AS key_owner
    FROM blocklist b LEFT JOIN users a ON a.id = b.added_by
    LEFT JOIN ssh_keys k ON k.fingerprint_sha256 = b.fingerprint_sha256
    LEFT JOIN users o ON o.id = k.user_id";

pub struct NewEntry<'a> {
    pub fingerprint_sha256: &'a str,
    pub public_key: Option<&'a str>,
    pub kind: &'a str,
    pub reason: &'a str,
    pub related_fingerprint: Option<&'a str>,
    pub added_by: Option<i64>,
}

/// Adds entries in one statement; a fingerprint already on the list keeps its entry. Returns
/// the fingerprints and ids of the entries added.
pub async fn insert_many(
    db: impl PgExecutor<'_>,
    entries: &[NewEntry<'_>],
) -> Result<Vec<(String, Uuid)>, sqlx::Error> {
    let fps: Vec<&str> = entries.iter().map(|e| e.fingerprint_sha256).collect();
    let keys: Vec<Option<&str>> = entries.iter().map(|e| e.public_key).collect();
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind).collect();
    let reasons: Vec<&str> = entries.iter().map(|e| e.reason).collect();
    let related: Vec<Option<&str>> = entries.iter().map(|e| e.related_fingerprint).collect();
    let by: Vec<Option<i64>> = entries.iter().map(|e| e.added_by).collect();
    sqlx::query_as(
        "INSERT INTO blocklist (fingerprint_sha256, public_key, kind, reason, related_fingerprint, added_by)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[])
         ON CONFLICT ON CONSTRAINT blocklist_fingerprint_key DO NOTHING
         RETURNING fingerprint_sha256, id",
    )
    .bind(fps)
    .bind(keys)
    .bind(kinds)
    .bind(reasons)
    .bind(related)
    .bind(by)
    .fetch_all(db)
    .await
}

pub async fn by_id(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<BlockRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE b.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Oldest first, a page at a time (keyset on the creation index).
pub async fn list(db: impl PgExecutor<'_>, page: &Page) -> Result<Vec<BlockRow>, sqlx::Error> {
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(format!("{SELECT} WHERE true"));
    if let Some((at, id)) = page.after.as_deref().and_then(parse_time_id) {
        sql.push(" AND (b.created_at, b.id) > (")
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    sql.push(" ORDER BY b.created_at, b.id LIMIT ")
        .push_bind(page.limit + 1);
    sql.build_query_as().fetch_all(db).await
}

/// The entries for these fingerprints (a submission checks its keys against them).
pub async fn entries_for(
    db: impl PgExecutor<'_>,
    fingerprints: &[&str],
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT fingerprint_sha256, kind, reason FROM blocklist WHERE fingerprint_sha256 = ANY($1)",
    )
    .bind(fingerprints)
    .fetch_all(db)
    .await
}

pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM blocklist WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?
        .rows_affected())
}
