//! User groups (`/api/v1/groups`), server groups (`/api/v1/server-groups`) and grants to them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use time::OffsetDateTime;

use super::extract::{ApiJson, Auth};
use super::{created, ApiResult};
use crate::http::error::Problem;
use crate::http::AppState;
use crate::service::groups::{
    GrantFor, GroupGrantTarget, GroupGrantView, GroupPatch, GroupView, NewGroup, NewGroupGrant,
};
use crate::service::ServiceError;
use crate::store::groups::Kind;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/groups", get(list_groups).post(create_group))
        .route(
            "/api/v1/groups/{name}",
            get(get_group).patch(update_group).delete(delete_group),
        )
        .route(
            "/api/v1/groups/{name}/members/{username}",
            put(add_group_member).delete(remove_group_member),
        )
        .route(
            "/api/v1/server-groups",
            get(list_server_groups).post(create_server_group),
        )
        .route(
            "/api/v1/server-groups/{name}",
            get(get_server_group)
                .patch(update_server_group)
                .delete(delete_server_group),
        )
        .route(
            "/api/v1/server-groups/{name}/servers/{server}",
            put(add_server_group_member).delete(remove_server_group_member),
        )
        .route(
            "/api/v1/server-groups/{name}/grants",
            post(create_server_group_grant),
        )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateGroup {
    name: String,
    description: Option<String>,
    /// Usernames who may change the members (user groups only).
    owners: Option<Vec<String>>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateGroup {
    description: Option<String>,
    /// The whole new list of owners (user groups only).
    owners: Option<Vec<String>>,
}

impl From<CreateGroup> for NewGroup {
    fn from(b: CreateGroup) -> Self {
        NewGroup {
            name: b.name,
            description: b.description,
            owners: b.owners,
        }
    }
}

impl From<UpdateGroup> for GroupPatch {
    fn from(b: UpdateGroup) -> Self {
        GroupPatch {
            description: b.description,
            owners: b.owners,
        }
    }
}

#[utoipa::path(get, path = "/api/v1/groups", tag = "groups", responses((status = 200, description = "user groups (members: those they are in or own)", body = Vec<GroupView>)), security(("bearer" = [])))]
pub(super) async fn list_groups(
    State(s): State<AppState>,
    Auth(ctx): Auth,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.services.list_groups(&ctx, Kind::Users).await?))
}

#[utoipa::path(post, path = "/api/v1/groups", tag = "groups", request_body = CreateGroup, responses((status = 201, description = "created", body = GroupView), (status = 409, description = "`group_exists`", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn create_group(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiJson(b): ApiJson<CreateGroup>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(
        s.services.create_group(&ctx, Kind::Users, b.into()).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/groups/{name}", tag = "groups", params(("name" = String, Path, description = "group name")), responses((status = 200, description = "the group with its members and owners", body = GroupView)), security(("bearer" = [])))]
pub(super) async fn get_group(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.services.get_group(&ctx, Kind::Users, &name).await?))
}

#[utoipa::path(patch, path = "/api/v1/groups/{name}", tag = "groups", params(("name" = String, Path, description = "group name")), request_body = UpdateGroup, responses((status = 200, description = "updated", body = GroupView)), security(("bearer" = [])))]
pub(super) async fn update_group(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
    ApiJson(b): ApiJson<UpdateGroup>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services
            .update_group(&ctx, Kind::Users, &name, b.into())
            .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/groups/{name}", tag = "groups", params(("name" = String, Path, description = "group name")), responses((status = 204, description = "deleted, with its grants")), security(("bearer" = [])))]
pub(super) async fn delete_group(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.services.delete_group(&ctx, Kind::Users, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/api/v1/groups/{name}/members/{username}", tag = "groups", params(("name" = String, Path, description = "group name"), ("username" = String, Path, description = "username")), responses((status = 200, description = "the group, with the user a member (idempotent)", body = GroupView), (status = 409, description = "`group_managed_by_provider`: its members follow the identity provider", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn add_group_member(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path((name, username)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services
            .set_group_member(&ctx, Kind::Users, &name, &username, true)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/groups/{name}/members/{username}", tag = "groups", params(("name" = String, Path, description = "group name"), ("username" = String, Path, description = "username")), responses((status = 200, description = "the group, without the user (idempotent); the user's access through it ends at the next login", body = GroupView), (status = 409, description = "`group_managed_by_provider`: its members follow the identity provider", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn remove_group_member(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path((name, username)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services
            .set_group_member(&ctx, Kind::Users, &name, &username, false)
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/server-groups", tag = "groups", responses((status = 200, description = "server groups (admins)", body = Vec<GroupView>)), security(("bearer" = [])))]
pub(super) async fn list_server_groups(
    State(s): State<AppState>,
    Auth(ctx): Auth,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.services.list_groups(&ctx, Kind::Servers).await?))
}

#[utoipa::path(post, path = "/api/v1/server-groups", tag = "groups", request_body = CreateGroup, responses((status = 201, description = "created", body = GroupView), (status = 409, description = "`group_exists`", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn create_server_group(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiJson(b): ApiJson<CreateGroup>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(
        s.services
            .create_group(&ctx, Kind::Servers, b.into())
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/server-groups/{name}", tag = "groups", params(("name" = String, Path, description = "server group name")), responses((status = 200, description = "the server group with its servers", body = GroupView)), security(("bearer" = [])))]
pub(super) async fn get_server_group(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services.get_group(&ctx, Kind::Servers, &name).await?,
    ))
}

#[utoipa::path(patch, path = "/api/v1/server-groups/{name}", tag = "groups", params(("name" = String, Path, description = "server group name")), request_body = UpdateGroup, responses((status = 200, description = "updated", body = GroupView)), security(("bearer" = [])))]
pub(super) async fn update_server_group(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
    ApiJson(b): ApiJson<UpdateGroup>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services
            .update_group(&ctx, Kind::Servers, &name, b.into())
            .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/server-groups/{name}", tag = "groups", params(("name" = String, Path, description = "server group name")), responses((status = 204, description = "deleted, with its grants")), security(("bearer" = [])))]
pub(super) async fn delete_server_group(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.services.delete_group(&ctx, Kind::Servers, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/api/v1/server-groups/{name}/servers/{server}", tag = "groups", params(("name" = String, Path, description = "server group name"), ("server" = String, Path, description = "server name")), responses((status = 200, description = "the server group, with the server in it (idempotent)", body = GroupView)), security(("bearer" = [])))]
pub(super) async fn add_server_group_member(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path((name, server)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services
            .set_group_member(&ctx, Kind::Servers, &name, &server, true)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/server-groups/{name}/servers/{server}", tag = "groups", params(("name" = String, Path, description = "server group name"), ("server" = String, Path, description = "server name")), responses((status = 200, description = "the server group, without the server (idempotent)", body = GroupView)), security(("bearer" = [])))]
pub(super) async fn remove_server_group_member(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path((name, server)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services
            .set_group_member(&ctx, Kind::Servers, &name, &server, false)
            .await?,
    ))
}

/// A grant on a server group: to one user (`username`) or one user group (`group`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateGroupGrant {
    username: Option<String>,
    group: Option<String>,
    login: String,
    options: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

/// Exactly one of `username` and `group`.
pub(super) fn grantee(
    username: Option<String>,
    group: Option<String>,
) -> Result<GrantFor, ServiceError> {
    match (username, group) {
        (Some(u), None) => Ok(GrantFor::User(u)),
        (None, Some(g)) => Ok(GrantFor::Group(g)),
        _ => Err(ServiceError::invalid(
            "group",
            "a grant names either a user (`username`) or a user group (`group`), not both",
        )),
    }
}

#[utoipa::path(post, path = "/api/v1/server-groups/{name}/grants", tag = "groups", params(("name" = String, Path, description = "server group name")), request_body = CreateGroupGrant, responses((status = 201, description = "created", body = GroupGrantView), (status = 409, description = "`grant_exists`", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn create_server_group_grant(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
    ApiJson(b): ApiJson<CreateGroupGrant>,
) -> ApiResult<impl IntoResponse> {
    let new = NewGroupGrant {
        grantee: grantee(b.username, b.group)?,
        login: b.login,
        options: b.options,
        expires_at: b.expires_at,
    };
    Ok(created(
        s.services
            .create_group_grant(&ctx, GroupGrantTarget::ServerGroup(&name), new)
            .await?,
    ))
}
