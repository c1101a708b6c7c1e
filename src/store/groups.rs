//! User groups (`user_groups`, members, owners), server groups (`server_groups`, member
//! servers) and the grants that name a group (`group_grants`).

use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::LoginName;

/// Which of the two kinds of group a query is about. The two are the same shape: a named
/// set with a description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Users,
    Servers,
}

impl Kind {
    fn table(self) -> &'static str {
        match self {
            Kind::Users => "user_groups",
            Kind::Servers => "server_groups",
        }
    }

    /// The columns of a [`GroupRow`]; server groups are always managed in keyportal.
    fn columns(self) -> &'static str {
        match self {
            Kind::Users => "id, name, description, created_at, managed_by",
            Kind::Servers => "id, name, description, created_at, 'portal' AS managed_by",
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GroupRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub created_at: OffsetDateTime,
    /// `portal` (members changed by hand) or `provider` (members follow the identity
    /// provider's groups claim).
    pub managed_by: String,
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    kind: Kind,
    name: &str,
    description: &str,
) -> Result<GroupRow, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO {} (name, description) VALUES ($1, $2) RETURNING {}",
        kind.table(),
        kind.columns()
    ))
    .bind(name)
    .bind(description)
    .fetch_one(db)
    .await
}

pub async fn by_name(
    db: impl PgExecutor<'_>,
    kind: Kind,
    name: &str,
) -> Result<Option<GroupRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {} FROM {} WHERE name = $1",
        kind.columns(),
        kind.table()
    ))
    .bind(name)
    .fetch_optional(db)
    .await
}

/// Every group of the kind, by name; with `visible_to`, only user groups the user is a member
/// or an owner of.
pub async fn list(
    db: impl PgExecutor<'_>,
    kind: Kind,
    visible_to: Option<i64>,
) -> Result<Vec<GroupRow>, sqlx::Error> {
    match (kind, visible_to) {
        (Kind::Users, Some(user_id)) => {
            sqlx::query_as(
                "SELECT g.id, g.name, g.description, g.created_at, g.managed_by FROM user_groups g
                 WHERE EXISTS (SELECT 1 FROM user_group_members m WHERE m.group_id = g.id AND m.user_id = $1)
                    OR EXISTS (SELECT 1 FROM user_group_owners o WHERE o.group_id = g.id AND o.user_id = $1)
                 ORDER BY g.name",
            )
            .bind(user_id)
            .fetch_all(db)
            .await
        }
        _ => {
            sqlx::query_as(&format!(
                "SELECT {} FROM {} ORDER BY name",
                kind.columns(),
                kind.table()
            ))
            .fetch_all(db)
            .await
        }
    }
}

pub async fn update_description(
    db: impl PgExecutor<'_>,
    kind: Kind,
    id: i64,
    description: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(&format!(
        "UPDATE {} SET description = $2 WHERE id = $1",
        kind.table()
    ))
    .bind(id)
    .bind(description)
    .execute(db)
    .await?
    .rows_affected())
}

pub async fn delete(db: impl PgExecutor<'_>, kind: Kind, id: i64) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query(&format!("DELETE FROM {} WHERE id = $1", kind.table()))
            .bind(id)
            .execute(db)
            .await?
            .rows_affected(),
    )
}

/// The names of a group's members: usernames for a user group, server names for a server
/// group.
pub async fn member_names(
    db: impl PgExecutor<'_>,
    kind: Kind,
    group_id: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let sql = match kind {
        Kind::Users => {
            "SELECT u.username FROM user_group_members m JOIN users u ON u.id = m.user_id
             WHERE m.group_id = $1 ORDER BY u.username"
        }
        Kind::Servers => {
            "SELECT s.name FROM server_group_members m JOIN servers s ON s.id = m.server_id
             WHERE m.group_id = $1 ORDER BY s.name"
        }
    };
    sqlx::query_scalar(sql).bind(group_id).fetch_all(db).await
}

pub async fn owner_names(
    db: impl PgExecutor<'_>,
    group_id: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT u.username FROM user_group_owners o JOIN users u ON u.id = o.user_id
         WHERE o.group_id = $1 ORDER BY u.username",
    )
    .bind(group_id)
    .fetch_all(db)
    .await
}

/// Adds a member (a user id or a server id, by the kind); true when it was not one already.
pub async fn add_member(
    db: impl PgExecutor<'_>,
    kind: Kind,
    group_id: i64,
    member_id: i64,
) -> Result<bool, sqlx::Error> {
    let sql = match kind {
        Kind::Users => "INSERT INTO user_group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        Kind::Servers => "INSERT INTO server_group_members (group_id, server_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    };
    Ok(sqlx::query(sql)
        .bind(group_id)
        .bind(member_id)
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

pub async fn remove_member(
    db: impl PgExecutor<'_>,
    kind: Kind,
    group_id: i64,
    member_id: i64,
) -> Result<bool, sqlx::Error> {
    let sql = match kind {
        Kind::Users => "DELETE FROM user_group_members WHERE group_id = $1 AND user_id = $2",
        Kind::Servers => "DELETE FROM server_group_members WHERE group_id = $1 AND server_id = $2",
    };
    Ok(sqlx::query(sql)
        .bind(group_id)
        .bind(member_id)
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

/// Makes exactly these users the group's owners.
pub async fn set_owners(
    db: &mut sqlx::PgConnection,
    group_id: i64,
    user_ids: &[i64],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM user_group_owners WHERE group_id = $1 AND NOT (user_id = ANY($2))")
        .bind(group_id)
        .bind(user_ids)
        .execute(&mut *db)
        .await?;
    sqlx::query(
        "INSERT INTO user_group_owners (group_id, user_id) SELECT $1, unnest($2::bigint[])
         ON CONFLICT DO NOTHING",
    )
    .bind(group_id)
    .bind(user_ids)
    .execute(&mut *db)
    .await?;
    Ok(())
}

/// Whether the user is a member of, and whether an owner of, the user group.
pub async fn standing(
    db: impl PgExecutor<'_>,
    group_id: i64,
    user_id: i64,
) -> Result<(bool, bool), sqlx::Error> {
    sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM user_group_members WHERE group_id = $1 AND user_id = $2),
                EXISTS (SELECT 1 FROM user_group_owners WHERE group_id = $1 AND user_id = $2)",
    )
    .bind(group_id)
    .bind(user_id)
    .fetch_one(db)
    .await
}

/// Who a group grant reaches and where: one side each.
#[derive(Debug, Clone, Copy)]
pub enum Grantee {
    User(i64),
    UserGroup(i64),
}

#[derive(Debug, Clone, Copy)]
pub enum Target {
    Server(i64),
    ServerGroup(i64),
}

pub struct NewGroupGrant<'a> {
    pub grantee: Grantee,
    pub target: Target,
    pub login: &'a LoginName,
    pub options: &'a str,
    pub expires_at: Option<OffsetDateTime>,
    pub created_by: Option<i64>,
}

pub async fn insert_grant(
    db: impl PgExecutor<'_>,
    g: &NewGroupGrant<'_>,
) -> Result<Uuid, sqlx::Error> {
    let (user_id, user_group_id) = match g.grantee {
        Grantee::User(id) => (Some(id), None),
        Grantee::UserGroup(id) => (None, Some(id)),
    };
    let (server_id, server_group_id) = match g.target {
        Target::Server(id) => (Some(id), None),
        Target::ServerGroup(id) => (None, Some(id)),
    };
    sqlx::query_scalar(
        "INSERT INTO group_grants (server_id, server_group_id, user_id, user_group_id, login,
                                   options, expires_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(server_id)
    .bind(server_group_id)
    .bind(user_id)
    .bind(user_group_id)
    .bind(g.login.as_str())
    .bind(g.options)
    .bind(g.expires_at)
    .bind(g.created_by)
    .fetch_one(db)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GroupGrantRow {
    pub id: Uuid,
    pub server: Option<String>,
    pub server_group: Option<String>,
    pub username: Option<String>,
    pub user_group: Option<String>,
    pub login: String,
    pub options: String,
    pub expires_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub created_by: Option<String>,
}

pub async fn grant_by_id(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<GroupGrantRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT g.id, s.name AS server, sg.name AS server_group, u.username, ug.name AS user_group,
                g.login, g.options, g.expires_at, g.created_at, c.username AS created_by
         FROM group_grants g
         LEFT JOIN servers s ON s.id = g.server_id
         LEFT JOIN server_groups sg ON sg.id = g.server_group_id
         LEFT JOIN users u ON u.id = g.user_id
         LEFT JOIN user_groups ug ON ug.id = g.user_group_id
         LEFT JOIN users c ON c.id = g.created_by
         WHERE g.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

pub async fn delete_grant(db: impl PgExecutor<'_>, id: Uuid) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM group_grants WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?
        .rows_affected())
}
