//! Grants: a user (all their keys, or one) may log in to a server as a login, with options,
//! until an expiry.

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{authorize, page, Action, Caller, Ctx, Listing, ResultExt, ServiceError, Services};
use crate::domain::Expiry;
use crate::domain::LoginName;
use crate::keys::options;
use crate::store;
use crate::store::grants::GrantRow;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GrantView {
    pub id: Uuid,
    pub server: String,
    pub username: String,
    pub key_id: Option<Uuid>,
    pub login: String,
    pub options: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub created_by: Option<String>,
}

impl From<GrantRow> for GrantView {
    fn from(g: GrantRow) -> Self {
        GrantView {
            id: g.id,
            server: g.server,
            username: g.username,
            key_id: g.key_id,
            login: g.login,
            options: g.options,
            expires_at: g.expires_at,
            created_at: g.created_at,
            created_by: g.created_by,
        }
    }
}

#[derive(Debug, Default)]
pub struct NewGrant {
    pub username: String,
    pub login: String,
    pub key_id: Option<Uuid>,
    pub options: Option<String>,
    pub expires_at: Option<OffsetDateTime>,
}

/// Parses authorized_keys options with the validator's grammar and returns their canonical
/// rendering, which is what gets stored and written into authorized_keys.
pub fn canonical_options(text: &str) -> Result<String, ServiceError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(String::new());
    }
    let invalid = |detail: String| ServiceError::Invalid {
        code: "options_invalid",
        field: "options",
        detail,
    };
    let (end, unterminated) = options::options_end(text.as_bytes());
    if unterminated || end != text.len() {
        return Err(invalid(
            "options are one comma-separated list without blanks outside double quotes".into(),
        ));
    }
    let parsed = options::parse(text.as_bytes()).map_err(invalid)?;
    let rendered = parsed.to_string();
    // Stored options must read back as exactly these options, or a line could change meaning.
    if options::parse(rendered.as_bytes()).ok().as_ref() != Some(&parsed) {
        return Err(invalid(
            "these options do not survive a round trip through the authorized_keys grammar".into(),
        ));
    }
    Ok(rendered)
}

impl Services {
    #[tracing::instrument(skip_all)]
    pub async fn list_grants(
        &self,
        ctx: &Ctx,
        server: &str,
        username: Option<&str>,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<Listing<GrantView>, ServiceError> {
        authorize(&ctx.caller, Action::ListServers)?;
        let server = self.visible_server(ctx, server).await?;
        // Members see the grants that concern them: their own, on servers they hold one on.
        let member = match &ctx.caller {
            Caller::User { username, .. } if !ctx.caller.is_admin() => Some(username.as_str()),
            _ => None,
        };
        let username = member.or(username);
        let page = page(limit, cursor, crate::store::CursorShape::TimeId)?;
        let rows = store::grants::list(&self.pool, server.id, username, &page).await?;
        let (rows, next_cursor) = store::split_page(rows, page.limit, |r| {
            store::keys::time_id_key(r.created_at, r.id)
        });
        Ok(Listing {
            items: rows.into_iter().map(GrantView::from).collect(),
            next_cursor,
        })
    }

    #[tracing::instrument(skip_all)]
    pub async fn create_grant(
        &self,
        ctx: &Ctx,
        server: &str,
        new: NewGrant,
    ) -> Result<GrantView, ServiceError> {
        authorize(&ctx.caller, Action::ManageServers)?;
        let server = self.visible_server(ctx, server).await?;
        let login = LoginName::parse(&new.login).map_err(|e| ServiceError::invalid("login", e))?;
        let options = canonical_options(new.options.as_deref().unwrap_or(""))?;
        Expiry::parse_optional(new.expires_at)
            .map_err(|e| ServiceError::invalid("expires_at", e))?;
        let user = store::users::by_username(&self.pool, &new.username)
            .await?
            .ok_or_else(|| {
                ServiceError::invalid("username", format!("there is no user {:?}", new.username))
            })?;
        let mut tx = self.pool.begin().await?;
        let id = store::grants::insert(
            &mut *tx,
            &store::grants::NewGrant {
                server_id: server.id,
                user_id: user.id,
                key_id: new.key_id,
                login: &login,
                options: &options,
                expires_at: new.expires_at,
                created_by: ctx.caller.user_id(),
            },
        )
        .await
        .on_constraint(&["grants_key_owner_fkey"], || {
            ServiceError::invalid(
                "key_id",
                format!("{} has no key with that id", user.username),
            )
        })
        .on_constraint(&["grants_all_keys_key", "grants_one_key_key"], || {
            ServiceError::Conflict {
                code: "grant_exists",
                detail: format!(
                    "{} already has this grant on {} as {login}",
                    user.username, server.name
                ),
            }
        })?;
        super::audit::record(
            &mut *tx,
            ctx,
            "grant.create",
            &format!("server:{}", server.name),
            json!({ "grant_id": id, "username": user.username, "login": login.as_str(), "key_id": new.key_id, "options": options, "expires_at": new.expires_at.map(|e| e.unix_timestamp()) }),
        )
        .await?;
        tx.commit().await?;
        let row = store::grants::by_id(&self.pool, id)
            .await?
            .ok_or(ServiceError::NotFound { what: "grant" })?;
        Ok(row.into())
    }

    #[tracing::instrument(skip_all)]
    pub async fn delete_grant(&self, ctx: &Ctx, id: Uuid) -> Result<(), ServiceError> {
        authorize(&ctx.caller, Action::ManageServers)?;
        let Some(row) = store::grants::by_id(&self.pool, id).await? else {
            // Grants that name a group have ids of the same kind, in a table of their own.
            return if self.delete_group_grant(ctx, id).await? {
                Ok(())
            } else {
                Err(ServiceError::NotFound { what: "grant" })
            };
        };
        let mut tx = self.pool.begin().await?;
        store::grants::delete(&mut *tx, id).await?;
        super::audit::record(
            &mut *tx,
            ctx,
            "grant.delete",
            &format!("server:{}", row.server),
            json!({ "grant_id": id, "username": row.username, "login": row.login }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
