//! Effective access: every (server, login, key) that some unexpired grant lets in right now,
//! through which grant and which groups. The same rules as the login path
//! (`store::grants::granted_keys`), for access reviews rather than for sshd.

use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccessRow {
    pub server: String,
    pub login: String,
    pub username: String,
    pub key_id: Uuid,
    pub fingerprint_sha256: String,
    pub public_key: String,
    pub comment: String,
    pub options: String,
    pub expires_at: Option<OffsetDateTime>,
    pub grant_id: Uuid,
    pub user_group: Option<String>,
    pub server_group: Option<String>,
    pub compromise: Option<String>,
    pub compromise_checks: i16,
    pub blocked_kind: Option<String>,
    pub blocked_reason: Option<String>,
}

impl AccessRow {
    pub fn facts(&self) -> crate::keys::StoredFacts<'_> {
        super::keys::stored_facts(
            self.compromise.as_deref(),
            self.compromise_checks,
            self.blocked_kind.as_deref(),
            self.blocked_reason.as_deref(),
        )
    }
}

/// One row per (server, login, key), from the most specific grant that reaches it (then the
/// oldest), as authorized_keys writes it; for one server or one user.
pub async fn effective_access(
    db: impl PgExecutor<'_>,
    server_id: Option<i64>,
    user_id: Option<i64>,
) -> Result<Vec<AccessRow>, sqlx::Error> {
    sqlx::query_as(
        "WITH e AS (
             SELECT g.id AS grant_id, g.server_id, g.user_id, g.key_id, g.login, g.options,
                    g.expires_at, g.created_at, CASE WHEN g.key_id IS NULL THEN 1 ELSE 0 END AS rank,
                    NULL::bigint AS user_group_id, NULL::bigint AS server_group_id
               FROM grants g
              WHERE ($1::bigint IS NULL OR g.server_id = $1) AND ($2::bigint IS NULL OR g.user_id = $2)
             UNION ALL
             SELECT g.id, COALESCE(g.server_id, sm.server_id), COALESCE(g.user_id, um.user_id),
                    NULL::uuid, g.login, g.options, g.expires_at, g.created_at,
                    CASE WHEN g.user_id IS NOT NULL THEN 2 WHEN g.server_id IS NOT NULL THEN 3 ELSE 4 END,
                    g.user_group_id, g.server_group_id
               FROM group_grants g
               LEFT JOIN server_group_members sm ON sm.group_id = g.server_group_id
               LEFT JOIN user_group_members um ON um.group_id = g.user_group_id
              WHERE (g.server_group_id IS NULL OR sm.server_id IS NOT NULL)
                AND (g.user_group_id IS NULL OR um.user_id IS NOT NULL)
                AND ($1::bigint IS NULL OR COALESCE(g.server_id, sm.server_id) = $1)
                AND ($2::bigint IS NULL OR COALESCE(g.user_id, um.user_id) = $2)
         )
         SELECT DISTINCT ON (s.name, e.login, k.id)
                s.name AS server, e.login, u.username, k.id AS key_id, k.fingerprint_sha256,
                k.public_key, k.comment, e.options, e.expires_at, e.grant_id,
                ug.name AS user_group, sg.name AS server_group,
                k.compromise, k.compromise_checks, b.kind AS blocked_kind, b.reason AS blocked_reason
           FROM e
           JOIN servers s ON s.id = e.server_id
           JOIN users u ON u.id = e.user_id
           JOIN ssh_keys k ON k.user_id = e.user_id AND (e.key_id IS NULL OR e.key_id = k.id)
           LEFT JOIN user_groups ug ON ug.id = e.user_group_id
           LEFT JOIN server_groups sg ON sg.id = e.server_group_id
           LEFT JOIN blocklist b ON b.id = k.blocklist_id
          WHERE NOT u.disabled
            AND (e.expires_at IS NULL OR e.expires_at > now())
            AND (k.expires_at IS NULL OR k.expires_at > now())
          ORDER BY s.name, e.login, k.id, e.rank, e.created_at, e.grant_id",
    )
    .bind(server_id)
    .bind(user_id)
    .fetch_all(db)
    .await
}
