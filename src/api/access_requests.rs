//! Access requests: `GET, POST /api/v1/access-requests`, `POST …/{id}/approve|deny`.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::extract::{ApiJson, ApiQuery, Auth};
use super::{created, ApiResult};
use crate::http::error::Problem;
use crate::http::AppState;
use crate::service::access_requests::{AccessRequestView, NewAccessRequest};
use crate::service::object_id;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/access-requests",
            get(list_access_requests).post(create_access_request),
        )
        .route(
            "/api/v1/access-requests/{id}/approve",
            post(approve_access_request),
        )
        .route(
            "/api/v1/access-requests/{id}/deny",
            post(deny_access_request),
        )
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct AccessRequestsQuery {
    /// Only requests in this state: `pending`, `approved`, `denied`, `expired`.
    status: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/access-requests", tag = "access requests", params(AccessRequestsQuery), responses((status = 200, description = "the caller's own requests and those they may decide (admins: all), newest first, at most 500", body = Vec<AccessRequestView>)), security(("bearer" = [])))]
pub(super) async fn list_access_requests(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiQuery(q): ApiQuery<AccessRequestsQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services
            .list_access_requests(&ctx, q.status.as_deref())
            .await?,
    ))
}

/// A server or a server group, a login, how long, and why.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateAccessRequest {
    server: Option<String>,
    server_group: Option<String>,
    login: String,
    /// 1 to the policy's `max_access_request_hours`.
    duration_hours: i64,
    reason: String,
}

#[utoipa::path(post, path = "/api/v1/access-requests", tag = "access requests", request_body = CreateAccessRequest, responses((status = 201, description = "requested", body = AccessRequestView)), security(("bearer" = [])))]
pub(super) async fn create_access_request(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiJson(b): ApiJson<CreateAccessRequest>,
) -> ApiResult<impl IntoResponse> {
    let new = NewAccessRequest {
        server: b.server,
        server_group: b.server_group,
        login: b.login,
        duration_hours: b.duration_hours,
        reason: b.reason,
    };
    Ok(created(s.services.create_access_request(&ctx, new).await?))
}

#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Decision {
    comment: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/access-requests/{id}/approve", tag = "access requests", params(("id" = String, Path, description = "id (UUID)")), request_body = Decision, responses((status = 200, description = "approved: the grant is written and ends by itself", body = AccessRequestView), (status = 409, description = "`request_closed`: decided or lapsed already", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn approve_access_request(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<Decision>,
) -> ApiResult<impl IntoResponse> {
    let id = object_id(&id, "access request")?;
    Ok(Json(
        s.services
            .decide_access_request(&ctx, id, true, b.comment.as_deref())
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/access-requests/{id}/deny", tag = "access requests", params(("id" = String, Path, description = "id (UUID)")), request_body = Decision, responses((status = 200, description = "denied", body = AccessRequestView), (status = 409, description = "`request_closed`: decided or lapsed already", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn deny_access_request(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<Decision>,
) -> ApiResult<impl IntoResponse> {
    let id = object_id(&id, "access request")?;
    Ok(Json(
        s.services
            .decide_access_request(&ctx, id, false, b.comment.as_deref())
            .await?,
    ))
}
