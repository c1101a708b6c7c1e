//! User groups and server groups, and grants that name a group: access granted the way teams
//! think about it. Membership is read at every login, so a change counts at the next one.

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{authorize, Action, Ctx, ResultExt, ServiceError, Services};
use crate::domain::{BoundedText, Expiry, GroupName, LoginName};
use crate::store;
use crate::store::groups::{Grantee, GroupGrantRow, GroupRow, Kind, Target};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GroupView {
    pub name: String,
    pub description: String,
    /// Usernames (user groups) or server names (server groups).
    pub members: Vec<String>,
    /// User groups only: who may change the members.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owners: Option<Vec<String>>,
    /// User groups only: `portal` (members changed here) or `provider` (members follow the
    /// identity provider's groups claim, synced at each sign-in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A grant that names a user group or a server group (or both).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GroupGrantView {
    pub id: Uuid,
    pub server: Option<String>,
    pub server_group: Option<String>,
    pub username: Option<String>,
    pub group: Option<String>,
    pub login: String,
    pub options: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub created_by: Option<String>,
}

impl From<GroupGrantRow> for GroupGrantView {
    fn from(g: GroupGrantRow) -> Self {
        GroupGrantView {
            id: g.id,
            server: g.server,
            server_group: g.server_group,
            username: g.username,
            group: g.user_group,
            login: g.login,
            options: g.options,
            expires_at: g.expires_at,
            created_at: g.created_at,
            created_by: g.created_by,
        }
    }
}

#[derive(Debug, Default)]
pub struct NewGroup {
    pub name: String,
    pub description: Option<String>,
    /// User groups only.
    pub owners: Option<Vec<String>>,
}

#[derive(Debug, Default)]
pub struct GroupPatch {
    pub description: Option<String>,
    /// User groups only: the new, whole list of owners.
    pub owners: Option<Vec<String>>,
}

/// Who a group grant is for: one user or one user group (by name).
#[derive(Debug)]
pub enum GrantFor {
    User(String),
    Group(String),
}

#[derive(Debug)]
pub struct NewGroupGrant {
    pub grantee: GrantFor,
    pub login: String,
    pub options: Option<String>,
    pub expires_at: Option<OffsetDateTime>,
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Users => "group",
        Kind::Servers => "server group",
    }
}

fn audit_target(kind: Kind, name: &str) -> String {
    match kind {
        Kind::Users => format!("group:{name}"),
        Kind::Servers => format!("server-group:{name}"),
    }
}

fn description(text: Option<&str>) -> Result<String, ServiceError> {
    let text = text.unwrap_or("").trim();
    BoundedText::<0, 2000>::parse(text)
        .map(|t| t.as_str().to_owned())
        .map_err(|e| ServiceError::invalid("description", e))
}

impl Services {
    async fn group_row(&self, kind: Kind, name: &str) -> Result<GroupRow, ServiceError> {
        store::groups::by_name(&self.pool, kind, name)
            .await?
            .ok_or(ServiceError::NotFound {
                what: kind_name(kind),
            })
    }

    /// The caller's standing in a user group: (member, owner); admins count as owners.
    async fn standing(&self, ctx: &Ctx, group: &GroupRow) -> Result<(bool, bool), ServiceError> {
        match ctx.caller.user_id() {
            Some(user_id) if !ctx.caller.is_admin() => {
                Ok(store::groups::standing(&self.pool, group.id, user_id).await?)
            }
            _ => Ok((true, true)),
        }
    }

    async fn group_view(&self, kind: Kind, row: GroupRow) -> Result<GroupView, ServiceError> {
        let members = store::groups::member_names(&self.pool, kind, row.id).await?;
        let owners = match kind {
            Kind::Users => Some(store::groups::owner_names(&self.pool, row.id).await?),
            Kind::Servers => None,
        };
        Ok(GroupView {
            name: row.name,
            description: row.description,
            members,
            owners,
            managed_by: (kind == Kind::Users).then_some(row.managed_by),
            created_at: row.created_at,
        })
    }

    /// User ids for usernames, refusing the first that does not exist.
    async fn user_ids(&self, usernames: &[String]) -> Result<Vec<i64>, ServiceError> {
        let mut ids = Vec::with_capacity(usernames.len());
        for name in usernames {
            let user = store::users::by_username(&self.pool, name)
                .await?
                .ok_or_else(|| {
                    ServiceError::invalid("owners", format!("there is no user {name:?}"))
                })?;
            ids.push(user.id);
        }
        Ok(ids)
    }

    #[tracing::instrument(skip_all)]
    pub async fn list_groups(&self, ctx: &Ctx, kind: Kind) -> Result<Vec<GroupView>, ServiceError> {
        let visible_to = match kind {
            Kind::Users => {
                // Members list the groups they are in or own.
                if ctx.caller.is_admin() {
                    None
                } else {
                    match ctx.caller.user_id() {
                        Some(id) => Some(id),
                        None => {
                            authorize(&ctx.caller, Action::ManageGroups)?;
                            None
                        }
                    }
                }
            }
            Kind::Servers => {
                authorize(&ctx.caller, Action::ManageGroups)?;
                None
            }
        };
        let rows = store::groups::list(&self.pool, kind, visible_to).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.group_view(kind, row).await?);
        }
        Ok(out)
    }

    #[tracing::instrument(skip_all)]
    pub async fn get_group(
        &self,
        ctx: &Ctx,
        kind: Kind,
        name: &str,
    ) -> Result<GroupView, ServiceError> {
        if kind == Kind::Servers || ctx.caller.user_id().is_none() {
            authorize(&ctx.caller, Action::ManageGroups)?;
        }
        let row = self.group_row(kind, name).await?;
        if kind == Kind::Users {
            let (member, owner) = self.standing(ctx, &row).await?;
            authorize(&ctx.caller, Action::ReadUserGroup { member, owner })?;
        }
        self.group_view(kind, row).await
    }

    #[tracing::instrument(skip_all)]
    pub async fn create_group(
        &self,
        ctx: &Ctx,
        kind: Kind,
        new: NewGroup,
    ) -> Result<GroupView, ServiceError> {
        authorize(&ctx.caller, Action::ManageGroups)?;
        let name = GroupName::parse(&new.name).map_err(|e| ServiceError::invalid("name", e))?;
        let description = description(new.description.as_deref())?;
        if kind == Kind::Servers && new.owners.is_some() {
            return Err(ServiceError::invalid(
                "owners",
                "server groups have no owners",
            ));
        }
        let owners = self
            .user_ids(new.owners.as_deref().unwrap_or_default())
            .await?;
        let mut tx = self.pool.begin().await?;
        let row = store::groups::insert(&mut *tx, kind, name.as_str(), &description)
            .await
            .on_constraint(&["user_groups_name_key", "server_groups_name_key"], || {
                ServiceError::Conflict {
                    code: "group_exists",
                    detail: format!("there is a {} named {name} already", kind_name(kind)),
                }
            })?;
        if kind == Kind::Users {
            store::groups::set_owners(&mut tx, row.id, &owners).await?;
        }
        super::audit::record(
            &mut *tx,
            ctx,
            "group.create",
            &audit_target(kind, name.as_str()),
            json!({ "description": description, "owners": new.owners }),
        )
        .await?;
        tx.commit().await?;
        self.group_view(kind, row).await
    }

    #[tracing::instrument(skip_all)]
    pub async fn update_group(
        &self,
        ctx: &Ctx,
        kind: Kind,
        name: &str,
        patch: GroupPatch,
    ) -> Result<GroupView, ServiceError> {
        authorize(&ctx.caller, Action::ManageGroups)?;
        let row = self.group_row(kind, name).await?;
        if kind == Kind::Servers && patch.owners.is_some() {
            return Err(ServiceError::invalid(
                "owners",
                "server groups have no owners",
            ));
        }
        let description = patch
            .description
            .as_deref()
            .map(|d| description(Some(d)))
            .transpose()?;
        let owners = match &patch.owners {
            Some(names) => Some(self.user_ids(names).await?),
            None => None,
        };
        let mut tx = self.pool.begin().await?;
        if let Some(d) = &description {
            store::groups::update_description(&mut *tx, kind, row.id, d).await?;
        }
        if let Some(ids) = &owners {
            store::groups::set_owners(&mut tx, row.id, ids).await?;
        }
        super::audit::record(
            &mut *tx,
            ctx,
            "group.update",
            &audit_target(kind, &row.name),
            json!({ "description": description, "owners": patch.owners }),
        )
        .await?;
        tx.commit().await?;
        let row = self.group_row(kind, name).await?;
        self.group_view(kind, row).await
    }

    #[tracing::instrument(skip_all)]
    pub async fn delete_group(
        &self,
        ctx: &Ctx,
        kind: Kind,
        name: &str,
    ) -> Result<(), ServiceError> {
        authorize(&ctx.caller, Action::ManageGroups)?;
        let row = self.group_row(kind, name).await?;
        let mut tx = self.pool.begin().await?;
        // Its grants go with it (ON DELETE CASCADE): access through the group ends now.
        store::groups::delete(&mut *tx, kind, row.id).await?;
        super::audit::record(
            &mut *tx,
            ctx,
            "group.delete",
            &audit_target(kind, &row.name),
            json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds (`add`) or removes a member: a user of a user group, a server of a server group.
    /// Idempotent; the answer is the group as it is now.
    #[tracing::instrument(skip_all)]
    pub async fn set_group_member(
        &self,
        ctx: &Ctx,
        kind: Kind,
        name: &str,
        member: &str,
        add: bool,
    ) -> Result<GroupView, ServiceError> {
        if kind == Kind::Servers || ctx.caller.user_id().is_none() {
            authorize(&ctx.caller, Action::ManageGroups)?;
        }
        let row = self.group_row(kind, name).await?;
        if kind == Kind::Users {
            let (is_member, owner) = self.standing(ctx, &row).await?;
            authorize(
                &ctx.caller,
                Action::ManageUserGroupMembers {
                    member: is_member,
                    owner,
                },
            )?;
        }
        if row.managed_by == "provider" {
            return Err(ServiceError::Conflict {
                code: "group_managed_by_provider",
                detail: format!(
                    "the members of {} follow the identity provider's group of that name; change them at the provider",
                    row.name
                ),
            });
        }
        let member_id = match kind {
            Kind::Users => {
                store::users::by_username(&self.pool, member)
                    .await?
                    .ok_or(ServiceError::NotFound { what: "user" })?
                    .id
            }
            Kind::Servers => {
                store::servers::by_name(&self.pool, member)
                    .await?
                    .ok_or(ServiceError::NotFound { what: "server" })?
                    .id
            }
        };
        let mut tx = self.pool.begin().await?;
        let changed = if add {
            store::groups::add_member(&mut *tx, kind, row.id, member_id).await?
        } else {
            store::groups::remove_member(&mut *tx, kind, row.id, member_id).await?
        };
        if changed {
            super::audit::record(
                &mut *tx,
                ctx,
                if add {
                    "group.member_add"
                } else {
                    "group.member_remove"
                },
                &audit_target(kind, &row.name),
                json!({ "member": member }),
            )
            .await?;
        }
        tx.commit().await?;
        self.group_view(kind, row).await
    }

    /// A grant to a user or a user group, on a server or a server group (at least one of the
    /// two a group).
    #[tracing::instrument(skip_all)]
    pub async fn create_group_grant(
        &self,
        ctx: &Ctx,
        target: GroupGrantTarget<'_>,
        new: NewGroupGrant,
    ) -> Result<GroupGrantView, ServiceError> {
        authorize(&ctx.caller, Action::ManageGroups)?;
        let login = LoginName::parse(&new.login).map_err(|e| ServiceError::invalid("login", e))?;
        let options = super::grants::canonical_options(new.options.as_deref().unwrap_or(""))?;
        Expiry::parse_optional(new.expires_at)
            .map_err(|e| ServiceError::invalid("expires_at", e))?;
        let target = match target {
            GroupGrantTarget::Server(name) => {
                Target::Server(self.visible_server(ctx, name).await?.id)
            }
            GroupGrantTarget::ServerGroup(name) => {
                Target::ServerGroup(self.group_row(Kind::Servers, name).await?.id)
            }
        };
        let grantee = match &new.grantee {
            GrantFor::User(name) => Grantee::User(
                store::users::by_username(&self.pool, name)
                    .await?
                    .ok_or_else(|| {
                        ServiceError::invalid("username", format!("there is no user {name:?}"))
                    })?
                    .id,
            ),
            GrantFor::Group(name) => Grantee::UserGroup(
                store::groups::by_name(&self.pool, Kind::Users, name)
                    .await?
                    .ok_or_else(|| {
                        ServiceError::invalid("group", format!("there is no group {name:?}"))
                    })?
                    .id,
            ),
        };
        if matches!((grantee, target), (Grantee::User(_), Target::Server(_))) {
            // Callers route this to `create_grant`; the schema refuses it too.
            return Err(ServiceError::invalid(
                "group",
                "a grant of one user on one server is an ordinary grant",
            ));
        }
        let mut tx = self.pool.begin().await?;
        let id = store::groups::insert_grant(
            &mut *tx,
            &store::groups::NewGroupGrant {
                grantee,
                target,
                login: &login,
                options: &options,
                expires_at: new.expires_at,
                created_by: ctx.caller.user_id(),
            },
        )
        .await
        .on_constraint(&["group_grants_target_key"], || ServiceError::Conflict {
            code: "grant_exists",
            detail: format!("this grant exists already (as {login})"),
        })?;
        let row = store::groups::grant_by_id(&mut *tx, id)
            .await?
            .ok_or(ServiceError::NotFound { what: "grant" })?;
        super::audit::record(
            &mut *tx,
            ctx,
            "grant.create",
            &match (&row.server, &row.server_group) {
                (Some(s), _) => format!("server:{s}"),
                (_, Some(g)) => format!("server-group:{g}"),
                _ => String::new(),
            },
            json!({ "grant_id": id, "username": row.username, "group": row.user_group, "login": login.as_str(), "options": options, "expires_at": new.expires_at.map(|e| e.unix_timestamp()) }),
        )
        .await?;
        tx.commit().await?;
        Ok(row.into())
    }

    /// Deletes a group grant; false when there is none with this id.
    pub(crate) async fn delete_group_grant(
        &self,
        ctx: &Ctx,
        id: Uuid,
    ) -> Result<bool, ServiceError> {
        let Some(row) = store::groups::grant_by_id(&self.pool, id).await? else {
            return Ok(false);
        };
        let mut tx = self.pool.begin().await?;
        store::groups::delete_grant(&mut *tx, id).await?;
        super::audit::record(
            &mut *tx,
            ctx,
            "grant.delete",
            &match (&row.server, &row.server_group) {
                (Some(s), _) => format!("server:{s}"),
                (_, Some(g)) => format!("server-group:{g}"),
                _ => String::new(),
            },
            json!({ "grant_id": id, "username": row.username, "group": row.user_group, "login": row.login }),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Where a group grant lets its users in.
#[derive(Debug, Clone, Copy)]
pub enum GroupGrantTarget<'a> {
    Server(&'a str),
    ServerGroup(&'a str),
}
