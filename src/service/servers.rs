//! Servers: admins manage them; members see those they hold grants on.

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use super::{authorize, page, Action, Ctx, Listing, ResultExt, ServiceError, Services};
use crate::domain::ServerName;
use crate::domain::{Description, Hostname};
use crate::store;
use crate::store::servers::ServerRow;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ServerView {
    pub name: String,
    pub hostname: String,
    pub description: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<ServerRow> for ServerView {
    fn from(s: ServerRow) -> Self {
        ServerView {
            name: s.name,
            hostname: s.hostname,
            description: s.description,
            created_at: s.created_at,
        }
    }
}

fn check_labels(hostname: Option<&str>, description: Option<&str>) -> Result<(), ServiceError> {
    if let Some(h) = hostname {
        Hostname::parse(h).map_err(|e| ServiceError::invalid("hostname", e))?;
    }
    if let Some(d) = description {
        Description::parse(d).map_err(|e| ServiceError::invalid("description", e))?;
    }
    Ok(())
}

impl Services {
    /// The server named `name` if the caller may see it (admin, a member with a grant on it,
    /// or that server's own token); otherwise not found.
    pub(crate) async fn visible_server(
        &self,
        ctx: &Ctx,
        name: &str,
    ) -> Result<ServerRow, ServiceError> {
        let row = store::servers::by_name(&self.pool, name)
            .await?
            .ok_or(ServiceError::NotFound { what: "server" })?;
        let visible = match &ctx.caller {
            super::Caller::CommandLine => true,
            c if c.is_admin() => true,
            super::Caller::Server { id, .. } => *id == row.id,
            super::Caller::User { id, .. } => {
                store::grants::user_has_grant_on(&self.pool, row.id, *id).await?
            }
        };
        if visible {
            Ok(row)
        } else {
            Err(ServiceError::NotFound { what: "server" })
        }
    }

    #[tracing::instrument(skip_all)]
    pub async fn list_servers(
        &self,
        ctx: &Ctx,
        q: Option<&str>,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<Listing<ServerView>, ServiceError> {
        authorize(&ctx.caller, Action::ListServers)?;
        let page = page(limit, cursor, crate::store::CursorShape::Name)?;
        let visible_to = if ctx.caller.is_admin() {
            None
        } else {
            ctx.caller.user_id()
        };
        let rows = store::servers::list(&self.pool, q, visible_to, &page).await?;
        let (rows, next_cursor) = store::split_page(rows, page.limit, |r| r.name.clone());
        Ok(Listing {
            items: rows.into_iter().map(ServerView::from).collect(),
            next_cursor,
        })
    }

    #[tracing::instrument(skip_all)]
    pub async fn get_server(&self, ctx: &Ctx, name: &str) -> Result<ServerView, ServiceError> {
        authorize(&ctx.caller, Action::ListServers)?;
        Ok(self.visible_server(ctx, name).await?.into())
    }

    #[tracing::instrument(skip_all)]
    pub async fn create_server(
        &self,
        ctx: &Ctx,
        name: &str,
        hostname: Option<&str>,
        description: Option<&str>,
    ) -> Result<ServerView, ServiceError> {
        authorize(&ctx.caller, Action::ManageServers)?;
        let name = ServerName::parse(name).map_err(|e| ServiceError::invalid("name", e))?;
        let hostname = hostname.unwrap_or("");
        let description = description.unwrap_or("");
        check_labels(Some(hostname), Some(description))?;
        let mut tx = self.pool.begin().await?;
        let row = store::servers::insert(&mut *tx, &name, hostname, description)
            .await
            .on_constraint(&["servers_name_key"], || ServiceError::Conflict {
                code: "name_taken",
                detail: format!("a server named {name} exists"),
            })?;
        super::audit::record(
            &mut *tx,
            ctx,
            "server.create",
            &format!("server:{name}"),
            json!({ "hostname": hostname }),
        )
        .await?;
        tx.commit().await?;
        Ok(row.into())
    }

    #[tracing::instrument(skip_all)]
    pub async fn update_server(
        &self,
        ctx: &Ctx,
        name: &str,
        hostname: Option<&str>,
        description: Option<&str>,
    ) -> Result<ServerView, ServiceError> {
        authorize(&ctx.caller, Action::ManageServers)?;
        let row = self.visible_server(ctx, name).await?;
        check_labels(hostname, description)?;
        let mut tx = self.pool.begin().await?;
        let updated = store::servers::update(&mut *tx, row.id, hostname, description).await?;
        super::audit::record(
            &mut *tx,
            ctx,
            "server.update",
            &format!("server:{}", row.name),
            json!({ "hostname": updated.hostname, "description_changed": description.is_some() }),
        )
        .await?;
        tx.commit().await?;
        Ok(updated.into())
    }

    #[tracing::instrument(skip_all)]
    pub async fn delete_server(&self, ctx: &Ctx, name: &str) -> Result<(), ServiceError> {
        authorize(&ctx.caller, Action::ManageServers)?;
        let row = self.visible_server(ctx, name).await?;
        let mut tx = self.pool.begin().await?;
        store::servers::delete(&mut *tx, row.id).await?;
        super::audit::record(
            &mut *tx,
            ctx,
            "server.delete",
            &format!("server:{}", row.name),
            json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
