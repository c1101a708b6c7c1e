//! Users: the caller (`/me`), and admins listing, creating, changing and deleting accounts.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::extract::{ApiJson, ApiQuery, Auth};
use super::{created, double_option, ApiResult};
use crate::domain::Role;
use crate::http::error::Problem;
use crate::http::AppState;
use crate::service::users::{NewUser, UserPatch, UserView};
use crate::service::Listing;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/users", get(list_users).post(create_user))
        .route(
            "/api/v1/users/{username}",
            get(get_user).patch(update_user).delete(delete_user),
        )
        .route(
            "/api/v1/oidc/sync",
            axum::routing::post(sync_provider_users),
        )
}

/// `GET /api/v1/users`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct UsersQuery {
    /// Page size, 1-500, default 50.
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Search in name, display name and email.
    q: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/me", tag = "account", responses((status = 200, description = "the caller", body = Object)), security(("bearer" = [])))]
pub(super) async fn me(State(s): State<AppState>, Auth(ctx): Auth) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.services.me(&ctx).await?))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(UsersQuery), responses((status = 200, description = "users by name", body = Listing<UserView>)), security(("bearer" = [])))]
pub(super) async fn list_users(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiQuery(q): ApiQuery<UsersQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services
            .list_users(&ctx, q.q.as_deref(), q.limit, q.cursor.as_deref())
            .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateUser {
    username: String,
    display_name: Option<String>,
    email: Option<String>,
    role: Option<Role>,
    password: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser, responses((status = 201, description = "created", body = UserView), (status = 409, description = "`name_taken`: the username is taken", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn create_user(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiJson(b): ApiJson<CreateUser>,
) -> ApiResult<impl IntoResponse> {
    let new = NewUser {
        username: b.username,
        display_name: b.display_name,
        email: b.email,
        role: b.role,
        password: b.password,
    };
    Ok(created(s.services.create_user(&ctx, new).await?))
}

#[utoipa::path(get, path = "/api/v1/users/{username}", tag = "users", params(("username" = String, Path, description = "user name")), responses((status = 200, description = "the user", body = UserView)), security(("bearer" = [])))]
pub(super) async fn get_user(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(username): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.services.get_user(&ctx, &username).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchUser {
    display_name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    email: Option<Option<String>>,
    role: Option<Role>,
    disabled: Option<bool>,
    password: Option<String>,
    /// Required with `password` when changing one's own password.
    current_password: Option<String>,
}

#[utoipa::path(patch, path = "/api/v1/users/{username}", tag = "users", params(("username" = String, Path, description = "user name")), request_body = PatchUser, responses((status = 200, description = "updated", body = UserView), (status = 400, description = "malformed; `current_password_required` when changing one's own password without current_password", body = Problem, content_type = "application/problem+json"), (status = 403, description = "not allowed; `current_password_wrong` when changing one's own password with a wrong current_password", body = Problem, content_type = "application/problem+json"), (status = 409, description = "conflict: the last enabled admin cannot be demoted or disabled (`last_admin`)", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn update_user(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(username): Path<String>,
    ApiJson(b): ApiJson<PatchUser>,
) -> ApiResult<impl IntoResponse> {
    let patch = UserPatch {
        display_name: b.display_name,
        email: b.email,
        role: b.role,
        disabled: b.disabled,
        password: b.password,
        current_password: b.current_password,
    };
    Ok(Json(s.services.update_user(&ctx, &username, patch).await?))
}

#[utoipa::path(delete, path = "/api/v1/users/{username}", tag = "users", params(("username" = String, Path, description = "user name")), responses((status = 204, description = "deleted"), (status = 409, description = "`last_admin`: the only enabled admin cannot be deleted; `cannot_delete_self`", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn delete_user(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(username): Path<String>,
) -> ApiResult<StatusCode> {
    s.services.delete_user(&ctx, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/oidc/sync`: what `keyportal users sync` does, as an admin action.
#[utoipa::path(post, path = "/api/v1/oidc/sync", tag = "users", responses((status = 200, description = "every user linked to the identity provider was checked there: those it knows are synced (name, email, role, groups), those it refuses are disabled (their keys leave every authorized_keys output)", body = crate::service::oidc::SyncReport), (status = 404, description = "`not_found`: no identity provider is configured", body = Problem, content_type = "application/problem+json"), (status = 502, description = "`provider_unavailable`: the identity provider could not be reached", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn sync_provider_users(
    State(s): State<AppState>,
    Auth(ctx): Auth,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.services.sync_provider_users(&ctx).await?))
}
