//! Grants: who may log in to a server, as which login, with which options, until when.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use time::OffsetDateTime;

use super::extract::{ApiJson, ApiQuery, Auth};
use super::{created, ApiResult};
use crate::http::error::Problem;
use crate::http::AppState;
use crate::service::grants::{GrantView, NewGrant};
use crate::service::groups::{GrantFor, GroupGrantTarget, GroupGrantView, NewGroupGrant};
use crate::service::ServiceError;
use crate::service::{object_id, Listing};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/servers/{name}/grants",
            get(list_grants).post(create_grant),
        )
        .route("/api/v1/grants/{id}", delete(delete_grant))
}

/// `GET /api/v1/servers/{name}/grants`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct GrantsQuery {
    /// Page size, 1-500, default 50.
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only this user's grants.
    username: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/servers/{name}/grants", tag = "grants", params(("name" = String, Path, description = "server name"), GrantsQuery), responses((status = 200, description = "grants on the server", body = Listing<GrantView>)), security(("bearer" = [])))]
pub(super) async fn list_grants(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<GrantsQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services
            .list_grants(
                &ctx,
                &name,
                q.username.as_deref(),
                q.limit,
                q.cursor.as_deref(),
            )
            .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateGrant {
    /// The user granted; or `group`, a user group.
    username: Option<String>,
    group: Option<String>,
    login: String,
    key_id: Option<uuid::Uuid>,
    options: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

/// What `POST /api/v1/servers/{name}/grants` made: a grant to a user, or one to a user group.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(super) enum CreatedGrant {
    User(GrantView),
    Group(GroupGrantView),
}

#[utoipa::path(post, path = "/api/v1/servers/{name}/grants", tag = "grants", params(("name" = String, Path, description = "server name")), request_body = CreateGrant, responses((status = 201, description = "created", body = CreatedGrant), (status = 409, description = "`grant_exists`: the user already has this grant", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn create_grant(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
    ApiJson(b): ApiJson<CreateGrant>,
) -> ApiResult<impl IntoResponse> {
    let made = match super::groups::grantee(b.username, b.group)? {
        GrantFor::User(username) => {
            let new = NewGrant {
                username,
                login: b.login,
                key_id: b.key_id,
                options: b.options,
                expires_at: b.expires_at,
            };
            CreatedGrant::User(s.services.create_grant(&ctx, &name, new).await?)
        }
        GrantFor::Group(group) => {
            if b.key_id.is_some() {
                return Err(ServiceError::invalid(
                    "key_id",
                    "a grant to a group is for all its members' keys; key_id needs a username",
                )
                .into());
            }
            let new = NewGroupGrant {
                grantee: GrantFor::Group(group),
                login: b.login,
                options: b.options,
                expires_at: b.expires_at,
            };
            CreatedGrant::Group(
                s.services
                    .create_group_grant(&ctx, GroupGrantTarget::Server(&name), new)
                    .await?,
            )
        }
    };
    Ok(created(made))
}

#[utoipa::path(delete, path = "/api/v1/grants/{id}", tag = "grants", params(("id" = String, Path, description = "id (UUID)")), responses((status = 204, description = "deleted")), security(("bearer" = [])))]
pub(super) async fn delete_grant(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.services
        .delete_grant(&ctx, object_id(&id, "grant")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
