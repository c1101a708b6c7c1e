//! Grants (`grants`), and the login-path reads: the granted keys of a server's login (streamed)
//! and the one key with a fingerprint, found through the unique fingerprint index.

use crate::domain::LoginName;
use sqlx::{PgExecutor, Postgres, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use super::keys::parse_time_id;
use super::tokens::{live_token, TokenPrincipal};
use super::Page;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GrantRow {
    pub id: Uuid,
    pub server_id: i64,
    pub server: String,
    pub user_id: i64,
    pub username: String,
    pub key_id: Option<Uuid>,
    pub login: String,
    pub options: String,
    pub expires_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub created_by: Option<String>,
}

const SELECT: &str = "SELECT g.id, g.server_id, s.name AS server, g.user_id, u.username, g.key_id, g.login, g.options,
    g.expires_at, g.created_at, c.username AS created_by
    FROM grants g JOIN servers s ON s.id = g.server_id JOIN users u ON u.id = g.user_id
    LEFT JOIN users c ON c.id = g.created_by";

pub struct NewGrant<'a> {
    pub server_id: i64,
    pub user_id: i64,
    pub key_id: Option<Uuid>,
    pub login: &'a LoginName,
    pub options: &'a str,
    pub expires_at: Option<OffsetDateTime>,
    pub created_by: Option<i64>,
}

pub async fn insert(db: impl PgExecutor<'_>, g: &NewGrant<'_>) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO grants (server_id, user_id, key_id, login, options, expires_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(g.server_id)
    .bind(g.user_id)
    .bind(g.key_id)
    .bind(g.login.as_str())
    .bind(g.options)
    .bind(g.expires_at)
    .bind(g.created_by)
    .fetch_one(db)
    .await
}

pub async fn by_id(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<GrantRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE g.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

pub async fn list(
    db: impl PgExecutor<'_>,
    server_id: i64,
    username: Option<&str>,
    page: &Page,
) -> Result<Vec<GrantRow>, sqlx::Error> {
    let mut sql: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("{SELECT} WHERE g.server_id = "));
    sql.push_bind(server_id);
    if let Some(u) = username {
        sql.push(" AND u.username = ").push_bind(u.to_owned());
    }
    if let Some((at, id)) = page.after.as_deref().and_then(parse_time_id) {
        sql.push(" AND (g.created_at, g.id) > (")
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    sql.push(" ORDER BY g.created_at, g.id LIMIT ")
        .push_bind(page.limit + 1);
    sql.build_query_as().fetch_all(db).await
}

pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM grants WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?
        .rows_affected())
}

/// A key that a grant lets log in to a server as a login: the raw material of authorized_keys.
#[derive(Debug, Clone)]
pub struct GrantedKey {
    pub key_id: Uuid,
    pub username: String,
    pub public_key: String,
    pub comment: String,
    pub fingerprint_sha256: String,
    pub options: String,
    pub grant_expires_at: Option<OffsetDateTime>,
    pub key_created_at: OffsetDateTime,
    pub grant_created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub compromise: Option<String>,
    pub compromise_checks: i16,
    pub blocked_kind: Option<String>,
    pub blocked_reason: Option<String>,
    /// How specific the grant that gave this row is, most specific first: 0 a grant of this
    /// one key, 1 of all of a user's keys on the server, 2 a user on a server group, 3 a user
    /// group on the server, 4 a user group on a server group. A key reached by several grants
    /// is written once, with the options of the lowest rank (then the oldest grant).
    pub grant_rank: i32,
}

impl GrantedKey {
    /// The key's fields, borrowed: what validation, ordering and the line are written from.
    pub fn view(&self) -> GrantedKeyRef<'_> {
        GrantedKeyRef {
            key_id: self.key_id,
            username: &self.username,
            public_key: &self.public_key,
            comment: &self.comment,
            fingerprint_sha256: &self.fingerprint_sha256,
            options: &self.options,
            grant_expires_at: self.grant_expires_at,
            key_created_at: self.key_created_at,
            grant_created_at: self.grant_created_at,
            last_used_at: self.last_used_at,
            compromise: self.compromise.as_deref(),
            compromise_checks: self.compromise_checks,
            blocked_kind: self.blocked_kind.as_deref(),
            blocked_reason: self.blocked_reason.as_deref(),
            grant_rank: self.grant_rank,
        }
    }
}

/// A [`GrantedKey`] whose text fields are borrowed from where they were read.
#[derive(Debug, Clone, Copy)]
pub struct GrantedKeyRef<'r> {
    pub key_id: Uuid,
    pub username: &'r str,
    pub public_key: &'r str,
    pub comment: &'r str,
    pub fingerprint_sha256: &'r str,
    pub options: &'r str,
    pub grant_expires_at: Option<OffsetDateTime>,
    pub key_created_at: OffsetDateTime,
    pub grant_created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub compromise: Option<&'r str>,
    pub compromise_checks: i16,
    pub blocked_kind: Option<&'r str>,
    pub blocked_reason: Option<&'r str>,
    /// See [`GrantedKey::grant_rank`].
    pub grant_rank: i32,
}

/// authorized_keys order: by user, then the key's age and id, then the grant's specificity and
/// age. Rows of one key are next to each other, the one whose options are written first.
pub type GrantedKeyOrder<'r> = (&'r str, OffsetDateTime, Uuid, i32, OffsetDateTime);

impl<'r> GrantedKeyRef<'r> {
    /// What the database knows of this key besides its text, as the validator takes it.
    pub fn facts(&self) -> crate::keys::StoredFacts<'r> {
        super::keys::stored_facts(
            self.compromise,
            self.compromise_checks,
            self.blocked_kind,
            self.blocked_reason,
        )
    }

    pub fn order(&self) -> GrantedKeyOrder<'r> {
        (
            self.username,
            self.key_created_at,
            self.key_id,
            self.grant_rank,
            self.grant_created_at,
        )
    }

    fn into_owned(self) -> GrantedKey {
        GrantedKey {
            key_id: self.key_id,
            username: self.username.to_owned(),
            public_key: self.public_key.to_owned(),
            comment: self.comment.to_owned(),
            fingerprint_sha256: self.fingerprint_sha256.to_owned(),
            options: self.options.to_owned(),
            grant_expires_at: self.grant_expires_at,
            key_created_at: self.key_created_at,
            grant_created_at: self.grant_created_at,
            last_used_at: self.last_used_at,
            compromise: self.compromise.map(str::to_owned),
            compromise_checks: self.compromise_checks,
            blocked_kind: self.blocked_kind.map(str::to_owned),
            blocked_reason: self.blocked_reason.map(str::to_owned),
            grant_rank: self.grant_rank,
        }
    }

    /// The fields of a row of [`granted_columns!`], by position.
    fn decode(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        Ok(GrantedKeyRef {
            key_id: row.try_get(0)?,
            username: row.try_get(1)?,
            public_key: row.try_get(2)?,
            comment: row.try_get(3)?,
            fingerprint_sha256: row.try_get(4)?,
            options: row.try_get(5)?,
            grant_expires_at: row.try_get(6)?,
            key_created_at: row.try_get(7)?,
            grant_created_at: row.try_get(8)?,
            last_used_at: row.try_get(9)?,
            compromise: row.try_get(10)?,
            compromise_checks: row.try_get(11)?,
            blocked_kind: row.try_get(12)?,
            blocked_reason: row.try_get(13)?,
            grant_rank: row.try_get(14)?,
        })
    }
}

/// A row of the whole-list statement ([`granted_keys`]), kept as it arrived: its fields are
/// decoded in place by [`GrantedKeyRow::view`], where the key is validated and its line
/// written, so a 10,000-key login copies no key text into strings of its own.
pub struct GrantedKeyRow(sqlx::postgres::PgRow);

impl GrantedKeyRow {
    pub fn view(&self) -> Result<GrantedKeyRef<'_>, sqlx::Error> {
        GrantedKeyRef::decode(&self.0)
    }
}

/// The columns of a [`GrantedKey`], in the order its rows are read by position: a login with
/// 10,000 keys decodes 100,000 fields, and looking each up by name cost a seventh of the
/// request (perf, docs/performance.md). The blocklist entry is read only for a key that names
/// one (`ssh_keys.blocklist_id`, kept by the database): a join would probe the blocklist once
/// per key, most of the statement's time at 10,000 keys.
macro_rules! granted_columns {
    () => {
        "k.id, u.username, k.public_key, k.comment, k.fingerprint_sha256,
         r.options, r.expires_at, k.created_at, r.created_at, k.last_used_at,
         k.compromise, k.compromise_checks,
         CASE WHEN k.blocklist_id IS NOT NULL THEN (SELECT b.kind FROM blocklist b WHERE b.id = k.blocklist_id) END,
         CASE WHEN k.blocklist_id IS NOT NULL THEN (SELECT b.reason FROM blocklist b WHERE b.id = k.blocklist_id) END,
         r.rank"
    };
}

impl sqlx::FromRow<'_, sqlx::postgres::PgRow> for GrantedKey {
    fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        GrantedKeyRef::decode(row).map(GrantedKeyRef::into_owned)
    }
}

/// A granted key found by fingerprint, with the policy in force read by the same statement (one
/// round trip per login instead of two).
#[derive(Debug, Clone)]
pub struct GrantedKeyAndPolicy {
    pub key: GrantedKey,
    pub policy: serde_json::Value,
}

impl sqlx::FromRow<'_, sqlx::postgres::PgRow> for GrantedKeyAndPolicy {
    fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        Ok(GrantedKeyAndPolicy {
            key: GrantedKey::from_row(row)?,
            policy: row.try_get(15)?,
        })
    }
}

/// The grants that reach (server `$1`, login `$2`), each with the user it reaches: direct
/// grants, and group grants resolved through server and user group membership as of this
/// statement. Columns: user_id, key_id, options, expires_at, created_at, rank (see
/// [`GrantedKey::grant_rank`]). The three filters limit each branch to one user's grants, for
/// the fingerprint path.
macro_rules! reach_cte {
    ($direct_filter:literal, $group_filter:literal, $member_filter:literal) => {
        concat!(
            "srv AS (SELECT id FROM servers WHERE name = $1),
             grp AS (
                 SELECT g.user_id, g.user_group_id, g.options, g.expires_at, g.created_at,
                        3 AS rank
                   FROM srv JOIN group_grants g ON g.server_id = srv.id
                  WHERE g.login = $2
                 UNION ALL
                 SELECT g.user_id, g.user_group_id, g.options, g.expires_at, g.created_at,
                        CASE WHEN g.user_id IS NULL THEN 4 ELSE 2 END
                   FROM srv JOIN server_group_members sm ON sm.server_id = srv.id
                   JOIN group_grants g ON g.server_group_id = sm.group_id
                  WHERE g.login = $2
             ),
             r AS (
                 SELECT g.user_id, g.key_id, g.options, g.expires_at, g.created_at,
                        CASE WHEN g.key_id IS NULL THEN 1 ELSE 0 END AS rank
                   FROM srv JOIN grants g ON g.server_id = srv.id
                  WHERE g.login = $2 ",
            $direct_filter,
            "
                 UNION ALL
                 SELECT grp.user_id, NULL::uuid, grp.options, grp.expires_at, grp.created_at, grp.rank
                   FROM grp WHERE grp.user_id IS NOT NULL ",
            $group_filter,
            "
                 UNION ALL
                 SELECT m.user_id, NULL::uuid, grp.options, grp.expires_at, grp.created_at, grp.rank
                   FROM grp JOIN user_group_members m ON m.group_id = grp.user_group_id ",
            $member_filter,
            "
             )"
        )
    };
}

/// Keys of enabled users with an unexpired grant and an unexpired key, for one server (by
/// name) and login, in no particular order (the service sorts them), one row per grant that
/// reaches the key. Streamed, so the caller can validate early rows while later ones arrive.
/// Validity under today's policy is the caller's.
pub fn granted_keys<'a>(
    db: &'a sqlx::PgPool,
    server: &'a str,
    login: &'a str,
) -> futures_util::stream::BoxStream<'a, Result<GrantedKeyRow, sqlx::Error>> {
    use futures_util::{StreamExt, TryStreamExt};
    sqlx::query(concat!(
        "WITH ",
        reach_cte!("", "", ""),
        " SELECT ",
        granted_columns!(),
        " FROM r
         JOIN users u ON u.id = r.user_id
         JOIN ssh_keys k ON k.user_id = r.user_id AND (r.key_id IS NULL OR r.key_id = k.id)
         WHERE NOT u.disabled
           AND (r.expires_at IS NULL OR r.expires_at > now())
           AND (k.expires_at IS NULL OR k.expires_at > now())"
    ))
    .bind(server)
    .bind(login)
    .fetch(db)
    .map_ok(GrantedKeyRow)
    .boxed()
}

/// The fingerprint path's CTEs: `key`, the one unexpired key with fingerprint `$3` (when the
/// gate's condition holds), and `r`, the grants that reach its owner for (server `$1`, login
/// `$2`).
///
/// `key` is MATERIALIZED so that every join from it is an index probe by the key's own
/// values. Joined inline, the planner may merge-join `ssh_keys` with `users` and walk the
/// users' primary key up to the owner: where the keys' owners are the oldest users, their
/// statistics make that look cheap, and a newer user's key then cost a scan of every user
/// (13-25 ms at 100,000 users, docs/performance.md).
macro_rules! key_reach_cte {
    ($($gate:expr),*) => {
        concat!(
            "key AS MATERIALIZED (
                 SELECT id, user_id, public_key, comment, fingerprint_sha256, created_at,
                        last_used_at, compromise, compromise_checks, blocklist_id
                   FROM ssh_keys
                  WHERE fingerprint_sha256 = $3 AND (expires_at IS NULL OR expires_at > now()) ",
            $($gate,)*
            "), ",
            reach_cte!(
                "AND g.user_id = (SELECT user_id FROM key)",
                "AND grp.user_id = (SELECT user_id FROM key)",
                "AND m.user_id = (SELECT user_id FROM key)"
            )
        )
    };
}

/// The rows of the key in `key`, one per grant in `r` that reaches it, each with the policy in
/// force ([`GrantedKeyAndPolicy`]).
macro_rules! granted_key_rows {
    () => {
        concat!(
            "SELECT ",
            granted_columns!(),
            ", (SELECT settings FROM policy) AS policy
             FROM key k
             JOIN users u ON u.id = k.user_id
             JOIN r ON r.user_id = k.user_id AND (r.key_id IS NULL OR r.key_id = k.id)
             WHERE NOT u.disabled AND (r.expires_at IS NULL OR r.expires_at > now())"
        )
    };
}

/// The statement of [`granted_key`] (`$1` server, `$2` login, `$3` fingerprint); public so
/// that tests can check its plan.
pub const GRANTED_KEY: &str = concat!("WITH ", key_reach_cte!(""), " ", granted_key_rows!());

/// Whether principal `p` is one that [`granted_key_for_token`] reads the key for: the server
/// `$1` itself (sshd's `AuthorizedKeysCommand`) or an enabled admin. Only a shortcut: the
/// service still authorizes the principal, and reads the key with a second statement for any
/// other caller that may.
macro_rules! reads_any_key {
    () => {
        "(p.server = $1 OR (p.role = 'admin' AND NOT p.disabled))"
    };
}

/// The statement of [`granted_key_for_token`]: the same parameters, and `$4` the hash of the
/// token's secret.
pub const GRANTED_KEY_FOR_TOKEN: &str = concat!(
    "WITH principal AS MATERIALIZED (",
    live_token!("$4"),
    "), ",
    key_reach_cte!(
        "AND EXISTS (SELECT 1 FROM principal p WHERE ",
        reads_any_key!(),
        ")"
    ),
    " SELECT x.*, p.token_id, p.user_id, p.username, p.role, p.disabled, p.server_id,
             p.server, p.stale, coalesce(",
    reads_any_key!(),
    ", false),
             CASE WHEN ",
    reads_any_key!(),
    " THEN EXISTS (SELECT 1 FROM srv) ELSE false END
      FROM principal p LEFT JOIN (",
    granted_key_rows!(),
    ") x ON true"
);

/// The same for the one key with this fingerprint, found through the unique fingerprint
/// index; every way to its owner's grants is an index too, so the time does not depend on how
/// many keys, users, servers or groups there are.
pub async fn granted_key(
    db: impl PgExecutor<'_>,
    server: &str,
    login: &str,
    fingerprint: &str,
) -> Result<Vec<GrantedKeyAndPolicy>, sqlx::Error> {
    sqlx::query_as(GRANTED_KEY)
        .bind(server)
        .bind(login)
        .bind(fingerprint)
        .fetch_all(db)
        .await
}

/// What [`granted_key_for_token`] found: the token's principal, and the key's rows if the
/// statement read them.
#[derive(Debug)]
pub struct TokenAndGrantedKey {
    pub principal: TokenPrincipal,
    /// `None` unless the token is the server's own or an enabled admin's: the rows were not
    /// read.
    pub keys: Option<Vec<GrantedKeyAndPolicy>>,
    /// A server has the name asked for (looked up only when the key was read).
    pub server_exists: bool,
}

/// [`super::tokens::authenticate`] and [`granted_key`] in one statement, for sshd's
/// `AuthorizedKeysCommand` asking with its server's token: one round trip per login instead of
/// two. The key is read only for a live token of server `server` or of an enabled admin: for
/// any other token `key` is empty, so no grant is read either. The caller still authorizes
/// the principal. `None`: no live token has this hash.
pub async fn granted_key_for_token(
    db: impl PgExecutor<'_>,
    secret_hash: &[u8],
    server: &str,
    login: &str,
    fingerprint: &str,
) -> Result<Option<TokenAndGrantedKey>, sqlx::Error> {
    use sqlx::{FromRow, Row};
    let rows = sqlx::query(GRANTED_KEY_FOR_TOKEN)
        .bind(server)
        .bind(login)
        .bind(fingerprint)
        .bind(secret_hash)
        .fetch_all(db)
        .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    // Columns 0-15 are the key's (NULL in the one row of a principal without one), then the
    // principal's, whether the key was read, and whether the server exists.
    let principal = TokenPrincipal {
        token_id: first.try_get(16)?,
        user_id: first.try_get(17)?,
        username: first.try_get(18)?,
        role: first.try_get(19)?,
        disabled: first.try_get(20)?,
        server_id: first.try_get(21)?,
        server: first.try_get(22)?,
        stale: first.try_get(23)?,
    };
    let keys = if first.try_get::<bool, _>(24)? {
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<Option<Uuid>, _>(0)?.is_some() {
                keys.push(GrantedKeyAndPolicy::from_row(row)?);
            }
        }
        Some(keys)
    } else {
        None
    };
    Ok(Some(TokenAndGrantedKey {
        principal,
        keys,
        server_exists: first.try_get(25)?,
    }))
}

/// Whether any grant (expired or not; direct or through a group) reaches the user on the
/// server: members see such servers.
pub async fn user_has_grant_on(
    db: impl PgExecutor<'_>,
    server_id: i64,
    user_id: i64,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM grants WHERE server_id = $1 AND user_id = $2)
             OR EXISTS (SELECT 1 FROM group_grants g
                         WHERE (g.server_id = $1 OR g.server_group_id IN
                                   (SELECT group_id FROM server_group_members WHERE server_id = $1))
                           AND (g.user_id = $2 OR g.user_group_id IN
                                   (SELECT group_id FROM user_group_members WHERE user_id = $2)))",
    )
    .bind(server_id)
    .bind(user_id)
    .fetch_one(db)
    .await
}
