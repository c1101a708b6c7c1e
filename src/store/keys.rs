//! SSH keys (`ssh_keys`): insert, list, delete, the per-owner lock and count behind the key
//! quota, and `last_used_at` for keys sshd asked about.

use sqlx::{PgExecutor, Postgres, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Page;
use crate::keys::KeyShape;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub id: Uuid,
    pub user_id: i64,
    pub username: String,
    pub title: String,
    pub algorithm: String,
    pub bits: i32,
    pub public_key: String,
    pub comment: String,
    pub fingerprint_sha256: String,
    pub fingerprint_md5: String,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
    /// Shape columns PostgreSQL computes from the key's text (migrations/0006_scale.sql).
    pub rsa_exponent_bits: i32,
    pub comment_bytes: i32,
    pub line_bytes: i32,
    /// The computed checks' verdict and the version of the checks that wrote it
    /// (migrations/0007_compromised_keys.sql).
    pub compromise: Option<String>,
    pub compromise_checks: i16,
    /// The key's blocklist entry, if any.
    pub blocked_kind: Option<String>,
    pub blocked_reason: Option<String>,
}

impl KeyRow {
    /// What the database knows of this key besides its text, as the validator takes it.
    pub fn facts(&self) -> crate::keys::StoredFacts<'_> {
        stored_facts(
            self.compromise.as_deref(),
            self.compromise_checks,
            self.blocked_kind.as_deref(),
            self.blocked_reason.as_deref(),
        )
    }

    /// The shape the whole-set views counted this key under.
    pub fn stored_shape(&self) -> KeyShape {
        super::tallies::shape_from_columns(
            &self.algorithm,
            [
                self.bits,
                self.rsa_exponent_bits,
                self.comment_bytes,
                self.line_bytes,
            ],
        )
    }
}

macro_rules! key_columns {
    () => {
        "k.id, k.user_id, u.username, k.title, k.algorithm, k.bits, k.public_key, k.comment,
         k.fingerprint_sha256, k.fingerprint_md5, k.created_at, k.expires_at, k.last_used_at,
         k.rsa_exponent_bits, k.comment_bytes, k.line_bytes,
         k.compromise, k.compromise_checks, b.kind AS blocked_kind, b.reason AS blocked_reason"
    };
}
/// Every read of a key reads its blocklist entry with it: an entry counts from the next read.
/// The key names its entry (`blocklist_id`, linked by the database when either is written).
macro_rules! key_tables {
    () => {
        "ssh_keys k JOIN users u ON u.id = k.user_id
         LEFT JOIN blocklist b ON b.id = k.blocklist_id"
    };
}
// Also read by the notifications' queries (store/notifications.rs), which select keys too.
pub(super) const COLUMNS: &str = key_columns!();
pub(super) const TABLES: &str = key_tables!();
const SELECT: &str = concat!("SELECT ", key_columns!(), " FROM ", key_tables!());

/// The validator's view of a key's stored verdict columns and blocklist entry. A value no
/// version of keyportal writes (a hand-edited row) makes the checks run again rather than be
/// trusted, and an unknown blocklist kind still blocks.
pub fn stored_facts<'a>(
    compromise: Option<&str>,
    checks: i16,
    blocked_kind: Option<&str>,
    blocked_reason: Option<&'a str>,
) -> crate::keys::StoredFacts<'a> {
    use crate::keys::{BlockEntry, CompromiseReason, StoredFacts};
    let computed = if checks == crate::keys::compromised::CHECKS_VERSION {
        match compromise {
            None => Some(None),
            Some(text) => CompromiseReason::parse(text).map(Some),
        }
    } else {
        None
    };
    StoredFacts {
        computed,
        blocklisted: blocked_reason.map(|reason| BlockEntry {
            kind: blocked_kind
                .and_then(CompromiseReason::parse)
                .unwrap_or(CompromiseReason::Blocklisted),
            reason,
        }),
    }
}

pub struct NewKey<'a> {
    pub user_id: i64,
    pub title: &'a str,
    pub algorithm: &'a str,
    pub bits: i32,
    pub public_key: &'a str,
    pub comment: &'a str,
    pub fingerprint_sha256: &'a str,
    pub fingerprint_md5: &'a str,
    pub expires_at: Option<OffsetDateTime>,
}

/// What [`add_within_quota`] did.
#[derive(Debug)]
pub enum AddOutcome {
    Added {
        created_at: OffsetDateTime,
    },
    /// The key's blocklist entry (kind, reason): nothing added.
    Blocklisted {
        kind: String,
        reason: String,
    },
    /// Adding one more would pass `quota`; the user holds `held`. Nothing added.
    OverQuota {
        held: i64,
    },
    /// The user has no key count row (deleted since the caller found them, or the row removed
    /// by hand): nothing added, and the owner's rows not locked; [`lock_owner_and_count`], in
    /// a transaction, makes the row again.
    NoCount,
}

/// Adds a key and its audit event in one statement, its own transaction: it locks the owner's
/// rows as [`lock_owner_and_count`] does, reads the key's blocklist entry and the count, and
/// inserts only if the key is not listed and one more stays within `quota`. One round trip
/// where BEGIN, lock, insert and COMMIT were four; the lock is held for the statement's last
/// part and its commit, no longer.
///
/// Key ids are UUIDv7 (time-ordered, made by the caller so the event can name the key): new
/// keys land at the right edge of the primary key's B-tree instead of on a random page of it,
/// which kept bulk imports fast at a million keys.
pub async fn add_within_quota(
    db: impl PgExecutor<'_>,
    id: Uuid,
    k: &NewKey<'_>,
    event: &super::audit::NewEvent<'_>,
    quota: u32,
) -> Result<AddOutcome, sqlx::Error> {
    // READ COMMITTED: a row lock that waited returns the row as its previous holder committed
    // it, so the count here includes a concurrent add that committed first.
    // (count, blocklist kind, blocklist reason, the new key's creation time if added)
    type Found = (i32, Option<String>, Option<String>, Option<OffsetDateTime>);
    let row: Option<Found> = sqlx::query_as(
            "WITH owner AS (
                 SELECT c.keys, b.kind, b.reason
                   FROM users u
                   JOIN user_key_counts c ON c.user_id = u.id
                   LEFT JOIN blocklist b ON b.fingerprint_sha256 = $7
                  WHERE u.id = $1
                    FOR NO KEY UPDATE OF u, c
             ), k AS (
                 INSERT INTO ssh_keys (id, user_id, title, algorithm, bits, public_key, comment, fingerprint_sha256, fingerprint_md5, expires_at, compromise_checks)
                 SELECT $10, $1, $2, $3, $4, $5, $6, $7, $8, $9, $11
                   FROM owner WHERE owner.kind IS NULL AND owner.keys + 1 <= $17
                 RETURNING created_at
             ), e AS (
                 INSERT INTO audit_events (actor, action, target, detail, request_id)
                 SELECT $12, $13, $14, $15, $16 FROM k
             )
             SELECT owner.keys, owner.kind, owner.reason, k.created_at FROM owner LEFT JOIN k ON true",
        )
        .bind(k.user_id)
        .bind(k.title)
        .bind(k.algorithm)
        .bind(k.bits)
        .bind(k.public_key)
        .bind(k.comment)
        .bind(k.fingerprint_sha256)
        .bind(k.fingerprint_md5)
        .bind(k.expires_at)
        .bind(id)
        // The validator passed it, computed checks included: nothing for them to find.
        .bind(crate::keys::compromised::CHECKS_VERSION)
        .bind(event.actor)
        .bind(event.action)
        .bind(event.target)
        .bind(&event.detail)
        .bind(event.request_id)
        .bind(i64::from(quota))
        .fetch_optional(db)
        .await?;
    Ok(match row {
        None => AddOutcome::NoCount,
        Some((_, _, _, Some(created_at))) => AddOutcome::Added { created_at },
        Some((_, Some(kind), Some(reason), None)) => AddOutcome::Blocklisted { kind, reason },
        Some((held, ..)) => AddOutcome::OverQuota { held: held.into() },
    })
}

/// Inserts many keys in one statement (arrays unnested server-side); returns each new key's
/// fingerprint and id. A key whose fingerprint is registered already (by anyone, or by a
/// concurrent import that committed first) is skipped and missing from the answer.
pub async fn insert_many<'a>(
    db: impl PgExecutor<'_>,
    keys: &[NewKey<'a>],
) -> Result<Vec<(String, Uuid)>, sqlx::Error> {
    let column = |f: fn(&NewKey<'a>) -> &'a str| keys.iter().map(f).collect::<Vec<&str>>();
    let user_ids: Vec<i64> = keys.iter().map(|k| k.user_id).collect();
    let bits: Vec<i32> = keys.iter().map(|k| k.bits).collect();
    let expires: Vec<Option<OffsetDateTime>> = keys.iter().map(|k| k.expires_at).collect();
    sqlx::query_as(
        "INSERT INTO ssh_keys (user_id, title, algorithm, bits, public_key, comment, fingerprint_sha256, fingerprint_md5, expires_at, id, compromise_checks)
         SELECT *, $11::int2 FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[], $10::uuid[])
         ON CONFLICT ON CONSTRAINT ssh_keys_fingerprint_sha256_key DO NOTHING
         RETURNING fingerprint_sha256, id",
    )
    .bind(user_ids)
    .bind(column(|k| k.title))
    .bind(column(|k| k.algorithm))
    .bind(bits)
    .bind(column(|k| k.public_key))
    .bind(column(|k| k.comment))
    .bind(column(|k| k.fingerprint_sha256))
    .bind(column(|k| k.fingerprint_md5))
    .bind(expires)
    .bind(keys.iter().map(|_| Uuid::now_v7()).collect::<Vec<Uuid>>())
    .bind(crate::keys::compromised::CHECKS_VERSION)
    .fetch_all(db)
    .await
}

pub async fn by_id(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<KeyRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE k.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The key registered under this SHA256 fingerprint (unique across users).
pub async fn by_fingerprint(
    db: impl PgExecutor<'_>,
    fingerprint: &str,
) -> Result<Option<KeyRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE k.fingerprint_sha256 = $1"))
        .bind(fingerprint)
        .fetch_optional(db)
        .await
}

/// A user's keys (or every key), oldest first; the cursor is "created_at_nanos/id".
pub async fn list(
    db: impl PgExecutor<'_>,
    user_id: Option<i64>,
    page: &Page,
) -> Result<Vec<KeyRow>, sqlx::Error> {
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(format!("{SELECT} WHERE true"));
    if let Some(u) = user_id {
        sql.push(" AND k.user_id = ").push_bind(u);
    }
    if let Some((at, id)) = page.after.as_deref().and_then(parse_time_id) {
        sql.push(" AND (k.created_at, k.id) > (")
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    sql.push(" ORDER BY k.created_at, k.id LIMIT ")
        .push_bind(page.limit + 1);
    sql.build_query_as().fetch_all(db).await
}

pub fn time_id_key(at: OffsetDateTime, id: Uuid) -> String {
    format!("{}/{id}", at.unix_timestamp_nanos())
}

pub fn parse_time_id(s: &str) -> Option<(OffsetDateTime, Uuid)> {
    let (at, id) = s.split_once('/')?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(at.parse().ok()?).ok()?;
    // Only years PostgreSQL's timestamptz holds (and ours ever were): others fail the query.
    if !(1..=9999).contains(&at.year()) {
        return None;
    }
    Some((at, id.parse().ok()?))
}

/// Locks the user's row until the transaction ends and reads their key count: imports and
/// deletes take it (a single add takes the same rows the same way, in [`add_within_quota`]'s
/// statement), so two writers for one user see each other's keys and a per-user quota holds.
/// The count is kept by the triggers of migrations/0017 and its row is locked too: a lock that
/// had to wait returns the row as its previous holder committed it (READ COMMITTED re-reads a
/// locked row's newest version), where an unlocked one would be read as of before the wait.
/// The user's row first, as a user's deletion takes it (before its cascade reaches the count),
/// so the two queue on one row instead of deadlocking. `NO KEY UPDATE` because nothing changes
/// the row's key: it leaves foreign-key checks on the user (`KEY SHARE`, e.g. a blocklist
/// entry's `added_by`) free, so a blocklist writer holding the advisory lock of
/// migrations/0014 never waits for this row while our insert waits for it. `None` when the
/// user is gone (deleted since the caller found them, the deletion committed while this
/// waited).
pub async fn lock_owner_and_count(
    conn: &mut sqlx::PgConnection,
    user_id: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let query = "SELECT c.keys
                   FROM users u
                   JOIN user_key_counts c ON c.user_id = u.id
                  WHERE u.id = $1
                    FOR NO KEY UPDATE OF u, c";
    let mut count: Option<i32> = sqlx::query_scalar(query)
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?;
    if count.is_none() {
        // No count row: the user was deleted since the caller found them, or the row was
        // removed by hand. Make it again from the keys, under the user's lock, and read it.
        sqlx::query(
            "INSERT INTO user_key_counts (user_id, keys)
             SELECT u.id, (SELECT count(*) FROM ssh_keys k WHERE k.user_id = u.id)
               FROM (SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE) u
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
        count = sqlx::query_scalar(query)
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
    }
    // None: the user is gone.
    Ok(count.map(i64::from))
}

pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM ssh_keys WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?
        .rows_affected())
}

/// Records that sshd was offered these keys; written at most once a minute per key. A key
/// whose row another transaction holds (a blocklist write linking it, a deletion) is skipped
/// rather than waited for: a login never waits on a write, and a later lookup records it.
pub async fn mark_used(db: impl PgExecutor<'_>, ids: &[uuid::Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE ssh_keys SET last_used_at = now()
         WHERE id IN (SELECT id FROM ssh_keys
                       WHERE id = ANY($1) AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
                         FOR NO KEY UPDATE SKIP LOCKED)",
    )
    .bind(ids)
    .execute(db)
    .await
    .map(|_| ())
}

/// Up to `limit` keys of each of these shapes (of one user, or anyone's), oldest first within
/// a shape; with `unexpired_at`, only keys not expired by then. One probe of the shape index per
/// shape, so the cost is the rows returned, not the table.
pub async fn of_shapes(
    db: impl PgExecutor<'_>,
    shapes: &[KeyShape],
    user_id: Option<i64>,
    unexpired_at: Option<OffsetDateTime>,
    limit: i64,
) -> Result<Vec<KeyRow>, sqlx::Error> {
    // Shape lengths and bit counts are far below i32::MAX; a larger one matches no row.
    let column = |f: fn(&KeyShape) -> u32| {
        shapes
            .iter()
            .map(|s| i32::try_from(f(s)).unwrap_or(i32::MAX))
            .collect::<Vec<i32>>()
    };
    let names: Vec<&str> = shapes.iter().map(|s| s.algorithm.as_str()).collect();
    sqlx::query_as(&format!(
        "SELECT k.* FROM UNNEST($1::text[], $2::int4[], $3::int4[], $4::int4[], $5::int4[])
             AS s (algorithm, bits, rsa_exponent_bits, comment_bytes, line_bytes)
         CROSS JOIN LATERAL (
             SELECT {COLUMNS} FROM {TABLES}
             WHERE k.algorithm = s.algorithm AND k.bits = s.bits
               AND k.rsa_exponent_bits = s.rsa_exponent_bits AND k.comment_bytes = s.comment_bytes
               AND k.line_bytes = s.line_bytes
               AND ($6::int8 IS NULL OR k.user_id = $6)
               AND ($7::timestamptz IS NULL OR k.expires_at IS NULL OR k.expires_at > $7)
             ORDER BY k.created_at, k.id LIMIT $8) k
         LIMIT $8"
    ))
    .bind(names)
    .bind(column(|s| s.bits))
    .bind(column(|s| s.rsa_exponent_bits))
    .bind(column(|s| s.comment_bytes))
    .bind(column(|s| s.line_bytes))
    .bind(user_id)
    .bind(unexpired_at)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The `limit` keys (of one user, or anyone's) that expire first, up to `before`: expired ones
/// and those expiring soon. Walks the expiry index.
pub async fn expiring(
    db: impl PgExecutor<'_>,
    before: OffsetDateTime,
    user_id: Option<i64>,
    limit: i64,
) -> Result<Vec<KeyRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE k.expires_at <= $1 AND ($2::int8 IS NULL OR k.user_id = $2)
         ORDER BY k.expires_at, k.id LIMIT $3"
    ))
    .bind(before)
    .bind(user_id)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Up to `limit` keys that no check of `version` or later judged (0: none did), in id order
/// after `after` (None: from the nil UUID, which no key has): id and canonical key. Keys a
/// newer version judged (a newer instance, mid rolling upgrade) are left to it. `version` is
/// written into the statement, not bound, so that the planner can use the partial index
/// `ssh_keys_unjudged_idx` (migration 0013) when it names the same version.
pub async fn unchecked(
    db: impl PgExecutor<'_>,
    version: i16,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT id, public_key FROM ssh_keys
         WHERE compromise_checks < {version} AND id > coalesce($1, '00000000-0000-0000-0000-000000000000'::uuid)
         ORDER BY id LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Stores the computed checks' verdicts (`None`: nothing found) under `version`.
pub async fn record_computed_checks(
    db: impl PgExecutor<'_>,
    verdicts: &[(Uuid, Option<&str>)],
    version: i16,
) -> Result<u64, sqlx::Error> {
    let ids: Vec<Uuid> = verdicts.iter().map(|v| v.0).collect();
    let found: Vec<Option<&str>> = verdicts.iter().map(|v| v.1).collect();
    Ok(sqlx::query(
        "UPDATE ssh_keys k SET compromise = v.found, compromise_checks = $3
         FROM UNNEST($1::uuid[], $2::text[]) AS v (id, found) WHERE k.id = v.id",
    )
    .bind(ids)
    .bind(found)
    .bind(version)
    .execute(db)
    .await?
    .rows_affected())
}

/// Up to `limit` compromised keys (of one user, or anyone's): those the computed checks
/// flagged and those naming a blocklist entry (a partial index each), oldest first. Keys not
/// yet judged by this version of the checks show once the background pass has judged them;
/// their reads refuse them before that.
pub async fn compromised(
    db: &sqlx::PgPool,
    user_id: Option<i64>,
    limit: i64,
) -> Result<Vec<KeyRow>, sqlx::Error> {
    let flagged: Vec<KeyRow> = sqlx::query_as(&format!(
        "{SELECT} WHERE k.compromise IS NOT NULL AND ($1::int8 IS NULL OR k.user_id = $1)
         ORDER BY k.created_at, k.id LIMIT $2"
    ))
    .bind(user_id)
    .bind(limit)
    .fetch_all(db)
    .await?;
    let blocked: Vec<KeyRow> = sqlx::query_as(&format!(
        "{SELECT} WHERE k.blocklist_id IS NOT NULL AND ($1::int8 IS NULL OR k.user_id = $1)
         ORDER BY b.created_at, b.id LIMIT $2"
    ))
    .bind(user_id)
    .bind(limit)
    .fetch_all(db)
    .await?;
    let mut rows = blocked;
    rows.extend(flagged);
    let mut seen = std::collections::HashSet::new();
    rows.retain(|r| seen.insert(r.id));
    rows.truncate(limit as usize);
    Ok(rows)
}

/// Fingerprint and canonical text of every stored RSA key: the shared-prime scan's input.
pub async fn rsa_keys(db: impl PgExecutor<'_>) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT fingerprint_sha256, public_key FROM ssh_keys WHERE algorithm = 'ssh-rsa' ORDER BY id",
    )
    .fetch_all(db)
    .await
}
