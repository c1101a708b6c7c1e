//! Access requests (`access_requests`) and the grants an approval writes.

use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RequestRow {
    pub id: Uuid,
    pub requester_id: i64,
    pub requester: String,
    pub server_id: Option<i64>,
    pub server: Option<String>,
    pub server_group_id: Option<i64>,
    pub server_group: Option<String>,
    pub login: String,
    pub duration_hours: i32,
    pub reason: String,
    /// `pending`, `approved`, `denied`, or `expired` (pending past `lapses_at`).
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<OffsetDateTime>,
    pub comment: String,
    pub grant_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
    pub lapses_at: OffsetDateTime,
    /// Whether the reader (`$1`) may decide it now: pending, not theirs, and they are an admin
    /// (`$2`) or own a group of the requester's that holds a grant (any login) on that server,
    /// on a server group holding it, or on that server group.
    pub can_decide: bool,
    /// Whether the reader may see it: theirs, or one they could decide while it was pending.
    pub visible: bool,
}

/// `$1` reader's user id (or -1), `$2` whether the reader is an admin.
const SELECT: &str = "SELECT r.id, r.requester_id, u.username AS requester, r.server_id, s.name AS server,
        r.server_group_id, sg.name AS server_group, r.login, r.duration_hours, r.reason,
        CASE WHEN r.decision IS NOT NULL THEN r.decision
             WHEN r.lapses_at <= now() THEN 'expired' ELSE 'pending' END AS status,
        d.username AS decided_by, r.decided_at, r.comment, r.grant_id, r.created_at, r.lapses_at,
        (r.decision IS NULL AND r.lapses_at > now() AND r.requester_id <> $1
            AND ($2 OR a.approver)) AS can_decide,
        ($2 OR r.requester_id = $1 OR a.approver) AS visible
   FROM access_requests r
   JOIN users u ON u.id = r.requester_id
   LEFT JOIN servers s ON s.id = r.server_id
   LEFT JOIN server_groups sg ON sg.id = r.server_group_id
   LEFT JOIN users d ON d.id = r.decided_by
   CROSS JOIN LATERAL (SELECT EXISTS (
       SELECT 1 FROM user_group_owners o
         JOIN user_group_members m ON m.group_id = o.group_id AND m.user_id = r.requester_id
         JOIN group_grants g ON g.user_group_id = o.group_id
        WHERE o.user_id = $1
          AND (g.server_group_id = r.server_group_id
               OR g.server_id = r.server_id
               OR g.server_group_id IN (SELECT group_id FROM server_group_members WHERE server_id = r.server_id))
   ) AS approver) a";

pub struct NewRequest<'a> {
    pub requester_id: i64,
    pub server_id: Option<i64>,
    pub server_group_id: Option<i64>,
    pub login: &'a str,
    pub duration_hours: i32,
    pub reason: &'a str,
    pub lapses_at: OffsetDateTime,
}

pub async fn insert(db: impl PgExecutor<'_>, r: &NewRequest<'_>) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO access_requests (requester_id, server_id, server_group_id, login,
                                      duration_hours, reason, lapses_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(r.requester_id)
    .bind(r.server_id)
    .bind(r.server_group_id)
    .bind(r.login)
    .bind(r.duration_hours)
    .bind(r.reason)
    .bind(r.lapses_at)
    .fetch_one(db)
    .await
}

/// One request as `reader` sees it (`None` if it does not exist).
pub async fn by_id(
    db: impl PgExecutor<'_>,
    id: Uuid,
    reader: i64,
    admin: bool,
) -> Result<Option<RequestRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE r.id = $3"))
        .bind(reader)
        .bind(admin)
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The newest requests `reader` may see, newest first; with `status`, only those.
pub async fn list(
    db: impl PgExecutor<'_>,
    reader: i64,
    admin: bool,
    status: Option<&str>,
) -> Result<Vec<RequestRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT * FROM ({SELECT}) x WHERE x.visible AND ($3::text IS NULL OR x.status = $3)
         ORDER BY x.created_at DESC, x.id LIMIT 500"
    ))
    .bind(reader)
    .bind(admin)
    .bind(status)
    .fetch_all(db)
    .await
}

/// Records the decision, only while the request is still pending (false otherwise: decided or
/// lapsed in the meantime).
pub async fn decide(
    db: impl PgExecutor<'_>,
    id: Uuid,
    decision: &str,
    decided_by: Option<i64>,
    comment: &str,
    grant_id: Option<Uuid>,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE access_requests SET decision = $2, decided_by = $3, decided_at = now(),
                comment = $4, grant_id = $5
          WHERE id = $1 AND decision IS NULL AND lapses_at > now()",
    )
    .bind(id)
    .bind(decision)
    .bind(decided_by)
    .bind(comment)
    .bind(grant_id)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// The grant an approval writes: the requester on the server (in `grants`) or on the server
/// group (in `group_grants`), until `expires_at`. An existing grant for the same target and
/// login is kept and lengthened if it ends sooner; a grant without an end keeps none.
pub async fn grant_for(
    db: impl PgExecutor<'_>,
    request: &RequestRow,
    expires_at: OffsetDateTime,
    created_by: Option<i64>,
) -> Result<Uuid, sqlx::Error> {
    let sql = if request.server_id.is_some() {
        "INSERT INTO grants (server_id, user_id, login, expires_at, created_by)
         VALUES ($1, $3, $4, $5, $6)
         ON CONFLICT (server_id, user_id, login) WHERE key_id IS NULL
         DO UPDATE SET expires_at = CASE WHEN grants.expires_at IS NULL THEN NULL
                                        ELSE GREATEST(grants.expires_at, EXCLUDED.expires_at) END
         RETURNING id"
    } else {
        "INSERT INTO group_grants (server_group_id, user_id, login, expires_at, created_by)
         VALUES ($2, $3, $4, $5, $6)
         ON CONFLICT (server_id, server_group_id, user_id, user_group_id, login)
         DO UPDATE SET expires_at = CASE WHEN group_grants.expires_at IS NULL THEN NULL
                                        ELSE GREATEST(group_grants.expires_at, EXCLUDED.expires_at) END
         RETURNING id"
    };
    sqlx::query_scalar(sql)
        .bind(request.server_id)
        .bind(request.server_group_id)
        .bind(request.requester_id)
        .bind(&request.login)
        .bind(expires_at)
        .bind(created_by)
        .fetch_one(db)
        .await
}
