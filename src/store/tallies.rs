//! Counts kept by triggers (migrations/0006_scale.sql): keys per shape, and rows of users,
//! servers and grants. Writers append signed deltas; readers sum them, and [`fold`] now and
//! then replaces a table's rows by one row per group so the sums stay cheap.

use sqlx::PgExecutor;

use crate::keys::KeyShape;

/// A shape as stored: the algorithm's name and the four lengths.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ShapeCount {
    pub algorithm: String,
    pub bits: i32,
    pub rsa_exponent_bits: i32,
    pub comment_bytes: i32,
    pub line_bytes: i32,
    pub keys: i64,
    /// Of those, expired (`expires_at <= now`) and expiring soon (`now < expires_at <= soon`).
    pub expired: i64,
    pub expiring: i64,
}

impl ShapeCount {
    pub fn shape(&self) -> KeyShape {
        shape_from_columns(
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

/// A shape from its columns: `[bits, rsa_exponent_bits, comment_bytes, line_bytes]`. They are
/// non-negative by construction (bit counts and lengths; `bits` has a CHECK).
pub fn shape_from_columns(algorithm: &str, [bits, exponent, comment, line]: [i32; 4]) -> KeyShape {
    let n = |v: i32| u32::try_from(v).unwrap_or(0);
    KeyShape {
        algorithm: algorithm.to_owned(),
        bits: n(bits),
        rsa_exponent_bits: n(exponent),
        comment_bytes: n(comment),
        line_bytes: n(line),
    }
}

/// Delta rows the tallies may hold before a reader folds them.
pub const FOLD_AFTER: i64 = 256;

/// Folds the delta rows, if no other transaction is folding them right now (then it simply
/// skips: the sums are right either way). Deleting and re-inserting in one statement keeps
/// every delta a concurrent writer appends meanwhile, since the DELETE only sees rows that
/// were committed when it started.
pub async fn fold(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    // Reading a few hundred deltas costs less than a write per view: fold only past that.
    let piled_up: bool = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM key_shape_tallies) + (SELECT count(*) FROM row_tallies) > $1",
    )
    .bind(FOLD_AFTER)
    .fetch_one(&mut *conn)
    .await?;
    if !piled_up {
        return Ok(());
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let ours: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('keyportal.tallies'))")
            .fetch_one(&mut *tx)
            .await?;
    if ours {
        sqlx::query(
            "WITH gone AS (DELETE FROM key_shape_tallies RETURNING *)
             INSERT INTO key_shape_tallies
             SELECT algorithm, bits, rsa_exponent_bits, comment_bytes, line_bytes, sum(keys)
             FROM gone GROUP BY 1, 2, 3, 4, 5 HAVING sum(keys) <> 0",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "WITH gone AS (DELETE FROM row_tallies RETURNING *)
             INSERT INTO row_tallies SELECT relation, sum(rows) FROM gone GROUP BY 1",
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Every key, counted by shape; `expired` and `expiring` are filled from the expiry index.
pub async fn shapes(
    db: impl PgExecutor<'_>,
    now: time::OffsetDateTime,
    soon: time::OffsetDateTime,
) -> Result<Vec<ShapeCount>, sqlx::Error> {
    sqlx::query_as(
        "WITH everything AS (
             SELECT algorithm, bits, rsa_exponent_bits, comment_bytes, line_bytes, sum(keys)::int8 AS keys
             FROM key_shape_tallies GROUP BY 1, 2, 3, 4, 5 HAVING sum(keys) <> 0),
         ending AS (
             SELECT algorithm, bits, rsa_exponent_bits, comment_bytes, line_bytes,
                    count(*) FILTER (WHERE expires_at <= $1) AS expired,
                    count(*) FILTER (WHERE expires_at > $1) AS expiring
             FROM ssh_keys WHERE expires_at <= $2 GROUP BY 1, 2, 3, 4, 5)
         SELECT e.*, coalesce(x.expired, 0) AS expired, coalesce(x.expiring, 0) AS expiring
         FROM everything e LEFT JOIN ending x
           USING (algorithm, bits, rsa_exponent_bits, comment_bytes, line_bytes)",
    )
    .bind(now)
    .bind(soon)
    .fetch_all(db)
    .await
}

/// One user's keys counted by shape (a user holds at most the policy's quota).
pub async fn shapes_of_user(
    db: impl PgExecutor<'_>,
    user_id: i64,
    now: time::OffsetDateTime,
    soon: time::OffsetDateTime,
) -> Result<Vec<ShapeCount>, sqlx::Error> {
    sqlx::query_as(
        "SELECT algorithm, bits, rsa_exponent_bits, comment_bytes, line_bytes, count(*) AS keys,
                count(*) FILTER (WHERE expires_at <= $2) AS expired,
                count(*) FILTER (WHERE expires_at > $2 AND expires_at <= $3) AS expiring
         FROM ssh_keys WHERE user_id = $1 GROUP BY 1, 2, 3, 4, 5",
    )
    .bind(user_id)
    .bind(now)
    .bind(soon)
    .fetch_all(db)
    .await
}

/// How many users, servers and grants there are.
pub async fn rows(db: impl PgExecutor<'_>) -> Result<(i64, i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT coalesce(sum(rows) FILTER (WHERE relation = 'users'), 0)::int8,
                coalesce(sum(rows) FILTER (WHERE relation = 'servers'), 0)::int8,
                coalesce(sum(rows) FILTER (WHERE relation = 'grants'), 0)::int8
         FROM row_tallies",
    )
    .fetch_one(db)
    .await
}
