//! Notifications (`notifications_sent`): what is due and not yet delivered, and the record of
//! a delivery. A notice is due on a channel until a row for it exists; each query returns, per
//! candidate, which channels still need it (`email_due`, `webhook_due`). Candidates whose
//! recipient has no email address come back too (`address` NULL), after the due ones, so the
//! service can report them as skipped without them crowding the due ones out of `limit`.

use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

use super::keys::{KeyRow, COLUMNS, TABLES};
use crate::keys::KeyShape;

/// The two channels, as the `channel` column spells them.
pub const EMAIL: &str = "email";
pub const WEBHOOK: &str = "webhook";

/// A key with its owner's address and what is still due for it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueKey {
    #[sqlx(flatten)]
    pub key: KeyRow,
    /// The owner's email address, if they have one.
    pub address: Option<String>,
    /// What makes this notice distinct from an earlier one about the same key.
    pub period: String,
    pub email_due: bool,
    pub webhook_due: bool,
}

/// `$1` kind, `$2` whether email is on, `$3` whether the webhook is on; `{period}` is the SQL
/// of the candidate's period. Keys of disabled users are nobody's concern.
fn due_keys(period: &str, from: &str, filter: &str) -> String {
    format!(
        "SELECT * FROM (
            SELECT {COLUMNS}, u.email AS address, {period} AS period,
                ($2 AND u.email IS NOT NULL AND NOT EXISTS (
                    SELECT 1 FROM notifications_sent n
                     WHERE n.channel = 'email' AND n.kind = $1 AND n.subject = k.id::text
                       AND n.user_id = k.user_id AND n.period = {period})) AS email_due,
                ($3 AND NOT EXISTS (
                    SELECT 1 FROM notifications_sent n
                     WHERE n.channel = 'webhook' AND n.kind = $1 AND n.subject = k.id::text
                       AND n.period = {period})) AS webhook_due
              FROM {from}
             WHERE NOT u.disabled AND {filter}
         ) d
         WHERE d.email_due OR d.webhook_due OR ($2 AND d.address IS NULL)
         ORDER BY (d.email_due OR d.webhook_due) DESC, d.created_at, d.id"
    )
}

/// Keys expiring after `now` and by `until`; the period is the expiry (UTC, to the second), so
/// a key whose expiry is moved is told again.
#[allow(clippy::too_many_arguments)]
pub async fn expiring_keys(
    db: impl PgExecutor<'_>,
    kind: &str,
    now: OffsetDateTime,
    until: OffsetDateTime,
    email: bool,
    webhook: bool,
    limit: i64,
    offset: i64,
) -> Result<Vec<DueKey>, sqlx::Error> {
    let sql = due_keys(
        r#"to_char(k.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"#,
        TABLES,
        "k.expires_at > $4 AND k.expires_at <= $5",
    );
    sqlx::query_as(&format!("{sql} LIMIT $6 OFFSET $7"))
        .bind(kind)
        .bind(email)
        .bind(webhook)
        .bind(now)
        .bind(until)
        .bind(limit)
        .bind(offset)
        .fetch_all(db)
        .await
}

/// Unexpired keys of these shapes, each with the rule (`codes`, one per shape) its shape
/// breaks: the period, so a key that later breaks another rule is told again.
#[allow(clippy::too_many_arguments)]
pub async fn keys_of_shapes(
    db: impl PgExecutor<'_>,
    kind: &str,
    shapes: &[(KeyShape, &str)],
    now: OffsetDateTime,
    email: bool,
    webhook: bool,
    limit: i64,
    offset: i64,
) -> Result<Vec<DueKey>, sqlx::Error> {
    // Shape lengths and bit counts are far below i32::MAX; a larger one matches no row.
    let column = |f: fn(&KeyShape) -> u32| {
        shapes
            .iter()
            .map(|(s, _)| i32::try_from(f(s)).unwrap_or(i32::MAX))
            .collect::<Vec<i32>>()
    };
    let names: Vec<&str> = shapes.iter().map(|(s, _)| s.algorithm.as_str()).collect();
    let codes: Vec<&str> = shapes.iter().map(|(_, c)| *c).collect();
    let from = "UNNEST($4::text[], $5::int4[], $6::int4[], $7::int4[], $8::int4[], $9::text[])
            AS s (algorithm, bits, rsa_exponent_bits, comment_bytes, line_bytes, code)
         JOIN ssh_keys k ON k.algorithm = s.algorithm AND k.bits = s.bits
               AND k.rsa_exponent_bits = s.rsa_exponent_bits AND k.comment_bytes = s.comment_bytes
               AND k.line_bytes = s.line_bytes
         JOIN users u ON u.id = k.user_id
         LEFT JOIN blocklist b ON b.id = k.blocklist_id";
    let sql = due_keys(
        "s.code",
        from,
        "(k.expires_at IS NULL OR k.expires_at > $10)",
    );
    sqlx::query_as(&format!("{sql} LIMIT $11 OFFSET $12"))
        .bind(kind)
        .bind(email)
        .bind(webhook)
        .bind(names)
        .bind(column(|s| s.bits))
        .bind(column(|s| s.rsa_exponent_bits))
        .bind(column(|s| s.comment_bytes))
        .bind(column(|s| s.line_bytes))
        .bind(codes)
        .bind(now)
        .bind(limit)
        .bind(offset)
        .fetch_all(db)
        .await
}

/// Keys on the blocklist or flagged by the computed checks of `checks_version`; the period is
/// the reason (the blocklist's kind first).
pub async fn compromised_keys(
    db: impl PgExecutor<'_>,
    kind: &str,
    checks_version: i16,
    email: bool,
    webhook: bool,
    limit: i64,
    offset: i64,
) -> Result<Vec<DueKey>, sqlx::Error> {
    let sql = due_keys(
        "coalesce(b.kind, k.compromise)",
        TABLES,
        "(b.id IS NOT NULL OR (k.compromise IS NOT NULL AND k.compromise_checks = $4))",
    );
    sqlx::query_as(&format!("{sql} LIMIT $5 OFFSET $6"))
        .bind(kind)
        .bind(email)
        .bind(webhook)
        .bind(checks_version)
        .bind(limit)
        .bind(offset)
        .fetch_all(db)
        .await
}

/// A pending access request with one of the people who may decide it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueRequest {
    pub id: Uuid,
    pub requester: String,
    pub server: Option<String>,
    pub server_group: Option<String>,
    pub login: String,
    pub duration_hours: i32,
    pub reason: String,
    pub created_at: OffsetDateTime,
    pub lapses_at: OffsetDateTime,
    pub approver_id: i64,
    pub approver: String,
    pub address: Option<String>,
    pub email_due: bool,
    pub webhook_due: bool,
}

/// Requests nobody has decided and that have not lapsed, once per person who may decide each
/// (the rule of `store::access_requests`' `can_decide`: an enabled admin, or an owner of a
/// group of the requester's that holds a grant on that server or server group; never the
/// requester). `$1` the kind; the period is `pending` (a request is pending once).
pub async fn pending_requests(
    db: impl PgExecutor<'_>,
    kind: &str,
    now: OffsetDateTime,
    email: bool,
    webhook: bool,
    limit: i64,
) -> Result<Vec<DueRequest>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM (
            SELECT r.id, req.username AS requester, s.name AS server, sg.name AS server_group,
                   r.login, r.duration_hours, r.reason, r.created_at, r.lapses_at,
                   ap.id AS approver_id, ap.username AS approver, ap.email AS address,
                   ($2 AND ap.email IS NOT NULL AND NOT EXISTS (
                       SELECT 1 FROM notifications_sent n
                        WHERE n.channel = 'email' AND n.kind = $1 AND n.subject = r.id::text
                          AND n.user_id = ap.id AND n.period = 'pending')) AS email_due,
                   ($3 AND NOT EXISTS (
                       SELECT 1 FROM notifications_sent n
                        WHERE n.channel = 'webhook' AND n.kind = $1 AND n.subject = r.id::text
                          AND n.period = 'pending')) AS webhook_due
              FROM access_requests r
              JOIN users req ON req.id = r.requester_id
              LEFT JOIN servers s ON s.id = r.server_id
              LEFT JOIN server_groups sg ON sg.id = r.server_group_id
              JOIN users ap ON NOT ap.disabled AND ap.id <> r.requester_id AND (
                   ap.role = 'admin' OR EXISTS (
                       SELECT 1 FROM user_group_owners o
                         JOIN user_group_members m ON m.group_id = o.group_id AND m.user_id = r.requester_id
                         JOIN group_grants g ON g.user_group_id = o.group_id
                        WHERE o.user_id = ap.id
                          AND (g.server_group_id = r.server_group_id
                               OR g.server_id = r.server_id
                               OR g.server_group_id IN (SELECT group_id FROM server_group_members WHERE server_id = r.server_id))))
             WHERE r.decision IS NULL AND r.lapses_at > $4
         ) d
         WHERE d.email_due OR d.webhook_due OR ($2 AND d.address IS NULL)
         ORDER BY (d.email_due OR d.webhook_due) DESC, d.created_at, d.id, d.approver_id
         LIMIT $5",
    )
    .bind(kind)
    .bind(email)
    .bind(webhook)
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// An enabled admin and whether today's digest is still due to them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueAdmin {
    pub id: i64,
    pub username: String,
    pub address: Option<String>,
    pub email_due: bool,
}

/// Every enabled admin, with whether the digest of `day` is due to them by email.
pub async fn admins(
    db: impl PgExecutor<'_>,
    kind: &str,
    day: &str,
) -> Result<Vec<DueAdmin>, sqlx::Error> {
    sqlx::query_as(
        "SELECT u.id, u.username, u.email AS address,
                (u.email IS NOT NULL AND NOT EXISTS (
                    SELECT 1 FROM notifications_sent n
                     WHERE n.channel = 'email' AND n.kind = $1 AND n.subject = 'digest'
                       AND n.user_id = u.id AND n.period = $2)) AS email_due
           FROM users u WHERE u.role = 'admin' AND NOT u.disabled ORDER BY u.username",
    )
    .bind(kind)
    .bind(day)
    .fetch_all(db)
    .await
}

/// Whether a webhook notice of this kind, subject and period has gone out.
pub async fn webhook_sent(
    db: impl PgExecutor<'_>,
    kind: &str,
    subject: &str,
    period: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM notifications_sent
                         WHERE channel = 'webhook' AND kind = $1 AND subject = $2 AND period = $3)",
    )
    .bind(kind)
    .bind(subject)
    .bind(period)
    .fetch_one(db)
    .await
}

/// Compromised keys of enabled users (blocklisted, or flagged by these checks).
pub async fn count_compromised(
    db: impl PgExecutor<'_>,
    checks_version: i16,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {TABLES}
          WHERE NOT u.disabled
            AND (b.id IS NOT NULL OR (k.compromise IS NOT NULL AND k.compromise_checks = $1))"
    ))
    .bind(checks_version)
    .fetch_one(db)
    .await
}

/// Access requests nobody has decided that have not lapsed by `now`.
pub async fn count_pending_requests(
    db: impl PgExecutor<'_>,
    now: OffsetDateTime,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM access_requests WHERE decision IS NULL AND lapses_at > $1",
    )
    .bind(now)
    .fetch_one(db)
    .await
}

/// A delivery to record.
#[derive(Debug, Clone, Copy)]
pub struct Delivered<'a> {
    pub kind: &'a str,
    pub subject: &'a str,
    pub channel: &'a str,
    /// The person and address mailed (email only).
    pub user_id: Option<i64>,
    pub address: Option<&'a str>,
    pub period: &'a str,
}

/// Records a delivery; `false` if it was recorded already (another sender got there first).
pub async fn record(db: impl PgExecutor<'_>, d: &Delivered<'_>) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "INSERT INTO notifications_sent (kind, subject, channel, user_id, address, period)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(d.kind)
    .bind(d.subject)
    .bind(d.channel)
    .bind(d.user_id)
    .bind(d.address)
    .bind(d.period)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}
