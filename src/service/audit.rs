//! The audit trail: written with each change, in its transaction; read by admins.

use serde::Serialize;
use sqlx::PgExecutor;
use time::OffsetDateTime;

use super::{authorize, page, Action, Ctx, Listing, ServiceError, Services};
use crate::store;

pub(crate) async fn record(
    db: impl PgExecutor<'_>,
    ctx: &Ctx,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<(), sqlx::Error> {
    record_by(
        db,
        &ctx.caller.actor(),
        ctx.request_id.as_deref(),
        action,
        target,
        detail,
    )
    .await
}

/// An event with an explicit actor, for when there is no caller yet (sign-in).
pub(crate) async fn record_by(
    db: impl PgExecutor<'_>,
    actor: &str,
    request_id: Option<&str>,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<(), sqlx::Error> {
    store::audit::record(
        db,
        store::audit::NewEvent {
            actor,
            action,
            target,
            detail,
            request_id,
        },
    )
    .await
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub target: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub request_id: Option<String>,
}

#[derive(Debug, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

impl Services {
    #[tracing::instrument(skip_all)]
    pub async fn audit(
        &self,
        ctx: &Ctx,
        f: &AuditFilter,
    ) -> Result<Listing<AuditEvent>, ServiceError> {
        authorize(&ctx.caller, Action::ReadAudit)?;
        let page = page(f.limit, f.cursor.as_deref(), crate::store::CursorShape::Id)?;
        let rows = store::audit::list(
            &self.pool,
            f.actor.as_deref(),
            f.action.as_deref(),
            f.target.as_deref(),
            &page,
        )
        .await?;
        let (rows, next_cursor) = store::split_page(rows, page.limit, |r| r.id.to_string());
        Ok(Listing {
            items: rows
                .into_iter()
                .map(|r| AuditEvent {
                    id: r.id,
                    at: r.at,
                    actor: r.actor,
                    action: r.action,
                    target: r.target,
                    detail: r.detail,
                    request_id: r.request_id,
                })
                .collect(),
            next_cursor,
        })
    }
}
