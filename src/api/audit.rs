//! The audit log, newest first, filtered by actor, action and target.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::extract::{ApiQuery, Auth};
use super::ApiResult;
use crate::http::AppState;
use crate::service::audit::AuditEvent;
use crate::service::Listing;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/audit", get(audit))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery), responses((status = 200, description = "events, newest first", body = Listing<AuditEvent>)), security(("bearer" = [])))]
pub(super) async fn audit(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<impl IntoResponse> {
    let f = crate::service::audit::AuditFilter {
        actor: q.actor,
        action: q.action,
        target: q.target,
        limit: q.limit,
        cursor: q.cursor,
    };
    Ok(Json(s.services.audit(&ctx, &f).await?))
}
